//! GraphiQL at `GET /graphql` (development only), served entirely from the binary.

use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};

macro_rules! asset {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/", $name))
    };
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>authgraph · GraphiQL</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="/graphiql/graphiql.min.css">
  <style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="/graphiql/react.production.min.js"></script>
  <script src="/graphiql/react-dom.production.min.js"></script>
  <script src="/graphiql/graphiql.min.js"></script>
  <script src="/graphiql/init.js"></script>
</body>
</html>
"#;

/// Starts GraphiQL with the README's example operations and a headers editor ready
/// for a bearer token. A separate file rather than an inline script, so a strict
/// Content-Security-Policy can allow `'self'` only.
const INIT_TEMPLATE: &str = r#"(function () {
  var root = document.getElementById('graphiql');
  if (typeof GraphiQL === 'undefined' || typeof React === 'undefined') {
    root.textContent = 'GraphiQL was not embedded in this build: install Node.js and npm, then rebuild authgraph.';
    return;
  }
  var defaultQuery = DEFAULT_QUERY;
  // Subscriptions go over a WebSocket to the same path; the Headers tab's JSON is sent
  // as connection_init's payload, so the bearer header authenticates the socket too.
  var socketUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
  var fetcher = GraphiQL.createFetcher({ url: '/graphql', subscriptionUrl: socketUrl });
  ReactDOM.createRoot(root).render(React.createElement(GraphiQL, {
    fetcher: fetcher,
    defaultQuery: defaultQuery,
    defaultHeaders: JSON.stringify({ Authorization: 'Bearer ' }, null, 2),
    defaultEditorToolsVisibility: 'headers',
    shouldPersistHeaders: false
  }));
})();
"#;

/// The README's example operations (a test keeps the two equal), GraphiQL's first
/// document.
const EXAMPLES: &str = include_str!("examples.graphql");

static INIT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let examples = serde_json::to_string(EXAMPLES).expect("a string encodes");
    INIT_TEMPLATE.replace("DEFAULT_QUERY", &examples)
});

/// Everything the page needs comes from this server; GraphiQL sets inline styles, so
/// styles may be inline, scripts may not.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(PAGE),
    )
        .into_response()
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.js" => (asset!("graphiql.min.js"), "text/javascript; charset=utf-8"),
        "graphiql.min.css" => (asset!("graphiql.min.css"), "text/css; charset=utf-8"),
        "react.production.min.js" => (asset!("react.production.min.js"), "text/javascript; charset=utf-8"),
        "react-dom.production.min.js" => (asset!("react-dom.production.min.js"), "text/javascript; charset=utf-8"),
        "init.js" => (INIT.as_bytes(), "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}
