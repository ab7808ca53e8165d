//! Checks of the settings that clap's types cannot express: minimums, orderings,
//! and what production requires. Each error names the variable to fix.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{Config, JwtAlgorithm, MIN_SECRET_BYTES, decode_seed};

impl Config {
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
        self.production_key("REFRESH_TOKEN_KEY", &self.refresh_token_key, "not the JWT key")?;
        self.production_key("MFA_ENCRYPTION_KEY", &self.factors.encryption_key, "a key of its own")?;
        self.production_key("AUDIT_CHAIN_KEY", &self.audit_chain_key, "a key of its own")?;
        if self.factors.failures_per_session == 0 || self.factors.failures_per_account == 0 {
            return err("MFA_FAILURES_PER_SESSION", "and MFA_FAILURES_PER_ACCOUNT must be at least 1".into());
        }
        self.validate_email()?;
        self.social.validate(self.is_production())?;
        self.webauthn().map(drop)
    }

    /// A key production must be given, at least `MIN_SECRET_BYTES` long.
    fn production_key(&self, var: &'static str, key: &Option<SecretString>, hint: &str) -> Result<(), ConfigError> {
        if !self.is_production() {
            return Ok(());
        }
        let msg = match key {
            Some(key) if key.expose_secret().len() < MIN_SECRET_BYTES => {
                format!("must be at least {MIN_SECRET_BYTES} bytes in production")
            }
            None => format!("is required in production (at least {MIN_SECRET_BYTES} random bytes, {hint})"),
            Some(_) => return Ok(()),
        };
        Err(ConfigError { var, msg })
    }

    fn validate_email(&self) -> Result<(), ConfigError> {
        let err = |var: &'static str, msg: String| Err(ConfigError { var, msg });
        let email = &self.email;
        if email.enabled && email.smtp_url.is_none() && self.is_production() {
            return err(
                "SMTP_URL",
                "is required in production while EMAIL_ENABLED (messages carry reset links and codes)".into(),
            );
        }
        for (var, template) in [("EMAIL_VERIFY_URL", &email.verify_url), ("PASSWORD_RESET_URL", &email.reset_url)] {
            if !template.contains("{token}") {
                return err(var, "must contain {token}".into());
            }
        }
        if email.reset_ttl > Duration::from_secs(3600) || email.reset_ttl < Duration::from_secs(60) {
            return err("PASSWORD_RESET_TTL", "must be between 1m and 1h".into());
        }
        if email.verify_ttl < Duration::from_secs(60) {
            return err("EMAIL_VERIFY_TTL", "must be at least 1m".into());
        }
        if email.code_attempts == 0 {
            return err("EMAIL_CODE_ATTEMPTS", "must be at least 1".into());
        }
        if email.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return err(
                "MAIL_FROM",
                format!("{:?} is not an address like Example <no-reply@example.com>", email.mail_from),
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppEnv;

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
        assert_eq!(config.validate().unwrap_err().var, "MFA_ENCRYPTION_KEY");
        config.factors.encryption_key = Some("short".to_owned().into());
        assert_eq!(config.validate().unwrap_err().var, "MFA_ENCRYPTION_KEY");
        config.factors.encryption_key = Some("m".repeat(32).into());
        assert_eq!(config.validate().unwrap_err().var, "AUDIT_CHAIN_KEY");
        config.audit_chain_key = Some("a".repeat(32).into());
        assert_eq!(config.validate().unwrap_err().var, "SMTP_URL", "email needs a mail server in production");
        config.email.smtp_url = Some("smtp://mail.internal:587".to_owned().into());
        assert_eq!(config.validate().unwrap_err().var, "WEBAUTHN_RP_ID", "passkeys need a domain in production");
        config.cors_origins = "https://app.example.com".parse().unwrap();
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
        config.factors.encryption_key = Some("m".repeat(32).into());
        config.audit_chain_key = Some("a".repeat(32).into());
        config.email.enabled = false;
        config.passkeys.enabled = false;
        config.validate().unwrap();
    }

    #[test]
    fn weak_argon2_parameters_are_refused() {
        let mut config = Config::defaults();
        config.argon2_memory_kib = 4096;
        assert_eq!(config.validate().unwrap_err().var, "ARGON2_MEMORY_KIB");
    }
}
