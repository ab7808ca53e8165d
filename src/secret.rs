//! Resolving the JWT key: from the configuration, or generated once in development.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use secrecy::SecretString;

use crate::config::Config;

const FILE_NAME: &str = "jwt_access_secret";

/// The configured `JWT_ACCESS_SECRET`, or in development a random one kept in
/// `DATA_DIR/jwt_access_secret` (mode 0600) so tokens survive restarts. Production
/// never gets here without one: `Config::validate` refuses to start.
pub fn resolve(config: &Config) -> anyhow::Result<SecretString> {
    if let Some(secret) = &config.jwt_access_secret {
        return Ok(secret.clone());
    }
    anyhow::ensure!(!config.is_production(), "JWT_ACCESS_SECRET is required in production");
    let path = config.data_dir.join(FILE_NAME);
    let secret = load_or_create(&path)
        .with_context(|| format!("JWT_ACCESS_SECRET is unset and {} cannot be used", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "JWT_ACCESS_SECRET is unset: using a generated development key; set it in production"
    );
    Ok(secret)
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
    let mut bytes = [0u8; 48];
    rand::fill(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    // create_new: if two processes race, one fails here instead of both writing.
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(secret.into())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_generated_key_is_private_long_and_reused() {
        let dir = std::env::temp_dir().join(format!("authgraph-secret-{}", uuid::Uuid::new_v4()));
        let path = dir.join(FILE_NAME);
        let first = load_or_create(&path).unwrap();
        assert!(first.expose_secret().len() >= 32);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create(&path).unwrap().expose_secret(), first.expose_secret());
        fs::remove_dir_all(dir).unwrap();
    }
}
