//! Which Host headers the tracking server answers: the host and port of
//! `tracking.base_url` and of each route's `tracking_domain`.
//!
//! Compared without case. A Host header without a port matches a domain
//! whose URL has no explicit port (reverse proxies usually pass `$host`
//! without one); with a port, it must be the URL's port or its scheme's
//! default. Anything else is answered 421 Misdirected Request (RFC 9110
//! §15.5.20) by the caller.

use url::Url;

/// The configured tracking domains.
#[derive(Debug, Clone)]
pub struct Hosts {
    domains: Vec<Domain>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Domain {
    /// Lower-cased host, IPv6 literals in brackets as in a Host header.
    host: String,
    /// The port the URL names, or its scheme's default.
    port: u16,
    /// The URL names no port (the scheme's default applies).
    default_port: bool,
}

impl Hosts {
    /// The domains of these base URLs (duplicates are fine).
    pub fn new<'a>(urls: impl IntoIterator<Item = &'a Url>) -> Self {
        let domains = urls
            .into_iter()
            .filter_map(|url| {
                Some(Domain {
                    host: url.host_str()?.to_ascii_lowercase(),
                    port: url.port_or_known_default()?,
                    default_port: url.port().is_none(),
                })
            })
            .collect();
        Self { domains }
    }

    /// Whether a Host header value names one of the domains.
    pub fn allows(&self, header: &str) -> bool {
        let Some((host, port)) = split(header.trim()) else {
            return false;
        };
        self.domains.iter().any(|d| {
            d.host.eq_ignore_ascii_case(host)
                && match port {
                    None => d.default_port,
                    Some(p) => p == d.port,
                }
        })
    }
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

    fn hosts() -> Hosts {
        let urls: Vec<Url> = [
            "http://127.0.0.1:8080",
            "https://T.Example.com",
            "http://[::1]:9000/t",
        ]
        .iter()
        .map(|u| Url::parse(u).unwrap())
        .collect();
        Hosts::new(&urls)
    }

    #[test]
    fn configured_hosts_match_without_case() {
        let h = hosts();
        assert!(h.allows("127.0.0.1:8080"));
        assert!(h.allows("t.example.COM"));
        assert!(h.allows("t.example.com:443"));
        assert!(h.allows("[::1]:9000"));
    }

    #[test]
    fn other_hosts_and_ports_are_refused() {
        let h = hosts();
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
            assert!(!h.allows(bad), "{bad} allowed");
        }
    }
}
