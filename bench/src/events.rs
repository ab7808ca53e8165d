//! What one session event costs the server, alone and beside thousands of subscriptions
//! of other accounts: before events went to their own account's subscribers only, every
//! event woke every subscription on the instance, so its cost grew with the number of
//! sockets open (0.48 ms with none, 7.6 ms beside 2,000).
//!
//! Events are made the way an operator's change makes them: `UPDATE users` through
//! `psql`, one transaction each, so the server's CPU is spent on the notification and
//! its delivery, not on an API request. One subscription of the changed account watches
//! in both runs, and the figure is read once it has received every event.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest},
};

const EVENTS: &str = "subscription { sessionEvents { kind } }";
/// Subscriptions one socket may hold and sockets one account may open, as the server's
/// defaults allow (`WS_MAX_SUBSCRIPTIONS_PER_SOCKET`, `WS_MAX_SOCKETS_PER_USER`).
const PER_SOCKET: usize = 5;
const SOCKETS_PER_ACCOUNT: usize = 10;

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// One row of the events table.
pub struct EventCost {
    pub subscriptions: usize,
    pub events: usize,
    pub server_cpu_ms_per_event: f64,
}

/// Opens a socket for `access` and starts `subscriptions` subscriptions on it.
async fn subscribed(ws_url: &str, access: &str, subscriptions: usize) -> anyhow::Result<Socket> {
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {access}") } });
    socket.send(Message::Text(init.to_string().into())).await?;
    let ack = next_message(&mut socket).await?;
    anyhow::ensure!(ack["type"] == "connection_ack", "not admitted: {ack}");
    for id in 0..subscriptions {
        let subscribe = json!({ "type": "subscribe", "id": id.to_string(), "payload": { "query": EVENTS } });
        socket.send(Message::Text(subscribe.to_string().into())).await?;
    }
    Ok(socket)
}

async fn next_message(socket: &mut Socket) -> anyhow::Result<Value> {
    let wait = async {
        loop {
            match socket.next().await.context("the socket closed")?? {
                Message::Text(text) => return Ok(serde_json::from_str(&text)?),
                Message::Close(frame) => anyhow::bail!("the socket closed: {frame:?}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.context("no message within 30 s")?
}

/// `count` changes of `username`'s account, each its own transaction (one transaction's
/// identical notifications would be folded into one).
fn make_events(psql: &std::path::Path, url: &str, username: &str, count: usize, tag: &str) -> anyhow::Result<()> {
    let mut child = Command::new(psql)
        .args(["-v", "ON_ERROR_STOP=1", "-q", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    for n in 0..count {
        writeln!(stdin, "UPDATE users SET name = 'Bench {tag}.{n}' WHERE username = '{username}';")?;
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Measures the server's CPU per event with no other subscriptions, then beside
/// `subscriptions` subscriptions of other accounts (`accounts`: access tokens, the first
/// is the account whose changes make the events).
pub async fn measure(
    ws_url: &str,
    data_dir: &std::path::Path,
    cpu_seconds: impl Fn() -> f64,
    accounts: &[String],
    events: usize,
    subscriptions: usize,
) -> anyhow::Result<Vec<EventCost>> {
    let psql = authgraph::embedded_postgres::find_bin_dir()?.join("psql");
    let url = authgraph::embedded_postgres::EmbeddedPostgres::running_url(data_dir, "authgraph")?;
    let others = subscriptions.div_ceil(PER_SOCKET * SOCKETS_PER_ACCOUNT);
    anyhow::ensure!(accounts.len() > others, "{subscriptions} subscriptions need {} seeded accounts", others + 1);
    let mut watcher = subscribed(ws_url, &accounts[0], 1).await?;
    let mut rows = Vec::new();
    let mut crowd: Vec<Socket> = Vec::new();
    for (round, wanted) in [0, subscriptions].into_iter().enumerate() {
        let mut opened = crowd.len() * PER_SOCKET;
        while opened < wanted {
            let account = &accounts[1 + crowd.len() / SOCKETS_PER_ACCOUNT];
            let here = PER_SOCKET.min(wanted - opened);
            crowd.push(subscribed(ws_url, account, here).await?);
            opened += here;
        }
        // Let the subscriptions settle before the clock starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        let (psql, url) = (psql.clone(), url.clone());
        let writer =
            tokio::task::spawn_blocking(move || make_events(&psql, &url, "bench_u0", events, &round.to_string()));
        for _ in 0..events {
            let event = next_message(&mut watcher).await?;
            anyhow::ensure!(event["payload"]["data"]["sessionEvents"]["kind"] == "ACCOUNT_UPDATED", "{event}");
        }
        writer.await??;
        let cpu = cpu_seconds() - cpu_before;
        eprintln!("{events} events beside {wanted} subscriptions in {:.1?}", started.elapsed());
        rows.push(EventCost { subscriptions: wanted, events, server_cpu_ms_per_event: cpu * 1000.0 / events as f64 });
    }
    // Proof that the crowd was listening all along, and heard only its own accounts: one
    // change of each of its accounts reaches every one of its subscriptions, and after
    // that nothing is left to read.
    let crowd_accounts = crowd.len().div_ceil(SOCKETS_PER_ACCOUNT);
    let usernames: Vec<String> = (1..=crowd_accounts).map(|i| format!("bench_u{i}")).collect();
    tokio::task::spawn_blocking(move || usernames.iter().try_for_each(|u| make_events(&psql, &url, u, 1, "check")))
        .await??;
    let mut opened = 0;
    for socket in &mut crowd {
        let here = PER_SOCKET.min(subscriptions - opened);
        opened += here;
        for _ in 0..here {
            let event = next_message(socket).await?;
            anyhow::ensure!(event["payload"]["data"]["sessionEvents"]["kind"] == "ACCOUNT_UPDATED", "{event}");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for socket in &mut crowd {
        loop {
            match socket.next().now_or_never() {
                None | Some(None) => break,
                Some(Some(Ok(Message::Text(text)))) => {
                    anyhow::bail!("a subscription received another account's event: {text}")
                }
                Some(_) => {}
            }
        }
    }
    Ok(rows)
}
