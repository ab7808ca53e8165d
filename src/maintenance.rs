//! Housekeeping the server runs by itself and the operator can run by hand (`authgraph
//! sessions prune`): deleting what no rule needs any more.

use std::time::Duration;

use chrono::Utc;

use crate::{auth::rate_limit::RateLimits, config::Config, db, db::DbPool};

pub struct PruneReport {
    pub sessions: usize,
    pub rate_limit_events: usize,
    /// Email tokens that ended, and outbox rows sent or abandoned (bodies already gone).
    pub mail: usize,
    /// Audit events older than AUDIT_RETENTION.
    pub audit_events: usize,
}

/// Deletes what no rule needs any more: sessions ended longer than SESSION_RETENTION
/// ago (their refresh tokens go with them), rate-limit events older than the
/// longest window, sign-in networks unused for 90 days (counted with the events), and
/// email tokens and outbox rows that ended longer than SESSION_RETENTION ago, and
/// passkey ceremonies past their challenge's lifetime (counted with the events), and
/// audit events older than AUDIT_RETENTION (from the oldest end of the chain).
pub async fn prune(pool: &DbPool, config: &Config) -> anyhow::Result<PruneReport> {
    let mut conn = pool.get().await?;
    let cutoff = Utc::now() - config.session_retention;
    let sessions = db::sessions::prune(&mut conn, cutoff).await?;
    let window = RateLimits::from_config(config).longest_window();
    let mut rate_limit_events = db::rate_limit_events::prune(&mut conn, window).await?;
    let known_cutoff = Utc::now() - crate::auth::rate_limit::KNOWN_NETWORK_RETENTION;
    rate_limit_events += db::signin_addresses::prune(&mut conn, known_cutoff).await?;
    rate_limit_events += db::passkeys::prune_ceremonies(&mut conn).await?;
    rate_limit_events += db::identities::prune_flows(&mut conn).await?;
    let mail = db::email_tokens::delete_ended_before(&mut conn, cutoff).await?
        + db::outbox::delete_finished_before(&mut conn, cutoff).await?;
    let audit_events = db::audit::prune(&mut conn, Utc::now() - config.audit_retention).await?;
    Ok(PruneReport { sessions, rate_limit_events, mail, audit_events })
}

/// The server's pruning loop: every ten minutes, quietly retrying on failure.
pub async fn prune_periodically(pool: DbPool, config: Config) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        match prune(&pool, &config).await {
            Ok(r) if r.sessions + r.rate_limit_events + r.mail + r.audit_events > 0 => {
                tracing::info!(
                    sessions = r.sessions,
                    rate_limit_events = r.rate_limit_events,
                    mail = r.mail,
                    audit_events = r.audit_events,
                    "pruned"
                )
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = format!("{err:#}"), "pruning failed"),
        }
    }
}
