//! The GraphQL schema: thin resolvers over the `auth`, `users`, `email` and `factors`
//! services. The core's fields are in `query` and `mutation`; a capability's own
//! (`passkeys`) are a type of their own, merged into the roots there.
//!
//! Resolver doc comments become the schema's descriptions. The schema's SDL is kept
//! in `schema.graphql` at the repository root and compared by a test, so every
//! change to the API shows up as a reviewed diff.

mod admin;
mod admission;
mod audit;
mod guard;
pub mod limits;
mod mutation;
mod observe;
mod passkeys;
pub mod persisted;
mod query;
mod social;
pub mod subscription;
pub mod types;

use std::sync::Arc;

use async_graphql::{Context, Schema};

use crate::{
    app::SharedState,
    auth::{Auth, Caller, RequestAuth},
    error::AppResult,
};

pub use guard::{BEFORE_SECOND_FACTOR, IMPERSONATION_MAY, Protected};
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema with the shared state, the operation limits (the same value the HTTP
/// edge and the persisted-query store check against) and the production switches.
pub fn schema(state: SharedState, limits: Arc<limits::Limits>) -> AppSchema {
    let config = &state.config;
    // Observe wraps everything after it, so it sees cached documents too.
    let mut builder = Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
        .extension(admission::Admission)
        .extension(observe::Observe)
        .extension(limits::OperationLimits::new(limits));
    if !config.introspection() {
        builder = builder.disable_introspection();
    }
    if !config.suggestions() {
        builder = builder.disable_suggestions();
    }
    builder.data(state).finish()
}

/// The operation limits of a configuration.
pub fn limits(config: &crate::config::Config) -> limits::Limits {
    limits::Limits {
        max_depth: config.graphql_max_depth,
        max_cost: config.graphql_max_cost,
        max_aliases: config.graphql_max_aliases,
        max_root_fields: config.graphql_max_root_fields,
        max_directives: config.graphql_max_directives,
        max_tokens: config.graphql_max_tokens,
        max_query_bytes: config.graphql_max_query_bytes,
        max_selections: config.graphql_max_selections,
        introspection: config.introspection(),
    }
}

/// The SDL written to `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot).finish().sdl()
}

fn state<'a>(ctx: &Context<'a>) -> &'a crate::app::AppState {
    ctx.data_unchecked::<SharedState>()
}

fn auth_of<'a>(ctx: &Context<'a>) -> &'a Auth {
    &state(ctx).auth
}

fn factors_of<'a>(ctx: &Context<'a>) -> &'a crate::factors::Factors {
    &state(ctx).factors
}

fn social_of<'a>(ctx: &Context<'a>) -> &'a crate::social::Social {
    &state(ctx).social
}

/// Whether the caller may see the private fields of account `owner`: its owner (also
/// in the payload of the request that just signed it in), or an ADMIN. Anonymous requests get `false` without a database query; a request with a
/// token pays the session check once, shared with every other field.
async fn may_see_private(ctx: &Context<'_>, owner: crate::db::ids::UserId) -> bool {
    let auth = request_auth(ctx);
    if auth.granted() == Some(owner) {
        return true;
    }
    if !auth.has_token() {
        return false;
    }
    // The owner sees its own fields even before the second factor (`me` answers then);
    // an ADMIN sees others' only with every factor its account asks for.
    match auth.caller(auth_of(ctx)).await {
        Ok(caller) => caller.user.id == owner || caller.is_admin(auth_of(ctx).admin_rule),
        Err(_) => false,
    }
}

/// Whether the caller passes the admin rule, for fields that answer null otherwise.
async fn caller_is_admin(ctx: &Context<'_>) -> bool {
    let auth = request_auth(ctx);
    if !auth.has_token() {
        return false;
    }
    auth.caller(auth_of(ctx)).await.is_ok_and(|caller| caller.is_admin(auth_of(ctx).admin_rule))
}

/// The admitted caller of a protected field (see `RequestAuth::caller`), with the
/// assurance the field needs: `MFA_REQUIRED` for a session that has not passed the
/// account's second factor, unless the field is one of `BEFORE_SECOND_FACTOR`. On a
/// socket, a session found ended closes the socket (4403) as an event would.
async fn caller<'a>(ctx: &Context<'a>) -> AppResult<&'a Caller> {
    let admitted = request_auth(ctx).caller(auth_of(ctx)).await;
    if let (Err(err), Some(socket)) = (&admitted, ctx.data_opt::<subscription::SocketSession>()) {
        socket.refused(state(ctx), err);
    }
    let caller = admitted?;
    let field = ctx.item.node.name.node.as_str();
    guard::second_factor_rule(caller, field)?;
    let mutation = ctx.query_env.operation.node.ty == async_graphql::parser::types::OperationType::Mutation;
    guard::impersonation_rule(caller, mutation, field)?;
    Ok(caller)
}

/// Hands a grant to the client. The request records it (the edge writes the cookie from
/// it in cookie mode); in cookie mode the payload's `refreshToken` is null.
fn deliver(ctx: &Context<'_>, grant: crate::auth::Grant) -> types::AuthPayload {
    // Only on a request's own RequestAuth, never on the shared anonymous one.
    if let Some(auth) = ctx.data_opt::<Arc<RequestAuth>>() {
        auth.grant(grant.user.id, grant.refresh_token.clone());
    }
    types::AuthPayload::new(grant, !state(ctx).config.refresh_token_cookie)
}

/// Put into every operation by its door (`http`'s request, or `Admission` for each
/// operation on a socket); absent only when a test executes the schema directly,
/// which counts as anonymous.
fn request_auth<'a>(ctx: &Context<'a>) -> &'a RequestAuth {
    static ANONYMOUS: std::sync::LazyLock<RequestAuth> = std::sync::LazyLock::new(RequestAuth::anonymous);
    ctx.data_opt::<Arc<RequestAuth>>().map_or(&ANONYMOUS, |auth| auth.as_ref())
}
