//! The audit trail: every audited change writes exactly one row in its own transaction
//! (a rolled-back change none), with the request's network and user agent; the rows are
//! chained under AUDIT_CHAIN_KEY, and a superuser who edits, deletes, inserts, reorders
//! or re-chains rows without the key is found at the first row that no longer
//! verifies; a role with every privilege on the table cannot change it; concurrent
//! sign-ins and refreshes on two instances chain into one intact trail.

use diesel::{
    QueryableByName, sql_query,
    sql_types::{BigInt, Nullable, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::support::{Gql, PASSWORD, TestApp, expect_error};

#[derive(QueryableByName, Debug, Clone)]
struct Row {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    actor_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    subject_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    network: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    user_agent: Option<String>,
    #[diesel(sql_type = Text)]
    detail: String,
}

impl Row {
    fn detail(&self) -> Value {
        serde_json::from_str(&self.detail).unwrap()
    }
}

async fn rows(app: &TestApp) -> Vec<Row> {
    let mut conn = app.state.auth.pool.get().await.unwrap();
    sql_query(
        "SELECT kind, actor_id, subject_id, network, user_agent, detail::text AS detail FROM audit_events ORDER BY id",
    )
    .load(&mut conn)
    .await
    .unwrap()
}

/// The kinds written since `after` rows.
async fn kinds_after(app: &TestApp, after: usize) -> Vec<String> {
    rows(app).await.into_iter().skip(after).map(|r| r.kind).collect()
}

fn uuid(id: &str) -> Option<uuid::Uuid> {
    Some(id.parse().unwrap())
}

const IP: &str = "203.0.113.9";
const UA: &str = "Audit-Test/1.0";

async fn call(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> Value {
    let mut req = Gql::query(query, variables).peer(IP).user_agent(UA);
    if let Some(token) = token {
        req = req.bearer(token);
    }
    app.send(req).await
}

const SIGNUP: &str = "mutation($i: SignupInput!) { signup(input: $i) { accessToken refreshToken user { id } } }";
const SIGNIN: &str =
    "mutation($u: String!, $p: String!) { signin(input: { username: $u, password: $p }) { accessToken refreshToken } }";

#[tokio::test]
async fn every_change_writes_one_row_with_its_origin() {
    let app = TestApp::new().await;
    let res =
        call(&app, None, SIGNUP, json!({ "i": { "name": "Ada", "username": "ada", "password": PASSWORD } })).await;
    let ada = res["data"]["signup"]["user"]["id"].as_str().unwrap().to_owned();
    let first_refresh = res["data"]["signup"]["refreshToken"].as_str().unwrap().to_owned();
    let all = rows(&app).await;
    assert_eq!(all.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), ["SIGNUP", "SIGNIN"]);
    for row in &all {
        assert_eq!((row.actor_id, row.subject_id), (uuid(&ada), uuid(&ada)), "{row:?}");
        assert_eq!((row.network.as_deref(), row.user_agent.as_deref()), (Some(IP), Some(UA)), "{row:?}");
    }
    assert_eq!(all[1].detail()["method"], "PASSWORD");

    // Failed sign-ins that reached the hash: the account's, and a name of nobody's.
    expect_error(&call(&app, None, SIGNIN, json!({ "u": "ada", "p": "wrong password" })).await, "INVALID_CREDENTIALS");
    expect_error(
        &call(&app, None, SIGNIN, json!({ "u": "nobody", "p": "wrong password" })).await,
        "INVALID_CREDENTIALS",
    );
    let failed: Vec<Row> = rows(&app).await.into_iter().skip(2).collect();
    assert_eq!(failed.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), ["SIGNIN_FAILED", "SIGNIN_FAILED"]);
    assert_eq!((failed[0].actor_id, failed[0].subject_id), (None, uuid(&ada)));
    assert_eq!(failed[0].detail()["reason"], "WRONG_PASSWORD");
    assert_eq!((failed[1].subject_id, failed[1].detail()["reason"].clone()), (None, json!("UNKNOWN_ACCOUNT")));
    assert_eq!(failed[1].detail()["username"], "nobody");

    // A sign-in, a password change (ending the other session), a logout.
    let signed_in = call(&app, None, SIGNIN, json!({ "u": "ada", "p": PASSWORD })).await;
    let token = signed_in["data"]["signin"]["accessToken"].as_str().unwrap().to_owned();
    let change =
        "mutation($c: String!, $n: String!) { changePassword(input: { currentPassword: $c, newPassword: $n }) }";
    let new_password = "another long passphrase";
    let res = call(&app, Some(&token), change, json!({ "c": PASSWORD, "n": new_password })).await;
    assert_eq!(res["data"]["changePassword"], true, "{res}");
    assert_eq!(kinds_after(&app, 4).await, ["SIGNIN", "PASSWORD_CHANGED", "SESSION_ENDED"]);
    let ended = rows(&app).await.pop().unwrap();
    assert_eq!(ended.detail()["why"], "PASSWORD_CHANGED");
    // The first session's refresh token, spent? No: ended. Its replay is refused, and
    // no second row is written for a session that had ended already.
    expect_error(&app.refresh(&first_refresh).await, "INVALID_REFRESH_TOKEN");
    let res = call(&app, Some(&token), "mutation { logout }", json!({})).await;
    assert_eq!(res["data"]["logout"], true, "{res}");
    assert_eq!(kinds_after(&app, 7).await, ["LOGOUT"]);

    // Reuse of a rotated refresh token past the reuse interval: the attempt's actor is
    // not known to be the owner.
    let app2 = TestApp::with_config(|c| c.refresh_reuse_interval = std::time::Duration::ZERO).await;
    let bob = app2.signup("bob").await;
    let rotated = app2.refresh(&bob.refresh).await;
    assert!(rotated["data"]["refresh"].is_object(), "{rotated}");
    expect_error(&app2.refresh(&bob.refresh).await, "INVALID_REFRESH_TOKEN");
    let last = rows(&app2).await.pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor_id, last.subject_id),
        ("REFRESH_REUSE_DETECTED", None, uuid(&bob.user_id))
    );
}

#[tokio::test]
async fn factors_roles_and_deletion_are_recorded_with_the_operator() {
    use authgraph::factors::totp;
    const T0: u64 = 1_800_000_015;
    let app = TestApp::new().await;
    app.state.factors.clock.pin(T0);
    let ada = app.signup("ada").await;
    let enrolled = app.gql(Some(&ada.access), "mutation { enrollTotp { secret } }", json!({})).await;
    let secret = totp::from_base32(enrolled["data"]["enrollTotp"]["secret"].as_str().unwrap()).unwrap();
    let confirm = "mutation($c: String!) { confirmTotp(code: $c) { accessToken } }";
    let res = app.gql(Some(&ada.access), confirm, json!({ "c": totp::code_at(&secret, T0 / totp::STEP) })).await;
    let aal2 = res["data"]["confirmTotp"]["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(kinds_after(&app, 2).await, ["MFA_ENABLED"], "an unconfirmed enrolment is no event");
    let disable = "mutation($c: String!) { disableTotp(code: $c) }";
    let res = app.gql(Some(&aal2), disable, json!({ "c": totp::code_at(&secret, T0 / totp::STEP + 1) })).await;
    assert_eq!(res["data"]["disableTotp"], true, "{res}");
    assert_eq!(kinds_after(&app, 3).await, ["MFA_DISABLED"]);

    // The command line names its operator.
    let operator = authgraph::db::change::Origin { operator: Some("root".into()), ..Default::default() };
    authgraph::db::change::ORIGIN
        .scope(operator, crate::support::set_role(&app.state.auth.changes, "ada", authgraph::db::models::Role::Admin))
        .await;
    let role = rows(&app).await.pop().unwrap();
    assert_eq!(role.kind, "ROLE_CHANGED");
    assert_eq!(role.detail(), json!({ "from": "USER", "to": "ADMIN", "operator": "root", "reason": "command line" }));

    // Deleting the account is one event: its sessions and factors go with it. (Another
    // ADMIN first: the last one cannot delete itself.)
    app.signup("keeper").await;
    app.make_admin("keeper").await;
    let before = rows(&app).await.len();
    let res = app.gql(Some(&aal2), "mutation($id: ID!) { deleteUser(id: $id) }", json!({ "id": ada.user_id })).await;
    assert_eq!(res["data"]["deleteUser"], true, "{res}");
    assert_eq!(kinds_after(&app, before).await, ["USER_DELETED"]);
}

#[tokio::test]
async fn a_rolled_back_change_writes_no_row() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let before = rows(&app).await.len();
    let id: authgraph::db::ids::UserId = ada.user_id.parse().unwrap();
    let failed = app
        .state
        .auth
        .changes
        .run(async |c| {
            authgraph::db::users::set_password_hash(c, id, "x", authgraph::db::users::PasswordWrite::Changed).await?;
            // The audit row is in; now the change fails.
            Err::<(), _>(authgraph::error::AppError::internal(anyhow::anyhow!("failure after the audit insert")))
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(rows(&app).await.len(), before, "no change, no event");
}

/// A trail of `n` sign-ups (two rows each), chained.
async fn chained_trail(n: usize) -> TestApp {
    let app = TestApp::new().await;
    for i in 0..n {
        app.signup(&format!("user{i}")).await;
    }
    authgraph::audit::chain::chain_pending(&app.state.auth.pool, &app.state.audit).await.unwrap();
    let status = verify(&app).await;
    assert!(status.intact && status.checked == 2 * n as i64 && status.pending == 0, "{status:?}");
    app
}

async fn verify(app: &TestApp) -> authgraph::audit::ChainStatus {
    authgraph::audit::chain::verify(&app.state.auth.pool, &app.state.audit, None).await.unwrap()
}

/// Runs `statements` as the database's superuser with triggers off, as an intruder
/// who owns the database would.
async fn tamper(app: &TestApp, statements: &[&str]) {
    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    sql_query("SET session_replication_role = replica").execute(&mut conn).await.unwrap();
    for statement in statements {
        sql_query(*statement).execute(&mut conn).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

async fn id_at(app: &TestApp, seq: i64) -> i64 {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let mut conn = app.state.auth.pool.get().await.unwrap();
    let row: Id = sql_query("SELECT id FROM audit_events WHERE chain_seq = $1")
        .bind::<BigInt, _>(seq)
        .get_result(&mut conn)
        .await
        .unwrap();
    row.id
}

#[tokio::test]
async fn tampering_without_the_key_is_found_at_the_first_broken_row() {
    // A changed detail.
    let app = chained_trail(5).await;
    let fourth = id_at(&app, 4).await;
    tamper(
        &app,
        &[r#"UPDATE audit_events SET detail = '{"username": "mallory", "password": true}' WHERE chain_seq = 4"#],
    )
    .await;
    assert_eq!(verify(&app).await.first_broken_id, Some(fourth));

    // A deleted row: the next one's link no longer verifies.
    let app = chained_trail(5).await;
    let fifth = id_at(&app, 5).await;
    tamper(&app, &["DELETE FROM audit_events WHERE chain_seq = 4"]).await;
    assert_eq!(verify(&app).await.first_broken_id, Some(fifth));

    // A forged row at the end, linked to the head, with a hash made up without the key.
    let app = chained_trail(5).await;
    tamper(
        &app,
        &["INSERT INTO audit_events (kind, subject_id, detail, chain_seq, key_id, prev_hmac, hmac)
           SELECT 'ROLE_CHANGED', subject_id, '{\"to\": \"ADMIN\"}', chain_seq + 1, key_id, hmac,
                  sha256(hmac || 'forged'::bytea) FROM audit_events WHERE chain_seq = 10"],
    )
    .await;
    let status = verify(&app).await;
    let forged = id_at(&app, 11).await;
    assert_eq!(status.first_broken_id, Some(forged), "{status:?}");

    // Two rows swapped in the chain's order.
    let app = chained_trail(5).await;
    let third = id_at(&app, 3).await;
    tamper(
        &app,
        &[
            "UPDATE audit_events SET chain_seq = -1 WHERE chain_seq = 3",
            "UPDATE audit_events SET chain_seq = 3 WHERE chain_seq = 4",
            "UPDATE audit_events SET chain_seq = 4 WHERE chain_seq = -1",
        ],
    )
    .await;
    let fourth_now = id_at(&app, 3).await;
    assert_ne!(fourth_now, third);
    assert_eq!(verify(&app).await.first_broken_id, Some(fourth_now));

    // A whole suffix rewritten and re-chained with an unkeyed hash: each link points at
    // the previous row's new hash, so only the key tells.
    let app = chained_trail(5).await;
    let sixth = id_at(&app, 6).await;
    tamper(
        &app,
        &[
            "UPDATE audit_events SET detail = '{\"rewritten\": true}' WHERE chain_seq >= 6",
            "DO $$ DECLARE r record; prev bytea; BEGIN
                 SELECT hmac INTO prev FROM audit_events WHERE chain_seq = 5;
                 FOR r IN SELECT id FROM audit_events WHERE chain_seq >= 6 ORDER BY chain_seq LOOP
                     UPDATE audit_events SET prev_hmac = prev, hmac = sha256(prev || convert_to(detail::text, 'UTF8'))
                         WHERE id = r.id RETURNING hmac INTO prev;
                 END LOOP;
             END $$",
        ],
    )
    .await;
    assert_eq!(verify(&app).await.first_broken_id, Some(sixth));
}

#[tokio::test]
async fn a_role_with_every_privilege_cannot_change_the_trail() {
    let app = chained_trail(2).await;
    let mut conn = AsyncPgConnection::establish(&app.database_url).await.unwrap();
    // Roles are the cluster's: a name of this database's own.
    let role = format!("intruder_{}", std::process::id() as u64 * 1000 + rand_suffix());
    for statement in
        [format!("CREATE ROLE {role}"), format!("GRANT ALL ON audit_events TO {role}"), format!("SET ROLE {role}")]
    {
        sql_query(statement).execute(&mut conn).await.unwrap();
    }
    for statement in [
        "UPDATE audit_events SET detail = '{}' WHERE chain_seq = 1",
        "UPDATE audit_events SET hmac = NULL WHERE chain_seq = 2",
        "DELETE FROM audit_events WHERE chain_seq = 1",
        "TRUNCATE audit_events",
    ] {
        let err = sql_query(statement).execute(&mut conn).await.expect_err(statement);
        assert!(err.to_string().contains("append-only"), "{statement}: {err}");
    }
    sql_query("RESET ROLE").execute(&mut conn).await.unwrap();
    sql_query(format!("DROP OWNED BY {role}")).execute(&mut conn).await.unwrap();
    sql_query(format!("DROP ROLE {role}")).execute(&mut conn).await.unwrap();
    assert!(verify(&app).await.intact);
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 4];
    rand::fill(&mut b);
    u64::from(u32::from_le_bytes(b) % 1000)
}

#[tokio::test]
async fn retention_prunes_from_the_oldest_end_and_the_rest_verifies() {
    let app = chained_trail(4).await;
    // The first three rows are made a year and a half old (which breaks their own
    // HMACs: they are about to go).
    tamper(&app, &["UPDATE audit_events SET at = at - interval '550 days' WHERE chain_seq <= 3"]).await;
    let mut conn = app.state.auth.pool.get().await.unwrap();
    let pruned =
        authgraph::db::audit::prune(&mut conn, chrono::Utc::now() - chrono::Duration::days(400)).await.unwrap();
    assert_eq!(pruned, 3);
    // The first kept row's link to the pruned one is taken as it is.
    let status = verify(&app).await;
    assert!(status.intact && status.checked == 5, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ins_and_refreshes_on_two_instances_chain_into_one_trail() {
    let a = TestApp::new().await;
    let b = a.sibling(|_| {});
    let mut people = Vec::new();
    for i in 0..20 {
        people.push(a.signup(&format!("person{i}")).await);
    }
    let before = rows(&a).await.len();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let app = if i % 2 == 0 { &a } else { &b };
        let who = &people[i % people.len()];
        let req = if i % 4 < 2 {
            Gql::query(SIGNIN, json!({ "u": format!("person{}", i % people.len()), "p": PASSWORD }))
        } else {
            Gql::query(
                "mutation($t: String) { refresh(refreshToken: $t) { accessToken } }",
                json!({ "t": who.refresh }),
            )
        };
        tasks.push(app.spawn(req));
    }
    // Both instances' chainers run meanwhile; one at a time holds the chain.
    let chain = |app: &TestApp| {
        let (pool, keys) = (app.state.auth.pool.clone(), app.state.audit.clone());
        tokio::spawn(async move {
            for _ in 0..20 {
                authgraph::audit::chain::chain_pending(&pool, &keys).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let (ca, cb) = (chain(&a), chain(&b));
    let mut signins = 0;
    for task in tasks {
        let res = task.await.unwrap();
        if res["data"]["signin"].is_object() {
            signins += 1;
        }
    }
    ca.await.unwrap();
    cb.await.unwrap();
    authgraph::audit::chain::chain_pending(&a.state.auth.pool, &a.state.audit).await.unwrap();
    // The hashing queue may turn some sign-ins away (SERVICE_UNAVAILABLE): they write
    // nothing. One SIGNIN per sign-in that got through, nothing for a refresh.
    assert!(signins >= 50, "{signins} of 100 sign-ins got through");
    let written = kinds_after(&a, before).await;
    assert_eq!(written.len(), signins, "{written:?}");
    assert!(written.iter().all(|k| k == "SIGNIN"));
    let status = verify(&a).await;
    assert!(status.intact && status.pending == 0 && status.checked == (before + signins) as i64, "{status:?}");
}

#[tokio::test]
async fn the_command_line_verifies_and_names_the_first_broken_event() {
    let app = chained_trail(3).await;
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_authgraph"))
            .args(["audit", "verify"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &app.database_url)
            .env("AUDIT_CHAIN_KEY", crate::support::AUDIT_KEY)
            .env("DATA_DIR", std::env::temp_dir())
            .output()
            .unwrap()
    };
    let ok = run();
    let out = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(
        ok.status.success() && out.contains("intact: 6 events verified"),
        "{out} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let second = id_at(&app, 2).await;
    tamper(&app, &["UPDATE audit_events SET network = '198.51.100.1' WHERE chain_seq = 2"]).await;
    let broken = run();
    let out = String::from_utf8_lossy(&broken.stdout).into_owned();
    assert_eq!(broken.status.code(), Some(1), "{out}");
    assert!(out.contains(&format!("event {second} does not verify")), "{out}");
}

const EVENTS: &str = "query($f: AuditFilter, $first: Int, $after: String) { auditEvents(filter: $f, first: $first, after: $after) { nodes { id kind actorId subjectId network detail } pageInfo { hasNextPage endCursor } } }";
const MINE: &str = "{ mySecurityEvents { nodes { kind subjectId } } }";
const CHAIN: &str = "{ auditChain { intact checked firstBrokenId } }";

/// Signs up `username` as an ADMIN (the command line's way) and returns its session.
async fn admin(app: &TestApp, username: &str) -> crate::support::Auth {
    let who = app.signup(username).await;
    app.make_admin(username).await;
    who
}

/// Enrols TOTP for `who` and returns an AAL2 access token.
async fn with_totp(app: &TestApp, who: &crate::support::Auth) -> String {
    use authgraph::factors::totp;
    const T0: u64 = 1_800_000_015;
    app.state.factors.clock.pin(T0);
    let enrolled = app.gql(Some(&who.access), "mutation { enrollTotp { secret } }", json!({})).await;
    let secret = totp::from_base32(enrolled["data"]["enrollTotp"]["secret"].as_str().unwrap()).unwrap();
    let confirm = "mutation($c: String!) { confirmTotp(code: $c) { accessToken } }";
    let res = app.gql(Some(&who.access), confirm, json!({ "c": totp::code_at(&secret, T0 / totp::STEP) })).await;
    res["data"]["confirmTotp"]["accessToken"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_admin_rule_guards_the_trail_and_the_core_powers() {
    let app = TestApp::with_config(|c| c.admin_require_aal2 = Some(true)).await;
    let user = app.signup("plainuser").await;
    let root = admin(&app, "root").await;
    let update = "mutation($id: ID!) { updateUser(id: $id, input: { name: \"X\" }) { id } }";
    for (query, variables) in [(EVENTS, json!({})), (CHAIN, json!({})), (update, json!({ "id": user.user_id }))] {
        // A USER: forbidden.
        let res = app.gql(Some(&user.access), query, variables.clone()).await;
        if query != update {
            expect_error(&res, "FORBIDDEN");
        }
        // An ADMIN without a second factor: must enrol one.
        let res = app.gql(Some(&root.access), query, variables.clone()).await;
        assert_eq!(expect_error(&res, "MFA_REQUIRED")["extensions"]["reason"], "ENROLL", "{query}: {res}");
    }
    let aal2 = with_totp(&app, &root).await;
    // An ADMIN at AAL1 (a password sign-in of an account with a factor): verify first.
    let aal1 = app.signin("root", PASSWORD).await["data"]["signin"]["accessToken"].as_str().unwrap().to_owned();
    let res = app.gql(Some(&aal1), EVENTS, json!({})).await;
    assert_eq!(expect_error(&res, "MFA_REQUIRED")["extensions"]["reason"], "VERIFY", "{res}");
    // At AAL2 every power answers.
    let res = app.gql(Some(&aal2), EVENTS, json!({})).await;
    assert!(res["data"]["auditEvents"]["nodes"].as_array().is_some_and(|n| !n.is_empty()), "{res}");
    let res = app.gql(Some(&aal2), update, json!({ "id": user.user_id })).await;
    assert!(res["data"]["updateUser"].is_object(), "{res}");
    // The chain of everything so far verifies.
    authgraph::audit::chain::chain_pending(&app.state.auth.pool, &app.state.audit).await.unwrap();
    let res = app.gql(Some(&aal2), CHAIN, json!({})).await;
    assert_eq!(res["data"]["auditChain"]["intact"], true, "{res}");
    assert_eq!(res["data"]["auditChain"]["firstBrokenId"], Value::Null);
    tamper(&app, &["UPDATE audit_events SET user_agent = 'forged' WHERE chain_seq = 2"]).await;
    let second = id_at(&app, 2).await;
    let res = app.gql(Some(&aal2), CHAIN, json!({})).await;
    assert_eq!(res["data"]["auditChain"]["intact"], false, "{res}");
    assert_eq!(res["data"]["auditChain"]["firstBrokenId"], second.to_string());
}

#[tokio::test]
async fn events_are_filtered_and_paged_and_each_owner_sees_only_their_own() {
    let app = TestApp::new().await;
    let root = admin(&app, "root").await;
    let ada = app.signup("ada").await;
    let bob = app.signup("bob").await;
    app.signin("ada", PASSWORD).await;
    app.signin("ada", "wrong password").await;
    // Newest first, filtered by subject and kind.
    let f = json!({ "subjectId": ada.user_id, "kinds": ["SIGNIN", "SIGNIN_FAILED"] });
    let res = app.gql(Some(&root.access), EVENTS, json!({ "f": f })).await;
    let kinds: Vec<&str> =
        res["data"]["auditEvents"]["nodes"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["SIGNIN_FAILED", "SIGNIN", "SIGNIN"], "{res}");
    // Pages of one never skip or repeat.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let res = app.gql(Some(&root.access), EVENTS, json!({ "f": f, "first": 1, "after": after })).await;
        let page = &res["data"]["auditEvents"];
        seen.push(page["nodes"][0]["id"].as_str().unwrap().to_owned());
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len(), 3);
    assert!(seen.windows(2).all(|w| w[0].parse::<i64>().unwrap() > w[1].parse::<i64>().unwrap()));
    // Each owner sees their own events, nobody else's.
    let mine = app.gql(Some(&bob.access), MINE, json!({})).await;
    let nodes = mine["data"]["mySecurityEvents"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.iter().map(|n| n["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["SIGNIN", "SIGNUP"]);
    assert!(nodes.iter().all(|n| n["subjectId"] == json!(bob.user_id)), "{mine}");
    let bad = app.gql(Some(&root.access), EVENTS, json!({ "after": "not-a-cursor" })).await;
    assert_eq!(expect_error(&bad, "BAD_USER_INPUT")["extensions"]["field"], "after");
}
