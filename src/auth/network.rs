//! A client's address as the limits count it: an IPv4 address, or the IPv6 network
//! around the address.
//!
//! One IPv6 host is usually given a whole /64 (and often a /56 or /48), so counting
//! IPv6 clients per address would let one attacker count as billions of clients.
//! IPv4 addresses are counted one by one; an IPv4-mapped IPv6 address is IPv4.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
};

/// Prefix length for IPv6 clients unless configured (`RATE_LIMIT_IPV6_PREFIX`).
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// The network `ip` is counted in, with IPv6 addresses grouped by `ipv6_prefix`
    /// bits (1–128).
    pub fn of(ip: IpAddr, ipv6_prefix: u8) -> Self {
        match ip {
            IpAddr::V4(v4) => Self { address: IpAddr::V4(v4), prefix: 32 },
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self { address: IpAddr::V4(v4), prefix: 32 },
                None => {
                    let prefix = ipv6_prefix.clamp(1, 128);
                    let mask = u128::MAX << (128 - u32::from(prefix));
                    Self { address: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)), prefix }
                }
            },
        }
    }
}

/// `203.0.113.7` for IPv4, `2001:db8:1:2::/64` for IPv6: the key the counters use.
impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/{}", self.prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(ip: &str, prefix: u8) -> String {
        Network::of(ip.parse().unwrap(), prefix).to_string()
    }

    #[test]
    fn ipv6_addresses_of_one_network_count_as_one() {
        assert_eq!(net("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64");
        assert_eq!(net("2001:db8:1:2:ffff:ffff:ffff:ffff", 64), "2001:db8:1:2::/64");
        assert_ne!(net("2001:db8:1:3::1", 64), net("2001:db8:1:2::1", 64));
        assert_eq!(net("2001:db8:1:3::1", 48), "2001:db8:1::/48");
        assert_eq!(net("2001:db8::1", 128), "2001:db8::1/128");
    }

    #[test]
    fn ipv4_counts_per_address_also_when_mapped() {
        assert_eq!(net("203.0.113.7", 64), "203.0.113.7");
        assert_eq!(net("::ffff:203.0.113.7", 64), "203.0.113.7");
        assert_ne!(net("203.0.113.7", 64), net("203.0.113.8", 64));
    }
}
