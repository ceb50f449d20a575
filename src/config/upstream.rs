//! `[upstream]`: where relayed copies go and how to talk to it.

use std::fmt;
use std::path::PathBuf;

use url::Url;

use super::{Collector, raw};

/// The upstream and how to talk to it.
#[derive(Clone)]
pub struct UpstreamConfig {
    pub target: Upstream,
    pub starttls: StartTls,
    /// Check the upstream's certificate (off only for tests and private CAs).
    pub tls_verify: bool,
    /// AUTH user and password for the upstream.
    pub credentials: Option<(String, String)>,
    /// Idle upstream connections kept for reuse.
    pub max_idle_connections: usize,
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("target", &self.target)
            .field("starttls", &self.starttls)
            .field("tls_verify", &self.tls_verify)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish_non_exhaustive()
    }
}

/// STARTTLS towards the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    Off,
    /// Used when the upstream offers it.
    Opportunistic,
    /// Refuse to relay over a connection that could not start TLS.
    Required,
}

/// Where relayed copies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `smtp://host:port`; options are read by the `upstream` module.
    Smtp(Url),
    /// `dir:PATH`: one .eml file per relayed copy.
    Dir(PathBuf),
}

impl Collector {
    /// `[upstream]`: `smtp://host:port` or `dir:PATH`, STARTTLS, credentials.
    pub(super) fn upstream(&mut self, raw: &raw::RawUpstream) -> UpstreamConfig {
        let value = raw.url.as_str();
        let target = if let Some(path) = value.strip_prefix("dir:") {
            if path.is_empty() {
                self.push("upstream.url", "dir: needs a path, such as dir:var/outbox");
            }
            Upstream::Dir(PathBuf::from(path))
        } else {
            match Url::parse(value) {
                Ok(url) if url.scheme() == "smtp" && url.host_str().is_some() => {
                    Upstream::Smtp(url)
                }
                _ => {
                    self.push(
                        "upstream.url",
                        format!("{value:?} is neither smtp://host:port nor dir:PATH"),
                    );
                    Upstream::Dir(PathBuf::new())
                }
            }
        };
        let starttls = match raw.starttls.as_str() {
            "off" => StartTls::Off,
            "opportunistic" => StartTls::Opportunistic,
            "required" => StartTls::Required,
            other => {
                self.push(
                    "upstream.starttls",
                    format!("{other:?} is not off, opportunistic or required"),
                );
                StartTls::Opportunistic
            }
        };
        let credentials = match (&raw.username, &raw.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                self.push("upstream.password", "username and password go together");
                None
            }
        };
        if raw.timeout_seconds == 0 {
            self.push("upstream.timeout_seconds", "must be at least 1");
        }
        UpstreamConfig {
            target,
            starttls,
            tls_verify: raw.tls_verify,
            credentials,
            max_idle_connections: raw.max_idle_connections as usize,
        }
    }
}
