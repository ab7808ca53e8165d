//! TLS to PostgreSQL against real servers on loopback: one with `ssl=on` and a
//! certificate from a test CA, one without TLS. Each `sslmode` against both, the host
//! name and the CA checked by the verifying modes, a client certificate that
//! `pg_hba.conf` requires, and the server's own view (`pg_stat_ssl`) of the pool's and
//! the `LISTEN` connection's encryption.

use diesel::{QueryableByName, sql_query, sql_types::Bool};
use diesel_async::RunQueryDsl;

use crate::support::tls_cluster::{TestCa, TlsCluster};

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Connects with `url`: `Ok(encrypted)` from the server's own view, or the error.
async fn encrypted(url: &str) -> Result<bool, String> {
    let mut conn = authgraph::db::establish(url).await.map_err(|e| e.to_string())?;
    let row: Ssl = sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.ssl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sslmode_against_a_tls_server_and_a_plain_one() {
    let ca = TestCa::new("authgraph test CA");
    let tls = TlsCluster::start(Some(&ca));
    let plain = TlsCluster::start(None);
    let root = tls.path("root.pem");
    std::fs::write(&root, ca.pem()).unwrap();
    let stranger = tls.path("stranger.pem");
    std::fs::write(&stranger, TestCa::new("another CA").pem()).unwrap();
    let root = root.display().to_string();
    let stranger = stranger.display().to_string();

    let on_tls = |host: &str, params: &str| tls.url("postgres", host, "app", params);
    assert_eq!(encrypted(&on_tls("localhost", "sslmode=disable")).await, Ok(false));
    assert_eq!(encrypted(&on_tls("localhost", "")).await, Ok(true), "prefer, libpq's default, takes TLS when offered");
    assert_eq!(encrypted(&on_tls("localhost", "sslmode=prefer")).await, Ok(true));
    assert_eq!(encrypted(&on_tls("127.0.0.1", "sslmode=require")).await, Ok(true), "require does not verify");
    let verify_ca = format!("sslmode=verify-ca&sslrootcert={root}");
    assert_eq!(encrypted(&on_tls("127.0.0.1", &verify_ca)).await, Ok(true), "verify-ca does not compare the name");
    let verify_full = format!("sslmode=verify-full&sslrootcert={root}");
    assert_eq!(encrypted(&on_tls("localhost", &verify_full)).await, Ok(true));
    let wrong_name = encrypted(&on_tls("127.0.0.1", &verify_full)).await;
    assert!(wrong_name.as_ref().is_err_and(|e| e.contains("not valid for name")), "{wrong_name:?}");
    let unknown_ca = encrypted(&on_tls("localhost", &format!("sslmode=verify-full&sslrootcert={stranger}"))).await;
    assert!(unknown_ca.as_ref().is_err_and(|e| e.contains("UnknownIssuer")), "{unknown_ca:?}");
    let require_with_root = format!("sslmode=require&sslrootcert={stranger}");
    assert!(encrypted(&on_tls("localhost", &require_with_root)).await.is_err(), "require with a root verifies it");

    let on_plain = |params: &str| plain.url("postgres", "localhost", "app", params);
    assert_eq!(encrypted(&on_plain("sslmode=disable")).await, Ok(false));
    assert_eq!(encrypted(&on_plain("")).await, Ok(false), "prefer falls back to clear text");
    for mode in ["require", "verify-ca", "verify-full"] {
        let refused = encrypted(&on_plain(&format!("sslmode={mode}&sslrootcert={root}"))).await;
        assert!(refused.as_ref().is_err_and(|e| e.contains("does not support TLS")), "{mode}: {refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_that_pg_hba_requires() {
    let ca = TestCa::new("authgraph test CA");
    let tls = TlsCluster::start(Some(&ca));
    let (cert, key) = ca.issue(&[], "certuser");
    let (cert_path, key_path, root_path) = (tls.path("client.crt"), tls.path("client.key"), tls.path("root.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    std::fs::write(&root_path, ca.pem()).unwrap();
    let (cert_path, key_path, root_path) =
        (cert_path.display().to_string(), key_path.display().to_string(), root_path.display().to_string());
    let without = tls.url("certuser", "localhost", "app", &format!("sslmode=verify-full&sslrootcert={root_path}"));
    assert!(encrypted(&without).await.is_err(), "no certificate, no entry");
    let with = format!("{without}&sslcert={cert_path}&sslkey={key_path}");
    assert_eq!(encrypted(&with).await, Ok(true));
    let other_ca = TestCa::new("another CA");
    let (foreign_cert, foreign_key) = other_ca.issue(&[], "certuser");
    std::fs::write(tls.path("foreign.crt"), foreign_cert).unwrap();
    std::fs::write(tls.path("foreign.key"), foreign_key).unwrap();
    let foreign =
        format!("{without}&sslcert={}&sslkey={}", tls.path("foreign.crt").display(), tls.path("foreign.key").display());
    assert!(encrypted(&foreign).await.is_err(), "a certificate from another CA is refused");
}

/// What the server sees of authgraph's own connections: the migrations, the pool and
/// the `LISTEN` connection, all made from one `DATABASE_URL` with `verify-full`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_and_the_listener_are_encrypted() {
    let ca = TestCa::new("authgraph test CA");
    let tls = TlsCluster::start(Some(&ca));
    let root = tls.path("root.pem");
    std::fs::write(&root, ca.pem()).unwrap();
    let url = tls.url("postgres", "localhost", "app", &format!("sslmode=verify-full&sslrootcert={}", root.display()));
    assert!(authgraph::db::run_migrations(&url).await.unwrap() > 0);
    let pool = authgraph::db::pool(&url, 4, std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(authgraph::db::ping(&pool).await, Some(true), "the readiness probe says so");
    let hub = std::sync::Arc::new(authgraph::events::Hub::new(std::sync::Arc::new(
        authgraph::session_cache::SessionCache::new(0),
    )));
    let mut signals = hub.subscribe();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let listener = tokio::spawn(authgraph::events::listener::run(hub.clone(), url.clone(), stopped));
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !matches!(signals.next().await, Some(authgraph::events::Signal::Resync)) {}
    })
    .await
    .expect("the listener listens");
    let (mut a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    #[derive(QueryableByName)]
    struct Seen {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        all: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        encrypted: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        listening: i64,
    }
    let seen: Seen = sql_query(
        "SELECT count(*) AS all, count(*) FILTER (WHERE s.ssl) AS encrypted, \
                count(*) FILTER (WHERE s.ssl AND a.application_name = 'authgraph-listener') AS listening \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = 'app' AND a.backend_type = 'client backend'",
    )
    .get_result(&mut a)
    .await
    .unwrap();
    assert!(seen.all >= 3, "two pool connections and the listener: {}", seen.all);
    assert_eq!(seen.encrypted, seen.all, "every connection encrypted");
    assert_eq!(seen.listening, 1, "the LISTEN connection is among them");
    drop((a, b));
    stop.send(true).unwrap();
    let _ = listener.await;
}
