//! Queries on `sessions`.

use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{
    change::Change,
    ids::{SessionId, UserId},
    models::{NewSession, Session},
    schema::sessions,
};

/// Why a session ended, kept in `revoked_reason` for audits.
#[derive(Debug, Clone, Copy)]
pub enum EndReason {
    Logout,
    Reuse,
    PasswordChanged,
    /// `resetPassword` ended every session of the account.
    PasswordReset,
    /// An admin's `endUserSessions`, or an operator's `authgraph users revoke-sessions`.
    Admin,
    /// The account was banned.
    Banned,
    /// `disableTotp` ended the account's other sessions.
    MfaDisabled,
    /// An operator's `authgraph users reset-mfa` ended every session.
    MfaReset,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "LOGOUT",
            Self::Reuse => "REUSE",
            Self::PasswordChanged => "PASSWORD_CHANGED",
            Self::PasswordReset => "PASSWORD_RESET",
            Self::Admin => "ADMIN",
            Self::Banned => "BANNED",
            Self::MfaDisabled => "MFA_DISABLED",
            Self::MfaReset => "MFA_RESET",
        }
    }
}

pub async fn insert(conn: &mut AsyncPgConnection, new: NewSession<'_>) -> QueryResult<Session> {
    diesel::insert_into(sessions::table).values(new).returning(Session::as_returning()).get_result(conn).await
}

/// The user's sessions that can still be refreshed, newest first.
/// When the live session `id` was opened, and how: what a re-authentication window
/// is measured from.
pub async fn opened(
    conn: &mut AsyncPgConnection,
    id: SessionId,
) -> QueryResult<Option<(DateTime<Utc>, super::models::FirstFactor)>> {
    sessions::table
        .find(id)
        .filter(live())
        .select((sessions::created_at, sessions::signed_in_with))
        .first(conn)
        .await
        .optional()
}

/// One session, live or not.
pub async fn find(conn: &mut AsyncPgConnection, id: SessionId) -> QueryResult<Option<Session>> {
    sessions::table.find(id).select(Session::as_select()).first(conn).await.optional()
}

pub async fn list_live(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<Vec<Session>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(live())
        .order(sessions::created_at.desc())
        .select(Session::as_select())
        .load(conn)
        .await
}

/// Records a use of the session and moves its expiry.
pub async fn touch(conn: &mut AsyncPgConnection, id: SessionId, expires_at: DateTime<Utc>) -> QueryResult<usize> {
    diesel::update(sessions::table.find(id))
        .set((sessions::last_used_at.eq(now), sessions::expires_at.eq(expires_at)))
        .execute(conn)
        .await
}

/// The one spelling of "this session is live": not ended, not expired, by the
/// database's clock. Every query that asks uses it.
#[diesel::dsl::auto_type]
pub fn live() -> _ {
    sessions::revoked_at.is_null().and(sessions::expires_at.gt(now))
}

/// Ends one session, and with it its refresh tokens (which check the session). Returns
/// whether it was live.
pub async fn end(change: &mut Change<'_>, id: SessionId, reason: EndReason) -> QueryResult<bool> {
    Ok(end_many(change, &[id], reason).await? > 0)
}

/// Ends one session of `user_id` (nothing when `id` is another account's). Returns
/// whether it was live.
pub async fn end_of_user(
    change: &mut Change<'_>,
    user_id: UserId,
    id: SessionId,
    reason: EndReason,
) -> QueryResult<bool> {
    let ids: Vec<SessionId> = sessions::table
        .filter(sessions::id.eq(id))
        .filter(sessions::user_id.eq(user_id))
        .select(sessions::id)
        .load(&mut **change)
        .await?;
    Ok(end_many(change, &ids, reason).await? > 0)
}

/// Ends every live session of the user, except `keep` when given.
pub async fn end_all(
    change: &mut Change<'_>,
    user_id: UserId,
    keep: Option<SessionId>,
    reason: EndReason,
) -> QueryResult<usize> {
    let mut target = sessions::table.filter(sessions::user_id.eq(user_id)).filter(live()).into_boxed();
    if let Some(keep) = keep {
        target = target.filter(sessions::id.ne(keep));
    }
    // Boxed queries cannot be update targets; select the ids instead.
    let ids: Vec<SessionId> = target.select(sessions::id).load(&mut **change).await?;
    end_many(change, &ids, reason).await
}

async fn end_many(change: &mut Change<'_>, ids: &[SessionId], reason: EndReason) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    // The session row alone decides; its token rows are left alone, so ending a session
    // locks only session rows. A rotation locks the session row first and then its
    // token (`refresh_tokens::rotate`): both take session rows before anything else,
    // so the two cannot wait on each other in a cycle.
    let owners: Vec<UserId> = diesel::update(sessions::table.filter(sessions::id.eq_any(ids)).filter(live()))
        .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(reason.as_str())))
        .returning(sessions::user_id)
        .get_results(&mut **change)
        .await?;
    for owner in &owners {
        change.touched(*owner);
    }
    Ok(owners.len())
}

/// Which of `ids` are live: one query, however many.
pub async fn live_among(conn: &mut AsyncPgConnection, ids: &[SessionId]) -> QueryResult<Vec<SessionId>> {
    sessions::table.filter(sessions::id.eq_any(ids)).filter(live()).select(sessions::id).load(conn).await
}

/// Live sessions per user, for the admin listing.
pub async fn live_counts(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(UserId, i64)>> {
    sessions::table
        .filter(live())
        .group_by(sessions::user_id)
        .select((sessions::user_id, diesel::dsl::count_star()))
        .load(conn)
        .await
}

/// Deletes sessions that expired or were revoked before `cutoff`, with their tokens.
pub async fn prune(conn: &mut AsyncPgConnection, cutoff: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::expires_at.lt(cutoff).or(sessions::revoked_at.lt(cutoff))))
        .execute(conn)
        .await
}
