//! Queries on `refresh_tokens`. Tokens are looked up by the SHA-256 of their text.

use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*, sql_types::Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    ids::HashedToken,
    models::{NewRefreshToken, RefreshToken},
    schema::refresh_tokens,
};

pub async fn insert(conn: &mut AsyncPgConnection, new: NewRefreshToken<'_>) -> QueryResult<RefreshToken> {
    diesel::insert_into(refresh_tokens::table)
        .values(new)
        .returning(RefreshToken::as_returning())
        .get_result(conn)
        .await
}

/// Finds a token and locks its row until the transaction ends: concurrent refreshes
/// of one token queue here, and each sees the outcome of the one before it. Also
/// returns the database's clock, which wrote `used_at`: the rotation compares times
/// on that one clock, never with the server's.
pub async fn lock_by_hash(
    conn: &mut AsyncPgConnection,
    hash: &HashedToken,
) -> QueryResult<Option<(RefreshToken, DateTime<Utc>)>> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash.as_bytes()))
        .select((RefreshToken::as_select(), diesel::dsl::sql::<Timestamptz>("now()")))
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_hash(conn: &mut AsyncPgConnection, hash: &HashedToken) -> QueryResult<Option<RefreshToken>> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash.as_bytes()))
        .select(RefreshToken::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn mark_used(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::update(refresh_tokens::table.find(id)).set(refresh_tokens::used_at.eq(now)).execute(conn).await
}
