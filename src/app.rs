//! The state every request shares, built once from the configuration.

use std::{sync::Arc, time::Duration};

use secrecy::ExposeSecret;

use crate::{
    auth::{access_token::AccessTokens, password::PasswordHasher, rate_limit::RateLimits, refresh_token::ChainKey},
    config::Config,
    db::DbPool,
    secret::Keys,
};

pub type SharedState = Arc<AppState>;

pub struct AppState {
    pub pool: DbPool,
    pub tokens: AccessTokens,
    pub hasher: PasswordHasher,
    pub sessions: SessionPolicy,
    pub rate_limits: RateLimits,
    pub config: Config,
}

/// How long sessions and refresh tokens live.
pub struct SessionPolicy {
    /// Derives refresh-token successors: the current key first, then earlier ones, so
    /// a replay inside the reuse interval still finds its successor after a key change.
    pub chain_keys: Vec<ChainKey>,
    /// A session ends after this long without a refresh.
    pub idle_ttl: Duration,
    /// A session ends this long after it began.
    pub max_age: Duration,
    /// An already rotated token still yields the current one for this long.
    pub reuse_interval: Duration,
}

impl AppState {
    /// `keys` are the resolved keys (see `secret::resolve`).
    pub fn new(config: Config, keys: &Keys, pool: DbPool) -> anyhow::Result<SharedState> {
        let tokens = AccessTokens::new(&keys.jwt, &config.jwt_issuer, &config.jwt_audience, config.access_token_ttl)?;
        let hasher = PasswordHasher::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            config.argon2_queue_limit,
        )?;
        let sessions = SessionPolicy {
            chain_keys: std::iter::once(&keys.refresh.current)
                .chain(&keys.refresh.previous)
                .map(|k| ChainKey::from_key(k.expose_secret()))
                .collect(),
            idle_ttl: config.refresh_token_ttl,
            max_age: config.session_max_age,
            reuse_interval: config.refresh_reuse_interval,
        };
        let rate_limits = RateLimits::from_config(&config);
        crate::telemetry::handle();
        Ok(Arc::new(Self { pool, tokens, hasher, sessions, rate_limits, config }))
    }
}
