//! Queries on `signin_addresses`: the networks each account has signed in from.

use chrono::{DateTime, Utc};
use diesel::{prelude::*, upsert::excluded};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::signin_addresses;

pub async fn is_known(conn: &mut AsyncPgConnection, account: &str, network: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        signin_addresses::table
            .filter(signin_addresses::account.eq(account))
            .filter(signin_addresses::network.eq(network)),
    ))
    .get_result(conn)
    .await
}

/// Records a successful sign-in from `network`, or moves its time forward.
pub async fn remember(conn: &mut AsyncPgConnection, account: &str, network: &str) -> QueryResult<usize> {
    diesel::insert_into(signin_addresses::table)
        .values((signin_addresses::account.eq(account), signin_addresses::network.eq(network)))
        .on_conflict((signin_addresses::account, signin_addresses::network))
        .do_update()
        .set(signin_addresses::last_success_at.eq(excluded(signin_addresses::last_success_at)))
        .execute(conn)
        .await
}

/// Forgets networks not used since `cutoff`.
pub async fn prune(conn: &mut AsyncPgConnection, cutoff: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(signin_addresses::table.filter(signin_addresses::last_success_at.lt(cutoff))).execute(conn).await
}

/// Forgets every network of an account (its password changed hands, or it is gone).
pub async fn forget_account(conn: &mut AsyncPgConnection, account: &str) -> QueryResult<usize> {
    diesel::delete(signin_addresses::table.filter(signin_addresses::account.eq(account))).execute(conn).await
}
