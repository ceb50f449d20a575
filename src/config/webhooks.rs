//! Validation of the webhook keys: `[webhooks]` (delivery settings shared
//! by every endpoint) and each route's `[[routes.webhooks]]` (URL, `whsec_`
//! secrets, events). The `webhooks` module delivers; this only checks.

use std::time::Duration;

use base64::Engine;
use url::Url;

use super::{Collector, raw};

/// The event types a webhook may ask for (SPEC §7).
pub const EVENT_TYPES: [&str; 4] = [
    "message.opened",
    "message.clicked",
    "message.relayed",
    "message.failed",
];

/// `[webhooks]`: how every endpoint is delivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Let URLs reach loopback, link-local or private addresses.
    pub allow_private_networks: bool,
    /// The first retry's delay; each next one doubles (plus jitter).
    pub retry_base: Duration,
    /// No retry waits longer than this.
    pub retry_max_delay: Duration,
    /// A delivery still failing this long after it was queued is failed.
    pub retry_for: Duration,
    /// One attempt (connect, request, response) at most this long.
    pub timeout: Duration,
    /// Attempts in flight to one endpoint at once.
    pub concurrency_per_endpoint: usize,
    /// How long a node's claim on a due delivery keeps the other nodes
    /// away (shared PostgreSQL): longer than a try, so that only a node
    /// that died mid-try lets another send the delivery again.
    pub claim_lease: Duration,
}

/// A webhook endpoint of a route (delivered by the `webhooks` module).
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: Url,
    /// The secrets' bytes (base64 after `whsec_`), each signing every
    /// request: several while a secret is rotated.
    pub secrets: Vec<Vec<u8>>,
    pub events: Vec<String>,
    pub include_machine: bool,
    pub enabled: bool,
    /// The body shape, headers and signature scheme of its requests.
    pub format: WebhookFormat,
}

/// How an endpoint's requests are shaped and signed (docs/webhooks.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Standard Webhooks: `{id, type, timestamp, data}`, `webhook-*`
    /// headers, the key being the base64 after `whsec_`.
    #[default]
    Standard,
    /// What the Lettermint SDKs' `Webhook.verify` checks: `{id, event,
    /// timestamp, data}`, `x-lettermint-signature: t=…,v1=<hex>` and
    /// `x-lettermint-delivery`, the key being the whole `whsec_…` text.
    Lettermint,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never logged.
        f.debug_struct("Webhook")
            .field("url", &self.url.as_str())
            .field("secrets", &self.secrets.len())
            .field("events", &self.events)
            .field("include_machine", &self.include_machine)
            .field("enabled", &self.enabled)
            .field("format", &self.format)
            .finish()
    }
}

impl Collector {
    /// `[webhooks]`.
    pub(super) fn webhook_settings(&mut self, w: &raw::RawWebhooksGlobal) -> WebhookSettings {
        if w.retry_base_ms == 0 {
            self.push("webhooks.retry_base_ms", "must be at least 1");
        }
        if w.retry_for_seconds == 0 {
            self.push("webhooks.retry_for_seconds", "must be at least 1");
        }
        if w.timeout_seconds == 0 {
            self.push("webhooks.timeout_seconds", "must be at least 1");
        }
        let concurrency = self.at_least_one(
            "webhooks.concurrency_per_endpoint",
            w.concurrency_per_endpoint,
        );
        // A claim shorter than a try would let another node send the
        // delivery again while the first try still waits for its answer.
        if w.claim_lease_seconds > 86_400 {
            self.push(
                "webhooks.claim_lease_seconds",
                "must be at most 86400 (a day)",
            );
        } else if w.claim_lease_seconds <= w.timeout_seconds {
            self.push(
                "webhooks.claim_lease_seconds",
                format!(
                    "must be longer than webhooks.timeout_seconds ({})",
                    w.timeout_seconds
                ),
            );
        }
        WebhookSettings {
            allow_private_networks: w.allow_private_networks,
            retry_base: Duration::from_millis(w.retry_base_ms.max(1)),
            retry_max_delay: Duration::from_secs(w.retry_max_delay_seconds.max(1)),
            retry_for: Duration::from_secs(w.retry_for_seconds),
            timeout: Duration::from_secs(w.timeout_seconds.max(1)),
            concurrency_per_endpoint: concurrency,
            claim_lease: Duration::from_secs(w.claim_lease_seconds.max(1)),
        }
    }

    /// One `[[routes.webhooks]]` entry; `key` is its path.
    pub(super) fn webhook(&mut self, key: &str, w: &raw::RawWebhook) -> Webhook {
        let url = match Url::parse(&w.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
            _ => {
                self.push(
                    format!("{key}.url"),
                    format!("{:?} is not an http(s) URL", w.url),
                );
                Url::parse("http://invalid.invalid").expect("static URL parses")
            }
        };
        let format = match w.format.as_deref() {
            None | Some("standard") => WebhookFormat::Standard,
            Some("lettermint") => WebhookFormat::Lettermint,
            Some(other) => {
                self.push(
                    format!("{key}.format"),
                    format!("{other:?} is not \"standard\" or \"lettermint\""),
                );
                WebhookFormat::Standard
            }
        };
        let mut secrets = Vec::new();
        let named = std::iter::once(("secret".to_owned(), &w.secret))
            .filter(|(_, s)| !s.is_empty())
            .chain(
                w.secrets
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("secrets[{i}]"), s)),
            );
        for (field, text) in named {
            match decode_secret(text) {
                // Lettermint keys its HMAC with the secret's text as is.
                Some(_) if format == WebhookFormat::Lettermint => {
                    secrets.push(text.trim().as_bytes().to_vec())
                }
                Some(bytes) => secrets.push(bytes),
                None => self.push(
                    format!("{key}.{field}"),
                    "must be \"whsec_\" followed by base64 of at least 16 bytes",
                ),
            }
        }
        if w.secret.is_empty() && w.secrets.is_empty() {
            self.push(format!("{key}.secret"), "must be set (whsec_... form)");
        }
        for (j, e) in w.events.iter().enumerate() {
            if !EVENT_TYPES.contains(&e.as_str()) {
                self.push(
                    format!("{key}.events[{j}]"),
                    format!("{e:?} is not one of {}", EVENT_TYPES.join(", ")),
                );
            }
        }
        Webhook {
            url,
            secrets,
            events: w.events.clone(),
            include_machine: w.include_machine,
            enabled: w.enabled,
            format,
        }
    }
}

/// The key bytes of a Standard Webhooks secret: base64 after `whsec_`
/// (padding optional); at least 16 bytes.
pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    let b64 = text.trim().strip_prefix("whsec_")?;
    let unpadded = b64.trim_end_matches('=');
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(unpadded).ok()?;
    (bytes.len() >= 16).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const MINIMAL: &str = "[api]\ntoken = \"Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU\"\n[[tracking.keys]]\nid = \"k1\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";

    fn problems(webhooks: &str) -> Vec<String> {
        let text = format!("[webhooks]\n{webhooks}\n{MINIMAL}");
        Config::parse(&text)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    }

    #[test]
    fn a_claim_lasts_longer_than_a_try() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.webhooks.claim_lease, Duration::from_secs(120));
        assert!(problems("timeout_seconds = 5\nclaim_lease_seconds = 6").is_empty());
        assert_eq!(
            problems("timeout_seconds = 30\nclaim_lease_seconds = 30"),
            ["webhooks.claim_lease_seconds: must be longer than webhooks.timeout_seconds (30)"]
        );
        assert_eq!(
            problems("claim_lease_seconds = 86401"),
            ["webhooks.claim_lease_seconds: must be at most 86400 (a day)"]
        );
    }

    #[test]
    fn secrets_are_base64_after_the_prefix() {
        let bytes = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(bytes.len(), 24);
        assert!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none());
        assert!(decode_secret("whsec_c2hvcnQ=").is_none(), "5 bytes");
        assert!(decode_secret("whsec_not base64!").is_none());
    }
}
