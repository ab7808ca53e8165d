//! Queries on `email_tokens`: the link tokens (by their SHA-256) and codes (by their
//! HMAC) of verification and reset messages.

use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    ids::{HashedToken, UserId},
    models::{EmailToken, NewEmailToken, Purpose},
    schema::email_tokens,
};

/// Ends the live token of `purpose` of an account, if any: a newer message supersedes it.
pub async fn supersede(conn: &mut AsyncPgConnection, user_id: UserId, purpose: Purpose) -> QueryResult<usize> {
    diesel::update(
        email_tokens::table
            .filter(email_tokens::user_id.eq(user_id))
            .filter(email_tokens::purpose.eq(purpose))
            .filter(email_tokens::used_at.is_null())
            .filter(email_tokens::superseded_at.is_null()),
    )
    .set(email_tokens::superseded_at.eq(now))
    .execute(conn)
    .await
}

pub async fn insert(conn: &mut AsyncPgConnection, new: NewEmailToken<'_>) -> QueryResult<Uuid> {
    diesel::insert_into(email_tokens::table).values(new).returning(email_tokens::id).get_result(conn).await
}

/// The token with this link token's hash, locked, and whether it has expired (by the
/// database's clock).
pub async fn lock_by_hash(conn: &mut AsyncPgConnection, hash: &HashedToken) -> QueryResult<Option<(EmailToken, bool)>> {
    email_tokens::table
        .filter(email_tokens::token_hash.eq(hash.as_bytes()))
        .select((EmailToken::as_select(), email_tokens::expires_at.le(now)))
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The most recent token of `purpose` of an account, locked, and whether it has
/// expired. The most recent, live or not, so that a code of a superseded or used
/// message is told apart from no message at all.
pub async fn lock_latest(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    purpose: Purpose,
) -> QueryResult<Option<(EmailToken, bool)>> {
    email_tokens::table
        .filter(email_tokens::user_id.eq(user_id))
        .filter(email_tokens::purpose.eq(purpose))
        .order(email_tokens::created_at.desc())
        .select((EmailToken::as_select(), email_tokens::expires_at.le(now)))
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Counts one try of a token's code; the count after it.
pub async fn count_attempt(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<i32> {
    diesel::update(email_tokens::table.find(id))
        .set(email_tokens::attempts.eq(email_tokens::attempts + 1))
        .returning(email_tokens::attempts)
        .get_result(conn)
        .await
}

pub async fn mark_used(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::update(email_tokens::table.find(id)).set(email_tokens::used_at.eq(now)).execute(conn).await
}

/// Deletes tokens that ended (used, superseded or expired) before `cutoff`.
pub async fn delete_ended_before(
    conn: &mut AsyncPgConnection,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> QueryResult<usize> {
    diesel::delete(
        email_tokens::table.filter(
            email_tokens::expires_at
                .lt(cutoff)
                .or(email_tokens::used_at.lt(cutoff))
                .or(email_tokens::superseded_at.lt(cutoff)),
        ),
    )
    .execute(conn)
    .await
}
