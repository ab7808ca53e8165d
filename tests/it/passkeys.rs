//! Passkeys, used and attacked with a software authenticator: registration (a
//! discoverable, user-verified credential), sign-in with and without a username, the
//! second factor of a password session, and what must be refused: replayed
//! assertions and challenges, expired ones, another ceremony's or another account's,
//! a wrong origin or RP ID, a counter that went backwards; concurrent finishes of one
//! challenge; a ceremony begun on one instance and finished on another; the limits
//! under concurrency.

use serde_json::{Value, json};

use crate::support::{Auth, Gql, PASSWORD, TestApp, authenticator::Device, claims, count, error_code, expect_error};

const ORIGIN: &str = "https://app.example.com";

const START_REGISTRATION: &str = "mutation { startPasskeyRegistration { challengeId optionsJson expiresAt } }";
const FINISH_REGISTRATION: &str = "mutation($c: ID!, $j: String!) { finishPasskeyRegistration(challengeId: $c, credentialJson: $j) { id name backedUp transports } }";
const START_SIGN_IN: &str = "mutation($u: String) { startPasskeySignIn(username: $u) { challengeId optionsJson } }";
const FINISH_SIGN_IN: &str = "mutation($c: ID!, $j: String!) { finishPasskeySignIn(challengeId: $c, credentialJson: $j) { accessToken refreshToken mfaRequired assurance user { username } } }";
const START_VERIFICATION: &str = "mutation { startPasskeyVerification { challengeId optionsJson } }";
const VERIFY: &str = "mutation($c: ID!, $j: String!) { verifyPasskey(challengeId: $c, credentialJson: $j) { accessToken refreshToken mfaRequired assurance } }";
const REFRESH: &str = "mutation($t: String) { refresh(refreshToken: $t) { accessToken refreshToken assurance } }";
const SIGNIN: &str = "mutation($u: String!, $p: String!) { signin(input: { username: $u, password: $p }) { accessToken refreshToken mfaRequired assurance } }";

async fn app() -> TestApp {
    TestApp::with_config(relying_party).await
}

fn relying_party(c: &mut authgraph::config::Config) {
    c.passkeys.rp_id = Some("example.com".into());
    c.passkeys.origins = ORIGIN.parse().unwrap();
}

/// A started ceremony: its id and options.
async fn start(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> (String, String) {
    let res = app.gql(token, query, variables).await;
    let field = ["startPasskeyRegistration", "startPasskeySignIn", "startPasskeyVerification"]
        .into_iter()
        .find(|f| res["data"][f].is_object())
        .unwrap_or_else(|| panic!("no ceremony started: {res}"));
    let c = &res["data"][field];
    (c["challengeId"].as_str().unwrap().to_owned(), c["optionsJson"].as_str().unwrap().to_owned())
}

/// Registers a passkey of `who` on `device`; its refresh then says AAL2.
async fn register(app: &TestApp, who: &Auth, device: &mut Device) -> Value {
    let (id, options) = start(app, Some(&who.access), START_REGISTRATION, json!({})).await;
    let credential = device.create(ORIGIN, &options).await;
    app.gql(Some(&who.access), FINISH_REGISTRATION, json!({ "c": id, "j": credential })).await
}

/// A sign-in assertion of `device` for a new ceremony (with `username`): its
/// challenge id and the assertion.
async fn assertion(app: &TestApp, device: &mut Device, username: Option<&str>) -> (String, String) {
    let (id, options) = start(app, None, START_SIGN_IN, json!({ "u": username })).await;
    (id, device.get(ORIGIN, &options, |_| {}).await)
}

async fn finish_sign_in(app: &TestApp, id: &str, credential: &str) -> Value {
    app.gql(None, FINISH_SIGN_IN, json!({ "c": id, "j": credential })).await
}

#[tokio::test]
async fn a_passkey_signs_in_with_and_without_a_username_and_is_a_second_factor() {
    let app = app().await;
    let ada = app.signup("ada").await;
    let _bob = app.signup("bob").await;
    let mut device = Device::new();

    // The options ask for a discoverable, user-verified credential.
    let (_, options) = start(&app, Some(&ada.access), START_REGISTRATION, json!({})).await;
    let options: Value = serde_json::from_str(&options).unwrap();
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required", "{options}");
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(options["rp"]["id"], "example.com");
    assert!(options.get("publicKey").is_none(), "the inner options, not wrapped");

    let registered = register(&app, &ada, &mut device).await;
    let passkey = &registered["data"]["finishPasskeyRegistration"];
    assert_eq!(passkey["name"], "Passkey", "{registered}");
    // The registering session is AAL2 now: its refresh says so.
    let raised = app.gql(None, REFRESH, json!({ "t": ada.refresh })).await;
    assert_eq!(raised["data"]["refresh"]["assurance"], "AAL2", "{raised}");
    let token = raised["data"]["refresh"]["accessToken"].as_str().unwrap();
    assert_eq!(claims(token)["amr"], json!(["pwd", "swk"]), "a synced passkey is swk");
    let me = app.gql(Some(token), "{ me { mfaEnabled passkeyCount } passkeys { id backedUp } }", json!({})).await;
    assert_eq!(me["data"]["me"], json!({ "mfaEnabled": true, "passkeyCount": 1 }), "{me}");

    // Without a username (autofill): any discoverable credential of the RP.
    let (id, credential) = assertion(&app, &mut device, None).await;
    let signed_in = finish_sign_in(&app, &id, &credential).await;
    let payload = &signed_in["data"]["finishPasskeySignIn"];
    assert_eq!(
        (payload["assurance"].as_str(), payload["mfaRequired"].as_bool()),
        (Some("AAL2"), Some(false)),
        "{signed_in}"
    );
    assert_eq!(payload["user"]["username"], "ada");
    assert_eq!(claims(payload["accessToken"].as_str().unwrap())["amr"], json!(["swk", "user"]));
    // The session refreshes at AAL2 too.
    let refreshed = app.gql(None, REFRESH, json!({ "t": payload["refreshToken"] })).await;
    assert_eq!(refreshed["data"]["refresh"]["assurance"], "AAL2", "{refreshed}");

    // With the username: the same options whether or not the account exists.
    let (id, credential) = assertion(&app, &mut device, Some("ada")).await;
    assert!(finish_sign_in(&app, &id, &credential).await["data"]["finishPasskeySignIn"].is_object());
    // A banned account's passkey verifies, and the sign-in is refused.
    let (acting, ada_id) = (authgraph::admin::Acting::operator(Some("test")).unwrap(), ada.user_id.parse().unwrap());
    authgraph::admin::ban(&app.operator(), &acting, ada_id, None).await.unwrap();
    let (id, credential) = assertion(&app, &mut device, None).await;
    expect_error(&finish_sign_in(&app, &id, &credential).await, "ACCOUNT_BANNED");
    authgraph::admin::unban(&app.operator(), &acting, ada_id).await.unwrap();
    let (_, for_ada) = start(&app, None, START_SIGN_IN, json!({ "u": "ada" })).await;
    let (_, for_nobody) = start(&app, None, START_SIGN_IN, json!({ "u": "nobody" })).await;
    let shape = |o: &str| {
        let mut v: Value = serde_json::from_str(o).unwrap();
        v.as_object_mut().unwrap().remove("challenge");
        v
    };
    assert_eq!(shape(&for_ada), shape(&for_nobody), "no enumeration through the options");
    // A ceremony begun for another name refuses ada's passkey.
    for other in ["bob", "nobody"] {
        let (id, credential) = assertion(&app, &mut device, Some(other)).await;
        expect_error(&finish_sign_in(&app, &id, &credential).await, "INVALID_PASSKEY");
    }

    // A password sign-in now needs the second factor; the passkey passes it.
    let res = app.gql(None, SIGNIN, json!({ "u": "ada", "p": PASSWORD })).await;
    let aal1 = &res["data"]["signin"];
    assert_eq!(aal1["mfaRequired"], true, "{res}");
    let access = aal1["accessToken"].as_str().unwrap();
    expect_error(&app.gql(Some(access), "{ passkeys { id } }", json!({})).await, "MFA_REQUIRED");
    let (id, options) = start(&app, Some(access), START_VERIFICATION, json!({})).await;
    let allowed: Value = serde_json::from_str(&options).unwrap();
    assert_eq!(allowed["allowCredentials"].as_array().map(Vec::len), Some(1), "{allowed}");
    let credential = device.get(ORIGIN, &options, |_| {}).await;
    let verified = app.gql(Some(access), VERIFY, json!({ "c": id, "j": credential })).await;
    let raised = &verified["data"]["verifyPasskey"];
    assert_eq!(
        (raised["assurance"].as_str(), raised["mfaRequired"].as_bool()),
        (Some("AAL2"), Some(false)),
        "{verified}"
    );
    assert_eq!(claims(raised["accessToken"].as_str().unwrap())["amr"], json!(["pwd", "swk"]));
    // The AAL1 refresh token stopped rotating.
    expect_error(&app.gql(None, REFRESH, json!({ "t": aal1["refreshToken"] })).await, "INVALID_REFRESH_TOKEN");

    // Renamed, then deleted: the last factor going turns the second factor off.
    let aal2 = raised["accessToken"].as_str().unwrap();
    let id = me["data"]["passkeys"][0]["id"].as_str().unwrap();
    let renamed = app
        .gql(Some(aal2), "mutation($id: ID!) { renamePasskey(id: $id, name: \"Phone\") { name } }", json!({ "id": id }))
        .await;
    assert_eq!(renamed["data"]["renamePasskey"]["name"], "Phone", "{renamed}");
    let deleted = app.gql(Some(aal2), "mutation($id: ID!) { deletePasskey(id: $id) }", json!({ "id": id })).await;
    assert_eq!(deleted["data"]["deletePasskey"], true, "{deleted}");
    let me = app.gql(Some(aal2), "{ me { mfaEnabled passkeyCount } }", json!({})).await;
    assert_eq!(me["data"]["me"], json!({ "mfaEnabled": false, "passkeyCount": 0 }));
    let (id, credential) = assertion(&app, &mut device, None).await;
    expect_error(&finish_sign_in(&app, &id, &credential).await, "INVALID_PASSKEY");
}

#[tokio::test]
async fn replayed_expired_and_foreign_challenges_and_credentials_are_refused() {
    let app = app().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    let mut device = Device::new();
    register(&app, &ada, &mut device).await;

    // Replayed: the challenge was answered once.
    let (id, credential) = assertion(&app, &mut device, None).await;
    assert!(finish_sign_in(&app, &id, &credential).await["data"]["finishPasskeySignIn"].is_object());
    expect_error(&finish_sign_in(&app, &id, &credential).await, "INVALID_PASSKEY");
    // An assertion of one ceremony sent with another's challenge id.
    let (other, _) = start(&app, None, START_SIGN_IN, json!({})).await;
    let (_, credential) = assertion(&app, &mut device, None).await;
    expect_error(&finish_sign_in(&app, &other, &credential).await, "INVALID_PASSKEY");
    // A ceremony of another kind.
    let (registration, _) = start(&app, Some(&bob.access), START_REGISTRATION, json!({})).await;
    expect_error(&finish_sign_in(&app, &registration, &credential).await, "INVALID_PASSKEY");
    // Expired.
    let (id, credential) = assertion(&app, &mut device, None).await;
    let mut conn: diesel_async::AsyncPgConnection =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&app.database_url).await.unwrap();
    count(&mut conn, "WITH x AS (UPDATE passkey_ceremonies SET expires_at = now() - interval '1 second' RETURNING 1) SELECT count(*) AS n FROM x").await;
    expect_error(&finish_sign_in(&app, &id, &credential).await, "INVALID_PASSKEY");
    // Garbage is not a credential.
    let (id, _) = start(&app, None, START_SIGN_IN, json!({})).await;
    expect_error(&finish_sign_in(&app, &id, "{}").await, "BAD_USER_INPUT");

    // Wrong origin, at registration and at sign-in.
    let (id, options) = start(&app, Some(&bob.access), START_REGISTRATION, json!({})).await;
    let credential = Device::new().create("https://evil.example.com", &options).await;
    expect_error(
        &app.gql(Some(&bob.access), FINISH_REGISTRATION, json!({ "c": id, "j": credential })).await,
        "INVALID_PASSKEY",
    );
    let (id, options) = start(&app, None, START_SIGN_IN, json!({})).await;
    let credential = device.get("https://evil.example.com", &options, |_| {}).await;
    expect_error(&finish_sign_in(&app, &id, &credential).await, "INVALID_PASSKEY");
    // Wrong RP ID: the right origin, a key scoped to its host instead of the RP.
    let (id, options) = start(&app, Some(&bob.access), START_REGISTRATION, json!({})).await;
    let mut patched: Value = serde_json::from_str(&options).unwrap();
    patched["rp"]["id"] = json!("app.example.com");
    let credential = Device::new().create(ORIGIN, &patched.to_string()).await;
    expect_error(
        &app.gql(Some(&bob.access), FINISH_REGISTRATION, json!({ "c": id, "j": credential })).await,
        "INVALID_PASSKEY",
    );
    let (id, options) = start(&app, None, START_SIGN_IN, json!({})).await;
    let credential = device.get(ORIGIN, &options, |o| o["rpId"] = json!("app.example.com")).await;
    expect_error(&finish_sign_in(&app, &id, &credential).await, "INVALID_PASSKEY");

    // Another account's credential cannot pass bob's second factor.
    let mut bobs = Device::new();
    register(&app, &bob, &mut bobs).await;
    let res = app.gql(None, SIGNIN, json!({ "u": "bob", "p": PASSWORD })).await;
    let bob_aal1 = res["data"]["signin"]["accessToken"].as_str().unwrap().to_owned();
    let (id, options) = start(&app, Some(&bob_aal1), START_VERIFICATION, json!({})).await;
    let adas = device.get(ORIGIN, &options, |o| o["allowCredentials"] = json!([])).await;
    expect_error(&app.gql(Some(&bob_aal1), VERIFY, json!({ "c": id, "j": adas })).await, "INVALID_PASSKEY");
    // Nor can one session finish another's ceremony.
    let (id, options) = start(&app, Some(&bob_aal1), START_VERIFICATION, json!({})).await;
    let credential = bobs.get(ORIGIN, &options, |_| {}).await;
    let other_session = app.gql(None, SIGNIN, json!({ "u": "bob", "p": PASSWORD })).await;
    let other = other_session["data"]["signin"]["accessToken"].as_str().unwrap();
    expect_error(&app.gql(Some(other), VERIFY, json!({ "c": id, "j": credential })).await, "INVALID_PASSKEY");
}

#[tokio::test]
async fn a_counter_that_goes_backwards_flags_the_passkey() {
    let app = app().await;
    let ada = app.signup("ada").await;
    let mut device = Device::new();
    register(&app, &ada, &mut device).await;
    device.set_counter(10);
    let (id, credential) = assertion(&app, &mut device, None).await;
    assert!(finish_sign_in(&app, &id, &credential).await["data"]["finishPasskeySignIn"].is_object());
    // A clone of the device, from before that use, signs with a counter behind it.
    let mut clone = device.copy();
    clone.set_counter(3);
    let (id, credential) = assertion(&app, &mut clone, None).await;
    expect_error(&finish_sign_in(&app, &id, &credential).await, "INVALID_PASSKEY");
    // Flagged: refused from then on, the genuine device too; its owner sees why.
    let (id, credential) = assertion(&app, &mut device, None).await;
    expect_error(&finish_sign_in(&app, &id, &credential).await, "INVALID_PASSKEY");
    let aal2 = app.gql(None, REFRESH, json!({ "t": ada.refresh })).await;
    let token = aal2["data"]["refresh"]["accessToken"].as_str().unwrap();
    let listed = app.gql(Some(token), "{ passkeys { flaggedAt } }", json!({})).await;
    assert!(listed["data"]["passkeys"][0]["flaggedAt"].is_string(), "{listed}");
    // The clone's assertion is a failed sign-in in the owner's events.
    let events = app.gql(Some(token), "{ mySecurityEvents { nodes { kind detail } } }", json!({})).await;
    let failed = events["data"]["mySecurityEvents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "SIGNIN_FAILED" && e["detail"].as_str().unwrap().contains("PASSKEY_NOT_VERIFIED"))
        .count();
    assert!(failed >= 1, "{events}");
}

#[tokio::test]
async fn one_challenge_finished_concurrently_signs_in_once_and_any_instance_finishes_it() {
    let app = app().await;
    let ada = app.signup("ada").await;
    let mut device = Device::new();
    register(&app, &ada, &mut device).await;

    let (id, credential) = assertion(&app, &mut device, None).await;
    let finish = || Gql::query(FINISH_SIGN_IN, json!({ "c": id, "j": credential }));
    let answers = app.concurrently((0..8).map(|_| finish())).await;
    let won = answers.iter().filter(|a| a["data"]["finishPasskeySignIn"].is_object()).count();
    let refused = answers.iter().filter(|a| error_code(a) == "INVALID_PASSKEY").count();
    assert_eq!((won, refused), (1, 7), "{answers:?}");

    // Begun on one instance, finished on another (the state is in PostgreSQL).
    let other = app.sibling(relying_party);
    let (id, credential) = assertion(&app, &mut device, None).await;
    assert!(finish_sign_in(&other, &id, &credential).await["data"]["finishPasskeySignIn"].is_object());
}

#[tokio::test]
async fn open_ceremonies_and_failed_passkey_sign_ins_are_limited_under_concurrency() {
    let app = TestApp::with_config(|c| {
        relying_party(c);
        c.passkeys.ceremonies_per_ip = 5;
        c.signin_failures_per_account_address = 3;
    })
    .await;
    let start_from = |ip: &str| Gql::query(START_SIGN_IN, json!({ "u": "ada" })).peer(ip);
    let answers = app.concurrently((0..12).map(|_| start_from("203.0.113.7"))).await;
    let opened = answers.iter().filter(|a| a["data"]["startPasskeySignIn"].is_object()).count();
    let limited = answers.iter().filter(|a| error_code(a) == "RATE_LIMITED").count();
    assert_eq!((opened, limited), (5, 7), "{answers:?}");
    let mut conn: diesel_async::AsyncPgConnection =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&app.database_url).await.unwrap();
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM passkey_ceremonies").await, 5, "the table holds the bound");
    // Another network is not held back by this one.
    assert!(app.send(start_from("198.51.100.9")).await["data"]["startPasskeySignIn"].is_object());

    // Failed passkey sign-ins for ada count like wrong passwords, atomically.
    let ada = app.signup("ada").await;
    let mut device = Device::new();
    register(&app, &ada, &mut device).await;
    let mut finishes = Vec::new();
    for _ in 0..4 {
        let ip = "192.0.2.44";
        let started = app.send(Gql::query(START_SIGN_IN, json!({ "u": "ada" })).peer(ip)).await;
        let id = started["data"]["startPasskeySignIn"]["challengeId"].as_str().unwrap().to_owned();
        // Answered with another ceremony's assertion: a failure.
        let (_, wrong) = assertion(&app, &mut device, None).await;
        finishes.push(Gql::query(FINISH_SIGN_IN, json!({ "c": id, "j": wrong })).peer(ip));
    }
    let answers = app.concurrently(finishes).await;
    let failed = answers.iter().filter(|a| error_code(a) == "INVALID_PASSKEY").count();
    let limited = answers.iter().filter(|a| error_code(a) == "RATE_LIMITED").count();
    assert_eq!((failed, limited), (3, 1), "{answers:?}");
}

#[tokio::test]
async fn a_credential_registered_already_is_passkey_exists_for_its_owner_and_invalid_for_others() {
    let app = app().await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    register(&app, &ada, &mut Device::new()).await;
    register(&app, &bob, &mut Device::new()).await;
    let mut conn: diesel_async::AsyncPgConnection =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&app.database_url).await.unwrap();
    // A browser that ignored excludeCredentials: the new credential's id is one the
    // server holds already. (The software authenticator always makes new ids, so the
    // stored one is made to match it.)
    let aal2 = app.gql(None, REFRESH, json!({ "t": ada.refresh })).await;
    let ada_now = aal2["data"]["refresh"]["accessToken"].as_str().unwrap().to_owned();
    for (owner, expected) in [("ada", "PASSKEY_EXISTS"), ("bob", "INVALID_PASSKEY")] {
        let (id, options) = start(&app, Some(&ada_now), START_REGISTRATION, json!({})).await;
        let credential = Device::new().create(ORIGIN, &options).await;
        let raw_id: Value = serde_json::from_str::<Value>(&credential).unwrap()["rawId"].clone();
        let bytes = base64_url(raw_id.as_str().unwrap());
        let sql = format!(
            "WITH x AS (UPDATE passkeys SET credential_id = '\\x{bytes}' WHERE user_id = (SELECT id FROM users WHERE username = '{owner}') RETURNING 1) SELECT count(*) AS n FROM x"
        );
        assert_eq!(count(&mut conn, &sql).await, 1);
        let res = app.gql(Some(&ada_now), FINISH_REGISTRATION, json!({ "c": id, "j": credential })).await;
        expect_error(&res, expected);
    }
}

/// The hex of a base64url (unpadded) text.
fn base64_url(text: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).unwrap().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn development_accepts_localhost_on_any_port_and_nothing_else() {
    let app = TestApp::with_config(|c| {
        c.passkeys.rp_id = None;
        c.passkeys.origins = authgraph::config::Origins::default();
    })
    .await;
    let ada = app.signup("ada").await;
    let mut device = Device::on_localhost();
    let (id, options) = start(&app, Some(&ada.access), START_REGISTRATION, json!({})).await;
    let options_value: Value = serde_json::from_str(&options).unwrap();
    assert_eq!(options_value["rp"]["id"], "localhost");
    let credential = device.create("http://localhost:5173", &options).await;
    let registered = app.gql(Some(&ada.access), FINISH_REGISTRATION, json!({ "c": id, "j": credential })).await;
    assert!(registered["data"]["finishPasskeyRegistration"].is_object(), "{registered}");
    let (id, options) = start(&app, None, START_SIGN_IN, json!({})).await;
    let credential = device.get("http://localhost:3000", &options, |_| {}).await;
    assert!(finish_sign_in(&app, &id, &credential).await["data"]["finishPasskeySignIn"].is_object());
    let (id, options) = start(&app, None, START_SIGN_IN, json!({})).await;
    let credential = device.get("http://sub.localhost:3000", &options, |_| {}).await;
    expect_error(&finish_sign_in(&app, &id, &credential).await, "INVALID_PASSKEY");
}

#[tokio::test]
async fn totp_and_passkeys_coexist_and_the_codes_stay_while_a_factor_is_left() {
    use authgraph::factors::totp;
    const T0: u64 = 1_800_000_015;
    let step = T0 / totp::STEP;
    let app = app().await;
    app.state.factors.clock.pin(T0);
    let ada = app.signup("ada").await;
    let enrolled = app.gql(Some(&ada.access), "mutation { enrollTotp { secret } }", json!({})).await;
    let secret = totp::from_base32(enrolled["data"]["enrollTotp"]["secret"].as_str().unwrap()).unwrap();
    let confirm = "mutation($c: String!) { confirmTotp(code: $c) { codes accessToken } }";
    let confirmed = app.gql(Some(&ada.access), confirm, json!({ "c": totp::code_at(&secret, step) })).await;
    let aal2 = confirmed["data"]["confirmTotp"]["accessToken"].as_str().unwrap().to_owned();
    let recovery = confirmed["data"]["confirmTotp"]["codes"][0].as_str().unwrap().to_owned();

    // A passkey beside TOTP (the session is AAL2: the account has a factor already).
    let mut device = Device::new();
    let (id, options) = start(&app, Some(&aal2), START_REGISTRATION, json!({})).await;
    let credential = device.create(ORIGIN, &options).await;
    let registered = app.gql(Some(&aal2), FINISH_REGISTRATION, json!({ "c": id, "j": credential })).await;
    assert!(registered["data"]["finishPasskeyRegistration"].is_object(), "{registered}");

    // TOTP off: the passkey is still a second factor, and the recovery codes stay.
    let disabled = app
        .gql(
            Some(&aal2),
            "mutation($c: String!) { disableTotp(code: $c) }",
            json!({ "c": totp::code_at(&secret, step + 1) }),
        )
        .await;
    assert_eq!(disabled["data"]["disableTotp"], true, "{disabled}");
    let me = app.gql(Some(&aal2), "{ me { mfaEnabled passkeyCount } }", json!({})).await;
    assert_eq!(me["data"]["me"], json!({ "mfaEnabled": true, "passkeyCount": 1 }), "{me}");
    let res = app.gql(None, SIGNIN, json!({ "u": "ada", "p": PASSWORD })).await;
    assert_eq!(res["data"]["signin"]["mfaRequired"], true, "{res}");
    let aal1 = res["data"]["signin"]["accessToken"].as_str().unwrap();
    let verify_mfa = "mutation($c: String!) { verifyMfa(code: $c) { assurance } }";
    expect_error(
        &app.gql(Some(aal1), verify_mfa, json!({ "c": totp::code_at(&secret, step + 2) })).await,
        "INVALID_MFA_CODE",
    );
    let recovered = app.gql(Some(aal1), verify_mfa, json!({ "c": recovery })).await;
    assert_eq!(
        recovered["data"]["verifyMfa"]["assurance"], "AAL2",
        "a recovery code recovers a lost passkey: {recovered}"
    );

    // TOTP turned on again from a passkey session: the session keeps its passkey as its
    // methods (a passkey sign-in passed both factors with it).
    let (id, credential) = assertion(&app, &mut device, None).await;
    let signed_in = finish_sign_in(&app, &id, &credential).await;
    let session = &signed_in["data"]["finishPasskeySignIn"];
    let access = session["accessToken"].as_str().unwrap();
    let enrolled = app.gql(Some(access), "mutation { enrollTotp { secret } }", json!({})).await;
    let secret = totp::from_base32(enrolled["data"]["enrollTotp"]["secret"].as_str().unwrap()).unwrap();
    let confirmed = app.gql(Some(access), confirm, json!({ "c": totp::code_at(&secret, step) })).await;
    let raised = confirmed["data"]["confirmTotp"]["accessToken"].as_str().unwrap();
    assert_eq!(claims(raised)["amr"], json!(["swk", "user"]), "{confirmed}");
    let refreshed = app.gql(None, REFRESH, json!({ "t": session["refreshToken"] })).await;
    assert_eq!(claims(refreshed["data"]["refresh"]["accessToken"].as_str().unwrap())["amr"], json!(["swk", "user"]));
}

#[tokio::test]
async fn the_owner_is_told_of_a_new_passkey_and_of_the_last_factor_going() {
    let (app, smtp, _sender) = crate::support::mailing_app(relying_party).await;
    let ada = app.signup("ada").await;
    authgraph::users::set_email(&app.operator(), "ada", "ada@example.com", true).await.unwrap();
    let mut device = Device::new();
    register(&app, &ada, &mut device).await;
    let added = smtp.wait_for("ada@example.com", 1).await.pop().unwrap();
    assert!(added.subject().contains("A passkey was added"), "{}", added.subject());
    assert!(added.text().contains("second factor"), "the first one is the second factor: {}", added.text());

    let aal2 = app.gql(None, REFRESH, json!({ "t": ada.refresh })).await;
    let token = aal2["data"]["refresh"]["accessToken"].as_str().unwrap().to_owned();
    let listed = app.gql(Some(&token), "{ passkeys { id } }", json!({})).await;
    let id = listed["data"]["passkeys"][0]["id"].clone();
    let deleted = app.gql(Some(&token), "mutation($id: ID!) { deletePasskey(id: $id) }", json!({ "id": id })).await;
    assert_eq!(deleted["data"]["deletePasskey"], true, "{deleted}");
    let off = smtp.wait_for("ada@example.com", 2).await.pop().unwrap();
    assert!(off.subject().contains("Two-step sign-in is off"), "{}", off.subject());
    assert!(!off.text().contains("signed out"), "deletePasskey ends no session: {}", off.text());
    // No session ended: the token that deleted it still works.
    assert!(app.gql(Some(&token), "{ me { id } }", json!({})).await["data"]["me"].is_object());
}

/// The next event of the hub, skipping `Resync`s; fails after 10 s.
async fn next_event(sub: &mut authgraph::events::Subscription) -> authgraph::events::Event {
    let wait = async {
        loop {
            if let authgraph::events::Signal::Event(event) = sub.next().await.expect("the hub is alive") {
                return (*event).clone();
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait).await.expect("an event within 10 s")
}

#[tokio::test]
async fn passkey_changes_are_account_events_and_their_use_is_not() {
    use authgraph::events::EventKind::{AccountUpdated, SessionStarted};
    let app = app().await;
    let mut sub = app.state.events.subscribe();
    let _listener = app.listening().await;
    let ada = app.signup("ada").await;
    assert_eq!(next_event(&mut sub).await.kind, SessionStarted);
    let mut device = Device::new();
    register(&app, &ada, &mut device).await;
    // Then a password sign-in as a marker: the registration's events come before it.
    app.signin("ada", PASSWORD).await;
    let mut updates = 0;
    loop {
        match next_event(&mut sub).await.kind {
            AccountUpdated => updates += 1,
            SessionStarted => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(updates >= 1, "the registration is announced");
    // A sign-in moves the counter and announces only its session.
    let (id, credential) = assertion(&app, &mut device, None).await;
    assert!(finish_sign_in(&app, &id, &credential).await["data"]["finishPasskeySignIn"].is_object());
    assert_eq!(next_event(&mut sub).await.kind, SessionStarted);
    let aal2 = app.gql(None, REFRESH, json!({ "t": ada.refresh })).await;
    let token = aal2["data"]["refresh"]["accessToken"].as_str().unwrap().to_owned();
    let id = app.gql(Some(&token), "{ passkeys { id } }", json!({})).await["data"]["passkeys"][0]["id"].clone();
    app.gql(Some(&token), "mutation($id: ID!) { renamePasskey(id: $id, name: \"Phone\") { id } }", json!({ "id": id }))
        .await;
    assert_eq!(next_event(&mut sub).await.kind, AccountUpdated, "renamed");
    app.gql(Some(&token), "mutation($id: ID!) { deletePasskey(id: $id) }", json!({ "id": id })).await;
    assert_eq!(next_event(&mut sub).await.kind, AccountUpdated, "deleted");
}
