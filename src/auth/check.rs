//! Checks of a secret the caller already knows, counted against the account's limit
//! before the hash runs and forgiven when right or when nothing was checked: used by
//! signin, changePassword and changeEmail alike.

use secrecy::SecretString;

use super::{
    Auth, Caller,
    password::{Lane, Requester, Ticket},
    rate_limit::Attempt,
};
use crate::{
    db,
    error::{AppError, AppResult},
};

/// Checks the caller's current password, counted against the account's limit (a
/// stolen access token must not buy unlimited guesses) and forgiven when right.
pub async fn verify_current_password(auth: &Auth, caller: &Caller, current: &SecretString) -> AppResult<()> {
    let user_id = caller.user.id;
    let (stored, attempt) = {
        let mut conn = auth.pool.get().await?;
        let attempt = auth.rate_limits.take_password_check(&mut conn, user_id).await?;
        (db::users::password_hash(&mut conn, user_id).await?, attempt)
    };
    let ticket = Ticket { lane: Lane::Account, requester: Requester::Account(user_id) };
    match auth.hasher.verify(ticket, current, stored.as_deref()).await {
        Ok(true) => {}
        Ok(false) => return Err(AppError::InvalidCredentials),
        Err(err) => return Err(forgiven(auth, attempt, err).await),
    }
    let mut conn = auth.pool.get().await?;
    auth.rate_limits.forgive(&mut conn, &attempt).await
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
