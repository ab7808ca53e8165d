//! The guard on protected fields, and the one list of fields a session may call before
//! it has passed its account's second factor.

use async_graphql::{Context, Guard, Result};

use super::caller;
use crate::{
    auth::Caller,
    error::{AppError, AppResult},
};

/// The protected fields an AAL1 session of an account with a second factor may call:
/// enough to see who it is, end sessions and pass the factor (a TOTP or recovery code,
/// or a passkey). Every door reads this
/// list through `caller`, the HTTP request's and each operation on a socket alike; the
/// fields named here say so in their descriptions ("an AAL1 session may call it"), and
/// a test holds the two together.
pub const BEFORE_SECOND_FACTOR: &[&str] =
    &["me", "sessions", "logout", "verifyMfa", "startPasskeyVerification", "verifyPasskey"];

/// The mutations an impersonation may call (queries and subscriptions it may all):
/// the user's own name (`updateUser`, which refuses a username there) and ending the
/// impersonation (`logout`, which refuses any scope but CURRENT). Everything else —
/// credentials, email, factors, passkeys, identities, deletion, other sessions — stays
/// the user's: an allow-list, so a mutation added later is refused until named here.
pub const IMPERSONATION_MAY: &[&str] = &["updateUser", "logout"];

/// Lets a field resolve only for a caller with a valid access token of a live session
/// that has the assurance the field needs (see `BEFORE_SECOND_FACTOR`); others get
/// `UNAUTHENTICATED` (or `MFA_REQUIRED`) on that field alone, so public fields in the
/// same operation still answer.
pub struct Protected;

impl Guard for Protected {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        caller(ctx).await?;
        Ok(())
    }
}

/// The second-factor rule for one field: `MFA_REQUIRED` when the caller's session has
/// not passed its account's factor and the field is not one of `BEFORE_SECOND_FACTOR`.
pub fn second_factor_rule(caller: &Caller, field: &str) -> AppResult<()> {
    if caller.needs_second_factor() && !BEFORE_SECOND_FACTOR.contains(&field) {
        return Err(AppError::MfaRequired);
    }
    Ok(())
}

/// The impersonation rule for one field: `FORBIDDEN` for a mutation not in
/// `IMPERSONATION_MAY` when the caller is an impersonation.
pub fn impersonation_rule(caller: &Caller, mutation: bool, field: &str) -> AppResult<()> {
    if caller.impersonator.is_some() && mutation && !IMPERSONATION_MAY.contains(&field) {
        return Err(AppError::Forbidden);
    }
    Ok(())
}
