//! Identity providers on loopback for the social sign-in tests:
//!
//! - `OpenIdProvider`: the real `oidc-provider` (npm, OpenID Certified), started as a
//!   Node process from `tests/clients/oidc/provider.mjs`, with `login` playing the
//!   browser through its authorization endpoint and login form;
//! - `Interposer`: an OpenID issuer of the test's own that answers the token request
//!   the way an attacker in front of a provider would (a wrong nonce, audience or
//!   issuer, an expired token, a key it never published, a slow or huge answer), since
//!   a compliant provider will not misbehave on its own;
//! - `GithubLike`: a small server speaking GitHub's OAuth endpoints and JSON (no ID
//!   token: the user and the verified primary address come from `/user` and
//!   `/user/emails`), which checks the PKCE verifier as GitHub does.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use authgraph::config::{Endpoints, ProviderSettings};
use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Digest;

/// Where the tests' frontend says the provider sends the browser back to.
pub const REDIRECT_URI: &str = "https://app.example.com/auth/callback";

/// A client of a provider, as registered there.
#[derive(Clone)]
pub struct ProviderClient {
    pub id: &'static str,
    pub secret: &'static str,
}

pub const APP: ProviderClient = ProviderClient { id: "authgraph-app", secret: "app-secret-0123456789" };
pub const OTHER_APP: ProviderClient = ProviderClient { id: "someone-else", secret: "other-secret-0123456789" };

/// `oidc-provider` in a Node process: killed when dropped, and gone with the test
/// process in any case (it exits when its stdin closes).
pub struct OpenIdProvider {
    pub issuer: String,
    process: std::process::Child,
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl OpenIdProvider {
    /// One provider for the tests that do not change it (rotating its key does).
    pub fn shared() -> &'static Self {
        static SHARED: std::sync::OnceLock<OpenIdProvider> = std::sync::OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// Starts a provider of its own with `APP` and `OTHER_APP` registered, and waits
    /// until it listens.
    pub fn start() -> Self {
        use std::io::BufRead;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
        assert!(
            root.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run `npm ci` in tests/clients (scripts/test does)"
        );
        let port = super::free_port();
        let clients: Vec<Value> = [APP, OTHER_APP]
            .iter()
            .map(|c| json!({ "client_id": c.id, "client_secret": c.secret, "redirect_uris": [REDIRECT_URI] }))
            .collect();
        let mut process = std::process::Command::new("node")
            .arg("oidc/provider.mjs")
            .current_dir(&root)
            .env("OP_PORT", port.to_string())
            .env("OP_CLIENTS", Value::from(clients).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let mut ready = String::new();
        std::io::BufReader::new(process.stdout.take().unwrap()).read_line(&mut ready).unwrap();
        let issuer = ready.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("not ready: {ready:?}")).to_owned();
        Self { issuer, process }
    }

    /// The settings of provider `id` at this issuer, as `client`.
    pub fn settings(&self, id: &str, client: &ProviderClient) -> ProviderSettings {
        settings(id, Endpoints::Issuer(self.issuer.clone()), client)
    }

    /// Replaces the provider's signing key: it signs and publishes only the new one.
    pub async fn rotate_key(&self) -> String {
        let res = reqwest::Client::new().post(format!("{}/__rotate", self.issuer)).send().await.unwrap();
        let body: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
        body["kid"].as_str().unwrap().to_owned()
    }
}

pub fn settings(id: &str, endpoints: Endpoints, client: &ProviderClient) -> ProviderSettings {
    let scopes = match endpoints {
        Endpoints::Issuer(_) => vec!["openid".into(), "email".into(), "profile".into()],
        Endpoints::OAuth2 { .. } => vec!["read:user".into(), "user:email".into()],
    };
    ProviderSettings {
        id: id.into(),
        name: id[..1].to_uppercase() + &id[1..],
        endpoints,
        client_id: client.id.into(),
        client_secret: SecretString::from(client.secret),
        scopes,
    }
}

/// What the provider sent the browser back with.
#[derive(Debug)]
pub struct Callback {
    pub code: String,
    pub state: String,
}

/// Plays the browser: opens `authorization_url`, signs in on the provider's login form
/// as `login` (`sub|email|email_verified|name|preferred_username`), and follows the
/// redirects until the provider sends it to `REDIRECT_URI`.
pub async fn login(authorization_url: &str, login: &str) -> Callback {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut cookies: HashMap<String, String> = HashMap::new();
    let mut url = reqwest::Url::parse(authorization_url).unwrap();
    let mut form: Option<Vec<(&str, &str)>> = None;
    for _ in 0..12 {
        let cookie = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let request = match form.take() {
            Some(fields) => http.post(url.clone()).form(&fields),
            None => http.get(url.clone()),
        };
        let res = request.header("cookie", cookie).send().await.unwrap();
        for set in res.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                cookies.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        if res.status().is_redirection() {
            let location = res.headers()["location"].to_str().unwrap();
            url = url.join(location).unwrap();
            if url.as_str().starts_with(REDIRECT_URI) {
                return callback_of(&url);
            }
            continue;
        }
        let status = res.status();
        let page = res.text().await.unwrap();
        assert!(status.is_success() && page.contains("name=\"login\""), "not the login form ({status}): {page}");
        // The dev login form posts back to its own URL.
        form = Some(vec![("prompt", "login"), ("login", login), ("password", "any")]);
    }
    panic!("the provider never sent the browser back");
}

fn callback_of(url: &reqwest::Url) -> Callback {
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert!(!query.contains_key("error"), "the provider answered an error: {url}");
    Callback { code: query["code"].clone(), state: query["state"].clone() }
}

/// The query parameter `name` of `url`.
pub fn param(url: &str, name: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap();
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// How the interposer answers the token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// A valid ID token: what makes the other answers' refusals mean something.
    None,
    WrongNonce,
    WrongAudience,
    WrongIssuer,
    Expired,
    /// Signed by a key the issuer never published, under a kid its set does not hold
    /// (the server fetches the set again, and still does not find it).
    UnpublishedKey,
    /// Signed by another key under the kid of the published one.
    ForgedSignature,
    /// Signed with HS256 under the client's own secret.
    SharedSecret,
    /// Answers after this long.
    Slow(Duration),
    /// An answer of this many bytes.
    Huge(usize),
}

struct InterposerState {
    issuer: String,
    published: (jsonwebtoken::EncodingKey, Value),
    unpublished: jsonwebtoken::EncodingKey,
    defect: Mutex<Defect>,
    token_requests: Mutex<u32>,
}

/// An OpenID issuer of the test's own whose token endpoint answers as told. The code a
/// test passes to the finish is the nonce of the flow's authorization URL (`param(url,
/// "nonce")`), so that the one valid answer can carry it.
pub struct Interposer {
    pub issuer: String,
    state: Arc<InterposerState>,
}

fn es256_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der());
    let raw = pair.public_key_raw();
    let (x, y) = raw[1..].split_at(32);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    });
    (key, jwk)
}

impl Interposer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(InterposerState {
            issuer: issuer.clone(),
            published: es256_key("published"),
            unpublished: es256_key("published").0,
            defect: Mutex::new(Defect::None),
            token_requests: Mutex::new(0),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(interposer_discovery))
            .route("/jwks", get(interposer_keys))
            .route("/token", post(interposer_token))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { issuer, state }
    }

    pub fn settings(&self, id: &str) -> ProviderSettings {
        settings(id, Endpoints::Issuer(self.issuer.clone()), &APP)
    }

    pub fn answer_with(&self, defect: Defect) {
        *self.state.defect.lock().unwrap() = defect;
    }

    pub fn token_requests(&self) -> u32 {
        *self.state.token_requests.lock().unwrap()
    }
}

async fn interposer_discovery(State(s): State<Arc<InterposerState>>) -> Json<Value> {
    Json(json!({
        "issuer": s.issuer,
        "authorization_endpoint": format!("{}/authorize", s.issuer),
        "token_endpoint": format!("{}/token", s.issuer),
        "jwks_uri": format!("{}/jwks", s.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn interposer_keys(State(s): State<Arc<InterposerState>>) -> Json<Value> {
    Json(json!({ "keys": [s.published.1] }))
}

async fn interposer_token(
    State(s): State<Arc<InterposerState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    *s.token_requests.lock().unwrap() += 1;
    assert!(form.get("code_verifier").is_some_and(|v| v.len() >= 43), "a PKCE verifier: {form:?}");
    let defect = *s.defect.lock().unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": s.issuer, "aud": APP.id, "sub": "mallory-subject", "iat": now, "exp": now + 300,
        "nonce": form["code"], "email": "mallory@example.com", "email_verified": true,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("published".into());
    let mut key = &s.published.0;
    let hmac;
    match defect {
        Defect::None => {}
        Defect::WrongNonce => claims["nonce"] = json!("not-the-flows-nonce"),
        Defect::WrongAudience => claims["aud"] = json!(OTHER_APP.id),
        Defect::WrongIssuer => claims["iss"] = json!("https://accounts.example.net"),
        Defect::Expired => claims["exp"] = json!(now - 600),
        Defect::UnpublishedKey => {
            header.kid = Some("never-published".into());
            key = &s.unpublished;
        }
        Defect::ForgedSignature => key = &s.unpublished,
        Defect::SharedSecret => {
            header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            hmac = jsonwebtoken::EncodingKey::from_secret(APP.secret.as_bytes());
            key = &hmac;
        }
        Defect::Slow(wait) => tokio::time::sleep(wait).await,
        Defect::Huge(bytes) => {
            let padding = "x".repeat(bytes);
            return Json(json!({ "access_token": "a", "token_type": "Bearer", "padding": padding })).into_response();
        }
    }
    let id_token = jsonwebtoken::encode(&header, &claims, key).unwrap();
    Json(json!({ "access_token": "opaque", "token_type": "Bearer", "expires_in": 300, "id_token": id_token }))
        .into_response()
}

/// A person at the GitHub-like provider.
#[derive(Clone, Debug)]
pub struct GithubUser {
    pub id: u64,
    pub login: &'static str,
    pub name: &'static str,
    pub email: &'static str,
    pub verified: bool,
}

struct Grant {
    user: GithubUser,
    challenge: String,
    redirect_uri: String,
}

#[derive(Default)]
struct GithubState {
    /// The person the next authorization signs in as.
    next: Mutex<Option<GithubUser>>,
    codes: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, GithubUser>>,
}

/// GitHub's OAuth endpoints and user API, as far as sign-in uses them.
pub struct GithubLike {
    pub base: String,
    state: Arc<GithubState>,
}

impl GithubLike {
    pub async fn start() -> Self {
        let state = Arc::new(GithubState::default());
        let router = Router::new()
            .route("/login/oauth/authorize", get(github_authorize))
            .route("/login/oauth/access_token", post(github_token))
            .route("/user", get(github_user))
            .route("/user/emails", get(github_emails))
            .with_state(state.clone());
        Self { base: serve(router).await, state }
    }

    pub fn settings(&self, id: &str) -> ProviderSettings {
        let endpoints = Endpoints::OAuth2 {
            authorization: format!("{}/login/oauth/authorize", self.base),
            token: format!("{}/login/oauth/access_token", self.base),
            userinfo: format!("{}/user", self.base),
            emails: Some(format!("{}/user/emails", self.base)),
        };
        settings(id, endpoints, &APP)
    }

    /// Plays the browser at GitHub, signed in as `user`: the authorization page sends
    /// it back with a code at once (the app was authorized before).
    pub async fn login(&self, authorization_url: &str, user: GithubUser) -> Callback {
        *self.state.next.lock().unwrap() = Some(user);
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let res = http.get(authorization_url).send().await.unwrap();
        assert!(res.status().is_redirection(), "{}", res.status());
        callback_of(&reqwest::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap())
    }
}

async fn github_authorize(State(s): State<Arc<GithubState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("client_id").map(String::as_str) != Some(APP.id)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "client_id and an S256 code_challenge").into_response();
    }
    let user = s.next.lock().unwrap().take().expect("a person signed in");
    let code = uuid::Uuid::new_v4().simple().to_string();
    let grant = Grant { user, challenge: q["code_challenge"].clone(), redirect_uri: q["redirect_uri"].clone() };
    s.codes.lock().unwrap().insert(code.clone(), grant);
    let back = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
    Redirect::to(&back).into_response()
}

async fn github_token(
    State(s): State<Arc<GithubState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Json<Value> {
    // GitHub answers JSON only when asked, and refusals with 200 and an `error`.
    assert!(headers.get("accept").is_some_and(|a| a.to_str().unwrap().contains("application/json")));
    if form.get("client_id").map(String::as_str) != Some(APP.id)
        || form.get("client_secret").map(String::as_str) != Some(APP.secret)
    {
        return Json(json!({ "error": "incorrect_client_credentials" }));
    }
    let Some(grant) = s.codes.lock().unwrap().remove(form.get("code").map(String::as_str).unwrap_or_default()) else {
        return Json(json!({ "error": "bad_verification_code" }));
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    if challenge != grant.challenge || form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return Json(json!({ "error": "bad_verification_code" }));
    }
    let token = format!("gho_{}", uuid::Uuid::new_v4().simple());
    s.tokens.lock().unwrap().insert(token.clone(), grant.user);
    Json(json!({ "access_token": token, "token_type": "bearer", "scope": "read:user,user:email" }))
}

fn github_caller(s: &GithubState, headers: &HeaderMap) -> Option<GithubUser> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    s.tokens.lock().unwrap().get(token).cloned()
}

async fn github_user(State(s): State<Arc<GithubState>>, headers: HeaderMap) -> Response {
    match github_caller(&s, &headers) {
        // GitHub's `email` is the public one, often null: the list below is what counts.
        Some(u) => Json(json!({ "login": u.login, "id": u.id, "name": u.name, "email": null })).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn github_emails(State(s): State<Arc<GithubState>>, headers: HeaderMap) -> Response {
    match github_caller(&s, &headers) {
        Some(u) => Json(json!([
            { "email": format!("{}@users.noreply.github.com", u.id), "primary": false, "verified": true, "visibility": null },
            { "email": u.email, "primary": true, "verified": u.verified, "visibility": "private" },
        ]))
        .into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}
