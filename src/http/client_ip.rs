//! The address a request came from. Behind a load balancer the TCP peer is the balancer, so
//! `Forwarded` (RFC 7239) or `X-Forwarded-For` name the client — but anyone can send those
//! headers, so they are read only when the peer is one of the configured `trusted_proxies`,
//! and then the right-most address that is not itself a trusted proxy is the client (each
//! proxy appends the address it saw; only what our own proxies appended can be believed).
//! Used by the audit trail and the logs, and by brute-force protection and rate limits.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap};
use ipnet::IpNet;

/// The client's address for a request from `peer`.
pub fn client_ip(trusted: &[IpNet], headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    let peer = peer.ip();
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let chain = forwarded_chain(headers).or_else(|| x_forwarded_for_chain(headers));
    let Some(chain) = chain else {
        return peer;
    };
    // Right to left: skip our own proxies; the first other address is the client.
    let mut candidate = peer;
    for addr in chain.iter().rev() {
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

/// The `for=` addresses of every `Forwarded` header, in order (RFC 7239 §4, §5.2). `None` if
/// there is none, or one that is not an address (`unknown`, an obfuscated name): a chain we
/// cannot read whole is not believed at all.
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all(header::FORWARDED) {
        let value = value.to_str().ok()?;
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then_some(value.trim())
            })?;
            chain.push(parse_node(node.trim_matches('"'))?);
        }
    }
    (!chain.is_empty()).then_some(chain)
}

/// The addresses of every `X-Forwarded-For` header, in order; `None` as for `Forwarded`.
fn x_forwarded_for_chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for node in value.to_str().ok()?.split(',') {
            chain.push(parse_node(node.trim())?);
        }
    }
    (!chain.is_empty()).then_some(chain)
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

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
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
            client_ip(&[], &h, peer("192.0.2.1")),
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
    fn forwarded_wins_and_understands_ports_quotes_and_ipv6_rfc7239() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.2",
            ),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
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
    fn an_unreadable_chain_is_not_believed() {
        let trusted = nets(&["10.0.0.0/8"]);
        for h in [
            headers(&[("forwarded", "for=unknown")]),
            headers(&[("x-forwarded-for", "203.0.113.7, not-an-ip")]),
            headers(&[]),
        ] {
            assert_eq!(
                client_ip(&trusted, &h, peer("10.0.0.9")).to_string(),
                "10.0.0.9"
            );
        }
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
