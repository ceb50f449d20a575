//! The client's address: the socket peer, unless the peer is a trusted
//! reverse proxy (`tracking.trusted_proxies`); then the forwarding headers
//! it appended are believed, read from the right (nearest hop) to the left,
//! and the client is the right-most address that is not itself trusted.
//! Addresses to the left of it were written by the client or by proxies we
//! do not trust, so they are never believed (a client can put anything
//! there).
//!
//! `X-Forwarded-For` is read when present (every such header, in order),
//! else `Forwarded: for=` (RFC 7239). An entry that is not an address
//! (`unknown`, an obfuscated `_id`, garbage) stops the walk: the last
//! address believed so far is used.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use ipnet::IpNet;

/// The client address of a request from `peer` with `headers`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = forwarded_hops(headers);
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// The hop list, left (client side) to right (nearest proxy).
fn forwarded_hops(headers: &HeaderMap) -> Vec<String> {
    let xff: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(forwarded_for)
        .collect()
}

/// The `for=` value of one Forwarded element, quotes removed.
fn forwarded_for(element: &str) -> Option<String> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// An address, with or without a port: `1.2.3.4`, `1.2.3.4:80`, `::1`,
/// `[::1]`, `[::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn trusted() -> Vec<IpNet> {
        vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            resolve(ip("203.0.113.9"), &h, &trusted()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_peer_gives_the_rightmost_untrusted_hop() {
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted()), ip("198.51.100.7"));
    }

    #[test]
    fn all_trusted_hops_give_the_leftmost() {
        let h = headers(&[("x-forwarded-for", "10.2.2.2, 10.1.1.1")]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted()), ip("10.2.2.2"));
    }

    #[test]
    fn trusted_peer_without_headers_is_the_client() {
        assert_eq!(
            resolve(ip("127.0.0.1"), &HeaderMap::new(), &trusted()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn forwarded_header_with_ports_quotes_and_v6() {
        let h = headers(&[(
            "forwarded",
            r#"for="[2001:db8::1]:4711";proto=https, For=10.0.0.5"#,
        )]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("2001:db8::1"));
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;by=10.0.0.1")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("192.0.2.60"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_believed_address() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4, unknown, 10.3.3.3")]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted()), ip("10.3.3.3"));
    }

    #[test]
    fn v4_mapped_peer_is_canonical() {
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &h, &trusted()),
            ip("198.51.100.7")
        );
    }
}
