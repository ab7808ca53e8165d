//! `/graphql` over HTTP, as the GraphQL-over-HTTP specification describes it.
//!
//! - `POST` with a JSON body (one operation or a batch).
//! - `GET` with `query`, `variables` and `operationName` in the URL, for queries only:
//!   a mutation over GET is 405, since GETs may be prefetched, cached or sent
//!   cross-site by an `<img>`. In development a GET without `query` is GraphiQL.
//! - Automatic persisted queries (Apollo's `persistedQuery` extension) over both:
//!   the hash stands in for the query text, see `graphql::persisted`.
//! - The response is `application/graphql-response+json` when the client accepts it,
//!   with the specification's status codes (400 when the request could not be
//!   executed at all), and plain `application/json` with 200 otherwise, for older
//!   clients.

use crate::error::{RetryAfter, code};
use std::sync::Arc;

use async_graphql::{BatchRequest, BatchResponse, Value, parser::types::OperationType};
use async_graphql_axum::{GraphQLBatchRequest, rejection::GraphQLRejection};
use axum::{
    Extension,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{Http, bad_body, bearer, client_ip::ClientIp, cookie, graphiql, request_error};
use crate::auth::RefreshOutcome;
use crate::graphql::limits::{Limits, RequestBudget, operation};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// `POST /graphql`.
pub(crate) async fn post(
    State(http): State<Http>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    req: Result<GraphQLBatchRequest, GraphQLRejection>,
) -> Response {
    match req {
        Ok(req) => execute(&http, &headers, ip, req.into_inner()).await,
        Err(GraphQLRejection(err)) => bad_body(&err),
    }
}

/// `GET /graphql`: a WebSocket for subscriptions when the client asks to upgrade
/// (see `ws`), a query otherwise.
pub(crate) async fn get_or_upgrade(
    State(http): State<Http>,
    Extension(client_ip): Extension<ClientIp>,
    req: axum::extract::Request,
) -> Response {
    use axum::extract::{FromRequestParts, ws::WebSocketUpgrade};
    let (mut parts, _) = req.into_parts();
    let wants_socket =
        parts.headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if wants_socket {
        let permit = parts.extensions.get::<super::serve::ConnectionPermit>().cloned();
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => super::ws::upgrade(http, &parts.headers, client_ip.0, permit, ws),
            Err(rejection) => rejection.into_response(),
        };
    }
    let query = RawQuery(parts.uri.query().map(str::to_owned));
    get(State(http), Extension(client_ip), parts.headers, query).await
}

/// `GET /graphql`.
async fn get(
    State(http): State<Http>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    // A persisted query's hash travels in `extensions`, with no `query`.
    let has_document = query.split('&').any(|pair| pair.starts_with("query=") || pair.starts_with("extensions="));
    if !has_document {
        if !http.state.config.is_production() {
            return graphiql::page().await;
        }
        return request_error(StatusCode::BAD_REQUEST, code::BAD_REQUEST, "A GET request needs a query parameter");
    }
    let mut request = match async_graphql::http::parse_query_string(&query) {
        Ok(request) => request,
        Err(_) => return request_error(StatusCode::BAD_REQUEST, code::BAD_REQUEST, "Malformed GraphQL GET parameters"),
    };
    // The document behind a hash decides whether this is a mutation.
    if let Err(err) = http.persisted.resolve(&mut request) {
        return respond(&headers, BatchResponse::Single(async_graphql::Response::from_errors(vec![err])));
    }
    if is_mutation(&http.limits, &request) {
        let mut res =
            request_error(StatusCode::METHOD_NOT_ALLOWED, code::BAD_REQUEST, "Mutations are accepted over POST only");
        res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    execute(&http, &headers, ip, BatchRequest::Single(request)).await
}

/// Whether the operation a request would run is a mutation. A document that does not
/// parse, or whose text is over a limit, is not one here: execution then reports why
/// (and the text limits bound the parse, as for any request).
fn is_mutation(limits: &Limits, request: &async_graphql::Request) -> bool {
    let Ok(document) = limits.parse(&request.query) else {
        return false;
    };
    // An operation that is not selected runs nowhere, so it is not one either.
    operation::select(&document, request.operation_name.as_deref()).is_some_and(|op| op.ty == OperationType::Mutation)
}

/// Runs the operation(s) and encodes the answer for what the client accepts.
async fn execute(http: &Http, headers: &HeaderMap, ip: Option<std::net::IpAddr>, req: BatchRequest) -> Response {
    if let BatchRequest::Batch(items) = &req
        && items.len() > http.state.config.graphql_max_batch
    {
        let message = format!(
            "Batch of {} operations; the limit is {} (max batch)",
            items.len(),
            http.state.config.graphql_max_batch
        );
        return request_error(StatusCode::BAD_REQUEST, code::BAD_REQUEST, &message);
    }
    let requests: Vec<&async_graphql::Request> = match &req {
        BatchRequest::Single(r) => vec![r],
        BatchRequest::Batch(rs) => rs.iter().collect(),
    };
    // `{"qeury": …}` parses as a request with an empty query: a malformed request, not
    // a GraphQL error.
    if requests.iter().any(|r| r.query.is_empty() && !r.extensions.contains_key("persistedQuery")) {
        return request_error(StatusCode::BAD_REQUEST, code::BAD_REQUEST, "A GraphQL request needs a query");
    }
    // Shared by every operation of a batch: one token check, one session lookup, one
    // budget for the limits that span the request.
    let auth = Arc::new(bearer::request_auth(&http.state, headers, ip));
    let budget = Arc::new(RequestBudget::default());
    let run = async |mut request: async_graphql::Request| match http.persisted.resolve(&mut request) {
        Ok(()) => http.schema.execute(request.data(auth.clone()).data(budget.clone())).await,
        Err(err) => async_graphql::Response::from_errors(vec![err]),
    };
    // A batch's operations run concurrently and answer in order, as
    // `Schema::execute_batch` does.
    let response = match req {
        BatchRequest::Single(request) => BatchResponse::Single(run(request).await),
        BatchRequest::Batch(requests) => {
            BatchResponse::Batch(async_graphql::futures_util::future::join_all(requests.into_iter().map(run)).await)
        }
    };
    let mut res = respond(headers, response);
    let config = &http.state.config;
    if config.refresh_token_cookie {
        let value = match auth.refresh_outcome() {
            Some(RefreshOutcome::Issued(token)) => {
                Some(cookie::set(&token, config.refresh_token_ttl, config.is_production()))
            }
            Some(RefreshOutcome::Ended) => Some(cookie::clear(config.is_production())),
            None => None,
        };
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            res.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    res
}

fn respond(headers: &HeaderMap, response: BatchResponse) -> Response {
    let responses: Vec<&async_graphql::Response> = match &response {
        BatchResponse::Single(r) => vec![r],
        BatchResponse::Batch(rs) => rs.iter().collect(),
    };
    let code_of = |e: &async_graphql::ServerError| match e.extensions.as_ref().and_then(|x| x.get("code")) {
        Some(Value::String(code)) => Some(code.clone()),
        _ => None,
    };
    // The longest wait any refusal of the request asked for (each error with
    // `retryAfter` carries it as its source).
    let retry_after =
        responses.iter().flat_map(|r| &r.errors).filter_map(|e| e.source::<RetryAfter>()).map(|r| r.0).max();
    // Not executed at all: every error is a request error (parse, validation, limits).
    let not_executed = |r: &async_graphql::Response| {
        !r.errors.is_empty()
            && r.errors.iter().all(|e| {
                e.path.is_empty()
                    && matches!(
                        code_of(e).as_deref(),
                        Some(
                            code::GRAPHQL_VALIDATION_FAILED
                                | code::BAD_REQUEST
                                | code::PERSISTED_QUERY_NOT_FOUND
                                | code::PERSISTED_QUERY_NOT_SUPPORTED
                        )
                    )
            })
    };
    let spec_media_type = accepts_graphql_response(headers);
    let status = match &response {
        BatchResponse::Single(r) if spec_media_type && not_executed(r) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let http_headers: Vec<_> =
        responses.iter().flat_map(|r| r.http_headers.iter()).map(|(k, v)| (k.clone(), v.clone())).collect();
    // A request that never ran has no `data` entry at all, not `"data": null`, as
    // both the GraphQL and GraphQL-over-HTTP specifications say.
    let encoded = if responses.iter().any(|r| not_executed(r)) {
        serde_json::to_value(&response).and_then(|mut body| {
            let entries = match &mut body {
                serde_json::Value::Array(entries) => entries.iter_mut().collect(),
                single => vec![single],
            };
            for (entry, r) in entries.into_iter().zip(&responses) {
                if let (Some(entry), true) = (entry.as_object_mut(), not_executed(r)) {
                    entry.remove("data");
                }
            }
            serde_json::to_vec(&body)
        })
    } else {
        serde_json::to_vec(&response)
    };
    let body = match encoded {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, "cannot encode a GraphQL response");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let content_type = if spec_media_type {
        "application/graphql-response+json; charset=utf-8"
    } else {
        "application/json; charset=utf-8"
    };
    let mut res = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    res.headers_mut().extend(http_headers);
    if let Some(secs) = retry_after {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// Whether the client lists `application/graphql-response+json` before (or without)
/// `application/json`; a client that sends no Accept gets plain JSON.
fn accepts_graphql_response(headers: &HeaderMap) -> bool {
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let position = |media: &str| {
        accept.split(',').position(|item| {
            let item = item.split(';').next().unwrap_or("").trim();
            item.eq_ignore_ascii_case(media)
        })
    };
    match (position(GRAPHQL_RESPONSE_JSON), position("application/json")) {
        (Some(spec), Some(json)) => spec <= json,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_media_type_follows_the_accept_header() {
        assert!(accepts_graphql_response(&accept("application/graphql-response+json")));
        assert!(accepts_graphql_response(&accept("application/graphql-response+json, application/json;q=0.9")));
        assert!(!accepts_graphql_response(&accept("application/json")));
        assert!(!accepts_graphql_response(&accept("*/*")));
        assert!(!accepts_graphql_response(&HeaderMap::new()));
    }

    #[test]
    fn mutations_are_recognised_by_the_selected_operation() {
        let req = |q: &str, name: Option<&str>| {
            let mut r = async_graphql::Request::new(q);
            r.operation_name = name.map(str::to_owned);
            r
        };
        let limits = crate::graphql::limits(&crate::config::Config::defaults());
        assert!(is_mutation(&limits, &req("mutation { logout }", None)));
        assert!(!is_mutation(&limits, &req("{ me { id } }", None)));
        let both = "query Q { me { id } } mutation M { logout }";
        assert!(is_mutation(&limits, &req(both, Some("M"))));
        assert!(!is_mutation(&limits, &req(both, Some("Q"))));
    }
}
