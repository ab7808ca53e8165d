//! The test harness: one throwaway PostgreSQL for the whole run, a template database
//! migrated once, and for each test its own database cloned from the template and
//! the real router on top of it.
//!
//! The cluster is started by the same module the server uses (`embedded_postgres`), in
//! a temporary folder, and its watchdog stops it and removes the folder when this
//! process exits, however it exits, so a failing test leaves nothing behind. Set
//! `TEST_DATABASE_URL` (a superuser URL) to use an existing server instead; tests then
//! create databases named `authgraph_test_*` on it.

pub mod authenticator;
pub mod auto_failover;
pub mod process;
pub mod providers;
mod request;
pub mod smtp;
pub mod tls_cluster;
pub mod ws;

pub use request::Gql;

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use authgraph::{
    app::{AppState, SharedState},
    config::Config,
    db,
    embedded_postgres::{self, EmbeddedPostgres},
    http,
};
use axum::{
    Router,
    body::Body,
    http::{Request, Response, header},
};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The JWT key of every test app; tests that forge tokens use it (or not) on purpose.
pub const SECRET: &str = "test-secret-test-secret-test-secret!";
/// The refresh-token key of every test app.
pub const REFRESH_KEY: &str = "test-refresh-key-test-refresh-key!!";
/// The second-factor sealing key of every test app.
pub const MFA_KEY: &str = "test-mfa-key-test-mfa-key-test-mfa-key!!";
pub const AUDIT_KEY: &str = "test-audit-key-test-audit-key-test-audit!!";
/// A password that passes validation.
pub const PASSWORD: &str = "correct horse battery staple";

/// Builds the URL of a named database on the test server.
type UrlOf = Box<dyn Fn(&str) -> String + Send + Sync>;

struct Cluster {
    /// Keeps the embedded cluster alive for the whole run; `None` with TEST_DATABASE_URL.
    _pg: Option<EmbeddedPostgres>,
    url_of: UrlOf,
    template: String,
    prefix: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

fn cluster() -> &'static Cluster {
    // Started on a thread of its own: tests run inside tokio runtimes, which cannot
    // block on another runtime, and the template is migrated on a runtime made here.
    CLUSTER.get_or_init(|| std::thread::spawn(start_cluster).join().expect("test cluster failed to start"))
}

fn start_cluster() -> Cluster {
    let prefix = format!("authgraph_test_{}", std::process::id());
    let (pg, url_of): (_, UrlOf) = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let base = url.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("TEST_DATABASE_URL has no database");
            (None, Box::new(move |db| format!("{base}/{db}")))
        }
        _ => {
            let root = tempfile::Builder::new().prefix("authgraph-test-").tempdir().expect("temp dir").keep();
            let pg = EmbeddedPostgres::start(&embedded_postgres::Options {
                root,
                os_user: std::env::var("PG_OS_USER").unwrap_or_else(|_| "postgres".into()),
                remove_on_exit: true,
                unsafe_fast: true,
                statement_stats: true,
            })
            .expect("start the test PostgreSQL");
            let base = pg.url("DBNAME");
            (Some(pg), Box::new(move |db| base.replacen("DBNAME", db, 1)))
        }
    };
    let template = format!("{prefix}_template");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        db::create_database(&url_of("postgres"), &template, None).await.unwrap();
        db::run_migrations(&url_of(&template)).await.unwrap();
    });
    Cluster { _pg: pg, url_of, template, prefix }
}

/// A database of the test cluster, cloned from the migrated template and dropped when
/// its holder lets go (with its connections), so a run against a shared
/// `TEST_DATABASE_URL` server leaves nothing behind.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = ((cluster().url_of)("postgres"), self.name.clone());
        // Its own thread and runtime: a test's runtime may be the one dropping us.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use diesel_async::{AsyncConnection, RunQueryDsl};
                let mut conn = diesel_async::AsyncPgConnection::establish(&admin_url).await?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("could not drop test database {}: {err:#}", self.name);
        }
    }
}

/// A fresh, migrated database of its own.
pub async fn fresh_database() -> TestDatabase {
    let cluster = cluster();
    let name = format!("{}_{}", cluster.prefix, NEXT_DB.fetch_add(1, Ordering::Relaxed));
    db::create_database(&(cluster.url_of)("postgres"), &name, Some(&cluster.template))
        .await
        .expect("clone the template database");
    TestDatabase { url: (cluster.url_of)(&name), name }
}

/// Configuration for a test app: defaults, the test secret, and `database_url`.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::defaults();
    config.jwt_access_secret = Some(SecretString::from(SECRET));
    config.refresh_token_key = Some(SecretString::from(REFRESH_KEY));
    config.factors.encryption_key = Some(SecretString::from(MFA_KEY));
    config.audit_chain_key = Some(SecretString::from(AUDIT_KEY));
    config.database_url = Some(SecretString::from(database_url.to_owned()));
    config.database_pool_size = 10;
    // Mail is off unless a test gives it an SMTP server (`mail_to`).
    config.email.enabled = false;
    // A relying party production accepts too (tests/it/passkeys.rs uses it).
    config.passkeys.rp_id = Some("example.com".to_owned());
    config.passkeys.origins = "https://app.example.com".parse().expect("an origin");
    config
}

/// The configuration of an app that sends mail to `smtp`.
pub fn mail_to(smtp: &smtp::SmtpServer) -> impl FnOnce(&mut Config) {
    let url = smtp.url();
    move |c: &mut Config| {
        c.email.enabled = true;
        c.email.smtp_url = Some(SecretString::from(url));
        c.email.mail_from = "Acme <no-reply@acme.test>".into();
        c.email.app_name = "Acme".into();
        c.email.verify_url = "https://app.acme.test/verify?token={token}".into();
        c.email.reset_url = "https://app.acme.test/reset?token={token}".into();
    }
}

/// An app sending to a fresh SMTP server, with its sender running.
pub async fn mailing_app(adjust: impl FnOnce(&mut Config)) -> (TestApp, smtp::SmtpServer, Background) {
    let smtp = smtp::SmtpServer::start();
    let with_mail = mail_to(&smtp);
    let app = TestApp::with_config(|c| {
        with_mail(c);
        adjust(c);
    })
    .await;
    let sender = app.start_sender();
    (app, smtp, sender)
}

/// A task of the app's running in the background (the outbox sender, the events
/// listener), as the server runs it; stopped when dropped.
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    pub fn new(stop: tokio::sync::watch::Sender<bool>, task: tokio::task::JoinHandle<()>) -> Self {
        Self { stop, task: Some(task) }
    }

    /// Stops it and waits until it has.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The real router over a fresh database.
pub struct TestApp {
    pub state: SharedState,
    pub router: Router,
    pub database_url: String,
    /// Shared with siblings; the database is dropped with the last of them.
    database: std::sync::Arc<TestDatabase>,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    /// A test app whose configuration `adjust` changes first.
    pub async fn with_config(adjust: impl FnOnce(&mut Config)) -> Self {
        let database = std::sync::Arc::new(fresh_database().await);
        Self::on_database(database, adjust)
    }

    /// Another instance on this app's database, as a second server would be.
    pub fn sibling(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::on_database(self.database.clone(), adjust)
    }

    /// An instance on `database` as it is (migrated or not by the test).
    pub fn on_database(database: std::sync::Arc<TestDatabase>, adjust: impl FnOnce(&mut Config)) -> Self {
        let database_url = database.url.clone();
        let mut config = test_config(&database_url);
        adjust(&mut config);
        config.validate().expect("valid test config");
        let keys = authgraph::secret::resolve(&config).unwrap();
        let pool = db::pool(&database_url, config.database_pool_size, Duration::from_secs(5)).unwrap();
        let state = AppState::new(config, &keys, pool).unwrap();
        let router = http::app(state.clone());
        Self { state, router, database_url, database }
    }

    /// Starts the outbox sender of this app, as the server does at start.
    pub fn start_sender(&self) -> Background {
        let config = &self.state.config;
        let transport = authgraph::mail::transport::Transport::new(&config.email, &config.data_dir).unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(authgraph::mail::outbox::run(
            self.state.auth.mail.clone(),
            self.state.auth.pool.clone(),
            transport,
            stopped,
        ));
        Background { stop, task: Some(task) }
    }

    /// Starts the events listener of this app (its own LISTEN connection), as the
    /// server does at start.
    pub fn start_listener(&self) -> Background {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(authgraph::events::listener::run(
            self.state.events.clone(),
            self.database_url.clone(),
            stopped,
        ));
        Background { stop, task: Some(task) }
    }

    /// Starts the events listener and waits until it listens (its first `Resync`), so
    /// that the session cache serves from the first request on.
    pub async fn listening(&self) -> Background {
        let mut sub = self.state.events.subscribe();
        let listener = self.start_listener();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !matches!(sub.next().await, Some(authgraph::events::Signal::Resync)) {}
        })
        .await
        .expect("the listener listens");
        listener
    }

    /// Sends any request through the router.
    pub async fn request(&self, req: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(req).await.unwrap()
    }

    /// `POST /graphql` with an optional bearer token; returns the JSON body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        body_json(self.gql_response(None, token, json!({ "query": query, "variables": variables })).await).await
    }

    /// `POST /graphql` of any JSON body, as if from TCP peer `ip`; the whole response.
    pub async fn gql_response(&self, ip: Option<&str>, token: Option<&str>, body: Value) -> Response<Body> {
        let mut req = Gql::body(body);
        if let Some(token) = token {
            req = req.bearer(token);
        }
        if let Some(ip) = ip {
            req = req.peer(ip);
        }
        self.request(req.build()).await
    }

    /// Sends `req` and returns its JSON body.
    pub async fn send(&self, req: Gql) -> Value {
        body_json(self.request(req.build()).await).await
    }

    /// Puts `req` in flight on a task of its own, so that several are in the server
    /// at the same moment; await the handle for its JSON body.
    pub fn spawn(&self, req: Gql) -> tokio::task::JoinHandle<Value> {
        let router = self.router.clone();
        let req = req.build();
        tokio::spawn(async move { body_json(router.oneshot(req).await.unwrap()).await })
    }

    /// Sends every request at once; the JSON bodies in the order given.
    pub async fn concurrently(&self, requests: impl IntoIterator<Item = Gql>) -> Vec<Value> {
        let tasks: Vec<_> = requests.into_iter().map(|req| self.spawn(req)).collect();
        let mut answers = Vec::with_capacity(tasks.len());
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    }

    /// `signin` from TCP peer `ip`.
    pub async fn signin_from(&self, ip: &str, username: &str, password: &str) -> Response<Body> {
        let body = json!({ "query": SIGNIN, "variables": { "input": { "username": username, "password": password } } });
        self.gql_response(Some(ip), None, body).await
    }

    pub async fn signup(&self, username: &str) -> Auth {
        let res = self
            .gql(
                None,
                SIGNUP,
                json!({ "input": { "name": format!("{username} name"), "username": username, "password": PASSWORD } }),
            )
            .await;
        Auth::from_payload(&res, "signup")
    }

    pub async fn signin(&self, username: &str, password: &str) -> Value {
        self.gql(None, SIGNIN, json!({ "input": { "username": username, "password": password } })).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Value {
        self.gql(None, REFRESH, json!({ "token": refresh_token })).await
    }

    /// Changes made as the command-line tool makes them: by another process, with no
    /// session cache and no mail sender of its own; this app hears of them only
    /// through the database's notifications.
    pub fn operator(&self) -> authgraph::change::Changes {
        let cache = std::sync::Arc::new(authgraph::session_cache::SessionCache::new(0));
        authgraph::change::Changes::new(self.state.auth.pool.clone(), cache, None)
    }

    /// Makes `username` an admin, as the CLI does.
    pub async fn make_admin(&self, username: &str) {
        set_role(&self.state.auth.changes, username, authgraph::db::models::Role::Admin).await;
    }
}

/// Waits until `check` holds (at most 10 s): for a notification to arrive, or a
/// background worker to finish.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Gives `username` a role as the command line does (`users set-role`): through the
/// same power as the API's, by the operator in scope.
pub async fn set_role(changes: &authgraph::change::Changes, username: &str, role: authgraph::db::models::Role) {
    let user = authgraph::admin::find_by_username(changes.pool(), username).await.unwrap();
    let acting = authgraph::admin::Acting::operator(None).unwrap();
    authgraph::admin::set_role(changes, &acting, user.id, role).await.unwrap();
}

pub const SIGNUP: &str = "mutation($input: SignupInput!) { signup(input: $input) { accessToken refreshToken tokenType expiresIn user { id name username role } } }";
pub const SIGNIN: &str = "mutation($input: SigninInput!) { signin(input: $input) { accessToken refreshToken tokenType expiresIn user { id name username role } } }";
pub const REFRESH: &str = "mutation($token: String) { refresh(refreshToken: $token) { accessToken refreshToken tokenType expiresIn user { id name username role } } }";

/// The tokens and id a signup, signin or refresh returned.
#[derive(Debug, Clone)]
pub struct Auth {
    pub access: String,
    pub refresh: String,
    pub user_id: String,
}

impl Auth {
    /// Reads `data.<field>` of a response, failing the test on errors.
    pub fn from_payload(res: &Value, field: &str) -> Self {
        let payload = &res["data"][field];
        assert!(payload.is_object(), "{field} failed: {res}");
        Self {
            access: payload["accessToken"].as_str().unwrap().to_owned(),
            // Null in cookie mode.
            refresh: payload["refreshToken"].as_str().unwrap_or_default().to_owned(),
            user_id: payload["user"]["id"].as_str().unwrap().to_owned(),
        }
    }
}

/// A CORS preflight for `POST /graphql` from `origin`, as a browser sends it.
pub fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri("/graphql")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type")
        .body(Body::empty())
        .unwrap()
}

pub async fn body_json(res: Response<Body>) -> Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
}

/// `errors[0].extensions.code`, or "" when the response has no error.
pub fn error_code(res: &Value) -> &str {
    res["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

/// Asserts the response failed with `code`, and returns its first error.
#[track_caller]
pub fn expect_error<'a>(res: &'a Value, code: &str) -> &'a Value {
    assert_eq!(error_code(res), code, "expected {code}, got {res}");
    &res["errors"][0]
}

/// One sample from Prometheus text: the value of `series` (a name, with its labels in
/// the order the exporter writes them), or 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Runs `sql`, a query with one `bigint` column named `n`, and returns it.
pub async fn count(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(sql).get_result::<Count>(conn).await.unwrap().n
}

/// The claims of an access token, read without verifying it (the server did).
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The session id (`sid`) an access token names.
pub fn session_of(token: &str) -> String {
    claims(token)["sid"].as_str().unwrap().to_owned()
}

/// Lowercase hex SHA-256, as persisted-query clients send it.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The statements one request made PostgreSQL run, from `pg_stat_statements` (loaded by
/// the test cluster), counted between a reset and the end of `request`.
pub async fn statements_of<F: std::future::Future<Output = serde_json::Value>>(
    app: &TestApp,
    request: F,
) -> (serde_json::Value, Vec<(String, i64)>) {
    use diesel::{QueryableByName, sql_query, sql_types::BigInt, sql_types::Text};
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        query: String,
        #[diesel(sql_type = BigInt)]
        calls: i64,
    }
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&app.database_url).await.unwrap();
    sql_query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut conn)
        .await
        .expect("pg_stat_statements is loaded by the test cluster");
    let this_database = "(SELECT oid FROM pg_database WHERE datname = current_database())";
    sql_query(format!("SELECT pg_stat_statements_reset(0, {this_database}, 0)")).execute(&mut conn).await.unwrap();
    let answer = request.await;
    let rows: Vec<Row> = sql_query(format!(
        "SELECT query, calls FROM pg_stat_statements WHERE dbid = {this_database} \
         AND query NOT LIKE '%pg_stat_statements%' ORDER BY query"
    ))
    .load(&mut conn)
    .await
    .unwrap();
    (answer, rows.into_iter().map(|r| (r.query, r.calls)).collect())
}

/// The OS user clusters the tests start run as (PostgreSQL refuses root).
pub fn pg_os_user() -> String {
    std::env::var("PG_OS_USER").unwrap_or_else(|_| "postgres".into())
}

/// Gives `path` to `pg_os_user()` when the tests run as root.
pub fn give_to_pg_os_user(path: &std::path::Path) {
    if unsafe { libc::geteuid() } == 0 {
        let (uid, gid) = pg_os_user_ids();
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// The uid and gid of `pg_os_user()`.
pub fn pg_os_user_ids() -> (u32, u32) {
    let id = |flag: &str| {
        let out = std::process::Command::new("id").args([flag, &pg_os_user()]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// A loopback TCP port free at the moment of asking, for a process that must be told
/// its port before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
