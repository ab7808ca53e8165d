//! Three instances behind HAProxy (Debian's package), run with `deploy/haproxy.cfg` as
//! docs/production.md shows it, under a closed-loop load of rotations and `me`:
//! - a rolling restart of all three with SIGTERM, through the same configuration with
//!   its retries taken out (what a proxy that may not repeat a `POST` does): not one
//!   request fails, the drain alone carries it, and each subscription is closed with
//!   1001, opened again through the proxy on another instance, and served;
//! - one instance killed with SIGKILL, through the configuration as it is: only the
//!   requests in flight on it can fail.
//!
//! The counts are printed (`cargo test --test it proxy -- --nocapture`).

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    PASSWORD, SIGNUP, free_port, fresh_database,
    process::{SHARED_KEYS, Server, http},
    session_of,
    ws::Watch,
};

const CLIENTS: usize = 4;
/// Above the configuration's health check interval × fall count (1 s), with a margin.
const DRAIN: &str = "3s";
const REFRESH: &str = "mutation($t: String!) { refresh(refreshToken: $t) { accessToken refreshToken } }";
const SIGNIN: &str =
    "mutation($u: String!, $p: String!) { signin(input: { username: $u, password: $p }) { accessToken } }";

fn deploy_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(name)).unwrap()
}

/// `deploy/haproxy.cfg` without its retries: every request goes where it is first sent.
fn without_retries(config: &str) -> String {
    let lines: Vec<&str> = config.lines().collect();
    let kept: Vec<String> = lines
        .iter()
        .filter(|l| !l.contains("retry-on") && !l.contains("option redispatch"))
        .map(|l| if l.trim() == "retries 2" { l.replace("retries 2", "retries 0") } else { (*l).to_owned() })
        .collect();
    assert_eq!(kept.len(), lines.len() - 2, "deploy/haproxy.cfg has retry-on and option redispatch");
    assert!(kept.iter().any(|l| l.trim() == "retries 0"), "deploy/haproxy.cfg has retries 2");
    kept.join("\n") + "\n"
}

/// What docs/production.md shows is what this file runs.
#[test]
fn the_documented_haproxy_configuration_is_the_one_run() {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/production.md")).unwrap();
    assert!(docs.contains(&deploy_file("haproxy.cfg")), "copy deploy/haproxy.cfg into docs/production.md");
}

struct Proxy {
    child: Child,
    addr: String,
    socket: PathBuf,
}

impl Proxy {
    /// HAProxy with `config` (and the error file beside it) in `dir`, in front of
    /// `instances`.
    fn start(dir: &Path, config: &str, instances: &[String; 3]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("haproxy.cfg"), config).unwrap();
        std::fs::write(dir.join("haproxy-503.http"), deploy_file("haproxy-503.http")).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let socket = dir.join("admin.sock");
        let mut cmd = Command::new("haproxy");
        cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("PROXY_BIND", &addr)
            .env("HAPROXY_SOCKET", &socket)
            .env("AUTHGRAPH_1", &instances[0])
            .env("AUTHGRAPH_2", &instances[1])
            .env("AUTHGRAPH_3", &instances[2]);
        let envs: Vec<_> = cmd.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))).collect();
        let check = Command::new("haproxy")
            .envs(envs)
            .args(["-c", "-q", "-f"])
            .arg(dir.join("haproxy.cfg"))
            .output()
            .expect("haproxy runs (apt-get install haproxy)");
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = cmd
            .args(["-db", "-f"])
            .arg(dir.join("haproxy.cfg"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        Self { child, addr, socket }
    }

    /// Each server's status (`UP`, `DOWN`, `UP 1/2`, …) from the admin socket.
    async fn statuses(&self) -> Vec<(String, String)> {
        let Ok(mut stream) = tokio::net::UnixStream::connect(&self.socket).await else { return Vec::new() };
        stream.write_all(b"show stat\n").await.unwrap();
        let mut csv = String::new();
        stream.read_to_string(&mut csv).await.unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().trim_start_matches("# ").split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(status)) = (column("pxname"), column("svname"), column("status")) else {
            return Vec::new();
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > status && f[px] == "authgraph" && f[sv].starts_with("app"))
            .map(|f| (f[sv].to_owned(), f[status].to_owned()))
            .collect()
    }

    async fn wait_up(&self, servers: &[&str]) {
        let start = Instant::now();
        loop {
            let statuses = self.statuses().await;
            if servers.iter().all(|s| statuses.iter().any(|(name, status)| name == s && status == "UP")) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "waited for {servers:?} to be UP: {statuses:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A closed-loop load through one address: each client rotates its refresh token and
/// reads `me` with the new access token, one request at a time, until stopped.
struct Traffic {
    addr: String,
    answered: AtomicUsize,
    failed: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Traffic {
    fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            answered: AtomicUsize::new(0),
            failed: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        }
    }

    async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> Option<Value> {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let answer = http(&self.addr, "POST", "/graphql", token, Some(&body)).await;
        match answer {
            Some((200, text)) => match serde_json::from_str::<Value>(&text) {
                Ok(v) if v["errors"].is_null() => {
                    self.answered.fetch_add(1, Ordering::Relaxed);
                    return Some(v["data"].clone());
                }
                _ => self.failed.lock().unwrap().push(text),
            },
            Some((status, text)) => self.failed.lock().unwrap().push(format!("{status}: {text}")),
            None => self.failed.lock().unwrap().push("no answer".into()),
        }
        None
    }

    /// Returns the client's last refresh token; `None` once a rotation failed (its
    /// outcome is unknown).
    async fn client(self: Arc<Self>, mut refresh: String) -> Option<String> {
        while !self.stop.load(Ordering::Relaxed) {
            let d = self.post(None, REFRESH, json!({ "t": refresh })).await?;
            refresh = d["refresh"]["refreshToken"].as_str().unwrap().to_owned();
            let access = d["refresh"]["accessToken"].as_str().unwrap().to_owned();
            self.post(Some(&access), "{ me { username } }", json!({})).await;
        }
        Some(refresh)
    }
}

/// Runs `during` under one client's load per refresh token, through `addr`, and moves
/// each token on to the client's last; returns the requests answered and the failures.
async fn under_load(addr: &str, refresh_tokens: &mut [String], during: impl AsyncFnOnce()) -> (usize, Vec<String>) {
    let traffic = Arc::new(Traffic::new(addr));
    let clients: Vec<_> = refresh_tokens.iter().map(|t| tokio::spawn(traffic.clone().client(t.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    during().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    traffic.stop.store(true, Ordering::Relaxed);
    for (token, client) in refresh_tokens.iter_mut().zip(clients) {
        if let Some(last) = client.await.unwrap() {
            *token = last;
        }
    }
    assert!(traffic.answered.load(Ordering::Relaxed) > 50, "the load ran");
    (traffic.answered.load(Ordering::Relaxed), traffic.failed.lock().unwrap().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_behind_haproxy_fails_no_request_and_a_kill_only_those_in_flight() {
    let database = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let addrs: [String; 3] = std::array::from_fn(|_| format!("127.0.0.1:{}", free_port()));
    let start = |i: usize| {
        let mut env = SHARED_KEYS.to_vec();
        env.extend([
            ("DATABASE_URL", database.url.as_str()),
            ("LISTEN_ADDR", addrs[i].as_str()),
            ("SIGNUPS_PER_IP", "100000"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("SHUTDOWN_DRAIN", DRAIN),
        ]);
        Server::start(&dir.path().join(format!("instance{i}")), &env)
    };
    let mut servers: Vec<Option<Server>> = (0..3).map(|i| Some(start(i))).collect();

    let config = deploy_file("haproxy.cfg");
    let retrying = Proxy::start(&dir.path().join("proxy"), &config, &addrs);
    let strict = Proxy::start(&dir.path().join("strict"), &without_retries(&config), &addrs);
    retrying.wait_up(&["app1", "app2", "app3"]).await;
    strict.wait_up(&["app1", "app2", "app3"]).await;

    // The clients' accounts, and the watcher's, whose sessions the subscriptions follow.
    let setup = Traffic::new(&strict.addr);
    let mut refresh_tokens = Vec::new();
    for c in 0..CLIENTS {
        let input = json!({ "input": { "name": "C", "username": format!("client{c}"), "password": PASSWORD } });
        let d = setup.post(None, SIGNUP, input).await.expect("signup through the proxy");
        refresh_tokens.push(d["signup"]["refreshToken"].as_str().unwrap().to_owned());
    }
    let input = json!({ "input": { "name": "W", "username": "watcher", "password": PASSWORD } });
    setup.post(None, SIGNUP, input).await.expect("signup through the proxy");
    let signin = async || {
        let d = setup.post(None, SIGNIN, json!({ "u": "watcher", "p": PASSWORD })).await;
        d.unwrap_or_else(|| panic!("signin: {:?}", setup.failed.lock().unwrap()))["signin"]["accessToken"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let watching = signin().await;
    let mut watches = Vec::new();
    for _ in 0..3 {
        watches.push(Watch::open(&strict.addr, &watching).await);
    }

    // The rolling restart, through the proxy that retries nothing.
    let restart_started = Instant::now();
    let (answered, failed) = under_load(&strict.addr, &mut refresh_tokens, async || {
        for (i, slot) in servers.iter_mut().enumerate() {
            let server = slot.take().unwrap();
            let (status, _) = tokio::task::block_in_place(|| server.terminate());
            assert!(status.success(), "instance {i} exits 0 after its drain");
            *slot = Some(tokio::task::block_in_place(|| start(i)));
            strict.wait_up(&[&format!("app{}", i + 1)]).await;
        }
    })
    .await;
    let restart_took = restart_started.elapsed();
    // Each subscription was closed once (its instance restarted), and is served again
    // through the proxy.
    let end_a_session = async || {
        let token = signin().await;
        setup.post(Some(&token), "mutation { logout }", json!({})).await.expect("logout");
        session_of(&token)
    };
    let mut closes = Vec::new();
    for watch in &mut watches {
        closes.push(watch.ended(&end_a_session).await);
    }
    println!(
        "rolling restart of 3 instances with SIGTERM (SHUTDOWN_DRAIN={DRAIN}) through HAProxy with retries 0: \
         {answered} requests answered, {} failed, in {:.1} s; subscriptions closed with {closes:?} and served again",
        failed.len(),
        restart_took.as_secs_f64()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(closes.iter().all(|c| c == &[1001]), "each subscription was told to reconnect once: {closes:?}");

    // The kill, through the configuration as it is (retrying refused connections).
    retrying.wait_up(&["app1", "app2", "app3"]).await;
    let (answered, failed) = under_load(&retrying.addr, &mut refresh_tokens, async || {
        servers[1].as_ref().unwrap().signal(libc::SIGKILL);
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;
    println!(
        "one of 3 instances killed with SIGKILL under {CLIENTS} clients through HAProxy with retry-on conn-failure: \
         {answered} requests answered, {} failed",
        failed.len()
    );
    // At most one request per client was in flight on the killed instance.
    assert!(failed.len() <= CLIENTS, "{failed:#?}");
}
