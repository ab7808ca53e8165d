//! GraphQL over HTTP: GET queries, media types and status codes.

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::json;

use crate::support::{TestApp, body_json};

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
