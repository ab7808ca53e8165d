//! Cookie mode: the refresh token lives only in an HttpOnly cookie.

use axum::{
    body::Body,
    http::{Request, header},
};
use serde_json::{Value, json};

use crate::support::{PASSWORD, SIGNIN, TestApp, body_json, expect_error};

/// Sends a GraphQL request with an optional cookie; returns the body and the
/// `Set-Cookie` header, if any.
async fn send(
    app: &TestApp,
    query: &str,
    variables: Value,
    cookie: Option<&str>,
    token: Option<&str>,
) -> (Value, Option<String>) {
    let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
    if let Some(cookie) = cookie {
        req = req.header(header::COOKIE, cookie);
    }
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = json!({ "query": query, "variables": variables }).to_string();
    let res = app.request(req.body(Body::from(body)).unwrap()).await;
    let set_cookie = res.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_owned());
    (body_json(res).await, set_cookie)
}

/// `name=value` of a Set-Cookie header, as a browser would send it back.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_refresh_token_travels_only_in_an_httponly_cookie() {
    let app = TestApp::with_config(|c| c.refresh_token_cookie = true).await;
    app.signup("ada").await;
    let (signin, set) =
        send(&app, SIGNIN, json!({ "input": { "username": "ada", "password": PASSWORD } }), None, None).await;
    assert!(signin["data"]["signin"]["refreshToken"].is_null(), "{signin}");
    let set = set.expect("Set-Cookie on signin");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/graphql", "Max-Age=604800"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "not Secure in development: {set}");

    // refresh with no argument reads the cookie and rotates it.
    let refresh = "mutation { refresh { accessToken refreshToken } }";
    let first = cookie_pair(&set);
    let (rotated, set) = send(&app, refresh, json!({}), Some(&first), None).await;
    assert!(rotated["data"]["refresh"]["accessToken"].is_string(), "{rotated}");
    assert!(rotated["data"]["refresh"]["refreshToken"].is_null());
    let second = cookie_pair(&set.expect("a rotated cookie"));
    assert_ne!(first, second);
    let access = rotated["data"]["refresh"]["accessToken"].as_str().unwrap().to_owned();

    // logout clears the cookie, and the session's tokens stop working.
    let (out, cleared) = send(&app, "mutation { logout }", json!({}), Some(&second), Some(&access)).await;
    assert_eq!(out["data"]["logout"], true);
    assert!(cleared.expect("a clearing cookie").contains("Max-Age=0"));
    let (after, _) = send(&app, refresh, json!({}), Some(&second), None).await;
    assert_eq!(expect_error(&after, "INVALID_REFRESH_TOKEN")["extensions"]["reason"], "REVOKED");
    // Without a cookie or argument there is nothing to refresh.
    let (none, _) = send(&app, refresh, json!({}), None, None).await;
    assert_eq!(expect_error(&none, "INVALID_REFRESH_TOKEN")["extensions"]["reason"], "NOT_FOUND");
}

#[tokio::test]
async fn production_cookies_are_secure_and_credentials_go_to_listed_origins_only() {
    let app = TestApp::with_config(|c| {
        c.refresh_token_cookie = true;
        c.app_env = authgraph::config::AppEnv::Production;
        c.cors_origins = "https://app.example.com".parse().unwrap();
    })
    .await;
    app.signup("ada").await;
    let (_, set) =
        send(&app, SIGNIN, json!({ "input": { "username": "ada", "password": PASSWORD } }), None, None).await;
    assert!(set.unwrap().ends_with("; Secure"));
    let ok = app.request(crate::support::preflight("https://app.example.com")).await;
    assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let other = app.request(crate::support::preflight("https://evil.example.com")).await;
    assert!(other.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn without_cookie_mode_no_cookie_is_set_or_read() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let (signin, set) =
        send(&app, SIGNIN, json!({ "input": { "username": "ada", "password": PASSWORD } }), None, None).await;
    assert!(set.is_none());
    assert!(signin["data"]["signin"]["refreshToken"].is_string());
    let cookie = format!("authgraph_refresh={}", ada.refresh);
    let (res, _) = send(&app, "mutation { refresh { accessToken } }", json!({}), Some(&cookie), None).await;
    expect_error(&res, "INVALID_REFRESH_TOKEN");
}
