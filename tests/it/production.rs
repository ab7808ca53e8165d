//! The attack suite, part six: what production mode gives away, and input that
//! misleads whoever reads it. The earlier server served `/metrics` on the public
//! listener, let a probe read every root field and type out of validation messages
//! with introspection off (17 s), took the first of two refresh cookies, echoed any
//! `X-Request-Id`, and stored names with bidi overrides and zero-width characters.

use authgraph::config::AppEnv;
use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::json;

use crate::support::{PASSWORD, SIGNUP, TestApp, body_json, error_code, expect_error};

fn production(c: &mut authgraph::config::Config) {
    c.app_env = AppEnv::Production;
}

#[tokio::test]
async fn production_keeps_metrics_off_the_public_listener() {
    let metrics = || Request::get("/metrics").body(Body::empty()).unwrap();
    let prod = TestApp::with_config(production).await;
    assert_eq!(prod.request(metrics()).await.status(), StatusCode::NOT_FOUND);
    let opted_in = prod.sibling(|c| {
        production(c);
        c.metrics_public = Some(true);
    });
    assert_eq!(opted_in.request(metrics()).await.status(), StatusCode::OK);
    let dev = prod.sibling(|_| {});
    assert_eq!(dev.request(metrics()).await.status(), StatusCode::OK);
}

/// The words of a message, for checking that it names nothing from the schema.
fn words(message: &str) -> Vec<String> {
    message.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

#[tokio::test]
async fn with_introspection_off_validation_messages_name_nothing() {
    let prod = TestApp::with_config(production).await;
    let schema_words = [
        "me",
        "Me",
        "User",
        "user",
        "users",
        "Query",
        "Mutation",
        "signin",
        "signup",
        "id",
        "ID",
        "Int",
        "String",
        "first",
        "totalCount",
        "nodes",
        "username",
        "SigninInput",
        "UserConnection",
        "Role",
        "input",
    ];
    let probes = [
        "{ me }",
        "{ foo }",
        "{ users { bogus } }",
        "{ user }",
        "{ users(first: \"x\") { totalCount } }",
        "{ users(last: 1) { totalCount } }",
        "mutation { signin }",
        "mutation { signin(input: {}) { accessToken } }",
        "{ me { id ... on Mutation { logout } } }",
        "query($x: Nope) { me { id } }",
    ];
    for probe in probes {
        let res = prod.gql(None, probe, json!({})).await;
        let message = res["errors"][0]["message"].as_str().unwrap_or_default().to_owned();
        assert!(!message.is_empty(), "{probe}: {res}");
        let code = error_code(&res);
        assert!(code == "GRAPHQL_VALIDATION_FAILED" || code == "BAD_USER_INPUT", "{probe}: {res}");
        let leaked: Vec<String> = words(&message).into_iter().filter(|w| schema_words.contains(&w.as_str())).collect();
        assert!(leaked.is_empty(), "{probe}: {message} names {leaked:?}");
    }
    // Development keeps the helpful messages.
    let dev = prod.sibling(|_| {});
    let res = dev.gql(None, "{ me }", json!({})).await;
    assert!(res["errors"][0]["message"].as_str().unwrap().contains("me"), "{res}");
}

fn set_cookie(res: &axum::http::Response<Body>) -> String {
    res.headers().get(header::SET_COOKIE).expect("Set-Cookie").to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_refresh_cookie_is_host_prefixed_in_production_and_refused_when_sent_twice() {
    let prod = TestApp::with_config(|c| {
        production(c);
        c.refresh_token_cookie = true;
    })
    .await;
    let body = json!({ "query": SIGNUP, "variables": { "input": { "name": "Ada", "username": "ada", "password": PASSWORD } } });
    let res = prod.gql_response(None, None, body).await;
    let cookie = set_cookie(&res);
    assert!(cookie.starts_with("__Host-authgraph_refresh="), "{cookie}");
    assert!(cookie.contains("; Path=/;") && cookie.contains("; Secure") && !cookie.contains("Domain"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();

    let refresh = |cookies: Vec<String>| {
        let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
        for cookie in cookies {
            req = req.header(header::COOKIE, cookie);
        }
        req.body(Body::from(json!({ "query": "mutation { refresh { accessToken } }" }).to_string())).unwrap()
    };
    let planted = "__Host-authgraph_refresh=planted-by-a-sibling-subdomain".to_owned();
    let twice = body_json(prod.request(refresh(vec![format!("{planted}; {pair}")])).await).await;
    assert_eq!(expect_error(&twice, "BAD_USER_INPUT")["extensions"]["field"], "refreshToken");
    let split = body_json(prod.request(refresh(vec![pair.clone(), planted])).await).await;
    expect_error(&split, "BAD_USER_INPUT");
    let once = prod.request(refresh(vec![pair])).await;
    assert!(set_cookie(&once).starts_with("__Host-authgraph_refresh="));
    assert!(body_json(once).await["data"]["refresh"]["accessToken"].is_string());
}

#[tokio::test]
async fn unfit_request_ids_are_replaced() {
    let app = TestApp::new().await;
    let id_of = async |sent: &str| -> String {
        let req = Request::get("/healthz").header("x-request-id", sent).body(Body::empty()).unwrap();
        let res = app.request(req).await;
        res.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned()
    };
    assert_eq!(id_of("abc-123_req.7").await, "abc-123_req.7", "a short printable id is kept");
    for unfit in ["x".repeat(1000), "two words".into(), "tab\there".into(), String::new()] {
        let replaced = id_of(&unfit).await;
        assert_ne!(replaced, unfit);
        assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
    }
}

#[tokio::test]
async fn names_are_stored_nfc_and_refuse_invisible_formatting() {
    let app = TestApp::new().await;
    let signup =
        |name: &str, username: &str| json!({ "input": { "name": name, "username": username, "password": PASSWORD } });
    let res = app.gql(None, SIGNUP, signup("Jose\u{0301}", "jose")).await;
    assert_eq!(res["data"]["signup"]["user"]["name"], "Jos\u{e9}", "{res}");
    for (i, bad) in ["Ada\u{202E}ecalevol", "A\u{200B}da", "\u{2067}Ada", "Ada\u{FEFF}"].into_iter().enumerate() {
        let res = app.gql(None, SIGNUP, signup(bad, &format!("bad{i}"))).await;
        assert_eq!(expect_error(&res, "BAD_USER_INPUT")["extensions"]["field"], "name", "{bad:?}");
    }
    let ada = app.signup("ada").await;
    let rename = "mutation($id: ID!, $n: String) { updateUser(id: $id, input: { name: $n }) { name } }";
    let res = app.gql(Some(&ada.access), rename, json!({ "id": ada.user_id, "n": "Admin\u{202E}" })).await;
    expect_error(&res, "BAD_USER_INPUT");
}
