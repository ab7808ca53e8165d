//! The operator's commands (`authgraph users …`, `authgraph sessions prune`). They use
//! the same configuration and database as the server.

use std::{collections::HashMap, sync::Arc};

use anyhow::Context;

use crate::{
    change::Changes,
    config::{Config, RoleArg, SessionsCommand, UsersCommand},
    db::{self, DbPool, models::Role, sessions::EndReason},
    session_cache::SessionCache,
    users,
};

pub async fn users_command(pool: &DbPool, config: &Config, cmd: UsersCommand) -> anyhow::Result<()> {
    // The command line keeps no session cache and runs no mail sender: its changes
    // reach the servers' caches through the database's NOTIFY, and its mail through
    // their senders' next round.
    let changes = Changes::new(pool.clone(), Arc::new(SessionCache::new(0)), None);
    match cmd {
        UsersCommand::List => {
            let mut conn = pool.get().await?;
            let accounts = db::users::all(&mut conn).await?;
            let live: HashMap<_, _> = db::sessions::live_counts(&mut conn).await?.into_iter().collect();
            println!("{:<36}  {:<32}  {:<5}  {:<3}  {:>8}  created", "id", "username", "role", "mfa", "sessions");
            for user in &accounts {
                println!(
                    "{:<36}  {:<32}  {:<5}  {:<3}  {:>8}  {}",
                    user.id,
                    user.username,
                    user.role.as_str(),
                    if user.has_second_factor() { "on" } else { "off" },
                    live.get(&user.id).copied().unwrap_or(0),
                    user.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
            println!("{} accounts", accounts.len());
        }
        UsersCommand::SetRole { username, role } => {
            let role = match role {
                RoleArg::User => Role::User,
                RoleArg::Admin => Role::Admin,
            };
            let user = users::set_role(&changes, &username, role).await?;
            println!("{} is now {}", user.username, user.role.as_str());
        }
        UsersCommand::SetEmail { username, address, verified } => {
            let user = users::set_email(&changes, &username, &address, verified).await?;
            let state = if user.email_verified_at.is_some() { "verified" } else { "not verified" };
            println!("{} now has {} ({state})", user.username, user.email.as_deref().unwrap_or_default());
        }
        UsersCommand::RevokeSessions { username } => {
            let user = {
                let mut conn = pool.get().await?;
                db::users::find_by_username(&mut conn, &username)
                    .await?
                    .with_context(|| format!("no user named {username:?}"))?
            };
            let ended = changes
                .run(async |c| Ok(db::sessions::end_all(c, user.id, None, EndReason::Admin).await?))
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            println!("ended {ended} sessions of {}", user.username);
        }
        UsersCommand::ResetMfa { username } => {
            let keys = crate::secret::resolve(config)?;
            let mail = crate::mail::Mail::new(&config.email, &keys)?;
            let (user, ended) = crate::factors::flows::reset_by_operator(&changes, &mail, &username).await.map_err(
                |err| match err {
                    crate::error::AppError::NotFound => anyhow::anyhow!("no user named {username:?}"),
                    other => anyhow::anyhow!("{other:?}"),
                },
            )?;
            println!("removed the second factor of {} and ended {ended} sessions", user.username);
        }
    }
    Ok(())
}

/// The origin of the command line's changes: the operator, by their OS user.
pub fn operator() -> crate::db::change::Origin {
    let name = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "operator".to_owned());
    crate::db::change::Origin { operator: Some(name), ..Default::default() }
}

/// `authgraph audit …`.
pub async fn audit_command(pool: &DbPool, config: &Config, cmd: crate::config::AuditCommand) -> anyhow::Result<()> {
    match cmd {
        crate::config::AuditCommand::Verify { last } => {
            let keys = crate::audit::ChainKeys::new(&crate::secret::resolve(config)?.audit);
            let linked = crate::audit::chain::chain_pending(pool, &keys).await?;
            let status = crate::audit::chain::verify(pool, &keys, last).await?;
            match status.first_broken_id {
                None => println!(
                    "intact: {} events verified ({linked} linked now, {} waiting)",
                    status.checked, status.pending
                ),
                Some(id) => {
                    println!("BROKEN: event {id} does not verify ({} events checked)", status.checked);
                    std::process::exit(1);
                }
            }
        }
    }
    Ok(())
}

pub async fn sessions_command(pool: &DbPool, config: &Config, cmd: SessionsCommand) -> anyhow::Result<()> {
    match cmd {
        SessionsCommand::Prune => {
            let report = crate::maintenance::prune(pool, config).await?;
            println!(
                "deleted {} ended sessions (with their refresh tokens), {} rate-limit events, {} ended email tokens and outbox rows, and {} audit events past AUDIT_RETENTION",
                report.sessions, report.rate_limit_events, report.mail, report.audit_events
            );
        }
    }
    Ok(())
}
