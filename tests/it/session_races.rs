//! The attack suite, part five: the refresh chain's key, and ending sessions while
//! rotations run. The earlier server derived successors from the JWT key (so anyone
//! with an HS256 secret and one old refresh token could compute later ones), could
//! deadlock a logout against a rotation (PostgreSQL then aborted one of them), and
//! compared the database's `used_at` with the server's clock.

use std::time::{Duration, Instant};

use authgraph::auth::refresh_token::ChainKey;
use diesel::sql_query;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::support::{Auth, Gql, REFRESH_KEY, SECRET, TestApp, count, error_code, expect_error};

#[tokio::test]
async fn the_jwt_secret_and_an_old_token_do_not_give_the_next_token() {
    let app = TestApp::new().await;
    let first = app.signup("ada").await;
    let second = Auth::from_payload(&app.refresh(&first.refresh).await, "refresh");
    let from_jwt_key = ChainKey::from_key(SECRET.as_bytes()).child_of(&first.refresh);
    assert_ne!(from_jwt_key.expose_secret(), second.refresh, "derived from the JWT secret");
    // It is derived from REFRESH_TOKEN_KEY, a secret no token verifier holds.
    let from_refresh_key = ChainKey::from_key(REFRESH_KEY.as_bytes()).child_of(&first.refresh);
    assert_eq!(from_refresh_key.expose_secret(), second.refresh);
}

#[tokio::test]
async fn a_new_refresh_key_keeps_replays_inside_the_interval_working() {
    let app = TestApp::new().await;
    let first = app.signup("ada").await;
    let second = Auth::from_payload(&app.refresh(&first.refresh).await, "refresh");
    // The operator rotates: new key current, the old one previous.
    let rotated = app.sibling(|c| {
        c.refresh_token_key = Some("a-brand-new-refresh-key-of-32-bytes!".to_owned().into());
        c.refresh_token_key_previous = vec![REFRESH_KEY.to_owned().into()];
    });
    // A retry of the spent token inside the interval still finds its successor.
    let replay = Auth::from_payload(&rotated.refresh(&first.refresh).await, "refresh");
    assert_eq!(replay.refresh, second.refresh);
    // The next rotation uses the new key, and works.
    let third = Auth::from_payload(&rotated.refresh(&second.refresh).await, "refresh");
    let old_key_child = ChainKey::from_key(REFRESH_KEY.as_bytes()).child_of(&second.refresh);
    assert_ne!(third.refresh, old_key_child.expose_secret());
    Auth::from_payload(&rotated.refresh(&third.refresh).await, "refresh");
}

/// Waits until `n` other backends of this database wait for a lock.
async fn lock_waiters(conn: &mut AsyncPgConnection, n: i64) {
    let start = Instant::now();
    loop {
        let waiting = count(
            conn,
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        )
        .await;
        if waiting >= n {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{n} lock waiters never showed up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The interleaving that deadlocked: a password change ends the other sessions in its
/// transaction, holding their rows (and, earlier, going on to lock their token rows),
/// while a rotation of one of them holds its token row and waits for the session row.
/// Forced here by holding the session rows from another connection until both wait on
/// them, the password change first. PostgreSQL used to abort one of the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_racing_a_rotation_never_deadlocks() {
    let app = TestApp::new().await;
    let here = app.signup("ada").await;
    let elsewhere = Auth::from_payload(&app.signin("ada", crate::support::PASSWORD).await, "signin");
    let mut holder = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    let mut observer = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    sql_query("BEGIN").execute(&mut holder).await.unwrap();
    sql_query("SELECT 1 FROM sessions FOR UPDATE").execute(&mut holder).await.unwrap();

    let change = app.spawn(
        Gql::query(
            "mutation($c: String!) { changePassword(input: { currentPassword: $c, newPassword: \"a new passphrase\" }) }",
            json!({ "c": crate::support::PASSWORD }),
        )
        .bearer(&here.access),
    );
    lock_waiters(&mut observer, 1).await;
    let refresh = app.spawn(Gql::query(crate::support::REFRESH, json!({ "token": elsewhere.refresh })));
    lock_waiters(&mut observer, 2).await;
    sql_query("COMMIT").execute(&mut holder).await.unwrap();

    let change = change.await.unwrap();
    assert_eq!(change["data"]["changePassword"], true, "the password change succeeded: {change}");
    let refresh = refresh.await.unwrap();
    let reason = expect_error(&refresh, "INVALID_REFRESH_TOKEN")["extensions"]["reason"].clone();
    assert_eq!(reason, "REVOKED", "the rotation saw its session ended: {refresh}");
}

/// A retry of a spent token inside the reuse interval, with `used_at` later than the
/// server's clock (the database's clock runs ahead, or the instance's lags): the
/// earlier server counted the negative age as reuse and revoked the session.
#[tokio::test]
async fn a_retry_inside_the_interval_survives_a_clock_that_lags() {
    let app = TestApp::new().await;
    let first = app.signup("ada").await;
    let second = Auth::from_payload(&app.refresh(&first.refresh).await, "refresh");
    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    sql_query("UPDATE refresh_tokens SET used_at = now() + interval '3 seconds' WHERE used_at IS NOT NULL")
        .execute(&mut conn)
        .await
        .unwrap();
    let retry = app.refresh(&first.refresh).await;
    assert_eq!(error_code(&retry), "", "{retry}");
    assert_eq!(Auth::from_payload(&retry, "refresh").refresh, second.refresh);
    assert!(app.gql(Some(&second.access), "{ me { id } }", json!({})).await["data"]["me"].is_object());
}
