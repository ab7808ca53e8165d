//! One door: every operation sent over a socket is admitted as an HTTP request with the
//! same token would be at that moment, and a socket costs what a connection costs.
//! Each test here is an attack that passed before sockets were admitted per operation
//! and bounded like connections: the TOTP takeover over a socket opened before the
//! owner turned TOTP on, the demoted ADMIN, operations of an ended session, a database
//! outage's close code, the connection cap, a client that never reads, the Origin's
//! scheme, oversized messages, a 413 for a client that sends its whole body first.

use std::time::Duration;

use authgraph::factors::totp;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    Auth, PASSWORD, TestApp, error_code,
    ws::{Incoming, Served, WsClient, connect},
};

const EVENTS: &str = "subscription { sessionEvents { kind sessionId current } }";
const T0: u64 = 1_800_000_015;

/// An app served on loopback with its events listener running.
async fn live(adjust: impl FnOnce(&mut authgraph::config::Config)) -> (TestApp, Served, crate::support::Background) {
    let app = TestApp::with_config(adjust).await;
    app.state.factors.clock.pin(T0);
    let listener = app.listening().await;
    let served = app.serve().await;
    (app, served, listener)
}

async fn admitted(served: &Served, token: &str) -> WsClient {
    let mut ws = connect(&served.addr, None).await.unwrap();
    ws.admitted(token).await;
    ws
}

fn code_of(result: &Value) -> &str {
    error_code(result)
}

/// Waits until `done` holds, for at most 20 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within 20 s"));
}

#[tokio::test]
async fn a_socket_opened_before_the_owner_turned_totp_on_cannot_enroll_its_own_factor() {
    let (app, served, _listener) = live(|_| {}).await;
    let owner = app.signup("ada").await;
    // The attacker knows the password and opened a socket while the account had no factor.
    let attacker = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let mut ws = admitted(&served, &attacker.access).await;
    let mut events = admitted(&served, &attacker.access).await;
    events.subscribe("e", EVENTS).await;
    until("the subscription listens", || app.state.events.subscribers() > 0).await;

    // The owner turns TOTP on.
    let res = app.gql(Some(&owner.access), "mutation { enrollTotp { secret } }", json!({})).await;
    let secret = totp::from_base32(res["data"]["enrollTotp"]["secret"].as_str().unwrap()).unwrap();
    let confirm = "mutation($code: String!) { confirmTotp(code: $code) { codes } }";
    let res = app.gql(Some(&owner.access), confirm, json!({ "code": totp::code_at(&secret, T0 / totp::STEP) })).await;
    assert!(res["data"]["confirmTotp"]["codes"].is_array(), "{res}");

    // Over the open socket, the password-only session is what it is over HTTP now.
    let enroll = ws.execute("1", "mutation { enrollTotp { secret } }", json!({})).await.unwrap();
    assert_eq!(code_of(&enroll), "MFA_REQUIRED", "{enroll}");
    assert_eq!(enroll["errors"][0]["extensions"]["reason"], "VERIFY", "{enroll}");
    let change = "mutation { changeEmail(input: { currentPassword: \"correct horse battery staple\", newEmail: \"mallory@example.com\" }) }";
    assert_eq!(code_of(&ws.execute("2", change, json!({})).await.unwrap()), "MFA_REQUIRED");
    let confirm_own = ws.execute("3", confirm, json!({ "code": "123456" })).await.unwrap();
    assert_eq!(code_of(&confirm_own), "MFA_REQUIRED", "{confirm_own}");
    // The socket stays open for what an AAL1 session may do.
    let me = ws.execute("4", "{ me { mfaEnabled } }", json!({})).await.unwrap();
    assert_eq!(me["data"]["me"]["mfaEnabled"], true, "{me}");

    // The subscription opened before is admitted again at its next event: the owner's
    // next sign-in reaches it only as MFA_REQUIRED, and it completes.
    app.signin("ada", PASSWORD).await;
    match events.next().await {
        Incoming::Message(m) => {
            assert_eq!(m["payload"]["errors"][0]["extensions"]["code"], "MFA_REQUIRED", "{m}");
            assert_eq!(m["payload"]["data"], Value::Null, "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(events.next().await, Incoming::Message(json!({ "type": "complete", "id": "e" })));
}

#[tokio::test]
async fn an_admin_demoted_by_the_operator_loses_other_accounts_on_an_open_socket() {
    let (app, served, _listener) = live(|_| {}).await;
    app.signup("ada").await;
    let bob = app.signup("bob").await;
    app.make_admin("ada").await;
    let ada = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let mut ws = admitted(&served, &ada.access).await;
    let rename = "mutation($id: ID!, $name: String!) { updateUser(id: $id, input: { name: $name }) { name } }";
    let res = ws.execute("1", rename, json!({ "id": bob.user_id, "name": "Bob One" })).await.unwrap();
    assert_eq!(res["data"]["updateUser"]["name"], "Bob One", "{res}");

    // The operator demotes ada from another process: this instance hears of it only
    // through the database's notification.
    let mut hub = app.state.events.subscribe();
    let mut conn: diesel_async::AsyncPgConnection =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&app.database_url).await.unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE users SET role = 'USER' WHERE username = 'ada'"),
        &mut conn,
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            // Ada's own: bob's rename above is announced too, and may arrive late.
            if let Some(authgraph::events::Signal::Event(e)) = hub.next().await
                && e.kind == authgraph::events::EventKind::AccountUpdated
                && e.user.to_string() == ada.user_id
            {
                break;
            }
        }
    })
    .await
    .expect("the demotion is announced");

    let res = ws.execute("2", rename, json!({ "id": bob.user_id, "name": "Bob Two" })).await.unwrap();
    assert_eq!(code_of(&res), "FORBIDDEN", "{res}");
    let me = ws.execute("3", "{ me { role } }", json!({})).await.unwrap();
    assert_eq!(me["data"]["me"]["role"], "USER", "{me}");
}

#[tokio::test]
async fn operations_on_the_socket_of_an_ended_session_are_refused_and_it_closes() {
    // No events listener: only the operation's own admission can notice the end.
    let app = TestApp::new().await;
    let served = app.serve().await;
    let ada = app.signup("ada").await;
    let before = app.gql(None, "query($id: ID!) { user(id: $id) { name } }", json!({ "id": ada.user_id })).await;
    let mut ws = admitted(&served, &ada.access).await;
    let other = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let res = app.gql(Some(&other.access), "mutation { logout(scope: ALL) }", json!({})).await;
    assert_eq!(res["data"]["logout"], true, "{res}");

    let rename = "mutation($id: ID!) { updateUser(id: $id, input: { name: \"Not Ada\" }) { name } }";
    let res = ws.execute("1", rename, json!({ "id": ada.user_id })).await.unwrap();
    assert_eq!(code_of(&res), "UNAUTHENTICATED", "{res}");
    assert_eq!(ws.closed().await, 4403);
    let after = app.gql(None, "query($id: ID!) { user(id: $id) { name } }", json!({ "id": ada.user_id })).await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_database_outage_at_connection_init_closes_with_1013_which_clients_retry() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    // The same keys, a pool pointing where no PostgreSQL listens.
    let broken = authgraph::db::pool("postgresql://authgraph@127.0.0.1:1/none", 1, Duration::from_millis(300)).unwrap();
    let mut config = app.state.config.clone();
    config.database_url = None;
    let keys = authgraph::secret::resolve(&config).unwrap();
    let state = authgraph::app::AppState::new(config, &keys, broken).unwrap();
    let served = crate::support::ws::serve_router(authgraph::http::app(state), 100).await;
    let mut ws = connect(&served.addr, None).await.unwrap();
    ws.init(Some(&ada.access)).await;
    assert_eq!(ws.closed().await, 1013);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_hold_their_connection_place_under_the_cap() {
    let app = TestApp::with_config(|c| c.realtime.init_timeout = Duration::from_secs(60)).await;
    let served = app.serve_with(20).await;
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(connect(&served.addr, None).await.unwrap());
    }
    // The 21st waits in the backlog: no connection place is free.
    let addr = served.addr.clone();
    let mut waiting = tokio::spawn(async move { connect(&addr, None).await.map(|_| ()) });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut waiting).await.is_err(),
        "a socket beyond HTTP_MAX_CONNECTIONS was accepted"
    );
    drop(open.pop());
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("a closed socket frees its place")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn unadmitted_sockets_are_bounded_apart() {
    let app = TestApp::with_config(|c| c.realtime.max_unauthenticated = 3).await;
    let served = app.serve().await;
    let ada = app.signup("ada").await;
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(connect(&served.addr, None).await.unwrap());
    }
    let refused = connect(&served.addr, None).await.err().expect("a fourth unadmitted socket is refused");
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 503),
        other => panic!("{other:?}"),
    }
    // Once one is admitted, its place among the unadmitted comes free.
    waiting[0].admitted(&ada.access).await;
    let mut later = None;
    for _ in 0..100 {
        if let Ok(ws) = connect(&served.addr, None).await {
            later = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(later.is_some(), "an admitted socket leaves the unadmitted's places");
}

/// A socket whose client reads nothing, over a connection with a tiny receive window,
/// with five operations of ~2 MB answers each sent (the schema, forty times): more than the kernel's buffers
/// hold (4 MiB at most for a socket's send buffer here), so the server's writes block.
async fn not_reading(served: &Served, token: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(served.addr.parse().unwrap()).await.unwrap();
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/graphql",
        served.addr
    ))
    .unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    use futures::{SinkExt, StreamExt};
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    ws.send(init.to_string().into()).await.unwrap();
    let ack = ws.next().await.unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack:?}");
    let schema = "__schema { types { name description fields { name description args { name description } } } }";
    let big = format!("{{ {} }}", (0..40).map(|i| format!("a{i}: {schema}")).collect::<Vec<_>>().join(" "));
    for id in 0..5 {
        let op = json!({ "type": "subscribe", "id": id.to_string(), "payload": { "query": big } });
        ws.send(op.to_string().into()).await.unwrap();
    }
    ws.flush().await.unwrap();
    // Hand back the raw stream, unread, and never read it again.
    ws.into_inner()
}

/// Lifts the operation limits so one answer is large.
fn large_answers(c: &mut authgraph::config::Config) {
    c.realtime.max_message_bytes = 4 << 20;
    c.graphql_max_query_bytes = 4 << 20;
    c.graphql_max_tokens = 1_000_000;
    c.graphql_max_aliases = 1_000_000;
    c.graphql_max_root_fields = 1_000_000;
    c.graphql_max_selections = 1_000_000;
    c.graphql_max_cost = 10_000_000;
}

/// An app whose one socket, of ada's session, is stuck writing to a client that never
/// reads (`send_timeout` as given; answers made large); waits until it is registered.
struct Stuck {
    app: TestApp,
    ada: Auth,
    _served: Served,
    _listener: crate::support::Background,
    _stream: tokio::net::TcpStream,
}

async fn stuck(send_timeout: Duration, token_ttl: Option<Duration>) -> Stuck {
    let (app, served, listener) = live(|c| {
        large_answers(c);
        c.realtime.send_timeout = send_timeout;
        if let Some(ttl) = token_ttl {
            c.access_token_ttl = ttl;
        }
    })
    .await;
    let ada = app.signup("ada").await;
    let stream = not_reading(&served, &ada.access).await;
    until("the socket is registered", || app.state.events.sockets.count() == 1).await;
    Stuck { app, ada, _served: served, _listener: listener, _stream: stream }
}

impl Stuck {
    async fn dropped(&self, what: &str) {
        until(what, || self.app.state.events.sockets.count() == 0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_at_expiry_and_at_logout() {
    let long = Duration::from_secs(600);
    // At the token's expiry, though every write is stuck.
    let s = stuck(long, Some(Duration::from_secs(8))).await;
    s.dropped("the socket is dropped at expiry").await;

    // At logout, with a token that lives long.
    let s = stuck(long, None).await;
    s.app.gql(Some(&s.ada.access), "mutation { logout }", json!({})).await;
    s.dropped("the socket is dropped at logout").await;

    // And at WS_SEND_TIMEOUT, with nothing else happening.
    let s = stuck(Duration::from_secs(1), None).await;
    s.dropped("the socket is dropped after its send deadline").await;

    // And at shutdown.
    let s = stuck(long, None).await;
    s.app.state.stopping.send_replace(true);
    s.dropped("the socket is dropped at shutdown").await;
}

#[tokio::test]
async fn the_origin_is_compared_by_scheme_host_and_port() {
    let app = TestApp::with_config(|c| c.cors_origins = "https://app.example".parse().unwrap()).await;
    let served = app.serve().await;
    let own = format!("http://{}", served.addr);
    assert!(connect(&served.addr, Some(&own)).await.is_ok(), "the server's own origin (GraphiQL) in development");
    for refused in [
        format!("ftp://{}", served.addr),
        format!("ws://{}", served.addr),
        "http://app.example".to_owned(),
        "https://app.example:444".to_owned(),
        format!("http://{}.evil.example", served.addr),
        "null".to_owned(),
    ] {
        assert!(connect(&served.addr, Some(&refused)).await.is_err(), "{refused} was let in");
    }
    assert!(connect(&served.addr, Some("https://app.example")).await.is_ok());

    // In production only CORS_ORIGINS may: Host is the client's word.
    let production = TestApp::with_config(|c| {
        c.app_env = authgraph::config::AppEnv::Production;
        c.cors_origins = "https://app.example".parse().unwrap();
    })
    .await;
    let served = production.serve().await;
    let refused = connect(&served.addr, Some(&format!("http://{}", served.addr))).await.err().expect("refused");
    assert_eq!(crate::support::ws::refused_with(refused), 403);
    assert!(connect(&served.addr, Some("https://app.example")).await.is_ok());
}

#[tokio::test]
async fn oversized_and_malformed_messages_close_with_their_codes() {
    let app = TestApp::with_config(|c| c.realtime.max_message_bytes = 16_384).await;
    let served = app.serve().await;
    let mut big = connect(&served.addr, None).await.unwrap();
    big.send(json!({ "type": "connection_init", "payload": { "pad": "x".repeat(20_000) } })).await;
    assert_eq!(big.closed().await, 1009);
    let mut not_protocol = connect(&served.addr, None).await.unwrap();
    not_protocol.send(json!({ "kind": "hello" })).await;
    assert_eq!(not_protocol.closed().await, 4400);
}

#[tokio::test]
async fn a_client_that_sends_its_whole_body_first_reads_the_413() {
    let app = TestApp::new().await;
    let served = app.serve().await;
    let body = vec![b' '; 3 << 20];
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
        let head = format!(
            "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            served.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.expect("the server reads the body it refuses");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap();
        read.expect("no connection reset");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
}
