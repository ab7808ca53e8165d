//! A graphql-transport-ws client over a real WebSocket (tokio-tungstenite), and a test
//! app served on a loopback port for it.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

use super::{Background, TestApp};

/// What the server sent next.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Message(Value),
    /// The close frame's code and reason (1006 when the connection just dropped).
    Closed(u16, String),
}

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

/// Opens a socket to `ws://addr/graphql` speaking graphql-transport-ws, with an
/// `Origin` header when given.
pub async fn connect(addr: &str, origin: Option<&str>) -> Result<WsClient, tungstenite::Error> {
    let mut request = format!("ws://{addr}/graphql").into_client_request()?;
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().unwrap());
    }
    let (socket, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(response.headers()["sec-websocket-protocol"], "graphql-transport-ws");
    Ok(WsClient { socket })
}

/// The HTTP status of an upgrade the server refused (`connect`'s error); panics on any
/// other failure, so a test of a refusal cannot pass on a connection that failed.
pub fn refused_with(err: tungstenite::Error) -> u16 {
    match err {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal of the upgrade, got {other:?}"),
    }
}

impl WsClient {
    pub async fn send(&mut self, message: Value) {
        self.socket.send(Message::Text(message.to_string().into())).await.unwrap();
    }

    /// Sends connection_init with `Authorization: Bearer <token>` (no payload without one).
    pub async fn init(&mut self, token: Option<&str>) {
        let payload = token.map(|t| json!({ "Authorization": format!("Bearer {t}") }));
        self.send(json!({ "type": "connection_init", "payload": payload })).await;
    }

    /// Inits and expects the ack.
    pub async fn admitted(&mut self, token: &str) {
        self.init(Some(token)).await;
        assert_eq!(self.next().await, Incoming::Message(json!({ "type": "connection_ack" })));
    }

    pub async fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": query } })).await;
    }

    /// The next text message or the close, skipping pings; fails after 10 s.
    pub async fn next(&mut self) -> Incoming {
        let wait = async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(text))) => return Incoming::Message(serde_json::from_str(&text).unwrap()),
                    Some(Ok(Message::Close(frame))) => {
                        return frame.map_or(Incoming::Closed(1005, String::new()), |f| {
                            Incoming::Closed(u16::from(f.code), f.reason.to_string())
                        });
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Incoming::Closed(u16::from(CloseCode::Abnormal), String::new()),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait).await.expect("a message or a close within 10 s")
    }

    /// Waits for the close, skipping messages; its code.
    pub async fn closed(&mut self) -> u16 {
        loop {
            if let Incoming::Closed(code, _) = self.next().await {
                return code;
            }
        }
    }

    /// Runs a query or mutation over the socket as operation `id`: its result (the
    /// `next` payload, `data` and `errors`), once the operation completed; or the close
    /// that came instead.
    pub async fn execute(&mut self, id: &str, query: &str, variables: Value) -> Result<Value, u16> {
        let payload = json!({ "query": query, "variables": variables });
        self.send(json!({ "type": "subscribe", "id": id, "payload": payload })).await;
        let result = match self.next().await {
            Incoming::Message(m) if m["type"] == "next" && m["id"] == id => m["payload"].clone(),
            Incoming::Message(m) if m["type"] == "error" && m["id"] == id => {
                return Ok(json!({ "errors": m["payload"] }));
            }
            Incoming::Closed(code, _) => return Err(code),
            other => panic!("expected the result of {id}, got {other:?}"),
        };
        assert_eq!(self.next().await, Incoming::Message(json!({ "type": "complete", "id": id })));
        Ok(result)
    }

    /// The next `next` payload's data of subscription `id`, skipping nothing.
    pub async fn event(&mut self, id: &str) -> Value {
        match self.next().await {
            Incoming::Message(m) if m["type"] == "next" && m["id"] == id => m["payload"]["data"].clone(),
            other => panic!("expected an event of {id}, got {other:?}"),
        }
    }
}

/// A subscription to an account's session events at `ws://addr/graphql`, opened again
/// when the server closes it with a code a client retries (as graphql-ws does).
pub struct Watch {
    addr: String,
    token: String,
    socket: WsClient,
}

impl Watch {
    pub async fn open(addr: &str, token: &str) -> Self {
        let mut socket = connect(addr, None).await.unwrap();
        socket.admitted(token).await;
        socket.subscribe("1", "subscription { sessionEvents { kind sessionId } }").await;
        Self { addr: addr.to_owned(), token: token.to_owned(), socket }
    }

    /// Waits for the event of the session `end` ends (it returns its id). A close on
    /// the way must be one clients retry (1001 going away, 1012 restart, 1013 try again
    /// later): the subscription is opened again and a new session ended for it.
    /// Returns the codes it was closed with.
    pub async fn ended(&mut self, end: impl AsyncFn() -> String) -> Vec<u16> {
        let mut closes = Vec::new();
        let mut session = end().await;
        loop {
            match self.socket.next().await {
                Incoming::Message(m) if m["payload"]["data"]["sessionEvents"]["sessionId"] == session.as_str() => {
                    return closes;
                }
                Incoming::Message(_) => continue,
                Incoming::Closed(code, reason) => {
                    assert!([1001, 1012, 1013].contains(&code), "closed with {code} {reason}: not retried");
                    closes.push(code);
                    *self = Self::open(&self.addr, &self.token).await;
                    session = end().await;
                }
            }
        }
    }
}

/// The app served on a loopback port, as the server serves it; stopped when dropped.
pub struct Served {
    pub addr: String,
    _server: Background,
}

impl TestApp {
    pub async fn serve(&self) -> Served {
        self.serve_with(1000).await
    }

    /// Served with at most `max_connections` connections (sockets included) at once.
    pub async fn serve_with(&self, max_connections: usize) -> Served {
        serve_router(self.router.clone(), max_connections).await
    }
}

/// A router served on a loopback port as the server serves it, with at most
/// `max_connections` connections (sockets included) at once.
pub async fn serve_router(router: axum::Router, max_connections: usize) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let limits = authgraph::http::serve::ConnectionLimits {
        header_timeout: Duration::from_secs(10),
        keepalive_timeout: Duration::from_secs(10),
        max_connections,
    };
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        authgraph::http::serve::serve(listener, router, limits, shutdown).await.unwrap();
    });
    Served { addr, _server: Background::new(stop, task) }
}
