//! The client's messages on their way to async-graphql: the socket's limits are kept
//! on each before the protocol sees it (one subscription per id, at most
//! `WS_MAX_SUBSCRIPTIONS_PER_SOCKET` at once, nothing but the protocol's JSON), and a
//! read that fails ends the input with the close it calls for.

use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{Stream, StreamExt, stream::SplitStream};
use tokio::sync::mpsc;

use super::{
    close::{Close, read_failure},
    tracked::Tracked,
};

/// The client's messages that pass, in order. A refusal or a failed read is sent on
/// `violations` (the loop closes the socket with it) and ends nothing by itself.
pub(super) fn filtered(
    stream: SplitStream<WebSocket>,
    tracked: Arc<Mutex<Tracked>>,
    violations: mpsc::UnboundedSender<Close>,
    max_subscriptions: usize,
) -> impl Stream<Item = Vec<u8>> + Send + 'static {
    let broken = violations.clone();
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
pub(super) fn finished_id(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        kind: String,
        id: Option<String>,
    }
    let envelope: Envelope = serde_json::from_str(text).ok()?;
    matches!(envelope.kind.as_str(), "complete" | "error").then_some(envelope.id).flatten()
}
