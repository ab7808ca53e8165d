//! The session cache (`session_cache`): `me` and the guard answered without a query,
//! and never out of date by more than a notification. Every flow that ends a session
//! or changes an account is tried with the cache serving and no notification arriving
//! (the instance that made the change must forget by itself, before it answers); then
//! across two instances by notification; then the loss of the LISTEN connection.
//! Statements are counted by PostgreSQL (`pg_stat_statements`).

use std::time::{Duration, Instant};

use authgraph::factors::totp;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::support::{
    Auth, PASSWORD, TestApp, error_code, eventually, expect_error, mail_to, smtp::SmtpServer, statements_of,
};

const ME: &str = "{ me { id name username mfaEnabled emailVerified } }";

async fn me(app: &TestApp, token: &str) -> Value {
    app.gql(Some(token), ME, json!({})).await
}

/// `me` answered with no statement at all: the cache served it.
async fn assert_cached(app: &TestApp, token: &str) {
    let (res, statements) = statements_of(app, me(app, token)).await;
    assert!(res["data"]["me"].is_object(), "{res}");
    assert!(statements.is_empty(), "me ran {statements:#?}");
}

/// Fills the cache with `token`'s session and checks that it serves it.
async fn warm(app: &TestApp, token: &str) {
    assert!(me(app, token).await["data"]["me"].is_object());
    assert_cached(app, token).await;
}

/// An app whose cache serves as if its LISTEN connection were up, with no listener:
/// no notification ever reaches it, so only the instance's own forgetting can keep it
/// right.
fn deaf(app: &TestApp) {
    app.state.events.cache.set_listening(true);
}

#[tokio::test]
async fn me_needs_no_query_once_cached_and_the_setting_turns_it_off() {
    let app = TestApp::new().await;
    let _listener = app.listening().await;
    let ada = app.signup("ada").await;
    let (res, first) = statements_of(&app, me(&app, &ada.access)).await;
    assert_eq!(res["data"]["me"]["username"], "ada");
    assert_eq!(first.len(), 1, "the first check reads the session: {first:#?}");
    assert_cached(&app, &ada.access).await;
    // A protected field's guard is answered from the cache too: only the page is read.
    let (res, statements) = statements_of(&app, app.gql(Some(&ada.access), "{ sessions { id } }", json!({}))).await;
    assert_eq!(res["data"]["sessions"].as_array().map(Vec::len), Some(1), "{res}");
    assert_eq!(statements.len(), 1, "{statements:#?}");

    let off = TestApp::with_config(|c| c.session_cache_entries = 0).await;
    let _listener = off.listening().await;
    let bob = off.signup("bob").await;
    for _ in 0..2 {
        let (res, statements) = statements_of(&off, me(&off, &bob.access)).await;
        assert!(res["data"]["me"].is_object(), "{res}");
        assert_eq!(statements.len(), 1, "one query per request: {statements:#?}");
    }
    assert!(off.state.events.cache.is_empty());
}

/// What the cache shows when nobody forgets: a change made behind the instance's back
/// (no notification reaches it here) stays unseen. This is what the other tests of the
/// instance's own forgetting would see if it forgot nothing.
#[tokio::test]
async fn without_forgetting_the_cache_would_serve_a_change_late() {
    let app = TestApp::new().await;
    deaf(&app);
    let ada = app.signup("ada").await;
    warm(&app, &ada.access).await;
    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    diesel::sql_query("UPDATE sessions SET revoked_at = now()").execute(&mut conn).await.unwrap();
    assert!(me(&app, &ada.access).await["data"]["me"].is_object(), "served from the cache");
    app.state.events.cache.forget_user(ada.user_id.parse().unwrap());
    expect_error(&me(&app, &ada.access).await, "UNAUTHENTICATED");
}

async fn signin(app: &TestApp, username: &str) -> Auth {
    Auth::from_payload(&app.signin(username, PASSWORD).await, "signin")
}

#[tokio::test]
async fn ending_sessions_is_seen_at_once_by_the_instance_that_ended_them() {
    let app = TestApp::with_config(|c| c.refresh_reuse_interval = Duration::ZERO).await;
    deaf(&app);
    let ada = app.signup("ada").await;

    // logout (CURRENT)
    warm(&app, &ada.access).await;
    assert_eq!(app.gql(Some(&ada.access), "mutation { logout }", json!({})).await["data"]["logout"], true);
    expect_error(&me(&app, &ada.access).await, "UNAUTHENTICATED");

    // logout(scope: OTHERS) and (scope: ALL) from another session
    let (one, two) = (signin(&app, "ada").await, signin(&app, "ada").await);
    warm(&app, &one.access).await;
    warm(&app, &two.access).await;
    app.gql(Some(&two.access), "mutation { logout(scope: OTHERS) }", json!({})).await;
    expect_error(&me(&app, &one.access).await, "UNAUTHENTICATED");
    assert!(me(&app, &two.access).await["data"]["me"].is_object(), "the session that logged the others out");
    app.gql(Some(&two.access), "mutation { logout(scope: ALL) }", json!({})).await;
    expect_error(&me(&app, &two.access).await, "UNAUTHENTICATED");

    // changePassword ends the others
    let (here, there) = (signin(&app, "ada").await, signin(&app, "ada").await);
    warm(&app, &there.access).await;
    let change =
        "mutation($c: String!) { changePassword(input: { currentPassword: $c, newPassword: \"a new passphrase\" }) }";
    let res = app.gql(Some(&here.access), change, json!({ "c": PASSWORD })).await;
    assert_eq!(res["data"]["changePassword"], true, "{res}");
    expect_error(&me(&app, &there.access).await, "UNAUTHENTICATED");

    // refresh reuse detection ends the session of the replayed token
    let bob = app.signup("bob").await;
    let next = Auth::from_payload(&app.refresh(&bob.refresh).await, "refresh");
    warm(&app, &next.access).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    expect_error(&app.refresh(&bob.refresh).await, "INVALID_REFRESH_TOKEN");
    expect_error(&me(&app, &next.access).await, "UNAUTHENTICATED");

    // deleteUser, by the owner and by an ADMIN
    let carol = app.signup("carol").await;
    warm(&app, &carol.access).await;
    let delete = "mutation($id: ID!) { deleteUser(id: $id) }";
    app.gql(Some(&carol.access), delete, json!({ "id": carol.user_id })).await;
    expect_error(&me(&app, &carol.access).await, "UNAUTHENTICATED");
    let (admin, dave) = (app.signup("admin").await, app.signup("dave").await);
    app.make_admin("admin").await;
    warm(&app, &dave.access).await;
    let res = app.gql(Some(&admin.access), delete, json!({ "id": dave.user_id })).await;
    assert_eq!(res["data"]["deleteUser"], true, "{res}");
    expect_error(&me(&app, &dave.access).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn account_changes_are_seen_at_once_by_the_instance_that_made_them() {
    let app = TestApp::new().await;
    deaf(&app);
    let ada = app.signup("ada").await;
    let elsewhere = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");

    // updateUser, by the owner and by an ADMIN
    warm(&app, &elsewhere.access).await;
    let rename = "mutation($id: ID!, $name: String!) { updateUser(id: $id, input: { name: $name }) { name } }";
    app.gql(Some(&ada.access), rename, json!({ "id": ada.user_id, "name": "Ada L." })).await;
    assert_eq!(me(&app, &elsewhere.access).await["data"]["me"]["name"], "Ada L.");
    let admin = app.signup("admin").await;
    app.make_admin("admin").await;
    warm(&app, &elsewhere.access).await;
    app.gql(Some(&admin.access), rename, json!({ "id": ada.user_id, "name": "Countess" })).await;
    assert_eq!(me(&app, &elsewhere.access).await["data"]["me"]["name"], "Countess");

    // confirmTotp turns the factor on: the other session now has a factor to pass.
    warm(&app, &elsewhere.access).await;
    let res = app.gql(Some(&ada.access), "mutation { enrollTotp { secret } }", json!({})).await;
    let secret = totp::from_base32(res["data"]["enrollTotp"]["secret"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    app.state.factors.clock.pin(now);
    let confirm = "mutation($code: String!) { confirmTotp(code: $code) { accessToken } }";
    let res = app.gql(Some(&ada.access), confirm, json!({ "code": totp::code_at(&secret, now / totp::STEP) })).await;
    let aal2 = res["data"]["confirmTotp"]["accessToken"].as_str().unwrap_or_else(|| panic!("{res}")).to_owned();
    assert_eq!(me(&app, &elsewhere.access).await["data"]["me"]["mfaEnabled"], true);
    let protected = "mutation($id: ID!) { updateUser(id: $id, input: {}) { id } }";
    let mine = json!({ "id": ada.user_id });
    expect_error(&app.gql(Some(&elsewhere.access), protected, mine.clone()).await, "MFA_REQUIRED");

    // verifyMfa raises that session: its new token reaches the protected fields at once,
    // though the cache held the session at AAL1.
    warm(&app, &elsewhere.access).await;
    let verify = "mutation($code: String!) { verifyMfa(code: $code) { accessToken } }";
    app.state.factors.clock.pin(now + totp::STEP);
    let code = totp::code_at(&secret, now / totp::STEP + 1);
    let res = app.gql(Some(&elsewhere.access), verify, json!({ "code": code })).await;
    let raised = res["data"]["verifyMfa"]["accessToken"].as_str().unwrap_or_else(|| panic!("{res}")).to_owned();
    let res = app.gql(Some(&raised), protected, mine).await;
    assert_eq!(error_code(&res), "", "{res}");

    // disableTotp turns it off and ends the other sessions.
    warm(&app, &raised).await;
    app.state.factors.clock.pin(now + 2 * totp::STEP);
    let code = totp::code_at(&secret, now / totp::STEP + 2);
    let res =
        app.gql(Some(&aal2), "mutation($code: String!) { disableTotp(code: $code) }", json!({ "code": code })).await;
    assert_eq!(res["data"]["disableTotp"], true, "{res}");
    expect_error(&me(&app, &raised).await, "UNAUTHENTICATED");
    assert_eq!(me(&app, &aal2).await["data"]["me"]["mfaEnabled"], false);
}

#[tokio::test]
async fn email_verification_and_reset_are_seen_at_once_by_the_instance_that_made_them() {
    let smtp = SmtpServer::start();
    let app = TestApp::with_config(mail_to(&smtp)).await;
    let _sender = app.start_sender();
    deaf(&app);
    let signup = "mutation($input: SignupInput!) { signup(input: $input) { accessToken refreshToken user { id } } }";
    let input = json!({ "name": "Ada", "username": "ada", "password": PASSWORD, "email": "ada@example.com" });
    let ada = Auth::from_payload(&app.gql(None, signup, json!({ "input": input })).await, "signup");

    // verifyEmail by the link, signed out
    warm(&app, &ada.access).await;
    let message = smtp.wait_for("ada@example.com", 1).await.pop().unwrap();
    let verify = "mutation($input: VerifyEmailInput!) { verifyEmail(input: $input) }";
    assert_eq!(
        app.gql(None, verify, json!({ "input": { "token": message.token() } })).await["data"]["verifyEmail"],
        true
    );
    assert_eq!(me(&app, &ada.access).await["data"]["me"]["emailVerified"], true);

    // resetPassword ends every session
    warm(&app, &ada.access).await;
    app.gql(None, "mutation($e: String!) { requestPasswordReset(email: $e) }", json!({ "e": "ada@example.com" })).await;
    let message = smtp.wait_for("ada@example.com", 2).await.pop().unwrap();
    let reset = "mutation($input: ResetPasswordInput!) { resetPassword(input: $input) { accessToken } }";
    let input = json!({ "token": message.token(), "newPassword": "a brand new passphrase" });
    assert!(app.gql(None, reset, json!({ "input": input })).await["data"]["resetPassword"].is_object());
    expect_error(&me(&app, &ada.access).await, "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_forgets_when_the_notification_arrives() {
    let a = TestApp::new().await;
    let b = a.sibling(|_| {});
    let (_on_a, _on_b) = (a.listening().await, b.listening().await);
    let ada = a.signup("ada").await;

    warm(&b, &ada.access).await;
    let rename = "mutation($id: ID!) { updateUser(id: $id, input: { name: \"Renamed on A\" }) { name } }";
    a.gql(Some(&ada.access), rename, json!({ "id": ada.user_id })).await;
    eventually("B shows the new name", async || me(&b, &ada.access).await["data"]["me"]["name"] == "Renamed on A")
        .await;

    // An operator's change, made by no instance at all.
    warm(&b, &ada.access).await;
    crate::support::set_role(&a.operator(), "ada", authgraph::db::models::Role::Admin).await;
    let role = "{ me { role } }";
    eventually("B shows the new role", async || {
        b.gql(Some(&ada.access), role, json!({})).await["data"]["me"]["role"] == "ADMIN"
    })
    .await;

    warm(&b, &ada.access).await;
    a.gql(Some(&ada.access), "mutation { logout }", json!({})).await;
    eventually("B refuses the ended session", async || error_code(&me(&b, &ada.access).await) == "UNAUTHENTICATED")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_listen_connection_drops_the_cache_until_it_is_back() {
    let app = TestApp::new().await;
    let listener = app.listening().await;
    let ada = app.signup("ada").await;
    warm(&app, &ada.access).await;

    // The database kills the connection: everything cached is dropped, and the cache
    // serves again only once the listener is back.
    let mut signals = app.state.events.subscribe();
    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    let kill = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                WHERE application_name = 'authgraph-listener' AND datname = current_database()";
    diesel::sql_query(kill).execute(&mut conn).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(signals.next().await, Some(authgraph::events::Signal::Resync)) {}
    })
    .await
    .expect("the listener came back");
    assert!(app.state.events.cache.is_empty(), "dropped while the connection was down");
    warm(&app, &ada.access).await;

    // Stopped: nothing is served or kept, so every request asks the database, which
    // alone knows of a change no notification will announce here.
    listener.stop().await;
    assert!(app.state.events.cache.is_empty());
    for _ in 0..2 {
        let (res, statements) = statements_of(&app, me(&app, &ada.access)).await;
        assert!(res["data"]["me"].is_object(), "{res}");
        assert_eq!(statements.len(), 1, "{statements:#?}");
    }
    diesel::sql_query("UPDATE sessions SET revoked_at = now()").execute(&mut conn).await.unwrap();
    expect_error(&me(&app, &ada.access).await, "UNAUTHENTICATED");
}

/// A keep-alive HTTP/1.1 connection to a served instance, for the measurement: its
/// requests go through sockets as a client's do (in-process requests answered from the
/// cache never yield, and would starve the instance's listener task).
struct Client {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl Client {
    async fn connect(addr: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream: tokio::io::BufReader::new(stream) }
    }

    async fn gql(&mut self, token: &str, query: &str) -> Value {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let body = json!({ "query": query }).to_string();
        let head = format!(
            "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
             authorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        self.stream.get_mut().write_all(format!("{head}{body}").as_bytes()).await.unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }
}

/// After a logout answers on instance A, how long a request with the ended session's
/// token can still pass on instance B, whose cache held the session: 1,000 tries over
/// real sockets, run by hand with
/// `cargo test --release --test it session_cache::revocation_window -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn revocation_window_across_instances() {
    use authgraph::db::models::{Methods, Role};
    let a = TestApp::new().await;
    let b = a.sibling(|_| {});
    let (_on_a, _on_b) = (a.listening().await, b.listening().await);
    let (served_a, served_b) = (a.serve().await, b.serve().await);
    let (mut to_a, mut to_b) = (Client::connect(&served_a.addr).await, Client::connect(&served_b.addr).await);
    let ada = a.signup("ada").await;
    let user_id = ada.user_id.parse().unwrap();
    let mut conn = a.state.auth.pool.get().await.unwrap();
    let (mut windows, mut passed_until, mut passed_after_answer, mut logouts) = (Vec::new(), Vec::new(), 0, Vec::new());
    for _ in 0..1000 {
        // A session of its own per try, opened as sign-in does, without the hash.
        let (session, _) =
            authgraph::auth::sessions::open(&mut conn, &a.state.auth.sessions, user_id, None, Methods::PASSWORD)
                .await
                .unwrap();
        let token = a.state.auth.tokens.issue(user_id, session.id, Role::User, Methods::PASSWORD).unwrap();
        assert!(to_b.gql(&token, ME).await["data"]["me"].is_object());
        assert!(!b.state.events.cache.is_empty(), "B cached the session");
        let sent = Instant::now();
        assert_eq!(to_a.gql(&token, "mutation { logout }").await["data"]["logout"], true);
        let answered = Instant::now();
        logouts.push((answered - sent).as_secs_f64() * 1e3);
        // The last request that still passed on B: when it was sent, and when it passed.
        let mut last_pass = None;
        loop {
            let asked = Instant::now();
            if error_code(&to_b.gql(&token, ME).await) == "UNAUTHENTICATED" {
                break;
            }
            last_pass = Some((asked, Instant::now()));
        }
        if last_pass.is_some() {
            passed_after_answer += 1;
        }
        let after = |at: Instant| (at - answered).as_secs_f64() * 1e3;
        windows.push(last_pass.map_or(0.0, |(asked, _)| after(asked)));
        passed_until.push(last_pass.map_or(0.0, |(_, passed)| after(passed)));
    }
    let report = |what: &str, mut samples: Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let (p50, p99, max) = (samples[n / 2], samples[n * 99 / 100], samples[n - 1]);
        println!("{what}: p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms ({n} tries)");
    };
    report("window: logout answered on A -> last request that passed on B was sent", windows);
    report("logout answered on A -> last request that passed on B was answered", passed_until);
    println!("tries in which any request passed on B after A answered: {passed_after_answer} of 1000");
    report("the logout itself on A (reference)", logouts);
}
