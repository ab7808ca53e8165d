//! Configuration, read once at start from flags and environment variables.
//!
//! Every setting is both a flag and an environment variable (clap's `env`), so the
//! same binary is configured the same way by a developer's `.env`, a container's
//! environment or a one-off flag. Values are checked here, at start, and an error names
//! the variable that is wrong: a bad setting must stop the start, not the first request.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

/// The command line: global configuration, then an optional subcommand (`serve` when
/// none is given).
#[derive(Debug, Parser)]
#[command(name = "authgraph", version, about = "GraphQL accounts and sessions server")]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the GraphQL API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) that the server serves.
    Schema,
    /// Manage accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Delete sessions (and their refresh tokens) that ended more than
    /// SESSION_RETENTION ago, and rate-limit counts no window uses. The server also
    /// does this every ten minutes.
    Prune,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List accounts, oldest first, with their live sessions.
    List,
    /// End every session of an account: its access and refresh tokens stop working.
    RevokeSessions { username: String },
    /// Give an account the USER or ADMIN role. There is no GraphQL way to do this.
    SetRole {
        username: String,
        #[arg(value_enum, ignore_case = true)]
        role: RoleArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum RoleArg {
    User,
    Admin,
}

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
    #[arg(long, env = "DATABASE_URL", value_parser = parse_secret, hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// Folder for the embedded database and the generated development secret.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// OS user that runs the embedded PostgreSQL when authgraph runs as root.
    #[arg(long, env = "PG_OS_USER", default_value = "postgres")]
    pub pg_os_user: String,

    /// HS256 key for access tokens (its UTF-8 bytes). At least 32 bytes in production;
    /// generated and kept under DATA_DIR in development when unset.
    #[arg(long, env = "JWT_ACCESS_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub jwt_access_secret: Option<SecretString>,

    /// `iss` claim of access tokens, checked on every request.
    /// The key that derives each refresh token's successor (its UTF-8 bytes, at least 32).
    /// Generated in development; required in production.
    #[arg(long, env = "REFRESH_TOKEN_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub refresh_token_key: Option<SecretString>,

    /// Earlier refresh-token keys, comma-separated: a retry inside the reuse interval
    /// still finds a successor derived with one of them.
    #[arg(long, env = "REFRESH_TOKEN_KEY_PREVIOUS", value_delimiter = ',', value_parser = parse_secret, hide_env_values = true)]
    pub refresh_token_key_previous: Vec<SecretString>,

    #[arg(long, env = "JWT_ISSUER", default_value = "authgraph")]
    pub jwt_issuer: String,

    /// `aud` claim of access tokens, checked on every request.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "authgraph")]
    pub jwt_audience: String,

    /// Lifetime of an access token (e.g. 90s, 15m, 1h).
    #[arg(long, env = "ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,

    /// A session ends after this long without a refresh.
    #[arg(long, env = "REFRESH_TOKEN_TTL", default_value = "7d", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,

    /// A session ends this long after sign-in, however active.
    #[arg(long, env = "SESSION_MAX_AGE", default_value = "30d", value_parser = parse_duration)]
    pub session_max_age: Duration,

    /// How long after a rotation the old refresh token still yields the session's
    /// current token instead of counting as reuse (parallel tabs, retried requests).
    #[arg(long, env = "REFRESH_REUSE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub refresh_reuse_interval: Duration,

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
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',', default_value = "")]
    pub cors_origins: Vec<String>,

    /// Largest number of database connections.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,

    /// How long ended sessions are kept (for `sessions` audits and REVOKED answers)
    /// before pruning deletes them.
    #[arg(long, env = "SESSION_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub session_retention: Duration,

    /// How long a shutdown waits for requests in flight before exiting anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Serve `/metrics` on this address instead of LISTEN_ADDR (e.g. 127.0.0.1:9100).
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// How long a request waits for a database connection before SERVICE_UNAVAILABLE.
    /// Serve `/metrics` on LISTEN_ADDR when METRICS_ADDR is unset. Default: in
    /// development only; production keeps it off the public listener.
    #[arg(long, env = "METRICS_PUBLIC")]
    pub metrics_public: Option<bool>,

    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub database_acquire_timeout: Duration,

    /// Signing algorithm of access tokens: HS256 (shared secret) or EdDSA (Ed25519; the
    /// public keys are published at /.well-known/jwks.json).
    #[arg(long, env = "JWT_ALGORITHM", value_enum, default_value = "HS256", ignore_case = true)]
    pub jwt_algorithm: JwtAlgorithm,

    /// EdDSA only: the Ed25519 private key as the base64 of its 32-byte seed. Generated
    /// and kept under DATA_DIR in development when unset.
    #[arg(long, env = "JWT_SIGNING_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub jwt_signing_key: Option<SecretString>,

    /// EdDSA only: earlier signing keys, comma-separated; still published and accepted.
    #[arg(long, env = "JWT_SIGNING_KEY_PREVIOUS", value_delimiter = ',', value_parser = parse_secret, hide_env_values = true)]
    pub jwt_signing_key_previous: Vec<SecretString>,

    /// Earlier JWT keys, comma-separated: tokens they signed verify until they expire.
    #[arg(long, env = "JWT_ACCESS_SECRET_PREVIOUS", value_delimiter = ',', value_parser = parse_secret, hide_env_values = true)]
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
    #[arg(long, env = "SIGNIN_FAILURE_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub signin_failure_window: Duration,

    /// Sign-ups per client IP within SIGNUP_WINDOW before RATE_LIMITED.
    #[arg(long, env = "SIGNUPS_PER_IP", default_value_t = 20)]
    pub signups_per_ip: u32,

    /// Sliding window for counting sign-ups.
    #[arg(long, env = "SIGNUP_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub signup_window: Duration,

    /// Proxies whose X-Forwarded-For is believed (IPs or CIDRs, comma-separated). Empty:
    /// the client IP is the TCP peer.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', default_value = "")]
    pub trusted_proxies: Vec<String>,

    /// A request head must be complete within this time of its first byte (or of the
    /// connection opening).
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http_header_timeout: Duration,

    /// A keep-alive connection with no request in flight is closed after this long.
    #[arg(long, env = "HTTP_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub http_keepalive_timeout: Duration,

    /// A request body must arrive whole within this time.
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http_body_timeout: Duration,

    /// A request is answered 503 if not done within this time, body included.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub http_request_timeout: Duration,

    /// Most open connections; beyond it new ones wait in the kernel's backlog. Lowered at
    /// start to what the open-files limit allows.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub http_max_connections: usize,

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

    /// Introspection is for development unless switched on explicitly.
    pub fn introspection(&self) -> bool {
        self.graphql_introspection.unwrap_or(!self.is_production())
    }

    /// Field suggestions leak schema names; development only unless switched on.
    /// Whether `/metrics` is served on the main listener.
    pub fn metrics_on_listener(&self) -> bool {
        self.metrics_addr.is_none() && self.metrics_public.unwrap_or(!self.is_production())
    }

    pub fn suggestions(&self) -> bool {
        self.graphql_suggestions.unwrap_or(!self.is_production())
    }

    /// Checks what clap's types cannot. The message names the variable to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |var: &'static str, msg: String| Err(ConfigError { var, msg });
        if self.argon2_memory_kib < 19_456 {
            return err("ARGON2_MEMORY_KIB", "must be at least 19456".into());
        }
        if self.argon2_iterations < 2 {
            return err("ARGON2_ITERATIONS", "must be at least 2".into());
        }
        if self.argon2_parallelism < 1 {
            return err("ARGON2_PARALLELISM", "must be at least 1".into());
        }
        if self.access_token_ttl < Duration::from_secs(1) {
            return err("ACCESS_TOKEN_TTL", "must be at least 1s".into());
        }
        if self.refresh_token_ttl < self.access_token_ttl {
            return err("REFRESH_TOKEN_TTL", "must not be shorter than ACCESS_TOKEN_TTL".into());
        }
        if self.session_max_age < self.refresh_token_ttl {
            return err("SESSION_MAX_AGE", "must not be shorter than REFRESH_TOKEN_TTL".into());
        }
        for (var, value) in [
            ("HTTP_HEADER_TIMEOUT", self.http_header_timeout),
            ("HTTP_KEEPALIVE_TIMEOUT", self.http_keepalive_timeout),
            ("HTTP_BODY_TIMEOUT", self.http_body_timeout),
            ("HTTP_REQUEST_TIMEOUT", self.http_request_timeout),
        ] {
            if value < Duration::from_millis(100) {
                return err(var, "must be at least 100ms".into());
            }
        }
        if !(1..=128).contains(&self.rate_limit_ipv6_prefix) {
            return err("RATE_LIMIT_IPV6_PREFIX", "must be between 1 and 128".into());
        }
        if self.http_max_connections == 0 {
            return err("HTTP_MAX_CONNECTIONS", "must be at least 1".into());
        }
        if self.database_pool_size == 0 {
            return err("DATABASE_POOL_SIZE", "must be at least 1".into());
        }
        match self.jwt_algorithm {
            JwtAlgorithm::Hs256 => {
                let production = self.is_production();
                if let Some(secret) = &self.jwt_access_secret {
                    if secret.expose_secret().len() < MIN_SECRET_BYTES && production {
                        return err(
                            "JWT_ACCESS_SECRET",
                            format!("must be at least {MIN_SECRET_BYTES} bytes in production"),
                        );
                    }
                } else if production {
                    return err(
                        "JWT_ACCESS_SECRET",
                        format!("is required in production (at least {MIN_SECRET_BYTES} random bytes)"),
                    );
                }
                for (i, secret) in self.jwt_access_secret_previous.iter().enumerate() {
                    let len = secret.expose_secret().len();
                    if len > 0 && len < MIN_SECRET_BYTES && production {
                        return err(
                            "JWT_ACCESS_SECRET_PREVIOUS",
                            format!("entry {} must be at least {MIN_SECRET_BYTES} bytes in production", i + 1),
                        );
                    }
                }
            }
            JwtAlgorithm::EdDsa => {
                match &self.jwt_signing_key {
                    Some(key) => {
                        if let Err(msg) = decode_seed(key.expose_secret()) {
                            return err("JWT_SIGNING_KEY", msg);
                        }
                    }
                    None if self.is_production() => {
                        return err("JWT_SIGNING_KEY", "is required in production with JWT_ALGORITHM=EdDSA".into());
                    }
                    None => {}
                }
                for key in self.jwt_signing_key_previous.iter().filter(|k| !k.expose_secret().is_empty()) {
                    if let Err(msg) = decode_seed(key.expose_secret()) {
                        return err("JWT_SIGNING_KEY_PREVIOUS", msg);
                    }
                }
            }
        }
        match &self.refresh_token_key {
            Some(key) if key.expose_secret().len() < MIN_SECRET_BYTES && self.is_production() => {
                return err("REFRESH_TOKEN_KEY", format!("must be at least {MIN_SECRET_BYTES} bytes in production"));
            }
            None if self.is_production() => {
                return err(
                    "REFRESH_TOKEN_KEY",
                    format!("is required in production (at least {MIN_SECRET_BYTES} random bytes, not the JWT key)"),
                );
            }
            _ => {}
        }
        if let Err(msg) = crate::net::parse_proxies(&self.trusted_proxies) {
            return err("TRUSTED_PROXIES", msg);
        }
        for origin in self.cors_origins.iter().filter(|o| !o.is_empty()) {
            if origin.parse::<axum::http::HeaderValue>().is_err() || !origin.contains("://") {
                return err("CORS_ORIGINS", format!("{origin:?} is not an origin like https://app.example.com"));
            }
        }
        Ok(())
    }
}

/// A configuration value that cannot be used, with the variable that holds it.
#[derive(Debug)]
pub struct ConfigError {
    pub var: &'static str,
    pub msg: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.var, self.msg)
    }
}

impl std::error::Error for ConfigError {}

/// Decodes an Ed25519 seed given as base64 (standard or URL-safe, padded or not).
pub fn decode_seed(text: &str) -> Result<[u8; 32], String> {
    use base64::{
        Engine,
        engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
    };
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or("is not base64")?;
    bytes.try_into().map_err(|_| "must be the base64 of a 32-byte Ed25519 seed".to_owned())
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s.to_owned()))
}

/// Parses `90s`, `15m`, `1h`, `7d` (or a bare number of seconds).
///
/// ```
/// use std::time::Duration;
/// use authgraph::config::parse_duration;
///
/// assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 1h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?} has an unknown unit (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("15 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn production_without_a_strong_secret_names_the_variable() {
        let mut config = Config::defaults();
        config.app_env = AppEnv::Production;
        assert_eq!(config.validate().unwrap_err().var, "JWT_ACCESS_SECRET");
        config.jwt_access_secret = Some("short".to_owned().into());
        assert_eq!(config.validate().unwrap_err().var, "JWT_ACCESS_SECRET");
        config.jwt_access_secret = Some("x".repeat(32).into());
        assert_eq!(config.validate().unwrap_err().var, "REFRESH_TOKEN_KEY");
        config.refresh_token_key = Some("short".to_owned().into());
        assert_eq!(config.validate().unwrap_err().var, "REFRESH_TOKEN_KEY");
        config.refresh_token_key = Some("r".repeat(32).into());
        config.validate().unwrap();
    }

    #[test]
    fn eddsa_needs_a_32_byte_seed_and_no_shared_secret() {
        let mut config = Config::defaults();
        config.app_env = AppEnv::Production;
        config.jwt_access_secret = None;
        config.jwt_algorithm = JwtAlgorithm::EdDsa;
        assert_eq!(config.validate().unwrap_err().var, "JWT_SIGNING_KEY");
        config.jwt_signing_key = Some("c2hvcnQ".to_owned().into());
        assert_eq!(config.validate().unwrap_err().var, "JWT_SIGNING_KEY");
        config.jwt_signing_key = Some("A".repeat(43).into());
        config.refresh_token_key = Some("r".repeat(32).into());
        config.validate().unwrap();
    }

    #[test]
    fn weak_argon2_parameters_are_refused() {
        let mut config = Config::defaults();
        config.argon2_memory_kib = 4096;
        assert_eq!(config.validate().unwrap_err().var, "ARGON2_MEMORY_KIB");
    }
}
