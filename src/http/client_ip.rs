//! The client's IP address, for rate limits.
//!
//! By default it is the TCP peer. Behind a load balancer every peer is the balancer,
//! so `TRUSTED_PROXIES` names the proxies whose `X-Forwarded-For` is believed: the
//! client is then the right-most address in that header that is not itself a trusted
//! proxy. Anything a client could write itself (the left part of the header) is never
//! taken on trust.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::Response,
};

/// Set on every request by `layer`; `None` when the peer is unknown (in-process tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

/// An address block, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    addr: IpAddr,
    prefix: u8,
}

impl IpBlock {
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4 clients may arrive as IPv4-mapped IPv6 on a dual-stack socket.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses `TRUSTED_PROXIES`.
pub fn parse_proxies(items: &[String]) -> Result<Vec<IpBlock>, String> {
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|item| {
            let bad = || format!("{item:?} is not an IP address or CIDR block");
            let (addr, prefix) = match item.split_once('/') {
                Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
                None => (item, None),
            };
            let addr = canonical(addr.parse::<IpAddr>().map_err(|_| bad())?);
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = prefix.unwrap_or(max);
            if prefix > max {
                return Err(bad());
            }
            Ok(IpBlock { addr, prefix })
        })
        .collect()
}

/// The client address of a request from `peer` carrying `forwarded_for`.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpBlock]) -> Option<IpAddr> {
    let peer = peer.map(canonical)?;
    if !trusted.iter().any(|b| b.contains(peer)) {
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
        if !trusted.iter().any(|b| b.contains(ip)) {
            break;
        }
    }
    Some(client)
}

/// Middleware that records `ClientIp` for the handlers.
pub async fn layer(State(trusted): State<std::sync::Arc<Vec<IpBlock>>>, mut req: Request, next: Next) -> Response {
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
        let trusted = parse_proxies(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
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
        assert!(parse_proxies(&["10.0.0.0/33".into()]).is_err());
        assert!(parse_proxies(&["proxy.internal".into()]).is_err());
        assert_eq!(parse_proxies(&["".into()]).unwrap(), vec![]);
    }
}
