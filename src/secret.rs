//! Resolving the keys: those that sign access tokens, the one that derives refresh
//! tokens' successors and the one that seals second-factor secrets, from the
//! configuration, or generated once in development.
//!
//! The refresh key is a secret of its own. The refresh chain used to be derived from
//! the JWT key, so whoever held an HS256 secret (every service that verifies tokens)
//! and one old refresh token could compute the session's later tokens offline.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::config::{Config, JwtAlgorithm, decode_seed};

/// Key material, never printed.
pub type KeyBytes = SecretBox<Vec<u8>>;

/// Length of a random token's text (refresh tokens, email link tokens): 32 bytes in
/// unpadded base64url.
pub const TOKEN_LEN: usize = 43;

/// A new token of 256 random bits, as base64url text.
pub fn random_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes).into()
}

/// Whether a presented string could be a `random_token` at all; anything else is
/// refused without a database round trip.
pub fn is_token_text(token: &str) -> bool {
    token.len() == TOKEN_LEN && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A 32-byte key for one purpose, derived from configured key material under that
/// purpose's label (HMAC-SHA-256), so one configured secret never serves two uses as is.
pub fn derive_key(material: &[u8], label: &[u8]) -> SecretBox<[u8; 32]> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(material).expect("HMAC takes any key length");
    mac.update(label);
    SecretBox::new(Box::new(mac.finalize().into_bytes().into()))
}

/// The signing keys in force.
pub struct JwtKeys {
    pub algorithm: JwtAlgorithm,
    /// HS256: the secret's UTF-8 bytes. EdDSA: the 32-byte Ed25519 seed.
    pub current: KeyBytes,
    /// Earlier keys whose tokens still verify.
    pub previous: Vec<KeyBytes>,
}

impl JwtKeys {
    /// HS256 keys from secrets, as tests and tools build them.
    pub fn hs256(current: &str, previous: &[&str]) -> Self {
        Self {
            algorithm: JwtAlgorithm::Hs256,
            current: bytes(current.as_bytes()),
            previous: previous.iter().map(|p| bytes(p.as_bytes())).collect(),
        }
    }
}

/// A key in use and the earlier ones that must still work.
pub struct KeyChain {
    pub current: KeyBytes,
    pub previous: Vec<KeyBytes>,
}

/// Every key the server uses.
pub struct Keys {
    pub jwt: JwtKeys,
    /// Derive refresh-token successors.
    pub refresh: KeyChain,
    /// Seal second-factor secrets and key the lookup of recovery codes.
    pub factors: KeyChain,
    /// Link the audit trail's rows.
    pub audit: KeyChain,
}

fn bytes(b: &[u8]) -> KeyBytes {
    SecretBox::new(Box::new(b.to_vec()))
}

/// The configured keys; in development a missing key is generated once into
/// `DATA_DIR` (mode 0600), so tokens survive restarts. Production never gets here
/// without one: `Config::validate` refuses to start.
pub fn resolve(config: &Config) -> anyhow::Result<Keys> {
    let refresh = (&config.refresh_token_key, &config.refresh_token_key_previous);
    let mfa = (&config.factors.encryption_key, &config.factors.encryption_key_previous);
    let audit = (&config.audit_chain_key, &config.audit_chain_key_previous);
    Ok(Keys {
        jwt: resolve_jwt(config)?,
        refresh: resolve_chain(config, "REFRESH_TOKEN_KEY", "refresh_token_key", refresh)?,
        factors: resolve_chain(config, "MFA_ENCRYPTION_KEY", "mfa_encryption_key", mfa)?,
        audit: resolve_chain(config, "AUDIT_CHAIN_KEY", "audit_chain_key", audit)?,
    })
}

/// A key used as its UTF-8 bytes, with its earlier ones (empty entries ignored).
fn resolve_chain(
    config: &Config,
    var: &str,
    file: &str,
    (configured, previous): (&Option<SecretString>, &Vec<SecretString>),
) -> anyhow::Result<KeyChain> {
    let current = configured_or_generated(config, var, file, configured)?;
    Ok(KeyChain {
        current: bytes(current.expose_secret().as_bytes()),
        previous: previous
            .iter()
            .filter(|p| !p.expose_secret().is_empty())
            .map(|p| bytes(p.expose_secret().as_bytes()))
            .collect(),
    })
}

/// The configured key, or in development one generated once into `DATA_DIR`.
fn configured_or_generated(
    config: &Config,
    var: &str,
    file: &str,
    configured: &Option<SecretString>,
) -> anyhow::Result<SecretString> {
    match configured {
        Some(text) => Ok(text.clone()),
        None => {
            anyhow::ensure!(!config.is_production(), "{var} is required in production");
            let path = config.data_dir.join(file);
            let text = load_or_create(&path)
                .with_context(|| format!("{var} is unset and {} cannot be used", path.display()))?;
            tracing::warn!(path = %path.display(), "{var} is unset: using a generated development key; set it in production");
            Ok(text)
        }
    }
}

fn resolve_jwt(config: &Config) -> anyhow::Result<JwtKeys> {
    let (var, file, configured, previous) = match config.jwt_algorithm {
        JwtAlgorithm::Hs256 => {
            ("JWT_ACCESS_SECRET", "jwt_access_secret", &config.jwt_access_secret, &config.jwt_access_secret_previous)
        }
        JwtAlgorithm::EdDsa => {
            ("JWT_SIGNING_KEY", "jwt_signing_key", &config.jwt_signing_key, &config.jwt_signing_key_previous)
        }
    };
    let current = configured_or_generated(config, var, file, configured)?;
    let to_bytes = |text: &SecretString| -> anyhow::Result<KeyBytes> {
        Ok(match config.jwt_algorithm {
            JwtAlgorithm::Hs256 => bytes(text.expose_secret().as_bytes()),
            JwtAlgorithm::EdDsa => bytes(&decode_seed(text.expose_secret()).map_err(|e| anyhow::anyhow!("{var} {e}"))?),
        })
    };
    Ok(JwtKeys {
        algorithm: config.jwt_algorithm,
        current: to_bytes(&current)?,
        previous: previous.iter().filter(|p| !p.expose_secret().is_empty()).map(to_bytes).collect::<Result<_, _>>()?,
    })
}

fn load_or_create(path: &Path) -> anyhow::Result<SecretString> {
    if let Ok(existing) = fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        anyhow::ensure!(existing.len() >= crate::config::MIN_SECRET_BYTES, "the stored key is too short");
        return Ok(existing.into());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
        let mode = fs::metadata(parent)?.permissions().mode();
        if mode & 0o022 != 0 {
            tracing::warn!(dir = %parent.display(), "DATA_DIR is writable by others");
        }
    }
    // 32 random bytes serve both as an HS256 secret (43 characters of text) and as
    // an Ed25519 seed (the text decodes back to them).
    let mut random = [0u8; 32];
    rand::fill(&mut random);
    let secret = URL_SAFE_NO_PAD.encode(random);
    // create_new: if two processes race, one fails here instead of both writing.
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(secret.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_private_long_and_reused() {
        let dir = std::env::temp_dir().join(format!("authgraph-secret-{}", uuid::Uuid::new_v4()));
        let path = dir.join("jwt_access_secret");
        let first = load_or_create(&path).unwrap();
        assert!(first.expose_secret().len() >= 32);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create(&path).unwrap().expose_secret(), first.expose_secret());
        fs::remove_dir_all(dir).unwrap();
    }
}
