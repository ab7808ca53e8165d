//! Configuration, read once at start from flags and environment variables.
//!
//! Every setting is both a flag and an environment variable (clap's `env`), so the
//! same binary is configured the same way by a developer's `.env`, a container's
//! environment or a one-off flag. Values are checked here, at start, and an error names
//! the variable that is wrong: a bad setting must stop the start, not the first request.
//!
//! - `cli`: the command line's shape (subcommands and their arguments);
//! - this file: the settings, one field per variable, and what follows from them;
//! - `email`: the email group (delivery, links, lifetimes, limits);
//! - `factors`: the second-factor group (sealing key, issuer, limits; `MFA_*`);
//! - `passkeys`: the passkey group (relying party, origins, ceremonies; `WEBAUTHN_*`);
//! - `realtime`: the subscriptions group (sockets, their limits);
//! - `social`: sign-in with other providers (`OIDC_*`, `REAUTH_WINDOW`);
//! - `validate`: the checks clap's types cannot make;
//! - `values`: the parsers of durations, secrets, origins and address blocks.

mod cli;
mod email;
mod factors;
mod passkeys;
mod realtime;
mod social;
mod validate;
mod values;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

pub use crate::net::IpBlocks;
pub use cli::{AuditCommand, Cli, Command, RoleArg, SessionsCommand, UsersCommand};
pub use email::EmailConfig;
pub use factors::FactorsConfig;
pub use passkeys::{PasskeysConfig, Webauthn};
pub use realtime::RealtimeConfig;
pub use social::{Endpoints, ProviderSettings, SocialConfig};
pub use validate::ConfigError;
pub use values::{Origins, decode_seed, parse_duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    #[value(name = "HS256")]
    Hs256,
    #[value(name = "EdDSA")]
    EdDsa,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AppEnv {
    Development,
    Production,
}

/// Everything the server reads from its environment.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8000")]
    pub listen_addr: SocketAddr,

    /// PostgreSQL URL. Unset or empty: start a private PostgreSQL under DATA_DIR.
    #[arg(long, env = "DATABASE_URL", value_parser = values::parse_secret, hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// Folder for the embedded database and the generated development secret.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// OS user that runs the embedded PostgreSQL when authgraph runs as root.
    #[arg(long, env = "PG_OS_USER", default_value = "postgres")]
    pub pg_os_user: String,

    /// HS256 key for access tokens (its UTF-8 bytes). At least 32 bytes in production;
    /// generated and kept under DATA_DIR in development when unset.
    #[arg(long, env = "JWT_ACCESS_SECRET", value_parser = values::parse_secret, hide_env_values = true)]
    pub jwt_access_secret: Option<SecretString>,

    /// `iss` claim of access tokens, checked on every request.
    /// The key that derives each refresh token's successor (its UTF-8 bytes, at least 32).
    /// Generated in development; required in production.
    #[arg(long, env = "REFRESH_TOKEN_KEY", value_parser = values::parse_secret, hide_env_values = true)]
    pub refresh_token_key: Option<SecretString>,

    /// Earlier refresh-token keys, comma-separated: a retry inside the reuse interval
    /// still finds a successor derived with one of them.
    #[arg(long, env = "REFRESH_TOKEN_KEY_PREVIOUS", value_delimiter = ',', value_parser = values::parse_secret, hide_env_values = true)]
    pub refresh_token_key_previous: Vec<SecretString>,

    /// The key of the audit trail's HMAC chain (its UTF-8 bytes, at least 32), kept
    /// outside the database: without it, rows cannot be changed, deleted, inserted or
    /// re-chained unnoticed. Generated in development; required in production.
    #[arg(long, env = "AUDIT_CHAIN_KEY", value_parser = values::parse_secret, hide_env_values = true)]
    pub audit_chain_key: Option<SecretString>,

    /// Earlier audit chain keys, comma-separated: the rows they linked still verify.
    #[arg(long, env = "AUDIT_CHAIN_KEY_PREVIOUS", value_delimiter = ',', value_parser = values::parse_secret, hide_env_values = true)]
    pub audit_chain_key_previous: Vec<SecretString>,

    /// How long audit events are kept; pruning deletes older ones from the oldest end,
    /// and the chain stays checkable from the first kept event.
    #[arg(long, env = "AUDIT_RETENTION", default_value = "400d", value_parser = values::parse_duration)]
    pub audit_retention: Duration,

    /// Admin powers need an ADMIN at AAL2 (an ADMIN without a second factor must enrol
    /// one). Default: on in production, off in development.
    #[arg(long, env = "ADMIN_REQUIRE_AAL2", action = clap::ArgAction::Set)]
    pub admin_require_aal2: Option<bool>,

    /// How long an impersonation's token (and its session) lasts; it has no refresh
    /// token, so this is the longest an ADMIN acts as a user without asking again.
    #[arg(long, env = "IMPERSONATION_TTL", default_value = "1h", value_parser = values::parse_duration)]
    pub impersonation_ttl: Duration,

    #[arg(long, env = "JWT_ISSUER", default_value = "authgraph")]
    pub jwt_issuer: String,

    /// `aud` claim of access tokens, checked on every request.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "authgraph")]
    pub jwt_audience: String,

    /// Lifetime of an access token (e.g. 90s, 15m, 1h).
    #[arg(long, env = "ACCESS_TOKEN_TTL", default_value = "15m", value_parser = values::parse_duration)]
    pub access_token_ttl: Duration,

    /// A session ends after this long without a refresh.
    #[arg(long, env = "REFRESH_TOKEN_TTL", default_value = "7d", value_parser = values::parse_duration)]
    pub refresh_token_ttl: Duration,

    /// A session ends this long after sign-in, however active.
    #[arg(long, env = "SESSION_MAX_AGE", default_value = "30d", value_parser = values::parse_duration)]
    pub session_max_age: Duration,

    /// How long after a rotation the old refresh token still yields the session's
    /// current token instead of counting as reuse (parallel tabs, retried requests).
    #[arg(long, env = "REFRESH_REUSE_INTERVAL", default_value = "10s", value_parser = values::parse_duration)]
    pub refresh_reuse_interval: Duration,

    /// Live sessions each instance keeps in memory so that the guard and `me` need no
    /// query (about 1 KiB each at most). An entry is dropped as soon as its session ends
    /// or its account changes (by notification on the other instances), and everything
    /// while the instance's LISTEN connection is down. 0 turns the cache off: one query
    /// per authenticated request.
    #[arg(long, env = "SESSION_CACHE_ENTRIES", default_value_t = 10_000)]
    pub session_cache_entries: usize,

    /// Argon2id memory cost in KiB (at least 19456).
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,

    /// Argon2id passes (at least 2).
    #[arg(long, env = "ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,

    /// Argon2id lanes (at least 1).
    #[arg(long, env = "ARGON2_PARALLELISM", default_value_t = 1)]
    pub argon2_parallelism: u32,

    /// `development` (GraphiQL, generated secret) or `production`.
    /// Most password hashes waiting for a core; beyond it `SERVICE_UNAVAILABLE` with
    /// `retryAfter`, before hashing. One kind of work (sign-in, sign-up, account) may hold
    /// half of it, one client half of that.
    #[arg(long, env = "ARGON2_QUEUE_LIMIT", default_value_t = 128)]
    pub argon2_queue_limit: usize,

    #[arg(long, env = "APP_ENV", value_enum, default_value = "development", ignore_case = true)]
    pub app_env: AppEnv,

    /// Also deliver the refresh token as an HttpOnly, SameSite=Strict cookie scoped to
    /// /graphql (Secure in production), and leave `refreshToken` null in responses:
    /// for browser apps, so scripts never hold the refresh token.
    #[arg(long, env = "REFRESH_TOKEN_COOKIE", default_value_t = false, action = clap::ArgAction::Set)]
    pub refresh_token_cookie: bool,

    /// Origins allowed by CORS, comma-separated. Empty: no cross-origin access.
    #[arg(long, env = "CORS_ORIGINS", default_value = "", value_parser = values::parse_origins)]
    pub cors_origins: Origins,

    /// Largest number of database connections.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,

    /// How long ended sessions are kept (for `sessions` audits and REVOKED answers)
    /// before pruning deletes them.
    #[arg(long, env = "SESSION_RETENTION", default_value = "7d", value_parser = values::parse_duration)]
    pub session_retention: Duration,

    /// How long a shutdown waits for requests in flight before exiting anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = values::parse_duration)]
    pub shutdown_timeout: Duration,

    /// How long an instance drains after SIGTERM before it stops accepting: `/readyz`
    /// answers 503, requests are still served (with `Connection: close`), new sockets
    /// are refused. Behind a load balancer, set it above its check interval × fall
    /// count, plus a margin.
    #[arg(long, env = "SHUTDOWN_DRAIN", default_value = "0s", value_parser = values::parse_duration)]
    pub shutdown_drain: Duration,

    /// Serve `/metrics` on this address instead of LISTEN_ADDR (e.g. 127.0.0.1:9100).
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// How long a request waits for a database connection before SERVICE_UNAVAILABLE.
    /// Serve `/metrics` on LISTEN_ADDR when METRICS_ADDR is unset. Default: in
    /// development only; production keeps it off the public listener.
    #[arg(long, env = "METRICS_PUBLIC")]
    pub metrics_public: Option<bool>,

    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = values::parse_duration)]
    pub database_acquire_timeout: Duration,

    /// Signing algorithm of access tokens: HS256 (shared secret) or EdDSA (Ed25519; the
    /// public keys are published at /.well-known/jwks.json).
    #[arg(long, env = "JWT_ALGORITHM", value_enum, default_value = "HS256", ignore_case = true)]
    pub jwt_algorithm: JwtAlgorithm,

    /// EdDSA only: the Ed25519 private key as the base64 of its 32-byte seed. Generated
    /// and kept under DATA_DIR in development when unset.
    #[arg(long, env = "JWT_SIGNING_KEY", value_parser = values::parse_secret, hide_env_values = true)]
    pub jwt_signing_key: Option<SecretString>,

    /// EdDSA only: earlier signing keys, comma-separated; still published and accepted.
    #[arg(long, env = "JWT_SIGNING_KEY_PREVIOUS", value_delimiter = ',', value_parser = values::parse_secret, hide_env_values = true)]
    pub jwt_signing_key_previous: Vec<SecretString>,

    /// Earlier JWT keys, comma-separated: tokens they signed verify until they expire.
    #[arg(long, env = "JWT_ACCESS_SECRET_PREVIOUS", value_delimiter = ',', value_parser = values::parse_secret, hide_env_values = true)]
    pub jwt_access_secret_previous: Vec<SecretString>,

    /// Deepest nesting of an operation's fields.
    #[arg(long, env = "GRAPHQL_MAX_DEPTH", default_value_t = 10)]
    pub graphql_max_depth: usize,

    /// Highest cost of an operation (one per field, times the page size of lists).
    #[arg(long, env = "GRAPHQL_MAX_COST", default_value_t = 1000)]
    pub graphql_max_cost: usize,

    /// Most aliases in an operation (`__typename` is free).
    #[arg(long, env = "GRAPHQL_MAX_ALIASES", default_value_t = 15)]
    pub graphql_max_aliases: usize,

    /// Most top-level fields in an operation.
    #[arg(long, env = "GRAPHQL_MAX_ROOT_FIELDS", default_value_t = 10)]
    pub graphql_max_root_fields: usize,

    /// Most directives in an operation.
    #[arg(long, env = "GRAPHQL_MAX_DIRECTIVES", default_value_t = 10)]
    pub graphql_max_directives: usize,

    /// Most lexical tokens in a query document.
    #[arg(long, env = "GRAPHQL_MAX_TOKENS", default_value_t = 2000)]
    pub graphql_max_tokens: usize,

    /// Largest query document in bytes.
    #[arg(long, env = "GRAPHQL_MAX_QUERY_BYTES", default_value_t = 32 * 1024)]
    pub graphql_max_query_bytes: usize,

    /// Fields, fragment spreads and inline fragments per document, every fragment
    /// counted where it is spread (the work of validating the document).
    #[arg(long, env = "GRAPHQL_MAX_SELECTIONS", default_value_t = 2000)]
    pub graphql_max_selections: usize,

    /// Most operations in one batched HTTP request.
    #[arg(long, env = "GRAPHQL_MAX_BATCH", default_value_t = 10)]
    pub graphql_max_batch: usize,

    /// Schema introspection. Default: on in development, off in production.
    #[arg(long, env = "GRAPHQL_INTROSPECTION")]
    pub graphql_introspection: Option<bool>,

    /// "Did you mean …?" suggestions in errors. Default: on in development, off in production.
    #[arg(long, env = "GRAPHQL_SUGGESTIONS")]
    pub graphql_suggestions: Option<bool>,

    /// Failed sign-ins per account within SIGNIN_FAILURE_WINDOW before RATE_LIMITED, for
    /// networks the account has not signed in from before; also the limit of wrong
    /// current passwords per account (changePassword).
    #[arg(long, env = "SIGNIN_FAILURES_PER_ACCOUNT", default_value_t = 10)]
    pub signin_failures_per_account: u32,

    /// Failed sign-ins allowed per account from one client network per window: trips
    /// before the account-wide limit, for that network only.
    #[arg(long, env = "SIGNIN_FAILURES_PER_ACCOUNT_ADDRESS", default_value_t = 5)]
    pub signin_failures_per_account_address: u32,

    /// IPv6 clients are counted per network of this many leading bits (IPv4 per address).
    #[arg(long, env = "RATE_LIMIT_IPV6_PREFIX", default_value_t = 64)]
    pub rate_limit_ipv6_prefix: u8,

    /// Failed sign-ins per client network within SIGNIN_FAILURE_WINDOW before RATE_LIMITED.
    #[arg(long, env = "SIGNIN_FAILURES_PER_IP", default_value_t = 100)]
    pub signin_failures_per_ip: u32,

    /// Sliding window for counting failed sign-ins.
    #[arg(long, env = "SIGNIN_FAILURE_WINDOW", default_value = "15m", value_parser = values::parse_duration)]
    pub signin_failure_window: Duration,

    /// Sign-ups per client IP within SIGNUP_WINDOW before RATE_LIMITED.
    #[arg(long, env = "SIGNUPS_PER_IP", default_value_t = 20)]
    pub signups_per_ip: u32,

    /// Sliding window for counting sign-ups.
    #[arg(long, env = "SIGNUP_WINDOW", default_value = "1h", value_parser = values::parse_duration)]
    pub signup_window: Duration,

    /// Proxies whose X-Forwarded-For is believed (IPs or CIDRs, comma-separated). Empty:
    /// the client IP is the TCP peer.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = values::parse_ip_blocks)]
    pub trusted_proxies: IpBlocks,

    /// A request head must be complete within this time of its first byte (or of the
    /// connection opening).
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = values::parse_duration)]
    pub http_header_timeout: Duration,

    /// A keep-alive connection with no request in flight is closed after this long.
    #[arg(long, env = "HTTP_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = values::parse_duration)]
    pub http_keepalive_timeout: Duration,

    /// A request body must arrive whole within this time.
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value = "10s", value_parser = values::parse_duration)]
    pub http_body_timeout: Duration,

    /// A request is answered 503 if not done within this time, body included.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = values::parse_duration)]
    pub http_request_timeout: Duration,

    /// Most open connections; beyond it new ones wait in the kernel's backlog. Lowered at
    /// start to what the open-files limit allows.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub http_max_connections: usize,

    #[command(flatten)]
    pub email: EmailConfig,

    #[command(flatten)]
    pub factors: FactorsConfig,

    #[command(flatten)]
    pub passkeys: PasskeysConfig,

    #[command(flatten)]
    pub realtime: RealtimeConfig,

    #[command(flatten)]
    pub social: SocialConfig,

    /// Log filter, e.g. `info` or `authgraph=debug,tower_http=info`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

/// Smallest secret accepted for HS256: the key must be as long as the hash output.
pub const MIN_SECRET_BYTES: usize = 32;

impl Config {
    /// Configuration as if started with no flags (defaults plus whatever the
    /// environment sets): the base that tests and tools adjust.
    pub fn defaults() -> Self {
        Cli::parse_from(["authgraph"]).config
    }

    /// The database URL, treating an empty value as unset.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_ref().map(|s| s.expose_secret()).filter(|s| !s.trim().is_empty())
    }

    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }

    /// Whether admin powers need AAL2 (ADMIN_REQUIRE_AAL2; on in production by default).
    pub fn admin_require_aal2(&self) -> bool {
        self.admin_require_aal2.unwrap_or(self.is_production())
    }

    /// Introspection is for development unless switched on explicitly.
    pub fn introspection(&self) -> bool {
        self.graphql_introspection.unwrap_or(!self.is_production())
    }

    /// Whether `/metrics` is served on the main listener.
    pub fn metrics_on_listener(&self) -> bool {
        self.metrics_addr.is_none() && self.metrics_public.unwrap_or(!self.is_production())
    }

    /// Field suggestions leak schema names; development only unless switched on.
    pub fn suggestions(&self) -> bool {
        self.graphql_suggestions.unwrap_or(!self.is_production())
    }
}
