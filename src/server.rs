//! Start-up and shutdown of the binary: database, migrations, HTTP server, CLI.

use std::io::IsTerminal;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    admin,
    app::AppState,
    config::{Cli, Command, Config},
    db,
    embedded_postgres::{self, EmbeddedPostgres},
    events, graphql, http, mail, maintenance, secret, telemetry,
};

/// Name of the application database on the embedded cluster.
const EMBEDDED_DATABASE: &str = "authgraph";

/// The database in use: an external one, or the embedded cluster we started.
pub struct Database {
    pub url: String,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// `DATABASE_URL` if set; otherwise starts (and if needed creates) the embedded
    /// cluster under `DATA_DIR`.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        if let Some(url) = config.database_url() {
            return Ok(Self { url: url.to_owned(), embedded: None });
        }
        Self::start_embedded(config).await
    }

    /// For the admin commands: like `open`, but when a server already runs on
    /// DATA_DIR, use its cluster rather than refuse.
    pub async fn open_shared(config: &Config) -> anyhow::Result<Self> {
        if config.database_url().is_none() && EmbeddedPostgres::held_by_server(&config.data_dir) {
            let url = EmbeddedPostgres::running_url(&config.data_dir, EMBEDDED_DATABASE)?;
            return Ok(Self { url, embedded: None });
        }
        Self::open(config).await
    }

    async fn start_embedded(config: &Config) -> anyhow::Result<Self> {
        let opts = embedded_postgres::Options {
            root: config.data_dir.clone(),
            os_user: config.pg_os_user.clone(),
            remove_on_exit: false,
            unsafe_fast: false,
            statement_stats: false,
        };
        tracing::info!(data_dir = %config.data_dir.display(), "DATABASE_URL unset: starting the embedded PostgreSQL");
        let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&opts)).await??;
        db::create_database(&pg.url("postgres"), EMBEDDED_DATABASE, None).await?;
        Ok(Self { url: pg.url(EMBEDDED_DATABASE), embedded: Some(pg) })
    }

    /// Stops the embedded cluster, if we started one.
    pub async fn close(self) -> anyhow::Result<()> {
        if let Some(pg) = self.embedded {
            telemetry::set_embedded_database(false);
            tokio::task::spawn_blocking(move || pg.stop()).await??;
            tracing::info!("embedded PostgreSQL stopped");
        }
        Ok(())
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = cli.config;
    if let Some(Command::Schema) = cli.command {
        print!("{}", graphql::sdl());
        return Ok(());
    }
    init_tracing(&config);
    config.social.load_providers(|var| std::env::var(var).ok())?;
    config.validate()?;
    let database = match cli.command {
        Some(Command::Users(_) | Command::Sessions(_) | Command::Audit(_)) => Database::open_shared(&config).await?,
        _ => Database::open(&config).await?,
    };
    let result = match cli.command {
        None | Some(Command::Serve) => serve(config, &database).await,
        Some(Command::Migrate) => migrate(&database.url).await.map(|_| ()),
        Some(Command::Users(cmd)) => match admin_pool(&config, &database.url).await {
            // The operator's changes name them in the audit trail.
            Ok(pool) => {
                db::change::ORIGIN.scope(admin::cli::operator(), admin::cli::users_command(&pool, &config, cmd)).await
            }
            Err(err) => Err(err),
        },
        Some(Command::Audit(cmd)) => match admin_pool(&config, &database.url).await {
            Ok(pool) => admin::cli::audit_command(&pool, &config, cmd).await,
            Err(err) => Err(err),
        },
        Some(Command::Sessions(cmd)) => match admin_pool(&config, &database.url).await {
            Ok(pool) => admin::cli::sessions_command(&pool, &config, cmd).await,
            Err(err) => Err(err),
        },
        Some(Command::Schema) => unreachable!("handled above"),
    };
    let closed = database.close().await;
    result.and(closed)
}

/// How the connections to the database are protected, checked before any is made: in
/// production a database that is not on this machine needs TLS (`sslmode=require` or
/// stronger) or `sslmode=disable` written out. Logged either way.
fn check_database_tls(config: &Config, url: &str) -> anyhow::Result<()> {
    let target = db::tls::Target::parse(url)?;
    if config.is_production() && !target.is_local() && target.mode == db::tls::SslMode::Prefer {
        anyhow::bail!(
            "DATABASE_URL: a database on another machine needs sslmode=require, verify-ca or verify-full in \
             production (or sslmode=disable, written out); {} would send password and token hashes unprotected \
             whenever the server does not offer TLS",
            if target.mode_explicit { "sslmode=prefer" } else { "no sslmode (libpq's prefer)" }
        );
    }
    tracing::info!(sslmode = target.mode.as_str(), local = target.is_local(), "database connections");
    Ok(())
}

async fn migrate(url: &str) -> anyhow::Result<usize> {
    let applied = db::run_migrations(url).await?;
    if applied > 0 {
        tracing::info!(applied, "migrations applied");
    }
    Ok(applied)
}

async fn serve(config: Config, database: &Database) -> anyhow::Result<()> {
    check_database_tls(&config, &database.url)?;
    migrate(&database.url).await?;
    let keys = secret::resolve(&config)?;
    let pool = db::pool(&database.url, config.database_pool_size, config.database_acquire_timeout)?;
    let (listen_addr, metrics_addr, shutdown_timeout) =
        (config.listen_addr, config.metrics_addr, config.shutdown_timeout);
    telemetry::set_embedded_database(database.embedded.is_some());
    let open_files = http::serve::raise_open_files_limit();
    let max_connections =
        http::serve::fit_connections(config.http_max_connections, open_files, config.database_pool_size + 64);
    if max_connections < config.http_max_connections {
        tracing::warn!(
            max_connections,
            open_files,
            "HTTP_MAX_CONNECTIONS lowered to fit the open-files limit (raise it with ulimit -n)"
        );
    }
    let connection_limits = http::serve::ConnectionLimits {
        header_timeout: config.http_header_timeout,
        keepalive_timeout: config.http_keepalive_timeout,
        max_connections,
    };
    let state = AppState::new(config, &keys, pool.clone())?;
    let router = http::app(state.clone());
    let listener =
        TcpListener::bind(listen_addr).await.with_context(|| format!("cannot listen on LISTEN_ADDR {listen_addr}"))?;

    // One signal stops every listener; the deadline starts when it fires.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    if let Some(addr) = metrics_addr {
        let metrics_listener =
            TcpListener::bind(addr).await.with_context(|| format!("cannot listen on METRICS_ADDR {addr}"))?;
        tracing::info!("metrics on http://{addr}/metrics");
        let metrics_router = http::metrics_app(state.clone());
        tokio::spawn(http::serve::serve(metrics_listener, metrics_router, connection_limits, stopped(stop_rx.clone())));
    }
    tracing::info!("listening on http://{}/graphql", listener.local_addr()?);
    state.social.discover_in_background();
    let chainer = tokio::spawn(crate::audit::chain::run(pool.clone(), state.audit.clone(), stop_rx.clone()));
    let pruner = tokio::spawn(maintenance::prune_periodically(pool.clone(), state.config.clone()));
    let metrics_upkeep = tokio::spawn(crate::telemetry::upkeep_periodically());
    let listener_task =
        tokio::spawn(events::listener::run(state.events.clone(), database.url.clone(), stop_rx.clone()));
    let sender = if state.config.email.enabled {
        let transport = mail::transport::Transport::new(&state.config.email, &state.config.data_dir)?;
        tracing::info!("mail: {}", transport.describe());
        Some(tokio::spawn(mail::outbox::run(state.auth.mail.clone(), pool.clone(), transport, stop_rx.clone())))
    } else {
        tracing::info!("mail: off (EMAIL_ENABLED=false)");
        None
    };
    let (stopping, draining) = (state.stopping.clone(), state.draining.clone());
    let drain = state.config.shutdown_drain;
    let server = http::serve::serve(listener, router, connection_limits, async move {
        shutdown_signal().await;
        if !drain.is_zero() {
            // Still serving: the load balancer sees /readyz fail and moves traffic away.
            tracing::info!(?drain, "shutting down: draining");
            draining.send_replace(true);
            tokio::time::sleep(drain).await;
        }
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop_tx.send(true);
        let _ = stopping.send(true);
    });
    let deadline = async {
        stopped(stop_rx.clone()).await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    tokio::select! {
        served = server => served?,
        () = deadline => tracing::warn!(?shutdown_timeout, "SHUTDOWN_TIMEOUT reached with requests still in flight"),
    }
    // Sockets were told to close (1001); give their close frames a moment to leave.
    let sockets_closed = async {
        while state.events.sockets.count() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sockets_closed).await;
    pruner.abort();
    metrics_upkeep.abort();
    listener_task.abort();
    // It links what was written before the stop; later rows wait for any instance's
    // chainer (a peer's, or this one's next start).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), chainer).await;
    if let Some(sender) = sender {
        // It stops between messages; one in the middle of an SMTP conversation is
        // given a moment, and is otherwise sent again after its lease.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sender).await;
    }
    pool.close();
    tracing::info!("stopped");
    Ok(())
}

async fn admin_pool(config: &Config, url: &str) -> anyhow::Result<db::DbPool> {
    check_database_tls(config, url)?;
    migrate(url).await?;
    db::pool(url, 2, config.database_acquire_timeout)
}

/// Resolves on Ctrl-C or SIGTERM: axum then stops accepting, finishes in-flight
/// requests, and `serve` returns.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The log filter: `RUST_LOG`, except that the PostgreSQL driver never logs below
/// info, since at debug it prints every query's parameters (password hashes, token
/// hashes) whatever `RUST_LOG` asks for.
pub fn log_filter(config: &Config) -> tracing_subscriber::EnvFilter {
    let directives = format!("{},tokio_postgres=info", config.log);
    tracing_subscriber::EnvFilter::try_new(directives).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::fmt;
    let builder = fmt().with_env_filter(log_filter(config)).with_writer(std::io::stderr);
    let _ = if config.is_production() {
        builder.json().try_init()
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_a_remote_database_without_tls_said_out_loud() {
        let mut config = Config::defaults();
        config.app_env = crate::config::AppEnv::Production;
        let err = |url: &str| check_database_tls(&config, url).unwrap_err().to_string();
        assert!(err("postgres://u@db.example/app").contains("no sslmode"));
        assert!(err("postgres://u@db.example/app?sslmode=prefer").contains("sslmode=prefer"));
        for fine in [
            "postgres://u@db.example/app?sslmode=require",
            "postgres://u@db.example/app?sslmode=disable",
            "postgres://u@127.0.0.1/app",
            "postgresql://u@/app?host=/run/postgresql",
        ] {
            assert!(check_database_tls(&config, fine).is_ok(), "{fine}");
        }
        config.app_env = crate::config::AppEnv::Development;
        assert!(check_database_tls(&config, "postgres://u@db.example/app").is_ok(), "development may");
    }
}
