//! Sign-in with other providers (tests/contracts/social.graphql): thin resolvers over
//! `social::flows`, merged into the Query and Mutation roots.

use async_graphql::{Context, ID, Object, SimpleObject};

use super::{
    auth_of, caller, deliver,
    guard::Protected,
    request_auth, social_of,
    types::{AuthPayload, DateTimeUtc},
};
use crate::{
    db::{ids::IdentityId, models::IdentityRow},
    error::{AppError, AppResult},
    social::{
        Social,
        flows::{self, Started},
    },
};

/// A provider this server signs in with.
#[derive(SimpleObject, Clone)]
pub struct IdentityProvider {
    /// The id used in the mutations (e.g. "google").
    pub id: ID,
    /// Display name (e.g. "Google").
    pub name: String,
}

impl IdentityProvider {
    /// The provider `id` as configured; one removed from the configuration since keeps
    /// its id as its name.
    fn of(social: &Social, id: &str) -> Self {
        let name = social.provider(id).map_or_else(|| id.to_owned(), |p| p.settings.name.clone());
        Self { id: id.into(), name }
    }
}

/// A flow begun: send the browser to `authorizationUrl`.
#[derive(SimpleObject)]
pub struct ProviderAuthorization {
    /// Send the browser here.
    pub authorization_url: String,
    /// Also carried inside authorizationUrl; the provider returns it with the code.
    /// Keep it (session storage) and finish only a redirect that brings the same one
    /// back: otherwise an attacker's code, sent to your browser, signs you in as them.
    pub state: String,
    /// When the flow can no longer be finished (OIDC_STATE_TTL).
    pub expires_at: DateTimeUtc,
}

impl From<Started> for ProviderAuthorization {
    fn from(s: Started) -> Self {
        Self { authorization_url: s.authorization_url, state: s.state, expires_at: DateTimeUtc(s.expires_at) }
    }
}

/// An identity at another provider, linked to the caller's account.
pub struct LinkedIdentity(IdentityRow);

#[Object]
impl LinkedIdentity {
    async fn id(&self) -> ID {
        self.0.id.into()
    }
    async fn provider(&self, ctx: &Context<'_>) -> IdentityProvider {
        IdentityProvider::of(social_of(ctx), &self.0.provider)
    }
    /// The provider's email for this identity, when it gave one.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    async fn created_at(&self) -> DateTimeUtc {
        DateTimeUtc(self.0.created_at)
    }
    /// The last sign-in with it.
    async fn last_used_at(&self) -> Option<DateTimeUtc> {
        self.0.last_used_at.map(DateTimeUtc)
    }
}

fn identity_id(id: &ID) -> AppResult<IdentityId> {
    id.parse().map_err(|_| AppError::bad_input("id", "id is not a valid identity id"))
}

#[derive(Default)]
pub struct SocialQuery;

#[Object]
impl SocialQuery {
    /// Public. The providers this server is configured for.
    async fn identity_providers(&self, ctx: &Context<'_>) -> Vec<IdentityProvider> {
        let social = social_of(ctx);
        social.providers.iter().map(|p| IdentityProvider::of(social, p.id())).collect()
    }

    /// Protected. The caller's linked identities, oldest first.
    #[graphql(guard = "Protected")]
    async fn linked_identities(&self, ctx: &Context<'_>) -> AppResult<Vec<LinkedIdentity>> {
        let caller = caller(ctx).await?;
        Ok(flows::list(auth_of(ctx), caller).await?.into_iter().map(LinkedIdentity).collect())
    }
}

#[derive(Default)]
pub struct SocialMutation;

#[Object]
impl SocialMutation {
    /// Public. Begins a sign-in (or sign-up) with the provider: send the browser to
    /// `authorizationUrl`. `redirectUri` must be one of OIDC_REDIRECT_URIS, exactly.
    async fn start_social_sign_in(
        &self,
        ctx: &Context<'_>,
        provider: ID,
        redirect_uri: String,
    ) -> AppResult<ProviderAuthorization> {
        let client = &request_auth(ctx).client;
        Ok(flows::start_sign_in(auth_of(ctx), social_of(ctx), &provider, &redirect_uri, client).await?.into())
    }

    /// Public. Signs in (or signs up) with the identity and opens a session. The
    /// session is AAL1: an account with a second factor answers `mfaRequired: true`.
    async fn finish_social_sign_in(&self, ctx: &Context<'_>, state: String, code: String) -> AppResult<AuthPayload> {
        let client = &request_auth(ctx).client;
        let grant = flows::finish_sign_in(auth_of(ctx), social_of(ctx), &state, &code, client).await?;
        Ok(deliver(ctx, grant))
    }

    /// Protected (AAL2 when the account has a second factor). Begins linking an
    /// identity at the provider to the caller's account.
    #[graphql(guard = "Protected")]
    async fn start_identity_link(
        &self,
        ctx: &Context<'_>,
        provider: ID,
        redirect_uri: String,
    ) -> AppResult<ProviderAuthorization> {
        let caller = caller(ctx).await?;
        let client = &request_auth(ctx).client;
        Ok(flows::start_link(auth_of(ctx), social_of(ctx), caller, &provider, &redirect_uri, client).await?.into())
    }

    /// Protected. Links the identity to the caller's account (IDENTITY_TAKEN when
    /// another account has it). The owner is told by email.
    #[graphql(guard = "Protected")]
    async fn finish_identity_link(&self, ctx: &Context<'_>, state: String, code: String) -> AppResult<LinkedIdentity> {
        let caller = caller(ctx).await?;
        Ok(LinkedIdentity(flows::finish_link(auth_of(ctx), social_of(ctx), caller, &state, &code).await?))
    }

    /// Protected (AAL2 when the account has a second factor). LAST_SIGN_IN_METHOD when
    /// the account would have no password, passkey or identity left.
    #[graphql(guard = "Protected")]
    async fn unlink_identity(&self, ctx: &Context<'_>, id: ID) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        flows::unlink(auth_of(ctx), caller, identity_id(&id)?).await?;
        Ok(true)
    }

    /// Protected (AAL2 when the account has a second factor). Only for an account
    /// without a password; others use changePassword. The session must have signed in
    /// within REAUTH_WINDOW (else INVALID_CREDENTIALS: sign in again with the provider).
    #[graphql(guard = "Protected")]
    async fn set_password(&self, ctx: &Context<'_>, new_password: String) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        flows::set_password(auth_of(ctx), caller, &secrecy::SecretString::from(new_password)).await?;
        Ok(true)
    }
}
