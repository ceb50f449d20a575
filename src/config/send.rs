//! `[send]`: the sending API's listener (issue 18, docs/send-api.md): its
//! address, the sending tokens and the routes each may use, and its limits.
//! Absent: no sending API. The `send` module serves it; this only checks.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{Collector, secrets};

/// `[send]` as serde reads it; defaults repeated in conf/trackrelay.toml.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawSend {
    pub listen: String,
    pub tokens: Vec<RawSendToken>,
    pub max_request_bytes: u32,
    pub max_recipients: u32,
    pub max_batch: u32,
    pub rate_per_minute: u32,
    pub request_timeout_seconds: u32,
    pub idempotency_hours: u32,
}

impl Default for RawSend {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8082".into(),
            tokens: Vec::new(),
            max_request_bytes: 40 * 1024 * 1024,
            max_recipients: 50,
            max_batch: 500,
            rate_per_minute: 600,
            request_timeout_seconds: 120,
            idempotency_hours: 24,
        }
    }
}

/// One `[[send.tokens]]` entry.
#[derive(Debug, Deserialize)]
pub struct RawSendToken {
    pub token: String,
    /// Route ids it may send through; empty: any route.
    #[serde(default)]
    pub routes: Vec<String>,
}

/// The sending API, validated.
#[derive(Debug, Clone)]
pub struct SendConfig {
    pub listen: SocketAddr,
    pub tokens: Vec<SendToken>,
    /// Largest request body read (a batch with its attachments).
    pub max_request_bytes: usize,
    /// `to` + `cc` + `bcc` of one message.
    pub max_recipients: usize,
    /// Messages in one `/send/batch` request.
    pub max_batch: usize,
    /// Messages per token per minute (a batch counts each of its messages).
    pub rate_per_minute: u32,
    /// One request end to end (body read, upstream, reply).
    pub request_timeout: Duration,
    /// How long an `Idempotency-Key`'s first response is replayed.
    pub idempotency_window: Duration,
}

/// A sending token and the routes it may use.
#[derive(Clone)]
pub struct SendToken {
    pub token: String,
    pub routes: Vec<String>,
}

impl std::fmt::Debug for SendToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are never logged.
        f.debug_struct("SendToken")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// `[send]`, when present; `routes` are the configured route ids.
    pub(super) fn send(&mut self, raw: Option<&RawSend>, routes: &[String]) -> Option<SendConfig> {
        let raw = raw?;
        if raw.tokens.is_empty() {
            self.push(
                "send.tokens",
                "at least one [[send.tokens]] entry is needed",
            );
        }
        let tokens = raw
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| self.send_token(i, t, routes))
            .collect();
        let seconds = |hours: usize| Duration::from_secs(hours as u64 * 3600);
        Some(SendConfig {
            listen: self.addr("send.listen", &raw.listen),
            tokens,
            max_request_bytes: self.at_least_one("send.max_request_bytes", raw.max_request_bytes),
            max_recipients: self.at_least_one("send.max_recipients", raw.max_recipients),
            max_batch: self.at_least_one("send.max_batch", raw.max_batch),
            rate_per_minute: self.at_least_one("send.rate_per_minute", raw.rate_per_minute) as u32,
            request_timeout: Duration::from_secs(
                self.at_least_one("send.request_timeout_seconds", raw.request_timeout_seconds)
                    as u64,
            ),
            idempotency_window: seconds(
                self.at_least_one("send.idempotency_hours", raw.idempotency_hours),
            ),
        })
    }

    fn send_token(&mut self, i: usize, t: &RawSendToken, routes: &[String]) -> SendToken {
        let key = format!("send.tokens[{i}]");
        // The same rule as every other secret: long, random, no placeholder.
        // Sending tokens are never generated: the advice to remove one is not theirs.
        if let Some(why) = secrets::weakness(&t.token) {
            let why = why.replace(" or remove it to have one generated", "");
            self.push(format!("{key}.token"), why);
        }
        for (j, r) in t.routes.iter().enumerate() {
            if !routes.contains(r) {
                self.push(format!("{key}.routes[{j}]"), format!("no route {r:?}"));
            }
        }
        SendToken {
            token: t.token.clone(),
            routes: t.routes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    const MINIMAL: &str = "[api]\ntoken = \"Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU\"\n[[tracking.keys]]\nid = \"k1\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";

    #[test]
    fn no_section_no_sending_api_and_defaults_with_one() {
        assert!(Config::parse(MINIMAL).unwrap().send.is_none());
        let text = format!(
            "{MINIMAL}[send]\n[[send.tokens]]\ntoken = \"Tq8Wm3Zr5Xc1Vb7Nk2Lp9Hs4Jd6Fg0Ya\"\n"
        );
        let send = Config::parse(&text).unwrap().send.expect("[send]");
        assert_eq!(send.listen.to_string(), "127.0.0.1:8082");
        assert_eq!((send.max_batch, send.max_recipients), (500, 50));
        assert_eq!(send.idempotency_window.as_secs(), 24 * 3600);
    }

    #[test]
    fn weak_tokens_unknown_routes_and_zero_limits_are_named() {
        let text = format!(
            "{MINIMAL}[send]\nmax_batch = 0\n[[send.tokens]]\ntoken = \"change-me-change-me-change-me-0123\"\n\
             routes = [\"nope\"]\n[[send.tokens]]\ntoken = \"short\"\n"
        );
        let problems = Config::parse(&text).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "send.tokens[0].token",
                "send.tokens[0].routes[0]",
                "send.tokens[1].token",
                "send.max_batch"
            ],
            "{problems:?}"
        );
        assert!(problems[0].message.contains("placeholder"));
    }
}
