//! Shared test setup: a fixed key ring, route settings and one-call rewrite.
#![allow(dead_code)]

pub mod bob;
pub mod corpus;
pub mod db;
pub mod dkim;
pub mod fake_upstream;
pub mod load;
pub mod mime_equiv;
pub mod node;
pub mod postfix;
pub mod relay;
pub mod rows;
pub mod sdk;
pub mod server;
pub mod stored;
pub mod webhook_receiver;

use trackrelay::config::RouteSettings;
use trackrelay::rewrite::{Outcome, Request};
use trackrelay::token::{Key, KeyRing};
use url::Url;
use uuid::Uuid;

pub const BASE: &str = "https://t.example.com";
pub const MESSAGE_ID: Uuid = Uuid::from_u128(0x0193_4d2e_8c00_7000_8000_0000_0000_0042);
pub const EXPIRES_AT: u32 = 2_000_000_000;

pub fn keys() -> KeyRing {
    KeyRing::new(vec![Key::new(
        "k1",
        b"0123456789abcdef0123456789abcdef".to_vec(),
    )])
}

pub fn settings(opens: bool, clicks: bool) -> RouteSettings {
    RouteSettings {
        track_opens: opens,
        track_clicks: clicks,
        ..RouteSettings::default()
    }
}

/// Rewrites `raw` for bob@example.com with fixed ids, as the relay would.
pub fn rewrite_with(raw: &[u8], settings: &RouteSettings) -> Outcome {
    let keys = keys();
    let base = Url::parse(BASE).unwrap();
    let request = Request {
        settings,
        base_url: &base,
        keys: &keys,
        message_id: MESSAGE_ID,
        recipient: Some("bob@example.com"),
        expires_at: EXPIRES_AT,
    };
    trackrelay::rewrite::rewrite(raw, &request)
}

pub fn rewrite(raw: &[u8], opens: bool, clicks: bool) -> Outcome {
    rewrite_with(raw, &settings(opens, clicks))
}

/// Tokens of the tracking URLs of one kind (`"o"` or `"c"`) in `text`, in order.
pub fn tracking_tokens<'a>(text: &'a str, kind: &str) -> Vec<&'a str> {
    tokens_after(text, BASE, kind)
}

/// Tokens after `base/kind/` in `text`, in order.
pub fn tokens_after<'a>(text: &'a str, base: &str, kind: &str) -> Vec<&'a str> {
    let prefix = format!("{base}/{kind}/");
    text.match_indices(&prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// The first relayed copy in a `dir:` upstream's `outbox`: its first open
/// and click tokens.
pub fn outbox_tokens(outbox: &std::path::Path) -> (String, String) {
    let eml = std::fs::read_dir(outbox)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "eml"))
        .expect("a relayed copy in the outbox");
    let raw = std::fs::read(eml).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let html = parsed.body_html(0).unwrap().into_owned();
    let open = tracking_tokens(&html, "o")[0].to_owned();
    let click = tracking_tokens(&html, "c")[0].to_owned();
    (open, click)
}

/// Relays one message with Python's smtplib to `127.0.0.1:port` (retrying
/// the connection while the server starts): `rcpt` gets `body`, an HTML
/// message. Returns python3's output for the caller to check.
pub fn smtplib_send(port: u16, rcpt: &str, body: &str) -> std::process::Output {
    let script = format!(
        "import smtplib, sys, time\n\
         for i in range(200):\n\
         \x20   try:\n\
         \x20       s = smtplib.SMTP('127.0.0.1', {port}, timeout=10); break\n\
         \x20   except OSError: time.sleep(0.05)\n\
         s.sendmail('a@example.org', [sys.argv[1]], 'Subject: hi\\r\\nContent-Type: text/html\\r\\n\\r\\n' + sys.argv[2] + '\\r\\n')\n\
         s.quit()\n"
    );
    std::process::Command::new("python3")
        .args(["-c", &script, rcpt, body])
        .output()
        .unwrap()
}
