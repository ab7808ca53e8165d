//! One mailbox, one key: spellings of an address against one limit and one owner,
//! addresses that cannot be delivered as stored, Unicode case on a cluster whose
//! `lower()` folds ASCII only, sign-up that tells nobody whose address it is, the
//! owner's own reset under a stranger's storm, a link that dies with its code, and the
//! migration that keys the addresses of a database that already holds colliding ones.
//! Against a real SMTP server on loopback, as the email tests.

use diesel::sql_query;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::support::{
    Gql, PASSWORD, TestApp, count, error_code, expect_error, fresh_database, mail_to, mailing_app, smtp::SmtpServer,
};

const SIGNUP: &str = "mutation($input: SignupInput!) { signup(input: $input) { accessToken refreshToken tokenType expiresIn user { id name username role email emailVerified } } }";
const VERIFY: &str = "mutation($input: VerifyEmailInput!) { verifyEmail(input: $input) }";
const REQUEST_RESET: &str = "mutation($email: String!) { requestPasswordReset(email: $email) }";
const RESET: &str = "mutation($input: ResetPasswordInput!) { resetPassword(input: $input) { accessToken } }";
const CHANGE: &str = "mutation($p: String!, $e: String!) { changeEmail(input: { currentPassword: $p, newEmail: $e }) }";

fn signup(username: &str, email: &str) -> Gql {
    let input = json!({ "name": "Someone", "username": username, "password": PASSWORD, "email": email });
    Gql::query(SIGNUP, json!({ "input": input }))
}

/// Signs `username` up from `ip` with `email` and verifies it by the link it receives.
async fn verified(app: &TestApp, smtp: &SmtpServer, ip: &str, username: &str, email: &str) -> String {
    let before = smtp.wait_for(email, 0).await.len();
    let res = app.send(signup(username, email).peer(ip)).await;
    let access = res["data"]["signup"]["accessToken"].as_str().unwrap_or_else(|| panic!("{res}")).to_owned();
    let message = smtp.wait_for(email, before + 1).await.pop().unwrap();
    let res = app.gql(None, VERIFY, json!({ "input": { "token": message.token() } })).await;
    assert_eq!(res["data"]["verifyEmail"], true, "{res}");
    access
}

async fn connect(app: &TestApp) -> AsyncPgConnection {
    AsyncPgConnection::establish(&app.database_url).await.unwrap()
}

/// Waits until the outbox has nothing left to send.
async fn outbox_drained(app: &TestApp) {
    let mut conn = connect(app).await;
    let start = std::time::Instant::now();
    while count(&mut conn, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL AND abandoned_at IS NULL").await > 0
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "the outbox never drained");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Before keys, eight spellings of one mailbox from eight networks put 7 messages into
/// it against a limit of 5. Now every spelling spends one budget, and the ones that
/// cannot be delivered as typed are refused before they spend anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spellings_of_one_mailbox_share_one_limit_and_one_owner() {
    let (app, smtp, _sender) = mailing_app(|c| {
        c.email.per_address = 5;
        c.email.per_ip = 1000;
    })
    .await;
    verified(&app, &smtp, "192.0.2.1", "ada", "ada@example.com").await;
    // One owner: another account may claim a spelling of it (the claim spends one of
    // the budget, for the notice it sends the owner), never verify it.
    let bob = app.send(signup("bob", "ADA@EXAMPLE.COM").peer("192.0.2.2")).await;
    let bob = bob["data"]["signup"]["accessToken"].as_str().unwrap_or_else(|| panic!("{bob}")).to_owned();
    let change = app.gql(Some(&bob), CHANGE, json!({ "p": PASSWORD, "e": "Ada@Example.Com" })).await;
    expect_error(&change, "EMAIL_TAKEN");

    let spellings = [
        "ada@example.com",
        "ADA@example.com",
        "Ada@EXAMPLE.COM",
        " ada@Example.com ",
        "=?utf-8?q?ada?=@example.com",
        "\"ada\"@example.com",
        "aDa@example.COM",
        "ADA@EXAMPLE.com",
    ];
    let requests = spellings
        .iter()
        .enumerate()
        .map(|(i, e)| Gql::query(REQUEST_RESET, json!({ "email": e })).peer(&format!("198.51.100.{}", i + 1)));
    let codes: Vec<String> = app.concurrently(requests).await.iter().map(|r| error_code(r).to_owned()).collect();
    // The verification, the claim and the refused change spent three of five: two
    // resets pass, four are limited, and the encoded word and the quoted local part are
    // refused before they count.
    assert_eq!(codes.iter().filter(|c| c.is_empty()).count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| *c == "RATE_LIMITED").count(), 4, "{codes:?}");
    assert_eq!((codes[4].as_str(), codes[5].as_str()), ("BAD_USER_INPUT", "BAD_USER_INPUT"), "{codes:?}");
    outbox_drained(&app).await;
    let delivered = smtp.wait_for("ada@example.com", 4).await;
    assert_eq!(delivered.len(), 4, "a verification, a notice and two resets, however it was spelt");
    let to: Vec<&Vec<String>> = delivered.iter().map(|m| &m.to).collect();
    assert!(to.iter().all(|t| *t == &["ada@example.com"]), "{to:?}");
}

/// `"a\tb"@…` was stored and delivered to `atb@…`; `"a@evil.com"@…` and `a@[127.0.0.1]`
/// were accepted and could never be delivered. Each is refused on its field by every
/// mutation that takes an address.
#[tokio::test]
async fn addresses_that_cannot_be_delivered_as_stored_are_refused_everywhere() {
    let (app, smtp, _sender) = mailing_app(|_| {}).await;
    let access = verified(&app, &smtp, "192.0.2.1", "ada", "ada@example.com").await;
    let undeliverable = [
        "\"a\tb\"@example.com",
        "\"a@evil.com\"@example.com",
        "a@[127.0.0.1]",
        "=?utf-8?q?ada?=@example.com",
        "Ada <ada@example.com>",
        "a\u{200B}da@example.com",
        "ada@localhost",
    ];
    for (i, address) in undeliverable.into_iter().enumerate() {
        let res = app.send(signup(&format!("user{i}"), address)).await;
        assert_eq!(expect_error(&res, "BAD_USER_INPUT")["extensions"]["field"], "email", "{address:?}: {res}");
        let res = app.gql(Some(&access), CHANGE, json!({ "p": PASSWORD, "e": address })).await;
        assert_eq!(expect_error(&res, "BAD_USER_INPUT")["extensions"]["field"], "newEmail", "{address:?}: {res}");
        let res = app.gql(None, REQUEST_RESET, json!({ "email": address })).await;
        assert_eq!(expect_error(&res, "BAD_USER_INPUT")["extensions"]["field"], "email", "{address:?}: {res}");
    }
    let mut conn = connect(&app).await;
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM users").await, 1, "no account was made");
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM outbox WHERE kind = 'RESET_REQUEST'").await, 0);
}

#[derive(diesel::QueryableByName)]
struct Same {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    same: bool,
}

/// The test cluster runs with the C locale, as the embedded one does: its `lower()`
/// leaves `Ä` alone. An account that verified `ÄDA.x@…` was not found for `äda.x@…`, a
/// second account could verify `äda.x@…` beside it, and a reset asked for `äda.x@…`
/// reset the second. The key is computed in Rust, so all of that now meets one mailbox.
#[tokio::test]
async fn unicode_case_is_one_mailbox_on_a_c_locale_cluster() {
    let (app, _smtp, _sender) = mailing_app(|_| {}).await;
    let mut conn = connect(&app).await;
    let folds: Same = sql_query("SELECT lower('ÄDA') = 'äda' AS same").get_result(&mut conn).await.unwrap();
    assert!(!folds.same, "this cluster's lower() must not fold Ä, or the test proves nothing");

    // The first account verified its address (an operator's command sets it here: the
    // test SMTP server does not speak SMTPUTF8, which a non-ASCII mailbox needs).
    app.signup("first").await;
    authgraph::users::set_email(&app.operator(), "first", "ÄDA.x@example.com", true).await.unwrap();
    // A second account cannot take it under another case or normalization.
    let second = app.signup("second").await;
    let taken = authgraph::users::set_email(&app.operator(), "second", "a\u{0308}da.x@example.com", true).await;
    assert!(taken.unwrap_err().to_string().contains("is the verified address of first"));
    let res = app.gql(Some(&second.access), CHANGE, json!({ "p": PASSWORD, "e": "äda.X@EXAMPLE.com" })).await;
    expect_error(&res, "EMAIL_TAKEN");
    // A reset asked in lower case is for the first account, sent to its address.
    let res = app.gql(None, REQUEST_RESET, json!({ "email": "äda.x@example.com" })).await;
    assert_eq!(res["data"]["requestPasswordReset"], true, "{res}");
    let start = std::time::Instant::now();
    loop {
        let tokens = count(&mut conn, "SELECT count(*) AS n FROM email_tokens WHERE purpose = 'RESET_PASSWORD'").await;
        if tokens > 0 {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "the reset request was never resolved");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    #[derive(diesel::QueryableByName)]
    struct Sent {
        #[diesel(sql_type = diesel::sql_types::Text)]
        username: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        email: String,
    }
    let sent: Sent = sql_query(
        "SELECT u.username, t.email FROM email_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.purpose = 'RESET_PASSWORD'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!((sent.username.as_str(), sent.email.as_str()), ("first", "ÄDA.x@example.com"));
}

/// Sign-up answered EMAIL_TAKEN for an address another account had verified: the
/// oracle `requestPasswordReset` is careful not to be. Now both answers are the same
/// bytes once what must differ (tokens, id, username) is blanked, and the owner is
/// told by email instead.
#[tokio::test]
async fn signup_answers_alike_for_a_free_and_a_taken_address() {
    let (app, smtp, _sender) = mailing_app(|_| {}).await;
    verified(&app, &smtp, "192.0.2.1", "ada", "ada@example.com").await;
    let answer = async |username: &str, email: &str| {
        let res = app
            .gql_response(
                Some("192.0.2.9"),
                None,
                json!({ "query": SIGNUP, "variables": { "input": {
            "name": "Someone", "username": username, "password": PASSWORD, "email": email } } }),
            )
            .await;
        let status = res.status();
        let body: Value = crate::support::body_json(res).await;
        let payload = &body["data"]["signup"];
        let text = body
            .to_string()
            .replace(payload["accessToken"].as_str().unwrap(), "ACCESS")
            .replace(payload["refreshToken"].as_str().unwrap(), "REFRESH")
            .replace(payload["user"]["id"].as_str().unwrap(), "ID")
            .replace(username, "USERNAME");
        (status, text)
    };
    let free = answer("free_one", "someone@example.com").await;
    let taken = answer("taken_one", "ada@example.com").await;
    assert_eq!(free.0, taken.0);
    assert_eq!(free.1.replace("someone@example.com", "EMAIL"), taken.1.replace("ada@example.com", "EMAIL"));
    let told = smtp.wait_for("ada@example.com", 2).await.pop().unwrap();
    assert_eq!(told.subject(), "Someone signed up for Acme with your email address");
    smtp.wait_for("someone@example.com", 1).await;
}

/// Before, five reset requests for a victim's address from five strangers' networks
/// spent the hour's budget, and the owner's own request was RATE_LIMITED. Requests
/// from networks the account has signed in from now have a budget of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_resets_under_a_strangers_storm() {
    let (app, smtp, _sender) = mailing_app(|c| {
        c.email.per_address = 5;
        c.email.per_ip = 1000;
    })
    .await;
    verified(&app, &smtp, "203.0.113.7", "ada", "ada@example.com").await;
    let signin = app.signin_from("203.0.113.7", "ada", PASSWORD).await;
    assert_eq!(signin.status(), 200);
    let storm = (0..20).map(|i| {
        Gql::query(REQUEST_RESET, json!({ "email": "ada@example.com" })).peer(&format!("198.51.100.{}", i + 1))
    });
    let codes: Vec<String> = app.concurrently(storm).await.iter().map(|r| error_code(r).to_owned()).collect();
    assert_eq!(codes.iter().filter(|c| *c == "RATE_LIMITED").count(), 16, "{codes:?}");
    // A stranger's network that has not asked yet is refused too: one stranger budget.
    let late = app.send(Gql::query(REQUEST_RESET, json!({ "email": "ada@example.com" })).peer("198.51.100.200")).await;
    expect_error(&late, "RATE_LIMITED");
    // The owner, from where they sign in: answered, and the link arrives.
    let own = app.send(Gql::query(REQUEST_RESET, json!({ "email": "ADA@example.com" })).peer("203.0.113.7")).await;
    assert_eq!(own["data"]["requestPasswordReset"], true, "{own}");
    let messages = smtp.wait_for("ada@example.com", 6).await;
    assert_eq!(messages.len(), 6, "the verification, four stranger resets and the owner's");
}

/// A link still worked after its code died of too many wrong tries, while the README
/// said the message was dead. The link and the code are one message now.
#[tokio::test]
async fn a_reset_link_dies_with_its_code() {
    let (app, smtp, _sender) = mailing_app(|c| c.email.code_attempts = 3).await;
    verified(&app, &smtp, "192.0.2.1", "ada", "ada@example.com").await;
    app.gql(None, REQUEST_RESET, json!({ "email": "ada@example.com" })).await;
    let message = smtp.wait_for("ada@example.com", 2).await.pop().unwrap();
    let wrong = format!("{:06}", (message.code().parse::<u32>().unwrap() + 1) % 1_000_000);
    for _ in 0..3 {
        let input = json!({ "email": "ada@example.com", "code": wrong, "newPassword": "a brand new passphrase" });
        app.gql(None, RESET, json!({ "input": input })).await;
    }
    let by_link = json!({ "token": message.token(), "newPassword": "a brand new passphrase" });
    let res = app.gql(None, RESET, json!({ "input": by_link })).await;
    assert_eq!(expect_error(&res, "INVALID_EMAIL_TOKEN")["extensions"]["reason"], "TOO_MANY_ATTEMPTS", "{res}");
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    username: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    email: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    email_key: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    verified: bool,
}

/// A database from before keys, holding addresses that `lower()` told apart and that
/// are one mailbox, and one that cannot be delivered: the migration keeps each
/// mailbox verified on the account that verified it first, unverifies the others and
/// tells them by email, and the unique index builds.
#[tokio::test]
async fn the_migration_keys_a_database_that_holds_colliding_addresses() {
    let database = std::sync::Arc::new(fresh_database().await);
    let url = database.url.clone();
    // Back to the schema before keys: the two migrations that add them, and every
    // later one, reverted.
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        use diesel_migrations::MigrationHarness;
        let mut conn =
            <diesel_async::async_connection_wrapper::AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(
                &url,
            )
            .unwrap();
        let keyed = |conn: &mut _| {
            MigrationHarness::<diesel::pg::Pg>::applied_migrations(conn)
                .unwrap()
                .iter()
                .any(|v| v.to_string().ends_with("000010"))
        };
        while keyed(&mut conn) {
            conn.revert_last_migration(authgraph::db::MIGRATIONS).unwrap();
        }
    })
    .await
    .unwrap();
    let mut conn = AsyncPgConnection::establish(&database.url).await.unwrap();
    sql_query(
        "INSERT INTO users (name, username, password_hash, email, email_verified_at, created_at) VALUES
           ('a', 'first',    'x', 'ÄDA.x@example.com',          now() - interval '3 days', now() - interval '9 days'),
           ('b', 'second',   'x', 'a\u{0308}da.x@example.com',   now() - interval '2 days', now() - interval '8 days'),
           ('c', 'third',    'x', 'äda.x@example.com',           now() - interval '1 day',  now() - interval '7 days'),
           ('d', 'idn',      'x', 'bob@münchen.de',               now() - interval '2 days', now() - interval '6 days'),
           ('e', 'ascii',    'x', 'bob@XN--MNCHEN-3YA.DE',        now() - interval '1 day',  now() - interval '5 days'),
           ('f', 'quoted',   'x', '\"carol\"@example.com',        now(),                     now() - interval '4 days'),
           ('g', 'claim',    'x', 'Dan@EXAMPLE.com',              NULL,                      now() - interval '3 days')",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    authgraph::db::run_migrations(&database.url).await.unwrap();

    let rows: Vec<Row> = sql_query(
        "SELECT username, email, email_key, email_verified_at IS NOT NULL AS verified FROM users ORDER BY created_at",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let row = |u: &str, e: &str, k: Option<&str>, v: bool| Row {
        username: u.into(),
        email: e.into(),
        email_key: k.map(Into::into),
        verified: v,
    };
    assert_eq!(
        rows,
        [
            row("first", "ÄDA.x@example.com", Some("äda.x@example.com"), true),
            row("second", "äda.x@example.com", Some("äda.x@example.com"), false),
            row("third", "äda.x@example.com", Some("äda.x@example.com"), false),
            row("idn", "bob@xn--mnchen-3ya.de", Some("bob@xn--mnchen-3ya.de"), true),
            row("ascii", "bob@xn--mnchen-3ya.de", Some("bob@xn--mnchen-3ya.de"), false),
            row("quoted", "\"carol\"@example.com", None, false),
            row("claim", "Dan@example.com", Some("dan@example.com"), false),
        ]
    );
    #[derive(diesel::QueryableByName)]
    struct Recipient {
        #[diesel(sql_type = diesel::sql_types::Text)]
        recipient: String,
    }
    let told: Vec<String> =
        sql_query("SELECT recipient FROM outbox WHERE kind = 'ADDRESS_UNVERIFIED' ORDER BY recipient")
            .load::<Recipient>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.recipient)
            .collect();
    assert_eq!(told, ["bob@xn--mnchen-3ya.de", "äda.x@example.com", "äda.x@example.com"]);
    // The unique index holds: the second cannot be verified beside the first.
    let again =
        sql_query("UPDATE users SET email_verified_at = now() WHERE username = 'third'").execute(&mut conn).await;
    assert!(again.unwrap_err().to_string().contains("users_verified_email_key"));

    // The notice that can be delivered is, by the sender, as any message.
    let smtp = SmtpServer::start();
    let app = TestApp::on_database(database.clone(), mail_to(&smtp));
    let _sender = app.start_sender();
    let notice = smtp.wait_for("bob@xn--mnchen-3ya.de", 1).await.pop().unwrap();
    assert_eq!(notice.subject(), "Your Acme email address needs confirming again");
    // Starting again changes nothing: every step ran once.
    assert_eq!(authgraph::db::run_migrations(&database.url).await.unwrap(), 0);
}
