//! The attack suite: forged tokens, operation abuse, CSRF, brute force, production
//! mode, key rotation and secrets in logs. Each test attacks; each would fail if the
//! protection it names were removed.

use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use crate::support::{Auth, Gql, PASSWORD, SECRET, SIGNIN, TestApp, body_json, error_code, expect_error};

const ME: &str = "{ me { id } }";

fn claims_of(token: &str) -> Value {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["authgraph"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(SECRET.as_bytes()), &v).unwrap().claims
}

fn sign(alg: Algorithm, typ: &str, kid: Option<&str>, claims: &Value, key: &[u8]) -> String {
    let mut header = Header::new(alg);
    header.typ = Some(typ.to_owned());
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn forged_access_tokens_are_all_unauthenticated() {
    let app = TestApp::new().await;
    let auth = app.signup("ada").await;
    let claims = claims_of(&auth.access);
    let kid = jsonwebtoken::decode_header(&auth.access).unwrap().kid;
    let kid = kid.as_deref();
    let key = SECRET.as_bytes();
    let now = chrono::Utc::now().timestamp();
    let with = |field: &str, value: Value| {
        let mut c = claims.clone();
        c[field] = value;
        c
    };
    let (head, rest) = auth.access.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let mut cases: Vec<(String, String)> = vec![
        ("wrong key".into(), sign(Algorithm::HS256, "at+jwt", kid, &claims, b"another-key-another-key-another-key")),
        ("HS384 with the same key".into(), sign(Algorithm::HS384, "at+jwt", kid, &claims, key)),
        ("HS512 with the same key".into(), sign(Algorithm::HS512, "at+jwt", kid, &claims, key)),
        ("expired".into(), sign(Algorithm::HS256, "at+jwt", kid, &with("exp", json!(now - 60)), key)),
        ("nbf in the future".into(), sign(Algorithm::HS256, "at+jwt", kid, &with("nbf", json!(now + 3600)), key)),
        ("wrong iss".into(), sign(Algorithm::HS256, "at+jwt", kid, &with("iss", json!("evil")), key)),
        ("wrong aud".into(), sign(Algorithm::HS256, "at+jwt", kid, &with("aud", json!("other-api")), key)),
        ("typ JWT".into(), sign(Algorithm::HS256, "JWT", kid, &claims, key)),
        ("no kid".into(), sign(Algorithm::HS256, "at+jwt", None, &claims, key)),
        ("tampered role".into(), format!("{head}.{}.{sig}", b64(&with("role", json!("ADMIN"))))),
        ("tampered sub".into(), format!("{head}.{}.{sig}", b64(&with("sub", json!(uuid::Uuid::new_v4()))))),
        ("truncated signature".into(), format!("{head}.{payload}.{}", &sig[..sig.len() - 4])),
        ("no signature".into(), format!("{head}.{payload}.")),
        ("refresh token as access token".into(), auth.refresh.clone()),
        ("empty".into(), String::new()),
    ];
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": kid });
        cases.push((format!("alg {alg}"), format!("{}.{payload}.", b64(&header))));
        cases.push((format!("alg {alg} with signature"), format!("{}.{payload}.{sig}", b64(&header))));
    }
    for (label, token) in &cases {
        let res = app.gql(Some(token), ME, json!({})).await;
        assert_eq!(error_code(&res), "UNAUTHENTICATED", "{label}: {res}");
    }
    assert!(app.gql(Some(&auth.access), ME, json!({})).await["data"]["me"].is_object(), "the real token works");
}

#[tokio::test]
async fn tokens_of_ended_sessions_and_deleted_users_are_unauthenticated() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    app.gql(Some(&ada.access), "mutation { logout }", json!({})).await;
    expect_error(&app.gql(Some(&ada.access), ME, json!({})).await, "UNAUTHENTICATED");
    app.gql(Some(&bob.access), "mutation($id: ID!) { deleteUser(id: $id) }", json!({ "id": bob.user_id })).await;
    expect_error(&app.gql(Some(&bob.access), ME, json!({})).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_token_for_someone_elses_session_is_refused() {
    // A validly signed token whose sid belongs to another user (e.g. a mix-up or a
    // leaked signing key used carelessly) must not authenticate.
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let mut claims = claims_of(&ada.access);
    claims["sid"] = claims_of(&bob.access)["sid"].clone();
    let kid = jsonwebtoken::decode_header(&ada.access).unwrap().kid;
    let token = sign(Algorithm::HS256, "at+jwt", kid.as_deref(), &claims, SECRET.as_bytes());
    expect_error(&app.gql(Some(&token), ME, json!({})).await, "UNAUTHENTICATED");
}

fn limit_message(res: &Value) -> String {
    let err = expect_error(res, "GRAPHQL_VALIDATION_FAILED");
    err["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn alias_overload_is_refused() {
    let app = TestApp::new().await;
    let aliases: String = (0..16).map(|i| format!("a{i}: users(first: 1) {{ totalCount }} ")).collect();
    let res = app.gql(None, &format!("{{ {aliases} }}"), json!({})).await;
    assert!(limit_message(&res).contains("aliases"), "{res}");
    // Naming the operation changes nothing.
    let res = app.gql(None, &format!("query Named {{ {aliases} }}"), json!({})).await;
    assert!(limit_message(&res).contains("aliases"), "{res}");
    // __typename is free, however often it is aliased.
    let typenames: String = (0..30).map(|i| format!("t{i}: __typename ")).collect();
    assert!(app.gql(None, &format!("{{ {typenames} }}"), json!({})).await["errors"].is_null());
}

#[tokio::test]
async fn deep_nesting_and_token_floods_are_refused_before_validation() {
    let app = TestApp::new().await;
    let deep = format!("{}{}", "{ a ".repeat(12), "}".repeat(12));
    assert!(limit_message(&app.gql(None, &deep, json!({})).await).contains("depth"));
    let flood = "{".repeat(20_000);
    assert!(limit_message(&app.gql(None, &flood, json!({})).await).contains("tokens"));
    let huge = format!("{{ __typename }} # {}", "x".repeat(100 * 1024));
    assert!(limit_message(&app.gql(None, &huge, json!({})).await).contains("size"));
    let directives = format!("{{ users {{ totalCount {} }} }}", "@include(if: true) ".repeat(11));
    assert!(limit_message(&app.gql(None, &directives, json!({})).await).contains("directives"));
    let costly: String =
        (0..5).map(|i| format!("u{i}: users(first: 100) {{ nodes {{ id name username }} }} ")).collect();
    assert!(limit_message(&app.gql(None, &format!("{{ {costly} }}"), json!({})).await).contains("cost"));
}

#[tokio::test]
async fn fifty_aliased_signins_are_refused_before_any_hashing() {
    let app = TestApp::new().await;
    app.signup("ada").await;
    let before = app.state.auth.hasher.computed();
    let signins: String = (0..50)
        .map(|i| format!("s{i}: signin(input: {{ username: \"ada\", password: \"guess {i}\" }}) {{ accessToken }} "))
        .collect();
    let res = app.gql(None, &format!("mutation {{ {signins} }}"), json!({})).await;
    assert!(res["data"].is_null(), "{res}");
    assert_eq!(error_code(&res), "GRAPHQL_VALIDATION_FAILED");
    let two = "mutation { a: signin(input: { username: \"ada\", password: \"x\" }) { accessToken } \
               b: signup(input: { name: \"b\", username: \"bbb\", password: \"y\" }) { accessToken } }";
    assert!(limit_message(&app.gql(None, two, json!({})).await).contains("auth mutations"));
    assert_eq!(app.state.auth.hasher.computed(), before, "no password was hashed");
}

#[tokio::test]
async fn a_batch_runs_at_most_one_auth_mutation_and_at_most_ten_operations() {
    let app = TestApp::new().await;
    app.signup("ada").await;
    let signin = json!({ "query": SIGNIN, "variables": { "input": { "username": "ada", "password": PASSWORD } } });
    let res = body_json(app.gql_response(None, None, json!([signin, signin, signin])).await).await;
    let results = res.as_array().unwrap();
    let ok = results.iter().filter(|r| r["data"]["signin"].is_object()).count();
    assert_eq!(ok, 1, "{res}");
    assert!(results.iter().filter(|r| r["errors"].is_array()).all(|r| limit_message(r).contains("auth mutations")));

    let many: Vec<Value> = (0..11).map(|_| json!({ "query": "{ __typename }" })).collect();
    let res = app.gql_response(None, None, Value::Array(many)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = body_json(res).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("batch"));
    let ten: Vec<Value> = (0..10).map(|_| json!({ "query": "{ __typename }" })).collect();
    let res = body_json(app.gql_response(None, None, Value::Array(ten)).await).await;
    assert_eq!(res.as_array().unwrap().len(), 10);
}

/// The query GraphiQL and code generators send (graphql-js `getIntrospectionQuery`),
/// with a deep `ofType` chain.
fn introspection_query() -> String {
    let of_type = (0..14).fold(String::from("kind name"), |inner, _| format!("kind name ofType {{ {inner} }}"));
    format!(
        "query IntrospectionQuery {{ __schema {{ queryType {{ name }} mutationType {{ name }} subscriptionType {{ name }} \
         types {{ ...FullType }} directives {{ name description locations args {{ ...InputValue }} }} }} }} \
         fragment FullType on __Type {{ kind name description \
           fields(includeDeprecated: true) {{ name description args {{ ...InputValue }} type {{ ...TypeRef }} isDeprecated deprecationReason }} \
           inputFields {{ ...InputValue }} interfaces {{ ...TypeRef }} \
           enumValues(includeDeprecated: true) {{ name description isDeprecated deprecationReason }} \
           possibleTypes {{ ...TypeRef }} }} \
         fragment InputValue on __InputValue {{ name description type {{ ...TypeRef }} defaultValue }} \
         fragment TypeRef on __Type {{ {of_type} }}"
    )
}

#[tokio::test]
async fn development_answers_standard_introspection_but_not_circular_introspection() {
    let app = TestApp::new().await;
    let res = app.gql(None, &introspection_query(), json!({})).await;
    assert!(res["errors"].is_null(), "{res}");
    assert_eq!(res["data"]["__schema"]["queryType"]["name"], "Query");
    let circular = "{ __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }";
    assert!(limit_message(&app.gql(None, circular, json!({})).await).contains("introspection"));
}

#[tokio::test]
async fn production_turns_off_introspection_suggestions_and_graphiql() {
    let prod = TestApp::with_config(|c| c.app_env = authgraph::config::AppEnv::Production).await;
    let res = prod.gql(None, &introspection_query(), json!({})).await;
    assert!(res["data"].is_null(), "{res}");
    assert!(limit_message(&res).contains("introspection is disabled"), "{res}");
    let typo = prod.gql(None, "{ usr { totalCount } }", json!({})).await;
    assert!(!typo.to_string().contains("Did you mean"), "{typo}");
    let page = prod.request(Request::get("/graphql").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status(), StatusCode::BAD_REQUEST, "no GraphiQL in production");

    let dev = TestApp::new().await;
    let typo = dev.gql(None, "{ usr { totalCount } }", json!({})).await;
    assert!(typo.to_string().contains("Did you mean"), "development keeps suggestions: {typo}");

    let opted_in = TestApp::with_config(|c| {
        c.app_env = authgraph::config::AppEnv::Production;
        c.graphql_introspection = Some(true);
    })
    .await;
    assert!(opted_in.gql(None, &introspection_query(), json!({})).await["errors"].is_null());
}

#[tokio::test]
async fn mutations_never_run_over_get() {
    for production in [false, true] {
        let app = TestApp::with_config(|c| {
            if production {
                c.app_env = authgraph::config::AppEnv::Production;
            }
        })
        .await;
        let query = "mutation{signup(input:{name:\"x\",username:\"viaget\",password:\"long enough pw\"}){accessToken}}";
        let uri = format!("/graphql?query={}", urlencode(query));
        let res = app.request(Request::get(uri).body(Body::empty()).unwrap()).await;
        let status = res.status();
        let bytes = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        assert!(!String::from_utf8_lossy(&bytes).contains("accessToken\":"), "production={production}");
        assert!(status == StatusCode::OK || status.is_client_error(), "{status}");
        let count = app.gql(None, "{ users { totalCount } }", json!({})).await;
        assert_eq!(count["data"]["users"]["totalCount"], 0, "production={production}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn cross_site_form_posts_are_refused() {
    let app = TestApp::new().await;
    let json_body = json!({ "query": "mutation { signup(input: {name: \"x\", username: \"csrf\", password: \"long enough pw\"}) { accessToken } }" }).to_string();
    for (content_type, body) in [
        ("text/plain", json_body.clone()),
        ("application/x-www-form-urlencoded", format!("query={}", urlencode("{ __typename }"))),
        ("multipart/form-data; boundary=x", "--x\r\n\r\n--x--".to_owned()),
    ] {
        let req = Request::post("/graphql").header(header::CONTENT_TYPE, content_type).body(Body::from(body)).unwrap();
        let res = app.request(req).await;
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
    }
    let count = app.gql(None, "{ users { totalCount } }", json!({})).await;
    assert_eq!(count["data"]["users"]["totalCount"], 0);
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_or_without_a_length() {
    let app = TestApp::new().await;
    let body = json!({ "query": "{ __typename }", "variables": { "pad": "x".repeat(1024 * 1024) } }).to_string();
    // No Content-Length: the limit is hit while streaming.
    let stream = futures::stream::iter(
        body.into_bytes().chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap();
    let res = app.request(req).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let malformed =
        Request::post("/graphql").header(header::CONTENT_TYPE, "application/json").body(Body::from("{")).unwrap();
    let res = app.request(malformed).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(res).await["errors"][0]["extensions"]["code"], "BAD_REQUEST");
}

#[tokio::test]
async fn graphiql_is_served_with_a_strict_content_security_policy() {
    let app = TestApp::new().await;
    let res = app.request(Request::get("/graphql").body(Body::empty()).unwrap()).await;
    let csp = res.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(res.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

async fn rate_limited(res: axum::http::Response<Body>) -> u64 {
    let header_value: u64 =
        res.headers().get(header::RETRY_AFTER).expect("Retry-After header").to_str().unwrap().parse().unwrap();
    let body = body_json(res).await;
    let retry = expect_error(&body, "RATE_LIMITED")["extensions"]["retryAfter"].as_u64().unwrap();
    assert_eq!(retry, header_value);
    retry
}

#[tokio::test]
async fn failed_signins_lock_the_account_for_one_window_only() {
    let app = TestApp::with_config(|c| {
        c.signin_failures_per_account = 3;
        c.signin_failure_window = Duration::from_secs(2);
    })
    .await;
    app.signup("ada").await;
    for _ in 0..3 {
        let res = body_json(app.signin_from("203.0.113.1", "ada", "wrong password").await).await;
        expect_error(&res, "INVALID_CREDENTIALS");
    }
    let before = app.state.auth.hasher.computed();
    let retry = rate_limited(app.signin_from("203.0.113.1", "ADA", "wrong password").await).await;
    assert!((1..=2).contains(&retry), "{retry}");
    // The owner, from elsewhere and with the right password, waits out the window too,
    // but no longer: the attacker cannot extend it without new failures counting.
    rate_limited(app.signin_from("198.51.100.2", "ada", PASSWORD).await).await;
    assert_eq!(app.state.auth.hasher.computed(), before, "a limited sign-in hashes nothing");
    // And no longer: the lock ends one window after the last failure. Waited for, not
    // slept: the deadline only stops a broken test.
    let start = std::time::Instant::now();
    loop {
        let res = body_json(app.signin_from("198.51.100.2", "ada", PASSWORD).await).await;
        if error_code(&res).is_empty() {
            Auth::from_payload(&res, "signin");
            break;
        }
        expect_error(&res, "RATE_LIMITED");
        assert!(start.elapsed() < Duration::from_secs(30), "still locked long after the window: {res}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(start.elapsed() >= Duration::from_millis(500), "unlocked before its window ended");
}

#[tokio::test]
async fn failed_signins_are_limited_per_address_across_accounts_and_instances() {
    let app = TestApp::with_config(|c| c.signin_failures_per_ip = 4).await;
    let other_instance = app.sibling(|c| c.signin_failures_per_ip = 4);
    app.signup("ada").await;
    for (i, instance) in [&app, &other_instance, &app, &other_instance].into_iter().enumerate() {
        let res = body_json(instance.signin_from("203.0.113.7", &format!("victim{i}"), "guess").await).await;
        expect_error(&res, "INVALID_CREDENTIALS");
    }
    rate_limited(app.signin_from("203.0.113.7", "ada", PASSWORD).await).await;
    rate_limited(other_instance.signin_from("203.0.113.7", "someone", "guess").await).await;
    // Another address is not affected.
    Auth::from_payload(&body_json(app.signin_from("198.51.100.9", "ada", PASSWORD).await).await, "signin");
}

#[tokio::test]
async fn signups_are_limited_per_address() {
    let app = TestApp::with_config(|c| c.signups_per_ip = 2).await;
    let signup = |username: &str| json!({ "query": crate::support::SIGNUP, "variables": { "input": { "name": "n", "username": username, "password": PASSWORD } } });
    for name in ["one", "two"] {
        let res = body_json(app.gql_response(Some("203.0.113.3"), None, signup(name)).await).await;
        Auth::from_payload(&res, "signup");
    }
    rate_limited(app.gql_response(Some("203.0.113.3"), None, signup("three")).await).await;
    Auth::from_payload(&body_json(app.gql_response(Some("198.51.100.3"), None, signup("four")).await).await, "signup");
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let app = TestApp::with_config(|c| {
        c.signin_failures_per_ip = 2;
        c.signin_failures_per_account = 100;
        c.trusted_proxies = "10.0.0.0/8".parse().unwrap();
    })
    .await;
    let attempt = async |peer: &str, forwarded: &str| {
        let input = json!({ "username": "nobody", "password": "guess" });
        app.send(Gql::query(SIGNIN, json!({ "input": input })).peer(peer).forwarded_for(forwarded)).await
    };
    // Through the trusted proxy, each forwarded client is counted on its own.
    for client in ["203.0.113.1", "203.0.113.1"] {
        expect_error(&attempt("10.0.0.5", client).await, "INVALID_CREDENTIALS");
    }
    expect_error(&attempt("10.0.0.5", "203.0.113.1").await, "RATE_LIMITED");
    expect_error(&attempt("10.0.0.5", "203.0.113.2").await, "INVALID_CREDENTIALS");
    // An untrusted peer cannot dodge its limit by inventing the header.
    for fake in ["1.1.1.1", "2.2.2.2"] {
        expect_error(&attempt("192.0.2.50", fake).await, "INVALID_CREDENTIALS");
    }
    expect_error(&attempt("192.0.2.50", "3.3.3.3").await, "RATE_LIMITED");
}

#[tokio::test]
async fn rotated_keys_keep_earlier_tokens_valid_until_they_expire() {
    let old_key = "the-old-key-the-old-key-the-old-key!";
    let new_key = "the-new-key-the-new-key-the-new-key!";
    let before = TestApp::with_config(|c| c.jwt_access_secret = Some(old_key.into())).await;
    let ada = before.signup("ada").await;
    let rotated_once = Auth::from_payload(&before.refresh(&ada.refresh).await, "refresh");

    let after = before.sibling(|c| {
        c.jwt_access_secret = Some(new_key.into());
        c.jwt_access_secret_previous = vec![old_key.into()];
    });
    assert!(after.gql(Some(&ada.access), ME, json!({})).await["data"]["me"].is_object());
    // A replay inside the reuse interval still finds the successor the old key made.
    let replay = Auth::from_payload(&after.refresh(&ada.refresh).await, "refresh");
    assert_eq!(replay.refresh, rotated_once.refresh);
    // New tokens are signed with the new key only.
    let fresh = Auth::from_payload(&after.signin("ada", PASSWORD).await, "signin");
    let without_old = before.sibling(|c| c.jwt_access_secret = Some(new_key.into()));
    assert!(without_old.gql(Some(&fresh.access), ME, json!({})).await["data"]["me"].is_object());
    expect_error(&without_old.gql(Some(&ada.access), ME, json!({})).await, "UNAUTHENTICATED");
    expect_error(&before.gql(Some(&fresh.access), ME, json!({})).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn eddsa_mode_publishes_a_jwks_that_verifies_tokens_and_resists_key_confusion() {
    let seed = URL_SAFE_NO_PAD.encode([42u8; 32]);
    let app = TestApp::with_config(|c| {
        c.jwt_algorithm = authgraph::config::JwtAlgorithm::EdDsa;
        c.jwt_signing_key = Some(seed.clone().into());
    })
    .await;
    let auth = app.signup("ada").await;
    assert!(app.gql(Some(&auth.access), ME, json!({})).await["data"]["me"].is_object());

    let res = app.request(Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(body_json(res).await).unwrap();
    let header = jsonwebtoken::decode_header(&auth.access).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the token's key is published");
    // Another service verifies the token from the JWKS alone.
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["authgraph"]);
    validation.set_issuer(&["authgraph"]);
    let claims =
        jsonwebtoken::decode::<Value>(&auth.access, &DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap().claims;
    assert_eq!(claims["sub"], auth.user_id.as_str());
    // It can tell how strongly the session was authenticated, as the README says.
    assert_eq!((&claims["aal"], &claims["amr"]), (&json!("aal1"), &json!(["pwd"])));

    // Key confusion: an HS256 token whose HMAC key is the published public key.
    let jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else { panic!("OKP key") };
    for secret in [params.x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(&params.x).unwrap()] {
        let forged = sign(Algorithm::HS256, "at+jwt", header.kid.as_deref(), &claims, &secret);
        expect_error(&app.gql(Some(&forged), ME, json!({})).await, "UNAUTHENTICATED");
    }
    // No secret is ever published in HS256 mode.
    let hs = TestApp::new().await;
    let res = hs.request(Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
