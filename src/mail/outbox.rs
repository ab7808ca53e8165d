//! The sender: every instance runs one. It claims due rows (see `db::outbox`), resolves
//! reset requests into messages, hands messages to the transport, and records the
//! outcome: sent (body deleted), retried with backoff, or abandoned (body deleted)
//! once `MAIL_GIVE_UP_AFTER` has passed or the server refused for good.
//!
//! After an outage, the first message that goes through makes every other failed one
//! due at once (`db::outbox::retry_now`).
//!
//! Delivery is at least once: a message accepted by the SMTP server just before this
//! instance dies is sent again when its lease runs out. Two live instances never send
//! one row at the same time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tokio::sync::watch;

use super::message::Content;
use super::{
    Mail,
    transport::{SendError, Transport},
};
use crate::db::{
    self, DbPool,
    models::{OutboxRow, Purpose},
};
use crate::email_address::EmailAddress;

/// Rows claimed, and sent, at once: each holds a pooled database connection for a
/// moment before and after its SMTP conversation, so this stays well under the pool.
const BATCH: i64 = 8;
/// How long a claimed row is this sender's: longer than an SMTP conversation can take.
const LEASE: Duration = Duration::from_secs(60);
/// How often the outbox is looked at without a wake-up: rows of other instances'
/// requests, retries that came due.
const POLL: Duration = Duration::from_secs(1);
/// The longest wait between two tries of one message.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The wait before the try after `attempts` failed ones: 2 s, 4 s, 8 s, … up to 5 min.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    Duration::from_secs(2u64.saturating_pow(exp + 1)).min(MAX_BACKOFF)
}

/// Runs until `stop` turns true.
pub async fn run(mail: Arc<Mail>, pool: DbPool, transport: Transport, mut stop: watch::Receiver<bool>) {
    let wake = mail.wake_handle();
    let transport = Arc::new(transport);
    // Set by a failed try, cleared by the next success (which then retries the rest).
    let failing = Arc::new(AtomicBool::new(false));
    loop {
        if *stop.borrow() {
            return;
        }
        let claimed = match pool.get().await {
            Ok(mut conn) => {
                publish_backlog(&mut conn).await;
                db::outbox::claim(&mut conn, BATCH, LEASE).await.map_err(anyhow::Error::from)
            }
            Err(e) => Err(anyhow::Error::from(e)),
        };
        let rows = match claimed {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), "outbox: cannot claim messages");
                Vec::new()
            }
        };
        if rows.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        // The batch goes out together, over the transport's pooled connections: one
        // message costs a few round trips plus, with lettre 0.11.23, a delayed ACK of
        // about 40 ms (it writes the DATA terminator on its own without TCP_NODELAY),
        // so one at a time would cap a sender near 20 messages a second.
        let mut batch = tokio::task::JoinSet::new();
        for row in rows {
            let (mail, pool, transport, failing) = (mail.clone(), pool.clone(), transport.clone(), failing.clone());
            batch.spawn(async move {
                if let Err(err) = deliver(&mail, &pool, &transport, &failing, row).await {
                    tracing::warn!(error = format!("{err:#}"), "outbox: cannot record a delivery");
                }
            });
        }
        while batch.join_next().await.is_some() {}
    }
}

async fn publish_backlog(conn: &mut AsyncPgConnection) {
    if let Ok(b) = db::outbox::backlog(conn).await {
        metrics::gauge!("authgraph_mail_waiting").set(b.waiting as f64);
        metrics::gauge!("authgraph_mail_retrying").set(b.retrying as f64);
        let age = b.oldest.map_or(0.0, |oldest| (b.at - oldest).num_milliseconds().max(0) as f64 / 1000.0);
        metrics::gauge!("authgraph_mail_oldest_waiting_seconds").set(age);
    }
}

/// One claimed row, to its outcome.
async fn deliver(
    mail: &Mail,
    pool: &DbPool,
    transport: &Transport,
    failing: &AtomicBool,
    row: OutboxRow,
) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    if row.created_at + mail.give_up_after < Utc::now() {
        tracing::warn!(id = row.id, attempts = row.attempts, "outbox: giving up on a message");
        metrics::counter!("authgraph_mail_abandoned_total").increment(1);
        db::outbox::abandon(&mut conn, row.id, "not accepted within MAIL_GIVE_UP_AFTER").await?;
        return Ok(());
    }
    // Every recipient was written in canonical form; one that no longer parses (written
    // before addresses had keys) cannot be delivered as stored.
    let Ok(recipient) = EmailAddress::parse(&row.recipient) else {
        db::outbox::abandon(&mut conn, row.id, "the recipient is not a deliverable address").await?;
        return Ok(());
    };
    let (recipient, subject, text, html) = if row.kind == db::outbox::ADDRESS_UNVERIFIED {
        let m = mail.message(&recipient, &Content::AddressUnverified);
        (recipient, m.subject.unwrap_or_default(), m.text_body.unwrap_or_default(), m.html_body.unwrap_or_default())
    } else if row.kind == db::outbox::RESET_REQUEST {
        match resolve_reset(mail, &mut conn, &row, &recipient).await? {
            Some(message) => message,
            None => {
                // No account has this verified address: nothing is sent, and the
                // request already answered exactly as it would have otherwise.
                db::outbox::abandon(&mut conn, row.id, "no account with this verified address").await?;
                return Ok(());
            }
        }
    } else {
        match (row.subject, row.text_body, row.html_body) {
            (Some(s), Some(t), Some(h)) => (recipient, s, t, h),
            _ => {
                db::outbox::abandon(&mut conn, row.id, "message without a body").await?;
                return Ok(());
            }
        }
    };
    // The connection goes back to the pool while the SMTP server is talked to.
    drop(conn);
    let outcome = transport.send(&mail.from, &recipient, &subject, text, html).await;
    let mut conn = pool.get().await?;
    match outcome {
        Ok(()) => {
            db::outbox::mark_sent(&mut conn, row.id).await?;
            metrics::counter!("authgraph_mail_sent_total").increment(1);
            if failing.swap(false, Ordering::Relaxed) {
                // The server is back after failing this sender: the messages that
                // failed meanwhile need not sit out their backoff.
                let due = db::outbox::retry_now(&mut conn).await?;
                if due > 0 {
                    tracing::info!(due, "outbox: mail server reachable again, retrying at once");
                    mail.wake();
                }
            }
            let latency = (Utc::now() - row.created_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!("authgraph_mail_delivery_seconds").record(latency);
        }
        Err(SendError::Transient(error)) => {
            failing.store(true, Ordering::Relaxed);
            let wait = backoff(row.attempts);
            tracing::warn!(id = row.id, attempts = row.attempts + 1, retry_in = ?wait, error, "outbox: send failed, will retry");
            metrics::counter!("authgraph_mail_failed_total").increment(1);
            db::outbox::mark_failed(&mut conn, row.id, &error, wait).await?;
        }
        Err(SendError::Permanent(error)) => {
            tracing::warn!(id = row.id, error, "outbox: refused for good, abandoned");
            metrics::counter!("authgraph_mail_failed_total").increment(1);
            metrics::counter!("authgraph_mail_abandoned_total").increment(1);
            db::outbox::abandon(&mut conn, row.id, &error).await?;
        }
    }
    Ok(())
}

/// A reset request becomes its message, in one transaction with the token, if an
/// account has the address verified.
async fn resolve_reset(
    mail: &Mail,
    conn: &mut AsyncPgConnection,
    row: &OutboxRow,
    recipient: &EmailAddress,
) -> anyhow::Result<Option<(EmailAddress, String, String, String)>> {
    let resolved = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let Some(user) = db::users::find_by_verified_email(conn, recipient).await? else {
                return Ok(None);
            };
            // To the address as the account stored it, whatever spelling was asked for.
            let address = user.verified_address().unwrap_or_else(|| recipient.clone());
            let message = mail.token_message(conn, user.id, Purpose::ResetPassword, &address).await?;
            db::outbox::resolve(conn, row.id, &message).await?;
            Ok(Some((address, message)))
        })
        .await?;
    Ok(resolved.and_then(|(address, m)| Some((address, m.subject?, m.text_body?, m.html_body?))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(1), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(64));
        assert_eq!(backoff(8), MAX_BACKOFF);
        assert_eq!(backoff(1000), MAX_BACKOFF);
    }
}
