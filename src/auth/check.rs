//! Checks of a secret the caller already knows, counted against the account's limit
//! before the hash runs and forgiven when right or when nothing was checked: used by
//! signin, changePassword and changeEmail alike. An account without a password
//! (created through another provider) proves itself instead by a recent sign-in.

use secrecy::{ExposeSecret, SecretString};

use super::{
    Auth, Caller,
    password::{Lane, Requester, Ticket},
    rate_limit::Attempt,
};
use crate::{
    db::{self, models::FirstFactor},
    error::{AppError, AppResult},
};

/// What stands for the current password of an account that has none.
#[derive(Debug, Clone, Copy)]
pub enum WithoutPassword {
    /// A recent sign-in through its provider or a passkey, shown by an empty password.
    RecentSignIn,
    /// Nothing: the change needs a password (`BAD_USER_INPUT` on this field, saying this).
    Refused(&'static str, &'static str),
}

/// Checks the caller's current password, counted against the account's limit (a
/// stolen access token must not buy unlimited guesses) and forgiven when right.
pub async fn verify_current_password(
    auth: &Auth,
    caller: &Caller,
    current: &SecretString,
    without: WithoutPassword,
) -> AppResult<()> {
    let user_id = caller.user.id;
    let (stored, attempt) = {
        let mut conn = auth.pool.get().await?;
        let attempt = auth.rate_limits.take_password_check(&mut conn, user_id).await?;
        (db::users::password_hash(&mut conn, user_id).await?, attempt)
    };
    let Some(stored) = stored else {
        if let WithoutPassword::Refused(field, message) = without {
            let mut conn = auth.pool.get().await?;
            auth.rate_limits.forgive(&mut conn, &attempt).await?;
            return Err(AppError::bad_input(field, message));
        }
        // No password to give: an empty one stands for it within REAUTH_WINDOW of a
        // sign-in through the account's provider or a passkey.
        if current.expose_secret().is_empty() && recently_signed_in(auth, caller).await? {
            let mut conn = auth.pool.get().await?;
            return auth.rate_limits.forgive(&mut conn, &attempt).await;
        }
        return Err(AppError::InvalidCredentials);
    };
    let ticket = Ticket { lane: Lane::Account, requester: Requester::Account(user_id) };
    match auth.hasher.verify(ticket, current, Some(&stored)).await {
        Ok(true) => {}
        Ok(false) => return Err(AppError::InvalidCredentials),
        Err(err) => return Err(forgiven(auth, attempt, err).await),
    }
    let mut conn = auth.pool.get().await?;
    auth.rate_limits.forgive(&mut conn, &attempt).await
}

/// Whether the caller's session was opened without a password (through another
/// provider or a passkey) within REAUTH_WINDOW: what an account without a password
/// shows in place of its current password.
pub async fn recently_signed_in(auth: &Auth, caller: &Caller) -> AppResult<bool> {
    let opened = {
        let mut conn = auth.pool.get().await?;
        db::sessions::opened(&mut conn, caller.session_id).await?
    };
    let window = chrono::Duration::from_std(auth.sessions.reauth_window).unwrap_or(chrono::Duration::MAX);
    Ok(opened.is_some_and(|(at, how)| {
        matches!(how, FirstFactor::Provider | FirstFactor::Passkey) && chrono::Utc::now() - at <= window
    }))
}

/// Forgives an attempt that checked nothing (the hashing queue refused it, or hashing
/// failed), then hands back the error. A client told to retry later must not also
/// have used up one of its guesses.
pub async fn forgiven(auth: &Auth, attempt: Attempt, err: AppError) -> AppError {
    match auth.pool.get().await {
        Ok(mut conn) => {
            if let Err(forgive) = auth.rate_limits.forgive(&mut conn, &attempt).await {
                tracing::warn!(error = ?forgive, "could not forgive an attempt that checked nothing");
            }
        }
        Err(pool) => tracing::warn!(error = ?AppError::from(pool), "could not forgive an attempt that checked nothing"),
    }
    err
}
