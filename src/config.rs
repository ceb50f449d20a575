//! The configuration: read once, checked once, typed (STYLE.md §5).
//!
//! [`Config::load`] parses the TOML into [`raw::RawConfig`] (unknown keys are
//! problems, collected without stopping the parse: `config/parse.rs`) and
//! [`Config::from_raw`] turns it into typed values, one section per file
//! (`config/smtp.rs`, `config/upstream.rs`, …), collecting every problem
//! with its key path (`config/problems.rs`) so `trackrelay check-config`
//! can list them all at once. The rest of the program only ever sees
//! [`Config`].
//!
//! A module that owns a concern owns its settings type too
//! ([`crate::classify::Settings`], [`crate::retention::Policy`],
//! [`crate::dkim::Keys`], [`crate::limits::Limits`], the route settings in
//! [`crate::rewrite::RouteSettings`]): this module only reads and checks the
//! keys and builds those values, so the dependency goes one way, from
//! `config` to them.

mod api;
mod classifier;
pub mod dkim;
mod exposure;
mod limits;
pub mod log;
mod milter;
mod parse;
mod problems;
pub mod raw;
mod retention;
pub mod routes;
pub mod secrets;
pub mod send;
mod smtp;
mod storage;
mod tracking;
mod upstream;
mod webhooks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

// The owners' settings types under the names the config has always used.
pub use crate::classify::{RangeSource, Settings as Classifier};
use crate::limits::Limits;
pub use crate::retention::Policy as Retention;
pub use api::Api;
pub use log::LogFormat;
pub use milter::{MilterConfig, MilterListen, OnError};
use parse::{parse_raw, with_unknown};
use problems::Collector;
pub use problems::{Problem, Problems};
use raw::RawConfig;
pub use routes::{Envelope, Matcher, Route, RouteSettings};
pub use smtp::{Smtp, TlsFiles, User};
pub use tracking::{ForwardedHeader, Tracking, TrackingTls};
pub use upstream::{StartTls, Upstream, UpstreamConfig};
pub use webhooks::{EVENT_TYPES, Webhook, WebhookFormat, WebhookSettings, decode_secret};

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub smtp: Smtp,
    pub upstream: UpstreamConfig,
    pub limits: Limits,
    pub tracking: Tracking,
    pub api: Api,
    pub storage_path: PathBuf,
    /// `[storage]`: the SQLite file or the PostgreSQL database.
    pub storage: crate::storage::Location,
    pub classifier: Classifier,
    pub raw_signal_retention: Duration,
    /// `[retention]` beyond `raw_signal_days`: event lifetime, IP hash key.
    pub retention: Retention,
    pub webhooks: WebhookSettings,
    /// In config order; the last one is always a fallback.
    pub routes: Vec<Route>,
    /// The milter listener; `None` without a `[milter]` section.
    pub milter: Option<MilterConfig>,
    /// `[log] format`.
    pub log_format: LogFormat,
    /// `[[dkim.keys]]`, loaded and checked.
    pub dkim: crate::dkim::Keys,
    /// The sending API (`[send]`); `None` without that section.
    pub send: Option<send::SendConfig>,
}

impl Config {
    /// Reads and validates a config file; the secrets it leaves out are
    /// generated into the data directory, or read from there
    /// (`config/secrets.rs`), and the log says which.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let (config, filled) = Self::load_with(path, secrets::Missing::Generate)?;
        for f in filled {
            if f.generated {
                tracing::warn!("{f} (keep this file: links in sent mail need it)");
            } else {
                tracing::debug!("{f}");
            }
        }
        Ok(config)
    }

    /// [`Config::load`], saying where each secret the file leaves out
    /// comes from instead of logging it.
    pub fn load_with(
        path: &Path,
        missing: secrets::Missing,
    ) -> Result<(Config, Vec<secrets::Filled>), Problems> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Problems {
            file: source.clone(),
            list: vec![Problem {
                key: "(file)".into(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        let problems = |list| Problems {
            file: source.clone(),
            list,
        };
        let (mut raw, unknown) = parse_raw(&text).map_err(|p| problems(vec![p]))?;
        let filled = secrets::fill_missing(&mut raw, missing).map_err(|p| problems(vec![p]))?;
        let config = with_unknown(Self::from_raw(raw), unknown).map_err(problems)?;
        Ok((config, filled))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        let (raw, unknown) = parse_raw(text).map_err(|p| vec![p])?;
        with_unknown(Self::from_raw(raw), unknown)
    }

    /// Turns the raw config into typed values, collecting every problem.
    pub fn from_raw(raw: RawConfig) -> Result<Config, Vec<Problem>> {
        let mut p = Collector {
            list: secrets::weak(&raw),
        };
        let smtp = p.smtp(&raw.smtp);
        let limits = p.limits(&raw);
        let upstream = p.upstream(&raw.upstream);
        let tracking = p.tracking(&raw.tracking);
        let api = p.api(&raw.api);
        if raw.storage.path.trim().is_empty() {
            p.push("storage.path", "must not be empty");
        }
        let routes = p.routes(&raw.routes);
        let route_ids: Vec<String> = routes.iter().map(|r| r.id.clone()).collect();
        let milter = p.milter(raw.milter.as_ref());
        let retention = p.retention(&raw.retention, &tracking.keys);
        let config = Config {
            smtp,
            upstream,
            limits,
            tracking,
            api,
            storage_path: PathBuf::from(&raw.storage.path),
            storage: p.storage(&raw.storage),
            classifier: p.classifier(&raw.classifier),
            raw_signal_retention: p
                .days("retention.raw_signal_days", raw.retention.raw_signal_days),
            retention,
            webhooks: p.webhook_settings(&raw.webhooks),
            routes,
            milter,
            log_format: p.log_format(&raw.log),
            dkim: p.dkim(&raw.dkim),
            send: p.send(raw.send.as_ref(), &route_ids),
        };
        if p.list.is_empty() {
            Ok(config)
        } else {
            Err(p.list)
        }
    }

    /// The route with this id.
    pub fn route(&self, id: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.id == id)
    }

    /// Base URL of the tracking links of a route.
    pub fn tracking_base<'a>(&'a self, settings: &'a RouteSettings) -> &'a Url {
        settings
            .tracking_domain
            .as_ref()
            .unwrap_or(&self.tracking.base_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[api]
token = "Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU"
[[tracking.keys]]
id = "k1"
secret = "0123456789abcdef0123456789abcdef"
"#;

    #[test]
    fn minimal_config_gets_defaults_and_an_untracked_fallback() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.tracking.token_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].id, "default");
        assert!(!c.routes[0].settings.track_opens && !c.routes[0].settings.track_clicks);
        assert_eq!(c.upstream.target, Upstream::Dir("var/outbox".into()));
        assert_eq!(c.upstream.starttls, StartTls::Opportunistic);
        assert_eq!(c.tracking.base_url.as_str(), "http://127.0.0.1:8080/");
    }

    #[test]
    fn every_problem_is_listed() {
        let text = r#"
[smtp]
listen = "nowhere"
allowed_networks = ["10.0.0.0/33"]
[upstream]
url = "ftp://x"
[[tracking.keys]]
id = "k 1"
secret = "short"
[[routes]]
id = "r"
pixel_position = "middle"
[routes.match]
senders = ["[unclosed"]
"#;
        let keys: Vec<String> = Config::parse(text)
            .unwrap_err()
            .into_iter()
            .map(|p| p.key)
            .collect();
        for expected in [
            "smtp.listen",
            "smtp.allowed_networks[0]",
            "upstream.url",
            "tracking.keys[0].id",
            "tracking.keys[0].secret",
            "api.token",
            "routes[0].pixel_position",
            "routes[0].match.senders[0]",
        ] {
            assert!(
                keys.contains(&expected.to_string()),
                "{expected} missing from {keys:?}"
            );
        }
    }

    #[test]
    fn tracking_domain_without_scheme_means_https() {
        let text =
            format!("{MINIMAL}\n[[routes]]\nid = \"a\"\ntracking_domain = \"t.example.com/\"\n");
        let c = Config::parse(&text).unwrap();
        let base = c.tracking_base(&c.routes[0].settings);
        assert_eq!(base.as_str(), "https://t.example.com/");
    }
}
