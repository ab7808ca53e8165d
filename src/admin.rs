//! The operator's commands (`authgraph users …`, `authgraph sessions prune`) and the
//! periodic pruning the server runs. They use the same configuration and database as
//! the server.

use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use chrono::Utc;

use crate::{
    auth::rate_limit::RateLimits,
    config::{Config, RoleArg, SessionsCommand, UsersCommand},
    db::{self, DbPool, models::Role, sessions::EndReason},
    users,
};

pub async fn users_command(pool: &DbPool, cmd: UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::List => {
            let mut conn = pool.get().await?;
            let accounts = db::users::all(&mut conn).await?;
            let live: HashMap<_, _> = db::sessions::live_counts(&mut conn).await?.into_iter().collect();
            println!("{:<36}  {:<32}  {:<5}  {:>8}  created", "id", "username", "role", "sessions");
            for user in &accounts {
                println!(
                    "{:<36}  {:<32}  {:<5}  {:>8}  {}",
                    user.id,
                    user.username,
                    user.role.as_str(),
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
            let user = users::set_role(pool, &username, role).await?;
            println!("{} is now {}", user.username, user.role.as_str());
        }
        UsersCommand::RevokeSessions { username } => {
            let mut conn = pool.get().await?;
            let user = db::users::find_by_username(&mut conn, &username)
                .await?
                .with_context(|| format!("no user named {username:?}"))?;
            let ended = db::sessions::end_all(&mut conn, user.id, None, EndReason::Admin).await?;
            println!("ended {ended} sessions of {}", user.username);
        }
    }
    Ok(())
}

pub async fn sessions_command(pool: &DbPool, config: &Config, cmd: SessionsCommand) -> anyhow::Result<()> {
    match cmd {
        SessionsCommand::Prune => {
            let report = prune(pool, config).await?;
            println!(
                "deleted {} ended sessions (with their refresh tokens) and {} rate-limit events",
                report.sessions, report.rate_limit_events
            );
        }
    }
    Ok(())
}

pub struct PruneReport {
    pub sessions: usize,
    pub rate_limit_events: usize,
}

/// Deletes what no rule needs any more: sessions ended longer than SESSION_RETENTION
/// ago (their refresh tokens go with them), rate-limit events older than the
/// longest window, and sign-in networks unused for 90 days (counted with the events).
pub async fn prune(pool: &DbPool, config: &Config) -> anyhow::Result<PruneReport> {
    let mut conn = pool.get().await?;
    let cutoff = Utc::now() - config.session_retention;
    let sessions = db::sessions::prune(&mut conn, cutoff).await?;
    let window = RateLimits::from_config(config).longest_window();
    let mut rate_limit_events = db::rate_limit_events::prune(&mut conn, window).await?;
    let known_cutoff = Utc::now() - crate::auth::rate_limit::KNOWN_NETWORK_RETENTION;
    rate_limit_events += db::signin_addresses::prune(&mut conn, known_cutoff).await?;
    Ok(PruneReport { sessions, rate_limit_events })
}

/// The server's pruning loop: every ten minutes, quietly retrying on failure.
pub async fn prune_periodically(pool: DbPool, config: Config) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        match prune(&pool, &config).await {
            Ok(r) if r.sessions + r.rate_limit_events > 0 => {
                tracing::info!(sessions = r.sessions, rate_limit_events = r.rate_limit_events, "pruned")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = format!("{err:#}"), "pruning failed"),
        }
    }
}
