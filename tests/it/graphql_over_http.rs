//! GraphQL over HTTP: GET queries, media types and status codes.

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::json;

use crate::support::{TestApp, body_json, sha256_hex};

fn get(uri: &str, accept: Option<&str>) -> Request<Body> {
    let mut req = Request::get(uri);
    if let Some(accept) = accept {
        req = req.header(header::ACCEPT, accept);
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn queries_run_over_get_and_mutations_do_not() {
    for production in [false, true] {
        let app = TestApp::with_config(|c| {
            if production {
                c.app_env = authgraph::config::AppEnv::Production;
            }
        })
        .await;
        let res = app.request(get("/graphql?query=%7B__typename%7D", Some("application/json"))).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body_json(res).await, json!({ "data": { "__typename": "Query" } }));

        let named = "/graphql?query=query%20Q%7Busers%7BtotalCount%7D%7D&operationName=Q";
        let res = app.request(get(named, None)).await;
        assert_eq!(body_json(res).await["data"]["users"]["totalCount"], 0);

        let mutation = "/graphql?query=mutation%7Blogout%7D";
        let res = app.request(get(mutation, Some("application/json"))).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "production={production}");
        assert_eq!(res.headers()[header::ALLOW], "POST");
    }
}

#[tokio::test]
async fn graphql_response_json_gets_spec_status_codes() {
    let app = TestApp::new().await;
    let spec = "application/graphql-response+json";
    let ok = app.request(get("/graphql?query=%7B__typename%7D", Some(spec))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with(spec));

    // A document that cannot run: 400 for the new media type, 200 for legacy JSON.
    let invalid = "/graphql?query=%7Bnope%7D";
    let res = app.request(get(invalid, Some(spec))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(res).await["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED");
    let res = app.request(get(invalid, Some("application/json"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));

    // A field error is a response with data: still 200.
    let res = app
        .request(
            Request::post("/graphql")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, spec)
                .body(Body::from(json!({ "query": "{ me { id } }" }).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_json(res).await["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
}

fn persisted(hash: &str) -> serde_json::Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// `GET /graphql?extensions=…` with a hash and nothing else, as Apollo sends it.
fn get_hashed(hash: &str, variables: Option<serde_json::Value>) -> Request<Body> {
    let mut uri = format!("/graphql?extensions={}", urlencode(&persisted(hash).to_string()));
    if let Some(variables) = variables {
        uri += &format!("&variables={}", urlencode(&variables.to_string()));
    }
    get(&uri, Some("application/graphql-response+json, application/json;q=0.9"))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn persisted_queries_register_once_then_run_by_hash() {
    let app = TestApp::new().await;
    let query = "query Count($first: Int) { users(first: $first) { totalCount } }";
    let hash = sha256_hex(query);

    // Unknown hash: the code Apollo's link answers by sending the text.
    let res = app.request(get_hashed(&hash, None)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "not executed");
    let body = body_json(res).await;
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
    let body = app.gql_response(None, None, json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(body.status(), StatusCode::OK, "legacy JSON: 200");
    assert_eq!(crate::support::error_code(&body_json(body).await), "PERSISTED_QUERY_NOT_FOUND");

    // Register with the text, then run by hash, over GET and POST, with variables.
    let body = app.gql_response(None, None, json!({ "query": query, "extensions": persisted(&hash) })).await;
    assert_eq!(body_json(body).await["data"]["users"]["totalCount"], 0);
    app.signup("apq_user").await;
    let res = app.request(get_hashed(&hash, Some(json!({ "first": 1 })))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_json(res).await, json!({ "data": { "users": { "totalCount": 1 } } }));
    let res = app.gql_response(None, None, json!({ "extensions": persisted(&hash), "variables": {} })).await;
    assert_eq!(body_json(res).await["data"]["users"]["totalCount"], 1);
}

#[tokio::test]
async fn persisted_queries_cannot_be_poisoned_or_slip_past_the_rules() {
    let app = TestApp::new().await;
    let query = "{ users { totalCount } }";
    let hash = sha256_hex(query);

    // Another text under a hash others use: refused, and nothing is stored.
    let res = app.gql_response(None, None, json!({ "query": "{ __typename }", "extensions": persisted(&hash) })).await;
    assert_eq!(crate::support::error_code(&body_json(res).await), "BAD_REQUEST");
    let res = app.request(get_hashed(&hash, None)).await;
    assert_eq!(crate::support::error_code(&body_json(res).await), "PERSISTED_QUERY_NOT_FOUND");

    // A hashed mutation over GET is still a mutation over GET.
    let mutation = "mutation { logout }";
    let res = app
        .gql_response(None, None, json!({ "query": mutation, "extensions": persisted(&sha256_hex(mutation)) }))
        .await;
    assert_eq!(crate::support::error_code(&body_json(res).await), "UNAUTHENTICATED", "registered and run once");
    let res = app.request(get_hashed(&sha256_hex(mutation), None)).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);

    // The limits see the text behind a hash: too deep is refused, and never stored.
    let too_deep = format!(
        "{{ {}__typename{} }}",
        "__schema { types { fields { type { ofType { ".repeat(3),
        " } } } } }".repeat(3)
    );
    let hash = sha256_hex(&too_deep);
    let res = app.gql_response(None, None, json!({ "query": too_deep, "extensions": persisted(&hash) })).await;
    assert_eq!(crate::support::error_code(&body_json(res).await), "GRAPHQL_VALIDATION_FAILED");
    let res = app.gql_response(None, None, json!({ "extensions": persisted(&hash) })).await;
    let body = body_json(res).await;
    assert_eq!(crate::support::error_code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");

    // A malformed extension is the client's error.
    let res = app.gql_response(None, None, json!({ "extensions": { "persistedQuery": { "version": 1 } } })).await;
    assert_eq!(crate::support::error_code(&body_json(res).await), "BAD_REQUEST");
}

#[tokio::test]
async fn requests_that_never_ran_have_no_data_and_malformed_ones_are_400() {
    let app = TestApp::new().await;
    for accept in ["application/json", "application/graphql-response+json"] {
        let post = |body: serde_json::Value| {
            Request::post("/graphql")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, accept)
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        // A misspelt `query` is a malformed request, whatever the client accepts.
        let res = app.request(post(json!({ "qeury": "{ __typename }" }))).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{accept}");
        assert_eq!(crate::support::error_code(&body_json(res).await), "BAD_REQUEST");

        // Parse and validation failures: errors only, no `"data": null`.
        for query in ["{", "{ nope }"] {
            let body = body_json(app.request(post(json!({ "query": query }))).await).await;
            assert!(body.get("data").is_none(), "{accept} {query}: {body}");
            assert_eq!(crate::support::error_code(&body), "GRAPHQL_VALIDATION_FAILED");
        }
        // In a batch, per entry.
        let body =
            body_json(app.request(post(json!([{ "query": "{ nope }" }, { "query": "{ __typename }" }]))).await).await;
        assert!(body[0].get("data").is_none(), "{body}");
        assert_eq!(body[1]["data"]["__typename"], "Query");
        // A field error ran: `data` stays.
        let body = body_json(app.request(post(json!({ "query": "{ me { id } }" }))).await).await;
        assert!(body.get("data").is_some(), "{body}");
    }
}
