//! Event history without machine events by default, the event feed and
//! minimised values (issue 17), over real HTTP against the real binary: a
//! copy with a human open, an Apple privacy-proxy open and a scanner's
//! HEAD on a link shows one event by default and three with
//! `include_machine=true`, on the API, the dashboard and `trackrelay
//! events`; after `trackrelay prune` the raw values are null. Unknown
//! query parameters are a 400 on every API path. The feed's tests run on
//! both backends.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::bob::{claims, path};
use support::db::Db;
use support::server::{API_TOKEN, Binary, HOST, Http, Resp};
use trackrelay::storage::RelayedCopy;
use uuid::Uuid;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
/// Inside the corpus's Apple relay egress list (104.28.28.0/26).
const APPLE_IP: &str = "104.28.28.10";
/// Documentation addresses (RFC 5737): in no list.
const HOME_IP: &str = "198.51.100.20";
const OFFICE_IP: &str = "203.0.113.7";
const DAY_MS: i64 = 86_400_000;

async fn binary(db: &Db) -> Binary {
    Binary::start_on(db, &support::bob::classifier_with_apple_ranges()).await
}

/// Records, through a second handle on the binary's database, a copy to
/// bob relayed three hours ago with five links.
async fn relayed(db: &Db) -> RelayedCopy {
    let storage = db.open().await;
    let copy = RelayedCopy {
        recipient_id: claims(Uuid::nil(), None).recipient_id_text(),
        links: (0..5).map(|i| format!("https://example.com/{i}")).collect(),
        ..support::rows::copy(
            "default",
            "bob@example.com",
            trackrelay::time::now_ms() - 3 * 3_600_000,
        )
    };
    storage.record_relayed(copy.clone()).await.unwrap();
    assert!(storage.flush(Duration::from_secs(5)).await);
    copy
}

async fn hit(bin: &Binary, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    Http::default()
        .send(method, bin.tracking, HOST, path, headers)
        .await
        .unwrap()
        .status
}

async fn api(bin: &Binary, method: &str, path: &str) -> Resp {
    let auth = format!("Bearer {API_TOKEN}");
    Http::default()
        .send(
            method,
            bin.api,
            &bin.api.to_string(),
            path,
            &[("authorization", &auth)],
        )
        .await
        .unwrap()
}

async fn get_json(bin: &Binary, path: &str) -> Value {
    let resp = api(bin, "GET", path).await;
    assert_eq!(
        resp.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    resp.json()
}

/// A human open, Apple's privacy-proxy prefetch, a scanner's HEAD on a
/// link; waits until all three are classified.
async fn three_hits(bin: &Binary, copy: &RelayedCopy) {
    let mpp = [("x-forwarded-for", APPLE_IP), ("user-agent", "Mozilla/5.0")];
    assert_eq!(hit(bin, "GET", &path(copy, None), &mpp).await, 200);
    let person = [
        ("x-forwarded-for", HOME_IP),
        ("user-agent", CHROME),
        (
            "accept",
            "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.9"),
    ];
    assert_eq!(hit(bin, "GET", &path(copy, None), &person).await, 200);
    let scanner = [("x-forwarded-for", OFFICE_IP), ("user-agent", CHROME)];
    assert_eq!(hit(bin, "HEAD", &path(copy, Some(3)), &scanner).await, 302);
    let all = format!("/v1/messages/{}?include_machine=true", copy.id);
    for _ in 0..400 {
        let v = get_json(bin, &all).await;
        if v["events"].as_array().unwrap().len() == 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("three events expected within 20 s");
}

fn classes(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let bot = if e["bot"].is_null() {
                &e["data"]["bot"]
            } else {
                &e["bot"]
            };
            bot["classification"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// `trackrelay ARGS --config` of the binary's config: its stdout lines.
fn cli(bin: &Binary, args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(args)
        .arg("--config")
        .arg(bin.config_path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

fn days_from_now(days: i64) -> String {
    jiff::Timestamp::from_millisecond(trackrelay::time::now_ms() + days * DAY_MS)
        .unwrap()
        .to_string()
}

crate::on_both_backends!(
    machine_events_are_left_out_unless_asked_for,
    events_follow_prints_new_events_once,
);

async fn machine_events_are_left_out_unless_asked_for(db: Db) {
    let bin = binary(&db).await;
    let copy = relayed(&db).await;
    three_hits(&bin, &copy).await;

    let default = get_json(&bin, &format!("/v1/messages/{}", copy.id)).await;
    assert_eq!(classes(&default, "events"), ["genuine"], "{default:#}");
    assert_eq!(default["events"][0]["kind"], "open");
    assert_eq!(default["machine_events_hidden"], 2);
    let all = get_json(
        &bin,
        &format!("/v1/messages/{}?include_machine=true", copy.id),
    )
    .await;
    let mut all_classes = classes(&all, "events");
    all_classes.sort();
    assert_eq!(all_classes.len(), 3);
    assert!(
        all_classes.contains(&"genuine".to_owned()),
        "{all_classes:?}"
    );
    assert!(
        all_classes.contains(&"privacy_proxy".to_owned()),
        "{all_classes:?}"
    );
    assert_eq!(all["machine_events_hidden"], 0);
    let human = get_json(
        &bin,
        &format!("/v1/messages/{}?include_machine=false", copy.id),
    )
    .await;
    assert_eq!(human["events"], default["events"]);
    let bad = api(
        &bin,
        "GET",
        &format!("/v1/messages/{}?include_machine=yes", copy.id),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("include_machine"));

    // The feed: the same events as webhook bodies.
    let feed = get_json(&bin, "/v1/events").await;
    assert_eq!(classes(&feed, "events"), ["genuine"], "{feed:#}");
    assert_eq!(feed["events"][0]["type"], "message.opened");
    assert_eq!(feed["events"][0]["data"]["message_id"], copy.id.to_string());
    assert_eq!(feed["events"][0]["data"]["ip"], HOME_IP);
    assert!(feed["next_cursor"].is_null());
    let feed = get_json(&bin, "/v1/events?include_machine=true").await;
    assert_eq!(feed["events"].as_array().unwrap().len(), 3);
    let clicks = get_json(&bin, "/v1/events?include_machine=true&type=message.clicked").await;
    assert_eq!(classes(&clicks, "events").len(), 1);
    assert_eq!(clicks["events"][0]["data"]["link"], 3);

    // The dashboard's timeline (bearer token, plain HTTP).
    let page = api(&bin, "GET", &format!("/dashboard/messages/{}", copy.id)).await;
    let html = String::from_utf8(page.body).unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(html.matches("<li class=\"hit\"").count(), 1, "{html}");
    assert!(html.contains("data-machine-events-hidden=\"2\""), "{html}");
    let page = api(
        &bin,
        "GET",
        &format!("/dashboard/messages/{}?include_machine=true", copy.id),
    )
    .await;
    let html = String::from_utf8(page.body).unwrap();
    assert_eq!(html.matches("<li class=\"hit\"").count(), 3, "{html}");

    // The command line.
    let lines = cli(&bin, &["events"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let since = days_from_now(-1);
    let lines = cli(&bin, &["events", "--since", &since, "--include-machine"]);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["data"]["message_id"], copy.id.to_string());
    }
    bin_stop(bin);
}

/// SQLite only: `prune --as-of` on PostgreSQL leaves the last hour's hits
/// raw whatever the time asked for (retention/postgres.rs caps it at now
/// less the watermark slack; SQLite caps only its watermark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimised_values_are_null() {
    let db = Db::new(support::db::Kind::Sqlite);
    let bin = binary(&db).await;
    let copy = relayed(&db).await;
    three_hits(&bin, &copy).await;
    let out = cli(&bin, &["prune", "--as-of", &days_from_now(29)]);
    assert!(
        out.iter()
            .any(|l| l.contains(" 3 observations were minimised")),
        "{out:?}"
    );
    let all = get_json(
        &bin,
        &format!("/v1/messages/{}?include_machine=true", copy.id),
    )
    .await;
    for e in all["events"].as_array().unwrap() {
        assert!(e["ip"].is_null(), "{e:#}");
        assert!(e["user_agent"].is_null(), "{e:#}");
        assert!(e["method"].is_string(), "{e:#}");
    }
    let raw = get_json(&bin, &format!("/v1/messages/{}/observations", copy.id)).await;
    for o in raw["observations"].as_array().unwrap() {
        for key in ["ip", "user_agent", "headers"] {
            assert!(o[key].is_null(), "{key}: {o:#}");
        }
        assert!(o["host"].is_string());
    }
    let feed = get_json(&bin, "/v1/events?include_machine=true").await;
    for e in feed["events"].as_array().unwrap() {
        assert!(
            e["data"]["ip"].is_null() && e["data"]["user_agent"].is_null(),
            "{e:#}"
        );
    }
    bin_stop(bin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_parameters_are_refused_on_every_path() {
    let bin = binary(&Db::new(support::db::Kind::Sqlite)).await;
    let id = Uuid::now_v7();
    for path in [
        "/healthz".to_owned(),
        "/metrics".to_owned(),
        "/v1/openapi.json".to_owned(),
        "/v1/messages".to_owned(),
        format!("/v1/messages/{id}"),
        format!("/v1/messages/{id}/observations"),
        "/v1/events".to_owned(),
        "/v1/webhooks/deliveries".to_owned(),
        "/v1/routes".to_owned(),
        "/v1/routes/default".to_owned(),
        "/v1/routes/default/stats".to_owned(),
        "/v1/routes/default/links".to_owned(),
        format!("/dashboard/messages/{id}"),
    ] {
        let resp = api(&bin, "GET", &format!("{path}?colour=red")).await;
        assert_eq!(resp.status, 400, "{path}");
        assert!(
            String::from_utf8_lossy(&resp.body).contains("colour"),
            "{path}: the parameter is named"
        );
    }
    let auth = format!("Bearer {API_TOKEN}");
    let resp = Http::default()
        .send_body(
            "PATCH",
            bin.api,
            &bin.api.to_string(),
            "/v1/routes/default?colour=red",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            "{\"track_opens\": false}",
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 400);
    let route = get_json(&bin, "/v1/routes/default").await;
    assert_eq!(
        route["track_opens"], true,
        "the refused PATCH changed nothing"
    );
    bin_stop(bin);
}

/// `trackrelay events --follow` prints every new event once, as it comes.
async fn events_follow_prints_new_events_once(db: Db) {
    let bin = binary(&db).await;
    let copy = relayed(&db).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args([
            "events",
            "--follow",
            "--include-machine",
            "--poll-ms",
            "100",
        ])
        .arg("--config")
        .arg(bin.config_path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Started before any event: it prints each of the three as it comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    three_hits(&bin, &copy).await;
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(3)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let ids: std::collections::HashSet<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 3, "{lines:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    bin_stop(bin);
}

fn bin_stop(mut bin: Binary) {
    bin.terminate();
    let status = bin.child.wait().unwrap();
    assert!(status.success(), "{}", bin.log());
}
