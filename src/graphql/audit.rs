//! The audit trail's fields (the admin contract's `auditEvents`, `auditChain` and
//! `mySecurityEvents`): thin resolvers over `audit`, merged into the Query root.
//! Every admin field passes `Caller::admin`, the one check of every admin power.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};

use super::{
    auth_of, caller,
    guard::Protected,
    state,
    types::{DateTimeUtc, PageInfo},
};
use crate::{
    audit::{
        chain,
        events::{self, EventPage},
    },
    db::audit::{AuditEvent as Row, Filter},
    error::{AppError, AppResult},
    users::parse_id,
};

/// What an audit event records (see docs/audit.md).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub enum AuditKind {
    Signup,
    Signin,
    SigninFailed,
    RefreshReuseDetected,
    Logout,
    SessionEnded,
    PasswordChanged,
    PasswordReset,
    EmailChanged,
    EmailVerified,
    MfaEnabled,
    MfaDisabled,
    PasskeyAdded,
    PasskeyRemoved,
    IdentityLinked,
    IdentityUnlinked,
    RoleChanged,
    UserBanned,
    UserUnbanned,
    ImpersonationStarted,
    UserDeleted,
}

impl AuditKind {
    /// The database's name of the kind (the GraphQL name).
    fn as_str(self) -> String {
        match async_graphql::InputType::to_value(&self) {
            async_graphql::Value::Enum(name) => name.to_string(),
            other => other.to_string(),
        }
    }

    fn parse(kind: &str) -> Option<Self> {
        let value = async_graphql::Value::Enum(async_graphql::Name::new(kind));
        <Self as async_graphql::InputType>::parse(Some(value)).ok()
    }
}

/// One event of the trail.
pub struct AuditEvent(Row);

#[Object]
impl AuditEvent {
    async fn id(&self) -> ID {
        self.0.id.into()
    }
    async fn at(&self) -> DateTimeUtc {
        DateTimeUtc(self.0.at)
    }
    async fn kind(&self) -> AppResult<AuditKind> {
        AuditKind::parse(&self.0.kind).ok_or_else(|| AppError::internal(anyhow::anyhow!("audit kind {}", self.0.kind)))
    }
    /// The account that acted (null for an anonymous or failed attempt).
    async fn actor_id(&self) -> Option<ID> {
        self.0.actor_id.map(Into::into)
    }
    /// The account acted on.
    async fn subject_id(&self) -> Option<ID> {
        self.0.subject_id.map(Into::into)
    }
    async fn session_id(&self) -> Option<ID> {
        self.0.session_id.map(Into::into)
    }
    /// Client network as the rate limits see it (an IPv4 address or an IPv6 /64).
    async fn network(&self) -> Option<&str> {
        self.0.network.as_deref()
    }
    async fn user_agent(&self) -> Option<&str> {
        self.0.user_agent.as_deref()
    }
    /// Kind-specific detail as JSON text (never a secret, token or password).
    async fn detail(&self) -> Option<String> {
        Some(self.0.detail.to_string())
    }
}

#[derive(SimpleObject)]
pub struct AuditEventEdge {
    pub cursor: String,
    pub node: AuditEvent,
}

/// A page of events, newest first.
pub struct AuditEventConnection(EventPage);

#[Object]
impl AuditEventConnection {
    async fn edges(&self) -> Vec<AuditEventEdge> {
        let events = &self.0.events;
        events.iter().map(|e| AuditEventEdge { cursor: events::cursor(e), node: AuditEvent(e.clone()) }).collect()
    }
    async fn nodes(&self) -> Vec<AuditEvent> {
        self.0.events.iter().cloned().map(AuditEvent).collect()
    }
    async fn page_info(&self) -> PageInfo {
        let page = &self.0;
        PageInfo {
            has_previous_page: page.has_previous_page,
            has_next_page: page.has_next_page,
            start_cursor: page.events.first().map(events::cursor),
            end_cursor: page.events.last().map(events::cursor),
        }
    }
}

/// What a verification of the chain found.
#[derive(SimpleObject)]
pub struct AuditChainStatus {
    /// True when every kept event's HMAC and link verify.
    pub intact: bool,
    pub checked: i32,
    /// The first event whose HMAC or link does not verify.
    pub first_broken_id: Option<ID>,
}

#[derive(InputObject, Default)]
pub struct AuditFilter {
    pub subject_id: Option<ID>,
    pub actor_id: Option<ID>,
    pub kinds: Option<Vec<AuditKind>>,
    pub since: Option<DateTimeUtc>,
    pub until: Option<DateTimeUtc>,
}

impl AuditFilter {
    fn into_filter(self) -> AppResult<Filter> {
        Ok(Filter {
            subject: self.subject_id.map(|id| parse_id(&id)).transpose()?,
            actor: self.actor_id.map(|id| parse_id(&id)).transpose()?,
            kinds: self.kinds.map(|kinds| kinds.into_iter().map(AuditKind::as_str).collect()),
            since: self.since.map(|t| t.0),
            until: self.until.map(|t| t.0),
        })
    }
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// ADMIN (a protected field that also passes the admin rule). Newest first.
    #[graphql(guard = "Protected")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<AuditEventConnection> {
        let auth = auth_of(ctx);
        caller(ctx).await?.admin(auth.admin_rule)?;
        let filter = filter.unwrap_or_default().into_filter()?;
        Ok(AuditEventConnection(events::page(&auth.pool, filter, first, after.as_deref()).await?))
    }

    /// ADMIN (a protected field that also passes the admin rule). Verifies the chain
    /// (the whole kept trail, or the newest `last` events).
    #[graphql(guard = "Protected")]
    async fn audit_chain(&self, ctx: &Context<'_>, last: Option<i32>) -> AppResult<AuditChainStatus> {
        let auth = auth_of(ctx);
        caller(ctx).await?.admin(auth.admin_rule)?;
        if last.is_some_and(|n| n < 1) {
            return Err(AppError::bad_input("last", "last must be at least 1"));
        }
        let status =
            chain::verify(&auth.pool, &state(ctx).audit, last.map(i64::from)).await.map_err(AppError::internal)?;
        Ok(AuditChainStatus {
            intact: status.intact,
            checked: i32::try_from(status.checked).unwrap_or(i32::MAX),
            first_broken_id: status.first_broken_id.map(Into::into),
        })
    }

    /// Protected. The caller's own security events, newest first (sign-ins, failed
    /// sign-ins, changes to credentials and factors, sessions ended).
    #[graphql(guard = "Protected")]
    async fn my_security_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<AuditEventConnection> {
        let caller = caller(ctx).await?;
        let filter = Filter { subject: Some(caller.user.id), ..Filter::default() };
        Ok(AuditEventConnection(events::page(&auth_of(ctx).pool, filter, first, after.as_deref()).await?))
    }
}
