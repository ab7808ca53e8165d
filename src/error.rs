//! The one error type of the server, and its GraphQL form.
//!
//! Every failure a client can see is one variant with one stable code in
//! `extensions.code` (listed in docs/api.md's error table, and per capability in the
//! contracts under `tests/contract.graphql` and `tests/contracts/`). Services
//! return `AppError`; resolvers return it too, and async-graphql turns it into a
//! response error through the `From` impl below.
//!
//! `AppError` deliberately does not implement `Display`: async-graphql has a blanket
//! `From<T: Display>` for its error type that copies the message verbatim and drops
//! the code. Without `Display`, the only way out is our `From`, which logs internal
//! causes with the request's span and sends a plain message.

use std::{fmt, sync::Arc};

use async_graphql::ErrorExtensions;

/// The codes sent in `extensions.code`, in one place: `AppError::code` and the
/// request-level refusals of `http` and `graphql` use these, never a literal.
pub mod code {
    /// No usable access token on a protected field.
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// Wrong username or password.
    pub const INVALID_CREDENTIALS: &str = "INVALID_CREDENTIALS";
    /// The refresh token is unknown, expired, revoked or reused.
    pub const INVALID_REFRESH_TOKEN: &str = "INVALID_REFRESH_TOKEN";
    /// Authenticated, but the account is not the caller's.
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// An argument is out of range or malformed; `extensions.field` names it.
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    /// The username belongs to another account.
    pub const USERNAME_TAKEN: &str = "USERNAME_TAKEN";
    /// The id names no account.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// Too many attempts; `extensions.retryAfter` says when to try again.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// Busy or the database is unreachable; worth a retry.
    pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
    /// Anything else; the cause is logged, never sent.
    pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
    /// The document is invalid or over the operation limits.
    pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    /// An APQ hash the server does not hold; send the query with it.
    pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
    /// An APQ version other than 1.
    pub const PERSISTED_QUERY_NOT_SUPPORTED: &str = "PERSISTED_QUERY_NOT_SUPPORTED";
    /// An address another account has verified.
    pub const EMAIL_TAKEN: &str = "EMAIL_TAKEN";
    /// A verification or reset token or code that cannot be used; `extensions.reason`
    /// says why.
    pub const INVALID_EMAIL_TOKEN: &str = "INVALID_EMAIL_TOKEN";
    /// The HTTP request is not a GraphQL request the server can read.
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    /// The account has a second factor and this session has not passed it: call verifyMfa.
    pub const MFA_REQUIRED: &str = "MFA_REQUIRED";
    /// A TOTP or recovery code that is wrong, expired or already used.
    pub const INVALID_MFA_CODE: &str = "INVALID_MFA_CODE";
    /// A passkey assertion or attestation that does not verify.
    pub const INVALID_PASSKEY: &str = "INVALID_PASSKEY";
    /// The authenticator already holds a passkey of this account.
    pub const PASSKEY_EXISTS: &str = "PASSKEY_EXISTS";
    /// Removing it would leave the account with no way to sign in.
    pub const LAST_SIGN_IN_METHOD: &str = "LAST_SIGN_IN_METHOD";
    /// A provider flow's state that is unknown, used, expired or of another flow.
    pub const INVALID_OIDC_STATE: &str = "INVALID_OIDC_STATE";
    /// The identity provider refused, or answered with something that does not verify.
    pub const OIDC_PROVIDER_ERROR: &str = "OIDC_PROVIDER_ERROR";
    /// An account owns the identity's verified address: sign in to it and link.
    pub const ACCOUNT_EXISTS: &str = "ACCOUNT_EXISTS";
    /// The identity is linked to another account.
    pub const IDENTITY_TAKEN: &str = "IDENTITY_TAKEN";
    /// A banned account's credential verified, and the account is refused; only
    /// someone who holds the credential learns it.
    pub const ACCOUNT_BANNED: &str = "ACCOUNT_BANNED";
}

/// Why a refresh token was refused; sent as `extensions.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshFailure {
    NotFound,
    Expired,
    Revoked,
    Reused,
}

impl RefreshFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "NOT_FOUND",
            Self::Expired => "EXPIRED",
            Self::Revoked => "REVOKED",
            Self::Reused => "REUSED",
        }
    }
}

/// Why an email token or code was refused; sent as `extensions.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTokenFailure {
    /// No such token, or a wrong code.
    NotFound,
    /// Past its lifetime, or superseded by a newer message.
    Expired,
    /// Already used once.
    Used,
    /// The code's wrong tries are spent; ask for a new message.
    TooManyAttempts,
}

impl EmailTokenFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "NOT_FOUND",
            Self::Expired => "EXPIRED",
            Self::Used => "USED",
            Self::TooManyAttempts => "TOO_MANY_ATTEMPTS",
        }
    }
}

/// `Clone` because async-graphql clones a resolver's error into the response; the
/// internal causes are shared, not copied.
#[derive(Clone)]
pub enum AppError {
    /// `EMAIL_TAKEN`: another account has verified the address.
    EmailTaken,
    /// `INVALID_EMAIL_TOKEN` with `extensions.reason`.
    InvalidEmailToken(EmailTokenFailure),
    /// `UNAUTHENTICATED`: no usable access token on a protected field. The reason is
    /// for the log only; the client learns nothing about which check failed.
    Unauthenticated(&'static str),
    /// `MFA_REQUIRED` with `extensions.reason` `VERIFY`: an AAL1 session of an account
    /// with a second factor, on a field that is not one of
    /// `graphql::BEFORE_SECOND_FACTOR`.
    MfaRequired,
    /// `MFA_REQUIRED` with `extensions.reason` `ENROLL`: an ADMIN whose account has no
    /// second factor, on an admin power that needs AAL2 (`ADMIN_REQUIRE_AAL2`).
    MfaEnrollRequired,
    /// `INVALID_MFA_CODE`: a TOTP or recovery code that is wrong, expired or spent.
    InvalidMfaCode,
    /// `INVALID_PASSKEY`: wrong origin or RP ID, an unknown, flagged or other
    /// account's credential, a bad signature or counter, a challenge that is unknown,
    /// used, expired or of another ceremony. One answer for all: the log says which.
    InvalidPasskey(&'static str),
    /// `PASSKEY_EXISTS`: this credential is registered to the account already.
    PasskeyExists,
    /// `LAST_SIGN_IN_METHOD`: removing it would leave the account no way to sign in.
    LastSignInMethod,
    /// `INVALID_OIDC_STATE`: a provider flow's state that is unknown, used, expired, or
    /// of another flow, provider or account. The reason is for the log.
    InvalidOidcState(&'static str),
    /// `OIDC_PROVIDER_ERROR`: the provider refused the code, could not be reached, or
    /// sent an answer that does not verify. The reason is for the log.
    OidcProviderError(String),
    /// `ACCOUNT_EXISTS`: an account owns the identity's verified address; its owner
    /// signs in and links the identity.
    AccountExists,
    /// `IDENTITY_TAKEN`: the identity is linked to another account.
    IdentityTaken,
    /// `ACCOUNT_BANNED` with `extensions.until` (absent: permanent): the account's
    /// credential verified and the account is banned.
    AccountBanned { until: Option<chrono::DateTime<chrono::Utc>> },
    /// `FORBIDDEN`: the last ADMIN cannot be demoted, banned or deleted through the API.
    LastAdmin,
    /// `INVALID_CREDENTIALS`: wrong username or password, one message for both.
    InvalidCredentials,
    /// `INVALID_REFRESH_TOKEN` with `extensions.reason`.
    InvalidRefreshToken(RefreshFailure),
    /// `FORBIDDEN`: authenticated, but the account is not the caller's.
    Forbidden,
    /// `BAD_USER_INPUT` with `extensions.field`.
    BadUserInput { field: &'static str, message: String },
    /// `USERNAME_TAKEN`, decided by the unique index.
    UsernameTaken,
    /// `NOT_FOUND`: the id names no account.
    NotFound,
    /// `RATE_LIMITED` with `extensions.retryAfter` in seconds.
    RateLimited { retry_after_secs: u64 },
    /// `SERVICE_UNAVAILABLE` with `extensions.retryAfter`: the password-hashing queue is
    /// full; refused before any hashing.
    Busy { retry_after_secs: u64 },
    /// `SERVICE_UNAVAILABLE` with `extensions.retryAfter`: the database cannot be
    /// reached now (pool timeout, connection refused or lost, no primary during a
    /// failover). Worth a retry after [`UNAVAILABLE_RETRY_AFTER_SECS`].
    Unavailable(Arc<anyhow::Error>),
    /// `INTERNAL_SERVER_ERROR`: anything else. The cause is logged, never sent.
    Internal(Arc<anyhow::Error>),
}

pub type AppResult<T> = Result<T, AppError>;

/// The wait `Unavailable` asks for: a failover leaves no primary for one to a few
/// seconds (docs/production.md), so a client that retries each second gets through
/// soon after it ends without flooding the instance meanwhile.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

impl AppError {
    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput { field, message: message.into() }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(Arc::new(err.into()))
    }

    /// A failure to reach the database, worth a retry.
    pub fn unavailable(err: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable(Arc::new(err.into()))
    }

    /// The stable code sent in `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmailTaken => code::EMAIL_TAKEN,
            Self::InvalidEmailToken(_) => code::INVALID_EMAIL_TOKEN,
            Self::Unauthenticated(_) => code::UNAUTHENTICATED,
            Self::InvalidCredentials => code::INVALID_CREDENTIALS,
            Self::MfaRequired | Self::MfaEnrollRequired => code::MFA_REQUIRED,
            Self::InvalidMfaCode => code::INVALID_MFA_CODE,
            Self::InvalidPasskey(_) => code::INVALID_PASSKEY,
            Self::PasskeyExists => code::PASSKEY_EXISTS,
            Self::LastSignInMethod => code::LAST_SIGN_IN_METHOD,
            Self::InvalidOidcState(_) => code::INVALID_OIDC_STATE,
            Self::OidcProviderError(_) => code::OIDC_PROVIDER_ERROR,
            Self::AccountExists => code::ACCOUNT_EXISTS,
            Self::IdentityTaken => code::IDENTITY_TAKEN,
            Self::AccountBanned { .. } => code::ACCOUNT_BANNED,
            Self::LastAdmin => code::FORBIDDEN,
            Self::InvalidRefreshToken(_) => code::INVALID_REFRESH_TOKEN,
            Self::Forbidden => code::FORBIDDEN,
            Self::BadUserInput { .. } => code::BAD_USER_INPUT,
            Self::UsernameTaken => code::USERNAME_TAKEN,
            Self::NotFound => code::NOT_FOUND,
            Self::RateLimited { .. } => code::RATE_LIMITED,
            Self::Busy { .. } | Self::Unavailable(_) => code::SERVICE_UNAVAILABLE,
            Self::Internal(_) => code::INTERNAL_SERVER_ERROR,
        }
    }

    /// How long the client should wait before trying again, for the refusals that say.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } | Self::Busy { retry_after_secs } => Some(*retry_after_secs),
            Self::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The message a client sees: fixed text, except validation messages, which are
    /// ours and name no internals.
    pub fn public_message(&self) -> String {
        match self {
            Self::EmailTaken => "This email address belongs to another account".into(),
            Self::InvalidEmailToken(_) => "This link or code cannot be used; ask for a new message".into(),
            Self::Unauthenticated(_) => "Authentication required: send a valid access token".into(),
            Self::InvalidCredentials => "Invalid username or password".into(),
            Self::MfaEnrollRequired => {
                "Admin powers need a second factor: enrol one (enrollTotp or a passkey), then verify".into()
            }
            Self::MfaRequired => {
                "This session must pass the second factor first: call verifyMfa or verifyPasskey".into()
            }
            Self::InvalidMfaCode => "Invalid or already used code".into(),
            Self::InvalidPasskey(_) => "The passkey could not be verified".into(),
            Self::PasskeyExists => "This authenticator already holds a passkey of this account".into(),
            Self::LastSignInMethod => "This is the account's last way to sign in".into(),
            Self::InvalidOidcState(_) => "This sign-in cannot be finished: start it again".into(),
            Self::OidcProviderError(_) => "The identity provider refused the sign-in".into(),
            Self::AccountExists => {
                "An account already has this email address: sign in to it and link this identity".into()
            }
            Self::IdentityTaken => "This identity is linked to another account".into(),
            Self::AccountBanned { .. } => "This account is banned".into(),
            Self::LastAdmin => "This is the last ADMIN: make another account ADMIN first".into(),
            Self::InvalidRefreshToken(_) => "Invalid refresh token".into(),
            Self::Forbidden => "Not allowed to act on this account".into(),
            Self::BadUserInput { message, .. } => message.clone(),
            Self::UsernameTaken => "Username is already taken".into(),
            Self::NotFound => "No such user".into(),
            Self::RateLimited { .. } => "Too many attempts; try again later".into(),
            Self::Busy { .. } => "The server is busy; try again after retryAfter seconds".into(),
            Self::Unavailable(_) => "Service temporarily unavailable; try again".into(),
            Self::Internal(_) => "Internal server error".into(),
        }
    }
}

impl fmt::Debug for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated(reason) => write!(f, "UNAUTHENTICATED ({reason})"),
            Self::InvalidRefreshToken(reason) => write!(f, "INVALID_REFRESH_TOKEN ({})", reason.as_str()),
            Self::InvalidEmailToken(reason) => write!(f, "INVALID_EMAIL_TOKEN ({})", reason.as_str()),
            Self::InvalidPasskey(reason) => write!(f, "INVALID_PASSKEY ({reason})"),
            Self::InvalidOidcState(reason) => write!(f, "INVALID_OIDC_STATE ({reason})"),
            Self::OidcProviderError(reason) => write!(f, "OIDC_PROVIDER_ERROR ({reason})"),
            Self::BadUserInput { field, message } => write!(f, "BAD_USER_INPUT ({field}: {message})"),
            Self::Unavailable(e) | Self::Internal(e) => write!(f, "{}: {e:#}", self.code()),
            other => f.write_str(other.code()),
        }
    }
}

/// A refusal's wait, carried as the GraphQL error's typed source, so the HTTP edge sets
/// `Retry-After` from the value itself rather than reading it back out of the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        match &err {
            AppError::Internal(cause) => tracing::error!(error = format!("{cause:#}"), "internal error"),
            AppError::Unavailable(cause) => tracing::warn!(error = format!("{cause:#}"), "database unavailable"),
            AppError::Unauthenticated(reason) => tracing::debug!(reason, "unauthenticated"),
            // The provider's side of a failed sign-in: what an operator needs to see.
            AppError::OidcProviderError(reason) => {
                tracing::warn!(reason = reason.as_str(), "identity provider refused")
            }
            _ => {}
        }
        let retry_after = err.retry_after();
        let mut error = async_graphql::Error::new(err.public_message()).extend_with(|_, ext| {
            ext.set("code", err.code());
            match &err {
                AppError::InvalidRefreshToken(reason) => ext.set("reason", reason.as_str()),
                AppError::InvalidEmailToken(reason) => ext.set("reason", reason.as_str()),
                // Pass the factor this session has not passed yet.
                AppError::MfaRequired => ext.set("reason", "VERIFY"),
                AppError::MfaEnrollRequired => ext.set("reason", "ENROLL"),
                AppError::BadUserInput { field, .. } => ext.set("field", *field),
                AppError::AccountBanned { until: Some(until) } => {
                    ext.set("until", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                }
                _ => {}
            }
            if let Some(secs) = retry_after {
                ext.set("retryAfter", secs);
            }
        });
        if let Some(secs) = retry_after {
            error.source = Some(std::sync::Arc::new(RetryAfter(secs)));
        }
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let err: async_graphql::Error = AppError::internal(anyhow::anyhow!("relation \"users\" does not exist")).into();
        assert_eq!(err.message, "Internal server error");
        let ext = serde_json::to_string(&err.extensions).unwrap();
        assert!(ext.contains("INTERNAL_SERVER_ERROR") && !ext.contains("relation"), "{ext}");
    }

    #[test]
    fn extensions_carry_code_and_detail() {
        let err: async_graphql::Error = AppError::InvalidRefreshToken(RefreshFailure::Reused).into();
        let ext = serde_json::to_value(&err.extensions).unwrap();
        assert_eq!(ext, serde_json::json!({ "code": "INVALID_REFRESH_TOKEN", "reason": "REUSED" }));
        let err: async_graphql::Error = AppError::RateLimited { retry_after_secs: 42 }.into();
        let ext = serde_json::to_value(&err.extensions).unwrap();
        assert_eq!(ext, serde_json::json!({ "code": "RATE_LIMITED", "retryAfter": 42 }));
        let err: async_graphql::Error = AppError::unavailable(anyhow::anyhow!("connection refused")).into();
        let ext = serde_json::to_value(&err.extensions).unwrap();
        assert_eq!(ext, serde_json::json!({ "code": "SERVICE_UNAVAILABLE", "retryAfter": 1 }));
        let source = err.source.as_ref().and_then(|s| s.downcast_ref::<RetryAfter>());
        assert_eq!(source, Some(&RetryAfter(1)), "the HTTP edge sets Retry-After from it");
    }
}
