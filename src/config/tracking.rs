//! Validation of the tracking server's own keys (`[tracking]`: queue,
//! TLS certificates), beside the checks every section shares in
//! `config.rs`.

use std::path::{Path, PathBuf};

use super::{Collector, TrackingTls, raw};

impl Collector {
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

    pub(super) fn at_least_one(&mut self, key: &str, value: u32) -> usize {
        if value == 0 {
            self.push(key, "must be at least 1");
        }
        value as usize
    }
}
