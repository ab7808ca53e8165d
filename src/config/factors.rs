//! The second-factor settings: the key that seals TOTP secrets, the issuer shown in
//! authenticator apps, and the limits on wrong codes. A group of its own, flattened
//! into `Config`.

use clap::Args;
use secrecy::SecretString;

use super::values;

#[derive(Debug, Clone, Args)]
pub struct FactorsConfig {
    /// Seals TOTP secrets at rest (AES-256-GCM under a key derived from it; its UTF-8
    /// bytes, at least 32) and keys the lookup of recovery codes. Generated in
    /// development; required in production.
    #[arg(long, env = "MFA_ENCRYPTION_KEY", value_parser = values::parse_secret, hide_env_values = true)]
    pub encryption_key: Option<SecretString>,

    /// Earlier MFA_ENCRYPTION_KEYs, comma-separated: secrets sealed under them still
    /// open, and are sealed again under the current key when next used.
    #[arg(long, env = "MFA_ENCRYPTION_KEY_PREVIOUS", value_delimiter = ',', value_parser = values::parse_secret, hide_env_values = true)]
    pub encryption_key_previous: Vec<SecretString>,

    /// The issuer authenticator apps show beside the username. Default: APP_NAME.
    #[arg(long, env = "MFA_ISSUER")]
    pub issuer: Option<String>,

    /// Wrong second-factor codes per session within SIGNIN_FAILURE_WINDOW before
    /// RATE_LIMITED.
    #[arg(long, env = "MFA_FAILURES_PER_SESSION", default_value_t = 5)]
    pub failures_per_session: u32,

    /// Wrong second-factor codes per account, across its sessions, within
    /// SIGNIN_FAILURE_WINDOW before RATE_LIMITED.
    #[arg(long, env = "MFA_FAILURES_PER_ACCOUNT", default_value_t = 10)]
    pub failures_per_account: u32,
}
