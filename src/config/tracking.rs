//! `[tracking]`: the tracking server's listener, base URL, token lifetime
//! and signing keys, trusted proxies, queue and TLS certificates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use super::{Collector, raw};
use crate::token::{self, Key, KeyRing};

#[derive(Debug, Clone)]
pub struct Tracking {
    pub listen: SocketAddr,
    /// Default base of tracking URLs, without a trailing slash.
    pub base_url: Url,
    pub token_ttl: Duration,
    pub trusted_proxies: Vec<IpNet>,
    /// The one forwarding header the trusted proxies write.
    pub client_ip_header: ForwardedHeader,
    /// How long a hit's response waits for its observation to be committed
    /// before it is sent anyway (the observation stays queued).
    pub commit_wait: Duration,
    /// Observations that may wait for the database before new ones are
    /// refused (counted and logged).
    pub queue_capacity: usize,
    pub keys: KeyRing,
    /// Certificates by SNI name; empty: the listener speaks plain HTTP.
    pub tls: Vec<TrackingTls>,
}

/// A certificate chain and key (PEM files) served for one SNI name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingTls {
    /// Lower-cased DNS name the certificate is served for.
    pub domain: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Which forwarding header the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx, HAProxy, most CDNs).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    /// The config value (`tracking.client_ip_header`) naming it.
    pub fn from_config(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(Self::XForwardedFor),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }

    /// The header's name, lower-cased.
    pub fn header_name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

impl Collector {
    /// `[tracking]` and its `[[tracking.keys]]` and `[[tracking.tls]]`.
    pub(super) fn tracking(&mut self, raw: &raw::RawTracking) -> Tracking {
        Tracking {
            listen: self.addr("tracking.listen", &raw.listen),
            base_url: self.base_url("tracking.base_url", &raw.base_url),
            token_ttl: self.days("tracking.token_ttl_days", raw.token_ttl_days),
            trusted_proxies: self.nets("tracking.trusted_proxies", &raw.trusted_proxies),
            client_ip_header: self.client_ip_header(&raw.client_ip_header),
            commit_wait: Duration::from_millis(raw.commit_wait_ms.into()),
            queue_capacity: self.at_least_one("tracking.queue_capacity", raw.queue_capacity),
            keys: self.keys(&raw.keys),
            tls: self.tracking_tls(&raw.tls),
        }
    }

    fn keys(&mut self, raw: &[raw::RawKey]) -> KeyRing {
        if raw.is_empty() {
            self.push(
                "tracking.keys",
                "at least one [[tracking.keys]] with id and secret is required to sign tokens",
            );
        }
        let mut keys = Vec::new();
        for (i, k) in raw.iter().enumerate() {
            let key = format!("tracking.keys[{i}]");
            let id_ok = !k.id.is_empty()
                && k.id.len() <= token::MAX_KEY_ID_LEN
                && k.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !id_ok {
                self.push(
                    format!("{key}.id"),
                    format!(
                        "{:?}: 1 to {} letters, digits, - or _",
                        k.id,
                        token::MAX_KEY_ID_LEN
                    ),
                );
            }
            if raw[..i].iter().any(|o| o.id == k.id) {
                self.push(
                    format!("{key}.id"),
                    format!("{:?} is used by an earlier key", k.id),
                );
            }
            if k.secret.len() < token::MIN_SECRET_LEN {
                self.push(
                    format!("{key}.secret"),
                    format!(
                        "is {} bytes; at least {} are required",
                        k.secret.len(),
                        token::MIN_SECRET_LEN
                    ),
                );
            }
            keys.push(Key::new(k.id.clone(), k.secret.as_bytes().to_vec()));
        }
        if keys.is_empty() {
            // Placeholder so the rest can be checked; the problem is recorded.
            keys.push(Key::new("invalid", vec![0u8; token::MIN_SECRET_LEN]));
        }
        KeyRing::new(keys)
    }

    /// `[[tracking.tls]]`: a DNS name and two readable files each.
    fn tracking_tls(&mut self, raw: &[raw::RawTrackingTls]) -> Vec<TrackingTls> {
        let mut out = Vec::new();
        for (i, t) in raw.iter().enumerate() {
            let key = format!("tracking.tls[{i}]");
            let domain = t.domain.trim().to_ascii_lowercase();
            if domain.is_empty() || domain.contains(['/', ':', ' ']) {
                self.push(
                    format!("{key}.domain"),
                    format!("{:?} is not a DNS name", t.domain),
                );
            }
            for (field, path) in [("cert", &t.cert), ("key", &t.key)] {
                if !Path::new(path).is_file() {
                    self.push(
                        format!("{key}.{field}"),
                        format!("{path:?} is not a readable file"),
                    );
                }
            }
            out.push(TrackingTls {
                domain,
                cert: PathBuf::from(&t.cert),
                key: PathBuf::from(&t.key),
            });
        }
        out
    }

    /// `tracking.client_ip_header`: which forwarding header is believed.
    fn client_ip_header(&mut self, value: &str) -> ForwardedHeader {
        ForwardedHeader::from_config(value).unwrap_or_else(|| {
            self.push(
                "tracking.client_ip_header",
                format!("{value:?} is neither \"x-forwarded-for\" nor \"forwarded\""),
            );
            ForwardedHeader::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;

    const MINIMAL: &str = "[api]\ntoken = \"Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU\"\n[[tracking.keys]]\nid = \"k1\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";

    #[test]
    fn tracking_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.tracking.commit_wait, Duration::from_millis(5));
        assert_eq!(c.tracking.queue_capacity, 100_000);
        assert!(c.tracking.tls.is_empty());
    }

    #[test]
    fn an_empty_queue_and_a_bad_tls_domain_are_problems() {
        let text = format!(
            "[tracking]\nqueue_capacity = 0\n[[tracking.tls]]\ndomain = \"t.example.com:443\"\n\
             cert = \"Cargo.toml\"\nkey = \"Cargo.toml\"\n{MINIMAL}"
        );
        let keys: Vec<String> = Config::parse(&text)
            .unwrap_err()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["tracking.queue_capacity", "tracking.tls[0].domain"]);
    }
}
