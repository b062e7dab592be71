//! The address a request came from. Behind a load balancer the TCP peer is the balancer, so
//! `Forwarded` (RFC 7239) or `X-Forwarded-For` name the client — but anyone can send those
//! headers, so they are read only when the peer is one of the configured `trusted_proxies`,
//! and then the right-most address that is not itself a trusted proxy is the client (each
//! proxy appends the address it saw; only what our own proxies appended can be believed).
//! Used by the audit trail and the logs, and by brute-force protection and rate limits.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap};
use ipnet::IpNet;

pub use crate::config::{ForwardedHeader, TrustedProxies};

/// The client's address for a request from `peer`.
pub fn client_ip(proxies: &TrustedProxies, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    let trusted = proxies.networks.as_slice();
    let peer = peer.ip();
    if !is_trusted(trusted, peer) {
        return peer;
    }
    // Only the header our proxies write: a client can send the other one, and a proxy that
    // does not know it passes it through untouched.
    let chain = match proxies.header {
        ForwardedHeader::Forwarded => forwarded_chain(headers),
        ForwardedHeader::XForwardedFor => x_forwarded_for_chain(headers),
    };
    // Right to left: skip our own proxies; the first other address is the client. Whatever
    // stands left of it was written by the client and is never read; an entry we cannot read
    // before reaching it leaves the last address we could vouch for.
    let mut candidate = peer;
    for addr in chain.iter().rev() {
        let Some(addr) = addr else {
            return candidate;
        };
        candidate = *addr;
        if !is_trusted(trusted, *addr) {
            break;
        }
    }
    candidate
}

fn is_trusted(trusted: &[IpNet], addr: IpAddr) -> bool {
    let addr = canonical(addr);
    trusted.iter().any(|net| net.contains(&addr))
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The `for=` addresses of every `Forwarded` header, in order (RFC 7239 §4, §5.2); `None`
/// for a node that is not an address (`unknown`, an obfuscated name).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all(header::FORWARDED) {
        let Ok(value) = value.to_str() else {
            chain.push(None);
            continue;
        };
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then_some(value.trim())
            });
            chain.push(node.and_then(|n| parse_node(n.trim_matches('"'))));
        }
    }
    chain
}

/// The addresses of every `X-Forwarded-For` header, in order; `None` as for `Forwarded`.
fn x_forwarded_for_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            chain.push(None);
            continue;
        };
        chain.extend(value.split(',').map(|node| parse_node(node.trim())));
    }
    chain
}

/// `192.0.2.60`, `192.0.2.60:4711`, `[2001:db8::17]`, `[2001:db8::17]:4711` or `2001:db8::17`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(addr) = node.parse::<IpAddr>() {
        return Some(canonical(addr));
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    let inner = node.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn nets(list: &[&str]) -> TrustedProxies {
        TrustedProxies {
            networks: list.iter().map(|n| n.parse().unwrap()).collect(),
            header: ForwardedHeader::XForwardedFor,
        }
    }

    fn forwarded(list: &[&str]) -> TrustedProxies {
        TrustedProxies {
            header: ForwardedHeader::Forwarded,
            ..nets(list)
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn headers_from_an_untrusted_peer_change_nothing() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=198.51.100.1"),
        ]);
        assert_eq!(
            client_ip(&nets(&[]), &h, peer("192.0.2.1")),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&trusted, &h, peer("192.0.2.1")).to_string(),
            "192.0.2.1"
        );
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged the left-most entry; our proxies appended the rest.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.0.0.5")]);
        assert_eq!(
            client_ip(&trusted, &h, peer("10.0.0.9")).to_string(),
            "203.0.113.7"
        );
        // Several headers are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.8"),
        ]);
        assert_eq!(
            client_ip(&trusted, &h, peer("10.0.0.9")).to_string(),
            "203.0.113.8"
        );
    }

    #[test]
    fn only_the_configured_header_is_read_and_forwarded_is_understood_rfc7239() {
        let h = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.2",
            ),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        // Proxies that write X-Forwarded-For: a client's own Forwarded header is ignored.
        assert_eq!(
            client_ip(&nets(&["10.0.0.0/8"]), &h, peer("10.0.0.9")).to_string(),
            "203.0.113.7"
        );
        let trusted = forwarded(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&trusted, &h, peer("10.0.0.9")).to_string(),
            "2001:db8:cafe::17"
        );
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;by=10.0.0.1")]);
        assert_eq!(
            client_ip(&trusted, &h, peer("10.0.0.9")).to_string(),
            "192.0.2.60"
        );
    }

    #[test]
    fn what_stands_left_of_the_client_is_never_read() {
        let trusted = nets(&["10.0.0.0/8"]);
        // Garbage the client prepended cannot hide its address…
        let h = headers(&[("x-forwarded-for", "not-an-ip, 203.0.113.7, 10.0.0.5")]);
        assert_eq!(
            client_ip(&trusted, &h, peer("10.0.0.9")).to_string(),
            "203.0.113.7"
        );
        // …but an entry we cannot read before reaching the client leaves the last address
        // we can vouch for.
        for h in [
            headers(&[("x-forwarded-for", "203.0.113.7, not-an-ip")]),
            headers(&[]),
        ] {
            assert_eq!(
                client_ip(&trusted, &h, peer("10.0.0.9")).to_string(),
                "10.0.0.9"
            );
        }
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(
            client_ip(&forwarded(&["10.0.0.0/8"]), &h, peer("10.0.0.9")).to_string(),
            "10.0.0.9"
        );
    }

    #[test]
    fn all_trusted_means_the_left_most_and_mapped_ipv4_is_ipv4() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        let h = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.4")]);
        assert_eq!(
            client_ip(&trusted, &h, peer("10.0.0.9")).to_string(),
            "10.0.0.3"
        );
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            client_ip(&trusted, &h, peer("::ffff:127.0.0.1")).to_string(),
            "203.0.113.7"
        );
    }
}
