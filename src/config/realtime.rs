//! The settings of GraphQL subscriptions over WebSockets: how long a socket may take
//! to authenticate and how much one account and one socket may hold open. A group of
//! its own, flattened into `Config`.

use std::time::Duration;

use clap::Args;

use super::values;

#[derive(Debug, Clone, Args)]
pub struct RealtimeConfig {
    /// A socket that sends no connection_init within this time is closed with 4408.
    #[arg(long, env = "WS_INIT_TIMEOUT", default_value = "10s", value_parser = values::parse_duration)]
    pub init_timeout: Duration,

    /// Open sockets per account, across its sessions, on one instance; more are
    /// refused at connection_init with 4429.
    #[arg(long, env = "WS_MAX_SOCKETS_PER_USER", default_value_t = 10)]
    pub max_sockets_per_user: usize,

    /// Subscriptions at once on one socket; one more closes the socket with 4429.
    #[arg(long, env = "WS_MAX_SUBSCRIPTIONS_PER_SOCKET", default_value_t = 5)]
    pub max_subscriptions_per_socket: usize,

    /// Sockets at once on one instance that have not passed connection_init yet; more
    /// are refused at the upgrade with 503. They hold a connection's place and little
    /// memory, and close at WS_INIT_TIMEOUT, but a flood of them must not crowd out
    /// the signed-in.
    #[arg(long, env = "WS_MAX_UNAUTHENTICATED", default_value_t = 1_000)]
    pub max_unauthenticated: usize,

    /// How long one message to a client may take to be written; a client that does not
    /// read for this long is disconnected (its token's expiry, its session's end and
    /// shutdown are watched while a write waits, too).
    #[arg(long, env = "WS_SEND_TIMEOUT", default_value = "10s", value_parser = values::parse_duration)]
    pub send_timeout: Duration,

    /// Largest WebSocket message a client may send, in bytes.
    #[arg(long, env = "WS_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub max_message_bytes: usize,
}
