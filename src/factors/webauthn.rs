//! The WebAuthn relying party (webauthn-rs 0.6): the options a browser's
//! `navigator.credentials` calls take, and the checks of what they return. The
//! library's ceremony state goes to PostgreSQL between start and finish (its
//! `danger-allow-state-serialisation` feature: "danger" because state kept by the
//! client could be forged; ours never leaves the server).
//!
//! Every ceremony requires user verification (the library's passkey calls ask for it
//! and check the UV flag). Registration asks for a discoverable credential
//! (`residentKey: "required"`), which the library's `start_passkey_registration` does
//! not: without one, a browser offers the passkey to no sign-in without a username.

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use webauthn_rs::prelude::{
    AuthenticationResult, CredentialID, DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
    WebauthnError,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use crate::{
    config::Webauthn as Settings,
    db::ids::UserId,
    error::{AppError, AppResult},
};

/// The relying party, as the settings made it.
pub struct RelyingParty {
    webauthn: Webauthn,
    pub rp_id: String,
}

/// Options for the browser, as the JSON text `parse…OptionsFromJSON` takes, and the
/// state to keep until the ceremony finishes.
pub struct Started {
    pub options_json: String,
    pub state: serde_json::Value,
}

impl RelyingParty {
    pub fn new(settings: &Settings, ttl: Duration) -> anyhow::Result<Self> {
        let origins: Vec<Url> = settings.origins.iter().map(|o| Url::parse(o)).collect::<Result<_, _>>()?;
        let mut builder = WebauthnBuilder::new(&settings.rp_id, &origins[0])
            .map_err(|e| anyhow::anyhow!("WEBAUTHN_RP_ID / WEBAUTHN_ORIGINS: {e}"))?
            .rp_name(&settings.rp_name)
            .allow_any_port(settings.any_port)
            .timeout(ttl);
        for origin in &origins[1..] {
            builder = builder.append_allowed_origin(origin);
        }
        let webauthn = builder.build().map_err(|e| anyhow::anyhow!("WebAuthn relying party: {e}"))?;
        Ok(Self { webauthn, rp_id: settings.rp_id.clone() })
    }

    /// Options to create a discoverable, user-verified passkey for `user`, excluding
    /// the credentials it has.
    pub fn start_registration(
        &self,
        user: UserId,
        username: &str,
        display_name: &str,
        exclude: Vec<CredentialID>,
    ) -> AppResult<Started> {
        let (mut ccr, state) = self
            .webauthn
            .start_passkey_registration(user.as_uuid(), username, display_name, Some(exclude))
            .map_err(AppError::internal)?;
        if let Some(selection) = ccr.public_key.authenticator_selection.as_mut() {
            selection.resident_key = Some(ResidentKeyRequirement::Required);
            selection.require_resident_key = true;
        }
        started(&ccr.public_key, &state)
    }

    /// Checks a new credential against its ceremony's state.
    pub fn finish_registration(
        &self,
        credential: &RegisterPublicKeyCredential,
        state: serde_json::Value,
    ) -> AppResult<Passkey> {
        let state: PasskeyRegistration = restore(state)?;
        self.webauthn.finish_passkey_registration(credential, &state).map_err(refused)
    }

    /// Options to sign in with any discoverable passkey of this RP.
    pub fn start_sign_in(&self) -> AppResult<Started> {
        let (rcr, state) = self.webauthn.start_discoverable_authentication().map_err(AppError::internal)?;
        started(&rcr.public_key, &state)
    }

    /// The account (user handle) and credential an assertion names, before any check.
    pub fn identify<'a>(&self, credential: &'a PublicKeyCredential) -> AppResult<(Uuid, &'a [u8])> {
        self.webauthn.identify_discoverable_authentication(credential).map_err(refused)
    }

    /// Checks a sign-in assertion against its ceremony's state and the stored passkey.
    pub fn finish_sign_in(
        &self,
        credential: &PublicKeyCredential,
        state: serde_json::Value,
        passkey: &Passkey,
    ) -> AppResult<AuthenticationResult> {
        let state: DiscoverableAuthentication = restore(state)?;
        self.webauthn
            .finish_discoverable_authentication_v2(credential, state, DiscoverableKey::from(passkey))
            .map_err(refused)
    }

    /// Options to verify one of `passkeys` (the caller's, as a second factor).
    pub fn start_verification(&self, passkeys: &[Passkey]) -> AppResult<Started> {
        let (rcr, state) = self.webauthn.start_passkey_authentication(passkeys).map_err(AppError::internal)?;
        started(&rcr.public_key, &state)
    }

    /// Checks a verification assertion against its ceremony's state.
    pub fn finish_verification(
        &self,
        credential: &PublicKeyCredential,
        state: serde_json::Value,
    ) -> AppResult<AuthenticationResult> {
        let state: PasskeyAuthentication = restore(state)?;
        self.webauthn.finish_passkey_authentication(credential, &state).map_err(refused)
    }
}

/// The counter went backwards: the reason `refused` gives it, which the flows look for
/// to flag the credential.
pub const COUNTER_WENT_BACKWARDS: &str = "the signature counter went backwards (a cloned authenticator?)";

/// `INVALID_PASSKEY`, the library's reason kept for the log.
fn refused(err: WebauthnError) -> AppError {
    match err {
        WebauthnError::CredentialPossibleCompromise => AppError::InvalidPasskey(COUNTER_WENT_BACKWARDS),
        WebauthnError::InvalidRPOrigin => AppError::InvalidPasskey("wrong origin"),
        WebauthnError::InvalidRPIDHash => AppError::InvalidPasskey("wrong RP ID"),
        WebauthnError::UserNotVerified => AppError::InvalidPasskey("no user verification"),
        WebauthnError::MismatchedChallenge => AppError::InvalidPasskey("another ceremony's challenge"),
        other => {
            tracing::info!(error = %other, "passkey refused");
            AppError::InvalidPasskey("the credential does not verify")
        }
    }
}

fn started<O: Serialize, S: Serialize>(options: &O, state: &S) -> AppResult<Started> {
    Ok(Started {
        options_json: serde_json::to_string(options).map_err(AppError::internal)?,
        state: serde_json::to_value(state).map_err(AppError::internal)?,
    })
}

fn restore<S: DeserializeOwned>(state: serde_json::Value) -> AppResult<S> {
    serde_json::from_value(state).map_err(AppError::internal)
}

/// A stored passkey record, as the library reads it.
pub fn passkey_of(credential: &serde_json::Value) -> AppResult<Passkey> {
    serde_json::from_value(credential.clone()).map_err(AppError::internal)
}

/// What the flows store of a passkey beside the record: its flags and counter, read
/// from the record (the library keeps them private without its `danger-` features).
pub struct Flags {
    pub backup_eligible: bool,
    pub backed_up: bool,
    pub counter: i64,
}

pub fn flags_of(record: &serde_json::Value) -> Flags {
    let cred = &record["cred"];
    Flags {
        backup_eligible: cred["backup_eligible"].as_bool().unwrap_or(false),
        backed_up: cred["backup_state"].as_bool().unwrap_or(false),
        counter: cred["counter"].as_i64().unwrap_or(0),
    }
}
