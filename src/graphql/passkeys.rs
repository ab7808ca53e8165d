//! The passkey fields (tests/contracts/passkeys.graphql): thin resolvers over
//! `factors::passkeys`, merged into the Query and Mutation roots.

use async_graphql::{Context, ID, Object, SimpleObject};

use super::{
    auth_of, caller, deliver, factors_of,
    guard::Protected,
    request_auth,
    types::{AuthPayload, DateTimeUtc},
};
use crate::{
    db::{ids::CeremonyId, models::PasskeyRow},
    error::{AppError, AppResult},
    factors::passkeys::{self, Challenge},
};

/// A ceremony begun: pass `challengeId` back to the matching finish mutation.
#[derive(SimpleObject)]
pub struct PasskeyChallenge {
    /// Pass back to the matching finish mutation.
    pub challenge_id: ID,
    /// PublicKeyCredentialCreationOptionsJSON or PublicKeyCredentialRequestOptionsJSON,
    /// as text: `PublicKeyCredential.parseCreationOptionsFromJSON(JSON.parse(…))` or
    /// `parseRequestOptionsFromJSON(…)` reads it.
    pub options_json: String,
    /// When the challenge can no longer be answered (WEBAUTHN_CHALLENGE_TTL).
    pub expires_at: DateTimeUtc,
}

impl From<Challenge> for PasskeyChallenge {
    fn from(c: Challenge) -> Self {
        Self { challenge_id: c.id.into(), options_json: c.options_json, expires_at: DateTimeUtc(c.expires_at) }
    }
}

/// A passkey of the caller's.
pub struct Passkey(PasskeyRow);

#[Object]
impl Passkey {
    async fn id(&self) -> ID {
        self.0.id.into()
    }
    /// A name the owner chose, or one derived from the authenticator (AAGUID) when known.
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTimeUtc {
        DateTimeUtc(self.0.created_at)
    }
    async fn last_used_at(&self) -> Option<DateTimeUtc> {
        self.0.last_used_at.map(DateTimeUtc)
    }
    /// True when the credential may be synced across the owner's devices (BS flag).
    async fn backed_up(&self) -> bool {
        self.0.backed_up
    }
    /// Transports the browser reported (internal, hybrid, usb, nfc, ble).
    async fn transports(&self) -> &[String] {
        &self.0.transports
    }
    /// When its signature counter went backwards (a cloned authenticator): it is refused
    /// since. Delete it and register the authenticator again.
    async fn flagged_at(&self) -> Option<DateTimeUtc> {
        self.0.flagged_at.map(DateTimeUtc)
    }
}

fn challenge_id(id: &ID) -> AppResult<CeremonyId> {
    id.parse().map_err(|_| AppError::InvalidPasskey("a challenge id that is not one"))
}

fn passkey_id(id: &ID) -> AppResult<crate::db::ids::PasskeyId> {
    id.parse().map_err(|_| AppError::bad_input("id", "id is not a valid passkey id"))
}

#[derive(Default)]
pub struct PasskeyQuery;

#[Object]
impl PasskeyQuery {
    /// Protected. The caller's passkeys, newest first.
    #[graphql(guard = "Protected")]
    async fn passkeys(&self, ctx: &Context<'_>) -> AppResult<Vec<Passkey>> {
        let caller = caller(ctx).await?;
        Ok(passkeys::list(auth_of(ctx), caller).await?.into_iter().map(Passkey).collect())
    }
}

#[derive(Default)]
pub struct PasskeyMutation;

#[Object]
impl PasskeyMutation {
    /// Protected (AAL2 when the account already has a second factor). Options for
    /// navigator.credentials.create(): a discoverable credential (residentKey
    /// required), user verification required, the account's existing passkeys
    /// excluded.
    #[graphql(guard = "Protected")]
    async fn start_passkey_registration(&self, ctx: &Context<'_>) -> AppResult<PasskeyChallenge> {
        let caller = caller(ctx).await?;
        let client = &request_auth(ctx).client;
        Ok(passkeys::start_registration(auth_of(ctx), factors_of(ctx), caller, client).await?.into())
    }

    /// Protected. Verifies the new credential and stores it. The account's first second
    /// factor raises this session to AAL2: refresh for tokens that say so, and
    /// regenerateRecoveryCodes for the codes that recover a lost passkey.
    #[graphql(guard = "Protected")]
    async fn finish_passkey_registration(
        &self,
        ctx: &Context<'_>,
        challenge_id: ID,
        credential_json: String,
        name: Option<String>,
    ) -> AppResult<Passkey> {
        let caller = caller(ctx).await?;
        let challenge = self::challenge_id(&challenge_id)?;
        let (auth, factors) = (auth_of(ctx), factors_of(ctx));
        let row =
            passkeys::finish_registration(auth, factors, caller, challenge, &credential_json, name.as_deref()).await?;
        Ok(Passkey(row))
    }

    /// Public. Options for navigator.credentials.get(). Without a username: any
    /// discoverable credential of this RP (conditional UI). With one: the same answer
    /// whether or not that account exists.
    async fn start_passkey_sign_in(&self, ctx: &Context<'_>, username: Option<String>) -> AppResult<PasskeyChallenge> {
        let client = &request_auth(ctx).client;
        Ok(passkeys::start_sign_in(auth_of(ctx), factors_of(ctx), username.as_deref(), client).await?.into())
    }

    /// Public. Signs in with the asserted passkey and opens a session at AAL2.
    async fn finish_passkey_sign_in(
        &self,
        ctx: &Context<'_>,
        challenge_id: ID,
        credential_json: String,
    ) -> AppResult<AuthPayload> {
        let challenge = self::challenge_id(&challenge_id)?;
        let client = &request_auth(ctx).client;
        let grant =
            passkeys::finish_sign_in(auth_of(ctx), factors_of(ctx), challenge, &credential_json, client).await?;
        Ok(deliver(ctx, grant))
    }

    /// Protected; an AAL1 session may call it. Options for verifying one of the
    /// caller's passkeys.
    #[graphql(guard = "Protected")]
    async fn start_passkey_verification(&self, ctx: &Context<'_>) -> AppResult<PasskeyChallenge> {
        let caller = caller(ctx).await?;
        let client = &request_auth(ctx).client;
        Ok(passkeys::start_verification(auth_of(ctx), factors_of(ctx), caller, client).await?.into())
    }

    /// Protected; an AAL1 session may call it. Raises the session to AAL2 and returns
    /// new tokens, like verifyMfa (the session's earlier refresh token stops working).
    #[graphql(guard = "Protected")]
    async fn verify_passkey(
        &self,
        ctx: &Context<'_>,
        challenge_id: ID,
        credential_json: String,
    ) -> AppResult<AuthPayload> {
        let caller = caller(ctx).await?;
        let challenge = self::challenge_id(&challenge_id)?;
        let grant = passkeys::verify(auth_of(ctx), factors_of(ctx), caller, challenge, &credential_json).await?;
        Ok(deliver(ctx, grant))
    }

    /// Protected.
    #[graphql(guard = "Protected")]
    async fn rename_passkey(&self, ctx: &Context<'_>, id: ID, name: String) -> AppResult<Passkey> {
        let caller = caller(ctx).await?;
        Ok(Passkey(passkeys::rename(auth_of(ctx), caller, passkey_id(&id)?, &name).await?))
    }

    /// Protected, AAL2 when the account has a second factor. Ends no session. The
    /// account's last second factor going turns it off (its recovery codes go too) and
    /// its owner is told by email.
    #[graphql(guard = "Protected")]
    async fn delete_passkey(&self, ctx: &Context<'_>, id: ID) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        passkeys::delete(auth_of(ctx), caller, passkey_id(&id)?).await?;
        Ok(true)
    }
}
