//! `POST /graphql` requests for the tests: built in one place, sent at once or put in
//! flight together (the attack tests send many at the same moment).

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{Request, header},
};
use serde_json::{Value, json};

/// One GraphQL request over `POST /graphql`, with what a client or a proxy may add.
#[derive(Debug, Clone)]
pub struct Gql {
    body: Value,
    token: Option<String>,
    peer: Option<String>,
    forwarded_for: Option<String>,
    user_agent: Option<String>,
}

impl Gql {
    /// A request of any JSON body (one operation, a batch, an APQ request).
    pub fn body(body: Value) -> Self {
        Self { body, token: None, peer: None, forwarded_for: None, user_agent: None }
    }

    /// `{ query, variables }`.
    pub fn query(query: &str, variables: Value) -> Self {
        Self::body(json!({ "query": query, "variables": variables }))
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// As if it came from TCP peer `ip` (what the rate limits count).
    pub fn peer(mut self, ip: &str) -> Self {
        self.peer = Some(ip.to_owned());
        self
    }

    /// `X-Forwarded-For`, believed only from a trusted proxy.
    pub fn forwarded_for(mut self, value: &str) -> Self {
        self.forwarded_for = Some(value.to_owned());
        self
    }

    /// `User-Agent`, which sessions opened by the request record.
    pub fn user_agent(mut self, value: &str) -> Self {
        self.user_agent = Some(value.to_owned());
        self
    }

    pub fn build(self) -> Request<Body> {
        let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(forwarded) = &self.forwarded_for {
            req = req.header("x-forwarded-for", forwarded);
        }
        if let Some(agent) = &self.user_agent {
            req = req.header(header::USER_AGENT, agent);
        }
        let mut req = req.body(Body::from(self.body.to_string())).unwrap();
        if let Some(ip) = &self.peer {
            let peer: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        req
    }
}
