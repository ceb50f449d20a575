//! Click redirects for real mail: corpus messages go through
//! `trackrelay rewrite` (the binary), and every tracking URL in its output
//! must redirect to exactly the entity-decoded destination.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use mail_parser::{MessageParser, PartType};
use support::server::{TestServer, config_text};
use trackrelay::tracking::location;

/// Most corpus messages with links to take (keeps the test quick).
const MESSAGES: usize = 40;

/// Runs `trackrelay rewrite --report`; returns the output and the tracked
/// destinations in link-index order.
fn rewrite(config: &std::path::Path, message: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args([
            "rewrite",
            "--route",
            "default",
            "--recipient",
            "bob@example.com",
            "--report",
        ])
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    let links = report["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    (out.stdout, links)
}

/// Click tokens in the decoded HTML parts of a rewritten message.
fn click_tokens(message: &[u8]) -> Vec<String> {
    let parsed = MessageParser::default().parse(message).unwrap();
    let mut tokens = Vec::new();
    for part in &parsed.parts {
        if let PartType::Html(html) = &part.body {
            tokens.extend(
                support::tracking_tokens(html, "c")
                    .into_iter()
                    .map(str::to_owned),
            );
        }
    }
    tokens
}

/// Asserts that each token redirects to its destination; returns how many.
async fn check_redirects(server: &TestServer, tokens: &[String], links: &[String]) -> usize {
    for tok in tokens {
        let (claims, _) = support::keys().verify(tok).unwrap();
        let link = usize::from(claims.link.unwrap());
        assert_eq!(claims.url.as_deref(), Some(links[link].as_str()));
        let resp = server.hit("GET", &format!("/c/{tok}")).await;
        assert_eq!(resp.status, 302, "{}", links[link]);
        assert_eq!(resp.header("location"), location::encode(&links[link]));
    }
    tokens.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_links_redirect_to_their_decoded_destination() {
    let server = TestServer::start("").await;
    let config = server.dir.path().join("rewrite.toml");
    std::fs::write(
        &config,
        config_text(server.dir.path(), "127.0.0.1:0", "127.0.0.1:0", ""),
    )
    .unwrap();
    let (mut messages, mut redirects) = (0, 0);
    for path in support::corpus::mime_files() {
        let raw = std::fs::read(&path).unwrap();
        if !raw.windows(5).any(|w| w.eq_ignore_ascii_case(b"href=")) {
            continue;
        }
        let (out, links) = rewrite(&config, &raw);
        let tokens = click_tokens(&out);
        if tokens.is_empty() {
            continue;
        }
        redirects += check_redirects(&server, &tokens, &links).await;
        messages += 1;
        if messages == MESSAGES {
            break;
        }
    }
    assert!(
        messages >= 10,
        "only {messages} corpus messages had tracked links"
    );
    assert!(redirects >= messages);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_are_decoded_and_unsafe_bytes_escaped_in_the_redirect() {
    let server = TestServer::start("").await;
    let config = server.dir.path().join("rewrite.toml");
    std::fs::write(
        &config,
        config_text(server.dir.path(), "127.0.0.1:0", "127.0.0.1:0", ""),
    )
    .unwrap();
    let message = "From: a@example.com\nTo: bob@example.com\nSubject: s\nMIME-Version: 1.0\n\
        Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n\
        <html><body>\
        <a href=\"https://example.com/?a=1&amp;b=2&#38;c=3&#x26;d=caf&eacute;\">one</a>\
        <a href=\"HTTPS://example.com/p%20q/r s#Fr\u{e4}g\">two</a>\
        </body></html>\n";
    let (out, _) = rewrite(&config, message.as_bytes());
    let tokens = click_tokens(&out);
    assert_eq!(tokens.len(), 2);
    let mut locations = Vec::new();
    for tok in &tokens {
        let resp = server.hit("GET", &format!("/c/{tok}")).await;
        assert_eq!(resp.status, 302);
        locations.push(resp.header("location").to_owned());
    }
    assert_eq!(
        locations,
        [
            "https://example.com/?a=1&b=2&c=3&d=caf%C3%A9",
            "HTTPS://example.com/p%20q/r%20s#Fr%C3%A4g",
        ]
    );
    server.stop().await;
}
