//! Webhooks through the real server (issue 6): hits over real sockets,
//! judged by the pipeline, delivered to a receiver over loopback that
//! verifies every signature with the `standardwebhooks` package from PyPI
//! (tests/support/webhook_receiver.py), an implementation independent of
//! ours. Needs python3 with standardwebhooks (`.ci/packages` installs it).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::server::{API_TOKEN, HOST, Http, config_text, free_port, next_week};
use support::webhook_receiver::Receiver;
use trackrelay::app::App;
use trackrelay::config::Config;
use trackrelay::storage::RelayedCopy;
use trackrelay::token::{Claims, Kind};
use uuid::Uuid;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
/// Inside the corpus's Apple relay egress list.
const APPLE_IP: &str = "104.28.28.10";
/// In no list (RFC 5737).
const HOME_IP: &str = "198.51.100.20";
const SECRET: &str = "whsec_Wohz8vFyz3th8zv63w2PNHNhoHtlmYWf";
const OLD_SECRET: &str = "whsec_c2Vjb25kIHNlY3JldCBmb3Igcm90YXRpb24=";

/// A receiver checking both test secrets.
fn start_receiver(dir: &Path, name: &str, port: u16, extra: &[&str]) -> Receiver {
    Receiver::start(dir, name, port, &[SECRET, OLD_SECRET], extra)
}

/// Every signature of a request verified with every secret.
fn assert_verified(request: &Value) {
    assert_eq!(request["signatures"], 2, "{request}");
    assert_eq!(
        request["verified"],
        serde_json::json!([true, true]),
        "{request}"
    );
}

/// Every verifier refused the request's body with one change, for its
/// signature (not for a malformed request).
fn assert_tampered_refused(request: &Value) {
    let refused = request["tampered"].as_array().unwrap();
    let mismatch = |v: &Value| v.as_str().is_some_and(|e| e.contains("does not match"));
    assert!(
        !refused.is_empty() && refused.iter().all(mismatch),
        "{request}"
    );
}

/// `[[routes.webhooks]]` of route "default" for a receiver on `port`.
fn hook(port: u16, extra: &str) -> String {
    format!(
        "\n[[routes.webhooks]]\nurl = \"http://127.0.0.1:{port}/hook\"\n\
         secrets = [\"{SECRET}\", \"{OLD_SECRET}\"]\n{extra}\n"
    )
}

/// The test config: route "default" with `hooks`, a one-second classifier
/// wait with Apple's relay ranges, private addresses allowed.
fn config(dir: &Path, hooks: &str, webhooks: &str) -> String {
    let apple = support::corpus::root().join("ua/ip-ranges/apple-private-relay-egress-ipv4.csv");
    format!(
        "{}{hooks}\n[classifier]\nwait_seconds = 1\n\
         [[classifier.ranges]]\nname = \"apple\"\nclass = \"apple_relay\"\nfile = \"{}\"\n\
         [webhooks]\nallow_private_networks = true\n{webhooks}\n",
        config_text(dir, "127.0.0.1:0", "127.0.0.1:0", ""),
        apple.display()
    )
}

/// [`config`] relaying to the SMTP server at `upstream`.
fn config_upstream(dir: &Path, hooks: &str, upstream: std::net::SocketAddr) -> String {
    config(dir, hooks, "").replace(
        &format!("url = \"dir:{}\"", dir.join("outbox").display()),
        &format!("url = \"smtp://{upstream}\""),
    )
}

/// One message from alice to bob and carol (tag "launch") over SMTP.
async fn relay_to_bob_and_carol(app: &App) {
    let mut c = support::relay::Client::connect(app.smtp_addr()).await;
    let (_, reply) = c
        .send(
            "alice@example.com",
            &["bob@example.com", "carol@example.org"],
            &support::relay::html_message("X-LM-Tag: launch\r\n"),
        )
        .await;
    assert!(reply.starts_with("250"), "{reply}");
}

async fn start(text: &str) -> App {
    let config = Config::parse(text).unwrap();
    App::start(config, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Records a copy of route "default" for bob, relayed three hours ago.
async fn relayed(app: &App) -> RelayedCopy {
    let copy = RelayedCopy {
        id: Uuid::now_v7(),
        route: "default".into(),
        sender: "news@example.com".into(),
        recipients: vec!["bob@example.com".into()],
        recipient_id: claims(Uuid::nil(), None).recipient_id_text(),
        message_id_header: Some("<1@example.com>".into()),
        tags: vec!["welcome".into()],
        links: (0..5).map(|i| format!("https://example.com/{i}")).collect(),
        relayed_at_ms: now_ms() - 3 * 3600 * 1000,
        upstream_reply: "250 2.0.0 queued".into(),
        status: trackrelay::storage::CopyStatus::Relayed,
    };
    app.storage().record_relayed(copy.clone()).await.unwrap();
    copy
}

/// Bob's claims for an open (`link` None) or a click on `link`.
fn claims(id: Uuid, link: Option<u16>) -> Claims {
    Claims {
        kind: if link.is_some() {
            Kind::Click
        } else {
            Kind::Open
        },
        message_id: id,
        recipient_id: Some(support::keys().recipient_id("bob@example.com")),
        expires_at: next_week(),
        link,
        url: link.map(|i| format!("https://example.com/{i}")),
    }
}

/// The tracking path of an open (`link` None) or a click on `link`.
fn path(copy: &RelayedCopy, link: Option<u16>) -> String {
    let claims = claims(copy.id, link);
    let prefix = if link.is_some() { "c" } else { "o" };
    format!("/{prefix}/{}", support::keys().sign(&claims))
}

/// A person clicking link `link` in a desktop Chrome at home.
async fn human_click(app: &App, copy: &RelayedCopy, link: u16) {
    let headers = [
        ("x-forwarded-for", HOME_IP),
        ("user-agent", CHROME),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "none"),
        ("sec-fetch-dest", "document"),
        ("upgrade-insecure-requests", "1"),
    ];
    let resp = Http::default()
        .send(
            "GET",
            app.tracking_addr(),
            HOST,
            &path(copy, Some(link)),
            &headers,
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 302);
}

/// Apple Mail Privacy Protection fetching the pixel: a machine open.
async fn apple_prefetch(app: &App, copy: &RelayedCopy) {
    let headers = [("x-forwarded-for", APPLE_IP), ("user-agent", "Mozilla/5.0")];
    let resp = Http::default()
        .send(
            "GET",
            app.tracking_addr(),
            HOST,
            &path(copy, None),
            &headers,
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
}

/// Waits until the copy has `n` events.
async fn events(app: &App, copy: &RelayedCopy, n: usize) {
    for _ in 0..200 {
        if app.storage().events(copy.id).await.unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} events expected within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_events_arrive_once_signed_and_machine_ones_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (human_port, all_port) = (free_port(), free_port());
    let human = start_receiver(dir.path(), "human", human_port, &[]);
    let all = start_receiver(dir.path(), "all", all_port, &[]);
    let hooks = hook(human_port, "") + &hook(all_port, "include_machine = true");
    let app = start(&config(dir.path(), &hooks, "")).await;
    let copy = relayed(&app).await;

    apple_prefetch(&app, &copy).await;
    events(&app, &copy, 1).await;
    human_click(&app, &copy, 2).await;
    events(&app, &copy, 2).await;

    let got = all.wait_for(2, Duration::from_secs(20)).await;
    let human_got = human.wait_for(1, Duration::from_secs(20)).await;
    // Anything sent twice would have come by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(human.requests().len(), 1, "{human_got:#?}");
    assert_eq!(all.requests().len(), 2, "{got:#?}");

    let click = &human_got[0];
    assert_verified(click);
    let body = &click["body"];
    assert_eq!(body["type"], "message.clicked");
    let data = &body["data"];
    assert_eq!(data["message_id"], copy.id.to_string());
    assert_eq!(data["route"], "default");
    assert_eq!(data["recipient"], "bob@example.com");
    assert_eq!(data["message_id_header"], "<1@example.com>");
    assert_eq!(data["tags"], serde_json::json!(["welcome"]));
    assert_eq!(data["url"], "https://example.com/2");
    assert_eq!(data["ip"], HOME_IP);
    assert_eq!(data["user_agent"], CHROME);
    assert_eq!(data["bot"]["classification"], "genuine");
    assert_eq!(data["bot"]["machine"], false);
    assert_eq!(data["first_click"], true);
    assert_eq!(data["first_open"], false);
    assert_eq!(data["client_name"], "Chrome");
    assert_eq!(data["device_type"], "desktop");
    // The body's id is the event's (the click's observation id).
    let stored = app.storage().events(copy.id).await.unwrap();
    assert_eq!(body["id"], stored[1].id.to_string());

    let mut types: Vec<&str> = got
        .iter()
        .map(|r| r["body"]["type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["message.clicked", "message.opened"]);
    for r in &got {
        assert_verified(r);
        if r["body"]["type"] == "message.opened" {
            assert_eq!(r["body"]["data"]["bot"]["machine"], true);
            assert_eq!(r["body"]["data"]["bot"]["proxy_type"], "apple_mpp");
            assert_eq!(r["body"]["data"]["ip"], APPLE_IP);
        }
    }
    // Each endpoint has its own delivery id; the body is the same.
    let other = got
        .iter()
        .find(|r| r["body"]["type"] == "message.clicked")
        .unwrap();
    assert_ne!(other["id"], click["id"]);
    assert_eq!(other["body"], click["body"]);

    let list = app
        .storage()
        .deliveries(Some("delivered".into()), 10)
        .await
        .unwrap();
    assert_eq!(list.len(), 3);
    assert!(app.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_five_times_gets_the_event_on_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let receiver = start_receiver(dir.path(), "flaky", port, &["--fail", "5"]);
    let text = config(dir.path(), &hook(port, ""), "retry_base_ms = 250");
    let settings = Config::parse(&text).unwrap().webhooks;
    let app = start(&text).await;
    let copy = relayed(&app).await;
    human_click(&app, &copy, 0).await;

    let got = receiver.wait_for(6, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.requests().len(), 6, "delivered once it succeeded");
    let id: Uuid = got[0]["id"].as_str().unwrap().parse().unwrap();
    for (n, pair) in got.windows(2).enumerate() {
        // Every try is the same delivery, signed anew.
        assert_eq!(pair[1]["id"], pair[0]["id"]);
        assert_eq!(pair[1]["body"], pair[0]["body"]);
        assert_verified(&pair[1]);
        let waited = pair[1]["at"].as_f64().unwrap() - pair[0]["at"].as_f64().unwrap();
        let planned = trackrelay::webhooks::retry::delay(&settings, n as u32 + 1, id).as_secs_f64();
        // Never before the schedule; after it only by the look-up tick and
        // the try itself (a loaded machine may add a little).
        assert!(
            waited >= planned - 0.01,
            "try {}: after {waited:.3} s, planned {planned:.3} s",
            n + 2
        );
        assert!(
            waited < planned + 1.5,
            "try {}: after {waited:.3} s, planned {planned:.3} s",
            n + 2
        );
    }
    // The delays grow: it is a backoff.
    let planned_last = trackrelay::webhooks::retry::delay(&settings, 5, id);
    assert!(planned_last >= Duration::from_millis(250 * 16));

    let d = app.storage().delivery(id).await.unwrap().unwrap();
    assert_eq!(d.status, "delivered");
    assert_eq!(d.attempts, 6);
    let attempts = app.storage().delivery_attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 6);
    assert_eq!(attempts[0].status_code, Some(500));
    assert_eq!(attempts[5].status_code, Some(204));
    assert!(app.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_across_a_restart_gets_every_event_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = config(dir.path(), &hook(port, ""), "retry_base_ms = 200");
    let app = start(&text).await;
    // Three copies, one click each (three links of one copy at once would
    // be a scanner's burst).
    for link in 0..3 {
        let copy = relayed(&app).await;
        human_click(&app, &copy, link).await;
        events(&app, &copy, 1).await;
    }
    // Every delivery has failed at least once against the closed port.
    for _ in 0..200 {
        let pending = app
            .storage()
            .deliveries(Some("pending".into()), 10)
            .await
            .unwrap();
        if pending.len() == 3 && pending.iter().all(|d| d.attempts >= 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = app
        .storage()
        .deliveries(Some("pending".into()), 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 3, "{pending:#?}");
    assert!(
        pending
            .iter()
            .all(|d| d.attempts >= 1 && d.last_error.is_some())
    );
    assert!(app.stop().await);

    // The receiver comes up while trackrelay is down; trackrelay restarts.
    let receiver = start_receiver(dir.path(), "late", port, &[]);
    let app = start(&text).await;
    let got = receiver.wait_for(3, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.requests().len(), 3);
    let mut urls: Vec<&str> = got
        .iter()
        .map(|r| r["body"]["data"]["url"].as_str().unwrap())
        .collect();
    urls.sort();
    assert_eq!(
        urls,
        [
            "https://example.com/0",
            "https://example.com/1",
            "https://example.com/2"
        ]
    );
    got.iter().for_each(assert_verified);
    assert!(app.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let receiver = start_receiver(
        dir.path(),
        "gone",
        port,
        &["--fail", "1000", "--fail-status", "410"],
    );
    let app = start(&config(dir.path(), &hook(port, ""), "retry_base_ms = 200")).await;
    let copy = relayed(&app).await;
    human_click(&app, &copy, 0).await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    let mut disabled = Vec::new();
    for _ in 0..100 {
        disabled = app.storage().disabled_endpoints().await.unwrap();
        if !disabled.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].url, format!("http://127.0.0.1:{port}/hook"));
    let failed = app
        .storage()
        .deliveries(Some("failed".into()), 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_status, Some(410));

    // Later events are not sent to it (nor retried).
    human_click(&app, &copy, 1).await;
    events(&app, &copy, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.requests().len(), 1);
    let api = Http::default()
        .send(
            "GET",
            app.api_addr(),
            "api",
            "/v1/webhooks/deliveries?status=failed",
            &[("authorization", &format!("Bearer {API_TOKEN}"))],
        )
        .await
        .unwrap();
    assert_eq!(api.status, 200, "{}", String::from_utf8_lossy(&api.body));
    let v = api.json();
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["deliveries"][0]["attempts"][0]["status_code"], 410);
    assert!(app.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_sends_relayed_and_failed() {
    use support::fake_upstream::{FakeUpstream, Script};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let receiver = start_receiver(dir.path(), "relay", port, &[]);
    // carol's copy is refused after bob's was accepted: a DSN goes back.
    let fake = FakeUpstream::start(Script {
        data_final: [(1, "550 5.7.1 Content rejected for carol".to_owned())].into(),
        ..Script::default()
    })
    .await;
    let hooks = hook(port, "events = [\"message.relayed\", \"message.failed\"]");
    let app = start(&config_upstream(dir.path(), &hooks, fake.addr)).await;
    relay_to_bob_and_carol(&app).await;

    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.requests().len(), 2);
    got.iter().for_each(assert_verified);
    let by_type = |t: &str| {
        got.iter()
            .find(|r| r["body"]["type"] == t)
            .unwrap_or_else(|| panic!("no {t} in {got:#?}"))["body"]
            .clone()
    };
    let relayed = by_type("message.relayed");
    assert_eq!(relayed["data"]["recipient"], "bob@example.com");
    assert_eq!(relayed["data"]["route"], "default");
    assert_eq!(relayed["data"]["message_id_header"], "<m1@example.com>");
    assert_eq!(relayed["data"]["tags"], serde_json::json!(["launch"]));
    assert_eq!(relayed["id"], relayed["data"]["message_id"]);
    let failed = by_type("message.failed");
    assert_eq!(failed["data"]["recipient"], "carol@example.org");
    assert!(
        failed["data"]["upstream_reply"]
            .as_str()
            .unwrap()
            .starts_with("550"),
        "{failed:#}"
    );
    // The stored copy is the one the body names.
    let id: Uuid = failed["data"]["message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let copy = app.storage().message(id).await.unwrap().unwrap();
    assert_eq!(copy.status, trackrelay::storage::CopyStatus::Failed);
    assert!(app.stop().await);
}

/// `format = "lettermint"` (issue 18): each delivery (relayed, failed, a
/// click) verifies with the official Lettermint SDKs' `Webhook.verify`,
/// Python's in the receiver and Node's afterwards, under either secret of
/// a rotation; the same body with one change is refused by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lettermint_format_deliveries_verify_with_both_sdks() {
    use support::fake_upstream::{FakeUpstream, Script};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let receiver = start_receiver(dir.path(), "lm", port, &["--format", "lettermint"]);
    let fake = FakeUpstream::start(Script {
        data_final: [(1, "550 5.7.1 Content rejected for carol".to_owned())].into(),
        ..Script::default()
    })
    .await;
    let hooks = hook(
        port,
        "format = \"lettermint\"\n\
         events = [\"message.relayed\", \"message.failed\", \"message.clicked\"]",
    );
    let app = start(&config_upstream(dir.path(), &hooks, fake.addr)).await;
    relay_to_bob_and_carol(&app).await;
    receiver.wait_for(2, Duration::from_secs(20)).await;
    let copy = relayed(&app).await;
    human_click(&app, &copy, 1).await;
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;

    let mut events: Vec<&str> = got
        .iter()
        .map(|r| r["body"]["event"].as_str().unwrap())
        .collect();
    events.sort_unstable();
    assert_eq!(
        events,
        ["message.clicked", "message.failed", "message.sent"]
    );
    for r in &got {
        assert_verified(r);
        assert!(r["body"].get("type").is_none(), "{r}");
        assert_tampered_refused(r);
        let t = r["headers"]["x-lettermint-signature"].as_str().unwrap();
        assert_eq!(
            Some(t.split(',').next().unwrap()),
            r["headers"]["x-lettermint-delivery"]
                .as_str()
                .map(|d| format!("t={d}"))
                .as_deref()
        );
    }
    let click = got
        .iter()
        .find(|r| r["body"]["event"] == "message.clicked")
        .unwrap();
    assert_eq!(click["body"]["data"]["url"], "https://example.com/1");
    assert_eq!(click["body"]["data"]["message_id"], copy.id.to_string());

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/node/verify_webhooks.js");
    let out = Command::new("node")
        .arg(script)
        .arg(dir.path().join("lm.jsonl"))
        .args([SECRET, OLD_SECRET])
        .output()
        .expect("node runs (.ci/packages installs it and the SDK)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node: Value = serde_json::from_slice(&out.stdout).unwrap();
    let node = node.as_array().unwrap();
    assert_eq!(node.len(), 3, "{node:?}");
    for r in node {
        assert_eq!(r["verified"], serde_json::json!([true, true]), "{r}");
        assert_tampered_refused(r);
    }
    assert!(app.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_deliveries_and_retries_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let receiver = start_receiver(
        dir.path(),
        "cli",
        port,
        &["--fail", "1", "--fail-status", "410"],
    );
    let text = config(dir.path(), &hook(port, ""), "retry_base_ms = 200");
    let file = dir.path().join("trackrelay.toml");
    std::fs::write(&file, &text).unwrap();
    let app = start(&text).await;
    let copy = relayed(&app).await;
    human_click(&app, &copy, 0).await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
            .args(["webhooks", "--config"])
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut failed = Vec::new();
    for _ in 0..100 {
        failed = cli(&["list", "--status", "failed"])
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect();
        if !failed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["last_status"], 410);
    let id = failed[0]["id"].as_str().unwrap();

    // Retried by hand: the endpoint is enabled again and the delivery
    // comes a second time (now answered 204).
    let said = cli(&["retry", id]);
    assert!(said.contains("queued again"), "{said}");
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got[1]["id"], id);
    assert_verified(&got[1]);
    for _ in 0..100 {
        let d = app
            .storage()
            .delivery(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        if d.status == "delivered" {
            assert!(app.storage().disabled_endpoints().await.unwrap().is_empty());
            assert!(app.stop().await);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the retried delivery was not marked delivered");
}

/// Deliveries to one endpoint share keep-alive connections: 24 of them
/// arrive over at most `concurrency_per_endpoint` (2) TCP connections,
/// counted by the receiver (one connection per delivery before the pooled
/// client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_gets_its_deliveries_over_few_connections() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let receiver = start_receiver(dir.path(), "pooled", port, &[]);
    let hooks = hook(port, "events = [\"message.relayed\"]");
    let app = start(&config(dir.path(), &hooks, "concurrency_per_endpoint = 2")).await;
    const N: usize = 24;
    for i in 0..N {
        let mut copy = relayed(&app).await;
        copy.id = Uuid::now_v7();
        copy.recipients = vec![format!("user{i}@example.com")];
        let deliveries = app.webhooks().for_relayed(&copy);
        assert_eq!(deliveries.len(), 1);
        app.storage()
            .record_relayed_with_webhooks(copy, deliveries)
            .await
            .unwrap();
        app.webhooks().wake();
    }
    let got = receiver.wait_for(N, Duration::from_secs(30)).await;
    let connections: std::collections::HashSet<u64> = got
        .iter()
        .map(|r| r["connection"].as_u64().unwrap())
        .collect();
    assert!(
        connections.len() <= 2,
        "{N} deliveries over {} connections",
        connections.len()
    );
    for r in &got {
        assert_verified(r);
    }
    assert!(app.stop().await);
}
