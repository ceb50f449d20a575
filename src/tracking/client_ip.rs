//! The client's address: the socket peer, unless the peer is a trusted
//! reverse proxy (`tracking.trusted_proxies`); then the forwarding header
//! it appended is believed, read from the right (nearest hop) to the left,
//! and the client is the right-most address that is not itself trusted.
//! Addresses to the left of it were written by the client or by proxies we
//! do not trust, so they are never believed (a client can put anything
//! there).
//!
//! Only ONE header family is read, the one `tracking.client_ip_header`
//! names: `X-Forwarded-For` (default, every such header in order) or
//! `Forwarded: for=` (RFC 7239). The other family is ignored even when it
//! is the only one present: the proxy appends to one of them, and a client
//! can write the other freely (a `Forwarded: for=6.6.6.6` sent by the
//! client must not win over what the proxy put in `X-Forwarded-For`).
//!
//! A malformed header (not UTF-8, an entry that is not an address, such as
//! `unknown`, an obfuscated `_id` or garbage) is not believed at all: the
//! client is then the peer, and the reason is logged at debug.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use ipnet::IpNet;

// The enum is the config's (`tracking.client_ip_header`): `config` cannot
// depend on `tracking`, which reads the route registry built from it.
pub use crate::config::ForwardedHeader;

/// The client address of a request from `peer` with `headers`.
pub fn resolve(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    family: ForwardedHeader,
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = match hops(headers, family) {
        Ok(hops) => hops,
        Err(why) => {
            tracing::debug!(%peer, header = family.header_name(), why, "malformed forwarding header; using the peer address");
            return peer;
        }
    };
    // All hops trusted: the left-most is the client (or the peer without hops).
    let mut client = peer;
    for ip in hops.into_iter().rev() {
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// The hop list of `family`, left (client side) to right (nearest proxy),
/// or why the header is not believed.
fn hops(headers: &HeaderMap, family: ForwardedHeader) -> Result<Vec<IpAddr>, &'static str> {
    let mut out = Vec::new();
    for value in headers.get_all(family.header_name()) {
        let text = value.to_str().map_err(|_| "not visible ASCII")?;
        for element in text.split(',') {
            let hop = match family {
                ForwardedHeader::XForwardedFor => element.trim(),
                ForwardedHeader::Forwarded => {
                    forwarded_for(element).ok_or("an element without for=")?
                }
            };
            out.push(parse_hop(hop).ok_or("an entry that is not an address")?);
        }
    }
    Ok(out)
}

/// The `for=` value of one Forwarded element, quotes removed.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
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
    use hyper::header::{HeaderName, HeaderValue};

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
    const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
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

    fn resolve_xff(peer: &str, h: &HeaderMap) -> IpAddr {
        resolve(ip(peer), h, &trusted(), XFF)
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", b"1.1.1.1")]);
        assert_eq!(resolve_xff("203.0.113.9", &h), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_gives_the_rightmost_untrusted_hop() {
        let h = headers(&[
            ("x-forwarded-for", b"6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", b"10.1.1.1"),
        ]);
        assert_eq!(resolve_xff("127.0.0.1", &h), ip("198.51.100.7"));
    }

    #[test]
    fn all_trusted_hops_give_the_leftmost() {
        let h = headers(&[("x-forwarded-for", b"10.2.2.2, 10.1.1.1")]);
        assert_eq!(resolve_xff("127.0.0.1", &h), ip("10.2.2.2"));
    }

    #[test]
    fn trusted_peer_without_headers_is_the_client() {
        assert_eq!(resolve_xff("127.0.0.1", &HeaderMap::new()), ip("127.0.0.1"));
    }

    #[test]
    fn forwarded_header_with_ports_quotes_and_v6() {
        let h = headers(&[(
            "forwarded",
            br#"for="[2001:db8::1]:4711";proto=https, For=10.0.0.5"#,
        )]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &h, &trusted(), FWD),
            ip("2001:db8::1")
        );
        let h = headers(&[("forwarded", b"for=192.0.2.60:8080;by=10.0.0.1")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &h, &trusted(), FWD),
            ip("192.0.2.60")
        );
    }

    #[test]
    fn only_the_configured_family_is_read() {
        // The issue's reproduction: a proxy's XFF with a client-written
        // invalid entry, and a client-written Forwarded.
        let h = headers(&[
            ("x-forwarded-for", b"\xff, 203.0.113.5"),
            ("forwarded", b"for=6.6.6.6"),
        ]);
        assert_eq!(resolve_xff("127.0.0.1", &h), ip("127.0.0.1"));
        let h = headers(&[
            ("x-forwarded-for", b"203.0.113.5"),
            ("forwarded", b"for=6.6.6.6"),
        ]);
        assert_eq!(resolve_xff("127.0.0.1", &h), ip("203.0.113.5"));
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted(), FWD), ip("6.6.6.6"));
        // XFF configured, only Forwarded sent: not believed.
        let h = headers(&[("forwarded", b"for=6.6.6.6")]);
        assert_eq!(resolve_xff("127.0.0.1", &h), ip("127.0.0.1"));
    }

    #[test]
    fn a_malformed_header_means_the_peer() {
        for bad in [
            &b"1.2.3.4, unknown, 198.51.100.7"[..],
            b"198.51.100.7,",
            b"",
            b"_hidden",
            b"198.51.100.7 203.0.113.1",
        ] {
            let h = headers(&[("x-forwarded-for", bad)]);
            assert_eq!(
                resolve_xff("127.0.0.1", &h),
                ip("127.0.0.1"),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let h = headers(&[("forwarded", b"proto=https, for=198.51.100.7")]);
        assert_eq!(
            resolve(ip("127.0.0.1"), &h, &trusted(), FWD),
            ip("127.0.0.1")
        );
        let h = headers(&[("forwarded", b"for=unknown")]);
        assert_eq!(
            resolve(ip("127.0.0.1"), &h, &trusted(), FWD),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn v4_mapped_peer_is_canonical() {
        let h = headers(&[("x-forwarded-for", b"198.51.100.7")]);
        assert_eq!(resolve_xff("::ffff:127.0.0.1", &h), ip("198.51.100.7"));
    }

    #[test]
    fn config_names() {
        assert_eq!(ForwardedHeader::from_config("X-Forwarded-For"), Some(XFF));
        assert_eq!(ForwardedHeader::from_config("forwarded"), Some(FWD));
        assert_eq!(ForwardedHeader::from_config("x-real-ip"), None);
    }
}
