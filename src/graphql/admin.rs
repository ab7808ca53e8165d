//! The admin contract's powers over accounts (`adminUsers`, `userSessions`,
//! `setUserRole`, `banUser`, `unbanUser`, `endUserSessions`, `resetUserMfa`,
//! `impersonate`): thin resolvers over `admin`, merged into the roots. Each passes the
//! admin rule first, through `admin::Acting::admin` or `Caller::admin`.

use async_graphql::{Context, ID, InputObject, Object};

use super::{
    auth_of, caller,
    guard::Protected,
    request_auth, state,
    types::{AuthPayload, DateTimeUtc, RoleValue, SessionInfo, UserConnection},
};
use crate::{
    admin::{self, Acting, UserFilter},
    db::models::User,
    error::{AppError, AppResult},
};

#[derive(InputObject, Default)]
pub struct AdminUserFilter {
    /// Matches username, name or email (case-insensitive, substring).
    pub search: Option<String>,
    pub role: Option<RoleValue>,
    /// Banned now (true), or not (false).
    pub banned: Option<bool>,
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// ADMIN (a protected field that also passes the admin rule). Search and page
    /// accounts, oldest first (first: 1..100, default 20; the cursors of `users`).
    #[graphql(guard = "Protected")]
    async fn admin_users(
        &self,
        ctx: &Context<'_>,
        filter: Option<AdminUserFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<UserConnection> {
        let auth = auth_of(ctx);
        caller(ctx).await?.admin(auth.admin_rule)?;
        let filter = filter.unwrap_or_default();
        let filter = UserFilter { search: filter.search, role: filter.role.map(Into::into), banned: filter.banned };
        let with_total = ctx.look_ahead().field("totalCount").exists();
        Ok(UserConnection(admin::search(&auth.pool, filter, first, after.as_deref(), with_total).await?))
    }

    /// ADMIN (a protected field that also passes the admin rule). Any account's live
    /// sessions, impersonations among them.
    #[graphql(guard = "Protected")]
    async fn user_sessions(&self, ctx: &Context<'_>, user_id: ID) -> AppResult<Vec<SessionInfo>> {
        let auth = auth_of(ctx);
        let caller = caller(ctx).await?;
        caller.admin(auth.admin_rule)?;
        let rows = admin::sessions_of(&auth.pool, parse_user(&user_id)?).await?;
        Ok(rows.into_iter().map(|s| SessionInfo::new(s, caller.session_id)).collect())
    }
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// ADMIN (a protected field that also passes the admin rule). Changes an account's
    /// role (the CLI stays the way to make the first ADMIN). The last ADMIN cannot be
    /// demoted.
    #[graphql(guard = "Protected")]
    async fn set_user_role(&self, ctx: &Context<'_>, user_id: ID, role: RoleValue, reason: String) -> AppResult<User> {
        let acting = acting(ctx, &reason).await?;
        admin::set_role(&auth_of(ctx).changes, &acting, parse_user(&user_id)?, role.into()).await
    }

    /// ADMIN (a protected field that also passes the admin rule). Ends every session at
    /// once (sockets close) and refuses sign-ins until `until` (null: permanent) with
    /// ACCOUNT_BANNED. The last ADMIN cannot be banned, nor can the caller.
    #[graphql(guard = "Protected")]
    async fn ban_user(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        until: Option<DateTimeUtc>,
        reason: String,
    ) -> AppResult<User> {
        let acting = acting(ctx, &reason).await?;
        admin::ban(&auth_of(ctx).changes, &acting, parse_user(&user_id)?, until.map(|u| u.0)).await
    }

    /// ADMIN (a protected field that also passes the admin rule).
    #[graphql(guard = "Protected")]
    async fn unban_user(&self, ctx: &Context<'_>, user_id: ID, reason: String) -> AppResult<User> {
        let acting = acting(ctx, &reason).await?;
        admin::unban(&auth_of(ctx).changes, &acting, parse_user(&user_id)?).await
    }

    /// ADMIN (a protected field that also passes the admin rule). Ends one session of
    /// any account, or all of them when sessionId is null; answers how many ended.
    #[graphql(guard = "Protected")]
    async fn end_user_sessions(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        session_id: Option<ID>,
        reason: String,
    ) -> AppResult<i32> {
        let acting = acting(ctx, &reason).await?;
        let session = session_id
            .map(|id| id.parse().map_err(|_| AppError::bad_input("sessionId", "sessionId is not a session id")))
            .transpose()?;
        let ended = admin::end_sessions(&auth_of(ctx).changes, &acting, parse_user(&user_id)?, session).await?;
        Ok(i32::try_from(ended).unwrap_or(i32::MAX))
    }

    /// ADMIN (a protected field that also passes the admin rule). Turns off every
    /// second factor and passkey of the account (lost devices), ends its sessions, and
    /// notifies it.
    #[graphql(guard = "Protected")]
    async fn reset_user_mfa(&self, ctx: &Context<'_>, user_id: ID, reason: String) -> AppResult<User> {
        let acting = acting(ctx, &reason).await?;
        let auth = auth_of(ctx);
        Ok(admin::reset_mfa(&auth.changes, &auth.mail, &acting, parse_user(&user_id)?).await?.0)
    }

    /// ADMIN (a protected field that also passes the admin rule). Tokens for acting as
    /// the user: an access token with an `act` claim naming the admin, lasting
    /// IMPERSONATION_TTL, at the admin's assurance; refreshToken is always null and no
    /// cookie is set (the admin's own is untouched). It may call queries, updateUser
    /// on the user's own name and logout(CURRENT); every other mutation is FORBIDDEN.
    /// Never of an ADMIN. The user sees it in sessions and mySecurityEvents.
    #[graphql(guard = "Protected")]
    async fn impersonate(&self, ctx: &Context<'_>, user_id: ID, reason: String) -> AppResult<AuthPayload> {
        let acting = acting(ctx, &reason).await?;
        let (auth, client) = (auth_of(ctx), &request_auth(ctx).client);
        let ttl = state(ctx).config.impersonation_ttl;
        let admin = caller(ctx).await?;
        let acted = admin::impersonate(auth, admin, &acting, parse_user(&user_id)?, client, ttl).await?;
        Ok(AuthPayload::impersonation(acted))
    }
}

/// The admin rule and the reason of an admin mutation.
async fn acting(ctx: &Context<'_>, reason: &str) -> AppResult<Acting> {
    Acting::admin(caller(ctx).await?, auth_of(ctx).admin_rule, reason)
}

fn parse_user(id: &ID) -> AppResult<crate::db::ids::UserId> {
    crate::users::parse_id_of("userId", id)
}
