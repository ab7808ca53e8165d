//! A private PostgreSQL cluster run from the machine's installed binaries.
//!
//! Why our own module instead of a crate: `postgresql_embedded` downloads or unpacks
//! its own build, refuses to run as root and pulls reqwest and sqlx into the build
//! (minutes on a small machine); `pgtemp` needs `sudo` to run as another user. What we
//! need is small: find `initdb`/`pg_ctl`, run them as an unprivileged OS user when we
//! are root, listen only on a Unix socket in a folder we own, and make sure the
//! cluster never outlives us.
//!
//! That last point is handled by a *watchdog*: a tiny shell process that holds the
//! read end of a pipe whose write end only this process has. When this process exits
//! for any reason (clean exit, panic, `kill -9`), the kernel closes the write end, the
//! watchdog reads EOF, stops the postmaster (root or the owner may signal it) and,
//! for throwaway clusters, removes the folder. A clean shutdown stops the cluster
//! itself first and then waits for the watchdog.
//!
//! Layout under the root folder (`DATA_DIR`):
//! - `postgres/` the cluster (owned by the PostgreSQL OS user, mode 0700)
//! - `run/` the Unix socket folder (same owner, 0700): no TCP port, nothing to collide
//! - `authgraph.lock` an advisory lock, so two servers never share one cluster

use std::{
    ffi::CString,
    fs::{self, File},
    io::Write,
    os::unix::{
        fs::{PermissionsExt, chown},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
};

use anyhow::{Context, bail};

/// Superuser created by `initdb`; the cluster trusts local connections because only
/// its owner (and root) can open the socket folder.
const SUPERUSER: &str = "authgraph";
/// Port number only names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;
/// Longest Unix socket path the kernel accepts, less the socket file's own name.
const MAX_SOCKET_DIR_LEN: usize = 107 - ".s.PGSQL.5432".len() - 1;

/// How to start the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Folder holding the cluster, the socket folder and the lock.
    pub root: PathBuf,
    /// OS user to run PostgreSQL as when this process is root.
    pub os_user: String,
    /// Remove `root` entirely when the cluster stops (tests).
    pub remove_on_exit: bool,
    /// Trade durability for speed (`fsync=off`): for throwaway test clusters only.
    pub unsafe_fast: bool,
    /// Load `pg_stat_statements` (the tests count the statements a request runs).
    pub statement_stats: bool,
}

/// A running cluster. Dropping it stops the cluster (through the watchdog).
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    cluster_dir: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    watchdog: Option<(Child, ChildStdin)>,
    _lock: File,
}

impl std::fmt::Debug for EmbeddedPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPostgres")
            .field("cluster_dir", &self.cluster_dir)
            .field("socket_dir", &self.socket_dir)
            .finish()
    }
}

impl EmbeddedPostgres {
    /// Initialises the cluster if needed and starts it. Blocking: call it from
    /// `spawn_blocking` or before the runtime starts.
    pub fn start(opts: &Options) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir()?;
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(lookup_user(&opts.os_user).with_context(|| {
                format!("PostgreSQL refuses to run as root, and OS user {:?} (PG_OS_USER) was not found", opts.os_user)
            })?)
        } else {
            None
        };

        fs::create_dir_all(&opts.root).with_context(|| format!("cannot create DATA_DIR {}", opts.root.display()))?;
        let root = fs::canonicalize(&opts.root)?;
        if run_as.is_some() {
            // The PostgreSQL user must be able to pass through DATA_DIR, not list it: the
            // generated JWT secret lives here too, readable by root only.
            let mode = fs::metadata(&root)?.permissions().mode();
            fs::set_permissions(&root, fs::Permissions::from_mode(mode | 0o111))?;
        }

        let lock = File::create(root.join("authgraph.lock"))?;
        if lock.try_lock().is_err() {
            bail!(
                "DATA_DIR {} is in use by another authgraph process; stop it or use another DATA_DIR",
                root.display()
            );
        }

        let cluster_dir = root.join("postgres");
        let socket_dir = root.join("run");
        if socket_dir.as_os_str().len() > MAX_SOCKET_DIR_LEN {
            bail!(
                "DATA_DIR {} is too long for a Unix socket path ({} bytes at most); use a shorter DATA_DIR",
                root.display(),
                MAX_SOCKET_DIR_LEN - "/run".len()
            );
        }
        make_private_dir(&socket_dir, run_as)?;

        let pg = Self { bin_dir, cluster_dir, socket_dir, run_as, watchdog: None, _lock: lock };
        pg.init_if_needed()?;
        pg.write_settings(opts)?;
        let mut pg = pg;
        // A cluster still running here was left by a run that died without its
        // watchdog; we hold the lock, so nobody uses it. Restart it with our settings.
        if pg.is_running() {
            tracing::warn!("stopping a PostgreSQL left running by an earlier run");
            pg.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])?;
        }
        pg.watchdog = Some(spawn_watchdog(&pg.cluster_dir, &root, opts.remove_on_exit)?);
        let log = pg.cluster_dir.join("server.log");
        pg.pg_ctl(&["start", "-w", "-t", "60", "-l", path_str(&log)?])
            .with_context(|| format!("PostgreSQL did not start; see {}", log.display()))?;
        Ok(pg)
    }

    /// URL of `database` on this cluster, over the Unix socket.
    pub fn url(&self, database: &str) -> String {
        socket_url(&self.socket_dir, database)
    }

    /// Whether a running authgraph holds the cluster under `root` (its lock is taken).
    /// Tools then use that cluster through its socket instead of starting their own.
    pub fn held_by_server(root: &Path) -> bool {
        let Ok(file) = fs::OpenOptions::new().write(true).open(root.join("authgraph.lock")) else {
            return false;
        };
        file.try_lock().is_err()
    }

    /// URL of `database` on the cluster under `root`, started by another process.
    pub fn running_url(root: &Path, database: &str) -> anyhow::Result<String> {
        Ok(socket_url(&fs::canonicalize(root)?.join("run"), database))
    }

    /// Stops the cluster and waits for it, then lets the watchdog finish (removing the
    /// folder of a throwaway cluster).
    pub fn stop(mut self) -> anyhow::Result<()> {
        let result = self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"]);
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
        result
    }

    fn init_if_needed(&self) -> anyhow::Result<()> {
        let version_file = self.cluster_dir.join("PG_VERSION");
        if version_file.exists() {
            let data_major = fs::read_to_string(&version_file)?.trim().to_owned();
            let bin_major = self.bin_major()?;
            if data_major != bin_major {
                bail!(
                    "{} was made by PostgreSQL {data_major}, but the binaries found ({}) are version {bin_major}; \
                     install PostgreSQL {data_major} or move the folder away",
                    self.cluster_dir.display(),
                    self.bin_dir.display()
                );
            }
            return Ok(());
        }
        // initdb into a side folder and rename: a crash mid-initdb never leaves a
        // half-made cluster where the next start would trust it.
        let staging = self.cluster_dir.with_extension("initdb");
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        make_private_dir(&staging, self.run_as)?;
        let out = self
            .command("initdb")
            .args(["-D", path_str(&staging)?])
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-instructions"])
            .output()
            .context("cannot run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let mut conf = fs::OpenOptions::new().append(true).open(staging.join("postgresql.conf"))?;
        writeln!(conf, "\n# Settings written by authgraph at each start.\ninclude_if_exists = 'authgraph.conf'")?;
        fs::rename(&staging, &self.cluster_dir)?;
        Ok(())
    }

    /// Rewritten at every start, so a moved DATA_DIR still finds its socket.
    fn write_settings(&self, opts: &Options) -> anyhow::Result<()> {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let mut conf = format!(
            "listen_addresses = ''\nunix_socket_directories = {}\nunix_socket_permissions = 0700\nport = {PORT}\n",
            quote(path_str(&self.socket_dir)?)
        );
        if opts.unsafe_fast {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        if opts.statement_stats {
            conf.push_str("shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track_utility = on\n");
        }
        let path = self.cluster_dir.join("authgraph.conf");
        fs::write(&path, conf)?;
        if let Some((uid, gid)) = self.run_as {
            chown(&path, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.cluster_dir.join("postmaster.pid").exists()
            && self
                .command("pg_ctl")
                .args(["status", "-D"])
                .arg(&self.cluster_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let out =
            self.command("pg_ctl").arg("-D").arg(&self.cluster_dir).args(args).output().context("cannot run pg_ctl")?;
        if !out.status.success() {
            bail!(
                "pg_ctl {} failed: {}{}",
                args[0],
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn bin_major(&self) -> anyhow::Result<String> {
        let out = self.command("postgres").arg("--version").output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "postgres (PostgreSQL) 15.18 (Debian ...)"
        let version = text.split_whitespace().nth(2).context("cannot read postgres --version")?;
        Ok(version.split('.').next().unwrap_or(version).to_owned())
    }

    /// A command for one of the PostgreSQL binaries, run as the PostgreSQL OS user
    /// when we are root.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.stdin(Stdio::null()).current_dir("/");
        // Locale variables naming a locale that is not installed make initdb fail.
        cmd.env("LC_ALL", "C").env_remove("PGDATA");
        // std drops root's supplementary groups when it switches the uid.
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// The watchdog described in the module docs. It runs as the current user in its own
/// process group, so a terminal's Ctrl-C reaches the server (which shuts down
/// cleanly) but not the watchdog.
fn spawn_watchdog(cluster_dir: &Path, root: &Path, remove: bool) -> anyhow::Result<(Child, ChildStdin)> {
    const SCRIPT: &str = r#"
cat >/dev/null
pidfile="$1/postmaster.pid"
if [ -f "$pidfile" ]; then
  pid=$(head -n 1 "$pidfile")
  if [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; then
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
  fi
fi
if [ "$3" = 1 ]; then rm -rf "$2"; fi
"#;
    let mut child = Command::new("/bin/sh")
        .args(["-c", SCRIPT, "authgraph-pg-watchdog"])
        .arg(cluster_dir)
        .arg(root)
        .arg(if remove { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot start the PostgreSQL watchdog (/bin/sh)")?;
    let stdin = child.stdin.take().context("watchdog stdin")?;
    Ok((child, stdin))
}

/// A command for one of PostgreSQL's programs, run as the cluster's OS user when this
/// process is root: what an operator (or a test) needs to stop or start a cluster by
/// hand, e.g. `pg_ctl -D DATA_DIR/postgres stop`.
pub fn cluster_command(program: &str, os_user: &str) -> anyhow::Result<Command> {
    let mut cmd = Command::new(find_bin_dir()?.join(program));
    cmd.stdin(Stdio::null()).current_dir("/").env("LC_ALL", "C");
    if unsafe { libc::geteuid() } == 0 {
        let (uid, gid) = lookup_user(os_user)?;
        cmd.uid(uid).gid(gid);
    }
    Ok(cmd)
}

/// Finds a folder with `initdb`, `pg_ctl` and `postgres`: `PATH`, then
/// `pg_config --bindir`, then `/usr/lib/postgresql/*/bin`, newest version first.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has_all = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| dir.join(b).is_file());
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    candidates.extend(versioned.into_iter().map(|(_, p)| p));
    for dir in candidates {
        if has_all(&dir) {
            // A PATH entry may hold links into the real folder; resolve them so every
            // binary comes from one installation.
            return Ok(fs::canonicalize(dir.join("initdb"))?.parent().map(Path::to_path_buf).unwrap_or(dir));
        }
    }
    bail!(
        "no PostgreSQL binaries (initdb, pg_ctl, postgres) found on PATH, via pg_config or under \
         /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: apt-get install postgresql) or set \
         DATABASE_URL to an existing PostgreSQL"
    )
}

fn lookup_user(name: &str) -> anyhow::Result<(u32, u32)> {
    let c_name = CString::new(name)?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the two
    // integers out before any other call could overwrite it.
    let entry = unsafe { libc::getpwnam(c_name.as_ptr()) };
    if entry.is_null() {
        bail!("no such OS user");
    }
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    if uid == 0 {
        bail!("that user is root");
    }
    Ok((uid, gid))
}

fn make_private_dir(dir: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        chown(dir, Some(uid), Some(gid))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("path {} is not UTF-8", path.display()))
}

fn socket_url(socket_dir: &Path, database: &str) -> String {
    format!(
        "postgresql:///{database}?host={}&port={PORT}&user={SUPERUSER}",
        percent_encode(&socket_dir.to_string_lossy())
    )
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
