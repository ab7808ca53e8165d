//! The guard on protected fields.

use async_graphql::{Context, Guard, Result};

use super::caller;

/// Lets a field resolve only for a caller with a valid access token of a live
/// session; others get `UNAUTHENTICATED` on that field alone, so public fields in the
/// same request still answer.
pub struct Authenticated;

impl Guard for Authenticated {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        caller(ctx).await?;
        Ok(())
    }
}
