//! Second-factor secrets at rest: AES-256-GCM under a key from the configuration, with
//! the key's id stored beside each secret so the key can rotate (new secrets under
//! the current key; old ones still open under a previous key until re-sealed). The
//! account's id is the associated data, so a sealed secret copied onto another
//! account's row does not open there.

use aes_gcm::{
    Aes256Gcm,
    aead::{Aead, KeyInit, Payload},
};
use secrecy::{ExposeSecret, SecretBox};

const NONCE_LEN: usize = 12;

/// One key: 32 bytes derived from the configured key under a label of its own, and
/// its id (the first 8 hex digits of a hash of it), which names no secret.
pub struct SealKey {
    id: String,
    key: SecretBox<[u8; 32]>,
}

impl SealKey {
    pub fn from_key(material: &[u8]) -> Self {
        let key = crate::secret::derive_key(material, b"authgraph mfa secret v1");
        let id = crate::secret::derive_key(key.expose_secret(), b"key id").expose_secret()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { id, key }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A sealed secret as stored: the key id, and nonce ‖ ciphertext ‖ tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// The current key and the earlier ones.
pub struct KeyRing {
    current: SealKey,
    previous: Vec<SealKey>,
}

/// A sealed secret that cannot be opened: its key is not configured any more, or the
/// bytes or the account do not match.
#[derive(Debug, PartialEq, Eq)]
pub struct Unopenable;

impl KeyRing {
    pub fn new(current: SealKey, previous: Vec<SealKey>) -> Self {
        Self { current, previous }
    }

    /// Seals `secret` for `account` under the current key, with a fresh random nonce.
    pub fn seal(&self, account: &[u8], secret: &[u8]) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let cipher = Aes256Gcm::new_from_slice(self.current.key.expose_secret()).expect("a 32-byte key");
        let ciphertext = cipher
            .encrypt(&nonce.into(), Payload { msg: secret, aad: account })
            .expect("AES-GCM seals any secret this small");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Sealed { key_id: self.current.id.clone(), bytes }
    }

    /// Opens a sealed secret of `account` with whichever configured key sealed it.
    pub fn open(&self, account: &[u8], sealed: &Sealed) -> Result<Vec<u8>, Unopenable> {
        let key =
            std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == sealed.key_id).ok_or(Unopenable)?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(Unopenable);
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Unopenable)?;
        let cipher = Aes256Gcm::new_from_slice(key.key.expose_secret()).map_err(|_| Unopenable)?;
        cipher.decrypt(&nonce.into(), Payload { msg: ciphertext, aad: account }).map_err(|_| Unopenable)
    }

    /// Whether a sealed secret is under an earlier key (re-seal it when next used).
    pub fn is_stale(&self, sealed: &Sealed) -> bool {
        sealed.key_id != self.current.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_opens_for_its_account_and_key_only() {
        let ring = KeyRing::new(SealKey::from_key(b"the current key"), vec![]);
        let sealed = ring.seal(b"account-a", b"12345678901234567890");
        assert_eq!(ring.open(b"account-a", &sealed).unwrap(), b"12345678901234567890");
        assert_eq!(ring.open(b"account-b", &sealed), Err(Unopenable), "copied to another account");
        let mut flipped = sealed.clone();
        *flipped.bytes.last_mut().unwrap() ^= 1;
        assert_eq!(ring.open(b"account-a", &flipped), Err(Unopenable), "tampered");
        let other = KeyRing::new(SealKey::from_key(b"another key"), vec![]);
        assert_eq!(other.open(b"account-a", &sealed), Err(Unopenable), "another key");
        assert_ne!(ring.seal(b"account-a", b"same").bytes, ring.seal(b"account-a", b"same").bytes, "fresh nonces");
    }

    #[test]
    fn rotation_opens_old_secrets_and_seals_new_ones_under_the_new_key() {
        let old = KeyRing::new(SealKey::from_key(b"old key"), vec![]);
        let sealed = old.seal(b"a", b"secret");
        let rotated = KeyRing::new(SealKey::from_key(b"new key"), vec![SealKey::from_key(b"old key")]);
        assert_eq!(rotated.open(b"a", &sealed).unwrap(), b"secret");
        assert!(rotated.is_stale(&sealed));
        let resealed = rotated.seal(b"a", b"secret");
        assert!(!rotated.is_stale(&resealed));
        assert_eq!(resealed.key_id, SealKey::from_key(b"new key").id());
        assert_eq!(old.open(b"a", &resealed), Err(Unopenable), "the old ring cannot open the new key's secrets");
    }
}
