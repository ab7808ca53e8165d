//! Connecting to PostgreSQL, with TLS by rustls, as libpq reads `DATABASE_URL`.
//!
//! Every connection the binary opens (the pool's, the `LISTEN` connection, the one that
//! migrates at start, the command line's) is made here. tokio-postgres knows only
//! `sslmode` = disable, prefer and require and rejects libpq's other TLS parameters, so
//! they are read here and it is handed only what it knows:
//!
//! - `sslmode`: `disable`; `prefer` (the default, as in libpq: TLS when the server
//!   offers it, unverified); `require` (TLS or no connection; unverified, unless
//!   `sslrootcert` is given, then as `verify-ca`, as libpq does); `verify-ca` (the
//!   server's certificate must chain to a trusted root); `verify-full` (and name the
//!   host connected to).
//! - `sslrootcert`: a PEM file of trusted roots; without it, the platform's roots.
//! - `sslcert` and `sslkey`: a client certificate and its key (PEM), for servers that
//!   authenticate clients by certificate (`hostssl … cert` in `pg_hba.conf`).
//!
//! A Unix socket carries no TLS (PostgreSQL offers none there, and libpq ignores
//! `sslmode` for it).

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc};

use anyhow::{Context, bail};
use diesel::ConnectionResult;
use diesel_async::AsyncPgConnection;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, as far as this server supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> anyhow::Result<Self> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => bail!(
                "DATABASE_URL: sslmode={other:?} is not supported (disable, prefer, require, verify-ca, verify-full)"
            ),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Where to connect and how: the parsed `DATABASE_URL`, made once and used for every
/// connection.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    /// The mode asked for, and whether it was written out (`sslmode` present).
    pub mode: SslMode,
    pub mode_explicit: bool,
    tls: Option<MakeRustlsConnect>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("mode", &self.mode).field("hosts", &self.config.get_hosts()).finish()
    }
}

/// The TLS parameters read out of a connection string, and the rest of it.
struct Split {
    rest: String,
    mode: Option<String>,
    root_cert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

const OURS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

fn percent_decode(value: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Takes libpq's TLS parameters out of a URL (`postgres://…?sslmode=…`) or a key-value
/// string (`host=… sslmode=…`).
fn split(url: &str) -> Split {
    let mut taken: Vec<(String, String)> = Vec::new();
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if OURS.contains(&key) {
                taken.push((key.to_owned(), percent_decode(value)));
            } else {
                kept.push(pair);
            }
        }
        if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((key, value)) if OURS.contains(&key) => {
                    taken.push((key.to_owned(), value.trim_matches('\'').to_owned()));
                }
                _ => kept.push(token),
            }
        }
        kept.join(" ")
    };
    let mut split = Split { rest, mode: None, root_cert: None, cert: None, key: None };
    for (key, value) in taken {
        match key.as_str() {
            "sslmode" => split.mode = Some(value),
            "sslrootcert" => split.root_cert = Some(value.into()),
            "sslcert" => split.cert = Some(value.into()),
            _ => split.key = Some(value.into()),
        }
    }
    split
}

fn pem_certs(path: &PathBuf) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let file = std::fs::File::open(path).with_context(|| format!("DATABASE_URL: cannot read {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("DATABASE_URL: {} is not PEM", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "DATABASE_URL: no certificate in {}", path.display());
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Target {
    /// Reads `DATABASE_URL`. Fails, naming the parameter, for a mode or a file it cannot
    /// use.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let split = split(url);
        let mode_explicit = split.mode.is_some();
        let mut mode = split.mode.as_deref().map(SslMode::parse).transpose()?.unwrap_or(SslMode::Prefer);
        // libpq: `require` with a root certificate verifies the chain.
        if mode == SslMode::Require && split.root_cert.is_some() {
            mode = SslMode::VerifyCa;
        }
        let mut config = tokio_postgres::Config::from_str(&split.rest).context("DATABASE_URL")?;
        let unix_only = config.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
        let wire = match mode {
            _ if unix_only => tokio_postgres::config::SslMode::Disable,
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        };
        config.ssl_mode(wire);
        let tls = if wire == tokio_postgres::config::SslMode::Disable {
            None
        } else {
            Some(MakeRustlsConnect::new(client_config(mode, &split)?))
        };
        Ok(Self { config, mode, mode_explicit, tls })
    }

    /// Whether every host is this machine (loopback or a Unix socket), where TLS
    /// protects nothing.
    pub fn is_local(&self) -> bool {
        self.config.get_hosts().iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        })
    }

    /// Opens one connection.
    pub async fn connect(&self) -> ConnectionResult<AsyncPgConnection> {
        // tokio-postgres's message alone says "error performing TLS handshake"; the
        // cause (an unknown issuer, a name the certificate does not carry) is below it.
        let failed = |e: tokio_postgres::Error| {
            let mut message = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message.push_str(&format!(": {c}"));
                cause = c.source();
            }
            diesel::ConnectionError::BadConnection(message)
        };
        match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await.map_err(failed)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await.map_err(failed)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        }
    }
}

fn client_config(mode: SslMode, split: &Split) -> anyhow::Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match &split.root_cert {
                Some(path) => {
                    for cert in pem_certs(path)? {
                        roots.add(cert).context("DATABASE_URL: sslrootcert")?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    for cert in found.certs {
                        let _ = roots.add(cert);
                    }
                    anyhow::ensure!(
                        !roots.is_empty(),
                        "DATABASE_URL: sslmode={} needs sslrootcert (no platform roots found)",
                        mode.as_str()
                    );
                }
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .context("DATABASE_URL: sslrootcert")?;
            let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyCa {
                Arc::new(Relaxed { chain: Some(webpki), provider: provider() })
            } else {
                webpki
            };
            builder.dangerous().with_custom_certificate_verifier(verifier)
        }
        // Encrypted but not authenticated, as libpq's prefer and require.
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed { chain: None, provider: provider() })),
    };
    match (&split.cert, &split.key) {
        (Some(cert), Some(key)) => {
            let chain = pem_certs(cert)?;
            let file =
                std::fs::File::open(key).with_context(|| format!("DATABASE_URL: cannot read {}", key.display()))?;
            let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(file))
                .context("DATABASE_URL: sslkey")?
                .context("DATABASE_URL: no private key in sslkey")?;
            builder.with_client_auth_cert(chain, key).context("DATABASE_URL: sslcert and sslkey do not match")
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => bail!("DATABASE_URL: sslcert and sslkey go together"),
    }
}

/// The verifier of the modes libpq relaxes: `verify-ca` (`chain`: the certificate must
/// reach a trusted root, its name is not compared) and `prefer`/`require` without a
/// root (no chain: any certificate). Either way the handshake's signatures are checked.
#[derive(Debug)]
struct Relaxed {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpqs_parameters_are_read_out_and_the_rest_handed_on() {
        let s = split(
            "postgres://u:p@db.example:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(s.rest, "postgres://u:p@db.example:5432/app?application_name=x");
        assert_eq!((s.mode.as_deref(), s.root_cert), (Some("verify-full"), Some(PathBuf::from("/etc/ca.pem"))));
        let s = split("host=db.example dbname=app sslmode=require sslcert=/c.pem sslkey=/k.pem");
        assert_eq!(s.rest, "host=db.example dbname=app");
        assert_eq!((s.cert, s.key), (Some("/c.pem".into()), Some("/k.pem".into())));
    }

    #[test]
    fn modes_follow_libpq() {
        let t = Target::parse("postgres://db.example/app").unwrap();
        assert_eq!((t.mode, t.mode_explicit, t.is_local()), (SslMode::Prefer, false, false));
        assert!(Target::parse("postgres://db.example/app?sslmode=allow").is_err());
        assert!(Target::parse("postgres://db.example/app?sslmode=verify-ca&sslrootcert=/nonexistent").is_err());
        assert!(Target::parse("postgres://db.example/app?sslmode=require&sslcert=/c.pem").is_err());
        let local = Target::parse("postgresql://authgraph@/authgraph?host=/tmp/run").unwrap();
        assert!(local.is_local() && local.tls.is_none());
        assert!(Target::parse("postgres://127.0.0.1:5432/app?sslmode=disable").unwrap().is_local());
    }
}
