//! The configuration: read once, checked once, typed (STYLE.md §5).
//!
//! [`Config::load`] parses the TOML into [`raw::RawConfig`] (unknown keys are
//! problems, collected without stopping the parse) and [`Config::from_raw`]
//! turns it into typed values, collecting every problem with its key path so
//! `trackrelay check-config` can list them all at once. The rest of the program only ever sees [`Config`].

mod classifier;
pub mod dkim;
mod exposure;
pub mod log;
mod milter;
pub mod raw;
mod retention;
pub mod routes;
pub mod secrets;
mod storage;
mod tracking;
mod webhooks;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use crate::html::PixelPosition;
use crate::limits::{AuthLimits, Limits};
use crate::token::{self, Key, KeyRing};
use crate::tracking::client_ip::ForwardedHeader;
pub use classifier::{Classifier, RangeSource};
pub use log::LogFormat;
pub use milter::{MilterConfig, MilterListen, OnError};
use raw::{RawConfig, RawRoute};
pub use retention::Retention;
pub use routes::{Envelope, Matcher, Route, RouteSettings};
pub use webhooks::{EVENT_TYPES, Webhook, WebhookSettings, decode_secret};

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
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub listen: SocketAddr,
    pub allowed_networks: Vec<IpNet>,
    pub hostname: String,
    /// Certificate and key files (PEM) for STARTTLS; none: no STARTTLS.
    pub tls: Option<TlsFiles>,
    /// AUTH without TLS from a loopback client (for local applications).
    pub auth_plaintext_on_loopback: bool,
    /// Prepend a Received trace field (RFC 5321 §4.4).
    pub add_received: bool,
    pub users: Vec<User>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An SMTP AUTH user; the password is kept only as an Argon2 PHC hash.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub password_hash: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

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

#[derive(Clone)]
pub struct Api {
    pub listen: SocketAddr,
    pub token: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("listen", &self.listen)
            .field("token", &"<hidden>")
            .finish()
    }
}

/// One thing wrong with a config, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `routes[1].pixel_position`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a config file.
#[derive(Debug, thiserror::Error)]
pub struct Problems {
    /// The file the problems are in.
    pub file: String,
    pub list: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.list.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.list {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
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
        let smtp = Smtp {
            listen: p.addr("smtp.listen", &raw.smtp.listen),
            allowed_networks: p.nets("smtp.allowed_networks", &raw.smtp.allowed_networks),
            hostname: raw.smtp.hostname.clone().unwrap_or_else(default_hostname),
            tls: p.tls_files(&raw.smtp),
            auth_plaintext_on_loopback: raw.smtp.auth_plaintext_on_loopback,
            add_received: raw.smtp.add_received,
            users: p.users(&raw.smtp.users),
        };
        let limits = p.limits(&raw);
        let upstream = p.upstream(&raw.upstream);
        let tracking = Tracking {
            listen: p.addr("tracking.listen", &raw.tracking.listen),
            base_url: p.base_url("tracking.base_url", &raw.tracking.base_url),
            token_ttl: p.days("tracking.token_ttl_days", raw.tracking.token_ttl_days),
            trusted_proxies: p.nets("tracking.trusted_proxies", &raw.tracking.trusted_proxies),
            client_ip_header: p.client_ip_header(&raw.tracking.client_ip_header),
            commit_wait: Duration::from_millis(raw.tracking.commit_wait_ms.into()),
            queue_capacity: p.at_least_one("tracking.queue_capacity", raw.tracking.queue_capacity),
            keys: p.keys(&raw.tracking.keys),
            tls: p.tracking_tls(&raw.tracking.tls),
        };
        let api = Api {
            listen: p.addr("api.listen", &raw.api.listen),
            token: raw.api.token.clone(),
        };
        if api.token.trim().is_empty() {
            p.push(
                "api.token",
                "must be set: it is the bearer token of the admin API",
            );
        }
        if raw.storage.path.trim().is_empty() {
            p.push("storage.path", "must not be empty");
        }
        let routes = p.routes(&raw.routes);
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

/// Reads the TOML into the raw structs. A key the structs do not know is
/// a problem of its own (with its path and line), and reading goes on, so
/// one misspelt key does not hide the others; a value of the wrong type
/// stops it, naming its key.
fn parse_raw(text: &str) -> Result<(RawConfig, Vec<Problem>), Problem> {
    let de = toml::Deserializer::parse(text).map_err(|e| Problem {
        key: "(syntax)".into(),
        message: one_line(&e.to_string()),
    })?;
    let mut unknown = Vec::new();
    let mut collect = |path: serde_ignored::Path| {
        let key = key_path(&path);
        let name = key.rsplit(['.', ']']).next().unwrap_or(&key).to_owned();
        let line = line_of_key(text, &name);
        let at = line.map(|n| format!(" (line {n})")).unwrap_or_default();
        let message = format!("unknown field `{name}`{at}");
        unknown.push((line, Problem { key, message }));
    };
    let raw = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(de, &mut collect))
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|s| format!(" (line {})", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_default();
            Problem {
                key: if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                message: format!("{}{line}", one_line(inner.message())),
            }
        })?;
    // The file's order (serde visits sub-tables in its own).
    unknown.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
    Ok((raw, unknown.into_iter().map(|(_, p)| p).collect()))
}

/// Unknown keys first (the file's own order), then what validation found.
fn with_unknown(
    validated: Result<Config, Vec<Problem>>,
    mut unknown: Vec<Problem>,
) -> Result<Config, Vec<Problem>> {
    match validated {
        Ok(config) if unknown.is_empty() => Ok(config),
        Ok(_) => Err(unknown),
        Err(list) => {
            unknown.extend(list);
            Err(unknown)
        }
    }
}

/// `routes[0].track_open`: the path as `check-config` names keys.
fn key_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => match key_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

/// The line of `name = …` (or a `[table.name]` header) when the file has
/// exactly one such line; the path already says which table it is in.
fn line_of_key(text: &str, name: &str) -> Option<usize> {
    let mut found = text.lines().enumerate().filter(|(_, l)| {
        let l = l.trim_start().trim_start_matches('[');
        l.strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with(['=', ']']))
            || l.split('.')
                .next_back()
                .and_then(|t| t.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with(']'))
    });
    let (n, _) = found.next()?;
    found.next().is_none().then_some(n + 1)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn default_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Collects problems while each key is converted.
#[derive(Default)]
struct Collector {
    list: Vec<Problem>,
}

impl Collector {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse().unwrap_or_else(|_| {
            self.push(
                key,
                format!("{value:?} is not an address:port such as 127.0.0.1:2525"),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    fn nets(&mut self, key: &str, values: &[String]) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for (i, v) in values.iter().enumerate() {
            // A bare address means just that host.
            let parsed = v
                .parse::<IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => nets.push(n),
                Err(_) => self.push(
                    format!("{key}[{i}]"),
                    format!("{v:?} is not a network such as 10.0.0.0/8"),
                ),
            }
        }
        nets
    }

    fn days(&mut self, key: &str, days: u32) -> Duration {
        if days == 0 {
            self.push(key, "must be at least 1");
        }
        Duration::from_secs(u64::from(days) * 86_400)
    }

    fn base_url(&mut self, key: &str, value: &str) -> Url {
        // A bare host name means https.
        let text = if value.contains("://") {
            value.to_owned()
        } else {
            format!("https://{value}")
        };
        let fallback = || Url::parse("http://invalid.invalid").expect("static URL parses");
        let Ok(mut url) = Url::parse(&text) else {
            self.push(
                key,
                format!("{value:?} is not a URL such as https://t.example.com"),
            );
            return fallback();
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            self.push(
                key,
                format!("{value:?} must be an http or https URL with a host"),
            );
        } else if url.query().is_some() || url.fragment().is_some() || url.username() != "" {
            self.push(
                key,
                format!("{value:?} must not have a query, fragment or user"),
            );
        }
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
        url
    }

    fn upstream(&mut self, raw: &raw::RawUpstream) -> UpstreamConfig {
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

    fn limits(&mut self, raw: &RawConfig) -> Limits {
        let smtp = &raw.smtp;
        for (key, value) in [
            ("smtp.max_recipients", smtp.max_recipients),
            ("smtp.max_connections", smtp.max_connections),
            ("smtp.command_timeout_seconds", smtp.command_timeout_seconds),
            ("smtp.data_timeout_seconds", smtp.data_timeout_seconds),
            (
                "smtp.data_start_timeout_seconds",
                smtp.data_start_timeout_seconds,
            ),
            ("smtp.write_timeout_seconds", smtp.write_timeout_seconds),
            ("shutdown.deadline_seconds", raw.shutdown.deadline_seconds),
            (
                "smtp.auth_failures_per_connection",
                smtp.auth_failures_per_connection,
            ),
            ("smtp.auth_wait_seconds", smtp.auth_wait_seconds),
        ] {
            if value == 0 {
                self.push(key, "must be at least 1");
            }
        }
        let seconds = |s: u32| Duration::from_secs(s.into());
        Limits {
            max_message_bytes: smtp.max_message_bytes,
            max_recipients: smtp.max_recipients as usize,
            max_connections: smtp.max_connections as usize,
            command_timeout: seconds(smtp.command_timeout_seconds),
            data_start_timeout: seconds(smtp.data_start_timeout_seconds),
            data_timeout: seconds(smtp.data_timeout_seconds),
            write_timeout: seconds(smtp.write_timeout_seconds),
            upstream_timeout: seconds(raw.upstream.timeout_seconds),
            shutdown_deadline: seconds(raw.shutdown.deadline_seconds),
            auth: AuthLimits {
                failures_per_connection: smtp.auth_failures_per_connection,
                // 0: half the CPU cores (at least one), so that a flood of
                // AUTH leaves the other half to the tracking server.
                concurrency: match smtp.auth_concurrency {
                    0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
                    n => n as usize,
                },
                wait: seconds(smtp.auth_wait_seconds),
                delay_max: seconds(smtp.auth_delay_max_seconds),
                failure_memory: seconds(smtp.auth_failure_memory_seconds),
            },
        }
    }

    fn tls_files(&mut self, raw: &raw::RawSmtp) -> Option<TlsFiles> {
        match (&raw.tls_cert, &raw.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            }),
            (None, None) => None,
            _ => {
                self.push("smtp.tls_key", "tls_cert and tls_key go together");
                None
            }
        }
    }

    fn users(&mut self, raw: &[raw::RawUser]) -> Vec<User> {
        let mut users = Vec::new();
        for (i, u) in raw.iter().enumerate() {
            if u.name.is_empty() {
                self.push(format!("smtp.users[{i}].name"), "must not be empty");
            }
            if argon2::PasswordHash::new(&u.password_hash).is_err() {
                self.push(
                    format!("smtp.users[{i}].password_hash"),
                    "is not a PHC hash string; make one with `trackrelay hash-password`",
                );
            }
            users.push(User {
                name: u.name.clone(),
                password_hash: u.password_hash.clone(),
            });
        }
        users
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

    fn routes(&mut self, raw: &[RawRoute]) -> Vec<Route> {
        let mut routes: Vec<Route> = raw
            .iter()
            .enumerate()
            .map(|(i, r)| self.route(i, r))
            .collect();
        for (i, r) in routes.iter().enumerate() {
            if routes[..i].iter().any(|o| o.id == r.id) {
                self.push(
                    format!("routes[{i}].id"),
                    format!("{:?} is used by an earlier route", r.id),
                );
            }
        }
        // Without a fallback, unmatched mail goes through untracked (tracking
        // is off by default, SPEC §9) under an implicit route "default".
        if !routes.iter().any(|r| r.matcher.is_fallback()) {
            if routes.iter().any(|r| r.id == "default") {
                self.push("routes", "no route is a fallback (without match) but one is named \"default\"; add a fallback");
            }
            routes.push(Route {
                id: "default".into(),
                matcher: Matcher::default(),
                settings: RouteSettings::default(),
                webhooks: Vec::new(),
            });
        }
        routes
    }

    fn route(&mut self, i: usize, r: &RawRoute) -> Route {
        let key = format!("routes[{i}]");
        let id_ok = !r.id.is_empty()
            && r.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !id_ok {
            self.push(
                format!("{key}.id"),
                format!("{:?}: letters, digits, '-', '_' or '.' required", r.id),
            );
        }
        let pixel_position = match r.pixel_position.as_str() {
            "end" => PixelPosition::End,
            "start" => PixelPosition::Start,
            other => {
                self.push(
                    format!("{key}.pixel_position"),
                    format!("{other:?} is neither \"start\" nor \"end\""),
                );
                PixelPosition::End
            }
        };
        let senders = routes::sender_globs(&r.matcher.senders).unwrap_or_else(|(j, e)| {
            self.push(format!("{key}.match.senders[{j}]"), e);
            None
        });
        let matcher = Matcher {
            auth_users: r.matcher.auth_users.clone(),
            senders,
            networks: self.nets(&format!("{key}.match.networks"), &r.matcher.networks),
        };
        let tracking_domain = r
            .tracking_domain
            .as_deref()
            .map(|d| self.base_url(&format!("{key}.tracking_domain"), d));
        let webhooks = r
            .webhooks
            .iter()
            .enumerate()
            .map(|(j, w)| self.webhook(&format!("{key}.webhooks[{j}]"), w))
            .collect();
        Route {
            id: r.id.clone(),
            matcher,
            settings: RouteSettings {
                track_opens: r.track_opens,
                track_clicks: r.track_clicks,
                tracking_domain,
                per_recipient: r.per_recipient,
                pixel_position,
                rewrite_dkim_signed: r.rewrite_dkim_signed,
                dkim_sign: r.dkim_sign,
            },
            webhooks,
        }
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
    fn unknown_key_is_named_with_its_path() {
        let text = format!("{MINIMAL}\n[[routes]]\nid = \"a\"\ntrack_open = true\n");
        let problems = Config::parse(&text).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "routes[0].track_open");
        assert!(
            problems[0].message.contains("unknown field"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn an_unknown_key_does_not_hide_the_other_problems() {
        let text = format!(
            "{MINIMAL}\n[[routes]]\nid = \"a\"\ntrack_open = true\npixel_position = \"middle\"\n[routes.match]\nsendr = []\n"
        );
        let problems = Config::parse(&text).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "routes[0].track_open",
                "routes[0].match.sendr",
                "routes[0].pixel_position"
            ],
            "{problems:?}"
        );
        let line = text
            .lines()
            .position(|l| l.starts_with("track_open"))
            .unwrap()
            + 1;
        assert!(
            problems[0].message.ends_with(&format!("(line {line})")),
            "{}",
            problems[0].message
        );
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
