//! The second factor, attacked and used: enrolment, signing in at AAL1 and what such a
//! session may reach (table-driven over the schema's protected fields), verifyMfa with
//! TOTP codes computed here from the enrolled secret (the server's clock pinned, so
//! the ±1 step window and the replay rule are tried at their edges), recovery codes,
//! turning it off, the operator's reset, limits under concurrency, key rotation, and
//! the factor surviving a password reset.

use std::collections::{BTreeMap, BTreeSet};

use async_graphql_parser::{parse_schema, types::TypeSystemDefinition};
use authgraph::factors::totp;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Value, json};

use crate::support::{
    Auth, Background, Gql, MFA_KEY, PASSWORD, TestApp, claims, count, error_code, expect_error, mail_to,
    smtp::SmtpServer,
};

/// The server's clock in these tests: 15 s into a 30-second step.
const T0: u64 = 1_800_000_015;
const S0: u64 = T0 / totp::STEP;

const ENROLL: &str = "mutation { enrollTotp { secret uri qrSvg } }";
const CONFIRM: &str = "mutation($code: String!) { confirmTotp(code: $code) { codes accessToken } }";
const VERIFY: &str = "mutation($code: String!) { verifyMfa(code: $code) { accessToken refreshToken mfaRequired assurance recoveryCodesLeft user { id } } }";
const DISABLE: &str = "mutation($code: String!) { disableTotp(code: $code) }";
const REGENERATE: &str = "mutation { regenerateRecoveryCodes { codes accessToken } }";
const SIGNIN: &str = "mutation($input: SigninInput!) { signin(input: $input) { accessToken refreshToken mfaRequired assurance user { id } } }";
const REFRESH: &str =
    "mutation($token: String) { refresh(refreshToken: $token) { accessToken refreshToken mfaRequired assurance } }";
const RENAME: &str = "mutation($id: ID!) { updateUser(id: $id, input: { name: \"Renamed\" }) { name } }";
const ME: &str = "{ me { id mfaEnabled } sessions { current assurance } }";

/// An app whose TOTP clock stands at `T0`.
async fn app_with(adjust: impl FnOnce(&mut authgraph::config::Config)) -> TestApp {
    let app = TestApp::with_config(adjust).await;
    app.state.factors.clock.pin(T0);
    app
}

fn code(secret: &[u8], step: u64) -> String {
    totp::code_at(secret, step)
}

/// An account with a confirmed factor: its signup tokens (the session, now AAL2), the
/// AAL2 access token confirmTotp returned, the secret, and the recovery codes. The
/// code of step `S0` is spent by the confirmation.
struct Enrolled {
    signup: Auth,
    aal2: String,
    secret: Vec<u8>,
    codes: Vec<String>,
}

/// An app that mails through a test SMTP server (its sender running), and Ada enrolled
/// with the verified address ada@example.com: for the flows that send notices.
async fn enrolled_with_mail() -> (TestApp, SmtpServer, Background, Enrolled) {
    let smtp = SmtpServer::start();
    let app = app_with(mail_to(&smtp)).await;
    let sender = app.start_sender();
    let ada = enrolled(&app, "ada").await;
    authgraph::users::set_email(&app.operator(), "ada", "ada@example.com", true).await.unwrap();
    (app, smtp, sender, ada)
}

async fn enrolled(app: &TestApp, username: &str) -> Enrolled {
    let signup = app.signup(username).await;
    let res = app.gql(Some(&signup.access), ENROLL, json!({})).await;
    let secret = totp::from_base32(res["data"]["enrollTotp"]["secret"].as_str().expect("enrollTotp")).unwrap();
    let res = app.gql(Some(&signup.access), CONFIRM, json!({ "code": code(&secret, S0) })).await;
    let confirmed = &res["data"]["confirmTotp"];
    let codes = confirmed["codes"].as_array().unwrap_or_else(|| panic!("confirmTotp: {res}"));
    Enrolled {
        aal2: confirmed["accessToken"].as_str().unwrap().to_owned(),
        codes: codes.iter().map(|c| c.as_str().unwrap().to_owned()).collect(),
        signup,
        secret,
    }
}

async fn signin(app: &TestApp, username: &str) -> Value {
    let res = app.gql(None, SIGNIN, json!({ "input": { "username": username, "password": PASSWORD } })).await;
    assert!(res["data"]["signin"].is_object(), "{res}");
    res["data"]["signin"].clone()
}

async fn verify(app: &TestApp, token: &str, code: &str) -> Value {
    app.gql(Some(token), VERIFY, json!({ "code": code })).await
}

fn text<'a>(v: &'a Value, path: &str) -> &'a str {
    path.split('.').fold(v, |v, key| &v[key]).as_str().unwrap_or_else(|| panic!("{path} in {v}"))
}

#[tokio::test]
async fn enrolment_then_signin_needs_the_factor_and_verify_mfa_raises_the_session() {
    let app = app_with(|c| c.email.app_name = "Acme Notes".into()).await;
    let ada = app.signup("ada").await;
    let res = app.gql(Some(&ada.access), ENROLL, json!({})).await;
    let enrolment = &res["data"]["enrollTotp"];
    let secret = totp::from_base32(text(enrolment, "secret")).unwrap();
    assert_eq!(secret.len(), 20, "160 bits");
    assert!(text(enrolment, "uri").starts_with("otpauth://totp/Acme%20Notes:ada?secret="), "{enrolment}");
    assert!(text(enrolment, "uri").contains("&issuer=Acme%20Notes"));
    assert!(text(enrolment, "qrSvg").contains("<svg"));

    // Nothing changes until a right code confirms it.
    let me = app.gql(Some(&ada.access), ME, json!({})).await;
    assert_eq!(me["data"]["me"]["mfaEnabled"], false);
    expect_error(
        &app.gql(Some(&ada.access), CONFIRM, json!({ "code": code(&secret, S0 + 5) })).await,
        "INVALID_MFA_CODE",
    );
    expect_error(&app.gql(Some(&ada.access), CONFIRM, json!({ "code": "not a code" })).await, "INVALID_MFA_CODE");
    let res = app.gql(Some(&ada.access), CONFIRM, json!({ "code": code(&secret, S0) })).await;
    let codes: Vec<&str> =
        res["data"]["confirmTotp"]["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(codes.iter().collect::<BTreeSet<_>>().len(), 10, "distinct");
    assert!(codes.iter().all(|c| c.len() == 11 && &c[5..6] == "-"), "{codes:?}");
    let aal2 = text(&res, "data.confirmTotp.accessToken").to_owned();
    assert_eq!(claims(&aal2)["aal"], "aal2");
    assert_eq!(claims(&aal2)["amr"], json!(["pwd", "otp"]));

    // The token that confirmed still claims AAL1 and keeps only that weight; the new
    // one of the same session has it all.
    expect_error(&app.gql(Some(&ada.access), RENAME, json!({ "id": ada.user_id })).await, "MFA_REQUIRED");
    let res = app.gql(Some(&aal2), RENAME, json!({ "id": ada.user_id })).await;
    assert_eq!(res["data"]["updateUser"]["name"], "Renamed", "{res}");
    let me = app.gql(Some(&aal2), ME, json!({})).await;
    assert_eq!(me["data"]["me"]["mfaEnabled"], true);
    assert_eq!(me["data"]["sessions"], json!([{ "current": true, "assurance": "AAL2" }]));

    // A new sign-in is AAL1 and says a factor is needed.
    let second = signin(&app, "ada").await;
    assert_eq!((second["mfaRequired"].clone(), second["assurance"].clone()), (json!(true), json!("AAL1")));
    let aal1 = text(&second, "accessToken").to_owned();
    assert_eq!(claims(&aal1)["aal"], "aal1");
    let me = app.gql(Some(&aal1), ME, json!({})).await;
    assert_eq!(me["data"]["me"]["id"], ada.user_id.as_str(), "me answers at AAL1: {me}");
    expect_error(&app.gql(Some(&aal1), RENAME, json!({ "id": ada.user_id })).await, "MFA_REQUIRED");
    // The AAL1 session's refresh stays AAL1.
    let refreshed = app.gql(None, REFRESH, json!({ "token": text(&second, "refreshToken") })).await;
    assert_eq!(refreshed["data"]["refresh"]["mfaRequired"], true, "{refreshed}");
    let (aal1, aal1_refresh) =
        (text(&refreshed, "data.refresh.accessToken").to_owned(), text(&refreshed, "data.refresh.refreshToken"));

    // verifyMfa: AAL2, fresh tokens; the refresh token from before is retired.
    let res = verify(&app, &aal1, &code(&secret, S0 + 1)).await;
    let raised = &res["data"]["verifyMfa"];
    assert_eq!((raised["mfaRequired"].clone(), raised["assurance"].clone()), (json!(false), json!("AAL2")), "{res}");
    assert_eq!(raised["recoveryCodesLeft"], Value::Null, "a TOTP code spends no recovery code");
    let token = text(raised, "accessToken");
    assert_eq!((claims(token)["aal"].clone(), claims(token)["amr"].clone()), (json!("aal2"), json!(["pwd", "otp"])));
    assert_eq!(claims(token)["sid"], claims(&aal1)["sid"], "the same session, raised");
    assert!(app.gql(Some(token), RENAME, json!({ "id": ada.user_id })).await["data"]["updateUser"].is_object());
    expect_error(&app.gql(Some(&aal1), RENAME, json!({ "id": ada.user_id })).await, "MFA_REQUIRED");
    expect_error(&app.refresh(aal1_refresh).await, "INVALID_REFRESH_TOKEN");
    // AAL2 is kept across refreshes.
    let refreshed = app.gql(None, REFRESH, json!({ "token": text(raised, "refreshToken") })).await;
    assert_eq!(refreshed["data"]["refresh"]["assurance"], "AAL2", "{refreshed}");
    assert_eq!(claims(text(&refreshed, "data.refresh.accessToken"))["aal"], "aal2");

    // The secret is stored sealed, under the configured key's id, never as is.
    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    let sealed = count(
        &mut conn,
        "SELECT count(*) AS n FROM totp_factors WHERE confirmed_at IS NOT NULL AND octet_length(sealed) = 12 + 20 + 16",
    )
    .await;
    assert_eq!(sealed, 1);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let plain = count(
        &mut conn,
        &format!("SELECT count(*) AS n FROM totp_factors WHERE position('\\x{hex}'::bytea IN sealed) > 0"),
    )
    .await;
    assert_eq!(plain, 0);
}

#[tokio::test]
async fn no_refresh_token_from_before_verify_mfa_ever_yields_aal2() {
    // No reuse interval: an old token presented at all is reuse.
    let app = app_with(|c| c.refresh_reuse_interval = std::time::Duration::ZERO).await;
    let ada = enrolled(&app, "ada").await;
    let before = signin(&app, "ada").await;
    let res = verify(&app, text(&before, "accessToken"), &code(&ada.secret, S0 + 1)).await;
    let raised = text(&res, "data.verifyMfa.accessToken").to_owned();
    let reused = app.refresh(text(&before, "refreshToken")).await;
    assert_eq!(expect_error(&reused, "INVALID_REFRESH_TOKEN")["extensions"]["reason"], "REUSED");
    expect_error(&app.gql(Some(&raised), ME, json!({})).await, "UNAUTHENTICATED");

    // Refreshes racing verifyMfa: whatever order the database puts them in, none
    // answers AAL2, no lock order deadlocks, and no token they hand out rotates after.
    let app = app_with(|_| {}).await;
    let ada = enrolled(&app, "ada").await;
    for round in 0..4u64 {
        let aal1 = signin(&app, "ada").await;
        let refreshes = (0..6).map(|_| Gql::query(REFRESH, json!({ "token": text(&aal1, "refreshToken") })));
        let mfa =
            Gql::query(VERIFY, json!({ "code": code(&ada.secret, S0 + 1 + round) })).bearer(text(&aal1, "accessToken"));
        app.state.factors.clock.pin(T0 + 30 * round);
        let answers = app.concurrently(refreshes.chain(std::iter::once(mfa))).await;
        let (refreshed, verified) = answers.split_at(6);
        assert_eq!(verified[0]["data"]["verifyMfa"]["assurance"], "AAL2", "{verified:?}");
        for answer in refreshed {
            match error_code(answer) {
                "" => {
                    assert_eq!(answer["data"]["refresh"]["assurance"], "AAL1", "{answer}");
                    let later = app.refresh(text(answer, "data.refresh.refreshToken")).await;
                    expect_error(&later, "INVALID_REFRESH_TOKEN");
                }
                "INVALID_REFRESH_TOKEN" => {}
                other => panic!("{other}: {answer}"),
            }
        }
    }
}

#[tokio::test]
async fn the_window_is_one_step_either_side_and_each_step_is_spent_once() {
    // Wrong codes are the point here, not their limit.
    let app = app_with(|c| c.factors.failures_per_account = 100).await;
    let ada = enrolled(&app, "ada").await;
    let s = &ada.secret;
    let one = text(&signin(&app, "ada").await, "accessToken").to_owned();
    for far in [S0 - 2, S0 + 2] {
        expect_error(&verify(&app, &one, &code(s, far)).await, "INVALID_MFA_CODE");
    }
    // S0 was spent by confirmTotp, and so is every step before it.
    expect_error(&verify(&app, &one, &code(s, S0)).await, "INVALID_MFA_CODE");
    expect_error(&verify(&app, &one, &code(s, S0 - 1)).await, "INVALID_MFA_CODE");
    assert!(verify(&app, &one, &code(s, S0 + 1)).await["data"]["verifyMfa"].is_object());

    // Another session cannot replay the step, but the next one is fine once the clock
    // reaches it.
    let two = text(&signin(&app, "ada").await, "accessToken").to_owned();
    expect_error(&verify(&app, &two, &code(s, S0 + 1)).await, "INVALID_MFA_CODE");
    app.state.factors.clock.pin(T0 + 30);
    assert!(verify(&app, &two, &code(s, S0 + 2)).await["data"]["verifyMfa"].is_object());

    // One code, eight sessions at the same moment: exactly one passes.
    app.state.factors.clock.pin(T0 + 90);
    let mut tokens = Vec::new();
    for _ in 0..8 {
        tokens.push(text(&signin(&app, "ada").await, "accessToken").to_owned());
    }
    let same = code(s, S0 + 3);
    let answers = app.concurrently(tokens.iter().map(|t| Gql::query(VERIFY, json!({ "code": same })).bearer(t))).await;
    let passed = answers.iter().filter(|a| a["data"]["verifyMfa"].is_object()).count();
    assert_eq!(passed, 1, "{answers:?}");
    assert!(answers.iter().filter(|a| error_code(a) == "INVALID_MFA_CODE").count() == 7, "{answers:?}");
}

#[tokio::test]
async fn recovery_codes_work_once_say_what_is_left_and_send_a_notice() {
    let (app, smtp, _sender, ada) = enrolled_with_mail().await;

    // Stored as argon2id hashes, nothing else.
    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    let hashed = count(&mut conn, "SELECT count(*) AS n FROM recovery_codes WHERE code_hash LIKE '$argon2id$%'").await;
    assert_eq!(hashed, 10);
    let plain = ada.codes[0].replace('-', "");
    let leaked =
        count(&mut conn, &format!("SELECT count(*) AS n FROM recovery_codes WHERE code_hash LIKE '%{plain}%'")).await;
    assert_eq!(leaked, 0);

    // However typed: lower case, spaces instead of the dash.
    let typed = ada.codes[0].to_lowercase().replace('-', " ");
    let first = text(&signin(&app, "ada").await, "accessToken").to_owned();
    let res = verify(&app, &first, &typed).await;
    assert_eq!(res["data"]["verifyMfa"]["assurance"], "AAL2", "{res}");
    assert_eq!(res["data"]["verifyMfa"]["recoveryCodesLeft"], 9);
    let used = text(&res, "data.verifyMfa.accessToken").to_owned();
    assert_eq!(claims(&used)["amr"], json!(["pwd", "otp"]));
    let notice = smtp.wait_for("ada@example.com", 1).await.pop().unwrap();
    assert!(notice.subject().contains("recovery code was used"), "{}", notice.subject());
    assert!(notice.text().contains("9 unused codes are left"), "{}", notice.text());

    // Once only.
    let second = text(&signin(&app, "ada").await, "accessToken").to_owned();
    expect_error(&verify(&app, &second, &ada.codes[0]).await, "INVALID_MFA_CODE");
    // A TOTP code is no recovery code and the reverse: disableTotp takes TOTP only.
    expect_error(&app.gql(Some(&used), DISABLE, json!({ "code": ada.codes[1] })).await, "INVALID_MFA_CODE");

    // New codes replace every old one.
    let res = app.gql(Some(&used), REGENERATE, json!({})).await;
    let fresh: Vec<String> = res["data"]["regenerateRecoveryCodes"]["codes"]
        .as_array()
        .unwrap_or_else(|| panic!("{res}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fresh.len(), 10);
    assert_eq!(res["data"]["regenerateRecoveryCodes"]["accessToken"], Value::Null);
    expect_error(&verify(&app, &second, &ada.codes[1]).await, "INVALID_MFA_CODE");
    let res = verify(&app, &second, &fresh[9]).await;
    assert_eq!(res["data"]["verifyMfa"]["recoveryCodesLeft"], 9, "{res}");
    // An AAL1 session cannot make new codes.
    let third = text(&signin(&app, "ada").await, "accessToken").to_owned();
    expect_error(&app.gql(Some(&third), REGENERATE, json!({})).await, "MFA_REQUIRED");
}

#[tokio::test]
async fn turning_it_off_needs_aal2_and_a_current_code_and_ends_other_sessions() {
    let (app, smtp, _sender, ada) = enrolled_with_mail().await;
    let other = text(&signin(&app, "ada").await, "accessToken").to_owned();
    expect_error(&app.gql(Some(&other), DISABLE, json!({ "code": code(&ada.secret, S0 + 1) })).await, "MFA_REQUIRED");
    expect_error(
        &app.gql(Some(&ada.aal2), DISABLE, json!({ "code": code(&ada.secret, S0 + 4) })).await,
        "INVALID_MFA_CODE",
    );
    let res = app.gql(Some(&ada.aal2), DISABLE, json!({ "code": code(&ada.secret, S0 + 1) })).await;
    assert_eq!(res["data"]["disableTotp"], true, "{res}");

    expect_error(&app.gql(Some(&other), ME, json!({})).await, "UNAUTHENTICATED");
    let me = app.gql(Some(&ada.aal2), ME, json!({})).await;
    assert_eq!(me["data"]["me"]["mfaEnabled"], false, "{me}");
    let next = signin(&app, "ada").await;
    assert_eq!((next["mfaRequired"].clone(), next["assurance"].clone()), (json!(false), json!("AAL1")));
    assert!(app.gql(Some(text(&next, "accessToken")), RENAME, json!({ "id": ada.signup.user_id })).await["data"]["updateUser"].is_object());
    expect_error(&verify(&app, text(&next, "accessToken"), &code(&ada.secret, S0 + 2)).await, "BAD_USER_INPUT");
    let notice = smtp.wait_for("ada@example.com", 1).await.pop().unwrap();
    assert!(notice.subject().contains("Two-step sign-in is off"), "{}", notice.subject());
    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM recovery_codes").await, 0);
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM totp_factors").await, 0);
}

#[tokio::test]
async fn the_operator_reset_removes_the_factor_and_ends_every_session() {
    let app = app_with(|_| {}).await;
    let ada = enrolled(&app, "ada").await;
    let aal1 = text(&signin(&app, "ada").await, "accessToken").to_owned();
    let mail =
        authgraph::mail::Mail::new(&app.state.config.email, &authgraph::secret::resolve(&app.state.config).unwrap())
            .unwrap();
    let (acting, id) = (authgraph::admin::Acting::operator(None).unwrap(), ada.signup.user_id.parse().unwrap());
    let (user, ended) = authgraph::admin::reset_mfa(&app.operator(), &mail, &acting, id).await.unwrap();
    assert_eq!((user.username.as_str(), ended), ("ada", 2));
    for token in [&ada.aal2, &aal1] {
        expect_error(&app.gql(Some(token), ME, json!({})).await, "UNAUTHENTICATED");
    }
    let next = signin(&app, "ada").await;
    assert_eq!(next["mfaRequired"], false);
    // The owner may enrol again, with a new secret.
    let res = app.gql(Some(text(&next, "accessToken")), ENROLL, json!({})).await;
    assert_ne!(totp::from_base32(text(&res, "data.enrollTotp.secret")).unwrap(), ada.secret);
}

#[tokio::test]
async fn wrong_codes_are_limited_per_session_and_per_account_under_concurrency() {
    let app = app_with(|c| {
        c.factors.failures_per_session = 3;
        c.factors.failures_per_account = 5;
    })
    .await;
    let ada = enrolled(&app, "ada").await;
    let right = code(&ada.secret, S0 + 1);
    // Half TOTP-shaped, half recovery-shaped guesses, all at once.
    let guesses = |token: &str| {
        (0..12)
            .map(|i| {
                let guess = if i % 2 == 0 {
                    format!("{:06}", (i * 7919) % 1_000_000)
                } else {
                    format!("ZZZZZ-ZZZ{:02}", i + 20)
                };
                let guess = if guess == right { "000000".to_owned() } else { guess };
                Gql::query(VERIFY, json!({ "code": guess })).bearer(token)
            })
            .collect::<Vec<_>>()
    };
    let hashed_before = app.state.auth.hasher.computed();
    let one = text(&signin(&app, "ada").await, "accessToken").to_owned();
    let answers = app.concurrently(guesses(&one)).await;
    let codes: Vec<&str> = answers.iter().map(error_code).collect();
    assert_eq!(codes.iter().filter(|c| **c == "INVALID_MFA_CODE").count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == "RATE_LIMITED").count(), 9, "{codes:?}");
    expect_error(&verify(&app, &one, &right).await, "RATE_LIMITED");

    // The account's limit spans its sessions: two more wrong codes from a new one.
    let two = text(&signin(&app, "ada").await, "accessToken").to_owned();
    let answers = app.concurrently(guesses(&two)).await;
    let codes: Vec<&str> = answers.iter().map(error_code).collect();
    assert_eq!(codes.iter().filter(|c| **c == "INVALID_MFA_CODE").count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == "RATE_LIMITED").count(), 10, "{codes:?}");
    let three = text(&signin(&app, "ada").await, "accessToken").to_owned();
    expect_error(&verify(&app, &three, &right).await, "RATE_LIMITED");
    // Each recovery-shaped guess that was checked cost one hash (the signins one each), none more.
    let hashed = app.state.auth.hasher.computed() - hashed_before;
    assert!(hashed <= 3 + 5, "{hashed} hashes for 5 checked guesses and 3 sign-ins");
}

#[tokio::test]
async fn an_admin_at_aal1_sees_no_private_fields_of_others() {
    let app = app_with(|_| {}).await;
    let address = "bob@example.com";
    let bob = app.signup("bob").await.user_id;
    authgraph::users::set_email(&app.operator(), "bob", address, true).await.unwrap();
    let root = enrolled(&app, "root").await;
    app.make_admin("root").await;
    let aal1 = text(&signin(&app, "root").await, "accessToken").to_owned();
    let query = "query($id: ID!) { user(id: $id) { email mfaEnabled } }";

    let res = app.gql(Some(&aal1), query, json!({ "id": bob })).await;
    assert_eq!(res["data"]["user"], json!({ "email": null, "mfaEnabled": null }), "{res}");
    let res = app.gql(Some(&root.aal2), query, json!({ "id": bob })).await;
    assert_eq!(res["data"]["user"], json!({ "email": address, "mfaEnabled": false }), "{res}");
}

/// Every protected field of the schema, with an operation that reaches it. A field
/// added later and not listed here fails the test until it is.
pub(crate) fn protected_operations() -> BTreeMap<&'static str, (String, Value)> {
    // Another account's id, which no one has: nothing is changed by the calls that pass.
    let id = json!({ "id": authgraph::db::ids::UserId::random().to_string() });
    let passkey = json!({ "c": authgraph::db::ids::UserId::random().to_string() });
    let passkey_id = json!({ "id": authgraph::db::ids::UserId::random().to_string() });
    BTreeMap::from([
        ("me", ("{ me { id } }".to_owned(), json!({}))),
        ("sessions", ("{ sessions { id } }".to_owned(), json!({}))),
        ("logout", ("mutation { logout }".to_owned(), json!({}))),
        ("verifyMfa", ("mutation { verifyMfa(code: \"000000\") { accessToken } }".to_owned(), json!({}))),
        ("updateUser", ("mutation($id: ID!) { updateUser(id: $id, input: { name: \"X\" }) { id } }".to_owned(), id.clone())),
        (
            "changePassword",
            (
                "mutation { changePassword(input: { currentPassword: \"wrong one\", newPassword: \"another long passphrase\" }) }"
                    .to_owned(),
                json!({}),
            ),
        ),
        ("deleteUser", ("mutation($id: ID!) { deleteUser(id: $id) }".to_owned(), id)),
        ("requestEmailVerification", ("mutation { requestEmailVerification }".to_owned(), json!({}))),
        ("verifyEmail", ("mutation { verifyEmail(input: { code: \"123456\" }) }".to_owned(), json!({}))),
        (
            "changeEmail",
            ("mutation { changeEmail(input: { currentPassword: \"x\", newEmail: \"a@example.com\" }) }".to_owned(), json!({})),
        ),
        ("enrollTotp", ("mutation { enrollTotp { secret } }".to_owned(), json!({}))),
        ("confirmTotp", ("mutation { confirmTotp(code: \"000000\") { codes } }".to_owned(), json!({}))),
        ("disableTotp", ("mutation { disableTotp(code: \"000000\") }".to_owned(), json!({}))),
        ("regenerateRecoveryCodes", ("mutation { regenerateRecoveryCodes { codes } }".to_owned(), json!({}))),
        ("passkeys", ("{ passkeys { id } }".to_owned(), json!({}))),
        ("startPasskeyRegistration", ("mutation { startPasskeyRegistration { challengeId } }".to_owned(), json!({}))),
        (
            "finishPasskeyRegistration",
            (
                "mutation($c: ID!) { finishPasskeyRegistration(challengeId: $c, credentialJson: \"{}\") { id } }".to_owned(),
                passkey.clone(),
            ),
        ),
        ("startPasskeyVerification", ("mutation { startPasskeyVerification { challengeId } }".to_owned(), json!({}))),
        (
            "verifyPasskey",
            ("mutation($c: ID!) { verifyPasskey(challengeId: $c, credentialJson: \"{}\") { accessToken } }".to_owned(), passkey.clone()),
        ),
        ("renamePasskey", ("mutation($id: ID!) { renamePasskey(id: $id, name: \"X\") { id } }".to_owned(), passkey_id.clone())),
        ("deletePasskey", ("mutation($id: ID!) { deletePasskey(id: $id) }".to_owned(), passkey_id.clone())),
        ("linkedIdentities", ("{ linkedIdentities { id } }".to_owned(), json!({}))),
        (
            "startIdentityLink",
            ("mutation { startIdentityLink(provider: \"none\", redirectUri: \"https://x.example\") { state } }".to_owned(), json!({})),
        ),
        ("finishIdentityLink", ("mutation { finishIdentityLink(state: \"s\", code: \"c\") { id } }".to_owned(), json!({}))),
        ("unlinkIdentity", ("mutation($id: ID!) { unlinkIdentity(id: $id) }".to_owned(), passkey_id.clone())),
        ("setPassword", ("mutation { setPassword(newPassword: \"x\") }".to_owned(), json!({}))),
        ("auditEvents", ("{ auditEvents { nodes { id } } }".to_owned(), json!({}))),
        ("auditChain", ("{ auditChain { intact } }".to_owned(), json!({}))),
        ("mySecurityEvents", ("{ mySecurityEvents { nodes { id } } }".to_owned(), json!({}))),
        ("adminUsers", ("{ adminUsers { nodes { id } } }".to_owned(), json!({}))),
        ("userSessions", ("query($id: ID!) { userSessions(userId: $id) { id } }".to_owned(), passkey_id.clone())),
        (
            "setUserRole",
            ("mutation($id: ID!) { setUserRole(userId: $id, role: USER, reason: \"r\") { id } }".to_owned(), passkey_id.clone()),
        ),
        ("banUser", ("mutation($id: ID!) { banUser(userId: $id, reason: \"r\") { id } }".to_owned(), passkey_id.clone())),
        ("unbanUser", ("mutation($id: ID!) { unbanUser(userId: $id, reason: \"r\") { id } }".to_owned(), passkey_id.clone())),
        ("endUserSessions", ("mutation($id: ID!) { endUserSessions(userId: $id, reason: \"r\") }".to_owned(), passkey_id.clone())),
        ("resetUserMfa", ("mutation($id: ID!) { resetUserMfa(userId: $id, reason: \"r\") { id } }".to_owned(), passkey_id.clone())),
        (
            "impersonate",
            ("mutation($id: ID!) { impersonate(userId: $id, reason: \"r\") { accessToken } }".to_owned(), passkey_id.clone()),
        ),
    ])
}

/// What an AAL1 session of an account with a factor may call.
const AAL1_FIELDS: [&str; 6] = ["me", "sessions", "logout", "verifyMfa", "startPasskeyVerification", "verifyPasskey"];

/// The server's one list is this one, and the schema says so on those fields alone.
#[test]
fn the_fields_an_aal1_session_may_call_are_one_list_and_say_so() {
    assert_eq!(authgraph::graphql::BEFORE_SECOND_FACTOR, AAL1_FIELDS);
    let doc = parse_schema(authgraph::graphql::sdl()).unwrap();
    let mut saying = BTreeSet::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(ty) = def else { continue };
        let async_graphql_parser::types::TypeKind::Object(object) = &ty.node.kind else { continue };
        for field in &object.fields {
            let described = field.node.description.as_ref().map(|d| d.node.clone()).unwrap_or_default();
            if described.contains("an AAL1 session may call it") {
                saying.insert(field.node.name.node.to_string());
            }
        }
    }
    assert_eq!(saying, AAL1_FIELDS.iter().map(|f| f.to_string()).collect::<BTreeSet<_>>());
}

/// The root fields (of Query and Mutation) whose description says `needle`, in any
/// case: "protected", or "passes the admin rule".
pub(crate) fn root_fields_described(needle: &str) -> BTreeSet<String> {
    let needle = needle.to_lowercase();
    let doc = parse_schema(authgraph::graphql::sdl()).unwrap();
    let mut fields = BTreeSet::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(ty) = def else { continue };
        if !["Query", "Mutation"].contains(&ty.node.name.node.as_str()) {
            continue;
        }
        let async_graphql_parser::types::TypeKind::Object(object) = &ty.node.kind else { continue };
        for field in &object.fields {
            let described = field.node.description.as_ref().map(|d| d.node.to_lowercase()).unwrap_or_default();
            if described.contains(&needle) {
                fields.insert(field.node.name.node.to_string());
            }
        }
    }
    fields
}

#[tokio::test]
async fn an_aal1_session_reaches_only_me_sessions_logout_and_verify_mfa() {
    let app = app_with(|_| {}).await;
    enrolled(&app, "ada").await;
    let table = protected_operations();
    let listed: BTreeSet<String> = table.keys().map(|k| k.to_string()).collect();
    assert_eq!(root_fields_described("protected"), listed, "every protected field is in the table");

    let aal1 = text(&signin(&app, "ada").await, "accessToken").to_owned();
    // logout last: it ends the session.
    let mut order: Vec<_> = table.iter().filter(|(f, _)| **f != "logout").collect();
    order.push(table.get_key_value("logout").unwrap());
    for (field, (query, variables)) in order {
        let res = app.gql(Some(&aal1), query, variables.clone()).await;
        if AAL1_FIELDS.contains(field) {
            assert_ne!(error_code(&res), "MFA_REQUIRED", "{field} answers at AAL1: {res}");
            assert_ne!(error_code(&res), "UNAUTHENTICATED", "{field}: {res}");
        } else {
            expect_error(&res, "MFA_REQUIRED");
            assert_eq!(res["errors"][0]["path"][0], *field, "{res}");
        }
    }

    // The same session over a socket: the same answers, field by field.
    let aal1 = text(&signin(&app, "ada").await, "accessToken").to_owned();
    let served = app.serve().await;
    let mut ws = crate::support::ws::connect(&served.addr, None).await.unwrap();
    ws.admitted(&aal1).await;
    for (i, (field, (query, variables))) in table.iter().filter(|(f, _)| **f != "logout").enumerate() {
        let res = ws.execute(&i.to_string(), query, variables.clone()).await.expect("the socket stays open");
        if AAL1_FIELDS.contains(field) {
            assert!(!["MFA_REQUIRED", "UNAUTHENTICATED"].contains(&error_code(&res)), "{field} over a socket: {res}");
        } else {
            expect_error(&res, "MFA_REQUIRED");
            assert_eq!(res["errors"][0]["extensions"]["reason"], "VERIFY", "{res}");
        }
    }

    // An account without a factor is never asked for one, whatever it calls.
    let bob = app.signup("bob").await;
    for (field, (query, variables)) in &table {
        if *field == "logout" {
            continue;
        }
        let res = app.gql(Some(&bob.access), query, variables.clone()).await;
        assert!(!["MFA_REQUIRED", "UNAUTHENTICATED"].contains(&error_code(&res)), "{field}: {res}");
    }
}

#[tokio::test]
async fn a_rotated_key_still_opens_old_secrets_and_seals_them_anew() {
    let app = app_with(|_| {}).await;
    let ada = enrolled(&app, "ada").await;
    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    let old_id = count(&mut conn, "SELECT count(DISTINCT key_id) AS n FROM totp_factors").await;
    assert_eq!(old_id, 1);

    // Only the new key: the old secret cannot be opened, which is an operator's error.
    let lost = app.sibling(|c| c.factors.encryption_key = Some("a brand new key, thirty-two bytes".to_owned().into()));
    lost.state.factors.clock.pin(T0);
    let token = text(&signin(&lost, "ada").await, "accessToken").to_owned();
    expect_error(&verify(&lost, &token, &code(&ada.secret, S0 + 1)).await, "INTERNAL_SERVER_ERROR");

    // New key plus the old one as previous: it opens, and is sealed under the new key.
    let rotated = app.sibling(|c| {
        c.factors.encryption_key = Some("a brand new key, thirty-two bytes".to_owned().into());
        c.factors.encryption_key_previous = vec![MFA_KEY.to_owned().into()];
    });
    rotated.state.factors.clock.pin(T0);
    let before: Vec<u8> = sealed_bytes(&mut conn).await;
    let res = verify(&rotated, &token, &code(&ada.secret, S0 + 1)).await;
    assert_eq!(res["data"]["verifyMfa"]["assurance"], "AAL2", "{res}");
    assert_ne!(sealed_bytes(&mut conn).await, before, "sealed again");
    // ... under the new key, which the old configuration does not hold.
    app.state.factors.clock.pin(T0 + 60);
    let old = text(&signin(&app, "ada").await, "accessToken").to_owned();
    expect_error(&verify(&app, &old, &code(&ada.secret, S0 + 2)).await, "INTERNAL_SERVER_ERROR");
    // Codes keep working after the rotation, recovery codes made under the old key too.
    let next = text(&signin(&rotated, "ada").await, "accessToken").to_owned();
    rotated.state.factors.clock.pin(T0 + 60);
    assert!(verify(&rotated, &next, &code(&ada.secret, S0 + 2)).await["data"]["verifyMfa"].is_object());
    let last = text(&signin(&rotated, "ada").await, "accessToken").to_owned();
    assert_eq!(verify(&rotated, &last, &ada.codes[3]).await["data"]["verifyMfa"]["recoveryCodesLeft"], 9);
}

async fn sealed_bytes(conn: &mut AsyncPgConnection) -> Vec<u8> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        sealed: Vec<u8>,
    }
    use diesel_async::RunQueryDsl;
    diesel::sql_query("SELECT sealed FROM totp_factors WHERE confirmed_at IS NOT NULL")
        .get_result::<Row>(conn)
        .await
        .unwrap()
        .sealed
}

#[tokio::test]
async fn the_factor_survives_a_password_reset() {
    let (app, smtp, _sender, ada) = enrolled_with_mail().await;
    app.gql(None, "mutation { requestPasswordReset(email: \"ada@example.com\") }", json!({})).await;
    let message = smtp.wait_for("ada@example.com", 1).await.pop().unwrap();
    let reset =
        "mutation($input: ResetPasswordInput!) { resetPassword(input: $input) { accessToken mfaRequired assurance } }";
    let input = json!({ "token": message.token(), "newPassword": "a brand new passphrase" });
    let res = app.gql(None, reset, json!({ "input": input })).await;
    let payload = &res["data"]["resetPassword"];
    assert_eq!((payload["mfaRequired"].clone(), payload["assurance"].clone()), (json!(true), json!("AAL1")), "{res}");
    let token = text(payload, "accessToken");
    expect_error(&app.gql(Some(token), RENAME, json!({ "id": ada.signup.user_id })).await, "MFA_REQUIRED");
    expect_error(&app.gql(Some(&ada.aal2), ME, json!({})).await, "UNAUTHENTICATED");
    let res = verify(&app, token, &code(&ada.secret, S0 + 1)).await;
    assert_eq!(res["data"]["verifyMfa"]["assurance"], "AAL2", "{res}");
}

#[tokio::test]
async fn a_signup_is_aal1_without_a_factor_to_pass() {
    let app = TestApp::new().await;
    let input = json!({ "name": "Ada", "username": "ada", "password": PASSWORD });
    let res = app
        .gql(
            None,
            "mutation($input: SignupInput!) { signup(input: $input) { accessToken mfaRequired assurance } }",
            json!({ "input": input }),
        )
        .await;
    assert_eq!(res["data"]["signup"]["mfaRequired"], false, "{res}");
    assert_eq!(res["data"]["signup"]["assurance"], "AAL1");
}

/// The cost of verifyMfa with a TOTP code and with a recovery code, next to one bare
/// argon2id verification in the same run: run by hand with
/// `cargo test --release --test it factors::cost -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn cost_of_verify_mfa_and_of_a_recovery_code_check() {
    use std::time::Instant;
    let app = app_with(|c| {
        c.factors.failures_per_account = 1000;
        c.signin_failures_per_account = 1000;
    })
    .await;
    let ada = enrolled(&app, "ada").await;
    let p50 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() * 99 / 100])
    };
    let (mut totp_ms, mut recovery_ms, mut verify_ms) = (Vec::new(), Vec::new(), Vec::new());
    let hasher = &app.state.auth.hasher;
    let stored = hasher
        .hash(
            authgraph::auth::password::Ticket::new(authgraph::auth::password::Lane::Account, None),
            &PASSWORD.to_owned().into(),
        )
        .await
        .unwrap();
    for i in 0..40u64 {
        let token = text(&signin(&app, "ada").await, "accessToken").to_owned();
        app.state.factors.clock.pin(T0 + 30 * (i + 1));
        let started = Instant::now();
        let res = verify(&app, &token, &code(&ada.secret, S0 + i + 1)).await;
        totp_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(res["data"]["verifyMfa"].is_object(), "{res}");

        let ticket = authgraph::auth::password::Ticket::new(authgraph::auth::password::Lane::Account, None);
        let started = Instant::now();
        assert!(hasher.verify(ticket, &PASSWORD.to_owned().into(), Some(&stored)).await.unwrap());
        verify_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let mut codes = ada.codes.clone();
    let mut aal2 = ada.aal2.clone();
    for _ in 0..40 {
        if codes.is_empty() {
            let res = app.gql(Some(&aal2), REGENERATE, json!({})).await;
            codes = res["data"]["regenerateRecoveryCodes"]["codes"]
                .as_array()
                .unwrap_or_else(|| panic!("{res}"))
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
        }
        let token = text(&signin(&app, "ada").await, "accessToken").to_owned();
        let started = Instant::now();
        let res = verify(&app, &token, &codes.pop().unwrap()).await;
        recovery_ms.push(started.elapsed().as_secs_f64() * 1e3);
        aal2 = text(&res, "data.verifyMfa.accessToken").to_owned();
    }
    let (t50, t99) = p50(totp_ms);
    let (r50, r99) = p50(recovery_ms);
    let (v50, v99) = p50(verify_ms);
    println!("verifyMfa with TOTP: p50 {t50:.2} ms, p99 {t99:.2} ms");
    println!("verifyMfa with a recovery code: p50 {r50:.2} ms, p99 {r99:.2} ms");
    println!("one argon2id verification (reference): p50 {v50:.2} ms, p99 {v99:.2} ms");
    println!("recovery / argon2id: {:.2}; TOTP / argon2id: {:.2}", r50 / v50, t50 / v50);
}
