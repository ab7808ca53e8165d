//! The second factor: TOTP enrolment and confirmation, `verifyMfa` (a TOTP or a
//! recovery code raises a session to AAL2), turning it off, new recovery codes, and
//! the operator's reset.
//!
//! Every check of a code is counted first, per session and per account
//! (`RateLimits::take_mfa`), and forgiven when right. A TOTP step and a recovery code
//! are each spent by one conditional UPDATE, so of two concurrent requests with one
//! code exactly one passes. A recovery-code check costs exactly one argon2id
//! verification: the code's keyed lookup finds the one row it can be, and a code that
//! finds none is checked against the dummy hash, so the time tells nothing either.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use secrecy::{ExposeSecret, SecretString};

use super::{Factors, qr, recovery, sealed::Sealed, totp};
use crate::auth::{
    Auth, Caller, Grant,
    check::forgiven,
    password::{Lane, Requester, Ticket},
    sessions,
};
use crate::{
    change::Changes,
    db::change::Change,
    db::{
        self,
        ids::UserId,
        models::{SecondFactor, TotpFactor, User},
        sessions::EndReason,
    },
    error::{AppError, AppResult},
    mail::{Mail, message::Content},
};

/// What `enrollTotp` hands the client: the secret three ways.
pub struct Enrollment {
    pub secret: String,
    pub uri: String,
    pub qr_svg: String,
}

/// The account's secrets are its own: sealed with its id as associated data.
fn account(user: UserId) -> [u8; 16] {
    *user.as_uuid().as_bytes()
}

fn ticket(user: UserId) -> Ticket {
    Ticket { lane: Lane::Account, requester: Requester::Account(user) }
}

/// `BAD_USER_INPUT` on `field`: the account has no factor to check or to renew.
fn no_factor(field: &'static str) -> AppError {
    AppError::bad_input(field, "No second factor is on for this account")
}

/// `enrollTotp`: a new secret, waiting for its first code. The guard has already
/// asked for AAL2 if a factor is on; the factor in use stays until `confirmTotp`.
pub async fn enroll(auth: &Auth, factors: &Factors, caller: &Caller) -> AppResult<Enrollment> {
    let mut secret = [0u8; totp::SECRET_LEN];
    rand::fill(&mut secret);
    let user = &caller.user;
    let sealed = factors.ring.seal(&account(user.id), &secret);
    let mut conn = auth.pool.get().await?;
    db::factors::start_enrolment(&mut conn, user.id, &sealed.key_id, &sealed.bytes).await?;
    let uri = totp::uri(&factors.issuer, &user.username, &secret);
    Ok(Enrollment { secret: totp::base32(&secret), qr_svg: qr::svg(&uri), uri })
}

/// What `confirmTotp` hands back: the codes, shown once, and an access token of this
/// session at AAL2 (the one that called keeps only the weight it claims).
pub struct Confirmed {
    pub codes: Vec<SecretString>,
    pub access_token: String,
}

/// `confirmTotp`: the first code of the waiting enrolment turns the factor on (replacing
/// an earlier one), raises this session to AAL2, and makes ten recovery codes.
pub async fn confirm(auth: &Auth, factors: &Factors, caller: &Caller, code: &SecretString) -> AppResult<Confirmed> {
    let user_id = caller.user.id;
    let (pending, attempt) = {
        let mut conn = auth.pool.get().await?;
        let pending = db::factors::find(&mut conn, user_id, false)
            .await?
            .ok_or_else(|| AppError::bad_input("code", "No enrolment is waiting: call enrollTotp first"))?;
        (pending, auth.rate_limits.take_mfa(&mut conn, user_id, caller.session_id).await?)
    };
    let secret = match open(factors, &pending) {
        Ok(secret) => secret,
        Err(err) => return Err(forgiven(auth, attempt, err).await),
    };
    let Some(step) = totp_step(factors, &pending, &secret, code) else {
        return Err(AppError::InvalidMfaCode);
    };
    let mut conn = auth.pool.get().await?;
    auth.rate_limits.forgive(&mut conn, &attempt).await?;
    auth.rate_limits.take_code_set(&mut conn, user_id).await?;
    drop(conn);
    let (codes, stored) = new_codes(auth, factors, user_id).await?;
    let session_id = caller.session_id;
    let notice = caller.user.verified_address().filter(|_| auth.mail.enabled);
    let methods = auth
        .changes
        .run(async |c| {
            // The step is spent on the factor itself: the code that confirmed cannot also pass verifyMfa.
            if !db::factors::spend_step(c, pending.id, step).await? {
                return Err(AppError::InvalidMfaCode);
            }
            db::factors::confirm(c, user_id, pending.id).await?;
            db::factors::replace_codes(c, user_id, &stored).await?;
            // The session's refresh token stays: it was handed to this same, fully
            // authenticated client (the account had no factor to pass until now).
            let Some(session) = db::factors::raise_session(c, session_id, SecondFactor::Totp, false).await? else {
                return Err(AppError::Unauthenticated(crate::auth::SESSION_ENDED));
            };
            if let Some(address) = &notice {
                auth.mail.queue_notice(c, address, Content::MfaEnabled).await?;
            }
            Ok(session.methods())
        })
        .await?;
    let access_token = auth.tokens.issue(user_id, session_id, caller.user.role, methods).map_err(AppError::internal)?;
    Ok(Confirmed { codes, access_token })
}

/// `verifyMfa`: a TOTP or recovery code raises the session to AAL2 and returns a new
/// pair; the refresh tokens the session was given before stop rotating.
pub async fn verify(auth: &Auth, factors: &Factors, caller: &Caller, code: &SecretString) -> AppResult<Grant> {
    let user = &caller.user;
    let method = counted_check(auth, factors, caller, code, true).await?;
    let policy = &auth.sessions;
    let session_id = caller.session_id;
    let (token, left, methods) = auth
        .changes
        .run(async |c| {
            // Locks only the session row, as ending a session does (see `sessions`).
            let Some(session) = db::factors::raise_session(c, session_id, method, true).await? else {
                return Err(AppError::Unauthenticated(crate::auth::SESSION_ENDED));
            };
            let token = sessions::new_chain(c, policy, &session).await?;
            let left = match method {
                SecondFactor::RecoveryCode => {
                    let left = db::factors::codes_left(c, user.id).await?;
                    if let Some(address) = user.verified_address().filter(|_| auth.mail.enabled) {
                        auth.mail.queue_notice(c, &address, Content::RecoveryCodeUsed { left }).await?;
                    }
                    Some(left)
                }
                _ => None,
            };
            Ok((token, left, session.methods()))
        })
        .await?;
    let mut grant = sessions::grant(auth, user.clone(), session_id, token, methods)?;
    grant.recovery_codes_left = left;
    Ok(grant)
}

/// `disableTotp`: a current TOTP code turns the factor off and ends the account's other
/// sessions; with no passkey left, the recovery codes go too and the owner is told the
/// account has no second factor. The guard has already asked for AAL2.
pub async fn disable(auth: &Auth, factors: &Factors, caller: &Caller, code: &SecretString) -> AppResult<()> {
    counted_check(auth, factors, caller, code, false).await?;
    let (user, keep) = (&caller.user, Some(caller.session_id));
    auth.changes
        .run(async |c| {
            db::users::lock(c, user.id).await?;
            let off = db::factors::remove_totp(c, user.id).await?;
            db::sessions::end_all(c, user.id, keep, EndReason::MfaDisabled).await?;
            if off {
                notify_off(&auth.mail, c, user, true).await?;
            }
            Ok(())
        })
        .await
}

/// Tells the owner (at a verified address) that the account has no second factor now,
/// and whether its other sessions ended with it.
pub(crate) async fn notify_off(mail: &Mail, c: &mut Change<'_>, user: &User, sessions_ended: bool) -> AppResult<()> {
    if let Some(address) = user.verified_address().filter(|_| mail.enabled) {
        mail.queue_notice(c, &address, Content::MfaDisabled { sessions_ended }).await?;
    }
    Ok(())
}

/// `regenerateRecoveryCodes`: a new set replaces every earlier code.
pub async fn regenerate(auth: &Auth, factors: &Factors, caller: &Caller) -> AppResult<Vec<SecretString>> {
    let user_id = caller.user.id;
    if !caller.user.has_second_factor() {
        return Err(no_factor("regenerateRecoveryCodes"));
    }
    {
        let mut conn = auth.pool.get().await?;
        auth.rate_limits.take_code_set(&mut conn, user_id).await?;
    }
    let (codes, stored) = new_codes(auth, factors, user_id).await?;
    let mut conn = auth.pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        // The factor may have been turned off meanwhile: then there is nothing to replace.
        if db::factors::find(conn, user_id, true).await?.is_none() {
            return Err(no_factor("regenerateRecoveryCodes"));
        }
        db::factors::replace_codes(conn, user_id, &stored).await?;
        Ok(())
    })
    .await?;
    Ok(codes)
}

/// `resetUserMfa` and `authgraph users reset-mfa`: removes every factor of the
/// account (lost devices); every session ends, and its verified address gets a notice.
/// Returns the account and how many sessions ended.
pub async fn reset(changes: &Changes, mail: &Mail, id: UserId) -> AppResult<(User, usize)> {
    let user = changes.run(async |c| db::users::find(c, id).await.map_err(Into::into)).await?;
    let user = user.ok_or(AppError::NotFound)?;
    let ended = remove_factor(changes, mail, &user).await?;
    Ok((user, ended))
}

/// Removes every factor and the codes, ends every session of the account, and sends
/// the notice, in one transaction. Returns how many sessions ended.
async fn remove_factor(changes: &Changes, mail: &Mail, user: &User) -> AppResult<usize> {
    changes
        .run(async |c| {
            db::users::lock(c, user.id).await?;
            db::factors::remove_all(c, user.id).await?;
            let ended = db::sessions::end_all(c, user.id, None, EndReason::MfaReset).await?;
            notify_off(mail, c, user, true).await?;
            Ok(ended)
        })
        .await
}

/// A code of the caller's factor, counted against the limits first and forgiven when
/// right (or when nothing could be checked): the method it passed, or
/// `INVALID_MFA_CODE`.
async fn counted_check(
    auth: &Auth,
    factors: &Factors,
    caller: &Caller,
    code: &SecretString,
    recovery_allowed: bool,
) -> AppResult<SecondFactor> {
    let user = &caller.user;
    if !user.has_second_factor() {
        return Err(no_factor("code"));
    }
    let attempt = {
        let mut conn = auth.pool.get().await?;
        auth.rate_limits.take_mfa(&mut conn, user.id, caller.session_id).await?
    };
    let method = match check(auth, factors, user, code, recovery_allowed).await {
        Ok(Some(method)) => method,
        Ok(None) => return Err(AppError::InvalidMfaCode),
        Err(err) => return Err(forgiven(auth, attempt, err).await),
    };
    let mut conn = auth.pool.get().await?;
    auth.rate_limits.forgive(&mut conn, &attempt).await?;
    Ok(method)
}

/// Checks a code of the account's confirmed factor: a TOTP code, or (when
/// `recovery_allowed`) a recovery code. `Some(method)` once the code is spent.
async fn check(
    auth: &Auth,
    factors: &Factors,
    user: &User,
    code: &SecretString,
    recovery_allowed: bool,
) -> AppResult<Option<SecondFactor>> {
    if let Some(normalized) = recovery::normalize(code.expose_secret()) {
        if !recovery_allowed {
            return Ok(None);
        }
        return Ok(check_recovery(auth, factors, user.id, normalized).await?.then_some(SecondFactor::RecoveryCode));
    }
    let mut conn = auth.pool.get().await?;
    let Some(factor) = db::factors::find(&mut conn, user.id, true).await? else {
        return Ok(None);
    };
    let secret = open(factors, &factor)?;
    let Some(step) = totp_step(factors, &factor, &secret, code) else {
        return Ok(None);
    };
    if !db::factors::spend_step(&mut conn, factor.id, step).await? {
        return Ok(None);
    }
    reseal_if_stale(factors, &mut conn, &factor, &secret).await;
    Ok(Some(SecondFactor::Totp))
}

/// The step a TOTP code of `factor` (whose opened secret is `secret`) is for, if it is
/// right now and later than the last step spent.
fn totp_step(factors: &Factors, factor: &TotpFactor, secret: &[u8], code: &SecretString) -> Option<i64> {
    let last = factor.last_step.and_then(|s| u64::try_from(s).ok());
    let step = totp::verify(secret, code.expose_secret().trim(), factors.clock.now(), last);
    step.and_then(|s| i64::try_from(s).ok())
}

/// The factor's secret as stored.
fn sealed(factor: &TotpFactor) -> Sealed {
    Sealed { key_id: factor.key_id.clone(), bytes: factor.sealed.clone() }
}

fn open(factors: &Factors, factor: &TotpFactor) -> AppResult<Vec<u8>> {
    factors.ring.open(&account(factor.user_id), &sealed(factor)).map_err(|_| {
        AppError::internal(anyhow::anyhow!(
            "the TOTP secret of account {} was sealed under key {}, which MFA_ENCRYPTION_KEY and \
             MFA_ENCRYPTION_KEY_PREVIOUS do not hold (or the row was altered)",
            factor.user_id,
            factor.key_id
        ))
    })
}

/// Seals `secret` (the factor's, opened) under the current key once it was opened with
/// an earlier one, so an old key can be dropped after every account has signed in once.
async fn reseal_if_stale(factors: &Factors, conn: &mut AsyncPgConnection, factor: &TotpFactor, secret: &[u8]) {
    let ring = &factors.ring;
    if !ring.is_stale(&sealed(factor)) {
        return;
    }
    let fresh = ring.seal(&account(factor.user_id), secret);
    if let Err(err) = db::factors::reseal(conn, factor.id, &fresh.key_id, &fresh.bytes).await {
        tracing::warn!(error = %err, "could not seal a TOTP secret under the current key");
    }
}

/// One argon2id verification whatever the code: the stored code its lookup names, or
/// the dummy hash when none; then the code is spent.
async fn check_recovery(auth: &Auth, factors: &Factors, user_id: UserId, normalized: String) -> AppResult<bool> {
    let lookups: Vec<i32> = factors.lookups.iter().map(|k| k.of(&normalized)).collect();
    let found = {
        let mut conn = auth.pool.get().await?;
        db::factors::find_code(&mut conn, user_id, &lookups).await?
    };
    let presented = SecretString::from(normalized);
    let right = auth.hasher.verify(ticket(user_id), &presented, found.as_ref().map(|c| c.code_hash.as_str())).await?;
    let Some(code) = found.filter(|_| right) else { return Ok(false) };
    let mut conn = auth.pool.get().await?;
    Ok(db::factors::spend_code(&mut conn, code.id).await?)
}

/// A new set of recovery codes: the codes to show, and `(lookup, argon2id hash)` to
/// store. The ten hashes go through the hashing queue together.
async fn new_codes(
    auth: &Auth,
    factors: &Factors,
    user_id: UserId,
) -> AppResult<(Vec<SecretString>, Vec<(i32, String)>)> {
    let set = recovery::generate_distinct(&factors.lookups[0]);
    let hashes = futures_util::future::try_join_all(set.iter().map(|(code, _)| {
        let normalized = SecretString::from(recovery::normalize(code.expose_secret()).expect("a generated code"));
        async move { auth.hasher.hash(ticket(user_id), &normalized).await }
    }))
    .await?;
    let stored = set.iter().zip(hashes).map(|((_, lookup), hash)| (*lookup, hash)).collect();
    Ok((set.into_iter().map(|(code, _)| code).collect(), stored))
}
