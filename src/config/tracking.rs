//! Validation of the tracking server's own keys (`[tracking]`: queue,
//! TLS certificates), beside the checks every section shares in
//! `config.rs`.

use std::path::{Path, PathBuf};

use super::{Collector, TrackingTls, raw};
use crate::tracking::client_ip::ForwardedHeader;

impl Collector {
    /// `[[tracking.tls]]`: a DNS name and two readable files each.
    pub(super) fn tracking_tls(&mut self, raw: &[raw::RawTrackingTls]) -> Vec<TrackingTls> {
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
    pub(super) fn client_ip_header(&mut self, value: &str) -> ForwardedHeader {
        ForwardedHeader::from_config(value).unwrap_or_else(|| {
            self.push(
                "tracking.client_ip_header",
                format!("{value:?} is neither \"x-forwarded-for\" nor \"forwarded\""),
            );
            ForwardedHeader::default()
        })
    }

    /// A count that must not be zero.
    pub(super) fn at_least_one(&mut self, key: &str, value: u32) -> usize {
        if value == 0 {
            self.push(key, "must be at least 1");
        }
        value as usize
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
