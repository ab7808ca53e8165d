//! Access tokens: short-lived JWTs (RFC 9068 profile, `typ: at+jwt`).
//!
//! By default HS256 keyed with the UTF-8 bytes of `JWT_ACCESS_SECRET`, so any HS256
//! library given the same secret can verify our tokens. With `JWT_ALGORITHM=EdDSA`
//! they are signed with an Ed25519 key whose public half is published as a JWKS, so
//! other services verify them without any secret. Either way, every token names its
//! key (`kid`), earlier keys keep verifying until their tokens expire, and
//! verification pins the algorithm (no `none`, nothing chosen by the token: an HS256
//! token "signed" with our public key is refused), then checks `typ`, `exp`, `nbf`,
//! `iss` and `aud`. A valid signature is not enough to get in: the guard also checks
//! that the session is live.

use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
    jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    config::JwtAlgorithm,
    db::{
        ids::{SessionId, UserId},
        models::{Assurance, Methods, Role},
    },
    secret::JwtKeys,
};

/// `typ` header of our access tokens: a refresh token or an ID token signed with the
/// same key is refused by this alone.
pub const TOKEN_TYPE: &str = "at+jwt";
/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: UserId,
    /// The session's id: logout and reuse detection end it, and with it this token.
    pub sid: SessionId,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
    /// Authentication assurance level (NIST SP 800-63B): `aal1` for a password alone,
    /// `aal2` once the session passed a second factor. Other services can require
    /// `aal2` themselves. Tokens issued before the claim existed read as `aal1`.
    #[serde(default = "password_only_aal")]
    pub aal: String,
    /// How the session was authenticated, as RFC 8176 names methods: `["pwd"]`, or
    /// `["pwd", "otp"]` after a TOTP or recovery code.
    #[serde(default = "password_only_amr")]
    pub amr: Vec<String>,
    /// An impersonation's token names who acts (RFC 8693's `act` claim: the ADMIN),
    /// and the caller is then held to what an impersonation may do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// The party acting for the token's subject (RFC 8693 §4.1).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    pub sub: UserId,
}

fn password_only_aal() -> String {
    Assurance::Aal1.claim().to_owned()
}

fn password_only_amr() -> Vec<String> {
    Methods::PASSWORD.amr()
}

impl Claims {
    /// The assurance the token claims.
    pub fn assurance(&self) -> Assurance {
        Assurance::from_claim(&self.aal)
    }

    /// Whether the token has expired by now, with the clock skew `verify` tolerates: a
    /// socket checks again at each operation what `verify` checked when it opened.
    pub fn has_expired(&self) -> bool {
        self.exp.saturating_add(LEEWAY_SECS as i64) < chrono::Utc::now().timestamp()
    }
}

#[derive(Clone)]
pub struct AccessTokens {
    algorithm: Algorithm,
    encoding: EncodingKey,
    /// `kid` of the current key, written into every token.
    kid: String,
    /// Every key that verifies, by `kid`: the current one and the previous ones.
    decoding: HashMap<String, DecodingKey>,
    /// The public keys as a JWK set (EdDSA only).
    jwks: Option<JwkSet>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// PKCS#8 DER header of an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

impl AccessTokens {
    pub fn new(keys: &JwtKeys, issuer: &str, audience: &str, ttl: Duration) -> anyhow::Result<Self> {
        let all_keys = std::iter::once(&keys.current).chain(&keys.previous);
        let (algorithm, encoding, kid, decoding, jwks) = match keys.algorithm {
            JwtAlgorithm::Hs256 => {
                let current = keys.current.expose_secret();
                let mut decoding = HashMap::new();
                for key in all_keys {
                    let bytes = key.expose_secret();
                    decoding.insert(key_id(bytes), DecodingKey::from_secret(bytes));
                }
                let encoding = EncodingKey::from_secret(current);
                (Algorithm::HS256, encoding, key_id(current), decoding, None)
            }
            JwtAlgorithm::EdDsa => {
                let mut decoding = HashMap::new();
                let mut published = Vec::new();
                let mut current = None;
                for key in all_keys {
                    let der = [&ED25519_PKCS8_PREFIX[..], key.expose_secret()].concat();
                    let encoding = EncodingKey::from_ed_der(&der);
                    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).context("JWT_SIGNING_KEY")?;
                    let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else {
                        anyhow::bail!("JWT_SIGNING_KEY is not an Ed25519 key");
                    };
                    let public = URL_SAFE_NO_PAD.decode(&params.x).context("JWT_SIGNING_KEY")?;
                    let kid = key_id(&public);
                    decoding
                        .insert(kid.clone(), DecodingKey::from_ed_components(&params.x).context("JWT_SIGNING_KEY")?);
                    jwk.common.key_id = Some(kid.clone());
                    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
                    published.push(jwk);
                    current.get_or_insert((encoding, kid));
                }
                let (encoding, kid) = current.expect("the current key is always present");
                (Algorithm::EdDSA, encoding, kid, decoding, Some(JwkSet { keys: published }))
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        Ok(Self {
            algorithm,
            encoding,
            kid,
            decoding,
            jwks,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        })
    }

    /// The public keys for `/.well-known/jwks.json`; `None` with a shared secret.
    pub fn jwks(&self) -> Option<&JwkSet> {
        self.jwks.as_ref()
    }

    /// Seconds an issued token lives.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl.as_secs() as i64
    }

    /// A token for a session, claiming the assurance it has reached and the methods
    /// behind it.
    pub fn issue(
        &self,
        user_id: UserId,
        session_id: SessionId,
        role: Role,
        methods: Methods,
    ) -> anyhow::Result<String> {
        self.sign(user_id, session_id, role, methods, None, self.ttl)
    }

    /// An impersonation's token: `actor` acts for `user_id`, for `ttl` (its session
    /// ends with it; no refresh token comes with it).
    pub fn issue_acting(
        &self,
        user_id: UserId,
        session_id: SessionId,
        role: Role,
        methods: Methods,
        actor: UserId,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        self.sign(user_id, session_id, role, methods, Some(Actor { sub: actor }), ttl)
    }

    fn sign(
        &self,
        user_id: UserId,
        session_id: SessionId,
        role: Role,
        methods: Methods,
        act: Option<Actor>,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            sid: session_id,
            role: role.as_str().to_owned(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::new_v4(),
            aal: methods.assurance().claim().to_owned(),
            amr: methods.amr(),
            act,
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        encode(&header, &claims, &self.encoding).context("signing an access token")
    }

    /// Checks a token and returns its claims, or the reason it is refused (for the
    /// log; clients only ever see UNAUTHENTICATED).
    pub fn verify(&self, token: &str) -> Result<Claims, &'static str> {
        let header = decode_header(token).map_err(|_| "malformed token")?;
        if header.alg != self.algorithm {
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
    use crate::db::models::{FirstFactor, SecondFactor};

    fn tokens(secret: &str) -> AccessTokens {
        AccessTokens::new(&JwtKeys::hs256(secret, &[]), "authgraph", "authgraph", Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let t = tokens("0123456789abcdef0123456789abcdef");
        let (user, session) = (UserId::random(), SessionId::random());
        let claims = t.verify(&t.issue(user, session, Role::Admin, Methods::PASSWORD).unwrap()).unwrap();
        assert_eq!((claims.sub, claims.sid, claims.role.as_str()), (user, session, "ADMIN"));
        assert_eq!(claims.exp - claims.iat, 60);
        assert_eq!((claims.aal.as_str(), claims.amr.as_slice()), ("aal1", ["pwd".to_owned()].as_slice()));
        let claims_of = |first, second| {
            let methods = Methods { first, second };
            let claims = t.verify(&t.issue(user, session, Role::User, methods).unwrap()).unwrap();
            (claims.aal, claims.amr.join(" "))
        };
        let aal2 = |amr: &str| ("aal2".to_owned(), amr.to_owned());
        assert_eq!(claims_of(FirstFactor::Password, Some(SecondFactor::Totp)), aal2("pwd otp"));
        assert_eq!(claims_of(FirstFactor::Password, Some(SecondFactor::RecoveryCode)), aal2("pwd otp"));
        assert_eq!(claims_of(FirstFactor::Password, Some(SecondFactor::Passkey)), aal2("pwd hwk"));
        assert_eq!(claims_of(FirstFactor::Passkey, Some(SecondFactor::SyncedPasskey)), aal2("swk user"));
        assert_eq!(claims_of(FirstFactor::Passkey, Some(SecondFactor::Passkey)), aal2("hwk user"));
        let raised = t
            .verify(
                &t.issue(user, session, Role::User, Methods { second: Some(SecondFactor::Totp), ..Methods::PASSWORD })
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(raised.assurance(), Assurance::Aal2);
    }

    /// A token issued before `aal`/`amr` existed still verifies, as a password-only one.
    #[test]
    fn a_token_without_assurance_claims_reads_as_password_only() {
        let t = tokens("0123456789abcdef0123456789abcdef");
        let claims =
            t.verify(&t.issue(UserId::random(), SessionId::random(), Role::User, Methods::PASSWORD).unwrap()).unwrap();
        let mut old = serde_json::to_value(&claims).unwrap();
        old.as_object_mut().unwrap().retain(|k, _| k != "aal" && k != "amr");
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(t.kid.clone());
        let token = encode(&header, &old, &t.encoding).unwrap();
        let read = t.verify(&token).unwrap();
        assert_eq!((read.aal.as_str(), read.amr), ("aal1", vec!["pwd".to_owned()]));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = tokens("another key, also thirty-two bytes!").issue(
            UserId::random(),
            SessionId::random(),
            Role::User,
            Methods::PASSWORD,
        );
        assert_eq!(
            tokens("0123456789abcdef0123456789abcdef").verify(&token.unwrap()).unwrap_err(),
            "unknown signing key"
        );
    }

    #[test]
    fn eddsa_tokens_verify_and_their_public_key_is_published() {
        let keys = JwtKeys {
            algorithm: JwtAlgorithm::EdDsa,
            current: secrecy::SecretBox::new(Box::new(vec![7u8; 32])),
            previous: vec![secrecy::SecretBox::new(Box::new(vec![9u8; 32]))],
        };
        let t = AccessTokens::new(&keys, "authgraph", "authgraph", Duration::from_secs(60)).unwrap();
        let token = t.issue(UserId::random(), SessionId::random(), Role::User, Methods::PASSWORD).unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert!(t.verify(&token).is_ok());
        let jwks = t.jwks().unwrap();
        assert_eq!(jwks.keys.len(), 2, "current and previous keys are published");
        assert_eq!(jwks.keys[0].common.key_id, header.kid);
        // The classic confusion attack: HS256 "signed" with the public key as secret.
        let AlgorithmParameters::OctetKeyPair(params) = &jwks.keys[0].algorithm else { panic!() };
        let claims = decode::<serde_json::Value>(&token, &t.decoding[header.kid.as_deref().unwrap()], &t.validation)
            .unwrap()
            .claims;
        let mut forged_header = Header::new(Algorithm::HS256);
        forged_header.typ = Some(TOKEN_TYPE.into());
        forged_header.kid = header.kid.clone();
        for secret in [params.x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(&params.x).unwrap()] {
            let forged = encode(&forged_header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(t.verify(&forged).unwrap_err(), "unexpected algorithm");
        }
    }
}
