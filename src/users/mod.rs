//! Accounts: listing, reading, editing and deleting them, and who may do which.

pub mod validate;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};

use crate::{
    change::Changes,
    db::{
        self, DbPool,
        change::{ORIGIN, Origin},
        ids::UserId,
        models::{User, UserChanges},
    },
    error::{AppError, AppResult},
};

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

/// One page of `users`, oldest first.
pub struct UserPage {
    pub users: Vec<User>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub total_count: i64,
}

/// `users(first, after)`: keyset pagination on (created_at, id), so pages never skip
/// or repeat a user when others sign up meanwhile.
///
/// `totalCount` is read from a count the database keeps with every insert and delete
/// (see the `count_users` migration), in the page's own statement. Only a page past
/// the end, which has no row to carry it, reads it on its own, and only when the
/// client asks for it (`with_total`); otherwise it is reported as 0 there.
pub async fn page(pool: &DbPool, first: Option<i32>, after: Option<&str>, with_total: bool) -> AppResult<UserPage> {
    let first = page_size(first)?;
    let position = after.map(decode_cursor).transpose()?;
    let (mut users, total_count) = db::read(pool, |conn| {
        Box::pin(async move {
            let rows = db::users::page(conn, position, i64::from(first) + 1).await?;
            // The total comes with the rows; an empty page (past the end) asks for it.
            let total = match rows.first() {
                Some((_, total)) => total.unwrap_or_default(),
                None if with_total => db::users::count(conn).await?,
                None => 0,
            };
            Ok((rows.into_iter().map(|(user, _)| user).collect::<Vec<_>>(), total))
        })
    })
    .await?;
    let has_next_page = users.len() > first as usize;
    users.truncate(first as usize);
    Ok(UserPage { users, has_next_page, has_previous_page: position.is_some(), total_count })
}

/// A page's size: `first`, 1 to `MAX_PAGE_SIZE`, by default `DEFAULT_PAGE_SIZE`.
pub fn page_size(first: Option<i32>) -> AppResult<i32> {
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(AppError::bad_input("first", format!("first must be between 1 and {MAX_PAGE_SIZE}")));
    }
    Ok(first)
}

/// The opaque cursor of a user in `users` (and `adminUsers`).
pub fn cursor(user: &User) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", user.created_at.timestamp_micros(), user.id))
}

/// The keyset position of a cursor from `cursor`.
pub fn decode_cursor(cursor: &str) -> AppResult<(DateTime<Utc>, UserId)> {
    let bad = || AppError::bad_input("after", "after is not a cursor from this API");
    let text = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&text).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (Some("v1"), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id = id.parse().map_err(|_| bad())?;
    Ok((created_at, id))
}

/// Parses a GraphQL `ID` argument as a user id.
pub fn parse_id(id: &str) -> AppResult<UserId> {
    parse_id_of("id", id)
}

/// Parses the GraphQL `ID` argument `field` as a user id.
pub fn parse_id_of(field: &'static str, id: &str) -> AppResult<UserId> {
    id.parse().map_err(|_| AppError::bad_input(field, format!("{field} is not a valid user id")))
}

/// `user(id)`: public.
pub async fn get(pool: &DbPool, id: &str) -> AppResult<Option<User>> {
    let id = parse_id(id)?;
    db::read(pool, |conn| Box::pin(db::users::find(conn, id))).await
}

/// Only the account's owner, or an admin who passes the admin rule (`as_admin`: the
/// caller's `auth::Caller::admin`, which the resolver checked), may change or delete
/// it. Checked before looking the id up, so a stranger cannot learn which ids exist.
fn authorize(actor: &User, as_admin: AppResult<()>, target: UserId) -> AppResult<()> {
    if actor.id == target { Ok(()) } else { as_admin }
}

/// The origin of a change `actor` makes to `target`: the door's, naming the actor when
/// it is an admin acting on another account (its audit rows say who).
fn acting_on(actor: &User, target: UserId) -> Origin {
    Origin::acting(Some(actor.id).filter(|id| *id != target))
}

/// `updateUser`: name and username; the role is not editable here.
pub async fn update(
    changes: &Changes,
    actor: &User,
    as_admin: AppResult<()>,
    id: &str,
    name: Option<&str>,
    username: Option<&str>,
) -> AppResult<User> {
    let id = parse_id(id)?;
    authorize(actor, as_admin, id)?;
    let name = name.map(validate::name).transpose()?;
    let username = username.map(validate::username).transpose()?;
    let updated = ORIGIN
        .scope(
            acting_on(actor, id),
            changes.run(async |c| {
                let edits = UserChanges { name: name.as_deref(), username };
                if edits.name.is_none() && edits.username.is_none() {
                    return Ok(db::users::find(c, id).await?);
                }
                db::users::update(c, id, edits).await.map_err(|e| match db::unique_violation(&e) {
                    Some("users_username_lower_key") => AppError::UsernameTaken,
                    _ => e.into(),
                })
            }),
        )
        .await?;
    updated.ok_or(AppError::NotFound)
}

/// `deleteUser`: removes the account; its sessions end with it (cascade), so its
/// access tokens stop working at once. The last ADMIN in good standing is not removed
/// (see `db::users::admins_besides`), not even by itself.
pub async fn delete(changes: &Changes, actor: &User, as_admin: AppResult<()>, id: &str) -> AppResult<()> {
    let id = parse_id(id)?;
    authorize(actor, as_admin, id)?;
    let deleted = ORIGIN
        .scope(
            acting_on(actor, id),
            changes.run(async |c| {
                if db::users::admins_besides(c, id).await? == (true, 0) {
                    return Err(AppError::LastAdmin);
                }
                Ok(db::users::delete(c, id).await?)
            }),
        )
        .await?;
    if deleted { Ok(()) } else { Err(AppError::NotFound) }
}

/// The admin CLI's `users set-email`: the address, verified at once or not.
pub async fn set_email(changes: &Changes, username: &str, address: &str, verified: bool) -> anyhow::Result<User> {
    let address = validate::email("address", address).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    changes
        .run(async |c| {
            let Some(user) = db::users::find_by_username(c, username).await? else {
                return Ok(Err(anyhow::anyhow!("no user named {username:?}")));
            };
            if let Some(other) = db::users::find_by_verified_email(c, &address).await?
                && other.id != user.id
            {
                return Ok(Err(anyhow::anyhow!("{address} is the verified address of {}", other.username)));
            }
            match db::users::set_email(c, user.id, &address, verified).await {
                Err(e) if db::unique_violation(&e) == Some("users_verified_email_key") => {
                    return Ok(Err(anyhow::anyhow!("{address} was just verified by another account")));
                }
                other => other?,
            };
            Ok(db::users::find(c, user.id).await?.ok_or_else(|| anyhow::anyhow!("{username:?} was deleted")))
        })
        .await
        .map_err(cli_error)?
}

/// The command line's form of an error: what the log would say.
fn cli_error(err: AppError) -> anyhow::Error {
    anyhow::anyhow!("{err:?}")
}
