//! The guards on protected fields.

use async_graphql::{Context, Guard, Result};

use super::{caller, signed_in};

/// Lets a field resolve only for a caller with a valid access token of a live
/// session that has all the assurance its account asks for; others get
/// `UNAUTHENTICATED` (or `MFA_REQUIRED`) on that field alone, so public fields in the
/// same request still answer.
pub struct Authenticated;

impl Guard for Authenticated {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        caller(ctx).await?;
        Ok(())
    }
}

/// Like `Authenticated`, but also lets through a session that still has to pass the
/// account's second factor: only `me`, `sessions`, `logout` and `verifyMfa` use it.
pub struct SignedIn;

impl Guard for SignedIn {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        signed_in(ctx).await?;
        Ok(())
    }
}
