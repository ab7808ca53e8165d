//! The real binary, as a newcomer runs it: embedded PostgreSQL under DATA_DIR, a real
//! socket, graceful shutdown, data that survives a restart, and no PostgreSQL left
//! behind, even after `kill -9`.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::PASSWORD;

struct Server {
    child: Child,
    addr: String,
}

fn command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authgraph"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info");
    if let Some(user) = std::env::var_os("PG_OS_USER") {
        cmd.env("PG_OS_USER", user);
    }
    cmd
}

fn start(data_dir: &Path) -> Server {
    let mut child = command(data_dir).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim_end_matches("/graphql").to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

/// A minimal HTTP/1.1 POST over a real TCP connection.
async fn post(addr: &str, query: &str, variables: Value) -> Value {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|_| panic!("{response}"))
}

fn signal(child: &Child, sig: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_restarts_with_its_data_and_leaves_no_postgres_behind() {
    let dir = tempfile::Builder::new().prefix("authgraph-e2e-").tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let pid_file = data_dir.join("postgres/postmaster.pid");

    // First start: a fresh DATA_DIR gets a new cluster.
    let mut server = start(&data_dir);
    assert_eq!(post(&server.addr, "{ __typename }", json!({})).await, json!({ "data": { "__typename": "Query" } }));
    let signup = post(
        &server.addr,
        "mutation($i: SignupInput!) { signup(input: $i) { user { id } } }",
        json!({ "i": { "name": "Ada", "username": "ada", "password": PASSWORD } }),
    )
    .await;
    assert!(signup["data"]["signup"]["user"]["id"].is_string(), "{signup}");
    assert!(pid_file.exists(), "the embedded cluster runs under DATA_DIR");

    // SIGTERM: graceful shutdown, exit 0, cluster stopped.
    signal(&server.child, libc::SIGTERM);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!pid_file.exists(), "PostgreSQL stopped with the server");

    // The admin CLI works on the same DATA_DIR.
    let out = command(&data_dir).args(["users", "set-role", "ada", "ADMIN"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ada is now ADMIN"));

    // Second start: same data.
    let mut server = start(&data_dir);
    let signin = post(
        &server.addr,
        "mutation($i: SigninInput!) { signin(input: $i) { user { username role } } }",
        json!({ "i": { "username": "ada", "password": PASSWORD } }),
    )
    .await;
    assert_eq!(signin["data"]["signin"]["user"], json!({ "username": "ada", "role": "ADMIN" }), "{signin}");

    // kill -9: no chance to clean up, yet the watchdog stops PostgreSQL.
    signal(&server.child, libc::SIGKILL);
    server.child.wait().unwrap();
    wait_until("the orphaned PostgreSQL stops", Duration::from_secs(30), || !pid_file.exists());

    // And the next start after a crash works.
    let mut server = start(&data_dir);
    assert!(post(&server.addr, "{ users { totalCount } }", json!({})).await["data"]["users"]["totalCount"] == 1);
    signal(&server.child, libc::SIGTERM);
    assert!(server.child.wait().unwrap().success());
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
