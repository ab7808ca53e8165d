//! GraphQL subscriptions over WebSockets: the graphql-transport-ws protocol on
//! `GET /graphql` (the `graphql-ws` library's, which Apollo Client's GraphQLWsLink and
//! urql's subscriptionExchange speak), with async-graphql running the protocol and this
//! module holding the socket to its session.
//!
//! `connection_init` carries `{"Authorization": "Bearer <accessToken>"}`; the token is
//! verified and its session checked, and the socket is registered under that session
//! (`events::sockets`). From then on every operation sent over the socket, a query or
//! a mutation as much as a subscription, is admitted on its own at the moment it runs
//! (`graphql::admission`): the socket keeps its credentials, never a verdict. The
//! socket closes with
//! - 4401 when the token is missing, bad or expired at init, or expires later (the
//!   client reconnects with a fresh one);
//! - 4403 when its session ends, on whichever instance: after its subscriptions have
//!   delivered `SESSION_ENDED` (and completed), or at once if it has none;
//! - 1013 when its session cannot be checked (the database is unavailable): graphql-ws
//!   retries 1013, and treats 1011 and 44xx as final;
//! - 4408 without `connection_init` within `WS_INIT_TIMEOUT`;
//! - 4409 for a subscription id already in use, 4429 for too many subscriptions on the
//!   socket or too many sockets of the account (`WS_MAX_*`), 4400 for a message that
//!   is not the protocol's, 1009 for one over `WS_MAX_MESSAGE_BYTES`;
//! - 1001 when the server shuts down.
//!
//! A socket costs what a connection costs: it keeps its connection's place in the
//! budget (`serve::ConnectionPermit`), reads into a small buffer, and until it is
//! admitted it also holds one of `WS_MAX_UNAUTHENTICATED` places. Every write has a
//! deadline (`WS_SEND_TIMEOUT`), and the token's expiry, the session's end and
//! shutdown are watched while a write waits: a client that stops reading is
//! disconnected, not waited for.

mod admit;
mod close;
mod input;
mod tracked;

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::http::{WebSocket as ProtocolStream, WebSocketProtocols, WsMessage};
use axum::{
    extract::ws::{Message, WebSocket, WebSocketUpgrade},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use futures_util::{SinkExt, StreamExt};
use tokio::{
    sync::{OwnedSemaphorePermit, mpsc, watch},
    time::Instant,
};

use super::{Http, serve::ConnectionPermit};
use crate::{auth::Client, error::code};
use close::{Close, break_with};
use input::finished_id;
use tracked::Tracked;

/// The one subprotocol spoken.
const PROTOCOL: &str = "graphql-transport-ws";
/// How long a socket whose session ended waits for its subscriptions to send
/// `SESSION_ENDED` and complete before it closes anyway.
const DRAIN: Duration = Duration::from_secs(1);

/// What a socket reads into at first: graphql-transport-ws messages are small, and the
/// buffer grows for a larger one (up to `WS_MAX_MESSAGE_BYTES`). tungstenite's default
/// allocates 128 KiB per socket up front.
const READ_BUFFER: usize = 4 * 1024;

/// `GET /graphql` with `Upgrade: websocket`. `permit` is the connection's place in the
/// budget (absent only when a test calls the router without the listener).
pub(crate) fn upgrade(
    http: Http,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    permit: Option<ConnectionPermit>,
    ws: WebSocketUpgrade,
) -> Response {
    // A browser names the page's origin; a page of another site must not open a socket
    // with a token it got hold of. Non-browser clients send no Origin.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let dev = !http.state.config.is_production();
        let allowed = origin.to_str().is_ok_and(|o| {
            http.state.config.cors_origins.contains(o) || (dev && own_origin(o, headers.get(header::HOST)))
        });
        if !allowed {
            return super::request_error(StatusCode::FORBIDDEN, code::FORBIDDEN, "This origin may not open a socket");
        }
    }
    // A draining instance takes no new sockets: the client opens one on another.
    if *http.state.draining.borrow() {
        return try_again("This instance is shutting down; open the socket again");
    }
    let Ok(unadmitted) = http.unadmitted_sockets.clone().try_acquire_owned() else {
        metrics::counter!("authgraph_ws_refused_total", "reason" => "unauthenticated").increment(1);
        return try_again("Too many sockets waiting for connection_init (WS_MAX_UNAUTHENTICATED); retry later");
    };
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let client = Client { user_agent, ip, ..Client::default() };
    let max = http.state.config.realtime.max_message_bytes;
    ws.protocols([PROTOCOL])
        .read_buffer_size(READ_BUFFER)
        // Each message is written as it comes (they are small); the send's deadline,
        // not a buffer, decides what a client that does not read may cost.
        .write_buffer_size(0)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let held = Held { _connection: permit, unadmitted: Some(unadmitted) };
            serve(http, socket, client, held).await;
        })
}

/// An upgrade refused for now: 503 with `Retry-After`, which socket clients retry.
fn try_again(message: &str) -> Response {
    let mut res = super::request_error(StatusCode::SERVICE_UNAVAILABLE, code::SERVICE_UNAVAILABLE, message);
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// In development, a page served by this server (GraphiQL) opens sockets from its own
/// origin: `http` or `https`, with the host and port the browser sent in `Host`. Only
/// there: in production only `CORS_ORIGINS` may, since `Host` is the client's word.
fn own_origin(origin: &str, host: Option<&HeaderValue>) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else { return false };
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let ours = host_and_port(host, default_port);
    ours.is_some() && host_and_port(authority, default_port) == ours
}

/// `name[:port]` (IPv6 literals in brackets), the name lowercased; `None` for anything
/// with a path, query, user or space in it.
fn host_and_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (name, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => default_port,
    };
    Some((name.to_ascii_lowercase(), port))
}

/// What an open socket holds: its connection's place in the budget for its whole life,
/// and a place among the sockets not yet admitted until `connection_init` passes.
struct Held {
    _connection: Option<ConnectionPermit>,
    unadmitted: Option<OwnedSemaphorePermit>,
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// What bounds the socket's life once it is admitted: its session's end (watched), its
/// token's expiry, and, once the session ended, the drain's deadline.
#[derive(Default)]
struct Life {
    ended: Option<watch::Receiver<bool>>,
    expires_at: Option<Instant>,
    drain_until: Option<Instant>,
}

impl Life {
    /// Takes the admitted socket's bounds, once.
    fn adopt(&mut self, tracked: &Tracked) {
        if self.ended.is_none()
            && let Some(admitted) = &tracked.admitted
        {
            self.ended = Some(admitted.registration.ended.clone());
            self.expires_at = Some(admitted.expires_at);
        }
    }

    fn draining(&self) -> bool {
        self.drain_until.is_some()
    }

    /// Resolves when the session ends (at once if it has, unless already draining).
    fn session_ends(&self) -> impl Future<Output = ()> + use<> {
        let over = self.ended.as_ref().map(|rx| *rx.borrow());
        session_ends(self.ended.clone(), over, self.draining())
    }
}

/// The socket's life: the protocol run by async-graphql over the filtered input, the
/// admission at `connection_init`, and the loop that writes its messages and decides
/// when and how it closes.
async fn serve(http: Http, socket: WebSocket, client: Client, mut held: Held) {
    metrics::counter!("authgraph_ws_connections_total").increment(1);
    let (mut sink, stream) = socket.split();
    let tracked = Arc::new(Mutex::new(Tracked::default()));
    let (violations, mut violated) = mpsc::unbounded_channel::<Close>();
    // Operations that found the session impossible to check (see `SocketSession`).
    let (unavailable, mut unchecked) = mpsc::unbounded_channel::<()>();
    let realtime = &http.state.config.realtime;
    let (max_subscriptions, send_timeout) = (realtime.max_subscriptions_per_socket, realtime.send_timeout);

    let input = input::filtered(stream, tracked.clone(), violations, max_subscriptions);
    let init = {
        let (http, tracked) = (http.clone(), tracked.clone());
        move |payload| admit::connection_init(http, tracked, client, unavailable, payload)
    };
    let protocol = ProtocolStream::new(http.schema.clone(), input, WebSocketProtocols::GraphQLWS)
        .on_connection_init(init)
        .keepalive_timeout(None);
    tokio::pin!(protocol);

    let mut stopping = http.state.stopping.subscribe();
    let init_deadline = tokio::time::sleep(http.state.config.realtime.init_timeout);
    tokio::pin!(init_deadline);
    let mut life = Life::default();

    let close = loop {
        let (initialised, admitted) = {
            let t = tracked.lock().unwrap();
            (t.initialised, t.admitted.is_some())
        };
        if admitted {
            // Admitted: its place among the sockets waiting for init comes free.
            held.unadmitted = None;
        }
        let step = tokio::select! {
            outgoing = protocol.next() => match outgoing {
                Some(WsMessage::Text(text)) => Step::Send(text),
                Some(WsMessage::Close(code, reason)) => Step::Forward(code, reason),
                None => Step::Stop,
            },
            Some(close) = violated.recv() => Step::Close(close),
            Some(()) = unchecked.recv() => Step::Close(Close::Unavailable),
            () = &mut init_deadline, if !initialised => Step::Close(Close::InitTimeout),
            () = until(life.expires_at) => Step::Close(Close::Unauthorized),
            () = life.session_ends() => Step::Drain,
            () = until(life.drain_until) => Step::Close(Close::Forbidden),
            _ = stopping.wait_for(|s| *s) => Step::Close(Close::GoingAway),
        };
        match step {
            Step::Send(text) => {
                let finished = finished_id(&text);
                if !write(&mut sink, text, &life, &mut stopping, send_timeout).await {
                    metrics::counter!("authgraph_ws_closed_total", "code" => "dropped").increment(1);
                    return;
                }
                let mut t = tracked.lock().unwrap();
                if let Some(id) = finished {
                    t.active.remove(&id);
                }
                life.adopt(&t);
                if life.draining() && t.active.is_empty() {
                    break Close::Forbidden;
                }
            }
            // The protocol's own close (a failed init among them: then with our code).
            Step::Forward(code, reason) => {
                // A subscribe before the ack is unauthorised in graphql-ws's terms.
                let refused = tracked.lock().unwrap().refused.or((code == 1011).then_some(Close::Unauthorized));
                let frame = refused.map_or((code, reason), |c| (c.frame().0, c.frame().1.to_owned()));
                break_with(&mut sink, frame).await;
                return;
            }
            // The input ended: by the client's close, or by a read error that named
            // its close code.
            Step::Stop => match violated.try_recv() {
                Ok(close) => break close,
                Err(_) => return,
            },
            Step::Close(close) => break close,
            // The session ended: let the subscriptions say so, then close.
            Step::Drain => {
                if tracked.lock().unwrap().active.is_empty() {
                    break Close::Forbidden;
                }
                life.drain_until = Some(Instant::now() + DRAIN);
            }
        }
    };
    let (code, reason) = close.frame();
    metrics::counter!("authgraph_ws_closed_total", "code" => code.to_string()).increment(1);
    // The close frame gets the same deadline as any write.
    let _ = tokio::time::timeout(send_timeout, break_with(&mut sink, (code, reason.to_owned()))).await;
}

/// Writes one message. A write that waits is bounded by its own deadline
/// (`WS_SEND_TIMEOUT`), the token's expiry and the drain; shutdown cuts it short, the
/// session's end gives it the drain's time. `false` when it did not get through: a
/// client that is not reading gets no close frame (nothing would reach it), and the
/// connection is dropped.
async fn write(
    sink: &mut Sink,
    text: String,
    life: &Life,
    stopping: &mut watch::Receiver<bool>,
    send_timeout: Duration,
) -> bool {
    let mut deadline = Instant::now() + send_timeout;
    deadline = life.expires_at.map_or(deadline, |at| deadline.min(at));
    deadline = life.drain_until.map_or(deadline, |at| deadline.min(at));
    let send = tokio::time::timeout_at(deadline, sink.send(Message::Text(text.into())));
    tokio::pin!(send);
    let sent = tokio::select! {
        biased;
        sent = &mut send => Some(matches!(sent, Ok(Ok(())))),
        _ = stopping.wait_for(|s| *s) => Some(false),
        () = life.session_ends() => None,
    };
    // The session ended while the write waits: it gets the drain's time.
    match sent {
        Some(sent) => sent,
        None => matches!(tokio::time::timeout(DRAIN, &mut send).await, Ok(Ok(Ok(())))),
    }
}

/// Resolves when `watching` turns true (the session ended), unless it already is:
/// then at once, but only while not yet draining.
async fn session_ends(watching: Option<watch::Receiver<bool>>, over: Option<bool>, draining: bool) {
    match (watching, over) {
        (Some(mut rx), Some(false)) => {
            if rx.wait_for(|ended| *ended).await.is_err() {
                std::future::pending::<()>().await
            }
        }
        (Some(_), Some(true)) if !draining => {}
        _ => std::future::pending::<()>().await,
    }
}

/// Resolves at `at`, never without one.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What one turn of the socket's loop does, decided before anything is awaited.
enum Step {
    Send(String),
    Forward(u16, String),
    Stop,
    Close(Close),
    Drain,
}
