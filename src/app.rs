//! The state every request shares, built once from the configuration.

use std::sync::Arc;

use crate::{
    auth::Auth, config::Config, db::DbPool, events::Hub, factors::Factors, secret::Keys, session_cache::SessionCache,
    social::Social,
};

pub type SharedState = Arc<AppState>;

/// What the HTTP edge and the resolvers need: the services, which hold their own parts
/// (pool, keys, policies), and the configuration for the edge's own switches.
pub struct AppState {
    pub auth: Auth,
    /// The second factor's keys and clock (`factors`), beside `auth`.
    pub factors: Factors,
    /// Sign-in with other providers (`social`), beside `auth` too.
    pub social: Arc<Social>,
    /// The audit chain's keys (`audit`).
    pub audit: Arc<crate::audit::ChainKeys>,
    pub config: Config,
    /// Session events from every instance, fed by `events::listener` (started by the
    /// server, or by a test).
    pub events: Arc<Hub>,
    /// Turns true when the server begins to shut down: open sockets close with 1001.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Turns true on SIGTERM, `SHUTDOWN_DRAIN` before `stopping`: `/readyz` answers
    /// 503, responses close their connections, new sockets are refused.
    pub draining: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// `keys` are the resolved keys (see `secret::resolve`).
    pub fn new(config: Config, keys: &Keys, pool: DbPool) -> anyhow::Result<SharedState> {
        let cache = Arc::new(SessionCache::new(config.session_cache_entries));
        let events = Arc::new(Hub::new(cache.clone()));
        let auth = Auth::new(&config, keys, pool, cache)?;
        let factors = Factors::new(&config, &keys.factors)?;
        let social = Arc::new(Social::new(&config)?);
        let audit = Arc::new(crate::audit::ChainKeys::new(&keys.audit));
        crate::telemetry::handle();
        Ok(Arc::new(Self {
            auth,
            factors,
            social,
            audit,
            config,
            events,
            stopping: tokio::sync::watch::Sender::new(false),
            draining: tokio::sync::watch::Sender::new(false),
        }))
    }

    /// The database pool, shared by every service.
    pub fn pool(&self) -> &DbPool {
        &self.auth.pool
    }
}
