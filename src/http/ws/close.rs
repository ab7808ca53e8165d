//! Why a socket closes, and how: graphql-transport-ws's close codes and ours, the close
//! a failed read calls for, and the close frame's write.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;

/// Why a socket closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
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
    pub(super) fn frame(self) -> (u16, &'static str) {
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

/// The close a failed read calls for: 1009 for a message over the limit, 4400 for
/// anything else the client sent wrong.
pub(super) fn read_failure(err: &axum::Error) -> Close {
    let inner = std::error::Error::source(err).and_then(|e| e.downcast_ref::<tungstenite::Error>());
    match inner {
        Some(tungstenite::Error::Capacity(_)) => Close::TooBig,
        _ => Close::BadMessage,
    }
}

pub(super) async fn break_with(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    (code, reason): (u16, String),
) {
    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    let _ = sink.close().await;
}
