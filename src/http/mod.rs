//! The HTTP edge: routes, middleware, and the bearer token's trip into GraphQL.

mod bearer;
mod graphiql;

use std::{sync::Arc, time::Duration};

use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{
    app::SharedState,
    graphql::{self, AppSchema},
};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
struct Http {
    state: SharedState,
    schema: AppSchema,
}

/// The whole application as one router, used by `main` and by the tests alike.
pub fn app(state: SharedState) -> Router {
    let schema = graphql::schema(Some(state.clone()));
    let dev = !state.config.is_production();
    let cors = cors(&state.config.cors_origins);
    let mut router = Router::new();
    router = if dev {
        router
            .route("/graphql", get(graphiql::page).post(graphql_handler))
            .route("/graphiql/{file}", get(graphiql::asset))
    } else {
        router.route("/graphql", post(graphql_handler))
    };
    let request_id = REQUEST_ID.clone();
    router
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Http { state, schema })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(cors)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(move |req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get(&request_id)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", id, method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// `POST /graphql`: verifies the bearer token once, then runs the operation(s).
async fn graphql_handler(State(http): State<Http>, headers: HeaderMap, req: GraphQLBatchRequest) -> GraphQLResponse {
    // Shared by every operation of a batch: one token check, one session lookup.
    let auth = Arc::new(bearer::request_auth(&http.state, &headers));
    let req = req.into_inner().data(auth);
    http.schema.execute_batch(req).await.into()
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
async fn readyz(State(http): State<Http>) -> impl IntoResponse {
    let ok = tokio::time::timeout(Duration::from_secs(2), crate::db::ping(&http.state.pool))
        .await
        .unwrap_or(false);
    if ok {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    }
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter(|o| !o.is_empty())
        .filter_map(|o| o.parse().ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}
