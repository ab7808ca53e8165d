//! Administration: the admin rule on every admin field (table-driven over the schema),
//! bans on every way in and across instances, impersonation's limits, the last ADMIN,
//! the admin search, and the audit rows every power writes with its actor and reason.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::support::{
    Auth, PASSWORD, TestApp, claims, error_code, expect_error,
    ws::{Served, connect},
};

const T0: u64 = 1_800_000_015;

/// Signs `username` up, makes it an ADMIN (the command line's way), and enrols TOTP:
/// its AAL2 access token.
async fn admin_at_aal2(app: &TestApp, username: &str) -> (Auth, String) {
    use authgraph::factors::totp;
    let who = app.signup(username).await;
    app.make_admin(username).await;
    app.state.factors.clock.pin(T0);
    let enrolled = app.gql(Some(&who.access), "mutation { enrollTotp { secret } }", json!({})).await;
    let secret = totp::from_base32(enrolled["data"]["enrollTotp"]["secret"].as_str().unwrap()).unwrap();
    let confirm = "mutation($c: String!) { confirmTotp(code: $c) { accessToken } }";
    let res = app.gql(Some(&who.access), confirm, json!({ "c": totp::code_at(&secret, T0 / totp::STEP) })).await;
    let aal2 = res["data"]["confirmTotp"]["accessToken"].as_str().expect("confirmTotp").to_owned();
    (who, aal2)
}

/// The root fields the schema marks as passing the admin rule.
fn admin_fields_of_the_schema() -> BTreeSet<String> {
    crate::factors::root_fields_described("passes the admin rule")
}

/// Every admin power with an operation that reaches it: the schema's admin fields (from
/// the table of protected fields, which names them all) and the core's powers over
/// another account.
fn admin_operations(other: &str) -> BTreeMap<String, (String, Value)> {
    let protected = crate::factors::protected_operations();
    let mut table: BTreeMap<String, (String, Value)> = admin_fields_of_the_schema()
        .into_iter()
        .map(|field| {
            let operation =
                protected.get(field.as_str()).unwrap_or_else(|| panic!("{field} is in the protected table"));
            (field, operation.clone())
        })
        .collect();
    let id = json!({ "id": other });
    table.insert(
        "updateUser (another account)".into(),
        ("mutation($id: ID!) { updateUser(id: $id, input: { name: \"X\" }) { id } }".into(), id.clone()),
    );
    table.insert("deleteUser (another account)".into(), ("mutation($id: ID!) { deleteUser(id: $id) }".into(), id));
    table
}

#[tokio::test]
async fn every_admin_power_refuses_a_user_an_admin_at_aal1_and_an_impersonation() {
    let app = TestApp::with_config(|c| c.admin_require_aal2 = Some(true)).await;
    let (_, root) = admin_at_aal2(&app, "root").await;
    let user = app.signup("plainuser").await;
    let other = app.signup("other").await;
    let table = admin_operations(&other.user_id);
    // A new admin field not marked in its description would be missing here; the
    // contract's admin fields are all present.
    let named: BTreeSet<String> = admin_fields_of_the_schema();
    for field in ["auditEvents", "auditChain", "adminUsers", "userSessions", "setUserRole", "banUser", "unbanUser"]
        .into_iter()
        .chain(["endUserSessions", "resetUserMfa", "impersonate"])
    {
        assert!(named.contains(field), "{field} says it passes the admin rule");
    }

    let aal1 = app.signin("root", PASSWORD).await["data"]["signin"]["accessToken"].as_str().unwrap().to_owned();
    let acting = app
        .gql(
            Some(&root),
            "mutation($id: ID!) { impersonate(userId: $id, reason: \"support ticket 1\") { accessToken } }",
            json!({ "id": user.user_id }),
        )
        .await;
    let impersonation = acting["data"]["impersonate"]["accessToken"].as_str().expect("impersonate").to_owned();
    for (field, (query, variables)) in &table {
        let res = app.gql(Some(&user.access), query, variables.clone()).await;
        assert_eq!(error_code(&res), "FORBIDDEN", "a USER on {field}: {res}");
        let res = app.gql(Some(&aal1), query, variables.clone()).await;
        assert_eq!(error_code(&res), "MFA_REQUIRED", "an ADMIN at AAL1 on {field}: {res}");
        assert_eq!(res["errors"][0]["extensions"]["reason"], "VERIFY", "{field}: {res}");
        let res = app.gql(Some(&impersonation), query, variables.clone()).await;
        assert_eq!(error_code(&res), "FORBIDDEN", "an impersonation on {field}: {res}");
    }
    // The same admin at AAL2 gets through each (answers other than the rule's).
    for (field, (query, variables)) in table.iter().filter(|(f, _)| !f.starts_with("deleteUser")) {
        let res = app.gql(Some(&root), query, variables.clone()).await;
        assert!(!["FORBIDDEN", "MFA_REQUIRED", "UNAUTHENTICATED"].contains(&error_code(&res)), "{field}: {res}");
    }
}

const BAN: &str = "mutation($id: ID!, $until: DateTime) { banUser(userId: $id, until: $until, reason: \"abuse report 7\") { id bannedUntil } }";
const UNBAN: &str = "mutation($id: ID!) { unbanUser(userId: $id, reason: \"appeal granted\") { id bannedUntil } }";

#[tokio::test]
async fn a_ban_ends_every_session_and_refuses_every_way_in_after_the_credential() {
    let (app, smtp, _sender) = crate::support::mailing_app(|_| {}).await;
    let (_, root) = admin_at_aal2(&app, "root").await;
    let ada = app.signup("ada").await;
    authgraph::users::set_email(&app.operator(), "ada", "ada@example.com", true).await.unwrap();
    let second = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");

    let res = app.gql(Some(&root), BAN, json!({ "id": ada.user_id })).await;
    assert!(res["data"]["banUser"]["bannedUntil"].as_str().is_some_and(|u| u.starts_with("9999-")), "{res}");
    // Every session ended at once: the access tokens stop working.
    for token in [&ada.access, &second.access] {
        expect_error(&app.gql(Some(token), "{ me { id } }", json!({})).await, "UNAUTHENTICATED");
    }
    // The right password: ACCOUNT_BANNED, permanent (no until).
    let res = app.signin("ada", PASSWORD).await;
    assert!(expect_error(&res, "ACCOUNT_BANNED")["extensions"].get("until").is_none(), "{res}");
    // A wrong one: the usual answer, so the ban tells nothing to a guesser.
    expect_error(&app.signin("ada", "not the password at all").await, "INVALID_CREDENTIALS");
    // The refresh token is a credential too.
    expect_error(&app.refresh(&second.refresh).await, "ACCOUNT_BANNED");
    // A password reset opens a session: refused, and the account keeps its password.
    app.gql(None, "mutation { requestPasswordReset(email: \"ada@example.com\") }", json!({})).await;
    let token = smtp.wait_for("ada@example.com", 1).await.pop().unwrap().token();
    let reset = "mutation($t: String!) { resetPassword(input: { token: $t, newPassword: \"a brand new passphrase\" }) { accessToken } }";
    expect_error(&app.gql(None, reset, json!({ "t": token })).await, "ACCOUNT_BANNED");
    expect_error(&app.signin("ada", PASSWORD).await, "ACCOUNT_BANNED");
    // The account's own field says nothing to the account or a stranger: bannedUntil
    // is for admins.
    let query = "query($id: ID!) { user(id: $id) { bannedUntil } }";
    let res = app.gql(None, query, json!({ "id": ada.user_id })).await;
    assert_eq!(res["data"]["user"]["bannedUntil"], Value::Null, "{res}");
    let res = app.gql(Some(&root), query, json!({ "id": ada.user_id })).await;
    assert!(res["data"]["user"]["bannedUntil"].is_string(), "{res}");

    // A ban with an end: until in the error.
    app.gql(Some(&root), UNBAN, json!({ "id": ada.user_id })).await;
    let until = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let res = app.gql(Some(&root), BAN, json!({ "id": ada.user_id, "until": until })).await;
    assert!(res["data"]["banUser"]["bannedUntil"].is_string(), "{res}");
    let res = app.signin("ada", PASSWORD).await;
    assert!(expect_error(&res, "ACCOUNT_BANNED")["extensions"]["until"].is_string(), "{res}");
    // A past end, and a missing reason, are refused.
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    expect_error(&app.gql(Some(&root), BAN, json!({ "id": ada.user_id, "until": past })).await, "BAD_USER_INPUT");
    let blank = "mutation($id: ID!) { banUser(userId: $id, reason: \"  \") { id } }";
    expect_error(&app.gql(Some(&root), blank, json!({ "id": ada.user_id })).await, "BAD_USER_INPUT");

    // Unbanned: the password works again; the trail has both, with the admin and why.
    let res = app.gql(Some(&root), UNBAN, json!({ "id": ada.user_id })).await;
    assert_eq!(res["data"]["unbanUser"]["bannedUntil"], Value::Null, "{res}");
    Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let rows = audit_rows(&app, &ada.user_id, &["USER_BANNED", "USER_UNBANNED"]).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let root_id = claims(&root)["sub"].as_str().unwrap().to_owned();
    for (kind, actor, detail) in &rows {
        assert_eq!(actor.as_deref(), Some(root_id.as_str()), "{kind}");
        let reason = detail["reason"].as_str().unwrap();
        assert!(["abuse report 7", "appeal granted"].contains(&reason), "{kind}: {detail}");
    }
}

/// (kind, actor, detail) of the account's rows of these kinds, oldest first.
async fn audit_rows(app: &TestApp, subject: &str, kinds: &[&str]) -> Vec<(String, Option<String>, Value)> {
    use diesel::{QueryableByName, sql_types::Text};
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        actor: Option<String>,
        #[diesel(sql_type = Text)]
        detail: String,
    }
    let mut conn = app.state.auth.pool.get().await.unwrap();
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT kind, actor_id::text AS actor, detail::text AS detail FROM audit_events \
         WHERE subject_id = $1::uuid AND kind = ANY($2) ORDER BY id",
    )
    .bind::<Text, _>(subject)
    .bind::<diesel::sql_types::Array<Text>, _>(kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>())
    .load(&mut conn)
    .await
    .unwrap();
    rows.into_iter().map(|r| (r.kind, r.actor, serde_json::from_str(&r.detail).unwrap())).collect()
}

#[tokio::test]
async fn a_ban_closes_a_live_socket_on_another_instance() {
    let a = TestApp::new().await;
    let _listener_a = a.listening().await;
    let b = a.sibling(|_| {});
    let _listener_b = b.listening().await;
    let served_b: Served = b.serve().await;
    let (_, root) = admin_at_aal2(&a, "root").await;
    let ada = a.signup("ada").await;
    let mut ws = connect(&served_b.addr, None).await.unwrap();
    ws.admitted(&ada.access).await;
    ws.subscribe("1", "subscription { sessionEvents { kind sessionId } }").await;
    let res = a.gql(Some(&root), BAN, json!({ "id": ada.user_id })).await;
    assert!(res["data"]["banUser"].is_object(), "{res}");
    assert_eq!(ws.closed().await, 4403);
}

#[tokio::test]
async fn a_sign_in_racing_a_ban_never_keeps_a_session() {
    let app = TestApp::with_config(|c| c.signin_failures_per_account = 10_000).await;
    let (_, root) = admin_at_aal2(&app, "root").await;
    let ada = app.signup("ada").await;
    let signins: Vec<_> = (0..6)
        .map(|_| {
            app.spawn(crate::support::Gql::query(
                crate::support::SIGNIN,
                json!({ "input": { "username": "ada", "password": PASSWORD } }),
            ))
        })
        .collect();
    let res = app.gql(Some(&root), BAN, json!({ "id": ada.user_id })).await;
    assert!(res["data"]["banUser"].is_object(), "{res}");
    for signin in signins {
        let res = signin.await.unwrap();
        if let Some(token) = res["data"]["signin"]["accessToken"].as_str() {
            // It got in before the ban: the ban ended its session.
            expect_error(&app.gql(Some(token), "{ me { id } }", json!({})).await, "UNAUTHENTICATED");
        } else {
            expect_error(&res, "ACCOUNT_BANNED");
        }
    }
    let mut conn = app.state.auth.pool.get().await.unwrap();
    let live = crate::support::count(
        &mut conn,
        &format!("SELECT count(*) AS n FROM sessions WHERE user_id = '{}' AND revoked_at IS NULL", ada.user_id),
    )
    .await;
    assert_eq!(live, 0);
}

const IMPERSONATE: &str = "mutation($id: ID!) { impersonate(userId: $id, reason: \"ticket 42: cannot find the settings page\") { accessToken refreshToken expiresIn assurance user { id } } }";

#[tokio::test]
async fn an_impersonation_acts_within_its_allow_list_and_the_user_sees_it() {
    let app = TestApp::with_config(|c| c.refresh_token_cookie = false).await;
    let (root_auth, root) = admin_at_aal2(&app, "root").await;
    let ada = app.signup("ada").await;
    let res = app.gql(Some(&root), IMPERSONATE, json!({ "id": ada.user_id })).await;
    let payload = &res["data"]["impersonate"];
    assert_eq!(payload["refreshToken"], Value::Null, "{res}");
    assert_eq!(payload["assurance"], "AAL2", "{res}");
    assert_eq!(payload["user"]["id"], ada.user_id.as_str());
    assert_eq!(payload["expiresIn"], 3600);
    let acting = payload["accessToken"].as_str().unwrap().to_owned();
    let token = claims(&acting);
    assert_eq!(token["act"]["sub"], claims(&root)["sub"], "{token}");
    assert_eq!(token["sub"], ada.user_id.as_str());

    // Queries answer as the user.
    let res = app.gql(Some(&acting), "{ me { id username } }", json!({})).await;
    assert_eq!(res["data"]["me"]["username"], "ada", "{res}");
    // The user's name, yes; their username, no.
    let rename = "mutation($id: ID!, $n: String, $u: String) { updateUser(id: $id, input: { name: $n, username: $u }) { name } }";
    let res = app.gql(Some(&acting), rename, json!({ "id": ada.user_id, "n": "Ada L." })).await;
    assert_eq!(res["data"]["updateUser"]["name"], "Ada L.", "{res}");
    expect_error(&app.gql(Some(&acting), rename, json!({ "id": ada.user_id, "u": "ada2" })).await, "FORBIDDEN");
    // Credentials and everything else stay the user's.
    for (query, variables) in [
        (
            "mutation { changePassword(input: { currentPassword: \"x\", newPassword: \"another long passphrase\" }) }",
            json!({}),
        ),
        ("mutation { changeEmail(input: { currentPassword: \"x\", newEmail: \"e@example.com\" }) }", json!({})),
        ("mutation { enrollTotp { secret } }", json!({})),
        ("mutation { startPasskeyRegistration { challengeId } }", json!({})),
        ("mutation { setPassword(newPassword: \"another long passphrase\") }", json!({})),
        ("mutation($id: ID!) { deleteUser(id: $id) }", json!({ "id": ada.user_id })),
        ("mutation { logout(scope: ALL) }", json!({})),
        ("mutation { logout(scope: OTHERS) }", json!({})),
        ("mutation { verifyMfa(code: \"000000\") { accessToken } }", json!({})),
    ] {
        let res = app.gql(Some(&acting), query, variables).await;
        assert_eq!(error_code(&res), "FORBIDDEN", "{query}: {res}");
    }
    // The user sees the impersonation among their sessions and in their events.
    let res = app.gql(Some(&ada.access), "{ sessions { id impersonatorId } }", json!({})).await;
    let sessions = res["data"]["sessions"].as_array().unwrap();
    assert!(sessions.iter().any(|s| s["impersonatorId"] == root_auth.user_id.as_str()), "{res}");
    let res = app.gql(Some(&ada.access), "{ mySecurityEvents { nodes { kind actorId detail } } }", json!({})).await;
    let started = res["data"]["mySecurityEvents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "IMPERSONATION_STARTED")
        .cloned()
        .unwrap_or_else(|| panic!("no IMPERSONATION_STARTED: {res}"));
    assert_eq!(started["actorId"], root_auth.user_id.as_str());
    let detail: Value = serde_json::from_str(started["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["reason"], "ticket 42: cannot find the settings page", "{detail}");

    // The admin's own session is untouched; logout(CURRENT) ends only the impersonation,
    // and its row names the admin as the actor (the door reads the token's `act`).
    let res = app.gql(Some(&acting), "mutation { logout }", json!({})).await;
    assert_eq!(res["data"]["logout"], true, "{res}");
    let rows = audit_rows(&app, &ada.user_id, &["LOGOUT"]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1.as_deref(), Some(root_auth.user_id.as_str()), "{rows:?}");
    expect_error(&app.gql(Some(&acting), "{ me { id } }", json!({})).await, "UNAUTHENTICATED");
    assert!(app.gql(Some(&root), "{ me { id } }", json!({})).await["data"]["me"].is_object());
    assert!(app.gql(Some(&ada.access), "{ me { id } }", json!({})).await["data"]["me"].is_object());

    // Never of an ADMIN, nor of oneself.
    let second = app.signup("second").await.user_id;
    app.make_admin("second").await;
    expect_error(&app.gql(Some(&root), IMPERSONATE, json!({ "id": second })).await, "FORBIDDEN");
    expect_error(&app.gql(Some(&root), IMPERSONATE, json!({ "id": root_auth.user_id })).await, "FORBIDDEN");
}

#[tokio::test]
async fn an_impersonation_in_cookie_mode_sets_no_cookie_and_cannot_refresh() {
    let app = TestApp::with_config(|c| c.refresh_token_cookie = true).await;
    let (_, root) = admin_at_aal2(&app, "root").await;
    let ada = app.signup("ada").await;
    let body = json!({ "query": IMPERSONATE, "variables": { "id": ada.user_id } });
    let res = app.gql_response(None, Some(&root), body).await;
    assert!(res.headers().get("set-cookie").is_none(), "no cookie: {:?}", res.headers());
    let res = crate::support::body_json(res).await;
    assert_eq!(res["data"]["impersonate"]["refreshToken"], Value::Null, "{res}");
    // The impersonation's session has no refresh token to present.
    let mut conn = app.state.auth.pool.get().await.unwrap();
    let tokens = crate::support::count(
        &mut conn,
        "SELECT count(*) AS n FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE s.impersonator_id IS NOT NULL",
    )
    .await;
    assert_eq!(tokens, 0);
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_banned_or_deleted_even_by_two_at_once() {
    let app = TestApp::new().await;
    let (one, one_token) = admin_at_aal2(&app, "one").await;
    let demote = "mutation($id: ID!) { setUserRole(userId: $id, role: USER, reason: \"reorganisation\") { role } }";
    // Alone: no demoting, banning or deleting oneself.
    expect_error(&app.gql(Some(&one_token), demote, json!({ "id": one.user_id })).await, "FORBIDDEN");
    let delete = "mutation($id: ID!) { deleteUser(id: $id) }";
    expect_error(&app.gql(Some(&one_token), delete, json!({ "id": one.user_id })).await, "FORBIDDEN");
    expect_error(&app.gql(Some(&one_token), BAN, json!({ "id": one.user_id })).await, "BAD_USER_INPUT");

    // Two admins demote each other at the same moment: exactly one wins.
    let (two, two_token) = admin_at_aal2(&app, "two").await;
    let answers = app
        .concurrently([
            crate::support::Gql::query(demote, json!({ "id": two.user_id })).bearer(&one_token),
            crate::support::Gql::query(demote, json!({ "id": one.user_id })).bearer(&two_token),
        ])
        .await;
    let won = answers.iter().filter(|r| r["data"]["setUserRole"]["role"] == "USER").count();
    assert_eq!(won, 1, "{answers:?}");
    let mut conn = app.state.auth.pool.get().await.unwrap();
    assert_eq!(crate::support::count(&mut conn, "SELECT count(*) AS n FROM users WHERE role = 'ADMIN'").await, 1);
}

#[tokio::test]
async fn admin_users_searches_filters_and_pages() {
    let app = TestApp::new().await;
    let (_, root) = admin_at_aal2(&app, "root").await;
    let mut ids = BTreeMap::new();
    for name in ["alice", "alina", "bob", "malik", "zed_ali"] {
        ids.insert(name, app.signup(name).await.user_id);
    }
    let query = "query($f: AdminUserFilter, $first: Int, $after: String) { adminUsers(filter: $f, first: $first, after: $after) { nodes { username } pageInfo { hasNextPage endCursor } totalCount } }";
    let names = |res: &Value| -> Vec<String> {
        res["data"]["adminUsers"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{res}"))
            .iter()
            .map(|n| n["username"].as_str().unwrap().to_owned())
            .collect()
    };
    // Substring, any case, in username or name ("<username> name").
    let res = app.gql(Some(&root), query, json!({ "f": { "search": "ALI" } })).await;
    assert_eq!(names(&res), ["alice", "alina", "malik", "zed_ali"], "{res}");
    assert_eq!(res["data"]["adminUsers"]["totalCount"], 4);
    // `_` and `%` are letters, not patterns.
    let res = app.gql(Some(&root), query, json!({ "f": { "search": "d_a" } })).await;
    assert_eq!(names(&res), ["zed_ali"], "{res}");
    let res = app.gql(Some(&root), query, json!({ "f": { "search": "%" } })).await;
    assert!(names(&res).is_empty(), "{res}");
    // Pages of two, no repeats.
    let first = app.gql(Some(&root), query, json!({ "f": { "search": "ali" }, "first": 2 })).await;
    let after = first["data"]["adminUsers"]["pageInfo"]["endCursor"].clone();
    let second = app.gql(Some(&root), query, json!({ "f": { "search": "ali" }, "first": 2, "after": after })).await;
    assert_eq!([names(&first), names(&second)].concat(), ["alice", "alina", "malik", "zed_ali"]);
    // By role and ban.
    let res = app.gql(Some(&root), query, json!({ "f": { "role": "ADMIN" } })).await;
    assert_eq!(names(&res), ["root"], "{res}");
    let bob = app.gql(Some(&root), query, json!({ "f": { "search": "bob" } })).await;
    assert_eq!(names(&bob), ["bob"]);
    let bob_id = ids["bob"].clone();
    app.gql(Some(&root), BAN, json!({ "id": bob_id })).await;
    let res = app.gql(Some(&root), query, json!({ "f": { "banned": true } })).await;
    assert_eq!(names(&res), ["bob"], "{res}");
    let res = app.gql(Some(&root), query, json!({ "f": { "banned": false, "search": "b" } })).await;
    assert!(!names(&res).contains(&"bob".to_owned()), "{res}");
    // Bad input.
    let long = "x".repeat(101);
    expect_error(&app.gql(Some(&root), query, json!({ "f": { "search": long } })).await, "BAD_USER_INPUT");
    expect_error(&app.gql(Some(&root), query, json!({ "first": 0 })).await, "BAD_USER_INPUT");
}

#[tokio::test]
async fn sessions_roles_and_factors_of_other_accounts_with_their_trail() {
    let app = TestApp::new().await;
    let (root_auth, root) = admin_at_aal2(&app, "root").await;
    let ada = app.signup("ada").await;
    let second = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    let list = "query($id: ID!) { userSessions(userId: $id) { id current } }";
    let res = app.gql(Some(&root), list, json!({ "id": ada.user_id })).await;
    assert_eq!(res["data"]["userSessions"].as_array().unwrap().len(), 2, "{res}");
    // One session, then the rest.
    let end = "mutation($id: ID!, $s: ID) { endUserSessions(userId: $id, sessionId: $s, reason: \"lost phone\") }";
    let sid = crate::support::session_of(&second.access);
    let res = app.gql(Some(&root), end, json!({ "id": ada.user_id, "s": sid })).await;
    assert_eq!(res["data"]["endUserSessions"], 1, "{res}");
    expect_error(&app.gql(Some(&second.access), "{ me { id } }", json!({})).await, "UNAUTHENTICATED");
    // Another account's session id ends nothing.
    let root_sid = crate::support::session_of(&root);
    let res = app.gql(Some(&root), end, json!({ "id": ada.user_id, "s": root_sid })).await;
    assert_eq!(res["data"]["endUserSessions"], 0, "{res}");
    let res = app.gql(Some(&root), end, json!({ "id": ada.user_id })).await;
    assert_eq!(res["data"]["endUserSessions"], 1, "{res}");
    // Role.
    let role = "mutation($id: ID!) { setUserRole(userId: $id, role: ADMIN, reason: \"new support lead\") { role } }";
    let res = app.gql(Some(&root), role, json!({ "id": ada.user_id })).await;
    assert_eq!(res["data"]["setUserRole"]["role"], "ADMIN", "{res}");
    // Second factor reset (none on: still a clean answer).
    let reset = "mutation($id: ID!) { resetUserMfa(userId: $id, reason: \"lost device\") { mfaEnabled } }";
    let res = app.gql(Some(&root), reset, json!({ "id": ada.user_id })).await;
    assert_eq!(res["data"]["resetUserMfa"]["mfaEnabled"], false, "{res}");
    // Unknown accounts.
    let nobody = authgraph::db::ids::UserId::random().to_string();
    expect_error(&app.gql(Some(&root), list, json!({ "id": nobody })).await, "NOT_FOUND");
    expect_error(&app.gql(Some(&root), end, json!({ "id": nobody })).await, "NOT_FOUND");
    // Every power left its row, the admin as actor, the reason in the detail.
    let rows = audit_rows(&app, &ada.user_id, &["SESSION_ENDED", "ROLE_CHANGED"]).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (kind, actor, detail) in &rows {
        assert_eq!(actor.as_deref(), Some(root_auth.user_id.as_str()), "{kind}");
        assert!(detail["reason"].is_string(), "{kind}: {detail}");
    }
}

#[tokio::test]
async fn a_new_device_is_marked_in_the_owners_events() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let signin_as = async |agent: &str| {
        let body = json!({ "query": crate::support::SIGNIN, "variables": { "input": { "username": "ada", "password": PASSWORD } } });
        let req = axum::http::Request::builder()
            .method("POST")
            .uri("/graphql")
            .header("content-type", "application/json")
            .header("user-agent", agent)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        crate::support::body_json(app.request(req).await).await
    };
    signin_as("Phone/1").await;
    signin_as("Phone/1").await;
    signin_as("Laptop/2").await;
    let res = app.gql(Some(&ada.access), "{ mySecurityEvents(first: 10) { nodes { kind detail } } }", json!({})).await;
    let fresh: Vec<bool> = res["data"]["mySecurityEvents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "SIGNIN")
        .map(|e| serde_json::from_str::<Value>(e["detail"].as_str().unwrap()).unwrap()["newDevice"] == true)
        .collect();
    // Newest first: Laptop new, Phone seen, Phone new, and the signup's own session.
    assert_eq!(fresh, [true, false, true, true], "{res}");
}

/// At a million accounts and two million audit events: `adminUsers` searches, the
/// chainer's rate, `auditChain` over the whole trail and over its newest thousand, and
/// the trail's size per million sign-ins. Run by hand with
/// `cargo test --release --test it admin::measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn measure_search_and_the_chain_at_a_million() {
    use std::time::Instant;

    use diesel_async::RunQueryDsl;
    let app = TestApp::new().await;
    let (_, root) = admin_at_aal2(&app, "root").await;
    let pool = &app.state.auth.pool;
    let mut conn = pool.get().await.unwrap();
    let size = async |conn: &mut diesel_async::AsyncPgConnection| {
        crate::support::count(conn, "SELECT pg_total_relation_size('audit_events') AS n").await
    };
    let started = Instant::now();
    // A million accounts in one statement (their SIGNUP rows in one more, by the trigger).
    diesel::sql_query(
        "INSERT INTO users (name, username, password_hash, email, email_key, created_at, updated_at) \
         SELECT 'Person ' || i, 'member_' || i, NULL, 'member' || i || '@example.com', 'member' || i || '@example.com', \
                now() - interval '400 days' + i * interval '10 ms', now() \
         FROM generate_series(1, 1000000) AS i",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    println!("1,000,000 accounts inserted in {:.1?}", started.elapsed());
    // The trail's size in steady state: every row chained (a chained row is written
    // twice, and vacuum reuses the first version's space), measured compacted.
    authgraph::audit::chain::chain_pending(pool, &app.state.audit).await.unwrap();
    diesel::sql_query("VACUUM FULL audit_events").execute(&mut conn).await.unwrap();
    let before = size(&mut conn).await;
    // A million sign-ins' rows, shaped as the trigger writes them.
    diesel::sql_query(
        "INSERT INTO audit_events (kind, actor_id, subject_id, session_id, network, user_agent, detail) \
         SELECT 'SIGNIN', id, id, gen_random_uuid(), '203.0.113.7', \
                'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36', \
                jsonb_build_object('method', 'PASSWORD', 'newDevice', false, 'userAgent', \
                  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36') \
         FROM users WHERE username LIKE 'member\\_%'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let started = Instant::now();
    let linked = authgraph::audit::chain::chain_pending(pool, &app.state.audit).await.unwrap();
    let took = started.elapsed();
    println!("chained {linked} sign-in events in {took:.1?} ({:.0} events/s)", linked as f64 / took.as_secs_f64());
    diesel::sql_query("VACUUM FULL audit_events").execute(&mut conn).await.unwrap();
    for table in ["users", "audit_events"] {
        diesel::sql_query(format!("VACUUM ANALYZE {table}")).execute(&mut conn).await.unwrap();
    }
    let grown = size(&mut conn).await - before;
    println!(
        "the trail per 1,000,000 sign-ins (rows, indexes, TOAST; chained, compacted): {:.0} MiB ({:.0} bytes an event)",
        grown as f64 / 1048576.0,
        grown as f64 / 1e6
    );

    let chain = "query($last: Int) { auditChain(last: $last) { intact checked } }";
    for last in [Value::Null, json!(1000)] {
        let started = Instant::now();
        let res = app.gql(Some(&root), chain, json!({ "last": last })).await;
        assert_eq!(res["data"]["auditChain"]["intact"], true, "{res}");
        println!(
            "auditChain(last: {last}): {} events verified in {:.1?}",
            res["data"]["auditChain"]["checked"],
            started.elapsed()
        );
    }

    let query =
        "query($f: AdminUserFilter) { adminUsers(filter: $f, first: 20) { nodes { id } pageInfo { hasNextPage } } }";
    let counted = "query($f: AdminUserFilter) { adminUsers(filter: $f, first: 20) { nodes { id } totalCount } }";
    for (what, q, filter) in [
        ("no filter", query, json!({})),
        ("one account by username", query, json!({ "search": "member_654321" })),
        ("one account by address", query, json!({ "search": "member654321@example" })),
        ("no match", query, json!({ "search": "nobody-here" })),
        ("11,111 matches (\"r_99\"), first page", query, json!({ "search": "r_99" })),
        ("11,111 matches, with totalCount", counted, json!({ "search": "r_99" })),
        ("two letters (\"zq\", no trigram to use)", query, json!({ "search": "zq" })),
        ("the ADMINs", query, json!({ "role": "ADMIN" })),
        ("the banned", query, json!({ "banned": true })),
    ] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let res = app.gql(Some(&root), q, json!({ "f": filter })).await;
            assert!(res["data"]["adminUsers"].is_object(), "{res}");
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!("adminUsers, {what}: p50 {:.2} ms, max {:.2} ms", times[10], times[19]);
    }
}

/// Every protected mutation of the schema but the allow-list is refused to an
/// impersonation: a mutation added later is refused until it is named there.
#[tokio::test]
async fn an_impersonation_is_refused_every_mutation_off_its_allow_list() {
    assert_eq!(authgraph::graphql::IMPERSONATION_MAY, ["updateUser", "logout"]);
    let app = TestApp::new().await;
    let (_, root) = admin_at_aal2(&app, "root").await;
    let ada = app.signup("ada").await;
    let res = app.gql(Some(&root), IMPERSONATE, json!({ "id": ada.user_id })).await;
    let acting = res["data"]["impersonate"]["accessToken"].as_str().expect("impersonate").to_owned();
    let table = crate::factors::protected_operations();
    let mutations: Vec<_> = table.iter().filter(|(_, (query, _))| query.starts_with("mutation")).collect();
    assert!(mutations.len() > 20, "the table has the schema's protected mutations");
    for (field, (query, variables)) in mutations {
        if authgraph::graphql::IMPERSONATION_MAY.contains(field) {
            continue;
        }
        let res = app.gql(Some(&acting), query, variables.clone()).await;
        assert_eq!(error_code(&res), "FORBIDDEN", "{field}: {res}");
    }
    // The impersonation is still live: nothing above ended it.
    assert!(app.gql(Some(&acting), "{ me { id } }", json!({})).await["data"]["me"].is_object());
}
