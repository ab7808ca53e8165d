//! authgraph: a GraphQL server for accounts and sessions.
//!
//! Request flow, one module per layer:
//! `http` (router, middleware, bearer token, the WebSocket door) → `graphql` (thin
//! resolvers, the guard, each socket operation's admission) → the capabilities, each
//! a folder of its flows: `users` (accounts), `email` (verification, reset, change of
//! address), `factors` (TOTP, recovery codes, passkeys), `social` (other identity providers) → `auth` (what they share: tokens,
//! sessions, admission, limits, password hashing) → `change` (where every change to
//! accounts and sessions runs, and its effects after commit) → `events` (the LISTEN
//! connection, the hub, live sessions' sockets), `session_cache` and `mail` (tokens,
//! messages, the outbox and its sender) → `db` (Diesel schema, models, queries) →
//! PostgreSQL, either the one in `DATABASE_URL` or a private cluster started by
//! `embedded_postgres`. `server` wires them together for the binary. Leaves that any
//! layer may use: `email_address` (the one parser of addresses), `net`, `secret`,
//! `error`, `config`. `audit` chains and verifies the trail the database's triggers write.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod change;
pub mod config;
pub mod db;
pub mod email;
pub mod email_address;
pub mod embedded_postgres;
pub mod error;
pub mod events;
pub mod factors;
pub mod graphql;
pub mod http;
pub mod mail;
pub mod maintenance;

pub mod net;
pub mod secret;
pub mod server;
pub mod session_cache;
pub mod social;
pub mod telemetry;
pub mod users;
