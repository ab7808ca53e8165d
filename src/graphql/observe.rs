//! One log line and one set of metrics per GraphQL operation.
//!
//! The line carries the request id (from the HTTP span it runs in), the operation's
//! root field, the caller's user id when a protected field established it, the
//! outcome code (`OK` or the first error's code) and the duration.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    Response, ServerResult, Value, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest},
    parser::types::{ExecutableDocument, Selection},
};

use super::limits::operation::RequestedOperation;
use crate::auth::RequestAuth;
use crate::error::code;

pub struct Observe;

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObserveExtension::default())
    }
}

#[derive(Default)]
struct ObserveExtension {
    operation: RequestedOperation,
    /// First root field of the operation that runs: a name from the schema.
    root_field: Mutex<Option<String>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for ObserveExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let start = Instant::now();
        let response = next.run(ctx).await;
        let elapsed = start.elapsed();
        let outcome = response
            .errors
            .first()
            .map(|e| match e.extensions.as_ref().and_then(|x| x.get("code")) {
                Some(Value::String(code)) => code.clone(),
                _ => code::INTERNAL_SERVER_ERROR.to_owned(),
            })
            .unwrap_or_else(|| "OK".to_owned());
        // Only a valid operation's field names come from the schema; anything else
        // is "invalid", so clients cannot mint label values.
        let operation = match outcome.as_str() {
            code::GRAPHQL_VALIDATION_FAILED | code::BAD_REQUEST => "invalid".to_owned(),
            _ => self.root_field.lock().unwrap().clone().unwrap_or_else(|| "invalid".to_owned()),
        };
        let user = ctx.data_opt::<Arc<RequestAuth>>().and_then(|auth| auth.known_user_id());
        tracing::info!(
            operation = %operation,
            outcome = %outcome,
            user = user.map(tracing::field::display),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "graphql"
        );
        metrics::counter!("authgraph_graphql_requests_total", "operation" => operation.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("authgraph_graphql_request_duration_seconds", "operation" => operation)
            .record(elapsed.as_secs_f64());
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: async_graphql::Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<async_graphql::Request> {
        self.operation.remember(&request);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if let Some(op) = self.operation.select(&document) {
            let first = op.selection_set.node.items.iter().find_map(|item| match &item.node {
                Selection::Field(f) => Some(f.node.name.node.to_string()),
                _ => None,
            });
            *self.root_field.lock().unwrap() = first;
        }
        Ok(document)
    }
}
