//! Brute-force protection: failed sign-ins per account and per client IP, sign-ups
//! per client IP, each in a sliding window counted in PostgreSQL (so all instances
//! share the count).
//!
//! A locked account stays locked for at most one window after the last failure that
//! counted, whoever caused it: an attacker can delay the owner, not lock them out for
//! good. Checks run before any password hashing, so a limited client costs one
//! indexed query, not an argon2 computation.

use std::{net::IpAddr, time::Duration};

use diesel_async::AsyncPgConnection;

use crate::{
    config::Config,
    db,
    error::{AppError, AppResult},
};

const SIGNIN_ACCOUNT: &str = "signin_account";
const SIGNIN_IP: &str = "signin_ip";
const SIGNUP_IP: &str = "signup_ip";

#[derive(Debug, Clone)]
pub struct RateLimits {
    pub failures_per_account: u32,
    pub failures_per_ip: u32,
    pub failure_window: Duration,
    pub signups_per_ip: u32,
    pub signup_window: Duration,
}

impl RateLimits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            failures_per_account: config.signin_failures_per_account,
            failures_per_ip: config.signin_failures_per_ip,
            failure_window: config.signin_failure_window,
            signups_per_ip: config.signups_per_ip,
            signup_window: config.signup_window,
        }
    }

    /// The longest window: events older than this count nowhere.
    pub fn longest_window(&self) -> Duration {
        self.failure_window.max(self.signup_window)
    }

    /// Refuses a sign-in for an account or address with too many recent failures.
    pub async fn check_signin(
        &self,
        conn: &mut AsyncPgConnection,
        username: &str,
        ip: Option<IpAddr>,
    ) -> AppResult<()> {
        let account = account_key(username);
        check(conn, SIGNIN_ACCOUNT, &account, self.failures_per_account, self.failure_window).await?;
        if let Some(ip) = ip {
            check(conn, SIGNIN_IP, &ip.to_string(), self.failures_per_ip, self.failure_window).await?;
        }
        Ok(())
    }

    pub async fn record_signin_failure(
        &self,
        conn: &mut AsyncPgConnection,
        username: &str,
        ip: Option<IpAddr>,
    ) -> AppResult<()> {
        db::rate_limit_events::record(conn, SIGNIN_ACCOUNT, &account_key(username)).await?;
        if let Some(ip) = ip {
            db::rate_limit_events::record(conn, SIGNIN_IP, &ip.to_string()).await?;
        }
        Ok(())
    }

    /// A correct password forgives the account's earlier failures (not the address's).
    pub async fn record_signin_success(&self, conn: &mut AsyncPgConnection, username: &str) -> AppResult<()> {
        db::rate_limit_events::clear(conn, SIGNIN_ACCOUNT, &account_key(username)).await?;
        Ok(())
    }

    /// Counts a sign-up attempt from `ip`, refusing it when over the limit.
    pub async fn take_signup(&self, conn: &mut AsyncPgConnection, ip: Option<IpAddr>) -> AppResult<()> {
        let Some(ip) = ip else { return Ok(()) };
        let key = ip.to_string();
        check(conn, SIGNUP_IP, &key, self.signups_per_ip, self.signup_window).await?;
        db::rate_limit_events::record(conn, SIGNUP_IP, &key).await?;
        Ok(())
    }
}

/// Usernames are case-insensitive, so their counters are too. Unknown usernames are
/// counted like real ones: the limit must not reveal which accounts exist.
/// Bounded in length: sign-in counts attempts before validating the username, and a
/// client must not be able to store megabytes per attempt.
fn account_key(username: &str) -> String {
    username.chars().take(64).collect::<String>().to_lowercase()
}

async fn check(conn: &mut AsyncPgConnection, bucket: &str, key: &str, limit: u32, window: Duration) -> AppResult<()> {
    match db::rate_limit_events::blocked_for(conn, bucket, key, limit, window).await? {
        Some(seconds) => {
            metrics::counter!("authgraph_rate_limited_total", "bucket" => bucket.to_owned()).increment(1);
            Err(AppError::RateLimited { retry_after_secs: (seconds.ceil() as u64).max(1) })
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn account_keys_ignore_case_and_stay_short() {
        assert_eq!(super::account_key("Ada"), "ada");
        assert_eq!(super::account_key(&"X".repeat(1 << 20)).len(), 64);
    }
}
