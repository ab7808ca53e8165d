//! The real binary as a child process, and a minimal HTTP client for it.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Server {
    pub child: Child,
    /// `127.0.0.1:port`
    pub addr: String,
    pub data_dir: PathBuf,
}

/// The keys every instance of one deployment shares (tokens signed by one are accepted
/// by the others, and TOTP secrets sealed by one open on the others), for tests that
/// run several processes on one database.
pub const SHARED_KEYS: [(&str, &str); 4] = [
    ("JWT_ACCESS_SECRET", "shared-secret-shared-secret-shared!!"),
    ("REFRESH_TOKEN_KEY", "shared-refresh-key-shared-refresh-key"),
    ("MFA_ENCRYPTION_KEY", "shared-mfa-key-shared-mfa-key-shared-mfa"),
    ("AUDIT_CHAIN_KEY", "shared-audit-key-shared-audit-key-shared"),
];

/// The binary with a clean environment: only what the test sets.
pub fn command(data_dir: &Path) -> Command {
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

impl Server {
    /// Starts the server on `data_dir` with extra environment, and waits until it listens.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = command(data_dir);
        cmd.envs(env.iter().copied());
        Self::spawn(cmd, data_dir)
    }

    /// Starts the server from a command the test prepared (limits, extra settings).
    pub fn spawn(mut cmd: Command, data_dir: &Path) -> Server {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim_end_matches("/graphql").to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr, data_dir: data_dir.to_owned() }
    }

    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// SIGTERM, then the exit status and how long the exit took.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        (status, start.elapsed())
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// URL of this server's embedded database, for a second instance.
    pub fn database_url(&self) -> String {
        let socket_dir = std::fs::canonicalize(self.data_dir.join("run")).unwrap();
        let encoded: String = socket_dir
            .to_str()
            .unwrap()
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        format!("postgresql:///authgraph?host={encoded}&port=5432&user=authgraph")
    }

    /// The server's resident memory, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn pid_file(&self) -> PathBuf {
        self.data_dir.join("postgres/postmaster.pid")
    }

    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let (status, body) = http(&self.addr, "POST", "/graphql", token, Some(&body)).await.expect("a response");
        assert!(status == 200 || status == 400, "{status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"))
    }
}

/// A test that fails midway must not leave its server (or, through it, its
/// PostgreSQL) running: kill it, then wait for its watchdog to stop the cluster
/// before the test's temporary folder is removed.
impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
        let pid_file = self.pid_file();
        let start = Instant::now();
        while pid_file.exists() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One HTTP/1.1 request on its own connection. `None` when no response byte came
/// back (connection refused or closed before answering).
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let body = body.unwrap_or("");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response).await;
    if response.is_empty() {
        return None;
    }
    read.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// Reads a response's head (through its blank line) from `stream`; panics if the peer
/// closes first.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response's head: {}", String::from_utf8_lossy(&head));
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
