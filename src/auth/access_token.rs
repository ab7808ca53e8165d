//! Access tokens: short-lived HS256 JWTs (RFC 9068 profile, `typ: at+jwt`).
//!
//! The key is the UTF-8 bytes of `JWT_ACCESS_SECRET`, so any HS256 library given the
//! same secret can verify our tokens. Verification pins the algorithm (no `none`, no
//! algorithm chosen by the token), and checks `typ`, `exp`, `iss` and `aud`. A valid
//! signature is not enough to get in: the guard also checks the session is live.

use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::models::Role;

/// `typ` header of our access tokens: a refresh token or an ID token signed with the
/// same key is refused by this alone.
pub const TOKEN_TYPE: &str = "at+jwt";
/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// The session's id: logout and reuse detection end it, and with it this token.
    pub sid: Uuid,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
}

#[derive(Clone)]
pub struct AccessTokens {
    encoding: EncodingKey,
    /// `kid` of the current key, written into every token.
    kid: String,
    /// Every key that verifies, by `kid`: the current one and `JWT_ACCESS_SECRET_PREVIOUS`.
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl AccessTokens {
    pub fn new(
        secret: &SecretString,
        previous: &[SecretString],
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let key = secret.expose_secret().as_bytes();
        let mut decoding = HashMap::new();
        for (i, s) in std::iter::once(secret).chain(previous).enumerate() {
            let bytes = s.expose_secret().as_bytes();
            let var = if i == 0 { "JWT_ACCESS_SECRET" } else { "JWT_ACCESS_SECRET_PREVIOUS" };
            decoding.entry(key_id(bytes)).or_insert(DecodingKey::from_secret(bytes).context(var)?);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        Ok(Self {
            encoding: EncodingKey::from_secret(key).context("JWT_ACCESS_SECRET")?,
            kid: key_id(key),
            decoding,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        })
    }

    /// Seconds an issued token lives.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl.as_secs() as i64
    }

    pub fn issue(&self, user_id: Uuid, session_id: Uuid, role: Role) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            sid: session_id,
            role: role.as_str().to_owned(),
            iat: now,
            exp: now + self.ttl_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::new_v4(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        encode(&header, &claims, &self.encoding).context("signing an access token")
    }

    /// Checks a token and returns its claims, or the reason it is refused (for the
    /// log; clients only ever see UNAUTHENTICATED).
    pub fn verify(&self, token: &str) -> Result<Claims, &'static str> {
        let header = decode_header(token).map_err(|_| "malformed token")?;
        if header.alg != Algorithm::HS256 {
            return Err("unexpected algorithm");
        }
        let typ_ok = header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt"));
        if !typ_ok {
            return Err("not an access token");
        }
        let key = header.kid.as_deref().and_then(|kid| self.decoding.get(kid)).ok_or("unknown signing key")?;
        decode::<Claims>(token, key, &self.validation).map(|data| data.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "expired token",
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad signature",
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => "wrong issuer",
            jsonwebtoken::errors::ErrorKind::InvalidAudience => "wrong audience",
            _ => "invalid token",
        })
    }
}

/// A key's public name: the first 8 bytes of its SHA-256, base64url. Says which key
/// signed a token without saying anything useful about the key.
fn key_id(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    URL_SAFE_NO_PAD.encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> AccessTokens {
        AccessTokens::new(&secret.to_owned().into(), &[], "authgraph", "authgraph", Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let t = tokens("0123456789abcdef0123456789abcdef");
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let claims = t.verify(&t.issue(user, session, Role::Admin).unwrap()).unwrap();
        assert_eq!((claims.sub, claims.sid, claims.role.as_str()), (user, session, "ADMIN"));
        assert_eq!(claims.exp - claims.iat, 60);
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = tokens("another key, also thirty-two bytes!").issue(Uuid::new_v4(), Uuid::new_v4(), Role::User);
        assert_eq!(
            tokens("0123456789abcdef0123456789abcdef").verify(&token.unwrap()).unwrap_err(),
            "unknown signing key"
        );
    }
}
