//! The attack suite, part four: guessing against the limits with concurrent requests.
//! The earlier server checked a limit before hashing but counted after, so every
//! request in flight passed the check: 60 concurrent wrong sign-ins against a limit of
//! 10 were all hashed, and the right password sent last got in. Each test here counts
//! the hashes the attack cost, not only the answers.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::support::{Gql, PASSWORD, SIGNIN, SIGNUP, TestApp, error_code};

fn signin_request(peer: &str, forwarded: Option<&str>, username: &str, password: &str) -> Gql {
    let req = Gql::query(SIGNIN, json!({ "input": { "username": username, "password": password } })).peer(peer);
    match forwarded {
        Some(forwarded) => req.forwarded_for(forwarded),
        None => req,
    }
}

/// Sends every request at once and counts the answers' codes ("" for success).
async fn concurrently(app: &TestApp, requests: Vec<Gql>) -> HashMap<String, usize> {
    let mut codes = HashMap::new();
    for answer in app.concurrently(requests).await {
        *codes.entry(error_code(&answer).to_owned()).or_insert(0) += 1;
    }
    codes
}

fn count(codes: &HashMap<String, usize>, code: &str) -> usize {
    codes.get(code).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_from_one_address_hash_at_most_its_limit() {
    let app = TestApp::new().await;
    app.signup("ada").await;
    let before = app.state.auth.hasher.computed();
    let guesses = (0..100).map(|i| signin_request("203.0.113.1", None, "ada", &format!("guess {i}"))).collect();
    let codes = concurrently(&app, guesses).await;
    let hashed = app.state.auth.hasher.computed() - before;
    assert_eq!(count(&codes, "INVALID_CREDENTIALS") + count(&codes, "RATE_LIMITED"), 100, "{codes:?}");
    eprintln!("100 concurrent guesses from one address: {hashed} hashed, {codes:?}");
    assert!(hashed <= 5, "{hashed} guesses hashed against a limit of 5 per account and address");
    assert_eq!(count(&codes, "INVALID_CREDENTIALS") as u64, hashed);
    // The right password, from the guessing address, is refused while locked.
    let res = app.send(signin_request("203.0.113.1", None, "ada", PASSWORD)).await;
    assert_eq!(error_code(&res), "RATE_LIMITED", "{res}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_guesses_lock_strangers_out_but_not_the_owner_at_home() {
    let app = TestApp::new().await;
    app.signup("ada").await;
    // The owner has signed in from home before the attack.
    let home = app.send(signin_request("198.51.100.2", None, "ada", PASSWORD)).await;
    assert!(home["data"]["signin"].is_object(), "{home}");

    let before = app.state.auth.hasher.computed();
    let guesses = (0..100)
        .map(|i| signin_request(&format!("203.0.{}.{}", i / 200, i % 200 + 1), None, "ada", &format!("guess {i}")))
        .collect();
    let codes = concurrently(&app, guesses).await;
    let hashed = app.state.auth.hasher.computed() - before;
    eprintln!("100 concurrent guesses from 100 addresses: {hashed} hashed, {codes:?}");
    assert!(hashed <= 10, "{hashed} guesses hashed against a limit of 10 per account: {codes:?}");
    assert_eq!(count(&codes, "RATE_LIMITED"), 100 - hashed as usize, "{codes:?}");

    // A stranger with the right password is refused; the owner at home is not.
    let stranger = app.send(signin_request("192.0.2.77", None, "ada", PASSWORD)).await;
    assert_eq!(error_code(&stranger), "RATE_LIMITED", "{stranger}");
    let owner = app.send(signin_request("198.51.100.2", None, "ada", PASSWORD)).await;
    assert!(owner["data"]["signin"]["accessToken"].is_string(), "{owner}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_race_from_one_address_passes_exactly_the_limit() {
    let app = TestApp::with_config(|c| c.signups_per_ip = 20).await;
    let signups = (0..60)
        .map(|i| {
            let input = json!({ "name": "racer", "username": format!("racer{i}"), "password": PASSWORD });
            Gql::query(SIGNUP, json!({ "input": input })).peer("203.0.113.9")
        })
        .collect();
    let codes = concurrently(&app, signups).await;
    assert_eq!(count(&codes, ""), 20, "{codes:?}");
    assert_eq!(count(&codes, "RATE_LIMITED"), 40, "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_guessing_with_a_stolen_token_is_limited() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let change =
        "mutation($c: String!) { changePassword(input: { currentPassword: $c, newPassword: \"a new passphrase\" }) }";
    let before = app.state.auth.hasher.computed();
    let guesses =
        (0..30).map(|i| Gql::query(change, json!({ "c": format!("guess {i}") })).bearer(&ada.access)).collect();
    let codes = concurrently(&app, guesses).await;
    let hashed = app.state.auth.hasher.computed() - before;
    assert!(hashed <= 10, "{hashed} current-password guesses hashed: {codes:?}");
    assert_eq!(count(&codes, "RATE_LIMITED"), 30 - hashed as usize, "{codes:?}");
    let right = app.gql(Some(&ada.access), change, json!({ "c": PASSWORD })).await;
    assert_eq!(error_code(&right), "RATE_LIMITED", "locked for the window: {right}");
}

#[tokio::test]
async fn a_success_forgives_its_own_attempt_only() {
    let app = TestApp::with_config(|c| c.signin_failures_per_account_address = 3).await;
    app.signup("ada").await;
    let attempt =
        async |password: &str| -> Value { app.send(signin_request("203.0.113.4", None, "ada", password)).await };
    assert_eq!(error_code(&attempt("wrong one").await), "INVALID_CREDENTIALS");
    assert_eq!(error_code(&attempt("wrong two").await), "INVALID_CREDENTIALS");
    assert_eq!(error_code(&attempt(PASSWORD).await), "", "right, and forgiven");
    // Two failures still count: one more reaches the limit, then the address waits.
    assert_eq!(error_code(&attempt("wrong three").await), "INVALID_CREDENTIALS");
    assert_eq!(error_code(&attempt("wrong four").await), "RATE_LIMITED");
}

#[tokio::test]
async fn ipv6_clients_of_one_64_count_as_one_address() {
    let app = TestApp::with_config(|c| {
        c.signin_failures_per_ip = 3;
        c.trusted_proxies = "10.0.0.0/8".parse().unwrap();
    })
    .await;
    let guess = async |client: &str, username: &str| -> String {
        let res = app.send(signin_request("10.0.0.5", Some(client), username, "guess")).await;
        error_code(&res).to_owned()
    };
    for (i, client) in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"].into_iter().enumerate() {
        assert_eq!(guess(client, &format!("victim{i}")).await, "INVALID_CREDENTIALS");
    }
    assert_eq!(guess("2001:db8:1:2:abcd::9", "victim9").await, "RATE_LIMITED", "the same /64");
    assert_eq!(guess("2001:db8:1:3::1", "victim9").await, "INVALID_CREDENTIALS", "the next /64 is another client");
    // Without the trusted proxy, the header is ignored: the peer is the client.
    let res = app.send(signin_request("192.0.2.1", Some("2001:db8:9::1"), "x", "guess")).await;
    assert_eq!(error_code(&res), "INVALID_CREDENTIALS");
}
