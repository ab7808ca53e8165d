//! A pg_auto_failover formation on loopback, made by the test: a monitor, a primary
//! and a synchronous standby (Debian's `postgresql-15-auto-failover`), every process
//! run as the cluster's OS user with its configuration kept in the test's folder.
//!
//! The monitor's health checks and the nodes' partition timeout are shortened (see
//! `FAST_DETECTION`) so that a crashed primary is replaced in about ten seconds, not the
//! better part of a minute of the defaults; docs/production.md names the same settings.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{free_port, give_to_pg_os_user, pg_os_user, pg_os_user_ids};

/// The monitor's settings for a fast failover after a crash (pg_auto_failover's defaults
/// in parentheses):
/// a node is checked every second and unhealthy after 3 s without a report (20 s), and
/// a primary that cannot be reached is given 5 s to demote itself (30 s), which must
/// exceed the nodes' `timeout.network_partition_timeout` (set to 3 s, from 20 s).
const FAST_DETECTION: [(&str, &str); 5] = [
    ("pgautofailover.health_check_period", "1000"),
    ("pgautofailover.health_check_timeout", "1000"),
    ("pgautofailover.health_check_max_retries", "1"),
    ("pgautofailover.node_considered_unhealthy_timeout", "3000"),
    ("pgautofailover.primary_demote_timeout", "5000"),
];
const NETWORK_PARTITION_TIMEOUT: &str = "3";

/// One node's line of `pg_autoctl show state`.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub name: String,
    pub port: u16,
    pub current: String,
    pub assigned: String,
}

struct Node {
    port: u16,
    pgdata: PathBuf,
    keeper: Option<Child>,
}

pub struct Formation {
    dir: tempfile::TempDir,
    monitor_port: u16,
    monitor: Option<Child>,
    nodes: Vec<Node>,
}

impl Formation {
    /// A monitor, node1 as primary and node2 as its synchronous standby, on database
    /// `app`; returns once both report those states.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("authgraph-failover-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        give_to_pg_os_user(dir.path());
        let mut formation = Self { dir, monitor_port: free_port(), monitor: None, nodes: Vec::new() };
        let monitor = formation.path("monitor");
        let port = formation.monitor_port.to_string();
        formation.autoctl(&[
            "create",
            "monitor",
            "--pgdata",
            &monitor,
            "--pgport",
            &port,
            "--hostname",
            "127.0.0.1",
            "--auth",
            "trust",
            "--no-ssl",
        ]);
        formation.autoctl(&["config", "set", "--pgdata", &monitor, "postgresql.listen_addresses", "127.0.0.1"]);
        formation.monitor = Some(formation.keeper(&monitor, "monitor"));
        formation.wait("the monitor to answer", Duration::from_secs(60), |f| {
            f.try_psql(f.monitor_port, "pg_auto_failover", "SELECT 1").is_some()
        });
        for (name, value) in FAST_DETECTION {
            formation.psql(formation.monitor_port, "pg_auto_failover", &format!("ALTER SYSTEM SET {name} = {value}"));
        }
        formation.psql(formation.monitor_port, "pg_auto_failover", "SELECT pg_reload_conf()");

        formation.add_node("node1");
        formation.wait("node1 to be single", Duration::from_secs(60), |f| {
            f.states().iter().any(|s| s.name == "node1" && s.current == "single")
        });
        formation.add_node("node2");
        formation.wait_stable(Duration::from_secs(90));
        formation
    }

    fn add_node(&mut self, name: &str) {
        let pgdata = self.path(name);
        let port = free_port();
        let monitor_uri =
            format!("postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable", self.monitor_port);
        self.autoctl(&[
            "create",
            "postgres",
            "--pgdata",
            &pgdata,
            "--pgport",
            &port.to_string(),
            "--listen",
            "127.0.0.1",
            "--hostname",
            "127.0.0.1",
            "--name",
            name,
            "--auth",
            "trust",
            "--no-ssl",
            "--monitor",
            &monitor_uri,
            "--dbname",
            "app",
        ]);
        self.autoctl(&[
            "config",
            "set",
            "--pgdata",
            &pgdata,
            "timeout.network_partition_timeout",
            NETWORK_PARTITION_TIMEOUT,
        ]);
        let keeper = self.keeper(&pgdata, name);
        self.nodes.push(Node { port, pgdata: PathBuf::from(pgdata), keeper: Some(keeper) });
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// `pg_autoctl` as the cluster's user, its configuration under the test's folder.
    fn command(&self) -> Command {
        let mut cmd = Command::new("pg_autoctl");
        let bin = authgraph::embedded_postgres::find_bin_dir().unwrap();
        let root = self.dir.path();
        cmd.env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("HOME", root)
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("XDG_DATA_HOME", root.join("share"))
            .env("XDG_RUNTIME_DIR", root.join("run"))
            .env("PGHOST", "127.0.0.1")
            .env("LC_ALL", "C")
            .current_dir(root)
            .stdin(Stdio::null());
        if unsafe { libc::geteuid() } == 0 {
            let (uid, gid) = pg_os_user_ids();
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn autoctl(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("pg_autoctl runs (apt-get install pg-auto-failover-cli)");
        assert!(
            out.status.success(),
            "pg_autoctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `pg_autoctl run` for `pgdata` in a process group of its own (so a crash can take
    /// the keeper and the postgres it started at once), logging to `<log>.log`.
    fn keeper(&self, pgdata: &str, log: &str) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("{log}.log"))).unwrap();
        self.command()
            .args(["run", "--pgdata", pgdata])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap()
    }

    /// The formation's nodes as the monitor sees them.
    pub fn states(&self) -> Vec<NodeState> {
        let out = self.command().args(["show", "state", "--pgdata", &self.path("monitor"), "--json"]).output().unwrap();
        let Ok(list) = serde_json::from_slice::<Vec<Value>>(&out.stdout) else { return Vec::new() };
        list.iter()
            .map(|n| NodeState {
                name: n["nodename"].as_str().unwrap_or_default().to_owned(),
                port: n["nodeport"].as_u64().unwrap_or_default() as u16,
                current: n["current_group_state"].as_str().unwrap_or_default().to_owned(),
                assigned: n["assigned_group_state"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// The port of the node that is primary now and has a standby.
    pub fn primary(&self) -> u16 {
        self.states().into_iter().find(|s| s.current == "primary" && s.assigned == "primary").expect("a primary").port
    }

    /// Waits until one node is primary and another secondary, both settled.
    pub fn wait_stable(&self, timeout: Duration) {
        self.wait("a primary and a secondary", timeout, |f| {
            let states = f.states();
            let settled = |state: &str| states.iter().any(|s| s.current == state && s.assigned == state);
            settled("primary") && settled("secondary")
        });
    }

    pub fn wait(&self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(start.elapsed() < timeout, "waited {timeout:?} for {what}: {:?}\n{}", self.states(), self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The keepers' logs, for a failure's message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["monitor", "node1", "node2"] {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            text.push_str(&format!("--- {name}\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        text
    }

    /// What `pg_autoctl show uri` gives applications, with the user this test connects
    /// as: `postgres://postgres@127.0.0.1:P1,127.0.0.1:P2/app?target_session_attrs=read-write&sslmode=prefer`.
    pub fn url(&self) -> String {
        let uri = self.autoctl(&["show", "uri", "--pgdata", &self.path("monitor"), "--formation", "default"]);
        uri.trim().replacen("postgres://", "postgres://postgres@", 1)
    }

    /// A planned switchover: `pg_autoctl perform failover`, which returns once the
    /// standby is primary.
    pub fn perform_failover(&self) {
        self.autoctl(&["perform", "failover", "--pgdata", &self.path("monitor")]);
    }

    /// Crashes the node on `port` whole, as a machine that lost power: its keeper and
    /// its postgres (postmaster and backends) are killed with SIGKILL at once.
    pub fn crash(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).expect("a node on that port");
        let mut pids = Vec::new();
        if let Some(keeper) = &node.keeper {
            pids.push(-(keeper.id() as i32));
        }
        if let Some(postmaster) = postmaster_pid(&node.pgdata) {
            pids.push(postmaster);
            pids.extend(children_of(postmaster));
        }
        for pid in pids {
            // SAFETY: signalling processes this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(mut keeper) = node.keeper.take() {
            let _ = keeper.wait();
        }
    }

    /// `psql -At` on a node or the monitor; panics on failure.
    pub fn psql(&self, port: u16, db: &str, sql: &str) -> String {
        self.try_psql(port, db, sql).unwrap_or_else(|| panic!("psql on {port}: {sql}"))
    }

    pub fn try_psql(&self, port: u16, db: &str, sql: &str) -> Option<String> {
        let out = authgraph::embedded_postgres::cluster_command("psql", &pg_os_user())
            .unwrap()
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", db, "-Atq", "-c", sql])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        for port in ports {
            self.crash(port);
        }
        if let Some(mut monitor) = self.monitor.take() {
            unsafe { libc::kill(-(monitor.id() as i32), libc::SIGKILL) };
            let _ = monitor.wait();
        }
        if let Some(postmaster) = postmaster_pid(&self.dir.path().join("monitor")) {
            unsafe { libc::kill(postmaster, libc::SIGKILL) };
            for child in children_of(postmaster) {
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
        }
    }
}

fn postmaster_pid(pgdata: &Path) -> Option<i32> {
    std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// The processes whose parent is `pid` (a postmaster's backends are in sessions of
/// their own, out of its process group).
fn children_of(pid: i32) -> Vec<i32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The fields after the command's closing parenthesis: state, then the parent.
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if parent == Some(pid) {
            children.push(child);
        }
    }
    children
}
