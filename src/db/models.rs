//! Rows as Rust types. `User` carries no password hash: the hash is read only by the
//! queries that verify or replace it, so it cannot leak through a `User` anywhere.

use chrono::{DateTime, Utc};
use diesel::{
    deserialize::{self, FromSql, FromSqlRow},
    expression::AsExpression,
    pg::{Pg, PgValue},
    prelude::*,
    serialize::{self, Output, ToSql},
    sql_types::Text,
};
use uuid::Uuid;

use crate::email_address::EmailAddress;

use super::{
    ids::{CeremonyId, IdentityId, PasskeyId, SessionId, UserId},
    schema::{
        email_tokens, identities, outbox, passkey_ceremonies, passkeys, provider_flows, recovery_codes, refresh_tokens,
        sessions, totp_factors, users,
    },
};

/// What an account may do. Only an operator's CLI can make an account ADMIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
// Stored as text under a CHECK constraint, which keeps Diesel free of custom SQL types.
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::Admin => "ADMIN",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "USER" => Ok(Role::User),
            "ADMIN" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

impl ToSql<Text, Pg> for Role {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for Role {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let s = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Ok(s.parse()?)
    }
}

/// The end of a ban without one: the last day of year 9999, which the audit rows and
/// `ACCOUNT_BANNED` report as permanent (no `until`).
pub fn permanent_ban() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).expect("9999-12-31T23:59:59Z is a valid time")
}

/// Whether a ban's end is the permanent one.
pub fn is_permanent_ban(until: DateTime<Utc>) -> bool {
    until >= permanent_ban() - chrono::Duration::days(365)
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(Pg))]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub username: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// In canonical form (`email_address`); compared by its key, `users.email_key`,
    /// which is not loaded.
    pub email: Option<String>,
    pub email_verified_at: Option<DateTime<Utc>>,
    /// When the account's first second factor was turned on; `None` while none is.
    pub mfa_enabled_at: Option<DateTime<Utc>>,
    /// Until when the account is banned (see `banned_until`); a past value is no ban.
    pub banned_until: Option<DateTime<Utc>>,
}

impl User {
    /// The end of the account's ban, if it is banned now. A permanent ban ends in the
    /// far future (`permanent_ban`).
    pub fn ban(&self) -> Option<DateTime<Utc>> {
        self.banned_until.filter(|until| *until > Utc::now())
    }

    /// Whether a second factor is on (a TOTP factor, a passkey, or both): its password
    /// sessions need it before anything but `graphql::BEFORE_SECOND_FACTOR`.
    pub fn has_second_factor(&self) -> bool {
        self.mfa_enabled_at.is_some()
    }

    /// Whether a session at `assurance` still has to pass this account's second factor.
    pub fn needs_second_factor(&self, assurance: Assurance) -> bool {
        self.has_second_factor() && assurance < Assurance::Aal2
    }

    /// The address, if it has been verified: the only one mail of the account's
    /// secrets (resets, notices) may go to.
    pub fn verified_email(&self) -> Option<&str> {
        self.email.as_deref().filter(|_| self.email_verified_at.is_some())
    }

    /// The verified address, parsed. Stored addresses are canonical, so this fails
    /// only for one the migration to keys left unverified, which is never verified.
    pub fn verified_address(&self) -> Option<EmailAddress> {
        self.verified_email().and_then(|e| EmailAddress::parse(e).ok())
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub name: &'a str,
    pub username: &'a str,
    /// `None` for an account created through another provider.
    pub password_hash: Option<&'a str>,
    pub email: Option<&'a str>,
    pub email_key: Option<&'a str>,
}

/// Changes to an account; `None` leaves a column as it is.
#[derive(AsChangeset, Default)]
#[diesel(table_name = users)]
pub struct UserChanges<'a> {
    pub name: Option<&'a str>,
    pub username: Option<&'a str>,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = sessions, check_for_backend(Pg))]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub max_expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub user_agent: Option<String>,
    /// When the session passed the second factor; `None`: password only.
    pub mfa_at: Option<DateTime<Utc>>,
    pub mfa_method: Option<SecondFactor>,
    /// Refresh tokens of the session created before this cannot rotate (set by
    /// verifyMfa, which hands out a new one).
    pub refresh_tokens_since: Option<DateTime<Utc>>,
    /// What opened the session: a password, or a passkey (both factors at once).
    pub signed_in_with: FirstFactor,
    /// The ADMIN acting through this session, when it is an impersonation.
    pub impersonator_id: Option<UserId>,
}

impl Session {
    pub fn assurance(&self) -> Assurance {
        Assurance::reached(self.mfa_at.is_some())
    }

    /// How the session proved who is behind it, as its tokens claim.
    pub fn methods(&self) -> Methods {
        Methods { first: self.signed_in_with, second: self.mfa_method }
    }
}

/// How a session proved who is behind it: what opened it, and the second factor it
/// passed, if any. Its tokens' `aal` and `amr` claims are made from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods {
    pub first: FirstFactor,
    pub second: Option<SecondFactor>,
}

impl Methods {
    /// A password, and nothing else yet.
    pub const PASSWORD: Self = Self { first: FirstFactor::Password, second: None };

    pub fn assurance(self) -> Assurance {
        Assurance::reached(self.second.is_some())
    }

    /// The `amr` claim (RFC 8176 method names). A password is `pwd`, then `otp` for a
    /// TOTP or recovery code (a one-time password either way), `hwk` for a passkey
    /// bound to its device, `swk` for one that may be synced (its BE flag). A passkey
    /// sign-in is the key and the user verification it performed: `hwk`/`swk` and
    /// `user`.
    pub fn amr(self) -> Vec<String> {
        let second = self.second.map(SecondFactor::amr);
        let names: Vec<&str> = match self.first {
            FirstFactor::Password => std::iter::once("pwd").chain(second).collect(),
            FirstFactor::Passkey => vec![second.unwrap_or("swk"), "user"],
            // No RFC 8176 name covers "another provider authenticated the user"; `fed`
            // (federated) says it, and a second factor follows as for a password.
            FirstFactor::Provider => std::iter::once("fed").chain(second).collect(),
        };
        names.into_iter().map(str::to_owned).collect()
    }
}

/// What opened a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum FirstFactor {
    Password,
    Passkey,
    /// Another identity provider (OpenID Connect, OAuth 2.0): AAL1, like a password.
    Provider,
}

impl FirstFactor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "PASSWORD",
            Self::Passkey => "PASSKEY",
            Self::Provider => "PROVIDER",
        }
    }
}

impl ToSql<Text, Pg> for FirstFactor {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for FirstFactor {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        match <String as FromSql<Text, Pg>>::from_sql(bytes)?.as_str() {
            "PASSWORD" => Ok(Self::Password),
            "PASSKEY" => Ok(Self::Passkey),
            "PROVIDER" => Ok(Self::Provider),
            other => Err(format!("unknown sign-in method {other:?}").into()),
        }
    }
}

/// How strongly a session was authenticated (NIST SP 800-63B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Assurance {
    /// A password alone.
    Aal1,
    /// A password and a second factor.
    Aal2,
}

impl Assurance {
    /// The level of a session that has (or has not) passed a second factor.
    pub fn reached(second_factor_passed: bool) -> Self {
        if second_factor_passed { Self::Aal2 } else { Self::Aal1 }
    }

    /// The `aal` claim's value.
    pub fn claim(self) -> &'static str {
        match self {
            Self::Aal1 => "aal1",
            Self::Aal2 => "aal2",
        }
    }

    /// The value of an `aal` claim; anything unknown reads as the weakest.
    pub fn from_claim(claim: &str) -> Self {
        if claim == "aal2" { Self::Aal2 } else { Self::Aal1 }
    }
}

/// Which second factor a session passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum SecondFactor {
    Totp,
    RecoveryCode,
    /// A passkey bound to its device (no BE flag).
    Passkey,
    /// A passkey that may be synced across its owner's devices (BE flag).
    SyncedPasskey,
}

impl SecondFactor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "TOTP",
            Self::RecoveryCode => "RECOVERY_CODE",
            Self::Passkey => "PASSKEY",
            Self::SyncedPasskey => "SYNCED_PASSKEY",
        }
    }

    /// A passkey, device-bound or synced as its backup-eligible flag says.
    pub fn passkey(backup_eligible: bool) -> Self {
        if backup_eligible { Self::SyncedPasskey } else { Self::Passkey }
    }

    /// Its name in the `amr` claim.
    fn amr(self) -> &'static str {
        match self {
            Self::Totp | Self::RecoveryCode => "otp",
            Self::Passkey => "hwk",
            Self::SyncedPasskey => "swk",
        }
    }
}

impl ToSql<Text, Pg> for SecondFactor {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for SecondFactor {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        match <String as FromSql<Text, Pg>>::from_sql(bytes)?.as_str() {
            "TOTP" => Ok(Self::Totp),
            "RECOVERY_CODE" => Ok(Self::RecoveryCode),
            "PASSKEY" => Ok(Self::Passkey),
            "SYNCED_PASSKEY" => Ok(Self::SyncedPasskey),
            other => Err(format!("unknown second factor {other:?}").into()),
        }
    }
}

/// A TOTP factor as stored: confirmed, or waiting for its first code.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = totp_factors, check_for_backend(Pg))]
pub struct TotpFactor {
    pub id: Uuid,
    pub user_id: UserId,
    pub key_id: String,
    pub sealed: Vec<u8>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The last step a code was accepted for (see `mfa::totp`).
    pub last_step: Option<i64>,
}

/// A registered passkey. `credential` is webauthn-rs's record of it (public key,
/// algorithm, flags); `sign_count` the authenticator's counter as last accepted.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = passkeys, check_for_backend(Pg))]
pub struct PasskeyRow {
    pub id: PasskeyId,
    pub user_id: UserId,
    pub credential_id: Vec<u8>,
    pub credential: serde_json::Value,
    pub name: String,
    pub backed_up: bool,
    pub backup_eligible: bool,
    pub transports: Vec<String>,
    pub sign_count: i64,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// When its counter went backwards (a cloned authenticator): refused since.
    pub flagged_at: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = passkeys)]
pub struct NewPasskey<'a> {
    pub user_id: UserId,
    pub credential_id: &'a [u8],
    pub credential: &'a serde_json::Value,
    pub name: &'a str,
    pub backed_up: bool,
    pub backup_eligible: bool,
    pub transports: &'a [String],
    pub sign_count: i64,
}

/// A passkey ceremony begun and not yet finished.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = passkey_ceremonies, check_for_backend(Pg))]
pub struct Ceremony {
    pub id: CeremonyId,
    pub kind: String,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub username_key: Option<String>,
    pub state: serde_json::Value,
}

#[derive(Insertable)]
#[diesel(table_name = passkey_ceremonies)]
pub struct NewCeremony<'a> {
    pub kind: &'a str,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub username_key: Option<&'a str>,
    pub network: &'a str,
    pub state: &'a serde_json::Value,
    pub expires_at: DateTime<Utc>,
}

/// An identity at another provider, linked to an account.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = identities, check_for_backend(Pg))]
pub struct IdentityRow {
    pub id: IdentityId,
    pub user_id: UserId,
    /// The configured provider's id (`OIDC_PROVIDERS`).
    pub provider: String,
    /// The provider's stable id for the person.
    pub subject: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = identities)]
pub struct NewIdentity<'a> {
    pub user_id: UserId,
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: Option<&'a str>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A provider flow begun: what its finish needs that must not come from the browser.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = provider_flows, check_for_backend(Pg))]
pub struct ProviderFlow {
    /// `SIGN_IN` or `LINK`.
    pub flow: String,
    pub provider: String,
    pub redirect_uri: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// For a link: the account and session that began it.
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
}

#[derive(Insertable)]
#[diesel(table_name = provider_flows)]
pub struct NewProviderFlow<'a> {
    pub state_hash: &'a [u8],
    pub flow: &'a str,
    pub provider: &'a str,
    pub redirect_uri: &'a str,
    pub nonce: &'a str,
    pub pkce_verifier: &'a str,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub network: &'a str,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = recovery_codes, check_for_backend(Pg))]
pub struct RecoveryCode {
    pub id: Uuid,
    pub code_hash: String,
}

#[derive(Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession<'a> {
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    pub max_expires_at: DateTime<Utc>,
    pub user_agent: Option<&'a str>,
    pub signed_in_with: FirstFactor,
    /// Set (to the opening moment) for a session opened at AAL2: a passkey sign-in.
    pub mfa_at: Option<DateTime<Utc>>,
    pub mfa_method: Option<SecondFactor>,
    /// The ADMIN acting, for an impersonation's session.
    pub impersonator_id: Option<UserId>,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = refresh_tokens, check_for_backend(Pg))]
pub struct RefreshToken {
    pub id: Uuid,
    pub session_id: SessionId,
    pub token_hash: Vec<u8>,
    pub parent_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct NewRefreshToken<'a> {
    pub session_id: SessionId,
    pub token_hash: &'a [u8],
    pub parent_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
}

/// What an email token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "VERIFY_EMAIL",
            Purpose::ResetPassword => "RESET_PASSWORD",
        }
    }
}

impl ToSql<Text, Pg> for Purpose {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for Purpose {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        match <String as FromSql<Text, Pg>>::from_sql(bytes)?.as_str() {
            "VERIFY_EMAIL" => Ok(Purpose::VerifyEmail),
            "RESET_PASSWORD" => Ok(Purpose::ResetPassword),
            other => Err(format!("unknown email token purpose {other:?}").into()),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = email_tokens, check_for_backend(Pg))]
pub struct EmailToken {
    pub id: Uuid,
    pub user_id: UserId,
    pub purpose: Purpose,
    /// The address the message went to: for a verification, the address it verifies.
    pub email: String,
    pub code_hash: Vec<u8>,
    pub attempts: i32,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub superseded_at: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = email_tokens)]
pub struct NewEmailToken<'a> {
    pub user_id: UserId,
    pub purpose: Purpose,
    pub email: &'a str,
    pub token_hash: &'a [u8],
    pub code_hash: &'a [u8],
    pub expires_at: DateTime<Utc>,
}

/// A row of the outbox as a sender claims it.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = outbox, check_for_backend(Pg))]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    pub subject: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
}

/// A message ready to send.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewMessage {
    pub kind: &'static str,
    pub recipient: String,
    pub subject: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
}
