//! Brute-force protection: failed sign-ins and password checks, and sign-ups, each in a
//! sliding window counted in PostgreSQL (so all instances share the count).
//!
//! Every attempt is taken before its hash runs, atomically with the check
//! (`db::rate_limit_events::take`): N concurrent guesses against a limit of L hash at
//! most L. An attempt counts as a failure from the start; one that turns out right is
//! forgiven, and only that one: a success never erases failures it did not make.
//!
//! Sign-in failures are counted three ways, so that an attacker who knows a username
//! cannot lock its owner out:
//!
//! - per account and client network (`SIGNIN_FAILURES_PER_ACCOUNT_ADDRESS`, 5): trips
//!   first for one guesser, and only for that guesser's network;
//! - per client network (`SIGNIN_FAILURES_PER_IP`, 100), across accounts;
//! - per account (`SIGNIN_FAILURES_PER_ACCOUNT`, 10), against guessing spread over
//!   many networks. This one refuses only networks the account has never signed in
//!   from: the owner, from a network where they signed in before, still gets in
//!   with the right password while the account is under attack from elsewhere.
//!
//! A limited attempt costs one small transaction, never an argon2 computation. A lock
//! ends one window after the last counted failure. IPv6 clients are counted per
//! network (`RATE_LIMIT_IPV6_PREFIX`, /64), IPv4 clients per address.

use std::{net::IpAddr, time::Duration};

use diesel_async::AsyncPgConnection;

use super::network::Network;
use crate::{
    config::Config,
    db::{
        self,
        ids::{SessionId, UserId},
        rate_limit_events::Counter,
    },
    email_address::EmailAddress,
    error::{AppError, AppResult},
};

const SIGNIN_ACCOUNT: &str = "signin_account";
const SIGNIN_ACCOUNT_ADDRESS: &str = "signin_account_address";
const SIGNIN_IP: &str = "signin_ip";
const SIGNUP_IP: &str = "signup_ip";
const PASSWORD_ACCOUNT: &str = "password_account";
const EMAIL_ADDRESS: &str = "email_address";
const EMAIL_ADDRESS_OWNER: &str = "email_address_owner";
const EMAIL_IP: &str = "email_ip";
const EMAIL_CODE_IP: &str = "email_code_ip";
const MFA_SESSION: &str = "mfa_session";
const MFA_ACCOUNT: &str = "mfa_account";
const RECOVERY_CODE_SETS: &str = "recovery_code_sets";

/// New sets of recovery codes (confirmTotp, regenerateRecoveryCodes) per account per
/// SIGNIN_FAILURE_WINDOW: each costs ten argon2id hashes.
pub const RECOVERY_CODE_SETS_PER_WINDOW: u32 = 5;

/// How long a network stays known to an account without another sign-in from it.
pub const KNOWN_NETWORK_RETENTION: Duration = Duration::from_secs(90 * 86_400);

#[derive(Debug, Clone)]
pub struct RateLimits {
    pub failures_per_account: u32,
    pub failures_per_account_address: u32,
    pub failures_per_ip: u32,
    pub failure_window: Duration,
    pub signups_per_ip: u32,
    pub signup_window: Duration,
    pub ipv6_prefix: u8,
    pub emails_per_address: u32,
    pub emails_per_ip: u32,
    pub email_window: Duration,
    pub mfa_failures_per_session: u32,
    pub mfa_failures_per_account: u32,
}

/// An attempt taken from the counters; forgiven if it turns out not to be a failure.
#[must_use = "forgive the attempt when it succeeds"]
pub struct Attempt {
    events: Vec<i64>,
    /// For a sign-in: the account key and network to remember on success.
    known: Option<(String, String)>,
}

impl RateLimits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            failures_per_account: config.signin_failures_per_account,
            failures_per_account_address: config.signin_failures_per_account_address,
            failures_per_ip: config.signin_failures_per_ip,
            failure_window: config.signin_failure_window,
            signups_per_ip: config.signups_per_ip,
            signup_window: config.signup_window,
            ipv6_prefix: config.rate_limit_ipv6_prefix,
            emails_per_address: config.email.per_address,
            emails_per_ip: config.email.per_ip,
            email_window: config.email.window,
            mfa_failures_per_session: config.factors.failures_per_session,
            mfa_failures_per_account: config.factors.failures_per_account,
        }
    }

    /// The longest window: events older than this count nowhere.
    pub fn longest_window(&self) -> Duration {
        self.failure_window.max(self.signup_window).max(self.email_window)
    }

    /// The network a client address is counted in.
    pub fn network(&self, ip: Option<IpAddr>) -> Option<Network> {
        ip.map(|ip| Network::of(ip, self.ipv6_prefix))
    }

    /// Takes a sign-in attempt for `username` from `ip`, or refuses it.
    pub async fn take_signin(
        &self,
        conn: &mut AsyncPgConnection,
        username: &str,
        ip: Option<IpAddr>,
    ) -> AppResult<Attempt> {
        let account = account_key(username);
        let network = self.network(ip).map(|n| n.to_string());
        let pair = network.as_ref().map(|n| format!("{account} {n}"));
        let known = match &network {
            Some(network) => db::signin_addresses::is_known(conn, &account, network).await?,
            None => false,
        };
        let window = self.failure_window;
        let mut counters = Vec::with_capacity(3);
        if let (Some(network), Some(pair)) = (&network, &pair) {
            counters.push(Counter {
                bucket: SIGNIN_ACCOUNT_ADDRESS,
                key: pair,
                limit: self.failures_per_account_address,
                window,
            });
            counters.push(Counter { bucket: SIGNIN_IP, key: network, limit: self.failures_per_ip, window });
        }
        if !known {
            counters.push(Counter { bucket: SIGNIN_ACCOUNT, key: &account, limit: self.failures_per_account, window });
        }
        let events = take(conn, &counters).await?;
        Ok(Attempt { events, known: network.map(|n| (account, n)) })
    }

    /// Takes a passkey sign-in attempt from `ip`, counted as a password sign-in is: for
    /// the account the assertion names (its username), or, when it names none, for
    /// the client's network alone.
    pub async fn take_passkey_signin(
        &self,
        conn: &mut AsyncPgConnection,
        username: Option<&str>,
        ip: Option<IpAddr>,
    ) -> AppResult<Attempt> {
        match username {
            Some(username) => self.take_signin(conn, username, ip).await,
            None => self.take_network_signin(conn, ip).await,
        }
    }

    /// Takes a sign-in attempt that names no account yet (a passkey without a user
    /// handle we know, another provider's identity): counted for the client's network.
    pub async fn take_network_signin(&self, conn: &mut AsyncPgConnection, ip: Option<IpAddr>) -> AppResult<Attempt> {
        let Some(network) = self.network(ip).map(|n| n.to_string()) else {
            return Ok(Attempt { events: Vec::new(), known: None });
        };
        let counter =
            Counter { bucket: SIGNIN_IP, key: &network, limit: self.failures_per_ip, window: self.failure_window };
        let events = take(conn, &[counter]).await?;
        Ok(Attempt { events, known: None })
    }

    /// A sign-in attempt that was right: forgives it and remembers the network.
    pub async fn signin_succeeded(&self, conn: &mut AsyncPgConnection, attempt: Attempt) -> AppResult<()> {
        self.forgive(conn, &attempt).await?;
        if let Some((account, network)) = &attempt.known {
            db::signin_addresses::remember(conn, account, network).await?;
        }
        Ok(())
    }

    /// Takes an attempt at the current password of an account (changePassword, and
    /// every later check of a secret the caller must already know).
    pub async fn take_password_check(&self, conn: &mut AsyncPgConnection, user: UserId) -> AppResult<Attempt> {
        let key = user.to_string();
        let counter = Counter {
            bucket: PASSWORD_ACCOUNT,
            key: &key,
            limit: self.failures_per_account,
            window: self.failure_window,
        };
        let events = take(conn, &[counter]).await?;
        Ok(Attempt { events, known: None })
    }

    /// Forgives an attempt that was not a failure: a right password check, or one that
    /// checked nothing (the hashing queue refused it). Only that attempt's events go.
    pub async fn forgive(&self, conn: &mut AsyncPgConnection, attempt: &Attempt) -> AppResult<()> {
        db::rate_limit_events::forgive(conn, &attempt.events).await?;
        Ok(())
    }

    /// Counts a sign-up attempt from `ip`, refusing it when over the limit.
    pub async fn take_signup(&self, conn: &mut AsyncPgConnection, ip: Option<IpAddr>) -> AppResult<()> {
        let Some(network) = self.network(ip) else { return Ok(()) };
        let key = network.to_string();
        let counter = Counter { bucket: SIGNUP_IP, key: &key, limit: self.signups_per_ip, window: self.signup_window };
        take(conn, &[counter]).await.map(drop)
    }
}

impl RateLimits {
    /// Counts a message asked for `address` from `ip` (a verification, a change of
    /// address, a sign-up naming it), refusing it when either is over its limit.
    /// Counted by the mailbox's key whether or not an account has the address, so no
    /// spelling gets a budget of its own and the limit tells nothing either.
    pub async fn take_email(
        &self,
        conn: &mut AsyncPgConnection,
        address: &EmailAddress,
        ip: Option<IpAddr>,
    ) -> AppResult<()> {
        self.take_message(conn, EMAIL_ADDRESS, address, ip).await
    }

    /// Counts a password reset asked for `address` from `ip`. The address's budget is
    /// kept in two: requests from a network that the account with this verified address
    /// has signed in from count apart from everyone else's, so a storm of requests from
    /// strangers' networks cannot spend the owner's own. A stranger learns nothing from
    /// this: every network the account never signed in from shares one count, whether
    /// or not an account has the address.
    pub async fn take_reset_request(
        &self,
        conn: &mut AsyncPgConnection,
        address: &EmailAddress,
        ip: Option<IpAddr>,
    ) -> AppResult<()> {
        let owner = match (self.network(ip), db::users::find_by_verified_email(conn, address).await?) {
            (Some(network), Some(user)) => {
                db::signin_addresses::is_known(conn, &account_key(&user.username), &network.to_string()).await?
            }
            _ => false,
        };
        let bucket = if owner { EMAIL_ADDRESS_OWNER } else { EMAIL_ADDRESS };
        self.take_message(conn, bucket, address, ip).await
    }

    async fn take_message(
        &self,
        conn: &mut AsyncPgConnection,
        bucket: &'static str,
        address: &EmailAddress,
        ip: Option<IpAddr>,
    ) -> AppResult<()> {
        let network = self.network(ip).map(|n| n.to_string());
        let window = self.email_window;
        let mut counters = vec![Counter { bucket, key: address.key(), limit: self.emails_per_address, window }];
        if let Some(network) = &network {
            counters.push(Counter { bucket: EMAIL_IP, key: network, limit: self.emails_per_ip, window });
        }
        take(conn, &counters).await.map(drop)
    }

    /// Takes a try of an emailed code from `ip`; forgiven when the code was right. The
    /// code's own count of wrong tries stops guessing at one message; this one stops a
    /// client guessing across many.
    pub async fn take_code_check(&self, conn: &mut AsyncPgConnection, ip: Option<IpAddr>) -> AppResult<Attempt> {
        let Some(network) = self.network(ip).map(|n| n.to_string()) else {
            return Ok(Attempt { events: Vec::new(), known: None });
        };
        let counter =
            Counter { bucket: EMAIL_CODE_IP, key: &network, limit: self.emails_per_ip, window: self.email_window };
        let events = take(conn, &[counter]).await?;
        Ok(Attempt { events, known: None })
    }
}

impl RateLimits {
    /// Takes a try of a second-factor code by a session; forgiven when the code was
    /// right. Counted per session and per account, atomically, before the code is
    /// checked: N concurrent guesses against a limit of L check at most L.
    pub async fn take_mfa(&self, conn: &mut AsyncPgConnection, user: UserId, session: SessionId) -> AppResult<Attempt> {
        let (session, account) = (session.to_string(), user.to_string());
        let window = self.failure_window;
        let counters = [
            Counter { bucket: MFA_SESSION, key: &session, limit: self.mfa_failures_per_session, window },
            Counter { bucket: MFA_ACCOUNT, key: &account, limit: self.mfa_failures_per_account, window },
        ];
        let events = take(conn, &counters).await?;
        Ok(Attempt { events, known: None })
    }

    /// Counts a new set of recovery codes for the account, refusing it over the limit.
    pub async fn take_code_set(&self, conn: &mut AsyncPgConnection, user: UserId) -> AppResult<()> {
        let key = user.to_string();
        let counter = Counter {
            bucket: RECOVERY_CODE_SETS,
            key: &key,
            limit: RECOVERY_CODE_SETS_PER_WINDOW,
            window: self.failure_window,
        };
        take(conn, &[counter]).await.map(drop)
    }
}

/// Usernames are case-insensitive, so their counters are too. Unknown usernames are
/// counted like real ones: the limit must not reveal which accounts exist.
/// Bounded in length: sign-in counts attempts before validating the username, and a
/// client must not be able to store megabytes per attempt.
pub fn account_key(username: &str) -> String {
    username.chars().take(64).collect::<String>().to_lowercase()
}

async fn take(conn: &mut AsyncPgConnection, counters: &[Counter<'_>]) -> AppResult<Vec<i64>> {
    match db::rate_limit_events::take(conn, counters).await? {
        Ok(events) => Ok(events),
        Err((seconds, index)) => {
            let bucket = counters[index].bucket;
            metrics::counter!("authgraph_rate_limited_total", "bucket" => bucket.to_owned()).increment(1);
            Err(AppError::RateLimited { retry_after_secs: (seconds.ceil() as u64).max(1) })
        }
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
