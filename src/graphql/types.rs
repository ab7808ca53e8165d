//! The GraphQL object and input types of the contract.

use crate::{
    auth::Grant,
    db::{
        ids::SessionId,
        models::{Session as SessionRow, User},
    },
    users,
};
use async_graphql::{
    Context, Enum, ID, InputObject, InputValueError, InputValueResult, Object, Scalar, ScalarType, SimpleObject, Value,
};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

// The schema's faces of `db::models::Role` and `auth::sessions::LogoutScope`, kept
// here so the database and service layers know no GraphQL. Their doc comments are the
// schema's descriptions.

/// What an account may do. The first ADMIN is made by an operator's CLI; after that an
/// ADMIN may change roles (setUserRole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "Role", remote = "crate::db::models::Role")]
pub enum RoleValue {
    User,
    Admin,
}

/// Which sessions `logout` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "LogoutScope", remote = "crate::auth::sessions::LogoutScope")]
pub enum LogoutScopeValue {
    /// Only the session of the access token that calls logout.
    Current,
    /// Every session of the user except the current one.
    Others,
    /// Every session of the user.
    All,
}

/// How strongly a session was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "AuthAssurance", remote = "crate::db::models::Assurance")]
pub enum AssuranceValue {
    /// Password only.
    #[graphql(name = "AAL1")]
    Aal1,
    /// Password and a second factor.
    #[graphql(name = "AAL2")]
    Aal2,
}

/// `DateTime` in the schema. Our own scalar rather than async-graphql's for chrono,
/// whose description in the SDL speaks of Rust types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTimeUtc(pub DateTime<Utc>);

/// An instant, as an RFC 3339 string in UTC (fractional seconds as needed), e.g.
/// `2026-11-29T18:46:07.102332+00:00`. JavaScript: `new Date(value)`.
#[Scalar(name = "DateTime", specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339")]
impl ScalarType for DateTimeUtc {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => Ok(Self(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339())
    }
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        // Ids become GraphQL `ID`s through their `Display` (the UUID as text), and come
        // back through `users::parse_id`.
        self.id.into()
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn username(&self) -> &str {
        &self.username
    }
    async fn role(&self) -> RoleValue {
        self.role.into()
    }
    async fn created_at(&self) -> DateTimeUtc {
        DateTimeUtc(self.created_at)
    }
    async fn updated_at(&self) -> DateTimeUtc {
        DateTimeUtc(self.updated_at)
    }
    /// The account's email address. Null unless the caller is this user or an ADMIN.
    async fn email(&self, ctx: &Context<'_>) -> Option<&str> {
        if super::may_see_private(ctx, self.id).await { self.email.as_deref() } else { None }
    }
    /// Whether `email` was confirmed. Null when `email` is null for the caller.
    async fn email_verified(&self, ctx: &Context<'_>) -> Option<bool> {
        if self.email.is_some() && super::may_see_private(ctx, self.id).await {
            Some(self.email_verified_at.is_some())
        } else {
            None
        }
    }
    /// Whether a second factor is on. Null unless the caller is this user or an ADMIN.
    async fn mfa_enabled(&self, ctx: &Context<'_>) -> Option<bool> {
        if super::may_see_private(ctx, self.id).await { Some(self.has_second_factor()) } else { None }
    }
    /// Number of passkeys. Null unless the caller is this user or an ADMIN.
    async fn passkey_count(&self, ctx: &Context<'_>) -> crate::error::AppResult<Option<i32>> {
        if !super::may_see_private(ctx, self.id).await {
            return Ok(None);
        }
        let id = self.id;
        let count =
            crate::db::read(&super::auth_of(ctx).pool, |conn| Box::pin(crate::db::passkeys::count(conn, id))).await?;
        Ok(Some(i32::try_from(count).unwrap_or(i32::MAX)))
    }
    /// Whether the account has a password (false: created through another provider,
    /// see setPassword). Null unless the caller is this user or an ADMIN.
    async fn has_password(&self, ctx: &Context<'_>) -> crate::error::AppResult<Option<bool>> {
        if !super::may_see_private(ctx, self.id).await {
            return Ok(None);
        }
        crate::social::flows::has_password(super::auth_of(ctx), self.id).await.map(Some)
    }
    /// When the ban ends (far future for a permanent ban). Null unless the caller is an
    /// ADMIN (who passes the admin rule), and null when the account is not banned.
    async fn banned_until(&self, ctx: &Context<'_>) -> Option<DateTimeUtc> {
        let until = self.ban()?;
        super::caller_is_admin(ctx).await.then_some(DateTimeUtc(until))
    }
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Short-lived JWT for the Authorization: Bearer header.
    pub access_token: String,
    /// Opaque rotating token for `refresh`; null when it is delivered only as an httpOnly cookie.
    pub refresh_token: Option<String>,
    /// Always "Bearer".
    pub token_type: String,
    /// Seconds until accessToken expires.
    pub expires_in: i32,
    pub user: User,
    /// True when the account has a second factor and this session has not passed it
    /// yet: call verifyMfa (or verifyPasskey). Until then only me, sessions, logout,
    /// verifyMfa, startPasskeyVerification and verifyPasskey answer.
    pub mfa_required: bool,
    /// What this session has reached; the access token's `aal` claim says the same.
    pub assurance: AssuranceValue,
    /// After verifyMfa with a recovery code: how many unused codes remain (make new
    /// ones with regenerateRecoveryCodes before they run out). Null otherwise.
    pub recovery_codes_left: Option<i32>,
}

impl AuthPayload {
    /// The payload for a grant; `refreshToken` is left out when the cookie carries it.
    pub fn new(grant: Grant, refresh_in_body: bool) -> Self {
        let (mfa_required, assurance) = (grant.mfa_required(), grant.assurance().into());
        Self {
            access_token: grant.access_token,
            refresh_token: refresh_in_body.then(|| grant.refresh_token.expose_secret().to_owned()),
            token_type: "Bearer".to_owned(),
            expires_in: i32::try_from(grant.expires_in).unwrap_or(i32::MAX),
            mfa_required,
            assurance,
            recovery_codes_left: grant.recovery_codes_left.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            user: grant.user,
        }
    }

    /// An impersonation's payload: no refresh token, ever.
    pub fn impersonation(acted: crate::admin::Impersonation) -> Self {
        let assurance = acted.methods.assurance();
        Self {
            access_token: acted.access_token,
            refresh_token: None,
            token_type: "Bearer".to_owned(),
            expires_in: i32::try_from(acted.expires_in).unwrap_or(i32::MAX),
            mfa_required: acted.user.needs_second_factor(assurance),
            assurance: assurance.into(),
            recovery_codes_left: None,
            user: acted.user,
        }
    }
}

/// A signed-in device.
#[derive(SimpleObject)]
#[graphql(name = "Session")]
pub struct SessionInfo {
    pub id: ID,
    pub created_at: DateTimeUtc,
    pub last_used_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub user_agent: Option<String>,
    /// True for the session of the access token making this request.
    pub current: bool,
    /// Whether this session passed the second factor (AAL2) or only the password.
    pub assurance: AssuranceValue,
    /// The ADMIN acting through this session, when it is an impersonation.
    pub impersonator_id: Option<ID>,
}

impl SessionInfo {
    pub fn new(row: SessionRow, current_session: SessionId) -> Self {
        let assurance = row.assurance().into();
        Self {
            id: row.id.into(),
            created_at: DateTimeUtc(row.created_at),
            last_used_at: DateTimeUtc(row.last_used_at),
            expires_at: DateTimeUtc(row.expires_at),
            user_agent: row.user_agent,
            current: row.id == current_session,
            assurance,
            impersonator_id: row.impersonator_id.map(Into::into),
        }
    }
}

/// What happened to the account or one of its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "SessionEventKind", remote = "crate::db::events::EventKind")]
pub enum SessionEventKindValue {
    /// A session of this account was opened (signup, signin, resetPassword).
    SessionStarted,
    /// A session of this account ended (logout, reuse detection, password change, deletion, an operator).
    SessionEnded,
    /// The account's password was changed or reset.
    PasswordChanged,
    /// The account's name, username, email, role or second factor changed.
    AccountUpdated,
}

/// An event of the caller's account.
#[derive(SimpleObject)]
#[graphql(name = "SessionEvent")]
pub struct SessionEventInfo {
    pub kind: SessionEventKindValue,
    /// The session the event is about (for PASSWORD_CHANGED: the session that made the
    /// change, when there was one; null for ACCOUNT_UPDATED).
    pub session_id: Option<ID>,
    /// True when sessionId is the session of this subscription.
    pub current: bool,
    pub at: DateTimeUtc,
    /// For SESSION_STARTED: the new session's user agent.
    pub user_agent: Option<String>,
}

impl SessionEventInfo {
    pub fn new(event: &crate::db::events::Event, subscriber: SessionId) -> Self {
        Self {
            kind: event.kind.into(),
            session_id: event.session.map(Into::into),
            current: event.session == Some(subscriber),
            at: DateTimeUtc(event.at),
            user_agent: event.user_agent.clone(),
        }
    }
}

/// A TOTP secret waiting for its first code (confirmTotp).
#[derive(SimpleObject)]
pub struct TotpEnrollment {
    /// Base32 secret, for typing into an authenticator app.
    pub secret: String,
    /// otpauth://totp/… URI with issuer and account name.
    pub uri: String,
    /// The URI as an SVG QR code, ready to put in an <img> or inline.
    pub qr_svg: String,
}

/// Recovery codes, each usable once in place of a TOTP code.
#[derive(SimpleObject)]
pub struct RecoveryCodes {
    /// Single-use codes, shown once; each stands in for one TOTP code.
    pub codes: Vec<String>,
    /// confirmTotp only: an access token of this session at AAL2. The token that
    /// called confirmTotp keeps working at AAL1 only, which is no longer enough for
    /// this account. Null from regenerateRecoveryCodes.
    pub access_token: Option<String>,
}

impl RecoveryCodes {
    pub fn new(codes: &[SecretString], access_token: Option<String>) -> Self {
        Self { codes: codes.iter().map(|c| c.expose_secret().to_owned()).collect(), access_token }
    }
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_previous_page: bool,
    pub has_next_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct UserEdge {
    pub cursor: String,
    pub node: User,
}

/// A page of `users`. Edges, cursors and page info are made only when selected, and
/// `nodes` are the page's rows themselves: a client asking for `nodes { … }` pays for
/// no copy and no cursor.
pub struct UserConnection(pub users::UserPage);

#[Object]
impl UserConnection {
    async fn edges(&self) -> Vec<UserEdge> {
        self.0.users.iter().map(|u| UserEdge { cursor: users::cursor(u), node: u.clone() }).collect()
    }
    async fn nodes(&self) -> &[User] {
        &self.0.users
    }
    async fn page_info(&self) -> PageInfo {
        let page = &self.0;
        PageInfo {
            has_previous_page: page.has_previous_page,
            has_next_page: page.has_next_page,
            start_cursor: page.users.first().map(users::cursor),
            end_cursor: page.users.last().map(users::cursor),
        }
    }
    async fn total_count(&self) -> i32 {
        i32::try_from(self.0.total_count).unwrap_or(i32::MAX)
    }
}

#[derive(InputObject)]
pub struct SignupInput {
    pub name: String,
    pub username: String,
    pub password: String,
    /// Optional. When given, a verification message is sent to it (or, when another
    /// account has verified it, that account is told, and this one keeps it unverified).
    pub email: Option<String>,
}

#[derive(InputObject)]
pub struct VerifyEmailInput {
    /// The token from the verification link (works signed out).
    pub token: Option<String>,
    /// Or the 6-digit code from the same message (needs the account's bearer token).
    pub code: Option<String>,
}

#[derive(InputObject)]
pub struct ResetPasswordInput {
    /// The token from the reset link.
    pub token: Option<String>,
    /// Or the address and the 6-digit code from the same message.
    pub email: Option<String>,
    pub code: Option<String>,
    pub new_password: String,
}

#[derive(InputObject)]
pub struct ChangeEmailInput {
    pub current_password: String,
    pub new_email: String,
}

#[derive(InputObject)]
pub struct SigninInput {
    pub username: String,
    pub password: String,
}

#[derive(InputObject)]
pub struct UpdateUserInput {
    pub name: Option<String>,
    pub username: Option<String>,
}

#[derive(InputObject)]
pub struct ChangePasswordInput {
    pub current_password: String,
    pub new_password: String,
}

/// Moves a password out of its input string into a secret, so it is never printed.
pub fn secret(s: String) -> SecretString {
    SecretString::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_round_trip_as_rfc_3339() {
        let text = "2026-11-29T18:46:07.102332+00:00";
        let parsed = DateTimeUtc::parse(Value::String(text.into())).unwrap();
        assert_eq!(parsed.to_value(), Value::String(text.into()));
        let offset = DateTimeUtc::parse(Value::String("2026-11-29T19:46:07.102332+01:00".into())).unwrap();
        assert_eq!(offset, parsed, "read in any offset, written in UTC");
        assert!(DateTimeUtc::parse(Value::String("yesterday".into())).is_err());
        assert!(DateTimeUtc::parse(Value::Number(1.into())).is_err());
    }
}
