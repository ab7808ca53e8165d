//! The operator's commands, on the same powers as the admin API (`super`) (`authgraph users …`, `authgraph sessions prune`). They use
//! the same configuration and database as the server.

use std::{collections::HashMap, sync::Arc};

use super as admin;
use crate::{
    change::Changes,
    config::{Config, RoleArg, SessionsCommand, UsersCommand},
    db::{self, DbPool, models::Role},
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
        UsersCommand::SetRole { username, role, reason } => {
            let role = match role {
                RoleArg::User => Role::User,
                RoleArg::Admin => Role::Admin,
            };
            let (user, acting) = (admin::find_by_username(pool, &username).await?, acting(reason.as_deref())?);
            let user = admin::set_role(&changes, &acting, user.id, role).await.map_err(cli_error)?;
            println!("{} is now {}", user.username, user.role.as_str());
        }
        UsersCommand::SetEmail { username, address, verified } => {
            let user = users::set_email(&changes, &username, &address, verified).await?;
            let state = if user.email_verified_at.is_some() { "verified" } else { "not verified" };
            println!("{} now has {} ({state})", user.username, user.email.as_deref().unwrap_or_default());
        }
        UsersCommand::RevokeSessions { username, reason } => {
            let (user, acting) = (admin::find_by_username(pool, &username).await?, acting(reason.as_deref())?);
            let ended = admin::end_sessions(&changes, &acting, user.id, None).await.map_err(cli_error)?;
            println!("ended {ended} sessions of {}", user.username);
        }
        UsersCommand::ResetMfa { username, reason } => {
            let (user, acting) = (admin::find_by_username(pool, &username).await?, acting(reason.as_deref())?);
            let keys = crate::secret::resolve(config)?;
            let mail = crate::mail::Mail::new(&config.email, &keys)?;
            let (user, ended) = admin::reset_mfa(&changes, &mail, &acting, user.id).await.map_err(cli_error)?;
            println!("removed the second factors and passkeys of {} and ended {ended} sessions", user.username);
        }
        UsersCommand::Ban { username, until, reason } => {
            let (user, acting) = (admin::find_by_username(pool, &username).await?, acting(reason.as_deref())?);
            let user = admin::ban(&changes, &acting, user.id, until).await.map_err(cli_error)?;
            match until {
                Some(until) => println!("{} is banned until {until} and signed out everywhere", user.username),
                None => println!("{} is banned for good and signed out everywhere", user.username),
            }
        }
        UsersCommand::Unban { username, reason } => {
            let (user, acting) = (admin::find_by_username(pool, &username).await?, acting(reason.as_deref())?);
            let user = admin::unban(&changes, &acting, user.id).await.map_err(cli_error)?;
            println!("{} may sign in again", user.username);
        }
    }
    Ok(())
}

/// The command line's actor: the operator (named by the door), with the reason given.
fn acting(reason: Option<&str>) -> anyhow::Result<admin::Acting> {
    admin::Acting::operator(reason).map_err(cli_error)
}

/// The command line's form of an error: what the log would say.
fn cli_error(err: crate::error::AppError) -> anyhow::Error {
    match err {
        crate::error::AppError::NotFound => anyhow::anyhow!("no such user"),
        other => anyhow::anyhow!("{other:?}"),
    }
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
