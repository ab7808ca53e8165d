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

use std::{
    collections::HashSet,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::{
    Data,
    http::{WebSocket as ProtocolStream, WebSocketProtocols, WsMessage},
};
use axum::{
    extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use futures_util::{SinkExt, StreamExt};
use tokio::{
    sync::{OwnedSemaphorePermit, mpsc, watch},
    time::Instant,
};

use super::{Http, bearer, serve::ConnectionPermit};
use crate::{
    auth::{Client, Credentials},
    error::{AppError, code},
    events::sockets::Registration,
    graphql::subscription::SocketSession,
};

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
    let Ok(unadmitted) = http.unadmitted_sockets.clone().try_acquire_owned() else {
        metrics::counter!("authgraph_ws_refused_total", "reason" => "unauthenticated").increment(1);
        let mut res = super::request_error(
            StatusCode::SERVICE_UNAVAILABLE,
            code::SERVICE_UNAVAILABLE,
            "Too many sockets waiting for connection_init (WS_MAX_UNAUTHENTICATED); retry later",
        );
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return res;
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

/// Why a socket closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Unauthorized,
    Forbidden,
    InitTimeout,
    DuplicateId,
    TooMany,
    BadMessage,
    TooBig,
    Unavailable,
    GoingAway,
}

impl Close {
    fn frame(self) -> (u16, &'static str) {
        match self {
            Self::Unauthorized => (4401, "Unauthorized"),
            Self::Forbidden => (4403, "Forbidden"),
            Self::InitTimeout => (4408, "Connection initialisation timeout"),
            Self::DuplicateId => (4409, "Subscriber already exists"),
            Self::TooMany => (4429, "Too many subscriptions or sockets"),
            Self::BadMessage => (4400, "Invalid message"),
            Self::TooBig => (1009, "Message too big"),
            Self::Unavailable => (1013, "Session cannot be checked now; try again later"),
            Self::GoingAway => (1001, "Server shutting down"),
        }
    }
}

/// What `connection_init` established, for the loop.
struct Admitted {
    expires_at: Instant,
    registration: Registration,
}

/// The socket's side of the protocol, shared by the input filter, the init callback
/// and the loop.
#[derive(Default)]
struct Tracked {
    initialised: bool,
    active: HashSet<String>,
    admitted: Option<Admitted>,
    /// Why init failed, to replace the protocol's generic close code.
    refused: Option<Close>,
}

async fn serve(http: Http, socket: WebSocket, client: Client, mut held: Held) {
    metrics::counter!("authgraph_ws_connections_total").increment(1);
    let (mut sink, stream) = socket.split();
    let tracked = Arc::new(Mutex::new(Tracked::default()));
    let (violations, mut violated) = mpsc::unbounded_channel::<Close>();
    // Operations that found the session impossible to check (see `SocketSession`).
    let (unavailable, mut unchecked) = mpsc::unbounded_channel::<()>();
    let realtime = &http.state.config.realtime;
    let (max_subscriptions, send_timeout) = (realtime.max_subscriptions_per_socket, realtime.send_timeout);

    // Client messages pass through here first: the limits of the socket are kept
    // before async-graphql sees a message. A read error ends the input, with the
    // close it calls for.
    let input = {
        let (tracked, broken) = (tracked.clone(), violations.clone());
        let readable = move |m: &Result<Message, axum::Error>| {
            if let Err(err) = m {
                let _ = broken.send(read_failure(err));
            }
            std::future::ready(m.is_ok())
        };
        stream.take_while(readable).filter_map(move |message| {
            let verdict = match message {
                Ok(Message::Text(text)) => inspect(&tracked, text.as_bytes(), max_subscriptions),
                Ok(Message::Binary(bytes)) => inspect(&tracked, &bytes, max_subscriptions),
                _ => Verdict::Skip,
            };
            let pass = match verdict {
                Verdict::Pass(bytes) => Some(bytes),
                Verdict::Skip => None,
                Verdict::Refuse(close) => {
                    let _ = violations.send(close);
                    None
                }
            };
            std::future::ready(pass)
        })
    };

    let init = {
        let (http, tracked) = (http.clone(), tracked.clone());
        move |payload: serde_json::Value| async move {
            match admit(&http, payload, client, unavailable).await {
                Ok((data, admitted)) => {
                    tracked.lock().unwrap().admitted = Some(admitted);
                    Ok(data)
                }
                Err(close) => {
                    tracked.lock().unwrap().refused = Some(close);
                    Err(async_graphql::Error::new(close.frame().1))
                }
            }
        }
    };
    let protocol = ProtocolStream::new(http.schema.clone(), input, WebSocketProtocols::GraphQLWS)
        .on_connection_init(init)
        .keepalive_timeout(None);
    tokio::pin!(protocol);

    let mut stopping = http.state.stopping.subscribe();
    let init_deadline = tokio::time::sleep(http.state.config.realtime.init_timeout);
    tokio::pin!(init_deadline);
    let mut ended: Option<watch::Receiver<bool>> = None;
    let mut expires_at = None;
    let mut drain_until: Option<Instant> = None;

    let close = loop {
        let (initialised, admitted) = {
            let t = tracked.lock().unwrap();
            (t.initialised, t.admitted.is_some())
        };
        if admitted {
            // Admitted: its place among the sockets waiting for init comes free.
            held.unadmitted = None;
        }
        let session_over = ended.as_ref().map(|rx| *rx.borrow());
        let draining = drain_until.is_some();
        let ended_changed = session_ends(ended.clone(), session_over, draining);
        let expiry = until(expires_at);
        let drained = until(drain_until);
        let step = tokio::select! {
            outgoing = protocol.next() => match outgoing {
                Some(WsMessage::Text(text)) => Step::Send(text),
                Some(WsMessage::Close(code, reason)) => Step::Forward(code, reason),
                None => Step::Stop,
            },
            Some(close) = violated.recv() => Step::Close(close),
            Some(()) = unchecked.recv() => Step::Close(Close::Unavailable),
            () = &mut init_deadline, if !initialised => Step::Close(Close::InitTimeout),
            () = expiry => Step::Close(Close::Unauthorized),
            () = ended_changed => Step::Drain,
            () = drained => Step::Close(Close::Forbidden),
            _ = stopping.wait_for(|s| *s) => Step::Close(Close::GoingAway),
        };
        match step {
            Step::Send(text) => {
                let finished = finished_id(&text);
                // A write that waits is bounded by its own deadline, the token's expiry
                // and the drain; shutdown cuts it short, the session's end gives it the
                // drain's time. A client that is not reading gets no close frame
                // (nothing would reach it): the connection is dropped.
                let mut deadline = Instant::now() + send_timeout;
                deadline = expires_at.map_or(deadline, |at| deadline.min(at));
                deadline = drain_until.map_or(deadline, |at| deadline.min(at));
                let send = tokio::time::timeout_at(deadline, sink.send(Message::Text(text.into())));
                tokio::pin!(send);
                let over = ended.as_ref().map(|rx| *rx.borrow());
                let sent = tokio::select! {
                    biased;
                    sent = &mut send => Some(matches!(sent, Ok(Ok(())))),
                    _ = stopping.wait_for(|s| *s) => Some(false),
                    () = session_ends(ended.clone(), over, draining) => None,
                };
                // The session ended while the write waits: it gets the drain's time.
                let sent = match sent {
                    Some(sent) => sent,
                    None => matches!(tokio::time::timeout(DRAIN, &mut send).await, Ok(Ok(Ok(())))),
                };
                if !sent {
                    metrics::counter!("authgraph_ws_closed_total", "code" => "dropped").increment(1);
                    return;
                }
                let mut t = tracked.lock().unwrap();
                if let Some(id) = finished {
                    t.active.remove(&id);
                }
                if ended.is_none()
                    && let Some(admitted) = &t.admitted
                {
                    ended = Some(admitted.registration.ended.clone());
                    expires_at = Some(admitted.expires_at);
                }
                if drain_until.is_some() && t.active.is_empty() {
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
                drain_until = Some(Instant::now() + DRAIN);
            }
        }
    };
    let (code, reason) = close.frame();
    metrics::counter!("authgraph_ws_closed_total", "code" => code.to_string()).increment(1);
    // The close frame gets the same deadline as any write.
    let _ = tokio::time::timeout(send_timeout, break_with(&mut sink, (code, reason.to_owned()))).await;
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

/// The close a failed read calls for: 1009 for a message over the limit, 4400 for
/// anything else the client sent wrong.
fn read_failure(err: &axum::Error) -> Close {
    let inner = std::error::Error::source(err).and_then(|e| e.downcast_ref::<tungstenite::Error>());
    match inner {
        Some(tungstenite::Error::Capacity(_)) => Close::TooBig,
        _ => Close::BadMessage,
    }
}

async fn break_with(sink: &mut futures_util::stream::SplitSink<WebSocket, Message>, (code, reason): (u16, String)) {
    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    let _ = sink.close().await;
}

/// What one turn of the socket's loop does, decided before anything is awaited.
enum Step {
    Send(String),
    Forward(u16, String),
    Stop,
    Close(Close),
    Drain,
}

enum Verdict {
    Pass(Vec<u8>),
    Skip,
    Refuse(Close),
}

/// Keeps the socket's limits on one client message: one subscription per id, at most
/// `max` at once; anything but the protocol's JSON closes with 4400.
fn inspect(tracked: &Mutex<Tracked>, bytes: &[u8], max: usize) -> Verdict {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(bytes) else {
        return Verdict::Refuse(Close::BadMessage);
    };
    let mut t = tracked.lock().unwrap();
    match (envelope.kind.as_ref(), envelope.id) {
        ("connection_init", _) => t.initialised = true,
        ("subscribe", Some(id)) => {
            if t.active.contains(id.as_ref()) {
                return Verdict::Refuse(Close::DuplicateId);
            }
            if t.active.len() >= max {
                return Verdict::Refuse(Close::TooMany);
            }
            t.active.insert(id.into_owned());
        }
        ("complete", Some(id)) => {
            t.active.remove(id.as_ref());
        }
        _ => {}
    }
    Verdict::Pass(bytes.to_vec())
}

/// The id of a server message that ends a subscription (`complete`, or `error`).
fn finished_id(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        kind: String,
        id: Option<String>,
    }
    let envelope: Envelope = serde_json::from_str(text).ok()?;
    matches!(envelope.kind.as_str(), "complete" | "error").then_some(envelope.id).flatten()
}

/// Checks `connection_init`'s token and session and registers the socket. What the
/// operations get is the socket's credentials, from which each is admitted anew.
async fn admit(
    http: &Http,
    payload: serde_json::Value,
    client: Client,
    unavailable: mpsc::UnboundedSender<()>,
) -> Result<(Data, Admitted), Close> {
    let state = &http.state;
    let value = payload
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")))
        .and_then(|(_, v)| v.as_str())
        .ok_or(Close::Unauthorized)?;
    let claims = bearer::verify(state, value).map_err(|reason| {
        tracing::debug!(reason, "socket refused at connection_init");
        Close::Unauthorized
    })?;
    let remaining = Duration::from_secs(u64::try_from(claims.exp - chrono::Utc::now().timestamp()).unwrap_or(0));
    let (user, session) = (claims.sub, claims.sid);
    // Registered before the session is checked: an end announced from here on reaches
    // the socket, so none can slip between the check and the registration.
    let max = state.config.realtime.max_sockets_per_user;
    let registration = state.events.sockets.register(user, session, max).map_err(|_| Close::TooMany)?;
    let credentials = Credentials { claims, client };
    // The session must be live; its second factor is each field's business (an AAL1
    // session may still call me or verifyMfa over the socket).
    match credentials.admit().caller(&state.auth).await {
        Ok(_) => {}
        Err(AppError::Unauthenticated(reason)) => {
            tracing::debug!(reason, "socket refused at connection_init");
            return Err(Close::Forbidden);
        }
        Err(err) => {
            tracing::warn!(error = ?err, "socket's session cannot be checked at connection_init");
            return Err(Close::Unavailable);
        }
    }
    let mut data = Data::default();
    data.insert(SocketSession { credentials, ended: registration.ended.clone(), unavailable });
    let admitted = Admitted { expires_at: Instant::now() + remaining, registration };
    Ok((data, admitted))
}
