//! The socket's door: every operation sent over a socket gets an admission of its own,
//! as every HTTP request does.
//!
//! async-graphql hands each operation on a socket the data `connection_init` returned
//! (its session data), shared for the socket's life. That data holds the socket's
//! `Credentials`, never a `RequestAuth`: were the admission shared, its caller would
//! be resolved once and kept, and a session that ended, an account demoted or a second
//! factor turned on since the socket opened would go unseen. So before each operation
//! runs, this extension puts a fresh `RequestAuth` into that operation's own data,
//! which async-graphql reads before the session's; the guard then checks the session,
//! the role and the second factor as they are now, from the session cache where it
//! can answer, as for an HTTP request.
//!
//! The same door names where each operation comes from (`db::change::Origin`: the
//! client's network and user agent, and the ADMIN acting in an impersonation) for
//! the audit rows of the changes it makes, on both transports.

use std::sync::Arc;

use async_graphql::{
    Request, Response, ServerResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest},
};

use super::subscription::SocketSession;
use crate::{
    app::SharedState,
    auth::RequestAuth,
    db::change::{ORIGIN, Origin},
};

pub struct Admission;

impl ExtensionFactory for Admission {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Admission)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Admission {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let request = match ctx.data_opt::<SocketSession>() {
            Some(socket) if !request.data.contains_key(&std::any::TypeId::of::<Arc<RequestAuth>>()) => {
                request.data(Arc::new(socket.credentials.admit()))
            }
            _ => request,
        };
        next.run(ctx, request).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let origin = match (ctx.data_opt::<Arc<RequestAuth>>(), ctx.data_opt::<SharedState>()) {
            (Some(auth), Some(state)) => Origin {
                network: state.auth.rate_limits.network(auth.client.ip).map(|n| n.to_string()),
                user_agent: auth.client.user_agent.clone(),
                actor: auth.impersonator(),
                ..Origin::default()
            },
            _ => Origin::default(),
        };
        ORIGIN.scope(origin, next.run(ctx, operation_name)).await
    }
}
