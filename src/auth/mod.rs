//! Authentication: who is calling, the flows that create and end sessions, and what
//! every capability built on them shares (tokens, sessions, admission, limits, password
//! hashing). The capabilities live beside it (`email`, `factors`, and next passkeys,
//! other providers and administration): they use `auth`, and `auth` knows none of them.
//!
//! - `access_token`: signing and verifying JWTs.
//! - `refresh_token`: opaque refresh tokens, their hashes and successors.
//! - `password`: argon2id off the runtime.
//! - `credentials`: signup, signin, changePassword.
//! - `check`: the limited check of a password the caller already knows.
//! - `sessions`: opening, refreshing (rotation, reuse detection) and ending sessions.
//! - `rate_limit`: the brute-force and message limits, counted in PostgreSQL.
//! - `network`: the client network a limit counts (an IPv4 address, an IPv6 prefix).
//! - this file: `Auth` (what the flows share), a request's credentials and its caller.

pub mod access_token;
pub mod check;
pub mod credentials;

pub mod network;
pub mod password;
pub mod rate_limit;
pub mod refresh_token;

pub mod sessions;

use std::{net::IpAddr, sync::Arc};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::{
    change::Changes,
    config::Config,
    db::{
        self, DbPool,
        ids::{SessionId, UserId},
        models::{Assurance, Methods, User},
    },
    error::{AppError, AppResult},
    mail::Mail,
    secret::Keys,
    session_cache::{Lookup, SessionCache},
};
use access_token::{AccessTokens, Claims};
use password::PasswordHasher;
use rate_limit::RateLimits;
use refresh_token::ChainKey;
use sessions::SessionPolicy;

/// What the authentication flows work with: the pool, the signing keys, the hashing
/// queue, the session policy, the brute-force limits and the mail settings. Built once at start; the flows
/// take it rather than the whole application state.
pub struct Auth {
    pub pool: DbPool,
    pub tokens: AccessTokens,
    pub hasher: PasswordHasher,
    pub sessions: SessionPolicy,
    pub rate_limits: RateLimits,
    /// Shared with the outbox's sender.
    pub mail: Arc<Mail>,
    /// Live sessions this instance has seen (see `session_cache`); `changes` forgets
    /// the accounts every change touched, once it committed.
    pub cache: Arc<SessionCache>,
    /// Where every change to accounts and sessions runs (see `crate::change`).
    pub changes: Changes,
    /// What every admin power asks of its caller.
    pub admin_rule: AdminRule,
}

impl Auth {
    /// `keys` are the resolved keys (see `secret::resolve`); `cache` is the one the
    /// instance's event listener keeps up to date.
    pub fn new(config: &Config, keys: &Keys, pool: DbPool, cache: Arc<SessionCache>) -> anyhow::Result<Self> {
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
            reauth_window: config.social.reauth_window,
        };
        let rate_limits = RateLimits::from_config(config);
        let mail = Arc::new(Mail::new(&config.email, keys)?);
        let changes = Changes::new(pool.clone(), cache.clone(), Some(mail.clone()));
        let admin_rule = AdminRule { require_aal2: config.admin_require_aal2() };
        Ok(Self { pool, tokens, hasher, sessions, rate_limits, mail, cache, changes, admin_rule })
    }
}

impl Auth {
    /// Records a sign-in whose credential was checked and refused (`SIGNIN_FAILED`:
    /// a wrong password, a passkey assertion or a provider's answer that did not
    /// verify), from the client's network and user agent. Only attempts that reached
    /// the check are recorded; the limits bound how many, and count those they refuse
    /// before it.
    pub async fn record_failed_signin(
        &self,
        client: &Client,
        subject: Option<UserId>,
        username: Option<&str>,
        provider: Option<&str>,
        reason: &str,
    ) -> AppResult<()> {
        let network = self.rate_limits.network(client.ip).map(|n| n.to_string());
        let failed = db::audit::FailedSignin {
            subject,
            username,
            provider,
            network: network.as_deref(),
            user_agent: client.user_agent.as_deref(),
            reason,
        };
        let mut conn = self.pool.get().await?;
        Ok(db::audit::signin_failed(&mut conn, failed).await?)
    }
}

/// The authenticated caller: the account and the session its access token names.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub session_id: SessionId,
    /// The weaker of what the token claims and what its session has reached: a token
    /// issued before the session passed the second factor keeps working, as AAL1.
    pub assurance: Assurance,
    /// The ADMIN acting through this session, when the token is an impersonation's
    /// (its `act` claim, which only `admin::impersonate` signs, for a session opened by
    /// it and never refreshed): such a caller passes no admin rule, and
    /// `graphql::guard` holds its mutations to `IMPERSONATION_MAY`.
    pub impersonator: Option<UserId>,
}

/// What an admin power asks of its caller (`ADMIN_REQUIRE_AAL2`): the ADMIN role, and
/// either a session at AAL2 (an account without a second factor must enrol one first)
/// or, with the rule off, the assurance the account itself asks for.
#[derive(Debug, Clone, Copy)]
pub struct AdminRule {
    pub require_aal2: bool,
}

impl Caller {
    /// The one check of every admin power: `FORBIDDEN` for anyone but an ADMIN (and
    /// for an impersonation, whoever it impersonates), then
    /// `MFA_REQUIRED` (`ENROLL` without a second factor, `VERIFY` at AAL1) where the
    /// rule asks for AAL2.
    pub fn admin(&self, rule: AdminRule) -> AppResult<()> {
        if self.user.role != db::models::Role::Admin || self.impersonator.is_some() {
            return Err(AppError::Forbidden);
        }
        if rule.require_aal2 && !self.user.has_second_factor() {
            return Err(AppError::MfaEnrollRequired);
        }
        if self.assurance < Assurance::Aal2 && (rule.require_aal2 || self.needs_second_factor()) {
            return Err(AppError::MfaRequired);
        }
        Ok(())
    }

    /// Whether the caller passes the admin rule (for fields that answer null otherwise).
    pub fn is_admin(&self, rule: AdminRule) -> bool {
        self.admin(rule).is_ok()
    }

    /// The account has a second factor this session has not passed: only `me`,
    /// `sessions`, `logout` and `verifyMfa` answer it.
    pub fn needs_second_factor(&self) -> bool {
        self.user.needs_second_factor(self.assurance)
    }
}

/// Why a session check refused a token whose session is over (logout, reuse detection,
/// password change, deletion): the one refusal that ends a socket too.
pub const SESSION_ENDED: &str = "session ended";

/// The admission of one operation: what its door (an HTTP request's `Authorization`
/// header, or a socket's `connection_init`) learned, put into that operation alone.
/// The token is verified once at the door (CPU only); the session check, which needs
/// the database or the session cache, runs at most once per operation and only when a
/// protected field asks for it, so public queries never pay for it. A socket makes a
/// new one for every operation it runs (see `Credentials`), so an operation is judged
/// by the session and the account as they are when it runs, not as they were when the
/// socket opened.
pub struct RequestAuth {
    token: Option<Result<Claims, &'static str>>,
    caller: OnceCell<Caller>,
    /// The account this request just signed in (signup, signin, refresh, reset): its
    /// payload may show the account's private fields though no bearer token came.
    granted: std::sync::OnceLock<UserId>,
    /// What the request's operations did to the client's refresh token, for the edge
    /// to write into the cookie in cookie mode; the last operation's word stands.
    refresh_outcome: std::sync::Mutex<Option<RefreshOutcome>>,
    pub client: Client,
}

/// What a request did to the client's refresh token.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// A session was opened or its token rotated: the client holds this one now.
    Issued(SecretString),
    /// The client's session ended (logout of it or of all): its token is dead.
    Ended,
}

/// Where a request comes from.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// `User-Agent`, recorded on sessions this request opens.
    pub user_agent: Option<String>,
    /// The client's address (see `http::client_ip`), for rate limits.
    pub ip: Option<IpAddr>,
    /// The refresh token from the cookie, in cookie mode.
    pub refresh_cookie: Option<SecretString>,
    /// The request carried the refresh cookie more than once (refused by `refresh`).
    pub refresh_cookie_duplicated: bool,
}

/// A socket's verified token and client, kept for its life: each operation on the
/// socket is admitted anew from them (`admit`), exactly as an HTTP request with the
/// same header would be.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub claims: Claims,
    pub client: Client,
}

impl Credentials {
    /// A fresh admission for one operation.
    pub fn admit(&self) -> RequestAuth {
        RequestAuth::new(Some(Ok(self.claims.clone())), self.client.clone())
    }

    pub fn session_id(&self) -> SessionId {
        self.claims.sid
    }
}

impl RequestAuth {
    pub fn new(token: Option<Result<Claims, &'static str>>, client: Client) -> Self {
        Self {
            token,
            caller: OnceCell::new(),
            granted: std::sync::OnceLock::new(),
            refresh_outcome: std::sync::Mutex::new(None),
            client,
        }
    }

    /// A request with no credentials.
    pub fn anonymous() -> Self {
        Self::new(None, Client::default())
    }

    /// Records that this request signed `user` in (see `granted`) and handed the client
    /// `refresh_token`.
    pub fn grant(&self, user: UserId, refresh_token: SecretString) {
        let _ = self.granted.set(user);
        *self.refresh_outcome.lock().unwrap() = Some(RefreshOutcome::Issued(refresh_token));
    }

    /// Records that the client's own session ended, and with it its refresh token.
    pub fn end_refresh(&self) {
        *self.refresh_outcome.lock().unwrap() = Some(RefreshOutcome::Ended);
    }

    /// What the request did to the client's refresh token, if anything.
    pub fn refresh_outcome(&self) -> Option<RefreshOutcome> {
        self.refresh_outcome.lock().unwrap().clone()
    }

    /// The account this request signed in, if it did.
    pub fn granted(&self) -> Option<UserId> {
        self.granted.get().copied()
    }

    /// The ADMIN acting, when the request's valid token is an impersonation's (its
    /// `act` claim): the door names it as the actor of the request's changes.
    pub fn impersonator(&self) -> Option<UserId> {
        match &self.token {
            Some(Ok(claims)) => claims.act.map(|actor| actor.sub),
            _ => None,
        }
    }

    /// Whether the request carried an access token at all (valid or not).
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The caller's user id, if a protected field already established it.
    pub fn known_user_id(&self) -> Option<UserId> {
        self.caller.get().map(|c| c.user.id)
    }

    /// The caller, or `UNAUTHENTICATED` if the token is missing, invalid, expired (a
    /// socket outlives its token's verification), or names a session that has ended.
    /// Answered from the session cache when it holds the session, else by one query
    /// whose answer fills it.
    pub async fn caller(&self, auth: &Auth) -> AppResult<&Caller> {
        let claims = match &self.token {
            None => return Err(AppError::Unauthenticated("no access token")),
            Some(Err(reason)) => return Err(AppError::Unauthenticated(reason)),
            Some(Ok(claims)) => claims,
        };
        if claims.has_expired() {
            return Err(AppError::Unauthenticated("token expired"));
        }
        self.caller
            .get_or_try_init(|| async {
                let (user_id, session_id, claimed) = (claims.sub, claims.sid, claims.assurance());
                let impersonator = claims.act.map(|actor| actor.sub);
                let ticket = match auth.cache.get(user_id, session_id, claimed) {
                    Lookup::Hit { user, reached } => {
                        return Ok(Caller { user, session_id, assurance: reached.min(claimed), impersonator });
                    }
                    Lookup::Miss(ticket) => ticket,
                };
                let found =
                    db::read(&auth.pool, |conn| Box::pin(db::users::find_by_live_session(conn, user_id, session_id)))
                        .await?;
                let Some((user, reached, session_expires_at)) = found else {
                    return Err(AppError::Unauthenticated(SESSION_ENDED));
                };
                let token_expires_at = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
                auth.cache.fill(ticket, session_id, &user, reached, session_expires_at.min(token_expires_at));
                Ok(Caller { user, session_id, assurance: reached.min(claimed), impersonator })
            })
            .await
    }
}

/// What a successful signup, signin, refresh, reset or verifyMfa hands the client.
pub struct Grant {
    pub access_token: String,
    pub refresh_token: SecretString,
    pub expires_in: i64,
    pub user: User,
    /// How the session proved who is behind it (and what the access token claims).
    pub methods: Methods,
    /// After verifyMfa with a recovery code: how many unused codes remain.
    pub recovery_codes_left: Option<i64>,
}

impl Grant {
    /// The account has a second factor and this session has not passed it yet.
    pub fn mfa_required(&self) -> bool {
        self.user.needs_second_factor(self.assurance())
    }

    /// What the session has reached.
    pub fn assurance(&self) -> Assurance {
        self.methods.assurance()
    }
}
