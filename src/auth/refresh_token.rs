//! Opaque refresh tokens: 256 random bits, base64url, stored only as SHA-256.
//!
//! Rotation must be repeatable: when a browser's two tabs (or a retry) present the
//! same token within the reuse interval, both must get the same successor. Since the
//! database holds only hashes, the successor is *derived* from its parent:
//! `child = HMAC-SHA256(chain_key, parent)`. Anyone holding a token can thus obtain
//! its successor only by presenting it to us inside the interval; after that, the
//! presentation counts as reuse and ends the session.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

use crate::{db::ids::HashedToken, secret};

/// The key that derives a token's successor, from `REFRESH_TOKEN_KEY`: a secret of its
/// own, never the JWT key, so holding the key that verifies access tokens says nothing
/// about a session's next refresh token. Derived under a label of its own too.
pub struct ChainKey(SecretBox<[u8; 32]>);

impl ChainKey {
    /// Derived from the refresh-token key's bytes.
    pub fn from_key(key: &[u8]) -> Self {
        Self(secret::derive_key(key, b"authgraph refresh-token chain v1"))
    }

    /// The successor of `parent`.
    pub fn child_of(&self, parent: &str) -> SecretString {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret()).expect("HMAC takes any key length");
        mac.update(parent.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()).into()
    }
}

/// A new random token for a new session.
pub fn generate() -> SecretString {
    secret::random_token()
}

/// What the database stores and looks tokens up by.
pub fn hash(token: &str) -> HashedToken {
    HashedToken::of(token)
}

/// Whether a presented string could be one of our tokens at all; anything else is
/// refused without a database round trip.
pub fn is_well_formed(token: &str) -> bool {
    secret::is_token_text(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_repeatable_well_formed_and_key_bound() {
        let key = ChainKey::from_key("k".repeat(32).as_bytes());
        let parent = generate();
        let child = key.child_of(parent.expose_secret());
        assert!(is_well_formed(parent.expose_secret()) && is_well_formed(child.expose_secret()));
        assert_eq!(child.expose_secret(), key.child_of(parent.expose_secret()).expose_secret());
        let other = ChainKey::from_key("j".repeat(32).as_bytes());
        assert_ne!(child.expose_secret(), other.child_of(parent.expose_secret()).expose_secret());
    }

    #[test]
    fn generated_tokens_differ() {
        assert_ne!(generate().expose_secret(), generate().expose_secret());
    }
}
