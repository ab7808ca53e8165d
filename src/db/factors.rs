//! Queries on `totp_factors` and `recovery_codes`, and the account's and sessions'
//! second-factor columns (passkeys have `db::passkeys`; whether any factor is left is
//! decided here, by `settle`). Each spend (a TOTP step, a recovery code) is one conditional
//! UPDATE: of two concurrent requests with the same code, exactly one changes the row.

use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    change::Change,
    ids::{SessionId, UserId},
    models::{FirstFactor, RecoveryCode, SecondFactor, Session, TotpFactor},
    schema::{passkeys, recovery_codes, sessions, totp_factors, users},
};

/// The account's confirmed factor, or its enrolment waiting for a first code.
pub async fn find(conn: &mut AsyncPgConnection, user_id: UserId, confirmed: bool) -> QueryResult<Option<TotpFactor>> {
    let query = totp_factors::table.filter(totp_factors::user_id.eq(user_id)).into_boxed();
    let query = if confirmed {
        query.filter(totp_factors::confirmed_at.is_not_null())
    } else {
        query.filter(totp_factors::confirmed_at.is_null())
    };
    query.select(TotpFactor::as_select()).first(conn).await.optional()
}

/// Replaces the account's waiting enrolment with a new one.
pub async fn start_enrolment(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    key_id: &str,
    sealed: &[u8],
) -> QueryResult<()> {
    diesel::delete(
        totp_factors::table.filter(totp_factors::user_id.eq(user_id)).filter(totp_factors::confirmed_at.is_null()),
    )
    .execute(conn)
    .await?;
    diesel::insert_into(totp_factors::table)
        .values((totp_factors::user_id.eq(user_id), totp_factors::key_id.eq(key_id), totp_factors::sealed.eq(sealed)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Spends `step` of a factor: true if no step this late was spent before.
pub async fn spend_step(conn: &mut AsyncPgConnection, factor: Uuid, step: i64) -> QueryResult<bool> {
    let spent = diesel::update(
        totp_factors::table.find(factor).filter(totp_factors::last_step.is_null().or(totp_factors::last_step.lt(step))),
    )
    .set(totp_factors::last_step.eq(step))
    .execute(conn)
    .await?;
    Ok(spent == 1)
}

/// Makes a waiting enrolment the account's factor, replacing any earlier one, and
/// marks the account as having one.
pub async fn confirm(change: &mut Change<'_>, user_id: UserId, pending: Uuid) -> QueryResult<()> {
    change.touched(user_id);
    let conn: &mut AsyncPgConnection = change;
    diesel::delete(
        totp_factors::table.filter(totp_factors::user_id.eq(user_id)).filter(totp_factors::confirmed_at.is_not_null()),
    )
    .execute(conn)
    .await?;
    diesel::update(totp_factors::table.find(pending)).set(totp_factors::confirmed_at.eq(now)).execute(conn).await?;
    diesel::update(users::table.find(user_id).filter(users::mfa_enabled_at.is_null()))
        .set((users::mfa_enabled_at.eq(now), users::updated_at.eq(now)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores a factor's secret sealed again (under the current key).
pub async fn reseal(conn: &mut AsyncPgConnection, factor: Uuid, key_id: &str, sealed: &[u8]) -> QueryResult<usize> {
    diesel::update(totp_factors::table.find(factor))
        .set((totp_factors::key_id.eq(key_id), totp_factors::sealed.eq(sealed)))
        .execute(conn)
        .await
}

/// Removes every factor of the account (TOTP, passkeys) and its recovery codes, and
/// marks it as having none: the operator's reset of a lost factor. Returns whether a
/// factor was on.
pub async fn remove_all(change: &mut Change<'_>, user_id: UserId) -> QueryResult<bool> {
    let conn: &mut AsyncPgConnection = change;
    diesel::delete(totp_factors::table.filter(totp_factors::user_id.eq(user_id))).execute(conn).await?;
    diesel::delete(passkeys::table.filter(passkeys::user_id.eq(user_id))).execute(conn).await?;
    settle(change, user_id).await
}

/// Removes the account's TOTP factor (and a waiting enrolment). Returns whether that
/// left the account without a second factor (see `settle`).
pub async fn remove_totp(change: &mut Change<'_>, user_id: UserId) -> QueryResult<bool> {
    let conn: &mut AsyncPgConnection = change;
    diesel::delete(totp_factors::table.filter(totp_factors::user_id.eq(user_id))).execute(conn).await?;
    settle(change, user_id).await
}

/// After a factor was removed: if none is left (no confirmed TOTP, no passkey), the
/// recovery codes go and the account is marked as having no second factor. Returns
/// whether it was on until now. The caller has locked the account's row, so two
/// removals cannot each see the other's factor still there.
pub async fn settle(change: &mut Change<'_>, user_id: UserId) -> QueryResult<bool> {
    change.touched(user_id);
    let conn: &mut AsyncPgConnection = change;
    let totp =
        totp_factors::table.filter(totp_factors::user_id.eq(user_id)).filter(totp_factors::confirmed_at.is_not_null());
    let passkey = passkeys::table.filter(passkeys::user_id.eq(user_id));
    let left: bool =
        diesel::select(diesel::dsl::exists(totp).or(diesel::dsl::exists(passkey))).get_result(conn).await?;
    if left {
        return Ok(false);
    }
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn).await?;
    let was_on = diesel::update(users::table.find(user_id).filter(users::mfa_enabled_at.is_not_null()))
        .set((users::mfa_enabled_at.eq(None::<chrono::DateTime<chrono::Utc>>), users::updated_at.eq(now)))
        .execute(conn)
        .await?;
    Ok(was_on == 1)
}

/// Replaces the account's recovery codes: `(lookup, argon2id hash)` each.
pub async fn replace_codes(conn: &mut AsyncPgConnection, user_id: UserId, codes: &[(i32, String)]) -> QueryResult<()> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn).await?;
    let rows: Vec<_> = codes
        .iter()
        .map(|(lookup, hash)| {
            (
                recovery_codes::user_id.eq(user_id),
                recovery_codes::lookup.eq(*lookup),
                recovery_codes::code_hash.eq(hash),
            )
        })
        .collect();
    diesel::insert_into(recovery_codes::table).values(rows).execute(conn).await?;
    Ok(())
}

/// The unused code of the account with one of these lookups, if any (at most one row
/// per lookup: a set is made with distinct lookups).
pub async fn find_code(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    lookups: &[i32],
) -> QueryResult<Option<RecoveryCode>> {
    recovery_codes::table
        .filter(recovery_codes::user_id.eq(user_id))
        .filter(recovery_codes::lookup.eq_any(lookups))
        .filter(recovery_codes::used_at.is_null())
        .order(recovery_codes::created_at.desc())
        .select(RecoveryCode::as_select())
        .first(conn)
        .await
        .optional()
}

/// Spends a recovery code: true if it was unused until now.
pub async fn spend_code(conn: &mut AsyncPgConnection, code: Uuid) -> QueryResult<bool> {
    let spent = diesel::update(recovery_codes::table.find(code).filter(recovery_codes::used_at.is_null()))
        .set(recovery_codes::used_at.eq(now))
        .execute(conn)
        .await?;
    Ok(spent == 1)
}

/// How many unused recovery codes the account has.
pub async fn codes_left(conn: &mut AsyncPgConnection, user_id: UserId) -> QueryResult<i64> {
    recovery_codes::table
        .filter(recovery_codes::user_id.eq(user_id))
        .filter(recovery_codes::used_at.is_null())
        .count()
        .get_result(conn)
        .await
}

/// Marks a live session as having passed the second factor (`mfa_at`, `mfa_method`);
/// `None` if the session has ended. With `new_refresh_token`, every refresh token the
/// session was given until now stops rotating (`refresh_tokens_since`) and the caller
/// issues a new one in the same transaction; without it (the session that just turned
/// the factor on), the session's refresh token keeps working. A session opened by a
/// passkey passed both factors with it, and keeps that as its method.
pub async fn raise_session(
    change: &mut Change<'_>,
    session_id: SessionId,
    method: SecondFactor,
    new_refresh_token: bool,
) -> QueryResult<Option<Session>> {
    let conn: &mut AsyncPgConnection = change;
    let target = sessions::table.find(session_id).filter(super::sessions::live());
    let opened_by: Option<FirstFactor> = target.select(sessions::signed_in_with).first(conn).await.optional()?;
    let raised = (sessions::mfa_at.eq(now), sessions::mfa_method.eq(method));
    let query = match (opened_by == Some(FirstFactor::Passkey), new_refresh_token) {
        (false, true) => {
            let set = (raised, sessions::refresh_tokens_since.eq(now));
            diesel::update(target).set(set).returning(Session::as_returning()).get_result(conn).await
        }
        (false, false) => diesel::update(target).set(raised).returning(Session::as_returning()).get_result(conn).await,
        (true, true) => {
            let set = sessions::refresh_tokens_since.eq(now);
            diesel::update(target).set(set).returning(Session::as_returning()).get_result(conn).await
        }
        (true, false) => target.select(Session::as_select()).get_result(conn).await,
    };
    let raised = query.optional()?;
    if let Some(session) = &raised {
        change.touched(session.user_id);
    }
    Ok(raised)
}
