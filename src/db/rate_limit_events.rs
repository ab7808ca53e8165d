//! Queries on `rate_limit_events`: a sliding-window counter per (bucket, key).
//!
//! An attempt is taken (checked and counted) in one transaction, under an advisory lock
//! per counter, before the work it limits: N concurrent attempts against a limit of L
//! get at most L through, because each waits for the previous one's count to commit.
//! Counting afterwards, as the first version did, let every attempt in flight pass.

use std::time::Duration;

use diesel::{
    QueryableByName,
    prelude::*,
    sql_query,
    sql_types::{Array, BigInt, Double, Text},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// One counter an attempt is taken from.
#[derive(Debug, Clone)]
pub struct Counter<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub limit: u32,
    pub window: Duration,
}

/// Takes one attempt from every counter, or from none: under each counter's advisory
/// lock (taken in one order, so two takes cannot deadlock), if any counter is at its
/// limit, `Err((seconds, index))` of the longest-blocked one and when it frees a slot;
/// otherwise one
/// event is inserted in each and their ids returned, so the caller can forgive exactly
/// its own attempt later.
pub async fn take(
    conn: &mut AsyncPgConnection,
    counters: &[Counter<'_>],
) -> QueryResult<Result<Vec<i64>, (f64, usize)>> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            let names: Vec<String> = counters.iter().map(|c| format!("{}\n{}", c.bucket, c.key)).collect();
            // The sort happens in the subquery, so the locks are taken in hash order.
            sql_query(
                "SELECT pg_advisory_xact_lock(h) FROM                  (SELECT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY h) AS ordered",
            )
            .bind::<Array<Text>, _>(&names)
            .execute(conn)
            .await?;
            let mut blocked: Option<(f64, usize)> = None;
            for (i, c) in counters.iter().enumerate() {
                if let Some(seconds) = blocked_for(conn, c.bucket, c.key, c.limit, c.window).await?
                    && blocked.is_none_or(|(longest, _)| seconds > longest)
                {
                    blocked = Some((seconds, i));
                }
            }
            if let Some(blocked) = blocked {
                return Ok(Err(blocked));
            }
            let rows: Vec<_> = counters
                .iter()
                .map(|c| (rate_limit_events::bucket.eq(c.bucket), rate_limit_events::key.eq(c.key)))
                .collect();
            let ids = diesel::insert_into(rate_limit_events::table)
                .values(rows)
                .returning(rate_limit_events::id)
                .get_results(conn)
                .await?;
            Ok(Ok(ids))
    })
    .await
}

/// Removes the events of one attempt (one that turned out not to be a failure).
pub async fn forgive(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::delete(rate_limit_events::table.filter(rate_limit_events::id.eq_any(ids))).execute(conn).await
}

use super::schema::rate_limit_events;

#[derive(QueryableByName)]
struct RetryAfter {
    #[diesel(sql_type = Double)]
    seconds: f64,
}

/// If `key` already has `limit` events within `window`, the seconds until the oldest
/// of the latest `limit` leaves the window; otherwise `None`. Uses the database clock
/// only, so instances with skewed clocks agree.
async fn blocked_for(
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

/// Deletes events older than `age`; they no longer count in any window.
pub async fn prune(conn: &mut AsyncPgConnection, age: Duration) -> QueryResult<usize> {
    let cutoff = chrono::Utc::now() - age;
    diesel::delete(rate_limit_events::table.filter(rate_limit_events::at.lt(cutoff))).execute(conn).await
}
