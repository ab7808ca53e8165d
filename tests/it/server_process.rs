//! The real binary, as a newcomer runs it: embedded PostgreSQL under DATA_DIR, a real
//! socket, graceful shutdown, data that survives a restart, and no PostgreSQL left
//! behind, even after `kill -9`.

use std::time::Duration;

use serde_json::json;

use crate::support::{
    PASSWORD,
    process::{Server, command, wait_until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_restarts_with_its_data_and_leaves_no_postgres_behind() {
    let dir = tempfile::Builder::new().prefix("authgraph-e2e-").tempdir().unwrap();
    let data_dir = dir.path().join("data");

    // First start: a fresh DATA_DIR gets a new cluster.
    let server = Server::start(&data_dir, &[]);
    let pid_file = server.pid_file();
    assert_eq!(server.gql(None, "{ __typename }", json!({})).await, json!({ "data": { "__typename": "Query" } }));
    let signup = server
        .gql(
            None,
            "mutation($i: SignupInput!) { signup(input: $i) { user { id } } }",
            json!({ "i": { "name": "Ada", "username": "ada", "password": PASSWORD, "email": "ada@example.com" } }),
        )
        .await;
    assert!(signup["data"]["signup"]["user"]["id"].is_string(), "{signup}");
    assert!(pid_file.exists(), "the embedded cluster runs under DATA_DIR");

    // Without SMTP_URL in development, the verification message is an .eml file only
    // its owner can read.
    let mail_dir = data_dir.join("mail");
    let eml = || std::fs::read_dir(&mail_dir).ok().and_then(|mut d| d.next()).map(|e| e.unwrap().path());
    wait_until("the verification message is written", Duration::from_secs(30), || eml().is_some());
    let file = eml().unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&mail_dir).unwrap().permissions().mode() & 0o777, 0o700);
    let message = std::fs::read_to_string(&file).unwrap();
    assert!(message.contains("To: ada@example.com") && message.contains("verify-email?token"), "{message}");

    // SIGTERM: graceful shutdown, exit 0, cluster stopped.
    let (status, _) = server.terminate();
    assert!(status.success(), "{status}");
    assert!(!pid_file.exists(), "PostgreSQL stopped with the server");

    // The admin CLI works on the same DATA_DIR.
    let out = command(&data_dir).args(["users", "set-role", "ada", "ADMIN"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ada is now ADMIN"));
    let out = command(&data_dir).args(["users", "list"]).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("ada") && listing.contains("ADMIN") && listing.contains("1 accounts"), "{listing}");
    let out = command(&data_dir).args(["users", "set-email", "ada", "Ada@New.example", "--verified"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ada now has Ada@new.example (verified)"), "{out:?}");
    let out = command(&data_dir).args(["users", "set-email", "ada", "not an address"]).output().unwrap();
    assert!(!out.status.success(), "a bad address is refused");

    // Second start: same data.
    let mut server = Server::start(&data_dir, &[]);
    let signin = server
        .gql(
            None,
            "mutation($i: SigninInput!) { signin(input: $i) { accessToken user { username role } } }",
            json!({ "i": { "username": "ada", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(signin["data"]["signin"]["user"], json!({ "username": "ada", "role": "ADMIN" }), "{signin}");

    // kill -9: no chance to clean up, yet the watchdog stops PostgreSQL.
    server.signal(libc::SIGKILL);
    server.child.wait().unwrap();
    wait_until("the orphaned PostgreSQL stops", Duration::from_secs(30), || !pid_file.exists());

    // The next start after a crash works, and the CLI can end sessions.
    let server = Server::start(&data_dir, &[]);
    let token = signin["data"]["signin"]["accessToken"].as_str().unwrap();
    assert!(server.gql(Some(token), "{ me { id } }", json!({})).await["data"]["me"].is_object());
    let out = command(&data_dir).args(["users", "revoke-sessions", "ADA"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("ended 2 sessions"), "{out:?}");
    let me = server.gql(Some(token), "{ me { id } }", json!({})).await;
    assert_eq!(me["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    // And reset a lost second factor (ending every session, none left here).
    let out = command(&data_dir).args(["users", "reset-mfa", "ada"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("removed the second factors and passkeys of ada and ended 0 sessions"),
        "{out:?}"
    );
    let out = command(&data_dir).args(["users", "reset-mfa", "nobody"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no user named"), "{out:?}");
    // A ban from the command line refuses the right password; the unban lifts it.
    let signin_code = async || {
        let res = server
            .gql(
                None,
                "mutation($i: SigninInput!) { signin(input: $i) { accessToken } }",
                json!({ "i": { "username": "ada", "password": PASSWORD } }),
            )
            .await;
        res["errors"][0]["extensions"]["code"].as_str().unwrap_or("OK").to_owned()
    };
    let out = command(&data_dir).args(["users", "ban", "ada", "--reason", "abuse report 7"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("ada is banned for good"), "{out:?}");
    assert_eq!(signin_code().await, "ACCOUNT_BANNED");
    let out = command(&data_dir).args(["users", "unban", "ada", "--reason", "appeal granted"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(signin_code().await, "OK");
    let (status, _) = server.terminate();
    assert!(status.success());
}

#[test]
fn production_refuses_to_start_without_a_strong_secret() {
    let dir = tempfile::tempdir().unwrap();
    for secret in [None, Some("too short")] {
        let mut cmd = command(dir.path());
        cmd.env("APP_ENV", "production");
        if let Some(secret) = secret {
            cmd.env("JWT_ACCESS_SECRET", secret);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("JWT_ACCESS_SECRET"), "{stderr}");
    }
}

#[test]
fn a_bad_setting_names_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path()).env("ACCESS_TOKEN_TTL", "fifteen minutes").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ACCESS_TOKEN_TTL"));
}

/// One request on a keep-alive connection (no `Connection: close` of its own): the
/// status and whether the server closes the connection after it.
async fn keep_alive_request(addr: &str, method: &str, path: &str, body: &str) -> (u16, bool) {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = crate::support::process::read_head(&mut stream).await.to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.contains("\r\nconnection: close\r\n"))
}

/// SIGTERM with SHUTDOWN_DRAIN: for the drain, /readyz says 503 while requests are still
/// served (each closing its connection) and new sockets are refused; open sockets keep
/// working until the drain ends, then get 1001, and the process exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_before_the_server_stops() {
    use crate::support::ws::connect;
    const DRAIN: Duration = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[("SHUTDOWN_DRAIN", "3s"), ("SHUTDOWN_TIMEOUT", "5s")]);
    let signup = server
        .gql(
            None,
            crate::support::SIGNUP,
            json!({ "input": { "name": "Ada", "username": "ada", "password": PASSWORD } }),
        )
        .await;
    let ada = crate::support::Auth::from_payload(&signup, "signup");
    let mut ws = connect(&server.addr, None).await.unwrap();
    ws.admitted(&ada.access).await;
    assert_eq!(keep_alive_request(&server.addr, "GET", "/readyz", "").await, (200, false));

    let signalled = std::time::Instant::now();
    server.signal(libc::SIGTERM);
    let start = std::time::Instant::now();
    while keep_alive_request(&server.addr, "GET", "/readyz", "").await.0 != 503 {
        assert!(start.elapsed() < Duration::from_secs(2), "/readyz never said 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, closes) = keep_alive_request(&server.addr, "POST", "/graphql", r#"{"query":"{ __typename }"}"#).await;
    assert_eq!((status, closes), (200, true), "served, and the connection closed after it");
    let refused = connect(&server.addr, None).await.err().expect("no new socket while draining");
    assert_eq!(crate::support::ws::refused_with(refused), 503);
    // The open socket still works during the drain.
    let me = ws.execute("1", "{ me { username } }", json!({})).await.unwrap();
    assert_eq!(me["data"]["me"]["username"], "ada", "{me}");
    assert!(signalled.elapsed() < DRAIN, "the checks ran inside the drain");
    // At its end: 1001, and a clean exit.
    assert_eq!(ws.closed().await, 1001);
    assert!(signalled.elapsed() >= DRAIN, "sockets are told to go only when the drain ends");
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status}");
}
