//! Sessions and their refresh tokens: open, rotate, end.
//!
//! A rotation is two statements and no transaction: one read of the token with its
//! session and account decides, and one conditional statement writes the child, marks
//! the parent and touches the session (`db::refresh_tokens::rotate`), writing nothing
//! if the read went out of date in between; the rotation then reads again. The write
//! locks the session row and then the token row; ending a session (logout, password
//! change, reuse, deletion) and verifyMfa lock only session rows, since the session row
//! alone decides whether its tokens work; so none of them can deadlock. Every time a
//! rotation compares is read from the database's clock, which also wrote `used_at`.
//! Concurrent refreshes of one token all reach the write: exactly one marks the parent
//! (the others' `UPDATE` waits for it, then finds it used), and the rest read again,
//! find the token used and, inside the reuse interval, are handed the same successor.
//! A parent can have only one child (unique index on `parent_id`), so no interleaving
//! can ever produce two.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use secrecy::{ExposeSecret, SecretString};

use super::{
    Auth, Caller, Grant,
    refresh_token::{self, ChainKey},
};
use crate::{
    db::{
        self,
        ids::{SessionId, UserId},
        models::{Methods, NewRefreshToken, NewSession, Session, User, is_permanent_ban},
        sessions::EndReason,
    },
    error::{AppError, AppResult, RefreshFailure},
};

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
    /// An account without a password confirms a sensitive change by having signed in
    /// (through its provider or a passkey) no longer ago than this (REAUTH_WINDOW).
    pub reauth_window: Duration,
}

impl SessionPolicy {
    /// When a refresh token made at `now` expires: one idle lifetime later, never past
    /// the session's own end.
    fn token_expiry(&self, now: DateTime<Utc>, max_expires_at: DateTime<Utc>) -> DateTime<Utc> {
        (now + self.idle_ttl).min(max_expires_at)
    }
}

/// How many rotations past a reused token we follow to find the session's current
/// one. Inside a 10 s interval a real client rotates once or twice.
const MAX_CHAIN_WALK: usize = 16;

/// Opens a session for `user`, proved by `methods` (a password, or a passkey),
/// inside the caller's transaction, and returns its first refresh token.
pub async fn open(
    conn: &mut AsyncPgConnection,
    policy: &SessionPolicy,
    user_id: UserId,
    user_agent: Option<&str>,
    methods: Methods,
) -> AppResult<(Session, SecretString)> {
    let now = Utc::now();
    let max_expires_at = now + policy.max_age;
    let expires_at = policy.token_expiry(now, max_expires_at);
    let user_agent = user_agent.map(|ua| truncate(ua, 512));
    let new = NewSession {
        user_id,
        expires_at,
        max_expires_at,
        user_agent,
        signed_in_with: methods.first,
        mfa_at: methods.second.map(|_| now),
        mfa_method: methods.second,
        impersonator_id: None,
    };
    let session = db::sessions::insert(conn, new).await?;
    let token = refresh_token::generate();
    store(conn, session.id, &token, None, expires_at).await?;
    Ok((session, token))
}

/// Opens an impersonation's session inside the caller's transaction: `impersonator`
/// acts for `user_id` for `ttl`, with the methods (and so the assurance) of the
/// impersonator's own session. It has no refresh token: it ends when `ttl` is over,
/// or sooner by logout, a ban, or any ending of the account's sessions.
pub async fn open_impersonation(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    impersonator: UserId,
    user_agent: Option<&str>,
    methods: Methods,
    ttl: Duration,
) -> AppResult<Session> {
    let now = Utc::now();
    let ends = now + ttl;
    let new = NewSession {
        user_id,
        expires_at: ends,
        max_expires_at: ends,
        user_agent: user_agent.map(|ua| truncate(ua, 512)),
        signed_in_with: methods.first,
        mfa_at: methods.second.map(|_| now),
        mfa_method: methods.second,
        impersonator_id: Some(impersonator),
    };
    Ok(db::sessions::insert(conn, new).await?)
}

/// Starts a new chain of refresh tokens for a live session inside the caller's
/// transaction (verifyMfa, whose session's earlier tokens stop rotating), and moves
/// the session's expiry with it.
pub async fn new_chain(
    conn: &mut AsyncPgConnection,
    policy: &SessionPolicy,
    session: &Session,
) -> AppResult<SecretString> {
    let expires_at = policy.token_expiry(Utc::now(), session.max_expires_at);
    let token = refresh_token::generate();
    store(conn, session.id, &token, None, expires_at).await?;
    db::sessions::touch(conn, session.id, expires_at).await?;
    Ok(token)
}

/// Stores `token` (its hash) for `session`: the child of `parent`, or a chain's first.
async fn store(
    conn: &mut AsyncPgConnection,
    session_id: SessionId,
    token: &SecretString,
    parent_id: Option<uuid::Uuid>,
    expires_at: DateTime<Utc>,
) -> AppResult<()> {
    let token_hash = refresh_token::hash(token.expose_secret());
    let new = NewRefreshToken { session_id, token_hash: token_hash.as_bytes(), parent_id, expires_at };
    db::refresh_tokens::insert(conn, new).await?;
    Ok(())
}

/// Builds the client's grant for a session, with the methods it has passed.
pub fn grant(
    auth: &Auth,
    user: User,
    session_id: SessionId,
    refresh_token: SecretString,
    methods: Methods,
) -> AppResult<Grant> {
    let access_token = auth.tokens.issue(user.id, session_id, user.role, methods).map_err(AppError::internal)?;
    Ok(Grant {
        access_token,
        refresh_token,
        expires_in: auth.tokens.ttl_secs(),
        user,
        methods,
        recovery_codes_left: None,
    })
}

enum Rotation {
    Rotated {
        user: User,
        session_id: SessionId,
        token: SecretString,
        methods: Methods,
    },
    /// Its token was presented again after the reuse interval: the session must end.
    Reused {
        session_id: SessionId,
    },
}

/// `refresh`: exchanges a refresh token for a new pair.
pub async fn refresh(auth: &Auth, presented: &SecretString) -> AppResult<Grant> {
    let presented = presented.expose_secret();
    if !refresh_token::is_well_formed(presented) {
        return Err(AppError::InvalidRefreshToken(RefreshFailure::NotFound));
    }
    let policy = &auth.sessions;
    let mut conn = auth.pool.get().await?;
    let outcome = rotate(&mut conn, policy, presented).await?;
    match outcome {
        // The session keeps what it reached: a refresh of an AAL2 session is AAL2.
        Rotation::Rotated { user, session_id, token, methods } => grant(auth, user, session_id, token, methods),
        Rotation::Reused { session_id } => {
            auth.changes
                .run(async |c| db::sessions::end(c, session_id, EndReason::Reuse).await.map_err(Into::into))
                .await?;
            metrics::counter!("authgraph_refresh_reuse_detected_total").increment(1);
            tracing::warn!("refresh token reuse detected; session revoked");
            Err(AppError::InvalidRefreshToken(RefreshFailure::Reused))
        }
    }
}

/// How many times a rotation reads again after its write found the read out of date.
/// Each write that loses waits for the writer that won, so the next read sees the
/// outcome: one more read is all a race can take.
const MAX_ROTATION_READS: usize = 3;

async fn rotate(conn: &mut AsyncPgConnection, policy: &SessionPolicy, presented: &str) -> AppResult<Rotation> {
    let invalid = |reason| Err(AppError::InvalidRefreshToken(reason));
    let hash = refresh_token::hash(presented);
    for _ in 0..MAX_ROTATION_READS {
        let Some((token, session, user, now)) = db::refresh_tokens::find_for_rotation(conn, &hash).await? else {
            return invalid(RefreshFailure::NotFound);
        };
        // The token is the credential, and it is a real one: its holder may learn of
        // the ban (a ban also ended the session, so no token of it would work anyway).
        if let Some(until) = user.ban() {
            return Err(AppError::AccountBanned { until: Some(until).filter(|u| !is_permanent_ban(*u)) });
        }
        if session.revoked_at.is_some() {
            return invalid(RefreshFailure::Revoked);
        }
        if session.expires_at <= now {
            return invalid(RefreshFailure::Expired);
        }
        // A token handed out before verifyMfa (while the session was AAL1) never yields
        // an AAL2 token: inside the reuse interval of that moment it is refused (a
        // request that raced verifyMfa), after it, it is reuse.
        if let Some(since) = session.refresh_tokens_since.filter(|since| token.created_at < *since) {
            if within(since, now, policy) {
                return invalid(RefreshFailure::Reused);
            }
            return Ok(Rotation::Reused { session_id: session.id });
        }
        let current = match token.used_at {
            None if token.expires_at <= now => return invalid(RefreshFailure::Expired),
            None => {
                let child = policy.chain_keys[0].child_of(presented);
                let child_hash = refresh_token::hash(child.expose_secret());
                let rotation = db::refresh_tokens::Rotate {
                    session_id: session.id,
                    parent_id: token.id,
                    parent_created_at: token.created_at,
                    child_hash: &child_hash,
                    expires_at: policy.token_expiry(now, session.max_expires_at),
                };
                if !db::refresh_tokens::rotate(conn, rotation).await? {
                    // A concurrent rotation, logout or verifyMfa came first: read again.
                    continue;
                }
                child
            }
            Some(used_at) if within(used_at, now, policy) => current_successor(conn, policy, presented).await?,
            Some(_) => return Ok(Rotation::Reused { session_id: session.id }),
        };
        return Ok(Rotation::Rotated { user, session_id: session.id, token: current, methods: session.methods() });
    }
    Err(AppError::internal(anyhow::anyhow!("refresh: the rotation's read kept going out of date")))
}

/// Whether a token used at `used_at` is still inside the reuse interval at `now`, both
/// read from the database's clock. A negative age (the database's clock stepped back)
/// counts as zero: a retry must never be mistaken for reuse because of a clock.
fn within(used_at: DateTime<Utc>, now: DateTime<Utc>, policy: &SessionPolicy) -> bool {
    (now - used_at).to_std().unwrap_or_default() <= policy.reuse_interval
}

/// Follows the chain of successors from a used token to the one not used yet. Each
/// step tries the current chain key, then earlier ones (a key may have changed since
/// that rotation).
async fn current_successor(
    conn: &mut AsyncPgConnection,
    policy: &SessionPolicy,
    used: &str,
) -> AppResult<SecretString> {
    let mut current = SecretString::from(used.to_owned());
    for _ in 0..MAX_CHAIN_WALK {
        let mut next = None;
        for key in &policy.chain_keys {
            let candidate = key.child_of(current.expose_secret());
            let hash = refresh_token::hash(candidate.expose_secret());
            if let Some(row) = db::refresh_tokens::find_by_hash(conn, &hash).await? {
                next = Some((candidate, row.used_at.is_none()));
                break;
            }
        }
        match next {
            Some((candidate, true)) => return Ok(candidate),
            Some((candidate, false)) => current = candidate,
            // Its successor was made with a key no longer configured.
            None => return Err(AppError::InvalidRefreshToken(RefreshFailure::Reused)),
        }
    }
    Err(AppError::InvalidRefreshToken(RefreshFailure::Reused))
}

/// Which sessions `logout` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    /// Only the session of the access token that calls logout.
    Current,
    /// Every session of the user except the current one.
    Others,
    /// Every session of the user.
    All,
}

/// `logout`: ends sessions; their access and refresh tokens stop working at once.
pub async fn logout(auth: &Auth, caller: &Caller, scope: LogoutScope) -> AppResult<()> {
    let (user_id, current) = (caller.user.id, caller.session_id);
    auth.changes
        .run(async |c| {
            match scope {
                LogoutScope::Current => db::sessions::end(c, current, EndReason::Logout).await.map(drop)?,
                LogoutScope::Others => {
                    db::sessions::end_all(c, user_id, Some(current), EndReason::Logout).await.map(drop)?
                }
                LogoutScope::All => db::sessions::end_all(c, user_id, None, EndReason::Logout).await.map(drop)?,
            }
            Ok(())
        })
        .await
}

/// `sessions`: the caller's live sessions.
pub async fn list(auth: &Auth, caller: &Caller) -> AppResult<Vec<Session>> {
    let user_id = caller.user.id;
    db::read(&auth.pool, |conn| Box::pin(db::sessions::list_live(conn, user_id))).await
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
