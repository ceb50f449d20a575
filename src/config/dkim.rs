//! `[dkim]`: the signing keys (issue 20, docs/dkim.md). Each key file is
//! read and checked here, so `check-config` and `serve` name a missing,
//! weak or wrong key with its config path before any mail is relayed.

use std::path::PathBuf;

use serde::Deserialize;

use super::Collector;
use crate::dkim::{Key, Keys, keys};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawDkim {
    pub keys: Vec<RawDkimKey>,
}

#[derive(Debug, Deserialize)]
pub struct RawDkimKey {
    pub domain: String,
    pub selector: String,
    /// PEM file: RSA (2048 bits or more) or Ed25519.
    pub private_key: PathBuf,
    /// Header fields to sign; default `keys::DEFAULT_HEADERS`.
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    /// `header/body`, each `relaxed` or `simple`; default `relaxed/relaxed`.
    #[serde(default = "default_canonicalization")]
    pub canonicalization: String,
}

fn default_canonicalization() -> String {
    "relaxed/relaxed".into()
}

impl Collector {
    /// `[[dkim.keys]]`, each loaded; one key per domain.
    pub(super) fn dkim(&mut self, raw: &RawDkim) -> Keys {
        let mut loaded: Vec<Key> = Vec::new();
        for (i, k) in raw.keys.iter().enumerate() {
            let key = format!("dkim.keys[{i}]");
            if k.domain.trim().is_empty() || k.selector.trim().is_empty() {
                self.push(&key, "domain and selector must not be empty");
                continue;
            }
            if loaded
                .iter()
                .any(|l| l.domain.eq_ignore_ascii_case(&k.domain))
            {
                self.push(
                    format!("{key}.domain"),
                    format!("{}: a second key for this domain", k.domain),
                );
                continue;
            }
            let canon = match keys::canonicalization(&k.canonicalization) {
                Ok(c) => c,
                Err(e) => {
                    self.push(format!("{key}.canonicalization"), e);
                    continue;
                }
            };
            let headers = k.headers.clone().unwrap_or_else(|| {
                keys::DEFAULT_HEADERS
                    .iter()
                    .map(|h| (*h).to_owned())
                    .collect()
            });
            if !headers.iter().any(|h| h.eq_ignore_ascii_case("from")) {
                // RFC 6376 §5.4: From must be signed.
                self.push(format!("{key}.headers"), "must include From");
                continue;
            }
            match Key::load(&k.domain, &k.selector, &k.private_key, headers, canon) {
                Ok(l) => loaded.push(l),
                Err(e) => self.push(format!("{key}.private_key"), e),
            }
        }
        Keys::new(loaded)
    }
}
