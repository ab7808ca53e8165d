//! authgraph: a GraphQL server for accounts and sessions.
//!
//! Request flow, one module per layer:
//! `http` (router, middleware, bearer token) → `graphql` (thin resolvers, guard) →
//! `auth` and `users` (rules, transactions) → `change` (where every change to accounts
//! and sessions runs, and its effects after commit) → `events` (the LISTEN connection,
//! the hub, the session cache, sockets) and `mail` (tokens, messages, the outbox and
//! its sender) → `db` (Diesel schema, models, queries) →
//! PostgreSQL, either the one in `DATABASE_URL` or a private cluster started by
//! `embedded_postgres`. `server` wires them together for the binary. Leaves that any
//! layer may use: `email_address` (the one parser of addresses), `net`, `secret`,
//! `error`, `config`.

pub mod admin;
pub mod app;
pub mod auth;
pub mod change;
pub mod config;
pub mod db;
pub mod email_address;
pub mod embedded_postgres;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod mail;
pub mod maintenance;
pub mod mfa;
pub mod net;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod users;
