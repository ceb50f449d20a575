//! Triage helper: runs one input through `rewrite::rewrite` with the same
//! request as the `rewrite_message` target (opens and clicks tracked) and
//! prints the report, the output (escaped), and the HTML parts the output
//! re-parses into. Run from `fuzz/`:
//!
//!     cargo run --example show_rewrite -- path/to/input

#[path = "../fuzz_targets/common.rs"]
mod common;

use trackrelay::config::RouteSettings;
use trackrelay::mime;
use trackrelay::rewrite::{self, Request};
use url::Url;
use uuid::Uuid;

fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn show_parts(label: &str, raw: &[u8]) {
    let Some(message) = mime::parser().parse(raw) else {
        println!("{label}: does not parse");
        return;
    };
    let (parts, skips) = mime::html_parts(&message);
    println!("{label}: {} HTML part(s), skipped {skips:?}", parts.len());
    for part in parts {
        println!(
            "  body {:?} {:?} {:?}: {}",
            part.body,
            part.transfer,
            part.charset,
            escaped(raw.get(part.body.clone()).unwrap_or(b"<out of range>"))
        );
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: show_rewrite FILE");
    let input = std::fs::read(path).expect("read input");
    let settings = RouteSettings {
        track_opens: true,
        track_clicks: true,
        ..Default::default()
    };
    let ring = common::ring();
    let base = Url::parse(common::BASE_URL).expect("base URL");
    let req = Request {
        settings: &settings,
        base_url: &base,
        keys: &ring,
        message_id: Uuid::from_u128(common::MESSAGE_ID),
        recipient: Some(common::RECIPIENT),
        expires_at: common::EXPIRES_AT,
    };
    let out = rewrite::rewrite(&input, &req);
    println!("input  ({} bytes): {}", input.len(), escaped(&input));
    show_parts("input", &input);
    println!("report: {:?}", out.report);
    println!("output ({} bytes): {}", out.message.len(), escaped(&out.message));
    show_parts("output", &out.message);
}
