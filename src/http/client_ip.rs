//! The client's IP address, for rate limits.
//!
//! By default it is the TCP peer. Behind a load balancer every peer is the balancer,
//! so `TRUSTED_PROXIES` names the proxies whose `X-Forwarded-For` is believed: the
//! client is then the right-most address in that header that is not itself a trusted
//! proxy. Anything a client could write itself (the left part of the header) is never
//! taken on trust.

use std::net::{IpAddr, SocketAddr};

pub use crate::net::IpBlocks;
use crate::net::canonical;

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::Response,
};

/// Set on every request by `layer`; `None` when the peer is unknown (in-process tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

/// The client address of a request from `peer` carrying `forwarded_for`.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &IpBlocks) -> Option<IpAddr> {
    let peer = peer.map(canonical)?;
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let Some(header) = forwarded_for else {
        return Some(peer);
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>().map(canonical) else {
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    Some(client)
}

/// Middleware that records `ClientIp` for the handlers.
pub async fn layer(State(trusted): State<std::sync::Arc<IpBlocks>>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let ip = client_ip(peer, forwarded, &trusted);
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: IpBlocks = "10.0.0.0/8, ::1".parse().unwrap();
        // Untrusted peer: the header is ignored, whatever it says.
        assert_eq!(client_ip(Some(ip("203.0.113.9")), Some("1.2.3.4"), &trusted), Some(ip("203.0.113.9")));
        // Trusted peer: the right-most untrusted hop is the client.
        let xff = Some("6.6.6.6, 198.51.100.7, 10.1.2.3");
        assert_eq!(client_ip(Some(ip("10.0.0.1")), xff, &trusted), Some(ip("198.51.100.7")));
        assert_eq!(client_ip(Some(ip("::ffff:10.0.0.1")), Some("198.51.100.7"), &trusted), Some(ip("198.51.100.7")));
        assert_eq!(client_ip(Some(ip("10.0.0.1")), Some("garbage"), &trusted), Some(ip("10.0.0.1")));
        assert_eq!(client_ip(None, xff, &trusted), None);
    }

    #[test]
    fn bad_proxy_entries_are_refused() {
        assert!("10.0.0.0/33".parse::<IpBlocks>().is_err());
        assert!("::1, proxy.internal".parse::<IpBlocks>().is_err());
        assert!("".parse::<IpBlocks>().unwrap().is_empty());
    }
}
