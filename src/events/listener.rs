//! The instance's `LISTEN` connection: its own connection (never one of the pool's, so
//! it is never handed to a request), reconnected with backoff when it breaks, checked
//! by a heartbeat so a silently dead link is noticed too.

use std::{sync::Arc, time::Duration};

use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::Hub;
use crate::db::events::{CHANNEL, Event, EventKind};

/// The name the connection has in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "authgraph-listener";
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// At most a second between attempts: after a failover the new primary is listened to
/// within a second of taking writes, so the session cache is off and other sessions'
/// events are missed no longer than that; an attempt a second costs a database that
/// is down next to nothing.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A `SELECT 1` this often proves the connection alive between notifications.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long the heartbeat waits for its answer: a link that dies silently is noticed
/// (and the session cache dropped) within `HEARTBEAT + HEARTBEAT_TIMEOUT`.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// Listens until `stop` turns true, feeding `hub`.
pub async fn run(hub: Arc<Hub>, url: String, mut stop: watch::Receiver<bool>) {
    let mut backoff = FIRST_BACKOFF;
    let mut first = true;
    loop {
        match connect(&url).await {
            Ok(mut conn) => {
                backoff = FIRST_BACKOFF;
                if !first {
                    metrics::counter!("authgraph_events_reconnects_total").increment(1);
                    tracing::info!("events: LISTEN connection made again");
                }
                first = false;
                // Whatever was announced while no connection listened is lost here:
                // every socket's session is checked again, in one query.
                match recheck_sockets(&hub, &mut conn).await {
                    Ok(()) => {
                        hub.set_listening(true);
                        hub.resync();
                        let stopped = listen(&hub, &mut conn, &mut stop).await;
                        hub.set_listening(false);
                        if stopped {
                            return;
                        }
                        tracing::warn!("events: LISTEN connection lost; reconnecting");
                    }
                    Err(err) => tracing::warn!(error = %err, "events: cannot re-check the sockets' sessions"),
                }
            }
            Err(err) => tracing::warn!(error = %err, ?backoff, "events: cannot open the LISTEN connection"),
        }
        if continue_after(&mut backoff, &mut stop).await {
            return;
        }
    }
}

/// Waits out the backoff and doubles it; true if `stop` came first.
async fn continue_after(backoff: &mut Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(*backoff) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    stopped
}

/// Ends the sockets whose sessions ended while nobody listened.
async fn recheck_sockets(hub: &Hub, conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    let open = hub.sockets.sessions();
    if open.is_empty() {
        return Ok(());
    }
    let live = crate::db::sessions::live_among(conn, &open).await?;
    for session in open.into_iter().filter(|s| !live.contains(s)) {
        hub.sockets.end_session(session);
    }
    Ok(())
}

async fn connect(url: &str) -> diesel::ConnectionResult<AsyncPgConnection> {
    let mut conn = crate::db::establish(url).await?;
    let setup = format!("SET application_name = '{APPLICATION_NAME}'; LISTEN {CHANNEL}");
    conn.batch_execute(&setup).await.map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

/// Hands notifications to the hub until the connection breaks (false) or `stop` (true).
async fn listen(hub: &Hub, conn: &mut AsyncPgConnection, stop: &mut watch::Receiver<bool>) -> bool {
    loop {
        let beat = tokio::time::sleep(HEARTBEAT);
        {
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            tokio::pin!(beat);
            loop {
                tokio::select! {
                    notification = notifications.next() => match notification {
                        Some(Ok(n)) => receive(hub, &n.payload),
                        Some(Err(err)) => {
                            tracing::warn!(error = %err, "events: LISTEN connection failed");
                            return false;
                        }
                        None => return false,
                    },
                    () = &mut beat => break,
                    _ = stop.wait_for(|s| *s) => return true,
                }
            }
        }
        let alive = tokio::time::timeout(HEARTBEAT_TIMEOUT, diesel::sql_query("SELECT 1").execute(conn)).await;
        if !matches!(alive, Ok(Ok(_))) {
            return false;
        }
    }
}

fn receive(hub: &Hub, payload: &str) {
    let Some(event) = Event::parse(payload) else {
        tracing::warn!(payload, "events: a notification that is no event");
        return;
    };
    metrics::counter!("authgraph_events_received_total").increment(1);
    hub.cache.apply(&event);
    if let (EventKind::SessionEnded, Some(session)) = (event.kind, event.session) {
        hub.sockets.end_session(session);
    }
    metrics::histogram!("authgraph_events_notify_delay_seconds").record(event.age().as_secs_f64());
    hub.publish(event);
}
