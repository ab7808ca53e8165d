//! Queries on `passkeys` and `passkey_ceremonies`.
//!
//! A ceremony is opened within its network's bound (`network_slots`), and finished by one
//! `DELETE … RETURNING`: of two concurrent finishes of one challenge, exactly one gets
//! the row. An assertion is accepted by one conditional UPDATE that moves the counter
//! forward, so two uses of one counter value cannot both pass.

use diesel::{IntoSql, dsl::now, prelude::*};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

pub use super::network_slots::Refused;
use super::{
    change::Change,
    ids::{CeremonyId, PasskeyId, UserId},
    models::{Ceremony, NewCeremony, NewPasskey, PasskeyRow},
    network_slots::{Slots, make_room},
    schema::{passkey_ceremonies, passkeys, users},
};

/// Opens a ceremony, keeping at most `per_network` open for its network (refused
/// beyond) and at most `per_account` for its account (the oldest replaced). Expired
/// ceremonies of the network go first.
pub async fn open_ceremony(
    conn: &mut AsyncPgConnection,
    new: NewCeremony<'_>,
    per_network: u32,
    per_account: u32,
) -> QueryResult<Result<CeremonyId, Refused>> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        if let Err(refused) = make_room(conn, Slots::PasskeyCeremonies, new.network, per_network).await? {
            return Ok(Err(refused));
        }
        if let Some(user_id) = new.user_id {
            // Keep the newest `per_account - 1`, so this one makes `per_account`.
            let older: Vec<CeremonyId> = passkey_ceremonies::table
                .filter(passkey_ceremonies::user_id.eq(user_id))
                .order(passkey_ceremonies::created_at.desc())
                .select(passkey_ceremonies::id)
                .offset(i64::from(per_account) - 1)
                .load(conn)
                .await?;
            if !older.is_empty() {
                diesel::delete(passkey_ceremonies::table.filter(passkey_ceremonies::id.eq_any(older)))
                    .execute(conn)
                    .await?;
            }
        }
        let id = diesel::insert_into(passkey_ceremonies::table)
            .values(new)
            .returning(passkey_ceremonies::id)
            .get_result(conn)
            .await?;
        Ok(Ok(id))
    })
    .await
}

/// Takes an open ceremony of `kind`: deletes it and returns it, or `None` when it is
/// unknown, already taken, expired or of another kind.
pub async fn take_ceremony(conn: &mut AsyncPgConnection, id: CeremonyId, kind: &str) -> QueryResult<Option<Ceremony>> {
    diesel::delete(
        passkey_ceremonies::table
            .find(id)
            .filter(passkey_ceremonies::kind.eq(kind))
            .filter(passkey_ceremonies::expires_at.gt(now)),
    )
    .returning(Ceremony::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Deletes expired ceremonies everywhere (maintenance).
pub async fn prune_ceremonies(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::delete(passkey_ceremonies::table.filter(passkey_ceremonies::expires_at.le(now))).execute(conn).await
}

/// The account's passkeys, newest first.
pub async fn list(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<Vec<PasskeyRow>> {
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .order(passkeys::created_at.desc())
        .select(PasskeyRow::as_select())
        .load(conn)
        .await
}

/// How many passkeys the account has.
pub async fn count(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<i64> {
    passkeys::table.filter(passkeys::user_id.eq(user_id)).count().get_result(conn).await
}

/// The passkey an assertion names, by the authenticator's credential id.
pub async fn find_by_credential(conn: &mut AsyncPgConnection, credential_id: &[u8]) -> QueryResult<Option<PasskeyRow>> {
    passkeys::table
        .filter(passkeys::credential_id.eq(credential_id))
        .select(PasskeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Stores a new passkey; marks the account as having a second factor. Returns the
/// row and whether it is the account's first factor.
pub async fn insert(change: &mut Change<'_>, new: NewPasskey<'_>) -> QueryResult<(PasskeyRow, bool)> {
    change.touched(new.user_id);
    let user_id = new.user_id;
    let conn: &mut AsyncPgConnection = change;
    let row =
        diesel::insert_into(passkeys::table).values(new).returning(PasskeyRow::as_returning()).get_result(conn).await?;
    let first = diesel::update(users::table.find(user_id).filter(users::mfa_enabled_at.is_null()))
        .set((users::mfa_enabled_at.eq(now), users::updated_at.eq(now)))
        .execute(conn)
        .await?;
    Ok((row, first == 1))
}

/// Accepts an assertion's counter: true if it moved the stored one forward (or both
/// are zero, as synced passkeys keep them), storing the library's updated record.
pub async fn accept_use(
    conn: &mut AsyncPgConnection,
    id: PasskeyId,
    sign_count: i64,
    credential: &serde_json::Value,
    backed_up: bool,
) -> QueryResult<bool> {
    let both_zero = passkeys::sign_count.eq(0).and((sign_count == 0).into_sql::<diesel::sql_types::Bool>());
    let forward = passkeys::sign_count.lt(sign_count).or(both_zero);
    let accepted = diesel::update(passkeys::table.find(id).filter(passkeys::flagged_at.is_null()).filter(forward))
        .set((
            passkeys::sign_count.eq(sign_count),
            passkeys::credential.eq(credential),
            passkeys::backed_up.eq(backed_up),
            passkeys::last_used_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(accepted == 1)
}

/// Marks a passkey whose counter went backwards: refused from now on.
pub async fn flag(change: &mut Change<'_>, id: PasskeyId, user_id: UserId) -> QueryResult<usize> {
    change.touched(user_id);
    let conn: &mut AsyncPgConnection = change;
    diesel::update(passkeys::table.find(id).filter(passkeys::flagged_at.is_null()))
        .set(passkeys::flagged_at.eq(now))
        .execute(conn)
        .await
}

/// Renames one of the account's passkeys.
pub async fn rename(
    change: &mut Change<'_>,
    user_id: UserId,
    id: PasskeyId,
    name: &str,
) -> QueryResult<Option<PasskeyRow>> {
    change.touched(user_id);
    let conn: &mut AsyncPgConnection = change;
    diesel::update(passkeys::table.find(id).filter(passkeys::user_id.eq(user_id)))
        .set(passkeys::name.eq(name))
        .returning(PasskeyRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes one of the account's passkeys, the account's row locked first so that
/// concurrent deletions see each other. Returns whether it was there.
pub async fn delete(change: &mut Change<'_>, user_id: UserId, id: PasskeyId) -> QueryResult<bool> {
    change.touched(user_id);
    let conn: &mut AsyncPgConnection = change;
    let deleted = diesel::delete(passkeys::table.find(id).filter(passkeys::user_id.eq(user_id))).execute(conn).await?;
    Ok(deleted == 1)
}
