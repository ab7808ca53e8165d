//! authgraph-bench: a closed-loop load generator for authgraph.
//!
//! It starts its own PostgreSQL and server (the release binary, as deployed) unless
//! given `--url`, seeds accounts, and runs each scenario for a set time at a set
//! concurrency: every connection sends its next request as soon as the last one was
//! answered. Latency goes into an HDR histogram. In the same run it measures what
//! bounds each figure on this machine: PostgreSQL's own primary-key select rate
//! (`pgbench -S -M prepared`, same cluster, same number of clients), one argon2id
//! verification on one core, and an empty GraphQL request (`{ __typename }`), and
//! prints every scenario as a ratio to its reference.
//!
//! `cargo build --release && cargo run --release -p authgraph-bench -- --help`

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};

mod events;
mod passkeys;

#[derive(Parser, Debug)]
#[command(about = "Closed-loop benchmark of authgraph, with references measured in the same run")]
struct Args {
    /// A running server's base URL (e.g. http://127.0.0.1:8000). Default: start one.
    #[arg(long)]
    url: Option<String>,
    /// The server binary to start.
    #[arg(long, default_value = "target/release/authgraph")]
    server_bin: PathBuf,
    /// How long each scenario is measured.
    #[arg(long, default_value = "15s", value_parser = authgraph::config::parse_duration)]
    duration: Duration,
    /// Load before measuring, per scenario.
    #[arg(long, default_value = "3s", value_parser = authgraph::config::parse_duration)]
    warmup: Duration,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,me,users,user,forged,refresh,signin,signin_many,signup,signin_with_me,signin_during_signups,mixed,mixed_256,passkey_signin"
    )]
    scenarios: Vec<String>,
    /// Distinct accounts for `signin_many`.
    #[arg(long, default_value_t = 1000)]
    signin_users: usize,
    /// Skip the pgbench reference.
    #[arg(long)]
    no_pgbench: bool,
    /// After the scenarios, seed this many more accounts, each with a live session and
    /// a refresh token (with SQL, not through signup), and run `--large-scenarios`
    /// again, reporting each one's CPU per request next to the small-database run.
    /// Needs the server this harness starts (not `--url`).
    #[arg(long, default_value_t = 0)]
    large: u64,
    /// Scenarios rerun on the large database.
    #[arg(long, value_delimiter = ',', default_value = "me,user,users,refresh,signin")]
    large_scenarios: Vec<String>,
    /// Scenarios run again with the audit trail's triggers switched off and on, two
    /// rounds each way, alternating, to report their rates with and without the trail
    /// (e.g. `signin,refresh`); empty skips it. Needs the server this harness starts.
    #[arg(long, value_delimiter = ',', default_value = "")]
    trail_comparison: Vec<String>,
    /// Session events made (with SQL) to measure the server's CPU per event, alone and
    /// beside `--event-subscriptions` subscriptions of other accounts; 0 skips it.
    /// Needs the server this harness starts (not `--url`).
    #[arg(long, default_value_t = 500)]
    events: usize,
    /// Subscriptions of other accounts open during the second events run (five a
    /// socket, ten sockets an account, as the server's defaults allow).
    #[arg(long, default_value_t = 2000)]
    event_subscriptions: usize,
}

const PASSWORD: &str = "bench password, long enough";
const SIGNIN: &str =
    "mutation($u: String!, $p: String!) { signin(input: { username: $u, password: $p }) { accessToken refreshToken } }";
const SIGNUP: &str = "mutation($u: String!, $p: String!) { signup(input: { name: \"Bench\", username: $u, password: $p }) { accessToken refreshToken } }";
const REFRESH: &str = "mutation($t: String!) { refresh(refreshToken: $t) { accessToken refreshToken } }";
const ME: &str = "{ me { id name username role } }";
const USERS: &str = "{ users(first: 20) { totalCount nodes { id name username } pageInfo { hasNextPage endCursor } } }";
const USER: &str = "query($id: ID!) { user(id: $id) { id name username } }";
const FLOOR: &str = "{ __typename }";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Target {
    client: HttpClient,
    graphql: String,
}

impl Target {
    /// One GraphQL request; the JSON response, or an error for a transport failure
    /// or a non-200 status.
    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let mut req = hyper::Request::post(&self.graphql).header("content-type", "application/json");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let res = self.client.request(req.body(Full::new(Bytes::from(body)))?).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        if status != 200 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn tokens(&self, query: &str, variables: Value, field: &str) -> anyhow::Result<(String, String)> {
        let res = self.gql(None, query, variables).await?;
        let payload = &res["data"][field];
        let access = payload["accessToken"].as_str().with_context(|| format!("{field} failed: {res}"))?;
        Ok((access.to_owned(), payload["refreshToken"].as_str().unwrap_or_default().to_owned()))
    }
}

/// The server under test when we start it ourselves.
struct Server {
    child: Child,
    data_dir: tempfile::TempDir,
}

impl Server {
    fn start(bin: &PathBuf) -> anyhow::Result<(Self, String)> {
        anyhow::ensure!(bin.exists(), "{} not found: run `cargo build --release` first, or pass --url", bin.display());
        let data_dir = tempfile::Builder::new().prefix("authgraph-bench-").tempdir()?;
        let mut child = Command::new(bin)
            .env("DATA_DIR", data_dir.path())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("JWT_ACCESS_SECRET", "bench-secret-bench-secret-bench-secret")
            .env("DATABASE_POOL_SIZE", "32")
            .env("SIGNUPS_PER_IP", "1000000000")
            .env("SIGNIN_FAILURES_PER_IP", "1000000000")
            // Every sign-in attempt counts as a failure until its hash says otherwise, so
            // 32 concurrent sign-ins of one account from one address would trip these.
            .env("SIGNIN_FAILURES_PER_ACCOUNT", "1000000000")
            .env("SIGNIN_FAILURES_PER_ACCOUNT_ADDRESS", "1000000000")
            // Quiet, but for the start-up lines that say where it listens.
            .env("RUST_LOG", "warn,authgraph::server=info")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().context("the server exited before listening")??;
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim_end_matches("/graphql").to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok((Self { child, data_dir }, format!("http://{addr}")))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// CPU seconds and peak RSS of a process, from /proc.
struct ProcStats {
    pid: u32,
    /// The embedded PostgreSQL's postmaster, whose children are the backends.
    postmaster: Option<u32>,
}

/// `(parent pid, CPU seconds)` of a process.
fn stat_of(pid: u32) -> Option<(u32, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at ") ".
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((ppid, ticks / clock_ticks()))
}

impl ProcStats {
    fn cpu_seconds(&self) -> f64 {
        stat_of(self.pid).map_or(0.0, |(_, cpu)| cpu)
    }

    /// CPU seconds of the postmaster and all its backends.
    fn postgres_cpu_seconds(&self) -> Option<f64> {
        let postmaster = self.postmaster?;
        let mut total = 0.0;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some((ppid, cpu)) = stat_of(pid)
                && (pid == postmaster || ppid == postmaster)
            {
                total += cpu;
            }
        }
        Some(total)
    }

    /// Resets the peak-RSS mark (needs permission on /proc/PID/clear_refs).
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5");
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// What one connection holds between requests.
#[derive(Default, Clone)]
struct Conn {
    access: String,
    refresh: String,
    user_id: String,
}

#[derive(Default)]
struct Outcome {
    /// Latency in microseconds, per kind of request.
    histograms: BTreeMap<&'static str, Histogram<u64>>,
    errors: u64,
    first_error: Option<String>,
}

struct Bench {
    target: Arc<Target>,
    args: Args,
    seeded: Vec<Conn>,
    proc_stats: Option<ProcStats>,
}

struct Row {
    name: String,
    kind: &'static str,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    errors: u64,
    cpu_ms_per_req: Option<f64>,
    pg_cpu_ms_per_req: Option<f64>,
    peak_rss: Option<f64>,
}

impl Row {
    /// A row of the latencies in `h`, recorded over `elapsed` seconds; the CPU and
    /// memory columns empty, for the caller to fill.
    fn of(name: String, kind: &'static str, h: &Histogram<u64>, elapsed: f64, errors: u64) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Row {
            name,
            kind,
            rps: h.len() as f64 / elapsed,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            errors,
            cpu_ms_per_req: None,
            pg_cpu_ms_per_req: None,
            peak_rss: None,
        }
    }
}

impl Bench {
    async fn seed(&mut self, count: usize) -> anyhow::Result<()> {
        let have = self.seeded.len();
        if have >= count {
            return Ok(());
        }
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let parallel = 8;
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(have));
        for _ in 0..parallel {
            let (target, next) = (self.target.clone(), next.clone());
            tasks.spawn(async move {
                let mut made = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        return anyhow::Ok(made);
                    }
                    let username = format!("bench_u{i}");
                    let res = target.gql(None, SIGNUP, json!({ "u": username, "p": PASSWORD })).await?;
                    let (access, refresh) = match res["data"]["signup"]["accessToken"].as_str() {
                        Some(a) => (a.to_owned(), res["data"]["signup"]["refreshToken"].as_str().unwrap().to_owned()),
                        // Seeded by an earlier run against the same server.
                        None => target.tokens(SIGNIN, json!({ "u": username, "p": PASSWORD }), "signin").await?,
                    };
                    let me = target.gql(Some(&access), "{ me { id } }", json!({})).await?;
                    let user_id = me["data"]["me"]["id"].as_str().context("me")?.to_owned();
                    made.push((i, Conn { access, refresh, user_id }));
                }
            });
        }
        let mut all = Vec::new();
        while let Some(done) = tasks.join_next().await {
            all.extend(done??);
        }
        all.sort_by_key(|(i, _)| *i);
        self.seeded.extend(all.into_iter().map(|(_, c)| c));
        eprintln!("seeded {} accounts in {:.1?}", count - have, started.elapsed());
        Ok(())
    }

    /// Fresh access tokens of the first `count` seeded accounts (seeding them if needed).
    async fn signed_in(&mut self, count: usize) -> anyhow::Result<Vec<String>> {
        self.seed(count).await?;
        let mut tokens = Vec::with_capacity(count);
        for i in 0..count {
            let vars = json!({ "u": format!("bench_u{i}"), "p": PASSWORD });
            tokens.push(self.target.tokens(SIGNIN, vars, "signin").await?.0);
        }
        Ok(tokens)
    }

    /// Runs one scenario and returns a row per kind of request it makes.
    async fn run(&mut self, name: &str) -> anyhow::Result<Vec<Row>> {
        let connections = if name == "mixed_256" { 256 } else { self.args.connections };
        let needs_sessions = matches!(name, "me" | "forged" | "refresh" | "signin_with_me" | "mixed" | "mixed_256");
        if needs_sessions || name == "user" || name == "signin" {
            self.seed(connections.min(256)).await?;
        }
        if name == "signin_many" {
            self.seed(self.args.signin_users).await?;
        }
        // Each connection gets a session of its own where the scenario uses one.
        let mut conns = Vec::with_capacity(connections);
        for c in 0..connections {
            let mut conn = self.seeded.get(c % self.seeded.len().max(1)).cloned().unwrap_or_default();
            if needs_sessions && !self.seeded.is_empty() {
                let username = format!("bench_u{}", c % self.seeded.len());
                let (access, refresh) =
                    self.target.tokens(SIGNIN, json!({ "u": username, "p": PASSWORD }), "signin").await?;
                conn.access = access;
                conn.refresh = refresh;
            }
            conns.push(conn);
        }

        let warmup = self.args.warmup;
        let duration = self.args.duration;
        let recording = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        let seeded_ids: Arc<Vec<String>> = Arc::new(self.seeded.iter().map(|c| c.user_id.clone()).collect());
        let signin_users = self.args.signin_users.min(self.seeded.len()).max(1);
        let run_id = std::process::id();
        let cx = Arc::new(StepCtx {
            target: self.target.clone(),
            scenario: name.to_owned(),
            ids: seeded_ids,
            signin_users,
            run_id,
        });
        for (index, mut conn) in conns.into_iter().enumerate() {
            let (cx, recording, stop) = (cx.clone(), recording.clone(), stop.clone());
            tasks.spawn(async move {
                let mut outcome = Outcome::default();
                let mut iteration = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    iteration += 1;
                    let started = Instant::now();
                    let (kind, result) = step(&cx, index, iteration, &mut conn).await;
                    let micros = started.elapsed().as_micros() as u64;
                    if recording.load(Ordering::Relaxed) {
                        let h = outcome
                            .histograms
                            .entry(kind)
                            .or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap());
                        let _ = h.record(micros.max(1));
                        if let Err(e) = result {
                            outcome.errors += 1;
                            outcome.first_error.get_or_insert(format!("{e:#}"));
                        }
                    }
                }
                outcome
            });
        }
        tokio::time::sleep(warmup).await;
        let cpu_before = self.proc_stats.as_ref().map(ProcStats::cpu_seconds);
        let pg_before = self.proc_stats.as_ref().and_then(ProcStats::postgres_cpu_seconds);
        if let Some(p) = &self.proc_stats {
            p.reset_peak();
        }
        recording.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(duration).await;
        recording.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = match (&self.proc_stats, cpu_before) {
            (Some(p), Some(before)) => Some(p.cpu_seconds() - before),
            _ => None,
        };
        let pg_cpu = match (self.proc_stats.as_ref().and_then(ProcStats::postgres_cpu_seconds), pg_before) {
            (Some(after), Some(before)) => Some(after - before),
            _ => None,
        };
        let peak_rss = self.proc_stats.as_ref().map(ProcStats::peak_rss_mib);
        stop.store(true, Ordering::Relaxed);

        let mut merged: BTreeMap<&'static str, Histogram<u64>> = BTreeMap::new();
        let (mut errors, mut first_error) = (0, None);
        while let Some(done) = tasks.join_next().await {
            let outcome = done?;
            errors += outcome.errors;
            first_error = first_error.or(outcome.first_error);
            for (kind, h) in outcome.histograms {
                merged.entry(kind).or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()).add(&h)?;
            }
        }
        if let Some(e) = first_error {
            eprintln!("{name}: {errors} errors, first: {e}");
        }
        let total: u64 = merged.values().map(Histogram::len).sum();
        Ok(merged
            .iter()
            .map(|(kind, h)| Row {
                cpu_ms_per_req: cpu.map(|c| c * 1000.0 / total.max(1) as f64),
                pg_cpu_ms_per_req: pg_cpu.map(|c| c * 1000.0 / total.max(1) as f64),
                peak_rss,
                ..Row::of(format!("{name} ({connections})"), kind, h, elapsed, errors)
            })
            .collect())
    }
}

/// What every connection of a scenario shares.
struct StepCtx {
    target: Arc<Target>,
    scenario: String,
    /// Ids of the seeded accounts, for `user(id)`.
    ids: Arc<Vec<String>>,
    signin_users: usize,
    run_id: u32,
}

/// One request of a scenario. Returns the kind of request made (rows are reported
/// per kind) and whether it got the expected answer.
async fn step(cx: &StepCtx, index: usize, iteration: u64, conn: &mut Conn) -> (&'static str, anyhow::Result<()>) {
    let (target, scenario, ids, signin_users, run_id) =
        (&*cx.target, cx.scenario.as_str(), &cx.ids[..], cx.signin_users, cx.run_id);
    let expect_data = |res: anyhow::Result<Value>, field: &str| -> anyhow::Result<Value> {
        let res = res?;
        if res["errors"].is_array() || res["data"][field].is_null() {
            bail!("{field}: {res}");
        }
        Ok(res)
    };
    let kind: &'static str = match scenario {
        "mixed" | "mixed_256" => match iteration % 50 {
            0 => "signin",
            1..=4 => "refresh",
            n if n % 2 == 0 => "me",
            _ => "users",
        },
        "signin_with_me" => {
            if index.is_multiple_of(2) {
                "signin"
            } else {
                "me"
            }
        }
        // One connection in eight signs in while the rest sign up as fast as answered:
        // the sign-ins' latency shows the hashing queue's fairness; the sign-ups'
        // errors are the queue's bound refusing the excess (SERVICE_UNAVAILABLE).
        "signin_during_signups" => {
            if index.is_multiple_of(8) {
                "signin"
            } else {
                "signup"
            }
        }
        "signin_many" => "signin",
        other => match other {
            "floor" => "floor",
            "me" => "me",
            "users" => "users",
            "user" => "user",
            "forged" => "forged",
            "refresh" => "refresh",
            "signin" => "signin",
            "signup" => "signup",
            _ => "unknown",
        },
    };
    let result = match kind {
        "floor" => expect_data(target.gql(None, FLOOR, json!({})).await, "__typename").map(drop),
        "me" => expect_data(target.gql(Some(&conn.access), ME, json!({})).await, "me").map(drop),
        "users" => expect_data(target.gql(None, USERS, json!({})).await, "users").map(drop),
        "user" => {
            let id = &ids[(iteration as usize + index) % ids.len()];
            expect_data(target.gql(None, USER, json!({ "id": id })).await, "user").map(drop)
        }
        "forged" => {
            let forged = format!("{}x", &conn.access[..conn.access.len() - 1]);
            match target.gql(Some(&forged), ME, json!({})).await {
                Ok(res) if res["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED" => Ok(()),
                Ok(res) => Err(anyhow::anyhow!("forged token not refused: {res}")),
                Err(e) => Err(e),
            }
        }
        "refresh" => match expect_data(target.gql(None, REFRESH, json!({ "t": conn.refresh })).await, "refresh") {
            Ok(res) => {
                conn.access = res["data"]["refresh"]["accessToken"].as_str().unwrap_or_default().to_owned();
                conn.refresh = res["data"]["refresh"]["refreshToken"].as_str().unwrap_or_default().to_owned();
                Ok(())
            }
            Err(e) => Err(e),
        },
        "signin" => {
            let user = if scenario == "signin_many" { (iteration as usize * 7919 + index) % signin_users } else { 0 };
            let vars = json!({ "u": format!("bench_u{user}"), "p": PASSWORD });
            expect_data(target.gql(None, SIGNIN, vars).await, "signin").map(drop)
        }
        "signup" => {
            // Each scenario that signs up gets its own names.
            let tag = if scenario == "signup" { 'a' } else { 'b' };
            let vars = json!({ "u": format!("s{run_id}{tag}{index}_{iteration}"), "p": PASSWORD });
            expect_data(target.gql(None, SIGNUP, vars).await, "signup").map(drop)
        }
        _ => Err(anyhow::anyhow!("unknown scenario {scenario}")),
    };
    (kind, result)
}

/// `pgbench -S -M prepared` against the cluster the server uses: PostgreSQL's own
/// primary-key select rate with the same number of clients.
fn pgbench(data_dir: &std::path::Path, clients: usize, duration: Duration) -> anyhow::Result<f64> {
    let bin = authgraph::embedded_postgres::find_bin_dir()?.join("pgbench");
    let url = authgraph::embedded_postgres::EmbeddedPostgres::running_url(data_dir, "pgbench")?;
    let admin = authgraph::embedded_postgres::EmbeddedPostgres::running_url(data_dir, "postgres")?;
    tokio::runtime::Runtime::new()?.block_on(authgraph::db::create_database(&admin, "pgbench", None))?;
    let init = Command::new(&bin).args(["-i", "-q", "-s", "10", &url]).output()?;
    anyhow::ensure!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    let run = Command::new(&bin)
        .args([
            "-S",
            "-M",
            "prepared",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &duration.as_secs().max(1).to_string(),
            &url,
        ])
        .output()?;
    let out = String::from_utf8_lossy(&run.stdout);
    out.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("cannot read pgbench output: {out}{}", String::from_utf8_lossy(&run.stderr)))
}

/// Seeds `n` accounts, each with one live session and its refresh token, in one
/// transaction of set-based SQL through `psql`. Triggers are off while it runs (no
/// notification per row, no count per row: the count is set once at the end). The accounts are
/// older than the harness's own, so `users(first: 20)` pages through seeded rows.
fn seed_large(data_dir: &std::path::Path, n: u64) -> anyhow::Result<Duration> {
    let psql = authgraph::embedded_postgres::find_bin_dir()?.join("psql");
    let url = authgraph::embedded_postgres::EmbeddedPostgres::running_url(data_dir, "authgraph")?;
    let sql = format!(
        "BEGIN;
         SET LOCAL session_replication_role = replica;
         INSERT INTO users (name, username, password_hash, created_at, updated_at)
           SELECT 'Seeded ' || i, 'seeded_' || i,
                  '$argon2id$v=19$m=19456,t=2,p=1$c2VlZGVkc2VlZGVk$0000000000000000000000000000000000000000000',
                  now() - interval '400 days' + i * interval '10 ms', now()
           FROM generate_series(1, {n}) AS i;
         INSERT INTO sessions (user_id, expires_at, max_expires_at, user_agent)
           SELECT id, now() + interval '7 days', now() + interval '30 days', 'seeded'
           FROM users WHERE username LIKE 'seeded%';
         INSERT INTO refresh_tokens (session_id, token_hash, expires_at)
           SELECT id, sha256(id::text::bytea), now() + interval '7 days' FROM sessions WHERE user_agent = 'seeded';
         UPDATE user_count SET total = (SELECT count(*) FROM users);
         COMMIT;"
    );
    let started = Instant::now();
    // Then as a database in steady state would be: vacuumed and analyzed (else
    // autovacuum's pass over the new rows would be measured as the scenarios' cost),
    // and checkpointed.
    let mut args = vec!["-v", "ON_ERROR_STOP=1", "-q", &url, "-c", &sql];
    for then in ["VACUUM ANALYZE users", "VACUUM ANALYZE sessions", "VACUUM ANALYZE refresh_tokens", "CHECKPOINT"] {
        args.extend(["-c", then]);
    }
    let out = Command::new(psql).args(args).output()?;
    anyhow::ensure!(out.status.success(), "seeding: {}", String::from_utf8_lossy(&out.stderr));
    Ok(started.elapsed())
}

/// Switches the audit trail's triggers on or off (the rows of sign-ins, session ends
/// and account changes), for `--trail-comparison`.
fn set_trail(data_dir: &std::path::Path, on: bool) -> anyhow::Result<()> {
    let psql = authgraph::embedded_postgres::find_bin_dir()?.join("psql");
    let url = authgraph::embedded_postgres::EmbeddedPostgres::running_url(data_dir, "authgraph")?;
    let verb = if on { "ENABLE" } else { "DISABLE" };
    let sql = format!(
        "ALTER TABLE sessions {verb} TRIGGER sessions_audited_start, {verb} TRIGGER sessions_audited_end;
         ALTER TABLE users {verb} TRIGGER users_audited, {verb} TRIGGER users_audited_insert;"
    );
    let out = Command::new(psql).args(["-v", "ON_ERROR_STOP=1", "-q", &url, "-c", &sql]).output()?;
    anyhow::ensure!(out.status.success(), "switching the trail: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Each compared scenario's rate with and without the trail (the mean of its rounds).
fn print_trail(rows: &[(bool, Row)]) {
    println!(
        "\n| scenario | request | req/s with the trail | req/s without | with / without | p50 ms with | p50 ms without |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (_, row) in rows {
        let key = (row.name.as_str(), row.kind);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let of = |on: bool| -> Vec<&Row> {
            rows.iter().filter(|(o, r)| *o == on && (r.name.as_str(), r.kind) == key).map(|(_, r)| r).collect()
        };
        let mean = |rs: &[&Row], f: fn(&Row) -> f64| rs.iter().map(|r| f(r)).sum::<f64>() / rs.len().max(1) as f64;
        let (with, without) = (of(true), of(false));
        let (rps_with, rps_without) = (mean(&with, |r| r.rps), mean(&without, |r| r.rps));
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.1}% | {:.2} | {:.2} |",
            key.0,
            key.1,
            rps_with,
            rps_without,
            100.0 * rps_with / rps_without,
            mean(&with, |r| r.p50),
            mean(&without, |r| r.p50)
        );
    }
}

/// One argon2id hash and verification with the server's default parameters, on one
/// core (the server runs one per core at a time).
fn argon2_reference() -> anyhow::Result<(f64, f64)> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let config = authgraph::config::Config::defaults();
        let hasher = authgraph::auth::password::PasswordHasher::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            config.argon2_queue_limit,
        )?;
        let ticket = authgraph::auth::password::Ticket::new(authgraph::auth::password::Lane::Signin, None);
        let password = secrecy::SecretString::from(PASSWORD);
        let hash = hasher.hash(ticket, &password).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let (runs, start) = (10, Instant::now());
        for _ in 0..runs {
            hasher.hash(ticket, &password).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        let hash_s = start.elapsed().as_secs_f64() / f64::from(runs);
        let start = Instant::now();
        for _ in 0..runs {
            hasher.verify(ticket, &password, Some(&hash)).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        Ok((hash_s, start.elapsed().as_secs_f64() / f64::from(runs)))
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (server, base) = match &args.url {
        Some(url) => (None, url.trim_end_matches('/').to_owned()),
        None => {
            let (server, base) = Server::start(&args.server_bin)?;
            (Some(server), base)
        }
    };
    eprintln!("benchmarking {base} with {} connections, {:?} per scenario", args.connections, args.duration);

    let (hash_s, verify_s) = argon2_reference()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(512).build(connector);
    let target = Arc::new(Target { client, graphql: format!("{base}/graphql") });
    let proc_stats = server.as_ref().map(|s| {
        let pid_file = s.data_dir.path().join("postgres/postmaster.pid");
        let postmaster = std::fs::read_to_string(pid_file).ok().and_then(|t| t.lines().next()?.trim().parse().ok());
        ProcStats { pid: s.pid(), postmaster }
    });
    let scenarios = args.scenarios.clone();
    let (large, large_scenarios) = (args.large, args.large_scenarios.clone());
    anyhow::ensure!(large == 0 || server.is_some(), "--large needs the server this harness starts, not --url");
    let (duration, connections, no_pgbench) = (args.duration, args.connections, args.no_pgbench);
    let mut bench = Bench { target, args, seeded: Vec::new(), proc_stats };
    let mut rows = Vec::new();
    runtime.block_on(async {
        // Wait until the server answers.
        let start = Instant::now();
        while bench.target.gql(None, FLOOR, json!({})).await.is_err() {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "the server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for name in &scenarios {
            eprintln!("running {name}");
            if name == "passkey_signin" {
                let (target, stats) = (bench.target.clone(), bench.proc_stats.as_ref());
                let cpu = || stats.map(ProcStats::cpu_seconds);
                let (warmup, duration) = (bench.args.warmup, bench.args.duration);
                rows.push(passkeys::measure(target, bench.args.connections, warmup, duration, cpu).await?);
                continue;
            }
            rows.extend(bench.run(name).await?);
        }
        anyhow::Ok(())
    })?;
    let mut large_rows = Vec::new();
    if let Some(server) = server.as_ref().filter(|_| large > 0) {
        eprintln!("seeding {large} accounts, sessions and refresh tokens");
        let took = seed_large(server.data_dir.path(), large)?;
        eprintln!("seeded in {took:.1?}");
        runtime.block_on(async {
            for name in &large_scenarios {
                eprintln!("running {name} on the large database");
                large_rows.extend(bench.run(name).await?);
            }
            anyhow::Ok(())
        })?;
    }
    // With and without the trail: on, off, on, off, each scenario in each.
    let mut trail_rows: Vec<(bool, Row)> = Vec::new();
    let compared: Vec<String> = bench.args.trail_comparison.iter().filter(|s| !s.is_empty()).cloned().collect();
    if let Some(server) = server.as_ref().filter(|_| !compared.is_empty()) {
        for on in [true, false, true, false] {
            set_trail(server.data_dir.path(), on)?;
            runtime.block_on(async {
                for name in &compared {
                    eprintln!("running {name} with the trail {}", if on { "on" } else { "off" });
                    trail_rows.extend(bench.run(name).await?.into_iter().map(|row| (on, row)));
                }
                anyhow::Ok(())
            })?;
        }
        set_trail(server.data_dir.path(), true)?;
    }
    let mut event_rows = Vec::new();
    if let Some(server) = server.as_ref().filter(|_| bench.args.events > 0) {
        let (count, subscriptions) = (bench.args.events, bench.args.event_subscriptions);
        eprintln!("measuring {count} session events, alone and beside {subscriptions} subscriptions");
        event_rows = runtime.block_on(async {
            let accounts = bench.signed_in(1 + subscriptions.div_ceil(50)).await?;
            let ws_url = format!("{}/graphql", base.replacen("http://", "ws://", 1));
            let stats = bench.proc_stats.as_ref().context("the server's /proc entry")?;
            events::measure(&ws_url, server.data_dir.path(), || stats.cpu_seconds(), &accounts, count, subscriptions)
                .await
        })?;
    }
    drop(runtime);

    let pg_tps = match (&server, no_pgbench) {
        (Some(server), false) => Some(pgbench(server.data_dir.path(), connections, duration)?),
        _ => None,
    };
    let floor = rows.iter().find(|r| r.kind == "floor").map(|r| r.rps);
    let signin_limit = cores as f64 / verify_s;

    println!(
        "\n| scenario | request | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU ms/req | PostgreSQL CPU ms/req | server peak RSS MiB | ratio |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        let ratio = match r.kind {
            "signin" | "signup" => format!("{:.0}% of cores/verify", 100.0 * r.rps / signin_limit),
            // Its CPU against one argon2id verification, the cost it replaces.
            "passkey_signin" => r
                .cpu_ms_per_req
                .map(|c| format!("server CPU {:.2} verify", c / (verify_s * 1000.0)))
                .unwrap_or_default(),
            "floor" => pg_tps.map(|t| format!("{:.0}% of pgbench", 100.0 * r.rps / t)).unwrap_or_default(),
            _ => match (pg_tps, floor) {
                (Some(t), Some(f)) => {
                    format!("{:.0}% of pgbench, {:.0}% of floor", 100.0 * r.rps / t, 100.0 * r.rps / f)
                }
                (Some(t), None) => format!("{:.0}% of pgbench", 100.0 * r.rps / t),
                (None, Some(f)) => format!("{:.0}% of floor", 100.0 * r.rps / f),
                (None, None) => String::new(),
            },
        };
        let opt = |v: Option<f64>, p: usize| v.map(|v| format!("{v:.p$}")).unwrap_or_else(|| "-".into());
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {} |",
            r.name,
            r.kind,
            r.rps,
            r.p50,
            r.p90,
            r.p99,
            r.max,
            r.errors,
            opt(r.cpu_ms_per_req, 3),
            opt(r.pg_cpu_ms_per_req, 3),
            opt(r.peak_rss, 1),
            ratio
        );
    }
    println!("\nReferences measured in this run:");
    match pg_tps {
        Some(t) => println!("- pgbench -S -M prepared, {connections} clients, same cluster: {t:.0} tps"),
        None => println!("- pgbench: skipped"),
    }
    println!(
        "- argon2id (server defaults), one core: hash {:.1} ms, verify {:.1} ms → sign-in limit {cores} cores / verify = {signin_limit:.1}/s",
        hash_s * 1000.0,
        verify_s * 1000.0
    );
    if let Some(f) = floor {
        println!("- GraphQL floor ({{ __typename }}): {f:.0} req/s");
    }
    if !large_rows.is_empty() {
        print_large(&rows, &large_rows, large);
    }
    if !trail_rows.is_empty() {
        print_trail(&trail_rows);
    }
    if let [alone, beside, ..] = &event_rows[..] {
        println!("\n| session events | subscriptions of other accounts | server CPU ms/event | ratio to alone |");
        println!("|---:|---:|---:|---:|");
        for row in [alone, beside] {
            println!(
                "| {} | {} | {:.3} | {:.2} |",
                row.events,
                row.subscriptions,
                row.server_cpu_ms_per_event,
                row.server_cpu_ms_per_event / alone.server_cpu_ms_per_event.max(f64::EPSILON)
            );
        }
    }
    Ok(())
}

/// Each scenario's CPU per request (server + PostgreSQL) on the large database next to
/// the small one's.
fn print_large(small: &[Row], large: &[Row], n: u64) {
    println!("\nWith {n} more accounts, each with a live session and a refresh token:\n");
    println!(
        "| scenario | request | req/s small | req/s large | CPU ms/req small (server + PostgreSQL) | CPU ms/req large | change |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let cpu = |r: &Row| r.cpu_ms_per_req.unwrap_or(0.0) + r.pg_cpu_ms_per_req.unwrap_or(0.0);
    for big in large {
        let Some(base) = small.iter().find(|r| r.name == big.name && r.kind == big.kind) else {
            println!("| {} | {} | - | {:.0} | - | {:.3} | - |", big.name, big.kind, big.rps, cpu(big));
            continue;
        };
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.3} ({:.3} + {:.3}) | {:.3} ({:.3} + {:.3}) | {:+.0}% |",
            big.name,
            big.kind,
            base.rps,
            big.rps,
            cpu(base),
            base.cpu_ms_per_req.unwrap_or(0.0),
            base.pg_cpu_ms_per_req.unwrap_or(0.0),
            cpu(big),
            big.cpu_ms_per_req.unwrap_or(0.0),
            big.pg_cpu_ms_per_req.unwrap_or(0.0),
            100.0 * (cpu(big) / cpu(base).max(1e-9) - 1.0)
        );
    }
}
