//! When the primary changes: a connection to a server that takes no writes is
//! dropped, not reused, and its request answers `SERVICE_UNAVAILABLE` with
//! `retryAfter` (never an internal error). The whole failover, on pg_auto_failover
//! with two instances under load, is `failover_cluster`'s test.

use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::support::{PASSWORD, SIGNUP, count, fresh_database, process::Server};

/// A primary demoted or put in read-only mode while its sessions lived refuses every
/// write on them with SQLSTATE 25006, as a standby does. Here the server's database
/// refuses writes for a while (its sessions made while it did keep refusing after),
/// like an old primary the pool still holds connections to once a new one takes
/// writes. Against the binary, so that what it notes of the refusal is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_a_server_that_refused_a_write_are_dropped_not_reused() {
    let database = fresh_database().await;
    let name = database.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("DATABASE_URL", &database.url), ("SIGNUPS_PER_IP", "1000")]);
    let signup = |username: &str| {
        json!({ "query": SIGNUP, "variables": { "input": { "name": "N", "username": username, "password": PASSWORD } } })
            .to_string()
    };
    let post = async |body: String| http_with_head(&server.addr, &body).await;
    assert!(post(signup("before")).await.1.contains("accessToken"));

    let mut admin = authgraph::db::establish(&database.url).await.unwrap();
    let sql = |s: String| diesel::sql_query(s);
    sql(format!("ALTER DATABASE \"{name}\" SET default_transaction_read_only = on")).execute(&mut admin).await.unwrap();
    // End the server's sessions: the ones it makes next take no writes, for good.
    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid()"
        .into())
    .execute(&mut admin)
    .await
    .unwrap();

    let (status, refused) = post(signup("during")).await;
    assert_eq!(status, 200, "{refused}");
    assert!(refused.contains("\"code\":\"SERVICE_UNAVAILABLE\""), "{refused}");
    assert!(refused.contains("\"retryAfter\":1"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1\r\n"), "the HTTP edge says when too: {refused}");

    // A server takes writes again; the connections made while it did not still refuse.
    // A connection the server's own tasks made after the refusal above, still to the
    // read-only server, is dropped at its own first refusal: a client retrying as told
    // gets through within a few tries, never refused for good.
    sql(format!("ALTER DATABASE \"{name}\" RESET default_transaction_read_only")).execute(&mut admin).await.unwrap();
    let mut retried = String::new();
    for _ in 0..5 {
        retried = post(signup("during")).await.1;
        if !retried.contains("SERVICE_UNAVAILABLE") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(retried.contains("accessToken"), "the retry runs on a new connection: {retried}");
    assert_eq!(count(&mut admin, "SELECT count(*) AS n FROM users WHERE username = 'during'").await, 1);
}

/// `POST /graphql` on its own connection: the status and the whole response, head
/// included.
async fn http_with_head(addr: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}
