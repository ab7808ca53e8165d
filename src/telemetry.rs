//! Metrics in Prometheus text format, served at `/metrics`.
//!
//! The `metrics` facade records from anywhere in the code; one process-wide
//! Prometheus recorder collects. Gauges that describe state (the pool, the database)
//! are read when scraped, so they are never stale and cost nothing between scrapes.
//!
//! Labels are kept to bounded sets: `operation` is a root field of the schema (or
//! `invalid`), never the client's operation name, which a client could vary without
//! limit.

use std::{sync::OnceLock, time::Duration};

use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::db::{self, DbPool};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets, in seconds: from a cached `me` to a queued argon2 hash.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the recorder on first use; later calls return the same handle.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .expect("buckets are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        describe();
        handle
    })
}

fn describe() {
    describe_counter!("authgraph_graphql_requests_total", "GraphQL operations by root field and outcome code");
    describe_histogram!("authgraph_graphql_request_duration_seconds", "GraphQL operation latency by root field");
    describe_counter!(
        "authgraph_refresh_reuse_detected_total",
        "Refresh tokens replayed after rotation (session revoked)"
    );
    describe_counter!("authgraph_rate_limited_total", "Requests refused by a brute-force limit, by bucket");
    describe_counter!(
        "authgraph_persisted_queries_total",
        "Persisted-query lookups by outcome: hit, miss (client resends the text), registered, refused"
    );
    describe_gauge!("authgraph_argon2_jobs", "Password hashes running or waiting for a core");
    describe_gauge!("authgraph_db_pool_connections", "Database pool connections by state");
    describe_gauge!("authgraph_db_pool_waiting", "Requests waiting for a database connection");
    describe_gauge!("authgraph_database_up", "1 when the database answered the last scrape");
    describe_gauge!("authgraph_embedded_postgres_up", "1 while the embedded PostgreSQL started by this process runs");
}

/// How often recorded samples are folded into their histograms' buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds the samples recorded since into their histograms' buckets, every
/// `UPKEEP_EVERY`. The recorder keeps each histogram sample until then (or until a
/// scrape): without this, a server that nobody scrapes grew by every request's
/// samples, in memory and in the page faults of getting it (seen in the benchmark as
/// server CPU per request rising through a run).
pub async fn upkeep_periodically() {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        every.tick().await;
        handle().run_upkeep();
    }
}

/// Records whether this process runs the embedded PostgreSQL.
pub fn set_embedded_database(running: bool) {
    handle();
    gauge!("authgraph_embedded_postgres_up").set(if running { 1.0 } else { 0.0 });
}

/// The metrics page, with the state gauges read now.
pub async fn render(pool: &DbPool) -> String {
    let status = pool.status();
    gauge!("authgraph_db_pool_connections", "state" => "max").set(status.max_size as f64);
    gauge!("authgraph_db_pool_connections", "state" => "open").set(status.size as f64);
    gauge!("authgraph_db_pool_connections", "state" => "idle").set(status.available as f64);
    gauge!("authgraph_db_pool_waiting").set(status.waiting as f64);
    let up = tokio::time::timeout(Duration::from_secs(1), db::ping(pool)).await.ok().flatten().is_some();
    gauge!("authgraph_database_up").set(if up { 1.0 } else { 0.0 });
    handle().render()
}
