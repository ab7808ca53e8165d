//! Queries on `rate_limit_events`: a sliding-window counter per (bucket, key).

use std::time::Duration;

use diesel::{
    QueryableByName,
    prelude::*,
    sql_query,
    sql_types::{BigInt, Double, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::rate_limit_events;

#[derive(QueryableByName)]
struct RetryAfter {
    #[diesel(sql_type = Double)]
    seconds: f64,
}

/// If `key` already has `limit` events within `window`, the seconds until the oldest
/// of the latest `limit` leaves the window; otherwise `None`. Uses the database clock
/// only, so instances with skewed clocks agree.
pub async fn blocked_for(
    conn: &mut AsyncPgConnection,
    bucket: &str,
    key: &str,
    limit: u32,
    window: Duration,
) -> QueryResult<Option<f64>> {
    if limit == 0 {
        return Ok(None);
    }
    let window_secs = window.as_secs_f64();
    let row: Option<RetryAfter> = sql_query(
        "SELECT EXTRACT(EPOCH FROM (at + make_interval(secs => $3) - now()))::float8 AS seconds \
         FROM rate_limit_events \
         WHERE bucket = $1 AND key = $2 AND at > now() - make_interval(secs => $3) \
         ORDER BY at DESC OFFSET $4 LIMIT 1",
    )
    .bind::<Text, _>(bucket)
    .bind::<Text, _>(key)
    .bind::<Double, _>(window_secs)
    .bind::<BigInt, _>(i64::from(limit) - 1)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(|r| r.seconds.max(0.0)))
}

pub async fn record(conn: &mut AsyncPgConnection, bucket: &str, key: &str) -> QueryResult<usize> {
    diesel::insert_into(rate_limit_events::table)
        .values((rate_limit_events::bucket.eq(bucket), rate_limit_events::key.eq(key)))
        .execute(conn)
        .await
}

pub async fn clear(conn: &mut AsyncPgConnection, bucket: &str, key: &str) -> QueryResult<usize> {
    diesel::delete(
        rate_limit_events::table.filter(rate_limit_events::bucket.eq(bucket)).filter(rate_limit_events::key.eq(key)),
    )
    .execute(conn)
    .await
}

/// Deletes events older than `age`; they no longer count in any window.
pub async fn prune(conn: &mut AsyncPgConnection, age: Duration) -> QueryResult<usize> {
    let cutoff = chrono::Utc::now() - age;
    diesel::delete(rate_limit_events::table.filter(rate_limit_events::at.lt(cutoff))).execute(conn).await
}
