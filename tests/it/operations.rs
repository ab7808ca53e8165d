//! Running it for real: metrics, a database that goes away and comes back, `kill -9`
//! during a signup storm, two instances on one database, and shutdown under load.
//! These start the real binary, each on its own embedded PostgreSQL.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Value, json};

use crate::support::{
    PASSWORD, SIGNIN, SIGNUP, TestApp, count,
    process::{Server, http, wait_until},
    sample,
};

async fn scrape(app: &TestApp) -> String {
    let res = app.request(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), 200);
    let bytes = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn metrics_parse_and_move_with_requests() {
    let app = TestApp::new().await;
    let ada = app.signup("ada").await;
    let me_ok = r#"authgraph_graphql_requests_total{operation="me",outcome="OK"}"#;
    let me_denied = r#"authgraph_graphql_requests_total{operation="me",outcome="UNAUTHENTICATED"}"#;
    let before = scrape(&app).await;
    app.gql(Some(&ada.access), "{ me { id } }", json!({})).await;
    app.gql(None, "query Anything { me { id } }", json!({})).await;
    let after = scrape(&app).await;
    // Every sample line is `name{labels} number`.
    for line in after.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line}"));
        value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line}"));
    }
    // Other tests share the process-wide registry, so counters only ever grow.
    assert!(sample(&after, me_ok) >= sample(&before, me_ok) + 1.0, "{after}");
    assert!(sample(&after, me_denied) >= sample(&before, me_denied) + 1.0);
    assert!(after.contains("authgraph_graphql_request_duration_seconds_bucket{operation=\"me\""));
    assert_eq!(sample(&after, "authgraph_database_up"), 1.0);
    assert!(sample(&after, r#"authgraph_db_pool_connections{state="max"}"#) >= 1.0);
    // Client-chosen names never become labels.
    assert!(!after.contains("Anything"));

    // Persisted queries count their lookups, misses included, which never reach the schema.
    let persisted = |outcome: &str| format!(r#"authgraph_persisted_queries_total{{outcome="{outcome}"}}"#);
    let query = "{ users(first: 1) { totalCount } }";
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": crate::support::sha256_hex(query) } });
    app.gql_response(None, None, json!({ "extensions": extensions })).await;
    app.gql_response(None, None, json!({ "query": query, "extensions": extensions })).await;
    app.gql_response(None, None, json!({ "extensions": extensions })).await;
    let last = scrape(&app).await;
    for outcome in ["miss", "registered", "hit"] {
        assert!(sample(&last, &persisted(outcome)) >= sample(&after, &persisted(outcome)) + 1.0, "{outcome}: {last}");
    }
}

fn pg_ctl(data_dir: &std::path::Path, args: &[&str]) {
    let user = std::env::var("PG_OS_USER").unwrap_or_else(|_| "postgres".into());
    let out = authgraph::embedded_postgres::cluster_command("pg_ctl", &user)
        .unwrap()
        .arg("-D")
        .arg(data_dir.join("postgres"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_survives_a_database_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[("DATABASE_ACQUIRE_TIMEOUT", "2s")]);
    let signup =
        server.gql(None, SIGNUP, json!({ "input": { "name": "Ada", "username": "ada", "password": PASSWORD } })).await;
    let token = signup["data"]["signup"]["accessToken"].as_str().unwrap().to_owned();
    let users = "{ users { totalCount } }";

    pg_ctl(&data, &["stop", "-m", "fast", "-w"]);
    let start = Instant::now();
    let down = server.gql(None, users, json!({})).await;
    assert_eq!(down["errors"][0]["extensions"]["code"], "SERVICE_UNAVAILABLE", "{down}");
    // DATABASE_ACQUIRE_TIMEOUT is 2 s; 4 s leaves room for a slow machine while still
    // telling a bounded wait from a hang (the client's own timeout would be minutes).
    assert!(start.elapsed() < Duration::from_secs(4), "failed fast: {:?}", start.elapsed());
    assert_eq!(http(&server.addr, "GET", "/readyz", None, None).await.unwrap().0, 503);
    assert_eq!(http(&server.addr, "GET", "/healthz", None, None).await.unwrap().0, 200);

    pg_ctl(&data, &["start", "-w", "-l", data.join("postgres/server.log").to_str().unwrap()]);
    let back = Instant::now();
    loop {
        let res = server.gql(None, users, json!({})).await;
        if res["data"]["users"]["totalCount"] == 1 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(10), "no recovery: {res}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("recovered {:?} after the database came back", back.elapsed());
    assert_eq!(http(&server.addr, "GET", "/readyz", None, None).await.unwrap().0, 200);
    assert!(server.gql(Some(&token), "{ me { id } }", json!({})).await["data"]["me"].is_object());
    let (status, _) = server.terminate();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_signup_storm_loses_no_acknowledged_account() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[("SIGNUPS_PER_IP", "100000")]);
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let addr = server.addr.clone();
    // Workers stop once the server is gone (their connection is refused); the deadline
    // only keeps a broken test from spinning.
    let deadline = Instant::now() + Duration::from_secs(60);
    let workers: Vec<_> = (0..12)
        .map(|w| {
            let (addr, acknowledged) = (addr.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let username = format!("storm{w}x{i}");
                    let body = json!({ "query": SIGNUP, "variables": { "input": { "name": "n", "username": username, "password": PASSWORD } } });
                    match http(&addr, "POST", "/graphql", None, Some(&body.to_string())).await {
                        Some((200, text)) if text.contains("accessToken") => acknowledged.lock().unwrap().push(username),
                        Some(_) => {}
                        None => break,
                    }
                }
            })
        })
        .collect();
    // Kill it mid-storm: once some signups have been acknowledged (while others are in
    // flight), not after a guessed time.
    let start = Instant::now();
    while acknowledged.lock().unwrap().len() < 10 {
        assert!(Instant::now() < deadline, "the storm acknowledged too few signups");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("killing after {:?}", start.elapsed());
    server.signal(libc::SIGKILL);
    server.child.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let pid_file = data.join("postgres/postmaster.pid");
    wait_until("the watchdog stops PostgreSQL", Duration::from_secs(30), || !pid_file.exists());

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 10, "the storm made only {} accounts", acknowledged.len());
    let server = Server::start(&data, &[]);
    // No half-made signup: every account has a session, every session a token.
    let mut conn = AsyncPgConnection::establish(&server.database_url()).await.unwrap();
    let orphans = count(
        &mut conn,
        "SELECT (SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = u.id)) \
              + (SELECT count(*) FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id)) AS n",
    )
    .await;
    assert_eq!(orphans, 0);
    for username in &acknowledged {
        let res = server.gql(None, SIGNIN, json!({ "input": { "username": username, "password": PASSWORD } })).await;
        assert!(res["data"]["signin"].is_object(), "{username} was acknowledged but is gone: {res}");
    }
    println!("{} acknowledged accounts all survived kill -9", acknowledged.len());
    assert!(server.terminate().0.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_behave_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let [secret, refresh_key, mfa_key, _audit_key] = crate::support::process::SHARED_KEYS;
    // Ada signs in from this address below, so it is a known one: the per-address
    // limit is the one that counts there.
    let limits = ("SIGNIN_FAILURES_PER_ACCOUNT_ADDRESS", "3");
    let a = Server::start(&dir.path().join("a"), &[secret, refresh_key, mfa_key, limits]);
    let url = a.database_url();
    let b =
        Server::start(&dir.path().join("b"), &[secret, refresh_key, mfa_key, limits, ("DATABASE_URL", url.as_str())]);
    assert!(!dir.path().join("b/postgres").exists(), "B uses A's database, not its own");

    let signup =
        a.gql(None, SIGNUP, json!({ "input": { "name": "Ada", "username": "ada", "password": PASSWORD } })).await;
    let token = signup["data"]["signup"]["accessToken"].as_str().unwrap().to_owned();
    let refresh = signup["data"]["signup"]["refreshToken"].as_str().unwrap().to_owned();
    // A token from one instance works on the other.
    assert!(b.gql(Some(&token), "{ me { id } }", json!({})).await["data"]["me"].is_object());

    // Refresh race across instances: one successor.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let addr = if i % 2 == 0 { a.addr.clone() } else { b.addr.clone() };
        let body = json!({ "query": crate::support::REFRESH, "variables": { "token": refresh } }).to_string();
        tasks.push(tokio::spawn(async move { http(&addr, "POST", "/graphql", None, Some(&body)).await }));
    }
    let mut successors = HashSet::new();
    for t in tasks {
        let (_, body) = t.await.unwrap().unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        successors.insert(v["data"]["refresh"]["refreshToken"].as_str().expect("refreshed").to_owned());
    }
    assert_eq!(successors.len(), 1, "{successors:?}");

    // Logout on B ends the session on A.
    let signin = b.gql(None, SIGNIN, json!({ "input": { "username": "ada", "password": PASSWORD } })).await;
    let token_b = signin["data"]["signin"]["accessToken"].as_str().unwrap().to_owned();
    assert!(a.gql(Some(&token_b), "{ me { id } }", json!({})).await["data"]["me"].is_object());
    b.gql(Some(&token_b), "mutation { logout }", json!({})).await;
    let after = a.gql(Some(&token_b), "{ me { id } }", json!({})).await;
    assert_eq!(after["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

    // Failed sign-ins count across instances.
    for server in [&a, &b, &a] {
        let res = server.gql(None, SIGNIN, json!({ "input": { "username": "ada", "password": "wrong guess" } })).await;
        assert_eq!(res["errors"][0]["extensions"]["code"], "INVALID_CREDENTIALS");
    }
    let res = b.gql(None, SIGNIN, json!({ "input": { "username": "ada", "password": PASSWORD } })).await;
    assert_eq!(res["errors"][0]["extensions"]["code"], "RATE_LIMITED", "{res}");

    assert!(b.terminate().0.success());
    assert!(a.terminate().0.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_accepted_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let addr = server.addr.clone();
    let query = json!({ "query": "{ users(first: 5) { totalCount nodes { id } } }" }).to_string();
    let (ok, failed, refused) =
        (Arc::new(Mutex::new(0u32)), Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0u32)));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (addr, query, ok, failed, refused) =
                (addr.clone(), query.clone(), ok.clone(), failed.clone(), refused.clone());
            tokio::spawn(async move {
                let mut refusals = 0;
                while refusals < 3 {
                    match http(&addr, "POST", "/graphql", None, Some(&query)).await {
                        Some((200, body)) if body.contains("totalCount") => *ok.lock().unwrap() += 1,
                        Some((status, body)) => failed.lock().unwrap().push(format!("{status} {body}")),
                        None => {
                            refusals += 1;
                            *refused.lock().unwrap() += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();
    // Terminate under load: once requests are being served, not after a guessed time.
    let start = Instant::now();
    while *ok.lock().unwrap() < 50 {
        assert!(start.elapsed() < Duration::from_secs(60), "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let served_before = *ok.lock().unwrap();
    let (status, took) = tokio::task::spawn_blocking(move || server.terminate()).await.unwrap();
    for c in clients {
        c.await.unwrap();
    }
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(20), "within SHUTDOWN_TIMEOUT: {took:?}");
    assert!(served_before > 0);
    let failed = failed.lock().unwrap();
    assert!(failed.is_empty(), "{} accepted requests failed: {:?}", failed.len(), &failed[..failed.len().min(3)]);
    println!("shutdown under load took {took:?}; {} requests served, none failed", ok.lock().unwrap());
}
