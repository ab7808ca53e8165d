//! Secrets in logs, in a test binary of its own: the log capture is a thread-local
//! subscriber, and tracing caches which call sites are enabled across threads, so
//! requests of other tests running at the same time made it miss lines.

// The integration suite's harness, of which this binary uses only a part.
#[path = "it/support/mod.rs"]
#[allow(dead_code)]
mod support;

use serde_json::json;

use support::{Auth, PASSWORD, SECRET, TestApp, expect_error};

const ME: &str = "{ me { id } }";

/// A writer for captured log lines.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_trace_level() {
    let _ = tracing_log::LogTracer::init();
    let capture = Capture::default();
    let mut config = authgraph::config::Config::defaults();
    config.log = "trace".into();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(authgraph::server::log_filter(&config))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::new().await;
    let new_password = "an entirely new passphrase";
    let ada = app.signup("ada").await;
    let signin = Auth::from_payload(&app.signin("ada", PASSWORD).await, "signin");
    expect_error(&app.signin("ada", "wrong password guess").await, "INVALID_CREDENTIALS");
    let refreshed = Auth::from_payload(&app.refresh(&signin.refresh).await, "refresh");
    app.gql(Some(&refreshed.access), ME, json!({})).await;
    let change = "mutation($i: ChangePasswordInput!) { changePassword(input: $i) }";
    app.gql(Some(&ada.access), change, json!({ "i": { "currentPassword": PASSWORD, "newPassword": new_password } }))
        .await;
    app.gql(Some("forged.token.value"), ME, json!({})).await;

    let stored_hash: Option<String> = {
        use authgraph::db::schema::users;
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        let mut conn = app.state.auth.pool.get().await.unwrap();
        users::table.select(users::password_hash).first(&mut conn).await.unwrap()
    };

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request"), "logs were captured: {} bytes: {logs}", logs.len());
    for (what, secret) in [
        ("stored password hash", stored_hash.as_deref().expect("a password account")),
        ("password", PASSWORD),
        ("new password", new_password),
        ("wrong password", "wrong password guess"),
        ("access token", ada.access.as_str()),
        ("refreshed access token", refreshed.access.as_str()),
        ("refresh token", ada.refresh.as_str()),
        ("rotated refresh token", refreshed.refresh.as_str()),
        ("JWT key", SECRET),
        ("password hash", "$argon2id$"),
    ] {
        assert!(!logs.contains(secret), "the logs contain the {what}");
        // Drivers print query parameters as byte lists: look for that form too.
        let bytes: Vec<String> = secret.bytes().take(24).map(|b| b.to_string()).collect();
        assert!(!logs.contains(&bytes.join(", ")), "the logs contain the {what}, as bytes");
    }
}
