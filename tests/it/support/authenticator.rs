//! A software authenticator and WebAuthn client (1Password's `passkey` crates) that
//! answers the server's options as a browser would: one resident, user-verified
//! credential, made and used for an origin the test names, and serialised as
//! `JSON.stringify(credential.toJSON())` is.

use passkey::{
    authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod},
    client::{Client, DefaultClientData},
    crypto::rust_crypto::RustCryptoBackend,
    types::{
        Passkey,
        ctap2::{Aaguid, Ctap2Error},
        webauthn::{CredentialCreationOptions, CredentialRequestOptions},
    },
};
use serde_json::Value;
use url::Url;

/// Says the user is present and verified (a fingerprint touched).
struct Verified;

#[async_trait::async_trait]
impl UserValidationMethod for Verified {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        _presence: bool,
        _verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck { presence: true, verification: true })
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }
}

/// One device holding (at most) one passkey.
pub struct Device {
    client: Client<Option<Passkey>, Verified, RustCryptoBackend, public_suffix::PublicSuffixList, ()>,
}

impl Device {
    pub fn new() -> Self {
        let authenticator = Authenticator::new(Aaguid::new_empty(), None, Verified, RustCryptoBackend);
        Self { client: Client::new(authenticator) }
    }

    /// A device that also answers pages on `http://localhost` (a secure context, as
    /// browsers treat it).
    pub fn on_localhost() -> Self {
        let authenticator = Authenticator::new(Aaguid::new_empty(), None, Verified, RustCryptoBackend);
        Self { client: Client::new(authenticator).allows_insecure_localhost(true) }
    }

    /// `navigator.credentials.create()` on `origin` with the server's `optionsJson`:
    /// the credential's JSON.
    pub async fn create(&mut self, origin: &str, options_json: &str) -> String {
        let public_key = serde_json::from_str(options_json).expect("creation options the client reads");
        let created = self
            .client
            .register(&Url::parse(origin).unwrap(), CredentialCreationOptions { public_key }, DefaultClientData)
            .await
            .expect("the authenticator creates a credential");
        serde_json::to_string(&created).unwrap()
    }

    /// `navigator.credentials.get()` on `origin` with the server's `optionsJson`
    /// (changed first by `edit`): the assertion's JSON.
    pub async fn get(&mut self, origin: &str, options_json: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut options: Value = serde_json::from_str(options_json).unwrap();
        edit(&mut options);
        let public_key = serde_json::from_value(options).expect("request options the client reads");
        let asserted = self
            .client
            .authenticate(&Url::parse(origin).unwrap(), CredentialRequestOptions { public_key }, DefaultClientData)
            .await
            .expect("the authenticator asserts");
        serde_json::to_string(&asserted).unwrap()
    }

    /// The device's signature counter, as a cloned copy of it would have it.
    pub fn set_counter(&mut self, counter: u32) {
        let store = self.client.authenticator_mut().store_mut();
        store.as_mut().expect("a passkey on the device").counter = Some(counter);
    }

    /// A copy of this device (its key and counter): a clone of the authenticator.
    pub fn copy(&self) -> Self {
        let mut copy = Self::new();
        *copy.client.authenticator_mut().store_mut() = self.client.authenticator().store().clone();
        copy
    }
}
