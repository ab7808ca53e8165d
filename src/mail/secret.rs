//! The secrets of a message: a link token (256 random bits, base64url) and a 6-digit
//! code for the same purpose. Only the token's SHA-256 and the code's HMAC are stored.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

use crate::db::{
    ids::{HashedToken, UserId},
    models::Purpose,
};

/// A new link token and code.
pub fn generate() -> (SecretString, SecretString) {
    (crate::secret::random_token(), format!("{:06}", uniform_below_a_million()).into())
}

/// A uniform number in 0..1_000_000: 32 random bits, redrawn when they fall in the
/// last, partial run of a million (1 time in 14,000), so no code is likelier.
fn uniform_below_a_million() -> u32 {
    const LIMIT: u32 = u32::MAX - u32::MAX % 1_000_000;
    loop {
        let mut bytes = [0u8; 4];
        rand::fill(&mut bytes);
        let n = u32::from_le_bytes(bytes);
        if n < LIMIT {
            return n % 1_000_000;
        }
    }
}

pub fn hash_token(token: &str) -> HashedToken {
    HashedToken::of(token)
}

/// Whether a presented string could be a link token at all.
pub fn is_token(token: &str) -> bool {
    crate::secret::is_token_text(token)
}

/// Whether a presented string is six digits.
pub fn is_code(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

/// The key the codes are MACed under, derived from the server's refresh-token key under
/// a label of its own: a copy of the database alone cannot try the million codes.
pub struct CodeKey(SecretBox<[u8; 32]>);

impl CodeKey {
    pub fn from_key(key: &[u8]) -> Self {
        Self(crate::secret::derive_key(key, b"authgraph email code v1"))
    }

    /// The MAC of `code` bound to one account and purpose, so equal codes of two
    /// messages never have equal hashes.
    fn mac(&self, user_id: UserId, purpose: Purpose, code: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret()).expect("HMAC takes any key length");
        mac.update(user_id.to_string().as_bytes());
        mac.update(purpose.as_str().as_bytes());
        mac.update(code.as_bytes());
        mac
    }

    pub fn hash(&self, user_id: UserId, purpose: Purpose, code: &str) -> Vec<u8> {
        self.mac(user_id, purpose, code).finalize().into_bytes().to_vec()
    }

    /// Compares in constant time.
    pub fn verify(&self, user_id: UserId, purpose: Purpose, code: &str, stored: &[u8]) -> bool {
        self.mac(user_id, purpose, code).verify_slice(stored).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_codes_have_their_shapes() {
        for _ in 0..100 {
            let (token, code) = generate();
            assert!(is_token(token.expose_secret()), "{}", token.expose_secret());
            assert!(is_code(code.expose_secret()), "{}", code.expose_secret());
        }
        assert!(!is_code("12345") && !is_code("12345a") && !is_code("１２３４５６"));
    }

    #[test]
    fn a_code_verifies_for_its_account_and_purpose_only() {
        let key = CodeKey::from_key(b"k");
        let (ada, bob) = (UserId::random(), UserId::random());
        let stored = key.hash(ada, Purpose::ResetPassword, "123456");
        assert!(key.verify(ada, Purpose::ResetPassword, "123456", &stored));
        assert!(!key.verify(ada, Purpose::ResetPassword, "123457", &stored));
        assert!(!key.verify(bob, Purpose::ResetPassword, "123456", &stored));
        assert!(!key.verify(ada, Purpose::VerifyEmail, "123456", &stored));
        assert!(!CodeKey::from_key(b"other").verify(ada, Purpose::ResetPassword, "123456", &stored));
    }
}
