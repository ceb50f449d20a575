//! The config file as serde reads it: plain strings and numbers; unknown
//! keys are collected as problems by `config::parse_raw`. Nothing here is
//! validated; `config::Config::from_raw` turns this into typed values and
//! collects every problem with its key path.
//!
//! Defaults live here, one per key, and `conf/trackrelay.toml` repeats them.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub smtp: RawSmtp,
    pub upstream: RawUpstream,
    pub tracking: RawTracking,
    pub api: RawApi,
    pub storage: RawStorage,
    pub classifier: RawClassifier,
    pub retention: RawRetention,
    pub webhooks: RawWebhooksGlobal,
    pub routes: Vec<RawRoute>,
    /// Absent: no milter listener.
    pub milter: Option<RawMilter>,
    pub shutdown: RawShutdown,
    pub log: RawLog,
    pub dkim: super::dkim::RawDkim,
    /// Absent: no sending API.
    pub send: Option<super::send::RawSend>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawShutdown {
    pub deadline_seconds: u32,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self {
            deadline_seconds: 30,
        }
    }
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawLog {
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawSmtp {
    pub listen: String,
    pub allowed_networks: Vec<String>,
    pub hostname: Option<String>,
    pub max_message_bytes: u64,
    pub max_recipients: u32,
    pub max_connections: u32,
    pub command_timeout_seconds: u32,
    pub data_timeout_seconds: u32,
    pub data_start_timeout_seconds: u32,
    pub write_timeout_seconds: u32,
    pub auth_failures_per_connection: u32,
    pub auth_concurrency: u32,
    pub auth_wait_seconds: u32,
    pub auth_delay_max_seconds: u32,
    pub auth_failure_memory_seconds: u32,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub auth_plaintext_on_loopback: bool,
    pub add_received: bool,
    pub users: Vec<RawUser>,
}

#[derive(Debug, Deserialize)]
pub struct RawUser {
    pub name: String,
    pub password_hash: String,
}

impl Default for RawSmtp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2525".into(),
            allowed_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            hostname: None,
            max_message_bytes: 50 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 1000,
            command_timeout_seconds: 300,
            data_timeout_seconds: 600,
            data_start_timeout_seconds: 180,
            write_timeout_seconds: 60,
            auth_failures_per_connection: 3,
            auth_concurrency: 0,
            auth_wait_seconds: 10,
            auth_delay_max_seconds: 30,
            auth_failure_memory_seconds: 900,
            tls_cert: None,
            tls_key: None,
            auth_plaintext_on_loopback: true,
            add_received: true,
            users: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawUpstream {
    pub url: String,
    pub starttls: String,
    pub tls_verify: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout_seconds: u32,
    pub max_idle_connections: u32,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            url: "dir:var/outbox".into(),
            starttls: "opportunistic".into(),
            tls_verify: true,
            username: None,
            password: None,
            timeout_seconds: 60,
            max_idle_connections: 16,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawTracking {
    pub listen: String,
    pub base_url: String,
    pub token_ttl_days: u32,
    pub trusted_proxies: Vec<String>,
    pub client_ip_header: String,
    pub commit_wait_ms: u32,
    pub queue_capacity: u32,
    pub keys: Vec<RawKey>,
    pub tls: Vec<RawTrackingTls>,
}

impl Default for RawTracking {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            base_url: "http://127.0.0.1:8080".into(),
            token_ttl_days: 30,
            trusted_proxies: vec!["127.0.0.1/32".into(), "::1/128".into()],
            client_ip_header: "x-forwarded-for".into(),
            commit_wait_ms: 5,
            queue_capacity: 100_000,
            keys: Vec::new(),
            tls: Vec::new(),
        }
    }
}

/// A certificate of the tracking listener, chosen by SNI.
#[derive(Debug, Deserialize)]
pub struct RawTrackingTls {
    pub domain: String,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
pub struct RawKey {
    pub id: String,
    pub secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawApi {
    pub listen: String,
    pub token: String,
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            token: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawStorage {
    pub path: String,
    /// PostgreSQL instead of the SQLite file (config/storage.rs).
    pub url: Option<String>,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            path: "var/trackrelay.db".into(),
            url: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawClassifier {
    pub wait_seconds: u32,
    pub burst_links: u32,
    pub burst_window_ms: u32,
    pub scanner_click_seconds: u32,
    pub early_click_seconds: u32,
    pub max_recipients_per_ip: u32,
    pub bot_patterns: Option<String>,
    pub user_agents: Option<String>,
    pub networks: Option<String>,
    pub max_list_age_days: u32,
    pub ranges: Vec<RawRange>,
}

impl Default for RawClassifier {
    fn default() -> Self {
        Self {
            wait_seconds: 10,
            burst_links: 2,
            burst_window_ms: 2000,
            scanner_click_seconds: 3,
            early_click_seconds: 10,
            max_recipients_per_ip: 20,
            bot_patterns: None,
            user_agents: None,
            networks: None,
            max_list_age_days: 90,
            ranges: Vec::new(),
        }
    }
}

/// A downloaded range list: `[[classifier.ranges]]`.
#[derive(Debug, Deserialize)]
pub struct RawRange {
    pub name: String,
    pub class: String,
    pub file: String,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawRetention {
    pub raw_signal_days: u32,
    pub event_days: Option<u32>,
    pub ip_hash_key: Option<String>,
    pub interval_minutes: u32,
}

impl Default for RawRetention {
    fn default() -> Self {
        Self {
            raw_signal_days: 28,
            event_days: None,
            ip_hash_key: None,
            interval_minutes: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawWebhooksGlobal {
    pub allow_private_networks: bool,
    pub retry_base_ms: u64,
    pub retry_max_delay_seconds: u64,
    pub retry_for_seconds: u64,
    pub timeout_seconds: u64,
    pub concurrency_per_endpoint: u32,
    pub claim_lease_seconds: u64,
}

impl Default for RawWebhooksGlobal {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            retry_base_ms: 5_000,
            retry_max_delay_seconds: 3_600,
            retry_for_seconds: 86_400,
            timeout_seconds: 10,
            concurrency_per_endpoint: 4,
            claim_lease_seconds: 120,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawRoute {
    pub id: String,
    #[serde(default, rename = "match")]
    pub matcher: RawMatch,
    #[serde(default)]
    pub track_opens: bool,
    #[serde(default)]
    pub track_clicks: bool,
    #[serde(default)]
    pub tracking_domain: Option<String>,
    #[serde(default = "default_true")]
    pub per_recipient: bool,
    #[serde(default = "default_pixel_position")]
    pub pixel_position: String,
    #[serde(default)]
    pub rewrite_dkim_signed: bool,
    #[serde(default)]
    pub dkim_sign: bool,
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawMatch {
    pub auth_users: Vec<String>,
    pub senders: Vec<String>,
    pub networks: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawWebhook {
    pub url: String,
    /// One `whsec_` secret, or several in `secrets` (rotation).
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default = "default_events")]
    pub events: Vec<String>,
    #[serde(default)]
    pub include_machine: bool,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `"standard"` (Standard Webhooks) or `"lettermint"`.
    #[serde(default)]
    pub format: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_pixel_position() -> String {
    "end".into()
}

fn default_events() -> Vec<String> {
    vec!["message.opened".into(), "message.clicked".into()]
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawMilter {
    pub listen: String,
    pub on_error: String,
    pub max_message_bytes: u64,
    pub allowed_networks: Vec<String>,
    pub max_connections: u32,
    pub packet_timeout_seconds: u32,
    pub idle_timeout_seconds: u32,
}

impl Default for RawMilter {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8891".into(),
            on_error: "accept".into(),
            max_message_bytes: 50 * 1024 * 1024,
            allowed_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            max_connections: 256,
            packet_timeout_seconds: 30,
            idle_timeout_seconds: 900,
        }
    }
}
