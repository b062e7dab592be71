//! Source addresses as limits count them, shared by the HTTP layer (rate limits) and the
//! protocol rules (login throttling).

use std::net::IpAddr;

/// The key for a source address: an IPv6 host usually holds a whole /64, so it counts as
/// one; IPv4 addresses count alone.
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}
