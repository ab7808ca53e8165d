//! The email settings: delivery (SMTP or files), the links in messages, token
//! lifetimes and the senders' limits. A group of its own, flattened into `Config`.

use std::time::Duration;

use clap::Args;
use secrecy::SecretString;

use super::values;

#[derive(Debug, Clone, Args)]
pub struct EmailConfig {
    /// Email verification, password reset and notices. Off: no message is sent, and
    /// the email mutations answer BAD_USER_INPUT on `email`.
    #[arg(long = "email-enabled", env = "EMAIL_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// Where mail goes: `smtp://user:pass@host:587` (STARTTLS when the server offers
    /// it; add `?tls=required` to insist, `?tls=none` for plain SMTP) or
    /// `smtps://user:pass@host:465`. Unset in development: each message is written as
    /// an .eml file under DATA_DIR/mail/. Required in production while EMAIL_ENABLED.
    #[arg(long, env = "SMTP_URL", value_parser = values::parse_secret, hide_env_values = true)]
    pub smtp_url: Option<SecretString>,

    /// The sender of every message, e.g. `Example <no-reply@example.com>`.
    #[arg(long, env = "MAIL_FROM", default_value = "authgraph <no-reply@localhost>")]
    pub mail_from: String,

    /// The application's name, in subjects and texts.
    #[arg(long, env = "APP_NAME", default_value = "authgraph")]
    pub app_name: String,

    /// The verification link; `{token}` is replaced by the link token.
    #[arg(long, env = "EMAIL_VERIFY_URL", default_value = "http://localhost:3000/verify-email?token={token}")]
    pub verify_url: String,

    /// The password-reset link; `{token}` is replaced by the link token.
    #[arg(long, env = "PASSWORD_RESET_URL", default_value = "http://localhost:3000/reset-password?token={token}")]
    pub reset_url: String,

    /// How long a verification link and code stay valid.
    #[arg(long, env = "EMAIL_VERIFY_TTL", default_value = "24h", value_parser = values::parse_duration)]
    pub verify_ttl: Duration,

    /// How long a reset link and code stay valid (at most 1h).
    #[arg(long, env = "PASSWORD_RESET_TTL", default_value = "30m", value_parser = values::parse_duration)]
    pub reset_ttl: Duration,

    /// Wrong codes a message's code survives; the next one kills it (TOO_MANY_ATTEMPTS).
    #[arg(long, env = "EMAIL_CODE_ATTEMPTS", default_value_t = 5)]
    pub code_attempts: u32,

    /// Messages requested for one address per EMAIL_WINDOW (reset, verification,
    /// change), whoever asks.
    #[arg(long, env = "EMAILS_PER_ADDRESS", default_value_t = 5)]
    pub per_address: u32,

    /// Messages and code checks one client network may ask for per EMAIL_WINDOW.
    #[arg(long, env = "EMAILS_PER_IP", default_value_t = 30)]
    pub per_ip: u32,

    /// Sliding window of EMAILS_PER_ADDRESS and EMAILS_PER_IP.
    #[arg(long, env = "EMAIL_WINDOW", default_value = "1h", value_parser = values::parse_duration)]
    pub window: Duration,

    /// A message not accepted by the SMTP server this long after it was queued is
    /// abandoned (its body deleted); until then it is retried with backoff.
    #[arg(long, env = "MAIL_GIVE_UP_AFTER", default_value = "1h", value_parser = values::parse_duration)]
    pub give_up_after: Duration,
}
