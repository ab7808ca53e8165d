//! The HTTP surface that is not the auth API: probes, GraphiQL, limits, headers.

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn typename_answers_over_post() {
    let app = TestApp::new().await;
    let res = app.gql(None, "{ __typename }", json!({})).await;
    assert_eq!(res, json!({ "data": { "__typename": "Query" } }));
}

#[tokio::test]
async fn healthz_and_readyz_report_ok_with_a_database() {
    let app = TestApp::new().await;
    for path in ["/healthz", "/readyz"] {
        let res = app.request(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_unreachable() {
    // A pool pointing where no PostgreSQL listens: the process is alive, the
    // database is not.
    let app = TestApp::new().await;
    let broken =
        authgraph::db::pool("postgresql://authgraph@127.0.0.1:1/none", 1, std::time::Duration::from_millis(500))
            .unwrap();
    let mut config = app.state.config.clone();
    config.database_url = None;
    let keys = authgraph::secret::resolve(&config).unwrap();
    let state = authgraph::app::AppState::new(config, &keys, broken).unwrap();
    let router = authgraph::http::app(state);
    use tower::ServiceExt;
    let live = router.clone().oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = router.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // GraphQL answers promptly with a retryable code, and no connection details.
    let query = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"query":"{ users { totalCount } }"}"#))
        .unwrap();
    let res = crate::support::body_json(router.oneshot(query).await.unwrap()).await;
    assert_eq!(crate::support::error_code(&res), "SERVICE_UNAVAILABLE", "{res}");
    assert!(!res.to_string().contains("127.0.0.1"), "{res}");
}

#[tokio::test]
async fn graphiql_is_served_from_the_binary_in_development() {
    let app = TestApp::new().await;
    let page =
        app.request(Request::get("/graphql").header(header::ACCEPT, "text/html").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = String::from_utf8(http_body_util::BodyExt::collect(page.into_body()).await.unwrap().to_bytes().to_vec())
        .unwrap();
    assert!(html.contains("/graphiql/graphiql.min.js"), "{html}");
    assert!(!html.contains("http://") && !html.contains("https://"), "no CDN: {html}");
    for asset in
        ["graphiql.min.js", "graphiql.min.css", "react.production.min.js", "react-dom.production.min.js", "init.js"]
    {
        let res = app.request(Request::get(format!("/graphiql/{asset}")).body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
        let len = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes().len();
        assert!(len > 1000, "{asset} is embedded ({len} bytes)");
    }
}

/// GraphiQL opens on the README's examples, so what people read is what they run.
#[tokio::test]
async fn graphiql_starts_with_the_readme_examples() {
    let examples = include_str!("../../src/http/examples.graphql");
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&format!("```graphql\n{examples}```")),
        "README.md's API example block must equal src/http/examples.graphql"
    );
    let app = TestApp::new().await;
    let res = app.request(Request::get("/graphiql/init.js").body(Body::empty()).unwrap()).await;
    let init = String::from_utf8(http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes().to_vec())
        .unwrap();
    let encoded = serde_json::to_string(examples).unwrap();
    assert!(init.contains(&format!("var defaultQuery = {encoded};")), "{init}");
}

#[tokio::test]
async fn graphiql_is_off_in_production() {
    let app = TestApp::with_config(|c| c.app_env = authgraph::config::AppEnv::Production).await;
    // A browser's GET of the endpoint gets no page: the GraphQL-over-HTTP answer to a
    // GET without a query.
    let page =
        app.request(Request::get("/graphql").header(header::ACCEPT, "text/html").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    let content_type = page.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    assert!(content_type.as_deref().is_some_and(|t| t.contains("json")), "{content_type:?}");
    let asset = app.request(Request::get("/graphiql/init.js").body(Body::empty()).unwrap()).await;
    assert_eq!(asset.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused_with_413() {
    let app = TestApp::new().await;
    let padding = "x".repeat(1024 * 1024 + 1);
    let body = json!({ "query": "{ __typename }", "variables": { "pad": padding } }).to_string();
    let res = app
        .request(
            Request::post("/graphql")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, body.len())
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::new().await;
    let res = app.request(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    let id = res.headers().get("x-request-id").expect("generated id").to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let res =
        app.request(Request::get("/healthz").header("x-request-id", "abc-123").body(Body::empty()).unwrap()).await;
    assert_eq!(res.headers()["x-request-id"], "abc-123", "an incoming id is kept");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = TestApp::with_config(|c| c.cors_origins = "https://app.example.com".parse().unwrap()).await;
    let ok = app.request(crate::support::preflight("https://app.example.com")).await;
    assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
    let other = app.request(crate::support::preflight("https://evil.example.com")).await;
    assert!(other.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn malformed_json_is_a_client_error() {
    let app = TestApp::new().await;
    let res = app
        .request(
            Request::post("/graphql")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{ not json"))
                .unwrap(),
        )
        .await;
    assert!(res.status().is_client_error(), "{}", res.status());
}

/// Every setting is documented: each environment variable the command line reads
/// appears in the configuration reference, so a new limit cannot ship without its
/// default written down.
#[test]
fn every_setting_is_in_the_configuration_reference() {
    use clap::CommandFactory;
    let readme = include_str!("../../docs/configuration.md");
    let command = authgraph::config::Cli::command();
    let vars: Vec<String> =
        command.get_arguments().filter_map(|arg| arg.get_env()).map(|v| v.to_string_lossy().into_owned()).collect();
    assert!(vars.len() > 40, "the settings were read: {vars:?}");
    let missing: Vec<&String> = vars.iter().filter(|var| !readme.contains(&format!("`{var}`"))).collect();
    assert!(missing.is_empty(), "settings missing from docs/configuration.md: {missing:?}");
}
