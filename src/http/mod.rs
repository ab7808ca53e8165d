//! The HTTP edge: routes, middleware, and the bearer token's trip into GraphQL.

mod bearer;
pub mod client_ip;
pub mod cookie;
mod endpoint;
mod graphiql;
pub mod serve;
mod ws;

use std::{sync::Arc, time::Duration};

use async_graphql::ParseRequestError;
use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};

use crate::{
    app::SharedState,
    config::Origins,
    error::code,
    graphql::{self, AppSchema},
};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub(crate) struct Http {
    state: SharedState,
    schema: AppSchema,
    persisted: Arc<graphql::persisted::PersistedQueries>,
    limits: Arc<graphql::limits::Limits>,
    /// Places for sockets that have not passed connection_init (`WS_MAX_UNAUTHENTICATED`).
    unadmitted_sockets: Arc<tokio::sync::Semaphore>,
}

/// The whole application as one router, used by `server` and by the tests alike.
pub fn app(state: SharedState) -> Router {
    let state_for_drain = state.clone();
    let limits = Arc::new(graphql::limits(&state.config));
    let schema = graphql::schema(state.clone(), limits.clone());
    let persisted = Arc::new(graphql::persisted::PersistedQueries::new(limits.clone()));
    let dev = !state.config.is_production();
    let cors = cors(&state.config.cors_origins, state.config.refresh_token_cookie);
    let mut router = Router::new();
    let graphql = post(endpoint::post).layer(middleware::from_fn(csrf_guard)).merge(get(endpoint::get_or_upgrade));
    router = router.route("/graphql", graphql);
    if dev {
        router = router.route("/graphiql/{file}", get(graphiql::asset));
    }
    // `/metrics` joins the main listener unless METRICS_ADDR gives it its own, or this
    // is production (where it tells anyone the traffic, the errors and the versions)
    // and METRICS_PUBLIC does not ask for it.
    let metrics_route = if state.config.metrics_on_listener() {
        Router::new().route("/metrics", get(metrics)).with_state(state.clone())
    } else {
        Router::new()
    };
    let request_id = REQUEST_ID.clone();
    let deadlines = Deadlines { body: state.config.http_body_timeout, request: state.config.http_request_timeout };
    let trusted_proxies = Arc::new(state.config.trusted_proxies.clone());
    let unadmitted_sockets = Arc::new(tokio::sync::Semaphore::new(state.config.realtime.max_unauthenticated.max(1)));
    router
        .route("/.well-known/jwks.json", get(jwks))
        .merge(metrics_route)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Http { state, schema, persisted, limits, unadmitted_sockets })
        .layer(middleware::from_fn_with_state(trusted_proxies, client_ip::layer))
        .layer(middleware::from_fn_with_state(deadlines, deadlines_layer))
        .layer(middleware::from_fn_with_state(state_for_drain, close_while_draining))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        // No `RequestBodyLimitLayer`: it answers 413 to a Content-Length over the limit
        // without reading the body, which a client sending first never sees (see
        // `DISCARD_LIMIT`); `deadlines_layer` keeps the limit.
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(cors)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(move |req: &axum::http::Request<_>| {
            let id = req.headers().get(&request_id).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id, method = %req.method(), path = %req.uri().path())
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(middleware::from_fn(drop_unfit_request_id))
}

/// While the instance drains, every response closes its connection: a proxy's idle
/// keep-alive connection is then not reused into a server about to stop.
async fn close_while_draining(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    if *state.draining.borrow() {
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// Longest `X-Request-Id` a client may choose.
const MAX_REQUEST_ID: usize = 64;

/// A client's `X-Request-Id` is kept (it ties our log lines to theirs) only when short
/// and printable ASCII; anything else would let a client write what it likes into every
/// log line and response of the request, so a new id is made instead.
async fn drop_unfit_request_id(mut req: Request, next: Next) -> Response {
    let unfit = req.headers().get_all(&REQUEST_ID).iter().count() > 1
        || req.headers().get(&REQUEST_ID).is_some_and(|id| {
            let bytes = id.as_bytes();
            bytes.is_empty() || bytes.len() > MAX_REQUEST_ID || !bytes.iter().all(|b| b.is_ascii_graphic())
        });
    if unfit {
        req.headers_mut().remove(&REQUEST_ID);
    }
    next.run(req).await
}

/// How long a request may take to arrive and to be answered.
#[derive(Clone, Copy)]
struct Deadlines {
    body: Duration,
    request: Duration,
}

/// Receives the whole body within `body` (408 if it trickles in slower, and the
/// connection is closed) and answers within `request` (503 otherwise), so a slow
/// client or a stuck dependency holds a connection and a task for a bounded time.
/// Bodies are at most `BODY_LIMIT`, so reading them whole first costs little.
async fn deadlines_layer(State(deadlines): State<Deadlines>, req: Request, next: Next) -> Response {
    let answer = async {
        let (parts, body) = req.into_parts();
        let bytes = match tokio::time::timeout(deadlines.body, read_body(body)).await {
            Ok(Body::Whole(bytes)) => bytes,
            Ok(Body::TooLarge) => return payload_too_large(),
            Ok(Body::Broken) => {
                return request_error(StatusCode::BAD_REQUEST, code::BAD_REQUEST, "The request body could not be read");
            }
            Err(_) => {
                metrics::counter!("authgraph_http_timeouts_total", "phase" => "body").increment(1);
                let mut res = request_error(
                    StatusCode::REQUEST_TIMEOUT,
                    code::BAD_REQUEST,
                    "The request body did not arrive in time (HTTP_BODY_TIMEOUT)",
                );
                res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                return res;
            }
        };
        next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
    };
    match tokio::time::timeout(deadlines.request, answer).await {
        Ok(res) => res,
        Err(_) => {
            metrics::counter!("authgraph_http_timeouts_total", "phase" => "request").increment(1);
            request_error(
                StatusCode::SERVICE_UNAVAILABLE,
                code::SERVICE_UNAVAILABLE,
                "The request was not answered in time (HTTP_REQUEST_TIMEOUT); retry later",
            )
        }
    }
}

/// How much of a body over `BODY_LIMIT` is read and thrown away before the 413: a
/// client that sends its whole body before reading the answer (Python's `http.client`,
/// Node's `http`) would otherwise meet a connection reset, since closing a socket with
/// unread data resets it, and never see the 413. Past this much, the connection is
/// closed anyway; reading it costs time (within `HTTP_BODY_TIMEOUT`), not memory.
const DISCARD_LIMIT: usize = 16 * 1024 * 1024;

/// A request body as read.
enum Body {
    Whole(axum::body::Bytes),
    /// Over `BODY_LIMIT` (read and discarded up to `DISCARD_LIMIT`).
    TooLarge,
    Broken,
}

/// Reads a body of at most `BODY_LIMIT` bytes; a longer one is read on and dropped,
/// so that its sender can read the 413.
async fn read_body(body: axum::body::Body) -> Body {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut whole = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return if seen > BODY_LIMIT { Body::TooLarge } else { Body::Broken } };
        seen = seen.saturating_add(chunk.len());
        if seen > DISCARD_LIMIT {
            break;
        }
        if seen <= BODY_LIMIT {
            whole.extend_from_slice(&chunk);
        } else if !whole.is_empty() {
            whole = Vec::new();
        }
    }
    if seen > BODY_LIMIT { Body::TooLarge } else { Body::Whole(whole.into()) }
}

/// A body that is not a GraphQL request: 413 when over the limit (also for bodies
/// without a Content-Length), 400 otherwise. The parser's message is not echoed.
pub(crate) fn bad_body(err: &ParseRequestError) -> Response {
    if matches!(err, ParseRequestError::PayloadTooLarge) || over_body_limit(err) {
        return payload_too_large();
    }
    tracing::debug!(error = %err, "unreadable GraphQL request");
    request_error(StatusCode::BAD_REQUEST, code::BAD_REQUEST, "Body is not a GraphQL request in JSON")
}

/// Whether a body error is a length limit's that says so only in words (a body
/// reader's `length limit exceeded`). `deadlines_layer` answers 413 for a body over
/// `BODY_LIMIT` before any extractor reads it; this catches a reader on the way that
/// limits on its own.
fn over_body_limit(err: &impl std::fmt::Display) -> bool {
    err.to_string().contains("length limit exceeded")
}

fn payload_too_large() -> Response {
    let mut res = request_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        code::BAD_REQUEST,
        &format!("Request body over {BODY_LIMIT} bytes"),
    );
    // The rest of the body may still be on its way: this connection is done.
    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// A GraphQL-shaped error for a request refused before any operation ran.
pub(crate) fn request_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, axum::Json(body)).into_response()
}

/// Refuses POSTs a browser could send cross-site without a CORS preflight: an HTML
/// form or `fetch` with a "simple" content type (form-encoded, multipart, text/plain).
/// JSON needs a preflight, which CORS_ORIGINS then governs. Other content types are
/// let through only with a header that forces a preflight, as Apollo and GraphQL
/// Yoga do.
async fn csrf_guard(req: Request, next: Next) -> Response {
    if req.method() == Method::POST {
        let essence = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        let json = essence == "application/json" || essence == "application/graphql-response+json";
        let preflighted = ["graphql-require-preflight", "apollo-require-preflight", "x-apollo-operation-name"]
            .iter()
            .any(|h| req.headers().contains_key(*h));
        if !json && !preflighted {
            return request_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::BAD_REQUEST,
                "Send GraphQL requests as Content-Type: application/json",
            );
        }
    }
    next.run(req).await
}

/// The public keys of EdDSA access tokens, for services that verify them without a
/// secret. 404 with HS256, whose key must never be published.
async fn jwks(State(http): State<Http>) -> Response {
    match http.state.auth.tokens.jwks() {
        Some(set) => ([(header::CACHE_CONTROL, "public, max-age=300")], axum::Json(set)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The metrics listener's router, for METRICS_ADDR.
pub fn metrics_app(state: SharedState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

/// Prometheus text format.
async fn metrics(State(state): State<SharedState>) -> Response {
    let body = crate::telemetry::render(state.pool()).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
async fn readyz(State(http): State<Http>) -> impl IntoResponse {
    if *http.state.draining.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining: shutting down");
    }
    match tokio::time::timeout(Duration::from_secs(2), crate::db::ping(http.state.pool())).await.ok().flatten() {
        Some(true) => (StatusCode::OK, "ready (database over TLS)"),
        Some(false) => (StatusCode::OK, "ready (database in clear text)"),
        None => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

/// Credentials (the refresh cookie) are allowed cross-origin only in cookie mode, and
/// only ever for the listed origins.
fn cors(origins: &Origins, credentials: bool) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.as_slice().iter().cloned()))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("graphql-require-preflight"),
            HeaderName::from_static("apollo-require-preflight"),
            HeaderName::from_static("x-apollo-operation-name"),
        ])
        .allow_credentials(credentials)
        .max_age(Duration::from_secs(600))
}
