use async_graphql::{Context, ID, MergedObject, Object};

use super::{
    auth_of, caller,
    guard::Protected,
    types::{SessionInfo, UserConnection},
};
use crate::{auth, db::models::User, error::AppResult, users};

/// The queries: the core's, then each capability's own, merged into one type.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    CoreQuery,
    super::passkeys::PasskeyQuery,
    super::social::SocialQuery,
    super::audit::AuditQuery,
    super::admin::AdminQuery,
);

#[derive(Default)]
pub struct CoreQuery;

#[Object]
impl CoreQuery {
    /// Public. All users, oldest first, cursor-paginated (first: 1..100, default 20).
    async fn users(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> AppResult<UserConnection> {
        let with_total = ctx.look_ahead().field("totalCount").exists();
        let page = users::page(&auth_of(ctx).pool, first, after.as_deref(), with_total).await?;
        Ok(UserConnection(page))
    }

    /// Public. One user, or null.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> AppResult<Option<User>> {
        Ok(users::get(&auth_of(ctx).pool, &id).await?)
    }

    /// Protected; an AAL1 session may call it. The caller.
    #[graphql(guard = "Protected")]
    async fn me(&self, ctx: &Context<'_>) -> AppResult<User> {
        Ok(caller(ctx).await?.user.clone())
    }

    /// Protected; an AAL1 session may call it. The caller's live sessions.
    #[graphql(guard = "Protected")]
    async fn sessions(&self, ctx: &Context<'_>) -> AppResult<Vec<SessionInfo>> {
        let caller = caller(ctx).await?;
        let rows = auth::sessions::list(auth_of(ctx), caller).await?;
        Ok(rows.into_iter().map(|s| SessionInfo::new(s, caller.session_id)).collect())
    }
}
