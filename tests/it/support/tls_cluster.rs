//! A PostgreSQL of its own on a loopback TCP port, with `ssl=on` and a certificate from a
//! test CA made here (rcgen), or with TLS off: what a deployment's database looks like,
//! for the TLS tests. Run as the `postgres` OS user when the tests run as root; stopped
//! and removed when dropped.

use std::{os::unix::fs::PermissionsExt, path::PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::{free_port, give_to_pg_os_user, pg_os_user};

/// A certificate authority of the test's own.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate and key (PEM) for `names` (server) or with common name `cn`
    /// (client).
    pub fn issue(&self, names: &[&str], cn: &str) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

pub struct TlsCluster {
    dir: tempfile::TempDir,
    pub port: u16,
    pg_dir: PathBuf,
}

fn run(program: &str, args: &[&str]) {
    let out =
        authgraph::embedded_postgres::cluster_command(program, &pg_os_user()).unwrap().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsCluster {
    /// With `ca`, TLS on with a server certificate for `localhost` from it, and clients
    /// of user `certuser` admitted only by a certificate from it; without, TLS off.
    pub fn start(ca: Option<&TestCa>) -> Self {
        let dir = tempfile::Builder::new().prefix("authgraph-tls-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        give_to_pg_os_user(dir.path());
        let pg_dir = dir.path().join("pg");
        let pg = pg_dir.to_str().unwrap();
        run("initdb", &["-D", pg, "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"]);
        let port = free_port();
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\n",
            dir.path().display()
        );
        let mut hba = String::from("local all all trust\n");
        if let Some(ca) = ca {
            let (cert, key) = ca.issue(&["localhost"], "localhost");
            for (name, text, mode) in
                [("server.crt", cert, 0o644), ("server.key", key, 0o600), ("root.crt", ca.pem(), 0o644)]
            {
                let path = pg_dir.join(name);
                std::fs::write(&path, text).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
                give_to_pg_os_user(&path);
            }
            conf.push_str(
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n",
            );
            hba.push_str("hostnossl all certuser 127.0.0.1/32 reject\nhostssl all certuser 127.0.0.1/32 cert\n");
        }
        hba.push_str("host all all 127.0.0.1/32 trust\n");
        let append = |name: &str, text: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(pg_dir.join(name)).unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        append("postgresql.conf", &conf);
        std::fs::write(pg_dir.join("pg_hba.conf"), hba).unwrap();
        give_to_pg_os_user(&pg_dir.join("pg_hba.conf"));
        let log = dir.path().join("log");
        run("pg_ctl", &["-D", pg, "-w", "-t", "60", "-l", log.to_str().unwrap(), "start"]);
        let cluster = Self { dir, port, pg_dir };
        run(
            "psql",
            &[
                "-h",
                cluster.dir.path().to_str().unwrap(),
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-q",
                "-c",
                "CREATE ROLE certuser LOGIN",
                "-c",
                "CREATE DATABASE app",
            ],
        );
        cluster
    }

    /// A folder the test may write client files into (readable by this process).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `postgres://USER@HOST:PORT/DB` with `params`.
    pub fn url(&self, user: &str, host: &str, db: &str, params: &str) -> String {
        format!("postgres://{user}@{host}:{}/{db}{}{params}", self.port, if params.is_empty() { "" } else { "?" })
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let pg = self.pg_dir.to_str().unwrap().to_owned();
        let _ = authgraph::embedded_postgres::cluster_command("pg_ctl", &pg_os_user())
            .map(|mut c| c.args(["-D", &pg, "-m", "immediate", "stop"]).output());
    }
}
