//! Whether a Host header names one of the tracking domains answered (the
//! list is the routes' business: `crate::routes::domains`).
//!
//! Compared without case. A Host header without a port matches a domain
//! whose URL has no explicit port (reverse proxies usually pass `$host`
//! without one); with a port, it must be the URL's port or its scheme's
//! default. Anything else is answered 421 Misdirected Request (RFC 9110
//! §15.5.20) by the caller.

use crate::routes::TrackingDomain;

/// Whether a Host header value names one of `domains` answered at `now_ms`.
pub fn allows(domains: &[TrackingDomain], header: &str, now_ms: i64) -> bool {
    let Some((host, port)) = split(header.trim()) else {
        return false;
    };
    domains.iter().any(|d| {
        d.host().eq_ignore_ascii_case(host)
            && match port {
                None => d.default_port(),
                Some(p) => p == d.port(),
            }
            && d.answered_at(now_ms)
    })
}

/// Splits `host[:port]` (`[v6]:port` for IPv6); `None` when malformed.
fn split(header: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if header.starts_with('[') {
        let end = header.find(']')?;
        let rest = &header[end + 1..];
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':')?),
        };
        (&header[..=end], port)
    } else {
        match header.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (header, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<TrackingDomain> {
        [
            "http://127.0.0.1:8080",
            "https://T.Example.com",
            "http://[::1]:9000/t",
        ]
        .iter()
        .map(|u| TrackingDomain::configured(&url::Url::parse(u).unwrap()).unwrap())
        .collect()
    }

    #[test]
    fn configured_hosts_match_without_case() {
        let d = domains();
        assert!(allows(&d, "127.0.0.1:8080", 0));
        assert!(allows(&d, "t.example.COM", 0));
        assert!(allows(&d, "t.example.com:443", 0));
        assert!(allows(&d, "[::1]:9000", 0));
    }

    #[test]
    fn other_hosts_and_ports_are_refused() {
        let d = domains();
        for bad in [
            "127.0.0.1",
            "127.0.0.1:8081",
            "evil.example.com",
            "t.example.com:80",
            "t.example.com.evil.net",
            "[::1]",
            "",
            ":8080",
            "127.0.0.1:x",
        ] {
            assert!(!allows(&d, bad, 0), "{bad} allowed");
        }
    }
}
