//! The sending API (issue 18) driven by the official Lettermint SDKs —
//! Python `lettermint==3.2.0` and Node `lettermint@2.7.0`, installed by
//! .ci/packages — pointed at a real trackrelay in this process, relaying
//! to the scripted upstream of tests/support on a real socket. Every
//! delivered copy is read with Python's `email` package, and its tracking
//! links are followed on the tracking server.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;

use base64::Engine;
use serde_json::{Value, json};
use support::fake_upstream::{Accepted, FakeUpstream, Script};
use support::relay::Running;
use support::sdk::{SEND_TOKEN, node, parse, python};
use support::server::{HOST, Http};

/// 1×1 PNG, the inline image.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
];

/// trackrelay with a `[send]` listener, relaying to a scripted upstream.
struct Setup {
    relay: Running,
    upstream: FakeUpstream,
    send: SocketAddr,
    tracking: SocketAddr,
}

impl Setup {
    /// `send_extra`: more `[send]` keys (limits).
    async fn start(script: Script, send_extra: &str) -> Setup {
        let upstream = FakeUpstream::start(script).await;
        let routes = format!(
            r#"
[[routes]]
id = "quiet"
match = {{ senders = ["quiet@acme.test"] }}
[[routes]]
id = "default"
track_opens = true
track_clicks = true
[send]
listen = "127.0.0.1:0"
{send_extra}
[[send.tokens]]
token = "{SEND_TOKEN}"
"#
        );
        let smtp_upstream = format!("url = \"smtp://{}\"", upstream.addr);
        let relay = support::relay::start("", &smtp_upstream, &routes).await;
        let app = relay.app.as_ref().expect("running");
        let send = app.send_addr().expect("[send] is configured");
        let tracking = app.tracking_addr();
        Setup {
            relay,
            upstream,
            send,
            tracking,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.send)
    }

    /// A call for the SDK scripts.
    fn call(&self, op: &str, payload: Value) -> Value {
        let mut call = json!({ "base_url": self.base_url(), "token": SEND_TOKEN, "op": op });
        match op {
            "batch" => call["messages"] = payload,
            _ => call["message"] = payload,
        }
        call
    }

    /// Copies the upstream accepted, by envelope recipient.
    fn by_recipient(&self) -> HashMap<String, Accepted> {
        let mut out = HashMap::new();
        for a in self.upstream.accepted() {
            for r in &a.to {
                out.insert(r.clone(), a.clone());
            }
        }
        out
    }
}

fn plain(to: &str) -> Value {
    json!({ "from": "Acme <hello@acme.test>", "to": [to], "subject": "Hello", "text": "Plain words." })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Tracking URLs (`https://t.example.com/{kind}/...`) in `text`.
fn tracking_paths(text: &str, kind: &str) -> Vec<String> {
    support::tracking_tokens(text, kind)
        .into_iter()
        .map(|t| format!("/{kind}/{t}"))
        .collect()
}

/// The leaf parts of a parsed message with this content type.
fn parts<'a>(parsed: &'a Value, content_type: &str) -> Vec<&'a Value> {
    parsed["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter(|p| p["type"] == content_type)
        .collect()
}

fn header<'a>(parsed: &'a Value, name: &str) -> Option<&'a str> {
    parsed["headers"][name][0].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sends_a_plain_email_that_arrives_as_sent() {
    let s = Setup::start(Script::default(), "").await;
    let answer = python(&s.call("send", plain("bob@example.test"))).await;
    let ok = &answer["ok"];
    assert_eq!(ok["status"], "pending", "{answer}");
    let message_id = ok["message_id"].as_str().expect("message_id");
    let accepted = s.upstream.accepted();
    assert_eq!(accepted.len(), 1, "one message upstream");
    assert_eq!(accepted[0].from, "hello@acme.test");
    assert_eq!(accepted[0].to, ["bob@example.test"]);
    let parsed = parse(&accepted[0].data).await;
    assert_eq!(parsed["defects"], 0, "{parsed}");
    assert_eq!(header(&parsed, "subject"), Some("Hello"));
    assert_eq!(header(&parsed, "from"), Some("Acme <hello@acme.test>"));
    assert_eq!(
        header(&parsed, "message-id"),
        Some(format!("<{message_id}>").as_str())
    );
    assert!(header(&parsed, "date").is_some());
    let text = parts(&parsed, "text/plain");
    assert_eq!(text.len(), 1);
    assert_eq!(
        text[0]["text"].as_str().map(str::trim_end),
        Some("Plain words.")
    );
    s.relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_html_text_inline_image_attachment_cc_bcc_and_tag_each_copy_tracked() {
    let s = Setup::start(Script::default(), "").await;
    let email = json!({
        "from": "Zoë Acme <hello@acme.test>",
        "to": ["bob@example.test"], "cc": ["carol@example.test"], "bcc": ["dave@example.test"],
        "reply_to": ["support@acme.test"],
        "subject": "Grüße aus Köln",
        "text": "Read https://example.com/offer",
        "html": "<html><body><p>Hi</p><img src=\"cid:logo\"><a href=\"https://example.com/offer?a=1&amp;b=2\">Offer</a></body></html>",
        "headers": { "X-Campaign": "spring" },
        "metadata": { "customer": "42" },
        "tag": "welcome",
        "attachments": [
            { "filename": "logo.png", "content": b64(PNG), "content_type": "image/png", "content_id": "logo" },
            { "filename": "terms.pdf", "content": b64(b"%PDF-1.4 terms") }
        ]
    });
    let answer = python(&s.call("send", email)).await;
    assert_eq!(answer["ok"]["status"], "pending", "{answer}");
    let copies = s.by_recipient();
    assert_eq!(
        copies.len(),
        3,
        "one copy per recipient: {:?}",
        copies.keys()
    );
    let mut clicks = 0;
    for (recipient, copy) in &copies {
        assert_eq!(copy.to.len(), 1, "{recipient}: per-recipient copy");
        let parsed = parse(&copy.data).await;
        assert_eq!(parsed["defects"], 0, "{parsed}");
        assert_eq!(header(&parsed, "subject"), Some("Grüße aus Köln"));
        assert_eq!(header(&parsed, "from"), Some("Zoë Acme <hello@acme.test>"));
        assert_eq!(header(&parsed, "cc"), Some("carol@example.test"));
        assert_eq!(header(&parsed, "reply-to"), Some("support@acme.test"));
        assert_eq!(header(&parsed, "x-campaign"), Some("spring"));
        assert!(header(&parsed, "bcc").is_none(), "bcc is never a header");
        assert!(header(&parsed, "x-lm-tag").is_none(), "X-LM-* removed");
        let kinds: Vec<&str> = parsed["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "multipart/mixed",
                "multipart/alternative",
                "text/plain",
                "multipart/related",
                "text/html",
                "image/png",
                "application/pdf"
            ],
            "{parsed}"
        );
        let image = parts(&parsed, "image/png")[0];
        assert_eq!(image["content_id"], "<logo@lm>");
        assert_eq!(image["base64"], b64(PNG));
        let pdf = parts(&parsed, "application/pdf")[0];
        assert_eq!(pdf["disposition"], "attachment");
        assert_eq!(pdf["filename"], "terms.pdf");
        assert_eq!(pdf["base64"], b64(b"%PDF-1.4 terms"));
        let html = parts(&parsed, "text/html")[0]["text"].as_str().unwrap();
        assert!(html.contains("cid:logo"), "inline reference kept: {html}");
        assert_eq!(tracking_paths(html, "o").len(), 1, "one pixel: {html}");
        for path in tracking_paths(html, "c") {
            let resp = Http::default()
                .send("GET", s.tracking, HOST, &path, &[])
                .await
                .unwrap();
            assert_eq!(resp.status, 302, "{path}");
            assert_eq!(resp.header("location"), "https://example.com/offer?a=1&b=2");
            clicks += 1;
        }
    }
    assert_eq!(clicks, 3, "one tracked link in each copy");
    // The tag is stored with each copy, as X-LM-Tag is for SMTP.
    let app = s.relay.app.as_ref().unwrap();
    app.relay().flush_records().await;
    let storage = app.storage();
    assert!(storage.flush(std::time::Duration::from_secs(30)).await);
    let stored = storage
        .messages(trackrelay::storage::MessageFilter {
            tag: Some("welcome".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    s.relay.stop().await;
}

/// `settings` acts as the override headers do: each kind off on a tracked
/// route, each kind on for a route that tracks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_settings_turn_each_kind_of_tracking_off_and_on() {
    let s = Setup::start(Script::default(), "").await;
    let html = "<html><body><a href=\"https://example.com/x\">x</a></body></html>";
    let cases = [
        (
            "opens-off@example.test",
            "default",
            json!({"track_opens": false}),
            0,
            1,
        ),
        (
            "clicks-off@example.test",
            "default",
            json!({"track_clicks": false}),
            1,
            0,
        ),
        (
            "both-on@example.test",
            "quiet",
            json!({"track_opens": true, "track_clicks": true}),
            1,
            1,
        ),
        ("route@example.test", "quiet", json!({}), 0, 0),
    ];
    for (to, route, settings, _, _) in &cases {
        let email = json!({ "from": "hello@acme.test", "to": [to], "subject": "S", "html": html, "route": route, "settings": settings });
        let answer = python(&s.call("send", email)).await;
        assert_eq!(answer["ok"]["status"], "pending", "{to}: {answer}");
    }
    let copies = s.by_recipient();
    for (to, _, _, pixels, links) in &cases {
        let parsed = parse(&copies[*to].data).await;
        let html = parts(&parsed, "text/html")[0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(tracking_paths(&html, "o").len(), *pixels, "{to}: {html}");
        assert_eq!(tracking_paths(&html, "c").len(), *links, "{to}: {html}");
        assert!(header(&parsed, "x-lm-override-track-opens").is_none());
    }
    s.relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_batch_of_500_is_sent_in_order() {
    let s = Setup::start(Script::default(), "rate_per_minute = 10000").await;
    let batch: Vec<Value> = (0..500)
        .map(|i| plain(&format!("r{i}@example.test")))
        .collect();
    let answer = python(&s.call("batch", Value::Array(batch))).await;
    let results = answer["ok"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(results.len(), 500);
    let ids: std::collections::HashSet<&str> = results
        .iter()
        .map(|r| r["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 500, "one message id each");
    let accepted = s.upstream.accepted();
    assert_eq!(accepted.len(), 500);
    assert_eq!(accepted[0].to, ["r0@example.test"]);
    assert_eq!(accepted[499].to, ["r499@example.test"]);
    // 501 is refused as a whole, before anything is sent.
    let batch: Vec<Value> = (0..501)
        .map(|i| plain(&format!("x{i}@example.test")))
        .collect();
    let answer = python(&s.call("batch", Value::Array(batch))).await;
    assert_eq!(answer["error"]["class"], "ValidationError", "{answer}");
    assert!(
        answer["error"]["errors"]["messages"][0]
            .as_str()
            .unwrap()
            .contains("1 to 500")
    );
    assert_eq!(s.upstream.accepted().len(), 500);
    s.relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_idempotent_retry_sends_once_and_another_body_is_a_conflict() {
    let s = Setup::start(Script::default(), "").await;
    let mut call = s.call("send", plain("bob@example.test"));
    call["idempotency_key"] = json!("order-1234");
    let first = python(&call).await;
    let again = python(&call).await;
    assert_eq!(first["ok"]["status"], "pending", "{first}");
    assert_eq!(first, again, "the first answer again");
    assert_eq!(s.upstream.accepted().len(), 1, "sent once");
    call["message"]["subject"] = json!("Another body");
    let other = python(&call).await;
    assert_eq!(other["error"]["class"], "ConflictError", "{other}");
    assert_eq!(other["error"]["status"], 409);
    assert_eq!(s.upstream.accepted().len(), 1);
    // Kept in the database: a restart still replays it.
    let stored = s.relay.app.as_ref().unwrap().storage();
    let row = stored
        .idempotent(sha256(SEND_TOKEN), "order-1234".into())
        .await
        .unwrap();
    assert_eq!(row.map(|r| r.status), Some(202));
    s.relay.stop().await;
}

fn sha256(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_wrong_token_validation_and_rate_errors_are_the_sdk_classes() {
    let s = Setup::start(Script::default(), "rate_per_minute = 2").await;
    let mut call = s.call("send", plain("bob@example.test"));
    call["token"] = json!("lm_not4the9right2token7at3all8Xq");
    let answer = python(&call).await;
    assert_eq!(answer["error"]["class"], "AuthenticationError", "{answer}");
    assert_eq!(answer["error"]["status"], 401);

    let bad =
        json!({ "from": "not-an-address", "to": [], "subject": "x".repeat(999), "html": "hi" });
    let answer = python(&s.call("send", bad)).await;
    let error = &answer["error"];
    assert_eq!(error["class"], "ValidationError", "{answer}");
    assert_eq!(error["status"], 422);
    for field in ["from", "to", "subject", "html"] {
        assert!(error["errors"][field].is_array(), "{field}: {answer}");
    }

    for _ in 0..2 {
        assert_eq!(
            python(&s.call("send", plain("bob@example.test"))).await["ok"]["status"],
            "pending"
        );
    }
    let answer = python(&s.call("send", plain("bob@example.test"))).await;
    assert_eq!(answer["error"]["class"], "RateLimitError", "{answer}");
    assert_eq!(answer["error"]["status"], 429);
    assert!(
        answer["error"]["retry_after"]
            .as_u64()
            .is_some_and(|s| s >= 1),
        "{answer}"
    );
    assert_eq!(s.upstream.accepted().len(), 2, "nothing sent past the rate");
    s.relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_upstream_refusals_are_422_for_good_and_503_for_now() {
    let mut script = Script::default();
    script
        .rcpt
        .insert("gone@example.test".into(), "550 5.1.1 No such user".into());
    script.rcpt.insert(
        "busy@example.test".into(),
        "451 4.3.0 Try again later".into(),
    );
    let s = Setup::start(script, "").await;
    let answer = python(&s.call("send", plain("gone@example.test"))).await;
    assert_eq!(answer["error"]["class"], "ValidationError", "{answer}");
    assert_eq!(answer["error"]["code"], "upstream_rejected");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("550 5.1.1"),
        "{answer}"
    );

    let mut email = plain("busy@example.test");
    email["cc"] = json!(["fine@example.test"]);
    let answer = python(&s.call("send", email)).await;
    assert_eq!(answer["error"]["class"], "ServerError", "{answer}");
    assert_eq!(answer["error"]["status"], 503);
    assert_eq!(answer["error"]["retry_after"], 30);
    assert!(s.upstream.accepted().is_empty(), "nothing was sent");
    s.relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sends_html_with_attachments_settings_batch_and_idempotency() {
    let s = Setup::start(Script::default(), "").await;
    let email = json!({
        "from": "Acme <hello@acme.test>", "to": ["bob@example.test"], "bcc": ["audit@example.test"],
        "subject": "Node", "text": "Text part", "html": "<p><img src=\"cid:logo\"><a href=\"https://example.com/n\">n</a></p>",
        "tag": "node", "metadata": {"k": "v"}, "settings": {"track_opens": false},
        "attachments": [
            {"filename": "logo.png", "content": b64(PNG), "content_id": "logo"},
            {"filename": "notes.txt", "content": b64(b"notes")}
        ]
    });
    let mut call = s.call("send", email);
    call["idempotency_key"] = json!("node-1");
    let answer = node(&call).await;
    assert_eq!(answer["ok"]["status"], "pending", "{answer}");
    assert_eq!(node(&call).await, answer, "idempotent replay");
    let copies = s.by_recipient();
    assert_eq!(copies.len(), 2);
    let parsed = parse(&copies["bob@example.test"].data).await;
    assert_eq!(parsed["defects"], 0);
    assert_eq!(parts(&parsed, "image/png")[0]["content_id"], "<logo@lm>");
    assert_eq!(parts(&parsed, "text/plain").len(), 2, "body and notes.txt");
    let html = parts(&parsed, "text/html")[0]["text"].as_str().unwrap();
    assert!(tracking_paths(html, "o").is_empty(), "opens off: {html}");
    let click = &tracking_paths(html, "c")[0];
    let resp = Http::default()
        .send("GET", s.tracking, HOST, click, &[])
        .await
        .unwrap();
    assert_eq!(
        (resp.status, resp.header("location")),
        (302, "https://example.com/n")
    );

    let batch = json!([plain("n1@example.test"), plain("n2@example.test")]);
    let answer = node(&s.call("batch", batch)).await;
    assert_eq!(answer["ok"].as_array().map(Vec::len), Some(2), "{answer}");

    let mut wrong = s.call("send", plain("bob@example.test"));
    wrong["token"] = json!("lm_wrong");
    let answer = node(&wrong).await;
    assert_eq!(answer["error"]["class"], "HttpRequestError", "{answer}");
    assert_eq!(answer["error"]["status"], 401, "{answer}");
    let invalid =
        json!({ "from": "hello@acme.test", "to": ["bob@example.test"], "subject": "", "text": "" });
    let answer = node(&s.call("send", invalid)).await;
    assert_eq!(answer["error"]["class"], "ValidationError", "{answer}");
    assert!(
        answer["error"]["body"]["errors"]["subject"].is_array(),
        "{answer}"
    );
    assert_eq!(s.upstream.accepted().len(), 4);
    s.relay.stop().await;
}
