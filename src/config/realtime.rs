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

    /// Largest WebSocket message a client may send, in bytes.
    #[arg(long, env = "WS_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub max_message_bytes: usize,
}
