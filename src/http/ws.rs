//! GraphQL subscriptions over WebSockets: the graphql-transport-ws protocol on
//! `GET /graphql` (the `graphql-ws` library's, which Apollo Client's GraphQLWsLink and
//! urql's subscriptionExchange speak), with async-graphql running the protocol and this
//! module holding the socket to its session.
//!
//! `connection_init` carries `{"Authorization": "Bearer <accessToken>"}`; the token is
//! verified and its session checked as the guard does, and the socket is registered
//! under that session (`events::sockets`). The socket closes with
//! - 4401 when the token is missing, bad or expired at init, or expires later (the
//!   client reconnects with a fresh one);
//! - 4403 when its session ends, on whichever instance: after its subscriptions have
//!   delivered `SESSION_ENDED` (and completed), or at once if it has none;
//! - 4408 without `connection_init` within `WS_INIT_TIMEOUT`;
//! - 4409 for a subscription id already in use, 4429 for too many subscriptions on the
//!   socket or too many sockets of the account (`WS_MAX_*`), 4400 for a message that
//!   is not the protocol's;
//! - 1001 when the server shuts down.

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
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};

use super::{Http, bearer};
use crate::{
    auth::{Client, RequestAuth},
    error::code,
    events::sockets::Registration,
    graphql::subscription::SocketSession,
};

/// The one subprotocol spoken.
const PROTOCOL: &str = "graphql-transport-ws";
/// How long a socket whose session ended waits for its subscriptions to send
/// `SESSION_ENDED` and complete before it closes anyway.
const DRAIN: Duration = Duration::from_secs(1);

/// `GET /graphql` with `Upgrade: websocket`.
pub(crate) fn upgrade(http: Http, headers: &HeaderMap, ip: Option<IpAddr>, ws: WebSocketUpgrade) -> Response {
    // A browser names the page's origin; a page of another site must not open a socket
    // with a token it got hold of. Non-browser clients send no Origin.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed =
            origin.to_str().is_ok_and(|o| http.state.config.cors_origins.contains(o) || same_host(o, headers));
        if !allowed {
            return super::request_error(StatusCode::FORBIDDEN, code::FORBIDDEN, "This origin may not open a socket");
        }
    }
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let client = Client { user_agent, ip, ..Client::default() };
    let max = http.state.config.realtime.max_message_bytes;
    ws.protocols([PROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve(http, socket, client))
}

/// A page served by this server (GraphiQL) opens sockets from its own origin.
fn same_host(origin: &str, headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    host.is_some_and(|h| origin_host == Some(h))
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
            Self::GoingAway => (1001, "Server shutting down"),
        }
    }
}

/// What `connection_init` established, for the loop.
struct Admitted {
    expires_at: tokio::time::Instant,
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

async fn serve(http: Http, socket: WebSocket, client: Client) {
    metrics::counter!("authgraph_ws_connections_total").increment(1);
    let (mut sink, stream) = socket.split();
    let tracked = Arc::new(Mutex::new(Tracked::default()));
    let (violations, mut violated) = mpsc::unbounded_channel::<Close>();
    let max_subscriptions = http.state.config.realtime.max_subscriptions_per_socket;

    // Client messages pass through here first: the limits of the socket are kept
    // before async-graphql sees a message.
    let input = {
        let tracked = tracked.clone();
        stream.take_while(|m| std::future::ready(m.is_ok())).filter_map(move |message| {
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
            match admit(&http, payload, client).await {
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
    let mut drain_until: Option<tokio::time::Instant> = None;

    let close = loop {
        let (initialised, session_over) = (tracked.lock().unwrap().initialised, ended.as_ref().map(|rx| *rx.borrow()));
        let mut watching = ended.clone();
        let draining = drain_until.is_some();
        let ended_changed = async move {
            match (&mut watching, session_over) {
                (Some(rx), Some(false)) => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await
                    }
                }
                (Some(_), Some(true)) if !draining => {}
                _ => std::future::pending::<()>().await,
            }
        };
        let expiry = async {
            match expires_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let drained = async {
            match drain_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let step = tokio::select! {
            outgoing = protocol.next() => match outgoing {
                Some(WsMessage::Text(text)) => Step::Send(text),
                Some(WsMessage::Close(code, reason)) => Step::Forward(code, reason),
                None => Step::Stop,
            },
            Some(close) = violated.recv() => Step::Close(close),
            () = &mut init_deadline, if !initialised => Step::Close(Close::InitTimeout),
            () = expiry => Step::Close(Close::Unauthorized),
            () = ended_changed => Step::Drain,
            () = drained => Step::Close(Close::Forbidden),
            _ = stopping.wait_for(|s| *s) => Step::Close(Close::GoingAway),
        };
        match step {
            Step::Send(text) => {
                let finished = finished_id(&text);
                if sink.send(Message::Text(text.into())).await.is_err() {
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
            Step::Stop => return,
            Step::Close(close) => break close,
            // The session ended: let the subscriptions say so, then close.
            Step::Drain => {
                if tracked.lock().unwrap().active.is_empty() {
                    break Close::Forbidden;
                }
                drain_until = Some(tokio::time::Instant::now() + DRAIN);
            }
        }
    };
    let (code, reason) = close.frame();
    metrics::counter!("authgraph_ws_closed_total", "code" => code.to_string()).increment(1);
    break_with(&mut sink, (code, reason.to_owned())).await;
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

/// Checks `connection_init`'s token and session and registers the socket.
async fn admit(http: &Http, payload: serde_json::Value, client: Client) -> Result<(Data, Admitted), Close> {
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
    let auth = Arc::new(RequestAuth::new(Some(Ok(claims)), client));
    if auth.caller(&state.auth).await.is_err() {
        return Err(Close::Forbidden);
    }
    let mut data = Data::default();
    data.insert(auth);
    data.insert(SocketSession { ended: registration.ended.clone() });
    let admitted = Admitted { expires_at: tokio::time::Instant::now() + remaining, registration };
    Ok((data, admitted))
}
