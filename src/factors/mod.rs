//! Second factors: what a session can prove beyond the password, and the flows that
//! use them. TOTP codes (RFC 6238), their secrets sealed at rest, recovery codes, the
//! QR code of an enrolment and the clock codes are checked against are the building
//! blocks; `flows` turns them into `enrollTotp`, `confirmTotp`, `verifyMfa` (AAL2),
//! `disableTotp`, `regenerateRecoveryCodes` and the operator's reset. `webauthn` is the
//! relying party and `passkeys` its flows: registration, sign-in (a passkey is both
//! factors), `verifyPasskey` (a second factor), and the owner's list.
//!
//! The API and the settings say "MFA" (`verifyMfa`, `MFA_REQUIRED`, `MFA_*`): those
//! names are the contract's. In the code the concept is one word, `factors`.

pub mod clock;
pub mod flows;
pub mod passkeys;
pub mod qr;
pub mod recovery;
pub mod sealed;
pub mod totp;
pub mod webauthn;

use secrecy::ExposeSecret;

use crate::{config::Config, secret::KeyChain};
use clock::Clock;
use recovery::LookupKey;
use sealed::{KeyRing, SealKey};

/// The second factor's own state: the sealing keys, the recovery-code lookup keys,
/// the issuer shown in authenticator apps, and the clock codes are checked against.
/// Kept beside `Auth` in the application state, not inside it: the flows here use
/// `auth`, and `auth` knows nothing of them.
pub struct Factors {
    pub(crate) ring: KeyRing,
    /// The current key's lookup first: new codes use it; checks try every key.
    pub(crate) lookups: Vec<LookupKey>,
    pub(crate) issuer: String,
    /// What TOTP codes are checked against; tests pin it.
    pub clock: Clock,
    /// The WebAuthn relying party; `None` with PASSKEYS off.
    pub(crate) relying_party: Option<webauthn::RelyingParty>,
    pub(crate) ceremonies: CeremonyLimits,
}

/// How long passkey ceremonies live and how many may be open (`WEBAUTHN_*`).
pub struct CeremonyLimits {
    pub ttl: std::time::Duration,
    pub per_network: u32,
    pub per_account: u32,
}

impl Factors {
    pub fn new(config: &Config, keys: &KeyChain) -> anyhow::Result<Self> {
        let all = std::iter::once(&keys.current).chain(&keys.previous);
        let lookups = all.clone().map(|k| LookupKey::from_key(k.expose_secret())).collect();
        let ring = KeyRing::new(
            SealKey::from_key(keys.current.expose_secret()),
            keys.previous.iter().map(|k| SealKey::from_key(k.expose_secret())).collect(),
        );
        let issuer = config.factors.issuer.clone().unwrap_or_else(|| config.email.app_name.clone());
        let ttl = config.passkeys.challenge_ttl;
        let relying_party = match config.webauthn()? {
            Some(settings) => Some(webauthn::RelyingParty::new(&settings, ttl)?),
            None => None,
        };
        let ceremonies = CeremonyLimits {
            ttl,
            per_network: config.passkeys.ceremonies_per_ip,
            per_account: config.passkeys.ceremonies_per_account,
        };
        Ok(Self { ring, lookups, issuer, clock: Clock::default(), relying_party, ceremonies })
    }
}
