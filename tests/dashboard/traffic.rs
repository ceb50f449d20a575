//! The scene the dashboard shows: mail relayed over SMTP by the server,
//! the pixels and links of the relayed copies hit over HTTP, the
//! classifier's verdicts waited for; and the API's answers to compare with.

use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

use crate::support::server::{API_TOKEN, HOST, TestServer};

pub const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
pub const SLACK: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
/// An attacker's user agent: must show as text, never run.
pub const XSS_AGENT: &str = "<script>alert(1)</script>";
/// An attacker's tag (X-LM-Tag), shown on the timeline.
pub const XSS_TAG: &str = "<img src=x onerror=alert(2)>";
/// The news route's tracking domain in test configs.
pub const NEWS_HOST: &str = "links.news.example:8443";
/// Generous bound for anything the test waits for (slow 2-core CI).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The classifier judges after a second; clicks right after relaying are
/// not taken for scanners here, so a person's click is told apart from a
/// preview bot's by its agent and headers alone.
pub const CLASSIFIER: &str = "\n[classifier]\nwait_seconds = 1\n\
                          scanner_click_seconds = 0\nearly_click_seconds = 0\n";

/// A two-link HTML message with a tag.
pub fn message(from: &str, to: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: dashboard\r\nMessage-ID: <{}@example.com>\r\n\
         X-LM-Tag: {XSS_TAG}\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <html><body><p>Hello</p><a href=\"https://example.com/first\">first</a>\r\n\
         <a href=\"https://example.com/second?x=1\">second</a></body></html>\r\n",
        Uuid::now_v7()
    )
    .into_bytes()
}

/// Tokens after `base/kind/` in `text`, in order.
pub fn tokens(text: &str, base: &str, kind: &str) -> Vec<String> {
    crate::support::tokens_after(text, base, kind)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// One relayed copy as the upstream got it.
#[derive(Debug)]
pub struct Copy {
    pub id: Uuid,
    pub open: String,
    pub clicks: Vec<String>,
}

/// Relays one message from `from` to `to` and finds its copy in the outbox.
pub async fn relay(server: &TestServer, from: &str, to: &str, base: &str) -> Copy {
    let mut client = crate::support::relay::Client::connect(server.app().smtp_addr()).await;
    let (rcpts, reply) = client.send(from, &[to], &message(from, to)).await;
    assert!(
        rcpts[0].starts_with("250") && reply.starts_with("250"),
        "{rcpts:?} {reply}"
    );
    let (id, text) = outbox(server, to);
    Copy {
        id,
        open: tokens(&text, base, "o").remove(0),
        clicks: tokens(&text, base, "c"),
    }
}

/// The copy relayed to `to` in the outbox: its id and text.
pub fn outbox(server: &TestServer, to: &str) -> (Uuid, String) {
    for entry in std::fs::read_dir(server.dir.path().join("outbox")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let envelope: Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("envelope.json")).unwrap())
                .unwrap();
        if envelope["to"][0] != to {
            continue;
        }
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let id = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        return (id, text);
    }
    panic!("no copy for {to} in the outbox");
}

/// A hit on the tracking server from `ip` with `agent`; `browser` adds
/// the headers a browser sends with a navigation.
pub async fn hit(
    server: &TestServer,
    host: &str,
    path: &str,
    ip: &str,
    agent: &str,
    browser: bool,
) {
    let mut headers = vec![("x-forwarded-for", ip), ("user-agent", agent)];
    if browser {
        headers.extend([
            ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            ("accept-language", "en-GB,en;q=0.9"),
            ("accept-encoding", "gzip, deflate, br"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ]);
    }
    let resp = server.tracking("GET", host, path, &headers).await;
    assert!([200, 302].contains(&resp.status), "{path}: {}", resp.status);
}

/// `GET path` on the API with the token; the JSON.
pub async fn api(server: &TestServer, path: &str) -> Value {
    let resp = server.api(path, Some(API_TOKEN)).await;
    assert_eq!(
        resp.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    resp.json()
}

/// Waits until message `id` has `n` events and nothing unclassified.
pub async fn classified(server: &TestServer, id: Uuid, n: usize) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = api(server, &format!("/v1/messages/{id}?include_machine=true")).await;
        if v["unclassified"] == 0 && v["events"].as_array().unwrap().len() == n {
            return v;
        }
        assert!(Instant::now() < deadline, "{n} events expected: {v:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mail and hits: on `default`, Bob opens and clicks as a person, Ann's
/// copy is opened by an agent that is a script tag and previewed by
/// Slack, Cy does nothing; on `news`, Dan opens and clicks.
/// Returns the copies' ids (Bob, Ann, Cy, Dan).
pub async fn traffic(server: &TestServer) -> [Uuid; 4] {
    let t = "https://t.example.com";
    let bob = relay(server, "alice@example.com", "bob@example.com", t).await;
    let ann = relay(server, "alice@example.com", "ann@example.com", t).await;
    let cy = relay(server, "alice@example.com", "cy@example.com", t).await;
    let dan = relay(
        server,
        "n@news.example.com",
        "dan@example.com",
        "https://links.news.example:8443",
    )
    .await;
    assert_eq!(bob.clicks.len(), 2, "{bob:?}");

    hit(
        server,
        HOST,
        &format!("/o/{}", bob.open),
        "198.51.100.20",
        CHROME,
        true,
    )
    .await;
    hit(
        server,
        HOST,
        &format!("/c/{}", bob.clicks[1]),
        "198.51.100.20",
        CHROME,
        true,
    )
    .await;
    hit(
        server,
        HOST,
        &format!("/o/{}", ann.open),
        "203.0.113.7",
        XSS_AGENT,
        false,
    )
    .await;
    hit(
        server,
        HOST,
        &format!("/c/{}", ann.clicks[0]),
        "203.0.113.8",
        SLACK,
        false,
    )
    .await;
    hit(
        server,
        NEWS_HOST,
        &format!("/o/{}", dan.open),
        "198.51.100.30",
        CHROME,
        true,
    )
    .await;
    hit(
        server,
        NEWS_HOST,
        &format!("/c/{}", dan.clicks[0]),
        "198.51.100.30",
        CHROME,
        true,
    )
    .await;

    let bob_v = classified(server, bob.id, 2).await;
    let ann_v = classified(server, ann.id, 2).await;
    classified(server, dan.id, 2).await;
    // The scene has both kinds, or the share says nothing.
    let counts = |v: &Value| -> Vec<bool> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["bot"]["counts_for_metrics"] == true)
            .collect()
    };
    assert_eq!(counts(&bob_v), [true, true], "{bob_v:#}");
    assert!(
        counts(&ann_v).contains(&false),
        "Slack's preview is a machine: {ann_v:#}"
    );
    [bob.id, ann.id, cy.id, dan.id]
}
