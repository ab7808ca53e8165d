//! The flows of emailed links and codes: password reset, verification of an address,
//! change of address.
//!
//! A link token is looked up by its hash; a code by the account (the signed-in
//! caller's, or the account that verified the given address) and then compared by
//! its MAC, each try counted on the token first (`EMAIL_CODE_ATTEMPTS`), in a
//! transaction of its own that commits whether the code was right or not. A token is
//! used in the same transaction as the change it allows, after re-checking it there,
//! so two requests with one token change the account once.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use secrecy::SecretString;

use crate::{
    auth::{
        Auth, Caller, Client, Grant,
        check::{WithoutPassword, verify_current_password},
        password::{Lane, Requester, Ticket},
        rate_limit, sessions,
    },
    db::{
        self,
        change::Change,
        ids::UserId,
        models::{EmailToken, Methods, Purpose},
        sessions::EndReason,
    },
    email_address::EmailAddress,
    error::{AppError, AppResult, EmailTokenFailure},
    mail::{message::Content, secret},
    users::validate,
};

/// The address in `field`, in canonical form, if mail is on and it can be delivered.
fn usable_address(auth: &Auth, field: &'static str, address: &str) -> AppResult<EmailAddress> {
    auth.mail.require(field)?;
    validate::email(field, address)
}

fn refused(reason: EmailTokenFailure) -> AppError {
    AppError::InvalidEmailToken(reason)
}

/// Why a token cannot be used now, if it cannot. The link and the code are one
/// message's two ways in: once its code has died of too many wrong tries, its link
/// is dead too.
fn unusable(auth: &Auth, token: &EmailToken, expired: bool) -> Option<EmailTokenFailure> {
    if token.used_at.is_some() {
        Some(EmailTokenFailure::Used)
    } else if token.superseded_at.is_some() || expired {
        Some(EmailTokenFailure::Expired)
    } else if token.attempts >= max_attempts(auth) {
        Some(EmailTokenFailure::TooManyAttempts)
    } else {
        None
    }
}

fn max_attempts(auth: &Auth) -> i32 {
    i32::try_from(auth.mail.code_attempts).unwrap_or(i32::MAX)
}

/// The address a token was sent to. Every token names a canonical address; one
/// written before addresses had keys that no longer parses is dead.
fn sent_to(token: &EmailToken) -> AppResult<EmailAddress> {
    EmailAddress::parse(&token.email).map_err(|_| refused(EmailTokenFailure::Expired))
}

/// The live token of `purpose` a link token names, locked.
async fn by_link(auth: &Auth, conn: &mut AsyncPgConnection, purpose: Purpose, token: &str) -> AppResult<EmailToken> {
    if !secret::is_token(token) {
        return Err(refused(EmailTokenFailure::NotFound));
    }
    match db::email_tokens::lock_by_hash(conn, &secret::hash_token(token)).await? {
        Some((row, expired)) if row.purpose == purpose => match unusable(auth, &row, expired) {
            Some(reason) => Err(refused(reason)),
            None => Ok(row),
        },
        _ => Err(refused(EmailTokenFailure::NotFound)),
    }
}

/// The account's latest token of `purpose`, if `code` is its code. The try is counted
/// in a transaction that commits whatever the outcome.
async fn by_code(auth: &Auth, user_id: UserId, purpose: Purpose, code: &str) -> AppResult<EmailToken> {
    if !secret::is_code(code) {
        return Err(refused(EmailTokenFailure::NotFound));
    }
    let max = max_attempts(auth);
    let key = &auth.mail.code_key;
    let mut conn = auth.pool.get().await?;
    let checked = conn
        .transaction::<_, AppError, _>(async |conn| {
            let Some((row, expired)) = db::email_tokens::lock_latest(conn, user_id, purpose).await? else {
                return Ok(Err(EmailTokenFailure::NotFound));
            };
            if let Some(reason) = unusable(auth, &row, expired) {
                return Ok(Err(reason));
            }
            let attempts = db::email_tokens::count_attempt(conn, row.id).await?;
            if key.verify(user_id, purpose, code, &row.code_hash) {
                Ok(Ok(row))
            } else if attempts >= max {
                Ok(Err(EmailTokenFailure::TooManyAttempts))
            } else {
                Ok(Err(EmailTokenFailure::NotFound))
            }
        })
        .await?;
    checked.map_err(refused)
}

/// Inside the transaction that acts on it: the token again, locked, still unused.
async fn relock(auth: &Auth, conn: &mut AsyncPgConnection, token: &EmailToken) -> AppResult<()> {
    match db::email_tokens::lock_latest(conn, token.user_id, token.purpose).await? {
        Some((row, expired)) if row.id == token.id => match unusable(auth, &row, expired) {
            Some(reason) => Err(refused(reason)),
            None => Ok(()),
        },
        // A newer message superseded it meanwhile.
        _ => Err(refused(EmailTokenFailure::Expired)),
    }
}

/// `requestPasswordReset`: always `Ok` for a deliverable address within the limits.
/// The request writes one outbox row naming the address, whatever the address; the
/// sender looks the account up later (see `mail::outbox`).
pub async fn request_password_reset(auth: &Auth, address: &str, client: &Client) -> AppResult<()> {
    let address = usable_address(auth, "email", address)?;
    {
        let mut conn = auth.pool.get().await?;
        auth.rate_limits.take_reset_request(&mut conn, &address, client.ip).await?;
    }
    auth.changes.run(async |c| Ok(auth.mail.queue_reset_request(c, &address).await?)).await
}

/// What `resetPassword` was given.
pub struct ResetInput {
    pub token: Option<String>,
    pub email: Option<String>,
    pub code: Option<String>,
    pub new_password: SecretString,
}

/// `resetPassword`: a new password from a link token, or an address and its code.
/// Ends every session of the account, marks the address verified (the message reached
/// it), and opens a new session.
pub async fn reset_password(auth: &Auth, input: ResetInput, client: &Client) -> AppResult<Grant> {
    validate::password("newPassword", &input.new_password)?;
    let token = match (input.token.as_deref(), input.email.as_deref(), input.code.as_deref()) {
        (Some(token), None, None) => {
            let mut conn = auth.pool.get().await?;
            conn.transaction::<_, AppError, _>(async |conn| by_link(auth, conn, Purpose::ResetPassword, token).await)
                .await?
        }
        (None, Some(address), Some(code)) => {
            let address = validate::email("email", address)?;
            let mut conn = auth.pool.get().await?;
            let attempt = auth.rate_limits.take_code_check(&mut conn, client.ip).await?;
            let user = db::users::find_by_verified_email(&mut conn, &address).await?;
            drop(conn);
            let Some(user) = user else { return Err(refused(EmailTokenFailure::NotFound)) };
            let token = by_code(auth, user.id, Purpose::ResetPassword, code).await?;
            let mut conn = auth.pool.get().await?;
            auth.rate_limits.forgive(&mut conn, &attempt).await?;
            token
        }
        _ => {
            return Err(AppError::bad_input(
                "token",
                "Send either the link's token, or the email address and the code",
            ));
        }
    };
    let user_id = token.user_id;
    let address = sent_to(&token)?;
    let ticket = Ticket { lane: Lane::Account, requester: Requester::Account(user_id) };
    let hash = auth.hasher.hash(ticket, &input.new_password).await?;
    let policy = &auth.sessions;
    let user_agent = client.user_agent.as_deref();
    let (user, session, refresh) = auth
        .changes
        .run(async |c| {
            relock(auth, c, &token).await?;
            db::email_tokens::mark_used(c, token.id).await?;
            db::users::set_password_hash(c, user_id, &hash, db::users::PasswordWrite::Reset).await?;
            db::events::password_changed(c, user_id, None).await?;
            let before = db::users::find(c, user_id).await?.ok_or(AppError::NotFound)?;
            // The message reached the account's address, which is thereby verified; a
            // reset sent to an address the account has since left changes no address.
            if before.email.as_deref().is_some_and(|e| address.same_mailbox(e)) {
                verify_address(c, user_id, &address).await?;
            }
            db::sessions::end_all(c, user_id, None, EndReason::PasswordReset).await?;
            let user = db::users::find(c, user_id).await?.ok_or(AppError::NotFound)?;
            db::signin_addresses::forget_account(c, &rate_limit::account_key(&user.username)).await?;
            auth.mail.queue_notice(c, &address, Content::PasswordChanged).await?;
            let (session, refresh) = sessions::open(c, policy, user_id, user_agent, Methods::PASSWORD).await?;
            Ok((user, session, refresh))
        })
        .await?;
    sessions::grant(auth, user, session.id, refresh, Methods::PASSWORD)
}

/// Sets `address` as the account's verified address; `EMAIL_TAKEN` if another
/// account verified it first (the unique index decides).
async fn verify_address(change: &mut Change<'_>, user_id: UserId, address: &EmailAddress) -> AppResult<()> {
    db::users::set_verified_email(change, user_id, address).await.map_err(|e| match db::unique_violation(&e) {
        Some("users_verified_email_key") => AppError::EmailTaken,
        _ => e.into(),
    })?;
    Ok(())
}

/// `verifyEmail`'s change: the address becomes the verified one, and a reset message
/// still live at a previous address stops working, since that address no longer
/// speaks for the account. Returns the account.
async fn adopt_address(change: &mut Change<'_>, row: &EmailToken) -> AppResult<()> {
    let address = sent_to(row)?;
    let before = db::users::find(change, row.user_id).await?.ok_or(AppError::NotFound)?;
    verify_address(change, row.user_id, &address).await?;
    if !before.email.as_deref().is_some_and(|e| address.same_mailbox(e)) {
        db::email_tokens::supersede(change, row.user_id, Purpose::ResetPassword).await?;
    }
    Ok(())
}

/// `requestEmailVerification`: a fresh message to the address waiting to be verified:
/// a pending new address if a change was asked for, else the account's unverified one.
pub async fn request_verification(auth: &Auth, caller: &Caller, client: &Client) -> AppResult<()> {
    auth.mail.require("email")?;
    let user = &caller.user;
    let mut conn = auth.pool.get().await?;
    // The latest verification not yet used names the address waiting for it (a new
    // one after changeEmail), even once its token has expired.
    let pending = match db::email_tokens::lock_latest(&mut conn, user.id, Purpose::VerifyEmail).await? {
        Some((row, _)) if row.used_at.is_none() => Some(row.email),
        _ => None,
    };
    let pending = pending.and_then(|p| EmailAddress::parse(&p).ok());
    let target = match (pending, &user.email, user.email_verified_at) {
        (Some(pending), _, _) if user.email.as_deref().is_none_or(|e| !pending.same_mailbox(e)) => pending,
        (_, Some(address), None) => {
            EmailAddress::parse(address).map_err(|why| AppError::bad_input("email", why.message()))?
        }
        (_, Some(_), Some(_)) => return Err(AppError::bad_input("email", "The address is already verified")),
        (_, None, _) => return Err(AppError::bad_input("email", "The account has no email address")),
    };
    auth.rate_limits.take_email(&mut conn, &target, client.ip).await?;
    drop(conn);
    auth.changes.run(async |c| Ok(auth.mail.queue_token(c, user.id, Purpose::VerifyEmail, &target).await?)).await
}

/// `verifyEmail`: by the link's token (no session needed), or by the code for the
/// signed-in caller.
pub async fn verify_email(
    auth: &Auth,
    token: Option<&str>,
    code: Option<&str>,
    caller: Option<&Caller>,
    client: &Client,
) -> AppResult<()> {
    match (token, code) {
        (Some(token), None) => {
            auth.changes
                .run(async |c| {
                    let row = by_link(auth, c, Purpose::VerifyEmail, token).await?;
                    db::email_tokens::mark_used(c, row.id).await?;
                    adopt_address(c, &row).await
                })
                .await
        }
        (None, Some(code)) => {
            let caller = caller.ok_or(AppError::Unauthenticated("a code needs the account's bearer token"))?;
            let attempt = {
                let mut conn = auth.pool.get().await?;
                auth.rate_limits.take_code_check(&mut conn, client.ip).await?
            };
            let row = by_code(auth, caller.user.id, Purpose::VerifyEmail, code).await?;
            {
                let mut conn = auth.pool.get().await?;
                auth.rate_limits.forgive(&mut conn, &attempt).await?;
            }
            auth.changes
                .run(async |c| {
                    relock(auth, c, &row).await?;
                    db::email_tokens::mark_used(c, row.id).await?;
                    adopt_address(c, &row).await
                })
                .await
        }
        _ => Err(AppError::bad_input("token", "Send either the link's token or the code")),
    }
}

/// `changeEmail`: needs the current password. The new address gets a verification
/// message and the old verified one a notice; `users.email` changes only when the new
/// address is verified.
pub async fn change_email(
    auth: &Auth,
    caller: &Caller,
    current_password: &SecretString,
    new_email: &str,
    client: &Client,
) -> AppResult<()> {
    let new_email = usable_address(auth, "newEmail", new_email)?;
    let user = &caller.user;
    if user.verified_email().is_some_and(|e| new_email.same_mailbox(e)) {
        return Err(AppError::bad_input("newEmail", "This is already the account's address"));
    }
    {
        let mut conn = auth.pool.get().await?;
        auth.rate_limits.take_email(&mut conn, &new_email, client.ip).await?;
    }
    verify_current_password(auth, caller, current_password, WithoutPassword::RecentSignIn).await?;
    {
        let mut conn = auth.pool.get().await?;
        if db::users::find_by_verified_email(&mut conn, &new_email).await?.is_some_and(|other| other.id != user.id) {
            return Err(AppError::EmailTaken);
        }
    }
    auth.changes
        .run(async |c| {
            auth.mail.queue_token(c, user.id, Purpose::VerifyEmail, &new_email).await?;
            if let Some(old) = user.verified_address() {
                let content = Content::EmailChanging { new_address: new_email.as_str() };
                auth.mail.queue_notice(c, &old, content).await?;
            }
            Ok(())
        })
        .await
}
