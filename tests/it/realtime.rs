//! Live session events over graphql-transport-ws, with a real WebSocket client: init
//! with good, bad, expired and ended sessions' tokens; events of other sessions; the
//! socket closed with 4403 when its session ends (through the API, an operator, reuse
//! detection, on another instance, and while the LISTEN connection was down); 4401 at
//! expiry; the socket's limits; no event of another account under load.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Auth, PASSWORD, SECRET, TestApp, claims, session_of,
    ws::{Incoming, Served, WsClient, connect},
};

const EVENTS: &str = "subscription { sessionEvents { kind sessionId current userAgent at } }";

/// An app served on loopback with its events listener running.
async fn live(adjust: impl FnOnce(&mut authgraph::config::Config)) -> (TestApp, Served, crate::support::Background) {
    let app = TestApp::with_config(adjust).await;
    let listener = app.listening().await;
    let served = app.serve().await;
    (app, served, listener)
}

/// A socket of `auth`'s session, subscribed to sessionEvents as "1" on `app`, once the
/// subscription listens to the instance's events.
async fn watching(app: &TestApp, served: &Served, auth: &Auth) -> WsClient {
    let before = app.state.events.subscribers();
    let mut ws = connect(&served.addr, None).await.unwrap();
    ws.admitted(&auth.access).await;
    ws.subscribe("1", EVENTS).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while app.state.events.subscribers() <= before {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the subscription starts");
    ws
}

fn kind(event: &Value) -> (&str, bool) {
    let e = &event["sessionEvents"];
    (e["kind"].as_str().unwrap(), e["current"].as_bool().unwrap())
}

#[tokio::test]
async fn init_refuses_bad_expired_and_ended_tokens_and_waits_for_init_only_so_long() {
    let (app, served, _listener) = live(|c| c.realtime.init_timeout = Duration::from_millis(300)).await;
    let ada = app.signup("ada").await;

    let mut good = connect(&served.addr, None).await.unwrap();
    good.admitted(&ada.access).await;

    for token in [None, Some("not-a-token")] {
        let mut ws = connect(&served.addr, None).await.unwrap();
        ws.init(token).await;
        assert_eq!(ws.closed().await, 4401, "{token:?}");
    }

    // Expired: the real token's claims with exp in the past, signed with the real key.
    let header = jsonwebtoken::decode_header(&ada.access).unwrap();
    let mut expired = claims(&ada.access);
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 60);
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let expired = jsonwebtoken::encode(&header, &expired, &key).unwrap();
    let mut ws = connect(&served.addr, None).await.unwrap();
    ws.init(Some(&expired)).await;
    assert_eq!(ws.closed().await, 4401, "expired");

    // A token whose session has ended: 4403.
    let bob = app.signup("bob").await;
    app.gql(Some(&bob.access), "mutation { logout }", json!({})).await;
    let mut ws = connect(&served.addr, None).await.unwrap();
    ws.init(Some(&bob.access)).await;
    assert_eq!(ws.closed().await, 4403, "ended session");

    // A subscription before connection_init.
    let mut eager = connect(&served.addr, None).await.unwrap();
    eager.subscribe("1", EVENTS).await;
    assert_eq!(eager.closed().await, 4401, "subscribe before the ack");

    // No connection_init at all.
    let mut silent = connect(&served.addr, None).await.unwrap();
    assert_eq!(silent.closed().await, 4408);
}

#[tokio::test]
async fn events_of_other_sessions_arrive_and_the_own_end_closes_with_4403() {
    let (app, served, _listener) = live(|_| {}).await;
    let ada = app.signup("ada").await;
    let mut ws = watching(&app, &served, &ada).await;

    // Another device signs in (wait for its event: the subscription runs by then).
    let res = app
        .send(
            crate::support::Gql::query(
                crate::support::SIGNIN,
                json!({ "input": { "username": "ada", "password": PASSWORD } }),
            )
            .user_agent("Phone/1.0"),
        )
        .await;
    let phone = Auth::from_payload(&res, "signin");
    let started = ws.event("1").await;
    assert_eq!(kind(&started), ("SESSION_STARTED", false));
    assert_eq!(started["sessionEvents"]["sessionId"], session_of(&phone.access));
    assert_eq!(started["sessionEvents"]["userAgent"], "Phone/1.0");

    // Another account's doings never reach this socket.
    let bob = app.signup("bob").await;
    app.gql(Some(&bob.access), "mutation { logout }", json!({})).await;

    app.gql(Some(&phone.access), "mutation { logout }", json!({})).await;
    let ended = ws.event("1").await;
    assert_eq!(kind(&ended), ("SESSION_ENDED", false));
    assert_eq!(ended["sessionEvents"]["sessionId"], session_of(&phone.access));

    let change = "mutation { changePassword(input: { currentPassword: \"correct horse battery staple\", newPassword: \"another long passphrase\" }) }";
    assert_eq!(app.gql(Some(&ada.access), change, json!({})).await["data"]["changePassword"], true);
    assert_eq!(kind(&ws.event("1").await), ("PASSWORD_CHANGED", true));

    // The socket's own session ends: SESSION_ENDED (current), complete, then 4403.
    app.gql(Some(&ada.access), "mutation { logout }", json!({})).await;
    assert_eq!(kind(&ws.event("1").await), ("SESSION_ENDED", true));
    assert_eq!(ws.next().await, Incoming::Message(json!({ "type": "complete", "id": "1" })));
    assert_eq!(ws.closed().await, 4403);
}

#[tokio::test]
async fn an_operator_and_reuse_detection_close_the_socket_too() {
    let (app, served, _listener) = live(|c| c.refresh_reuse_interval = Duration::ZERO).await;
    let ada = app.signup("ada").await;
    let mut by_operator = watching(&app, &served, &ada).await;
    let second = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    assert_eq!(kind(&by_operator.event("1").await), ("SESSION_STARTED", false));
    let session = session_of(&ada.access).parse().unwrap();
    app.operator()
        .run(async |c| Ok(authgraph::db::sessions::end(c, session, authgraph::db::sessions::EndReason::Admin).await?))
        .await
        .unwrap();
    assert_eq!(kind(&by_operator.event("1").await), ("SESSION_ENDED", true));
    assert_eq!(by_operator.closed().await, 4403);

    // Reuse: the second session's spent refresh token comes back.
    let mut by_reuse = watching(&app, &served, &second).await;
    app.refresh(&second.refresh).await;
    app.refresh(&second.refresh).await;
    assert_eq!(by_reuse.closed().await, 4403);
}

#[tokio::test]
async fn a_session_ended_while_nobody_listened_still_closes_its_socket() {
    let app = TestApp::new().await;
    let served = app.serve().await;
    let listener = app.start_listener();
    let ada = app.signup("ada").await;
    let mut ws = watching(&app, &served, &ada).await;
    // The listener stops (its connection gone); the logout's event reaches nobody.
    listener.stop().await;
    app.gql(Some(&ada.access), "mutation { logout }", json!({})).await;
    // Back: it re-checks every socket's session, and this one has ended.
    let _listener = app.start_listener();
    assert_eq!(kind(&ws.event("1").await), ("SESSION_ENDED", true));
    assert_eq!(ws.closed().await, 4403);

    // And with the connection killed by the database while a logout happens.
    let bob = app.signup("bob").await;
    let mut ws = watching(&app, &served, &bob).await;
    let mut conn: diesel_async::AsyncPgConnection =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&app.database_url).await.unwrap();
    let kill = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}' AND datname = current_database()",
        authgraph::events::listener::APPLICATION_NAME
    );
    let (killed, logout) = tokio::join!(
        diesel_async::RunQueryDsl::execute(diesel::sql_query(kill), &mut conn),
        app.gql(Some(&bob.access), "mutation { logout }", json!({}))
    );
    assert_eq!(killed.unwrap(), 1);
    assert_eq!(logout["data"]["logout"], true);
    assert_eq!(ws.closed().await, 4403);
}

#[tokio::test]
async fn an_expiring_token_closes_its_socket_with_4401() {
    // Long enough for the socket to be admitted under a loaded machine's delays (the
    // token must still be valid at connection_init), short enough to wait out.
    let (app, served, _listener) = live(|c| c.access_token_ttl = Duration::from_secs(3)).await;
    let ada = app.signup("ada").await;
    let mut ws = connect(&served.addr, None).await.unwrap();
    ws.admitted(&ada.access).await;
    ws.subscribe("1", EVENTS).await;
    assert_eq!(ws.closed().await, 4401);
}

#[tokio::test]
async fn the_socket_limits_hold() {
    let (app, served, _listener) = live(|c| {
        c.realtime.max_subscriptions_per_socket = 2;
        c.realtime.max_sockets_per_user = 2;
        c.realtime.max_message_bytes = 16_384;
        c.cors_origins = "https://app.example".parse().unwrap();
    })
    .await;
    let ada = app.signup("ada").await;

    let mut ws = connect(&served.addr, None).await.unwrap();
    ws.admitted(&ada.access).await;
    ws.subscribe("a", EVENTS).await;
    ws.subscribe("a", EVENTS).await;
    assert_eq!(ws.closed().await, 4409, "one subscription per id");

    let mut ws = connect(&served.addr, None).await.unwrap();
    ws.admitted(&ada.access).await;
    for id in ["a", "b", "c"] {
        ws.subscribe(id, EVENTS).await;
    }
    assert_eq!(ws.closed().await, 4429, "two subscriptions per socket");

    let (mut one, mut two) = (connect(&served.addr, None).await.unwrap(), connect(&served.addr, None).await.unwrap());
    one.admitted(&ada.access).await;
    two.admitted(&ada.access).await;
    let mut three = connect(&served.addr, None).await.unwrap();
    three.init(Some(&ada.access)).await;
    assert_eq!(three.closed().await, 4429, "two sockets per account");
    drop((one, two));

    let mut big = connect(&served.addr, None).await.unwrap();
    big.send(json!({ "type": "connection_init", "payload": { "pad": "x".repeat(20_000) } })).await;
    assert_eq!(big.closed().await, 1009, "a message over WS_MAX_MESSAGE_BYTES is refused");

    // The operation limits hold for subscription documents too.
    let mut heavy = connect(&served.addr, None).await.unwrap();
    heavy.admitted(&ada.access).await;
    let fields = "kind ".repeat(2500);
    heavy.send(json!({ "type": "subscribe", "id": "h", "payload": { "query": format!("subscription {{ sessionEvents {{ {fields} }} }}") } })).await;
    match heavy.next().await {
        Incoming::Message(m) => {
            // async-graphql answers a refused document with its errors in `next`, then completes.
            assert_eq!(m["id"], "h", "{m}");
            assert_eq!(m["payload"]["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED", "{m}");
            assert_eq!(heavy.next().await, Incoming::Message(json!({ "type": "complete", "id": "h" })));
        }
        other => panic!("{other:?}"),
    }

    let mut not_json = connect(&served.addr, None).await.unwrap();
    not_json.send(json!("just a string")).await;
    assert_eq!(not_json.closed().await, 4400);

    // A page of another site may not open one; the configured origin may.
    let refused = connect(&served.addr, Some("https://evil.example")).await.err().expect("refused");
    assert_eq!(crate::support::ws::refused_with(refused), 403);
    assert!(connect(&served.addr, Some("https://app.example")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_reaches_another_account_under_concurrent_load() {
    let (app, served, _listener) = live(|_| {}).await;
    let mut accounts = Vec::new();
    for i in 0..6 {
        // The signup's own SESSION_STARTED reaches the instance before the socket
        // listens, or the socket would hear it (as `current`) among the sign-ins.
        let mut hub = app.state.events.subscribe();
        let auth = app.signup(&format!("user{i}")).await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while !matches!(hub.next().await, Some(authgraph::events::Signal::Event(e))
                if e.kind == authgraph::events::EventKind::SessionStarted && e.user.to_string() == auth.user_id)
            {
            }
        })
        .await
        .expect("the signup is announced");
        let ws = watching(&app, &served, &auth).await;
        accounts.push((format!("user{i}"), auth, ws));
    }
    // Every account signs in three more times at once, from every side.
    let signins = accounts.iter().flat_map(|(name, _, _)| {
        (0..3).map(move |_| {
            crate::support::Gql::query(
                crate::support::SIGNIN,
                json!({ "input": { "username": name, "password": PASSWORD } }),
            )
        })
    });
    let answers = app.concurrently(signins).await;
    for (i, (_, auth, ws)) in accounts.iter_mut().enumerate() {
        let own: std::collections::HashSet<String> = answers[i * 3..i * 3 + 3]
            .iter()
            .map(|a| session_of(a["data"]["signin"]["accessToken"].as_str().unwrap()))
            .collect();
        for _ in 0..3 {
            let event = ws.event("1").await;
            assert_eq!(kind(&event), ("SESSION_STARTED", false));
            let session = event["sessionEvents"]["sessionId"].as_str().unwrap();
            assert!(own.contains(session), "{} saw a session of another account", auth.user_id);
        }
    }
}

#[tokio::test]
async fn a_logout_on_one_instance_closes_the_socket_on_another() {
    let (a, _served_a, _listener_a) = live(|_| {}).await;
    let b = a.sibling(|_| {});
    let _listener_b = b.start_listener();
    let served_b = b.serve().await;
    let ada = a.signup("ada").await;
    let mut ws = connect(&served_b.addr, None).await.unwrap();
    ws.admitted(&ada.access).await;
    ws.subscribe("1", EVENTS).await;
    a.gql(Some(&ada.access), "mutation { logout }", json!({})).await;
    assert_eq!(ws.closed().await, 4403);
}

/// Two server processes on one database: a socket on B closes when the session ends
/// through A's API and through the admin CLI, and SIGTERM closes B's sockets with 1001
/// while B still exits within SHUTDOWN_TIMEOUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_the_admin_cli_and_sigterm() {
    use crate::support::process::{Server, command};
    let dir = tempfile::tempdir().unwrap();
    let mut shared = crate::support::process::SHARED_KEYS.to_vec();
    shared.push(("SHUTDOWN_TIMEOUT", "5s"));
    let a = Server::start(&dir.path().join("a"), &shared);
    let url = a.database_url();
    let mut on_b = shared.to_vec();
    on_b.push(("DATABASE_URL", url.as_str()));
    let mut b = Server::start(&dir.path().join("b"), &on_b);
    let signup = a
        .gql(
            None,
            crate::support::SIGNUP,
            json!({ "input": { "name": "Ada", "username": "ada", "password": PASSWORD } }),
        )
        .await;
    let ada = Auth::from_payload(&signup, "signup");
    let signin = async || {
        let res =
            a.gql(None, crate::support::SIGNIN, json!({ "input": { "username": "ada", "password": PASSWORD } })).await;
        Auth::from_payload(&res, "signin")
    };

    // The socket on B, the logout on A.
    let mut ws = connect(&b.addr, None).await.unwrap();
    ws.admitted(&ada.access).await;
    ws.subscribe("1", EVENTS).await;
    a.gql(Some(&ada.access), "mutation { logout }", json!({})).await;
    assert_eq!(ws.closed().await, 4403, "logout on A");

    // An operator ends the account's sessions from the command line.
    let second = signin().await;
    let mut ws = connect(&b.addr, None).await.unwrap();
    ws.admitted(&second.access).await;
    let out = command(&dir.path().join("a")).args(["users", "revoke-sessions", "ada"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ws.closed().await, 4403, "users revoke-sessions");

    // SIGTERM: 1001, and B exits in time.
    let third = signin().await;
    let mut ws = connect(&b.addr, None).await.unwrap();
    ws.admitted(&third.access).await;
    ws.subscribe("1", EVENTS).await;
    let started = std::time::Instant::now();
    b.signal(libc::SIGTERM);
    assert_eq!(ws.closed().await, 1001);
    let status = tokio::task::spawn_blocking(move || b.child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(5), "exited within SHUTDOWN_TIMEOUT: {:?}", started.elapsed());
    assert!(a.terminate().0.success());
}

/// From a logout's answer on instance A to the close of the session's socket on
/// instance B, 100 times: run by hand with
/// `cargo test --release --test it realtime::revocation_latency -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn revocation_latency_from_a_logout_on_one_instance_to_the_close_on_another() {
    let a = TestApp::with_config(|c| c.signin_failures_per_account = 10_000).await;
    let b = a.sibling(|_| {});
    let _listener = b.listening().await;
    let served = b.serve().await;
    a.signup("ada").await;
    let (mut after_answer, mut after_request, mut logout) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..100 {
        let session = Auth::from_payload(&a.signin("ada", PASSWORD).await, "signin");
        let mut ws = connect(&served.addr, None).await.unwrap();
        ws.admitted(&session.access).await;
        let sent = std::time::Instant::now();
        let res = a.gql(Some(&session.access), "mutation { logout }", json!({})).await;
        let answered = std::time::Instant::now();
        assert_eq!(res["data"]["logout"], true);
        assert_eq!(ws.closed().await, 4403);
        after_answer.push(answered.elapsed().as_secs_f64() * 1e3);
        after_request.push(sent.elapsed().as_secs_f64() * 1e3);
        logout.push((answered - sent).as_secs_f64() * 1e3);
    }
    for (what, mut samples) in [
        ("logout answered on A -> socket closed on B", after_answer),
        ("logout sent to A -> socket closed on B", after_request),
        ("the logout itself on A (reference)", logout),
    ] {
        samples.sort_by(f64::total_cmp);
        let (p50, p99, max) = (samples[49], samples[98], samples[99]);
        println!("{what}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms (100 runs)");
    }
}
