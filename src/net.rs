//! Address blocks, as `TRUSTED_PROXIES` names them: parsed by the configuration at
//! start and matched by the HTTP edge on every request. Below both, so the
//! configuration depends on no layer above it.

use std::net::IpAddr;

/// An address block, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    addr: IpAddr,
    prefix: u8,
}

impl IpBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
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
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `TRUSTED_PROXIES`: the blocks whose `X-Forwarded-For` is believed, parsed from a
/// comma-separated list (empty entries ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpBlocks(Vec<IpBlock>);

impl IpBlocks {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|b| b.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::str::FromStr for IpBlocks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_block).collect::<Result<_, _>>().map(Self)
    }
}

/// One block: `10.0.0.0/8`, `2001:db8::/32`, or a single address.
fn parse_block(item: &str) -> Result<IpBlock, String> {
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
}
