//! Session events from the database: every change that makes one is announced by
//! NOTIFY in its own transaction (nothing for a rolled-back change, nothing for a
//! refresh), heard by each instance's LISTEN connection, which comes back after being
//! killed and says that events may have been missed.

use std::time::Duration;

use authgraph::events::{Event, EventKind, Signal, Subscription};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

use crate::support::{Auth, PASSWORD, TestApp, session_of};

/// Waits for the next event, skipping `Resync`s; fails after 10 s.
async fn next(sub: &mut Subscription) -> Event {
    let wait = async {
        loop {
            match sub.next().await.expect("the hub is alive") {
                Signal::Event(event) => return (*event).clone(),
                Signal::Resync => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("an event within 10 s")
}

/// Waits for a `Resync`, skipping events; fails after 10 s.
async fn resync(sub: &mut Subscription) {
    let wait = async { while !matches!(sub.next().await.expect("the hub is alive"), Signal::Resync) {} };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("a resync within 10 s");
}

/// (kind, user id, session id) of an event, for comparing sequences.
fn shape(event: &Event) -> (EventKind, String, Option<String>) {
    (event.kind, event.user.to_string(), event.session.map(|s| s.to_string()))
}

/// An app with its listener running and a subscription that has seen it connect.
async fn listening(app: &TestApp) -> (crate::support::Background, Subscription) {
    let mut sub = app.state.events.subscribe();
    let listener = app.start_listener();
    resync(&mut sub).await;
    assert!(app.state.events.is_listening());
    (listener, sub)
}

#[tokio::test]
async fn every_change_that_makes_an_event_is_announced_in_order() {
    let app = TestApp::with_config(|c| c.refresh_reuse_interval = Duration::ZERO).await;
    let (_listener, mut sub) = listening(&app).await;

    let ada = app.signup("ada").await;
    let (user, first) = (ada.user_id.clone(), session_of(&ada.access));
    let started = next(&mut sub).await;
    assert_eq!(shape(&started), (EventKind::SessionStarted, user.clone(), Some(first.clone())));
    let second = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    assert_eq!(
        shape(&next(&mut sub).await),
        (EventKind::SessionStarted, user.clone(), Some(session_of(&second.access)))
    );

    // A refresh makes no event: the next one is the rename's.
    let refreshed = Auth::from_payload(&app.refresh(&second.refresh).await, "refresh");
    let rename = "mutation($id: ID!) { updateUser(id: $id, input: { name: \"Ada L.\" }) { id } }";
    app.gql(Some(&ada.access), rename, json!({ "id": user })).await;
    assert_eq!(shape(&next(&mut sub).await), (EventKind::AccountUpdated, user.clone(), None));

    // Reuse detection ends the second session.
    app.refresh(&second.refresh).await;
    assert_eq!(
        shape(&next(&mut sub).await),
        (EventKind::SessionEnded, user.clone(), Some(session_of(&refreshed.access)))
    );

    // A password change: the change, by the first session, then the other sessions end.
    let third = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    next(&mut sub).await;
    let change = "mutation { changePassword(input: { currentPassword: \"correct horse battery staple\", newPassword: \"another long passphrase\" }) }";
    assert_eq!(app.gql(Some(&ada.access), change, json!({})).await["data"]["changePassword"], true);
    assert_eq!(shape(&next(&mut sub).await), (EventKind::PasswordChanged, user.clone(), Some(first.clone())));
    assert_eq!(shape(&next(&mut sub).await), (EventKind::SessionEnded, user.clone(), Some(session_of(&third.access))));

    // An operator's role change and revocation.
    app.make_admin("ada").await;
    assert_eq!(shape(&next(&mut sub).await), (EventKind::AccountUpdated, user.clone(), None));
    let ada_id: authgraph::db::ids::UserId = user.parse().unwrap();
    app.operator()
        .run(async |c| {
            Ok(authgraph::db::sessions::end_all(c, ada_id, None, authgraph::db::sessions::EndReason::Admin).await?)
        })
        .await
        .unwrap();
    assert_eq!(shape(&next(&mut sub).await), (EventKind::SessionEnded, user.clone(), Some(first.clone())));

    // Deleting an account ends its live sessions with it.
    let bob = app.signup("bob").await;
    next(&mut sub).await;
    let delete = "mutation($id: ID!) { deleteUser(id: $id) }";
    assert_eq!(app.gql(Some(&bob.access), delete, json!({ "id": bob.user_id })).await["data"]["deleteUser"], true);
    assert_eq!(
        shape(&next(&mut sub).await),
        (EventKind::SessionEnded, bob.user_id.clone(), Some(session_of(&bob.access)))
    );
}

#[tokio::test]
async fn a_rolled_back_change_announces_nothing() {
    let app = TestApp::new().await;
    let (_listener, mut sub) = listening(&app).await;
    let ada = app.signup("ada").await;
    next(&mut sub).await;

    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    let ada_id: authgraph::db::ids::UserId = ada.user_id.parse().unwrap();
    let rolled_back = conn
        .transaction::<(), diesel::result::Error, _>(async |conn| {
            diesel::sql_query("UPDATE sessions SET revoked_at = now() WHERE user_id = $1")
                .bind::<diesel::sql_types::Uuid, _>(ada_id.as_uuid())
                .execute(conn)
                .await?;
            diesel::sql_query("UPDATE users SET name = 'Never'").execute(conn).await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(rolled_back.is_err());
    // The next event is a committed marker: nothing of the rolled-back change came first.
    let marker = "mutation($id: ID!) { updateUser(id: $id, input: { name: \"Marker\" }) { id } }";
    app.gql(Some(&ada.access), marker, json!({ "id": ada.user_id })).await;
    assert_eq!(shape(&next(&mut sub).await), (EventKind::AccountUpdated, ada.user_id.clone(), None));
}

#[tokio::test]
async fn the_listener_comes_back_after_its_connection_is_killed() {
    let app = TestApp::new().await;
    let (_listener, mut sub) = listening(&app).await;
    let ada = app.signup("ada").await;
    next(&mut sub).await;

    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    let kill = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}' AND datname = current_database()",
        authgraph::events::listener::APPLICATION_NAME
    );
    let killed = diesel::sql_query(kill).execute(&mut conn).await.unwrap();
    assert_eq!(killed, 1, "one LISTEN connection per instance");
    // Told that events may have been missed, then events flow again.
    resync(&mut sub).await;
    app.gql(Some(&ada.access), "mutation { logout }", json!({})).await;
    assert_eq!(
        shape(&next(&mut sub).await),
        (EventKind::SessionEnded, ada.user_id.clone(), Some(session_of(&ada.access)))
    );
}

#[tokio::test]
async fn a_change_on_one_instance_is_heard_on_every_instance() {
    let a = TestApp::new().await;
    let b = a.sibling(|_| {});
    let (_on_a, mut heard_on_a) = listening(&a).await;
    let (_on_b, mut heard_on_b) = listening(&b).await;
    let ada = a.signup("ada").await;
    let expected = (EventKind::SessionStarted, ada.user_id.clone(), Some(session_of(&ada.access)));
    assert_eq!(shape(&next(&mut heard_on_b).await), expected);
    assert_eq!(shape(&next(&mut heard_on_a).await), expected);
}
