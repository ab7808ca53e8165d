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

use std::sync::Arc;

use async_graphql::{
    Request, ServerResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest},
};

use super::subscription::SocketSession;
use crate::auth::RequestAuth;

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
}
