//! Queries on `users`.

use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::email_address::EmailAddress;

use super::{
    change::Change,
    ids::{SessionId, UserId},
    models::{Assurance, NewUser, Role, User, UserChanges},
    schema::{sessions, user_count, users},
};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);
diesel::define_sql_function! {
    /// The text `adminUsers` searches, as the trigram index `users_search` holds it.
    fn users_search_text(
        username: diesel::sql_types::Text,
        name: diesel::sql_types::Text,
        email: diesel::sql_types::Nullable<diesel::sql_types::Text>,
    ) -> diesel::sql_types::Text
}

pub async fn insert(conn: &mut AsyncPgConnection, new: NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table).values(new).returning(User::as_returning()).get_result(conn).await
}

pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table.find(id).select(User::as_select()).first(conn).await.optional()
}

/// The account and its password hash (`None`: created through another provider and
/// no password set), by username in any case.
pub async fn find_credentials(
    conn: &mut AsyncPgConnection,
    username: &str,
) -> QueryResult<Option<(User, Option<String>)>> {
    users::table
        .filter(lower(users::username).eq(username.to_lowercase()))
        .select((User::as_select(), users::password_hash))
        .first(conn)
        .await
        .optional()
}

/// Locks the account's row until the transaction ends, for changes that must happen
/// one at a time per account but touch other tables (a new emailed token supersedes
/// the live one: two at once would both find none live and collide on insert).
pub async fn lock(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<UserId>> {
    users::table.find(id).select(users::id).for_no_key_update().first(conn).await.optional()
}

/// The account's password hash; `None` for an unknown account or one without a password.
pub async fn password_hash(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<String>> {
    let found: Option<Option<String>> =
        users::table.find(id).select(users::password_hash).first(conn).await.optional()?;
    Ok(found.flatten())
}

/// Whether the account has a password (`None` for an unknown account).
pub async fn has_password(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<bool>> {
    users::table.find(id).select(users::password_hash.is_not_null()).first(conn).await.optional()
}

/// The user of a live session and the session's assurance: the guard's one query per
/// request. Also checks that the session belongs to the user the token names.
pub async fn find_by_live_session(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    session_id: SessionId,
) -> QueryResult<Option<(User, Assurance, DateTime<Utc>)>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(session_id))
        .filter(sessions::user_id.eq(user_id))
        .filter(super::sessions::live())
        .select((User::as_select(), sessions::mfa_at.is_not_null(), sessions::expires_at))
        .first::<(User, bool, DateTime<Utc>)>(conn)
        .await
        .optional()
        .map(|found| found.map(|(user, raised, expires_at)| (user, Assurance::reached(raised), expires_at)))
}

/// Up to `limit` users after the keyset position `after`, oldest first, each row with
/// the number of accounts (from the row the triggers keep exact, read once per
/// statement as an uncorrelated subquery), so a page with its total is one statement.
pub async fn page(
    conn: &mut AsyncPgConnection,
    after: Option<(DateTime<Utc>, UserId)>,
    limit: i64,
) -> QueryResult<Vec<(User, Option<i64>)>> {
    let total = user_count::table.select(user_count::total).single_value();
    let mut query = users::table
        .select((User::as_select(), total))
        .order((users::created_at.asc(), users::id.asc()))
        .limit(limit)
        .into_boxed();
    if let Some((created_at, id)) = after {
        query =
            query.filter(users::created_at.gt(created_at).or(users::created_at.eq(created_at).and(users::id.gt(id))));
    }
    query.load(conn).await
}

/// The number of accounts, from the row the triggers of `users` keep exact: one
/// indexed read however many accounts there are.
pub async fn count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    user_count::table.select(user_count::total).first(conn).await
}

pub async fn update(change: &mut Change<'_>, id: UserId, changes: UserChanges<'_>) -> QueryResult<Option<User>> {
    change.touched(id);
    let conn: &mut AsyncPgConnection = change;
    diesel::update(users::table.find(id))
        .set((changes, users::updated_at.eq(now)))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Why a password hash is written: the audit trail records a change or a reset, and
/// nothing for a sign-in that only re-hashes the same password under new parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordWrite {
    Changed,
    Reset,
    Rehash,
}

impl PasswordWrite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "CHANGED",
            Self::Reset => "RESET",
            Self::Rehash => "REHASH",
        }
    }
}

pub async fn set_password_hash(
    change: &mut Change<'_>,
    id: UserId,
    hash: &str,
    why: PasswordWrite,
) -> QueryResult<usize> {
    change.touched(id);
    let conn: &mut AsyncPgConnection = change;
    diesel::sql_query("SELECT set_config('authgraph.password', $1, true)")
        .bind::<diesel::sql_types::Text, _>(why.as_str())
        .execute(conn)
        .await?;
    diesel::update(users::table.find(id))
        .set((users::password_hash.eq(hash), users::updated_at.eq(now)))
        .execute(conn)
        .await
}

/// Sets the password of an account that has none; false when it has one (a
/// concurrent setPassword won), which is left as it was.
pub async fn set_first_password(change: &mut Change<'_>, id: UserId, hash: &str) -> QueryResult<bool> {
    change.touched(id);
    let conn: &mut AsyncPgConnection = change;
    let n = diesel::update(users::table.find(id).filter(users::password_hash.is_null()))
        .set((users::password_hash.eq(hash), users::updated_at.eq(now)))
        .execute(conn)
        .await?;
    Ok(n > 0)
}

/// Sets the account's role (`setUserRole`, `authgraph users set-role`).
pub async fn set_role(change: &mut Change<'_>, id: UserId, role: Role) -> QueryResult<Option<User>> {
    change.touched(id);
    diesel::update(users::table.find(id))
        .set((users::role.eq(role), users::updated_at.eq(now)))
        .returning(User::as_returning())
        .get_result(&mut **change)
        .await
        .optional()
}

/// Bans the account until `until`, or lifts its ban (`None`). Its sessions are the
/// caller's to end; new ones are refused from the commit on (`sessions_refuse_banned`).
pub async fn set_ban(change: &mut Change<'_>, id: UserId, until: Option<DateTime<Utc>>) -> QueryResult<Option<User>> {
    change.touched(id);
    diesel::update(users::table.find(id))
        .set((users::banned_until.eq(until), users::updated_at.eq(now)))
        .returning(User::as_returning())
        .get_result(&mut **change)
        .await
        .optional()
}

/// Whether `id` is an ADMIN in good standing (not banned), and how many others are.
/// Taken under one transaction-wide advisory lock, so two admins demoting, banning or
/// deleting each other at once are judged one after the other: the second sees the
/// first's commit, and the last ADMIN is never removed by a race.
pub async fn admins_besides(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<(bool, i64)> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('authgraph.admins'))").execute(conn).await?;
    let admins: Vec<UserId> = users::table
        .filter(users::role.eq(Role::Admin))
        .filter(users::banned_until.is_null().or(users::banned_until.le(now)))
        .select(users::id)
        .load(conn)
        .await?;
    let is_admin = admins.contains(&id);
    Ok((is_admin, admins.len() as i64 - i64::from(is_admin)))
}

/// What `adminUsers` filters on.
#[derive(Debug, Default, Clone)]
pub struct Search {
    /// Lowercase text every match contains in its username, name or address.
    pub text: Option<String>,
    pub role: Option<Role>,
    /// Banned now (true), or not (false).
    pub banned: Option<bool>,
}

/// The accounts matching `search`, as a query to order, page or count. The text is
/// matched by the trigram index `users_search`; the ban by its partial index.
fn matching(search: &Search) -> users::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = users::table.into_boxed();
    if let Some(text) = &search.text {
        let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        query =
            query.filter(users_search_text(users::username, users::name, users::email).like(format!("%{escaped}%")));
    }
    if let Some(role) = search.role {
        query = query.filter(users::role.eq(role));
    }
    match search.banned {
        Some(true) => query = query.filter(users::banned_until.gt(now)),
        Some(false) => query = query.filter(users::banned_until.is_null().or(users::banned_until.le(now))),
        None => {}
    }
    query
}

/// Up to `limit` accounts matching `search` after the keyset position `after`, oldest
/// first, and (`with_total`) how many match in all.
///
/// Planned for its own values every time (`plan_cache_mode`): the statement is
/// prepared once per connection, and a generic plan, which cannot see how rare a
/// search text or a role is, walks the whole `created_at` index filtering each row
/// (half a second at a million accounts) where the trigram index finds the few
/// matches at once.
pub async fn search(
    conn: &mut AsyncPgConnection,
    search: &Search,
    after: Option<(DateTime<Utc>, UserId)>,
    limit: i64,
    with_total: bool,
) -> QueryResult<(Vec<User>, i64)> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        diesel::sql_query("SET LOCAL plan_cache_mode = force_custom_plan").execute(conn).await?;
        let mut query =
            matching(search).select(User::as_select()).order((users::created_at.asc(), users::id.asc())).limit(limit);
        if let Some((created_at, id)) = after {
            query = query
                .filter(users::created_at.gt(created_at).or(users::created_at.eq(created_at).and(users::id.gt(id))));
        }
        let found = query.load(conn).await?;
        let total = if with_total { matching(search).count().get_result(conn).await? } else { 0 };
        Ok((found, total))
    })
    .await
}

/// Deletes the account; its sessions and refresh tokens go with it (ON DELETE CASCADE).
pub async fn delete(change: &mut Change<'_>, id: UserId) -> QueryResult<bool> {
    change.touched(id);
    let n = diesel::delete(users::table.find(id)).execute(&mut **change).await?;
    Ok(n > 0)
}

pub async fn find_by_username(conn: &mut AsyncPgConnection, username: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(lower(users::username).eq(username.to_lowercase()))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Every account, oldest first (the admin listing).
pub async fn all(conn: &mut AsyncPgConnection) -> QueryResult<Vec<User>> {
    users::table.select(User::as_select()).order((users::created_at.asc(), users::id.asc())).load(conn).await
}

/// The account that has verified `address`'s mailbox (by its key), if any.
pub async fn find_by_verified_email(conn: &mut AsyncPgConnection, address: &EmailAddress) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email_key.eq(address.key()))
        .filter(users::email_verified_at.is_not_null())
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Sets the account's address and marks it verified. A unique violation on
/// `users_verified_email_key` means another account verified it first.
pub async fn set_verified_email(change: &mut Change<'_>, id: UserId, address: &EmailAddress) -> QueryResult<usize> {
    change.touched(id);
    let conn: &mut AsyncPgConnection = change;
    diesel::update(users::table.find(id))
        .set((
            users::email.eq(address.as_str()),
            users::email_key.eq(address.key()),
            users::email_verified_at.eq(now),
            users::updated_at.eq(now),
        ))
        .execute(conn)
        .await
}

/// Sets the account's address, verified now or not at all (the operator's command).
pub async fn set_email(
    change: &mut Change<'_>,
    id: UserId,
    address: &EmailAddress,
    verified: bool,
) -> QueryResult<usize> {
    change.touched(id);
    let conn: &mut AsyncPgConnection = change;
    let verified_at = verified.then(Utc::now);
    diesel::update(users::table.find(id))
        .set((
            users::email.eq(address.as_str()),
            users::email_key.eq(address.key()),
            users::email_verified_at.eq(verified_at),
            users::updated_at.eq(now),
        ))
        .execute(conn)
        .await
}
