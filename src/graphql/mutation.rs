use async_graphql::{Context, ID, Object};

use super::{
    auth_of, caller, cookie,
    guard::Authenticated,
    request_auth, state,
    types::{AuthPayload, ChangePasswordInput, LogoutScopeValue, SigninInput, SignupInput, UpdateUserInput, secret},
};
use crate::{
    auth::{self, credentials, sessions::LogoutScope},
    db::models::User,
    error::AppResult,
    users,
};
use axum::http::header;

#[derive(Default)]
pub struct MutationRoot;

/// Hands a grant to the client: in cookie mode the refresh token goes into the
/// HttpOnly cookie and the payload's `refreshToken` is null.
fn deliver(ctx: &Context<'_>, grant: auth::Grant) -> AuthPayload {
    let config = &state(ctx).config;
    if config.refresh_token_cookie {
        let value = cookie::set(&grant.refresh_token, config.refresh_token_ttl, config.is_production());
        ctx.append_http_header(header::SET_COOKIE, value);
    }
    AuthPayload::new(grant, !config.refresh_token_cookie)
}

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Public. Creates the account and its first session.
    async fn signup(&self, ctx: &Context<'_>, input: SignupInput) -> AppResult<AuthPayload> {
        let input =
            credentials::SignupInput { name: input.name, username: input.username, password: secret(input.password) };
        Ok(deliver(ctx, credentials::signup(auth_of(ctx), input, &request_auth(ctx).client).await?))
    }

    /// Public. Opens a new session.
    async fn signin(&self, ctx: &Context<'_>, input: SigninInput) -> AppResult<AuthPayload> {
        let password = secret(input.password);
        let client = &request_auth(ctx).client;
        Ok(deliver(ctx, credentials::signin(auth_of(ctx), &input.username, &password, client).await?))
    }

    /// Public. Rotates the refresh token (argument, or the httpOnly cookie when enabled).
    async fn refresh(&self, ctx: &Context<'_>, refresh_token: Option<String>) -> AppResult<AuthPayload> {
        let client = &request_auth(ctx).client;
        let token = match refresh_token {
            Some(token) => secret(token),
            None if client.refresh_cookie_duplicated => {
                let message = "The refresh cookie was sent more than once; clear the site's cookies";
                return Err(crate::error::AppError::bad_input("refreshToken", message));
            }
            None => client.refresh_cookie.clone().unwrap_or_else(|| secret(String::new())),
        };
        Ok(deliver(ctx, auth::sessions::refresh(auth_of(ctx), &token).await?))
    }

    /// Protected. Ends sessions; their access tokens stop working at once.
    #[graphql(guard = "Authenticated")]
    async fn logout(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(LogoutScopeValue::Current)")] scope: Option<LogoutScopeValue>,
    ) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        let scope: LogoutScope = scope.unwrap_or(LogoutScopeValue::Current).into();
        auth::sessions::logout(auth_of(ctx), caller, scope).await?;
        let config = &state(ctx).config;
        if config.refresh_token_cookie && scope != LogoutScope::Others {
            ctx.append_http_header(header::SET_COOKIE, cookie::clear(config.is_production()));
        }
        Ok(true)
    }

    /// Protected. The caller's own account, or any account for an ADMIN.
    #[graphql(guard = "Authenticated")]
    async fn update_user(&self, ctx: &Context<'_>, id: ID, input: UpdateUserInput) -> AppResult<User> {
        let caller = caller(ctx).await?;
        Ok(users::update(&auth_of(ctx).pool, &caller.user, &id, input.name.as_deref(), input.username.as_deref())
            .await?)
    }

    /// Protected. Needs the current password; ends every other session.
    #[graphql(guard = "Authenticated")]
    async fn change_password(&self, ctx: &Context<'_>, input: ChangePasswordInput) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        let (current, new) = (secret(input.current_password), secret(input.new_password));
        credentials::change_password(auth_of(ctx), caller, &current, &new).await?;
        Ok(true)
    }

    /// Protected. The caller's own account, or any account for an ADMIN; ends its sessions.
    #[graphql(guard = "Authenticated")]
    async fn delete_user(&self, ctx: &Context<'_>, id: ID) -> AppResult<bool> {
        let caller = caller(ctx).await?;
        users::delete(&auth_of(ctx).pool, &caller.user, &id).await?;
        Ok(true)
    }
}
