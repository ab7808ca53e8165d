//! Session events as the database announces them: the triggers of migration 000009
//! (sessions opened and ended, accounts updated) and `password_changed` below, each a
//! NOTIFY on `CHANNEL` inside the transaction of the change, so nothing is announced
//! unless it committed.

use chrono::{DateTime, Utc};
use diesel::{
    QueryResult,
    sql_types::{Nullable, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;

use super::ids::{SessionId, UserId};

/// The channel every instance listens on.
pub const CHANNEL: &str = "authgraph_events";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    SessionStarted,
    SessionEnded,
    PasswordChanged,
    AccountUpdated,
}

/// One announcement, as the payload carries it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: EventKind,
    pub user: UserId,
    pub session: Option<SessionId>,
    pub at: DateTime<Utc>,
    pub user_agent: Option<String>,
}

impl Event {
    /// The event a payload announces; `None` for anything else on the channel.
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }

    /// How long ago the announcing transaction's clock said `at` (zero if it runs ahead).
    pub fn age(&self) -> std::time::Duration {
        (Utc::now() - self.at).to_std().unwrap_or_default()
    }
}

/// Announces that the account's password was changed or reset, by `session` if a
/// session made the change; inside the caller's transaction.
pub async fn password_changed(
    conn: &mut AsyncPgConnection,
    user: UserId,
    session: Option<SessionId>,
) -> QueryResult<()> {
    diesel::sql_query("SELECT authgraph_announce('PASSWORD_CHANGED', $1, $2, NULL)")
        .bind::<SqlUuid, _>(user.as_uuid())
        .bind::<Nullable<SqlUuid>, _>(session.map(|s| s.as_uuid()))
        .execute(conn)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_as_the_triggers_write_them() {
        let user = UserId::random();
        let payload = format!(
            r#"{{"kind" : "SESSION_STARTED", "user" : "{user}", "session" : null, "at" : "2026-12-02T04:30:00.123456+00:00", "userAgent" : "curl/8"}}"#
        );
        let event = Event::parse(&payload).unwrap();
        assert_eq!(
            (event.kind, event.user, event.session, event.user_agent.as_deref()),
            (EventKind::SessionStarted, user, None, Some("curl/8"))
        );
        assert_eq!(Event::parse(r#"{"kind":"SOMETHING_ELSE"}"#), None);
        assert_eq!(Event::parse("not json"), None);
    }
}
