//! The tracking domains answered: every one configured now
//! (`tracking.base_url` and each route's `tracking_domain`), and every one
//! the config dropped within `token_ttl_days` (plus [`REFRESH`]).
//!
//! Why a dropped domain is still answered: mail already in inboxes carries
//! it, and its tokens stay valid for `token_ttl_days`; answering 421 would
//! break those links (PITFALLS P17). Why not longer: the Host check exists
//! so that a name pointed at this server by mistake (or by someone else) is
//! refused (docs/tracking.md); a domain given up for good should stop
//! answering once the last token sent on it has expired.
//!
//! The database remembers when each domain was last configured
//! (`storage::KnownDomain`): stamped at start, at each reload (the domains
//! configured until then, and after), every [`REFRESH`] and at shutdown. A
//! process killed without its shutdown stamp sent its last mail at most one
//! [`REFRESH`] after its last stamp, hence the margin. Nodes sharing one
//! database answer each other's domains the same way.

use std::time::Duration;

use url::Url;

use crate::storage::KnownDomain;

/// How often the configured domains are stamped as still configured.
pub const REFRESH: Duration = Duration::from_secs(3600);

/// One tracking domain: what a Host header is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingDomain {
    url: Url,
    /// Lower-cased host, IPv6 literals in brackets as in a Host header.
    host: String,
    /// The port the URL names, or its scheme's default.
    port: u16,
    /// The URL names no port (the scheme's default applies).
    default_port: bool,
    /// `None`: configured now. Else no longer configured, and answered
    /// until then (ms since the Unix epoch).
    until_ms: Option<i64>,
}

impl TrackingDomain {
    /// A domain configured now; `None` for a URL without host or port
    /// (config validation keeps those out).
    pub fn configured(url: &Url) -> Option<Self> {
        Some(Self {
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
            default_port: url.port().is_none(),
            url: url.clone(),
            until_ms: None,
        })
    }

    /// The base URL as configured.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Lower-cased host (IPv6 literals in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The URL's port, or its scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True when the URL names no port.
    pub fn default_port(&self) -> bool {
        self.default_port
    }

    /// When a domain no longer configured stops being answered.
    pub fn until_ms(&self) -> Option<i64> {
        self.until_ms
    }

    /// Whether it is answered at `now_ms`.
    pub fn answered_at(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| now_ms <= until)
    }

    /// Same host and port: one domain, whatever the URL's path.
    fn same_origin(&self, other: &TrackingDomain) -> bool {
        self.host == other.host && self.port == other.port
    }
}

/// The domains answered from `now_ms` on: `configured` ones, then `known`
/// ones not configured now that were within `ttl` + [`REFRESH`].
pub fn answered(
    configured: &[&Url],
    known: &[KnownDomain],
    ttl: Duration,
    now_ms: i64,
) -> Vec<TrackingDomain> {
    let mut domains: Vec<TrackingDomain> = Vec::new();
    for url in configured {
        if let Some(d) = TrackingDomain::configured(url)
            && !domains.iter().any(|o| o.same_origin(&d))
        {
            domains.push(d);
        }
    }
    let grace_ms = i64::try_from((ttl + REFRESH).as_millis()).unwrap_or(i64::MAX);
    for k in known {
        let Ok(url) = Url::parse(&k.url) else {
            tracing::warn!(url = %k.url, "a stored tracking domain is not a URL; ignored");
            continue;
        };
        let Some(mut d) = TrackingDomain::configured(&url) else {
            continue;
        };
        d.until_ms = Some(k.last_configured_ms.saturating_add(grace_ms));
        if !d.answered_at(now_ms) {
            continue;
        }
        match domains.iter_mut().find(|o| o.same_origin(&d)) {
            // Configured now: answered anyway.
            Some(o) if o.until_ms.is_none() => {}
            // Two URLs of one dropped domain: the later one counts.
            Some(o) => o.until_ms = o.until_ms.max(d.until_ms),
            None => domains.push(d),
        }
    }
    domains
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;
    const TTL: Duration = Duration::from_secs(30 * 86_400);

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn known(url: &str, last_configured_ms: i64) -> KnownDomain {
        KnownDomain {
            url: url.into(),
            last_configured_ms,
        }
    }

    #[test]
    fn a_dropped_domain_is_answered_for_the_token_lifetime_and_the_margin() {
        let now = 100 * DAY_MS;
        let (base, route) = (
            url("https://t.example.com"),
            url("https://T2.example.com:8443/x"),
        );
        let d = answered(
            &[&base, &route],
            &[
                known("https://t.example.com/", 0),
                known("https://old.example.com/", now - 10 * DAY_MS),
                known("https://older.example.com/", now - 31 * DAY_MS),
            ],
            TTL,
            now,
        );
        let hosts: Vec<(&str, u16, Option<i64>)> = d
            .iter()
            .map(|d| (d.host(), d.port(), d.until_ms()))
            .collect();
        let until = now - 10 * DAY_MS + 30 * DAY_MS + 3_600_000;
        assert_eq!(
            hosts,
            [
                ("t.example.com", 443, None),
                ("t2.example.com", 8443, None),
                ("old.example.com", 443, Some(until)),
            ]
        );
        assert!(d[2].answered_at(until));
        assert!(!d[2].answered_at(until + 1));
    }

    #[test]
    fn one_origin_once_the_latest_stamp_wins() {
        let d = answered(
            &[],
            &[
                known("http://a.example:8080/", 5 * DAY_MS),
                known("http://A.example:8080/path", 7 * DAY_MS),
                known("not a url", 7 * DAY_MS),
            ],
            TTL,
            6 * DAY_MS,
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].until_ms(), Some(37 * DAY_MS + 3_600_000));
    }
}
