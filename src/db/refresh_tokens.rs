//! Queries on `refresh_tokens`. Tokens are looked up by the SHA-256 of their text.

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    query_builder::{AstPass, QueryFragment, QueryId},
    sql_types::{Bytea, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    ids::{HashedToken, SessionId},
    models::{NewRefreshToken, RefreshToken, Session, User},
    schema::{refresh_tokens, sessions, users},
};

pub async fn insert(conn: &mut AsyncPgConnection, new: NewRefreshToken<'_>) -> QueryResult<RefreshToken> {
    diesel::insert_into(refresh_tokens::table)
        .values(new)
        .returning(RefreshToken::as_returning())
        .get_result(conn)
        .await
}

/// A presented token with its session, its account and the database's clock, in one
/// read that takes no lock: what a rotation decides by. The write that follows
/// (`rotate`) re-checks everything that could have changed since, so a decision made
/// on this read never outlives a concurrent logout, rotation or verifyMfa. `now` is
/// the clock that wrote `used_at`: a rotation compares times on that one clock, never
/// with the server's.
pub async fn find_for_rotation(
    conn: &mut AsyncPgConnection,
    hash: &HashedToken,
) -> QueryResult<Option<(RefreshToken, Session, User, DateTime<Utc>)>> {
    refresh_tokens::table
        .inner_join(sessions::table.inner_join(users::table))
        .filter(refresh_tokens::token_hash.eq(hash.as_bytes()))
        .select((RefreshToken::as_select(), Session::as_select(), User::as_select(), super::database_now()))
        .first(conn)
        .await
        .optional()
}

/// One rotation's writes (see `rotate`).
pub struct Rotate<'a> {
    pub session_id: SessionId,
    pub parent_id: Uuid,
    /// When the parent was made: a token older than the session's
    /// `refresh_tokens_since` (verifyMfa started a new chain) does not rotate.
    pub parent_created_at: DateTime<Utc>,
    pub child_hash: &'a HashedToken,
    /// The child's expiry, and the session's new one.
    pub expires_at: DateTime<Utc>,
}

/// Rotates in one statement, atomic without a transaction: touches the session if it is
/// still live and the parent still belongs to its current chain, marks the parent used
/// if nobody has yet, and inserts the child only when both happened. Under READ
/// COMMITTED each `UPDATE` that meets a concurrent writer's row waits for it and
/// re-checks its `WHERE` on the row it committed, so of any number of concurrent
/// rotations of one token exactly one marks it, and a rotation that waited on a
/// logout or verifyMfa writes nothing. Returns whether it rotated; `false` means the
/// caller's read is out of date and must be made again.
///
/// The session row is locked before the token row, as every other writer of session
/// rows (logout, password change, verifyMfa) locks session rows only: no cycle.
pub async fn rotate(conn: &mut AsyncPgConnection, rotation: Rotate<'_>) -> QueryResult<bool> {
    Ok(rotation.execute(conn).await? == 1)
}

/// The statement is written by hand (Diesel has no data-modifying `WITH`), as a query
/// type of its own rather than `sql_query`, so that it has a static id and the
/// connection prepares it once instead of parsing and planning it on every refresh.
impl QueryFragment<Pg> for Rotate<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH live AS (UPDATE sessions SET last_used_at = now(), expires_at = ");
        out.push_bind_param::<Timestamptz, _>(&self.expires_at)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<SqlUuid, _>(&self.session_id)?;
        out.push_sql(" AND revoked_at IS NULL AND expires_at > now() AND (refresh_tokens_since IS NULL OR refresh_tokens_since <= ");
        out.push_bind_param::<Timestamptz, _>(&self.parent_created_at)?;
        out.push_sql(
            ") RETURNING id), parent AS (UPDATE refresh_tokens SET used_at = now() \
             WHERE used_at IS NULL AND EXISTS (SELECT 1 FROM live) AND id = ",
        );
        out.push_bind_param::<SqlUuid, _>(&self.parent_id)?;
        out.push_sql(
            " RETURNING id, session_id) \
             INSERT INTO refresh_tokens (session_id, token_hash, parent_id, expires_at) SELECT session_id, ",
        );
        out.push_bind_param::<Bytea, _>(self.child_hash.as_bytes())?;
        out.push_sql(", id, ");
        out.push_bind_param::<Timestamptz, _>(&self.expires_at)?;
        out.push_sql(" FROM parent");
        Ok(())
    }
}

impl QueryId for Rotate<'_> {
    type QueryId = Rotate<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

pub async fn find_by_hash(conn: &mut AsyncPgConnection, hash: &HashedToken) -> QueryResult<Option<RefreshToken>> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash.as_bytes()))
        .select(RefreshToken::as_select())
        .first(conn)
        .await
        .optional()
}
