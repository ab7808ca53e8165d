//! Queries on `identities` and `provider_flows`.
//!
//! A flow is opened within its network's bound (`network_slots`), and taken by one
//! `DELETE … RETURNING` on the hash of its state: of two concurrent finishes of one
//! state, exactly one gets the row.

use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{
    change::Change,
    ids::{IdentityId, UserId},
    models::{IdentityRow, NewIdentity, NewProviderFlow, ProviderFlow},
    network_slots::{Refused, Slots, make_room},
    schema::{identities, passkeys, provider_flows, users},
};

/// Opens a flow, keeping at most `per_network` open for its network (refused beyond).
/// Expired flows of the network go first.
pub async fn open_flow(
    conn: &mut AsyncPgConnection,
    new: NewProviderFlow<'_>,
    per_network: u32,
) -> QueryResult<Result<(), Refused>> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        if let Err(refused) = make_room(conn, Slots::ProviderFlows, new.network, per_network).await? {
            return Ok(Err(refused));
        }
        diesel::insert_into(provider_flows::table).values(new).execute(conn).await?;
        Ok(Ok(()))
    })
    .await
}

/// Takes the live flow of kind `flow` whose state hashes to `state_hash` (and, given
/// `account`, that this account began): deletes it and returns it, or `None` when it
/// is unknown, already taken, expired, or another kind's or account's, which is left
/// as it was.
pub async fn take_flow(
    conn: &mut AsyncPgConnection,
    state_hash: &[u8],
    flow: &str,
    account: Option<UserId>,
) -> QueryResult<Option<ProviderFlow>> {
    let mut target = provider_flows::table
        .filter(provider_flows::state_hash.eq(state_hash))
        .filter(provider_flows::flow.eq(flow))
        .filter(provider_flows::expires_at.gt(now))
        .into_boxed();
    if let Some(account) = account {
        target = target.filter(provider_flows::user_id.eq(account));
    }
    let found: Option<uuid::Uuid> = target.select(provider_flows::id).first(conn).await.optional()?;
    let Some(id) = found else { return Ok(None) };
    // The DELETE decides: of concurrent finishes, one gets the row.
    diesel::delete(provider_flows::table.find(id))
        .returning(ProviderFlow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes expired flows everywhere (maintenance).
pub async fn prune_flows(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::delete(provider_flows::table.filter(provider_flows::expires_at.le(now))).execute(conn).await
}

/// The identity `subject` at `provider`, if one is linked.
pub async fn find(conn: &mut AsyncPgConnection, provider: &str, subject: &str) -> QueryResult<Option<IdentityRow>> {
    identities::table
        .filter(identities::provider.eq(provider))
        .filter(identities::subject.eq(subject))
        .select(IdentityRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The account's identities, oldest first.
pub async fn list(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<Vec<IdentityRow>> {
    identities::table
        .filter(identities::user_id.eq(user_id))
        .order((identities::created_at.asc(), identities::id.asc()))
        .select(IdentityRow::as_select())
        .load(conn)
        .await
}

/// Links an identity. A unique violation on `identities_provider_subject_key` means
/// it is linked already (to this account or another).
pub async fn insert(change: &mut Change<'_>, new: NewIdentity<'_>) -> QueryResult<IdentityRow> {
    change.touched(new.user_id);
    diesel::insert_into(identities::table)
        .values(new)
        .returning(IdentityRow::as_returning())
        .get_result(&mut **change)
        .await
}

/// Records a sign-in with the identity, and the address the provider gave this time.
pub async fn used(conn: &mut AsyncPgConnection, id: IdentityId, email: Option<&str>) -> QueryResult<usize> {
    diesel::update(identities::table.find(id))
        .set((identities::last_used_at.eq(now), identities::email.eq(email)))
        .execute(conn)
        .await
}

/// Unlinks the account's identity `id`; false when it names none of the account's.
pub async fn delete(change: &mut Change<'_>, user_id: UserId, id: IdentityId) -> QueryResult<bool> {
    change.touched(user_id);
    let n = diesel::delete(identities::table.find(id).filter(identities::user_id.eq(user_id)))
        .execute(&mut **change)
        .await?;
    Ok(n > 0)
}

/// How many ways the account has to sign in: its password, its usable passkeys and its
/// identities. Read inside the transaction that removes one, after the account's row
/// is locked, so two concurrent removals cannot each leave the other's last way.
pub async fn ways_in(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<i64> {
    let password: Option<Option<String>> =
        users::table.find(user_id).select(users::password_hash).first(conn).await.optional()?;
    let passkeys: i64 = passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .filter(passkeys::flagged_at.is_null())
        .count()
        .get_result(conn)
        .await?;
    let identities: i64 = identities::table.filter(identities::user_id.eq(user_id)).count().get_result(conn).await?;
    Ok(i64::from(password.flatten().is_some()) + passkeys + identities)
}
