//! Integration tests: the real router (or the real binary) over real PostgreSQL.
//! One test binary, so the whole suite shares one throwaway cluster.

mod support;

mod accounts;
mod admin;
mod audit;
mod auth_flow;
mod brute_force;
mod cookies;
mod database_tls;
mod email;
mod events;
mod exhaustion;
mod exhaustion_http;
mod factors;
mod failover;
mod failover_cluster;
mod foundation;
mod graphql_over_http;
mod mailboxes;
mod operations;
mod passkeys;
mod production;
mod proxy;
mod realtime;
mod refresh;
mod schema;
mod security;
mod server_process;
mod session_cache;
mod session_races;
mod social;
mod socket_door;
mod users;
