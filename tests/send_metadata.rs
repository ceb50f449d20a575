//! The sending API's `metadata` (issue 18 item 2): sent by the official
//! Python SDK (`lettermint==3.2.0`, .ci/packages), stored with each copy,
//! shown by the messages API and in every webhook of the copy (received
//! and verified by tests/support/webhook_receiver.py with the
//! `standardwebhooks` package), and erased with the copy by `forget`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::relay::Running;
use support::sdk::{SEND_TOKEN, python};
use support::server::{HOST, Http};

const SECRET: &str = "whsec_Wohz8vFyz3th8zv63w2PNHNhoHtlmYWf";
const API_TOKEN: &str = "test-token-4Hn8Vq2Lx7Rk9Pw3Zs6Jd";

/// The webhook receiver process; its log has one JSON line per request.
struct Receiver {
    child: Child,
    log: PathBuf,
}

impl Receiver {
    fn start(dir: &Path, port: u16) -> Receiver {
        let log = dir.join("hooks.jsonl");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/webhook_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--secret", SECRET, "--log"])
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout is piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        assert_eq!(line.trim(), "ready", "receiver did not start");
        Receiver { child, log }
    }

    /// The verified bodies of type `event_type`, once there are `n` (at
    /// most a minute).
    async fn wait_for(&self, event_type: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got: Vec<Value> = std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .inspect(|r| assert_eq!(r["verified"], json!([true]), "{r}"))
                .map(|r| r["body"].clone())
                .filter(|b| b["type"] == event_type)
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{n} {event_type} expected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// trackrelay relaying to a `dir:` outbox, with `[send]` and a webhook of
/// route "default" for relayed copies and clicks (machine ones included:
/// the test's click has no browser headers).
async fn start(hook_port: u16) -> Running {
    let routes = format!(
        r#"
[[routes]]
id = "default"
track_opens = true
track_clicks = true
[[routes.webhooks]]
url = "http://127.0.0.1:{hook_port}/hook"
secrets = ["{SECRET}"]
events = ["message.relayed", "message.clicked"]
include_machine = true
[classifier]
wait_seconds = 1
[webhooks]
allow_private_networks = true
[send]
listen = "127.0.0.1:0"
[[send.tokens]]
token = "{SEND_TOKEN}"
"#
    );
    support::relay::start("", "", &routes).await
}

/// A GET on the admin API; its JSON body.
async fn api_get(relay: &Running, path: &str) -> (u16, Value) {
    let app = relay.app.as_ref().expect("running");
    let auth = format!("Bearer {API_TOKEN}");
    let resp = Http::default()
        .send(
            "GET",
            app.api_addr(),
            HOST,
            path,
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    let body = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    (resp.status, body)
}

async fn send(relay: &Running, message: Value) {
    let app = relay.app.as_ref().expect("running");
    let send = app.send_addr().expect("[send] is configured");
    let call = json!({
        "base_url": format!("http://{send}/v1"), "token": SEND_TOKEN, "op": "send",
        "message": message,
    });
    let answer = python(&call).await;
    assert_eq!(answer["ok"]["status"], "pending", "{answer}");
    app.relay().flush_records().await;
    assert!(app.storage().flush(Duration::from_secs(30)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_metadata_is_in_the_messages_api_and_webhooks_and_forgotten_with_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::server::free_port();
    let receiver = Receiver::start(dir.path(), port);
    let relay = start(port).await;
    let metadata = json!({ "customer": "42", "plan": "pro ✓" });
    send(
        &relay,
        json!({
            "from": "hello@acme.test", "to": ["bob@example.test"], "subject": "Hi",
            "html": "<p><a href=\"https://example.com/offer\">Offer</a></p>",
            "metadata": metadata,
        }),
    )
    .await;
    send(
        &relay,
        json!({ "from": "hello@acme.test", "to": ["carol@example.test"], "subject": "Hi",
                "text": "No metadata here." }),
    )
    .await;

    // The listing: each copy with its metadata, null without.
    let (status, list) = api_get(&relay, "/v1/messages").await;
    assert_eq!(status, 200, "{list}");
    let by_recipient = |r: &str| {
        list["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["recipient"] == r)
            .cloned()
            .unwrap_or_else(|| panic!("{r} listed: {list}"))
    };
    let bob = by_recipient("bob@example.test");
    assert_eq!(bob["metadata"], metadata);
    assert_eq!(by_recipient("carol@example.test")["metadata"], Value::Null);
    let id = bob["id"].as_str().unwrap().to_owned();
    let (status, one) = api_get(&relay, &format!("/v1/messages/{id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["metadata"], metadata);

    // Webhooks: the relayed copy, then a click on its link.
    let relayed = receiver.wait_for("message.relayed", 2).await;
    let of = |bodies: &[Value], id: &str| {
        bodies
            .iter()
            .find(|b| b["data"]["message_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("a webhook of {id}: {bodies:?}"))
    };
    assert_eq!(of(&relayed, &id)["data"]["metadata"], metadata);
    let other = relayed
        .iter()
        .find(|b| b["data"]["message_id"] != id.as_str());
    assert_eq!(other.unwrap()["data"]["metadata"], Value::Null);
    let (_, eml) = relay
        .outbox()
        .into_iter()
        .find(|(env, _)| env.to_string().contains("bob@example.test"))
        .expect("bob's copy in the outbox");
    let eml = String::from_utf8_lossy(&eml).replace("=\r\n", "");
    let token = support::tracking_tokens(&eml, "c")[0];
    let app = relay.app.as_ref().unwrap();
    let resp = Http::default()
        .send(
            "GET",
            app.tracking_addr(),
            HOST,
            &format!("/c/{token}"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 302);
    let clicked = receiver.wait_for("message.clicked", 1).await;
    assert_eq!(of(&clicked, &id)["data"]["metadata"], metadata);

    // forget: the copy and its metadata row go together.
    let db = relay.dir.path().join("trackrelay.db");
    let done = trackrelay::retention::forget(&db, "bob@example.test", &support::keys(), false)
        .expect("forget");
    assert_eq!(done.removed.copies, 1);
    let uuid = id.parse().unwrap();
    let left = app.storage().metadata(vec![uuid]).await.unwrap();
    assert!(left.is_empty(), "metadata outlived its copy: {left:?}");
    let (status, _) = api_get(&relay, &format!("/v1/messages/{id}")).await;
    assert_eq!(status, 404);
    relay.stop().await;
}
