//! Queries on `outbox`, the transactional outbox of messages.
//!
//! A sender claims due rows with `FOR UPDATE SKIP LOCKED` and sets their
//! `leased_until` in the same statement, so the row is its own while it talks to the
//! SMTP server, without a transaction held open across the network; another instance
//! takes the row only once the lease has run out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::{
    dsl::now,
    prelude::*,
    sql_types::{BigInt, Double, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{
    models::{NewMessage, OutboxRow},
    schema::outbox,
};

pub const MESSAGE: &str = "MESSAGE";
pub const RESET_REQUEST: &str = "RESET_REQUEST";
/// Written by the migration that keyed addresses: the sender writes its notice.
pub const ADDRESS_UNVERIFIED: &str = "ADDRESS_UNVERIFIED";

/// Queues a message in the change's transaction; the sender wakes once it commits.
pub async fn insert(change: &mut super::change::Change<'_>, message: NewMessage) -> QueryResult<i64> {
    change.queued_mail();
    diesel::insert_into(outbox::table).values(message).returning(outbox::id).get_result(&mut **change).await
}

/// Claims up to `limit` due rows for `lease`, oldest due first.
pub async fn claim(conn: &mut AsyncPgConnection, limit: i64, lease: Duration) -> QueryResult<Vec<OutboxRow>> {
    diesel::sql_query(
        "UPDATE outbox SET leased_until = now() + make_interval(secs => $1) \
         WHERE id IN (SELECT id FROM outbox \
                      WHERE sent_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= now() \
                        AND (leased_until IS NULL OR leased_until <= now()) \
                      ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING id, kind, recipient, subject, text_body, html_body, created_at, attempts",
    )
    .bind::<Double, _>(lease.as_secs_f64())
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// Turns a reset request into the message it resolved to, addressed as the account
/// stores its address (whatever spelling the request used).
pub async fn resolve(conn: &mut AsyncPgConnection, id: i64, message: &NewMessage) -> QueryResult<usize> {
    diesel::update(outbox::table.find(id))
        .set((
            outbox::kind.eq(MESSAGE),
            outbox::recipient.eq(&message.recipient),
            outbox::subject.eq(&message.subject),
            outbox::text_body.eq(&message.text_body),
            outbox::html_body.eq(&message.html_body),
        ))
        .execute(conn)
        .await
}

/// Accepted by the mail server: the body (which holds a token) is deleted.
pub async fn mark_sent(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<usize> {
    diesel::update(outbox::table.find(id))
        .set((
            outbox::sent_at.eq(now),
            outbox::leased_until.eq(None::<chrono::DateTime<Utc>>),
            outbox::subject.eq(None::<String>),
            outbox::text_body.eq(None::<String>),
            outbox::html_body.eq(None::<String>),
            outbox::last_error.eq(None::<String>),
        ))
        .execute(conn)
        .await
}

/// A failed try: counted, and the next one not before `retry_in`.
pub async fn mark_failed(conn: &mut AsyncPgConnection, id: i64, error: &str, retry_in: Duration) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, leased_until = NULL, \
         next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
    )
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(error)
    .bind::<Double, _>(retry_in.as_secs_f64())
    .execute(conn)
    .await
}

/// Given up on (too old, refused for good, or nothing to send): the body is deleted.
pub async fn abandon(conn: &mut AsyncPgConnection, id: i64, error: &str) -> QueryResult<usize> {
    diesel::update(outbox::table.find(id))
        .set((
            outbox::abandoned_at.eq(now),
            outbox::leased_until.eq(None::<chrono::DateTime<Utc>>),
            outbox::last_error.eq(error),
            outbox::subject.eq(None::<String>),
            outbox::text_body.eq(None::<String>),
            outbox::html_body.eq(None::<String>),
        ))
        .execute(conn)
        .await
}

/// The mail server took a message again: rows backing off after failed tries (and not
/// leased by a sender) are due now rather than at their next backoff, so an outage's
/// backlog drains as soon as the server is back. The number of rows made due.
pub async fn retry_now(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::update(
        outbox::table
            .filter(outbox::sent_at.is_null())
            .filter(outbox::abandoned_at.is_null())
            .filter(outbox::leased_until.is_null())
            .filter(outbox::attempts.gt(0))
            .filter(outbox::next_attempt_at.gt(now)),
    )
    .set(outbox::next_attempt_at.eq(now))
    .execute(conn)
    .await
}

/// What waits: rows not yet sent nor abandoned, those of them that failed at least
/// once, and when the oldest was queued.
#[derive(Debug, QueryableByName)]
pub struct Backlog {
    #[diesel(sql_type = BigInt)]
    pub waiting: i64,
    #[diesel(sql_type = BigInt)]
    pub retrying: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub oldest: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
}

pub async fn backlog(conn: &mut AsyncPgConnection) -> QueryResult<Backlog> {
    diesel::sql_query(
        "SELECT count(*) AS waiting, count(*) FILTER (WHERE attempts > 0) AS retrying, \
         min(created_at) AS oldest, now() AS at \
         FROM outbox WHERE sent_at IS NULL AND abandoned_at IS NULL",
    )
    .get_result(conn)
    .await
}

/// Deletes rows sent or abandoned before `cutoff` (their bodies are already gone).
pub async fn delete_finished_before(conn: &mut AsyncPgConnection, cutoff: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(outbox::table.filter(outbox::sent_at.lt(cutoff).or(outbox::abandoned_at.lt(cutoff))))
        .execute(conn)
        .await
}
