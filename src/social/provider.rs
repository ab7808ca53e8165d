//! One configured provider: where its endpoints are (discovered from an OpenID
//! Provider's issuer, or configured for a plain OAuth 2.0 one), its signing keys, the
//! authorization URL a flow sends the browser to, and the exchange of a code for the
//! identity behind it.
//!
//! An ID token is checked here, never trusted for being delivered over TLS: its
//! signature by a key of the provider's published set (asymmetric algorithms only),
//! `iss` equal to the issuer, `aud` holding our client id (and `azp` equal to it when
//! present or when there are several audiences), `exp` not past, `nonce` equal to the
//! flow's. A token signed by a key the set does not hold makes one fetch of the set
//! (the provider may have rotated); a second fetch within `KEYS_REFETCH_INTERVAL` is not
//! made, so a stream of such tokens costs the provider at most one fetch a second.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{
    Algorithm, DecodingKey, Header, Validation,
    jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::fetch::Fetcher;
use crate::{
    config::{Endpoints, ProviderSettings},
    error::AppError,
    secret,
};

/// A key set is fetched again for an unknown key at most this often.
const KEYS_REFETCH_INTERVAL: Duration = Duration::from_secs(1);
/// An issuer that could not be discovered is tried again on use at most this often
/// (the start-up task retries on its own schedule).
const DISCOVERY_RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Clock difference tolerated between us and the provider when checking `exp`.
const LEEWAY_SECS: u64 = 30;

/// Who signed in at the provider.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The provider's stable id for the person (OIDC `sub`, GitHub's `id`).
    pub subject: String,
    pub email: Option<String>,
    /// The provider says it verified `email`.
    pub email_verified: bool,
    /// A username the provider suggests (`preferred_username`, GitHub's `login`).
    pub username: Option<String>,
    pub name: Option<String>,
}

/// A flow's secrets, made when it starts: the browser gets the URL (and the state in
/// it); the nonce and the PKCE verifier stay in the flow's row.
pub struct Authorization {
    pub url: String,
    pub state: SecretString,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Where an OpenID Provider's endpoints are, from its discovery document.
#[derive(Debug)]
struct Discovered {
    /// The issuer as the document spells it (a trailing slash included): what `iss`
    /// must equal.
    issuer: String,
    authorization: String,
    token: String,
    jwks_uri: String,
    userinfo: Option<String>,
    /// The token endpoint takes the client's secret in the body rather than HTTP Basic.
    secret_in_body: bool,
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    nonce: Option<String>,
    azp: Option<String>,
    aud: Value,
    #[serde(flatten)]
    profile: ProfileClaims,
}

/// The claims of a person, in an ID token or a user-info answer.
#[derive(Deserialize, Default)]
struct ProfileClaims {
    email: Option<String>,
    /// A boolean, or the string "true" from some providers.
    email_verified: Option<Value>,
    preferred_username: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

struct KeySet {
    keys: Arc<Vec<Jwk>>,
    fetched_at: Option<Instant>,
}

pub struct Provider {
    pub settings: ProviderSettings,
    discovered: RwLock<Option<Arc<Discovered>>>,
    keys: RwLock<KeySet>,
    /// One discovery or key fetch at a time; holds when the last discovery failed.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

fn provider_error(what: impl Into<String>) -> AppError {
    AppError::OidcProviderError(what.into())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Provider {
    pub fn new(settings: ProviderSettings) -> Self {
        Self {
            settings,
            discovered: RwLock::new(None),
            keys: RwLock::new(KeySet { keys: Arc::new(Vec::new()), fetched_at: None }),
            fetching: tokio::sync::Mutex::new(None),
        }
    }

    pub fn id(&self) -> &str {
        &self.settings.id
    }

    /// An OpenID Provider (discovered from its issuer), rather than plain OAuth 2.0.
    pub fn is_oidc(&self) -> bool {
        self.issuer().is_some()
    }

    fn issuer(&self) -> Option<&str> {
        match &self.settings.endpoints {
            Endpoints::Issuer(issuer) => Some(issuer),
            Endpoints::OAuth2 { .. } => None,
        }
    }

    /// Discovers an OpenID Provider's endpoints and keys, once; later calls return
    /// what was found. Used at start (retried until it works) and on first use.
    pub async fn discover(&self, fetcher: &Fetcher) -> Result<(), AppError> {
        self.discovered(fetcher).await.map(drop)
    }

    async fn discovered(&self, fetcher: &Fetcher) -> Result<Arc<Discovered>, AppError> {
        let Some(issuer) = self.issuer() else {
            return Err(AppError::internal(anyhow::anyhow!("{} is not an OpenID Provider", self.id())));
        };
        if let Some(found) = self.discovered.read().expect("discovery lock").clone() {
            return Ok(found);
        }
        let mut last_failure = self.fetching.lock().await;
        if let Some(found) = self.discovered.read().expect("discovery lock").clone() {
            return Ok(found);
        }
        if last_failure.is_some_and(|at| at.elapsed() < DISCOVERY_RETRY_INTERVAL) {
            return Err(provider_error(format!("{issuer}: not discovered yet")));
        }
        let found = self.fetch_discovery(fetcher, issuer).await;
        match found {
            Ok(found) => {
                let found = Arc::new(found);
                let keys = self.fetch_keys(fetcher, &found.jwks_uri).await;
                match keys {
                    Ok(keys) => *self.keys.write().expect("keys lock") = keys,
                    // The keys are fetched again when a token needs them.
                    Err(err) => tracing::warn!(provider = self.id(), error = ?err, "provider keys not fetched"),
                }
                *self.discovered.write().expect("discovery lock") = Some(found.clone());
                *last_failure = None;
                Ok(found)
            }
            Err(err) => {
                *last_failure = Some(Instant::now());
                Err(err)
            }
        }
    }

    async fn fetch_discovery(&self, fetcher: &Fetcher, issuer: &str) -> Result<Discovered, AppError> {
        let url = format!("{issuer}/.well-known/openid-configuration");
        let answer = fetcher.send(fetcher.get(&url), "discovery").await?;
        if !answer.is_success() {
            return Err(provider_error(format!("discovery: {url} answered {}", answer.status)));
        }
        let doc: DiscoveryDocument = answer.json("discovery")?;
        // The document must be the issuer's own (OpenID Connect Discovery 1.0, 4.3):
        // otherwise tokens of another issuer would pass as this one's.
        if doc.issuer.trim_end_matches('/') != issuer {
            return Err(provider_error(format!("discovery: issuer {:?} is not {issuer:?}", doc.issuer)));
        }
        let methods = &doc.token_endpoint_auth_methods_supported;
        let secret_in_body = !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post");
        Ok(Discovered {
            issuer: doc.issuer,
            authorization: doc.authorization_endpoint,
            token: doc.token_endpoint,
            jwks_uri: doc.jwks_uri,
            userinfo: doc.userinfo_endpoint,
            secret_in_body,
        })
    }

    async fn fetch_keys(&self, fetcher: &Fetcher, jwks_uri: &str) -> Result<KeySet, AppError> {
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<Value>,
        }
        let answer = fetcher.send(fetcher.get(jwks_uri), "keys").await?;
        if !answer.is_success() {
            return Err(provider_error(format!("keys: {jwks_uri} answered {}", answer.status)));
        }
        let set: Set = answer.json("keys")?;
        // Keys of kinds we cannot use (encryption keys, unknown curves) are skipped,
        // not fatal: the set may hold them beside the signing keys.
        let keys = set.keys.into_iter().filter_map(|k| serde_json::from_value::<Jwk>(k).ok()).collect();
        Ok(KeySet { keys: Arc::new(keys), fetched_at: Some(Instant::now()) })
    }

    /// The URL that sends the browser to the provider, and the flow's secrets.
    pub async fn authorization(&self, fetcher: &Fetcher, redirect_uri: &str) -> Result<Authorization, AppError> {
        let endpoint = match &self.settings.endpoints {
            Endpoints::Issuer(_) => self.discovered(fetcher).await?.authorization.clone(),
            Endpoints::OAuth2 { authorization, .. } => authorization.clone(),
        };
        let state = secret::random_token();
        let nonce = secret::random_token().expose_secret().to_owned();
        let pkce_verifier = secret::random_token().expose_secret().to_owned();
        let challenge = b64(&Sha256::digest(pkce_verifier.as_bytes()));
        let mut url = reqwest::Url::parse(&endpoint)
            .map_err(|e| provider_error(format!("authorization endpoint {endpoint:?}: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &self.settings.scopes.join(" "))
                .append_pair("state", state.expose_secret())
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if self.issuer().is_some() {
                query.append_pair("nonce", &nonce);
            }
        }
        Ok(Authorization { url: url.into(), state, nonce, pkce_verifier })
    }

    /// Exchanges the code at the token endpoint and returns who signed in, checked.
    pub async fn exchange(
        &self,
        fetcher: &Fetcher,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Profile, AppError> {
        match &self.settings.endpoints {
            Endpoints::Issuer(_) => {
                let discovered = self.discovered(fetcher).await?;
                let tokens = self
                    .token(fetcher, &discovered.token, discovered.secret_in_body, code, redirect_uri, pkce_verifier)
                    .await?;
                let id_token = tokens.id_token.ok_or_else(|| provider_error("token: no id_token"))?;
                let claims = self.verify_id_token(fetcher, &discovered, &id_token, nonce).await?;
                let mut profile = claims.profile;
                // Providers that keep the ID token small (scope claims only at the
                // user-info endpoint, as the specification's default) say the rest there.
                if profile.email.is_none()
                    && let (Some(userinfo), Some(access)) = (&discovered.userinfo, &tokens.access_token)
                {
                    let info: Value = self.userinfo(fetcher, userinfo, access).await?;
                    if info.get("sub").and_then(Value::as_str) != Some(claims.sub.as_str()) {
                        return Err(provider_error("userinfo: its sub is not the ID token's"));
                    }
                    profile = serde_json::from_value(info).unwrap_or_default();
                }
                Ok(Profile {
                    subject: claims.sub,
                    email_verified: verified(&profile.email_verified),
                    email: profile.email,
                    username: profile.preferred_username,
                    name: profile.name,
                })
            }
            Endpoints::OAuth2 { token, userinfo, emails, .. } => {
                let tokens = self.token(fetcher, token, true, code, redirect_uri, pkce_verifier).await?;
                let access = tokens.access_token.ok_or_else(|| provider_error("token: no access_token"))?;
                let info: Value = self.userinfo(fetcher, userinfo, &access).await?;
                let subject = match info.get("sub").or_else(|| info.get("id")) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => return Err(provider_error("userinfo: no id")),
                };
                let text = |key: &str| info.get(key).and_then(Value::as_str).map(str::to_owned);
                let (email, email_verified) = match emails {
                    Some(url) => {
                        let list: Vec<GithubEmail> = self.userinfo(fetcher, url, &access).await?;
                        match list.into_iter().find(|e| e.primary) {
                            Some(primary) => (Some(primary.email), primary.verified),
                            None => (None, false),
                        }
                    }
                    None => (text("email"), verified(&info.get("email_verified").cloned())),
                };
                Ok(Profile {
                    subject,
                    email,
                    email_verified,
                    username: text("preferred_username").or_else(|| text("login")),
                    name: text("name"),
                })
            }
        }
    }

    async fn token(
        &self,
        fetcher: &Fetcher,
        endpoint: &str,
        secret_in_body: bool,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
    ) -> Result<TokenAnswer, AppError> {
        let settings = &self.settings;
        let secret = settings.client_secret.expose_secret();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", pkce_verifier),
        ];
        let mut request = fetcher.post(endpoint).header(reqwest::header::ACCEPT, "application/json");
        if secret_in_body {
            form.extend([("client_id", settings.client_id.as_str()), ("client_secret", secret)]);
        } else {
            // RFC 6749 2.3.1: both form-encoded before they are joined and encoded.
            let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = STANDARD.encode(format!("{}:{}", encode(&settings.client_id), encode(secret)));
            request = request.header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"));
        }
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let request = request.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body);
        let answer = fetcher.send(request, "token").await?;
        let parsed: Result<TokenAnswer, _> = answer.json("token");
        match parsed {
            // GitHub answers a refused code with 200 and an `error`.
            Ok(TokenAnswer { error: Some(error), error_description, .. }) => {
                Err(provider_error(format!("token: {error}: {}", error_description.unwrap_or_default())))
            }
            Ok(tokens) if answer.is_success() => Ok(tokens),
            _ => Err(provider_error(format!("token: answered {}", answer.status))),
        }
    }

    async fn userinfo<T: serde::de::DeserializeOwned>(
        &self,
        fetcher: &Fetcher,
        url: &str,
        access_token: &str,
    ) -> Result<T, AppError> {
        let request = fetcher
            .get(url)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json, application/vnd.github+json");
        let answer = fetcher.send(request, "userinfo").await?;
        if !answer.is_success() {
            return Err(provider_error(format!("userinfo: {url} answered {}", answer.status)));
        }
        answer.json("userinfo")
    }

    async fn verify_id_token(
        &self,
        fetcher: &Fetcher,
        discovered: &Discovered,
        token: &str,
        nonce: &str,
    ) -> Result<IdClaims, AppError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| provider_error(format!("id_token: {e}")))?;
        if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            // A shared-secret signature would be checked with our own client secret.
            return Err(provider_error("id_token: HMAC-signed"));
        }
        let key = match self.key_for(&header) {
            Some(key) => key,
            None => {
                self.refetch_keys(fetcher, &discovered.jwks_uri).await;
                self.key_for(&header)
                    .ok_or_else(|| provider_error("id_token: signed by a key the provider does not publish"))?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&discovered.issuer]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
            .map_err(|e| provider_error(format!("id_token: {e}")))?
            .claims;
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(provider_error("id_token: nonce is not the flow's"));
        }
        let audiences = match &claims.aud {
            Value::Array(list) => list.len(),
            _ => 1,
        };
        match claims.azp.as_deref() {
            Some(azp) if azp != self.settings.client_id => return Err(provider_error("id_token: azp is not us")),
            None if audiences > 1 => return Err(provider_error("id_token: several audiences and no azp")),
            _ => {}
        }
        Ok(claims)
    }

    /// The published key that can check a token with `header`: its `kid` when it
    /// names one, a signing key of the algorithm's kind, the algorithm the key states.
    fn key_for(&self, header: &Header) -> Option<DecodingKey> {
        let keys = self.keys.read().expect("keys lock").keys.clone();
        let usable = |jwk: &&Jwk| {
            let common = &jwk.common;
            let kind_fits = matches!(
                (&jwk.algorithm, header.alg),
                (AlgorithmParameters::RSA(_), Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512)
                    | (AlgorithmParameters::RSA(_), Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512)
                    | (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256 | Algorithm::ES384)
                    | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
            );
            kind_fits
                && header.kid.as_ref().is_none_or(|kid| common.key_id.as_ref() == Some(kid))
                && common.public_key_use.as_ref().is_none_or(|u| *u == PublicKeyUse::Signature)
                && common.key_algorithm.is_none_or(|a| key_algorithm_is(a, header.alg))
        };
        let candidates: Vec<&Jwk> = keys.iter().filter(usable).collect();
        // Without a kid, only a set with one fitting key is unambiguous.
        match candidates[..] {
            [one] => DecodingKey::from_jwk(one).ok(),
            _ => None,
        }
    }

    /// Fetches the key set again, unless it was fetched within
    /// `KEYS_REFETCH_INTERVAL`; waits for a fetch already under way.
    async fn refetch_keys(&self, fetcher: &Fetcher, jwks_uri: &str) {
        let _one_at_a_time = self.fetching.lock().await;
        let recent =
            self.keys.read().expect("keys lock").fetched_at.is_some_and(|at| at.elapsed() < KEYS_REFETCH_INTERVAL);
        if recent {
            return;
        }
        match self.fetch_keys(fetcher, jwks_uri).await {
            Ok(keys) => *self.keys.write().expect("keys lock") = keys,
            Err(err) => tracing::warn!(provider = self.id(), error = ?err, "provider keys not fetched"),
        }
    }
}

/// `email_verified` as providers send it: true, or "true".
fn verified(value: &Option<Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

fn key_algorithm_is(stated: KeyAlgorithm, alg: Algorithm) -> bool {
    serde_json::to_value(stated).ok() == serde_json::to_value(alg).ok()
}
