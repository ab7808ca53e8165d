//! Database access: the pool, migrations, and the queries of each table.
//!
//! Queries are plain async functions over `&mut AsyncPgConnection`, so a service can
//! run several of them in one transaction. Diesel with diesel-async talks to
//! PostgreSQL through tokio-postgres: no libpq at build or run time.

pub mod audit;
pub mod change;
pub mod email_tokens;
mod errors;
pub mod events;
pub mod factors;
mod failover;
pub mod identities;
pub mod ids;
mod migrate;
pub mod models;
pub mod network_slots;
pub mod outbox;
pub mod passkeys;
pub mod rate_limit_events;
pub mod refresh_tokens;
pub mod schema;
pub mod sessions;
pub mod signin_addresses;
pub mod tls;
pub mod users;

use std::time::Duration;

use anyhow::Context;
use diesel::{QueryableByName, sql_query, sql_types::Bool};
use diesel_async::{
    AsyncPgConnection, RunQueryDsl,
    pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool},
};

pub use errors::{is_connection_error, unique_violation};
pub use migrate::{MIGRATIONS, run_migrations};

diesel::define_sql_function! {
    /// The database's clock as a column of a query: a function call (not a SQL
    /// literal), so the statement that selects it is prepared once per connection.
    #[sql_name = "now"]
    fn database_now() -> diesel::sql_types::Timestamptz;
}

pub type DbPool = deadpool::Pool<AsyncPgConnection>;
pub type PoolError = deadpool::PoolError;

/// A pool that waits at most `acquire_timeout` for a connection (also for a new one
/// to be made), so a database outage fails requests quickly instead of hanging them.
pub fn pool(url: &str, max_size: usize, acquire_timeout: Duration) -> anyhow::Result<DbPool> {
    // `Fast` recycling: no test query each time a connection leaves the pool. The
    // default (`Verified`) doubled the round trips of every request in the benchmark;
    // dead connections are caught by `is_broken` and by `read`'s retry instead.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let target = tls::Target::parse(url)?;
    config.custom_setup = Box::new(move |_| Box::pin(connect(target.clone())));
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    deadpool::Pool::builder(manager)
        .max_size(max_size)
        // Not a connection made before a server refused a write (`failover`).
        .pre_recycle(deadpool::Hook::sync_fn(|_, metrics| match failover::is_current(metrics.created) {
            true => Ok(()),
            false => Err(deadpool::HookError::message("made before a server refused a write")),
        }))
        .wait_timeout(Some(acquire_timeout))
        .create_timeout(Some(acquire_timeout))
        .recycle_timeout(Some(acquire_timeout))
        .runtime(::deadpool::Runtime::Tokio1)
        .build()
        .context("cannot build the database pool")
}

/// Opens a pool connection. Its prepared statements always keep their generic plan
/// (`plan_cache_mode`): every statement here is a short indexed lookup whose plan does
/// not depend on its parameters, and under the default PostgreSQL plans anew at every
/// execution any statement whose generic plan it estimates dearer, such as a page's
/// `LIMIT $1` over a large table (estimated as a tenth of it): measured with
/// `pgbench -M prepared` on the users page at a million accounts, 12–13k executions per
/// second re-planned against 19–23k with the plan kept.
async fn connect(target: tls::Target) -> diesel::ConnectionResult<AsyncPgConnection> {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = target.connect().await?;
    conn.batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

/// Creates `name` on the server of `admin_url` unless it exists (used for the embedded
/// cluster and by the test harness). `name` must be a plain identifier.
pub async fn create_database(admin_url: &str, name: &str, template: Option<&str>) -> anyhow::Result<()> {
    anyhow::ensure!(is_identifier(name), "bad database name {name:?}");
    let mut conn = establish(admin_url).await.context("cannot connect to PostgreSQL")?;
    let found: Exists = sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(&mut conn)
        .await?;
    if !found.exists {
        let mut stmt = format!("CREATE DATABASE \"{name}\"");
        if let Some(template) = template {
            anyhow::ensure!(is_identifier(template), "bad template name {template:?}");
            stmt.push_str(&format!(" TEMPLATE \"{template}\""));
        }
        sql_query(stmt).execute(&mut conn).await?;
    }
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A query's future, borrowing its connection.
pub type ReadFuture<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = diesel::QueryResult<T>> + Send + 'c>>;

/// Runs an idempotent read, retrying it once on a fresh connection when the first
/// attempt failed because of the connection (a database restart leaves dead
/// connections in the pool; the first request to meet one should not fail for it).
///
/// The closure returns a boxed future (`Box::pin(async move { … })`): that is what
/// lets the caller's future stay `Send` across the borrow of the connection.
pub async fn read<T>(
    pool: &DbPool,
    mut query: impl for<'c> FnMut(&'c mut AsyncPgConnection) -> ReadFuture<'c, T>,
) -> crate::error::AppResult<T> {
    let first = {
        let mut conn = pool.get().await?;
        query(&mut conn).await
    };
    match first {
        Err(err) if errors::is_connection_error(&err) => {
            tracing::debug!(error = %err, "retrying a read on a new connection");
            let mut conn = pool.get().await?;
            Ok(query(&mut conn).await?)
        }
        other => Ok(other?),
    }
}

/// One connection to `url` (TLS as its `sslmode` says), outside the pool: the `LISTEN`
/// connection, the migrations', the test harness's.
pub async fn establish(url: &str) -> diesel::ConnectionResult<AsyncPgConnection> {
    let target =
        tls::Target::parse(url).map_err(|e| diesel::ConnectionError::InvalidConnectionUrl(format!("{e:#}")))?;
    target.connect().await
}

#[derive(QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Whether the database answers, and whether this connection to it is encrypted (from
/// the server's own view, `pg_stat_ssl`): the readiness probe. `None` when it does not
/// answer.
pub async fn ping(pool: &DbPool) -> Option<bool> {
    let mut conn = pool.get().await.ok()?;
    let row: Encrypted =
        sql_query("SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS ssl")
            .get_result(&mut conn)
            .await
            .ok()?;
    metrics::gauge!("authgraph_database_tls").set(if row.ssl { 1.0 } else { 0.0 });
    Some(row.ssl)
}
