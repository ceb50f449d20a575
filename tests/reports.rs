//! Route statistics over real HTTP (SPEC §8, issue 7's first part):
//! copies and events stored through the storage interface, figures read
//! back from `/v1/routes/{id}/stats` and `/links`, bad parameters refused.

mod support;

use serde_json::json;
use support::server::{API_TOKEN, TestServer};
use trackrelay::storage::{Event, RelayedCopy};
use trackrelay::token::Kind;

/// 2026-01-01T10:00:00Z.
const T0: i64 = 1_767_261_600_000;
const HOUR: i64 = 3_600_000;

use support::rows::copy;

fn event(c: &RelayedCopy, kind: Kind, link: Option<u16>, at_ms: i64, human: bool) -> Event {
    support::rows::event(c, kind, link, at_ms, human, "security_scanner")
}

async fn seeded() -> TestServer {
    let server = TestServer::start("").await;
    let storage = server.app().storage();
    let bob = copy("news", "bob@example.com", T0);
    let ann = copy("news", "ann@example.com", T0 + 10 * 60_000);
    let other = copy("default", "cy@example.com", T0);
    let mut failed = copy("news", "dan@example.com", T0);
    failed.status = trackrelay::storage::CopyStatus::Failed;
    for c in [&bob, &ann, &other, &failed] {
        storage.record_relayed(c.clone()).await.unwrap();
    }
    storage
        .record_events(vec![
            // Bob opens twice (one unique) and clicks a twice, b once.
            event(&bob, Kind::Open, None, T0 + HOUR, true),
            event(&bob, Kind::Open, None, T0 + HOUR + 60_000, true),
            event(&bob, Kind::Click, Some(0), T0 + HOUR + 120_000, true),
            event(&bob, Kind::Click, Some(0), T0 + 2 * HOUR, true),
            event(&bob, Kind::Click, Some(1), T0 + 2 * HOUR, true),
            // A scanner on Ann's copy: machine only.
            event(&ann, Kind::Open, None, T0 + 11 * 60_000, false),
            event(&ann, Kind::Click, Some(1), T0 + 11 * 60_000, false),
            // Another route.
            event(&other, Kind::Open, None, T0 + HOUR, true),
        ])
        .await
        .unwrap();
    server
}

const RANGE: &str = "from=2026-01-01T00:00:00Z&to=2026-01-02";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_figures_by_hour_and_by_day() {
    let server = seeded().await;
    let r = server
        .api(
            &format!("/v1/routes/news/stats?{RANGE}&interval=hour"),
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let t = &v["totals"];
    assert_eq!(t["relayed"], 2, "the failed copy is not counted: {v}");
    assert_eq!(
        (t["opens"].as_u64(), t["unique_opens"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        (t["clicks"].as_u64(), t["unique_clicks"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(t["open_rate"], 0.5);
    assert_eq!(t["click_rate"], 0.5);
    let starts: Vec<&str> = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2026-01-01T10:00:00Z",
            "2026-01-01T11:00:00Z",
            "2026-01-01T12:00:00Z"
        ]
    );
    assert_eq!(v["buckets"][0]["relayed"], 2);
    assert_eq!(v["buckets"][1]["opens"], 2);
    assert_eq!(v["buckets"][2]["clicks"], 2);

    let day = server
        .api(&format!("/v1/routes/news/stats?{RANGE}"), Some(API_TOKEN))
        .await
        .json();
    assert_eq!(day["interval"], "day");
    assert_eq!(day["buckets"].as_array().unwrap().len(), 1);
    assert_eq!(day["buckets"][0]["start"], "2026-01-01T00:00:00Z");
    assert_eq!(day["buckets"][0]["clicks"], 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_activity_only_when_asked_and_links_by_destination() {
    let server = seeded().await;
    let all = server
        .api(
            &format!("/v1/routes/news/stats?{RANGE}&include_machine=true"),
            Some(API_TOKEN),
        )
        .await
        .json();
    assert_eq!(all["totals"]["opens"], 3);
    assert_eq!(all["totals"]["unique_opens"], 2);
    assert_eq!(all["totals"]["clicks"], 4);
    assert_eq!(all["totals"]["open_rate"], 1.0);

    let links = server
        .api(&format!("/v1/routes/news/links?{RANGE}"), Some(API_TOKEN))
        .await
        .json();
    assert_eq!(
        links["links"],
        json!([
            { "url": "https://example.com/a", "clicks": 2, "unique_clicks": 1 },
            { "url": "https://example.com/b", "clicks": 1, "unique_clicks": 1 },
        ])
    );
    let with_machine = server
        .api(
            &format!("/v1/routes/news/links?{RANGE}&include_machine=true"),
            Some(API_TOKEN),
        )
        .await
        .json();
    assert_eq!(with_machine["links"][1]["clicks"], 2, "{with_machine}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_unknown_routes_and_tokens() {
    let server = seeded().await;
    for (path, status, words) in [
        ("/v1/routes/news/stats?interval=week", 400, "interval"),
        ("/v1/routes/news/stats?from=yesterday", 400, "from"),
        (
            "/v1/routes/news/stats?from=2026-01-02&to=2026-01-01",
            400,
            "before",
        ),
        (
            "/v1/routes/news/stats?include_machine=yes",
            400,
            "include_machine",
        ),
        (
            "/v1/routes/news/links?interval=day",
            400,
            "unknown parameter",
        ),
        (
            "/v1/routes/news/stats?from=2020-01-01&to=2026-01-01&interval=hour",
            400,
            "buckets",
        ),
        ("/v1/routes/nope/stats", 404, "nope"),
    ] {
        let r = server.api(path, Some(API_TOKEN)).await;
        assert_eq!(r.status, status, "{path}");
        let error = r.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(words), "{path}: {error}");
    }
    let r = server.api("/v1/routes/news/stats", Some("wrong")).await;
    assert_eq!(r.status, 401);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_command_prints_what_the_api_answers() {
    let server = seeded().await;
    let path = format!("/v1/routes/news/stats?{RANGE}&interval=hour");
    let from_api = server.api(&path, Some(API_TOKEN)).await.json();
    let config = server.dir.path().join("trackrelay.toml");
    std::fs::write(
        &config,
        support::server::config_text(server.dir.path(), "127.0.0.1:0", "127.0.0.1:0", ""),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trackrelay"))
            .args(["stats", "--config"])
            .arg(&config)
            .args([
                "--route",
                "news",
                "--from",
                "2026-01-01T00:00:00Z",
                "--to",
                "2026-01-02",
            ])
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value =
        serde_json::from_str(run(&["--interval", "hour", "--json"]).trim()).unwrap();
    assert_eq!(json, from_api);
    let table = run(&[]);
    let total = table.lines().find(|l| l.starts_with("total")).unwrap();
    let cells: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(
        cells,
        ["total", "2", "2", "1", "3", "1", "50.0%", "50.0%"],
        "{table}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_listed_live_with_their_settings() {
    let server = seeded().await;
    let v = server.api("/v1/routes", Some(API_TOKEN)).await.json();
    let ids: Vec<&str> = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["news", "default"]);
    let news = server.api("/v1/routes/news", Some(API_TOKEN)).await.json();
    assert_eq!(news["track_opens"], true);
    assert_eq!(news["tracking_domain"], "https://links.news.example:8443/");
    assert_eq!(news["pixel_position"], "end");
    assert_eq!(
        server.api("/v1/routes/later", Some(API_TOKEN)).await.status,
        404
    );

    // A reload that adds a route: the API knows it at once.
    let path = server.dir.path().join("trackrelay.toml");
    let text = support::server::config_text(server.dir.path(), "127.0.0.1:0", "127.0.0.1:0", "")
        .replace(
            "[[routes]]\nid = \"default\"",
            "[[routes]]\nid = \"later\"\ntrack_opens = true\n[routes.match]\n\
             senders = [\"later.example.com\"]\n\n[[routes]]\nid = \"default\"",
        );
    std::fs::write(&path, text).unwrap();
    server.app().reload(&path).await.unwrap();
    let later = server.api("/v1/routes/later", Some(API_TOKEN)).await.json();
    assert_eq!(later["track_clicks"], false);
    let stats = server.api("/v1/routes/later/stats", Some(API_TOKEN)).await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.json()["totals"]["relayed"], 0);
    server.stop().await;
}

const JSON: &str = "application/json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_switches_tracking_for_the_next_message_and_survives_a_restart() {
    let server = TestServer::start("").await;
    let r = server
        .api_send(
            "PATCH",
            "/v1/routes/news",
            JSON,
            r#"{"track_clicks": false}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(
        v["track_opens"], true,
        "untouched setting keeps the config's"
    );
    assert_eq!(v["track_clicks"], false);
    assert_eq!(v["overrides"]["track_opens"], serde_json::Value::Null);
    assert_eq!(v["overrides"]["track_clicks"], false);
    assert!(
        v["overrides"]["updated_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let listed = server.api("/v1/routes", Some(API_TOKEN)).await.json();
    assert_eq!(listed["routes"][0], v, "GET /v1/routes shows the change");

    // The next message on the route: a pixel, no tracked links.
    let outbox = server.dir.path().join("outbox");
    let mut smtp = support::relay::Client::connect(server.app().smtp_addr()).await;
    let (_, reply) = smtp
        .send(
            "letters@news.example.com",
            &["bob@example.com"],
            &support::relay::html_message(""),
        )
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let copy = newest_file(&outbox);
    assert!(copy.contains("links.news.example:8443/o/"), "pixel: {copy}");
    assert!(
        !copy.contains("links.news.example:8443/c/"),
        "no click link: {copy}"
    );
    assert!(copy.contains("https://example.com/?a=1&amp;b=2"), "{copy}");

    // Stored: a restart on the same database keeps it.
    let server = server.restart().await;
    let v = server.api("/v1/routes/news", Some(API_TOKEN)).await.json();
    assert_eq!(
        (&v["track_opens"], &v["track_clicks"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(v["overrides"]["track_clicks"], false);

    // null hands the setting back to the config.
    let v = server
        .api_send(
            "PATCH",
            "/v1/routes/news",
            JSON,
            r#"{"track_clicks": null, "track_opens": false}"#,
        )
        .await
        .json();
    assert_eq!(
        (&v["track_opens"], &v["track_clicks"]),
        (&json!(false), &json!(true))
    );
    assert_eq!(v["overrides"]["track_clicks"], serde_json::Value::Null);
    let v = server
        .api_send("PATCH", "/v1/routes/news", JSON, r#"{"track_opens": null}"#)
        .await
        .json();
    assert_eq!(
        v["overrides"],
        json!({ "track_opens": null, "track_clicks": null, "updated_at": null }),
        "nothing left set: the row is gone"
    );
    let server = server.restart().await;
    let v = server.api("/v1/routes/news", Some(API_TOKEN)).await.json();
    assert_eq!(
        (&v["track_opens"], &v["track_clicks"]),
        (&json!(true), &json!(true))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_refuses_bad_requests_and_changes_nothing() {
    let server = TestServer::start("").await;
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("/v1/routes/news", JSON, "{}", 400, "nothing to change"),
        ("/v1/routes/news", JSON, "[]", 400, "JSON object"),
        (
            "/v1/routes/news",
            JSON,
            "track_opens=true",
            400,
            "JSON object",
        ),
        (
            "/v1/routes/news",
            JSON,
            r#"{"track_opens": "yes"}"#,
            400,
            "track_opens must be true, false or null",
        ),
        (
            "/v1/routes/news",
            JSON,
            r#"{"track_opens": true, "tracking_domain": "x"}"#,
            400,
            "\"tracking_domain\" cannot be changed",
        ),
        (
            "/v1/routes/news",
            "text/plain",
            r#"{"track_opens": true}"#,
            415,
            "application/json",
        ),
        (
            "/v1/routes/nope",
            JSON,
            r#"{"track_opens": true}"#,
            404,
            "no route \"nope\"",
        ),
    ];
    for (path, content_type, body, status, says) in cases {
        let r = server.api_send("PATCH", path, content_type, body).await;
        let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert_eq!(r.status, *status, "{body}: {error}");
        assert!(error.contains(says), "{body}: {error}");
    }
    let big = format!(
        r#"{{"track_opens": true, "pad": "{}"}}"#,
        "x".repeat(20_000)
    );
    assert_eq!(
        server
            .api_send("PATCH", "/v1/routes/news", JSON, &big)
            .await
            .status,
        413
    );
    let r = server.api_send("DELETE", "/v1/routes/news", JSON, "").await;
    assert_eq!((r.status, r.header("allow")), (405, "GET, PATCH, PUT"));
    assert_eq!(
        server
            .api_send("PATCH", "/v1/routes", JSON, "{}")
            .await
            .status,
        405
    );
    let addr = server.app().api_addr();
    for auth in [None, Some("Bearer wrong")] {
        let headers: Vec<(&str, &str)> = [("content-type", JSON)]
            .into_iter()
            .chain(auth.map(|a| ("authorization", a)))
            .collect();
        let r = server
            .http
            .send_body(
                "PATCH",
                addr,
                &addr.to_string(),
                "/v1/routes/news",
                &headers,
                r#"{"track_opens": false}"#,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 401);
    }
    let v = server.api("/v1/routes/news", Some(API_TOKEN)).await.json();
    assert_eq!(
        (&v["track_opens"], &v["track_clicks"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(v["overrides"]["updated_at"], serde_json::Value::Null);
    server.stop().await;
}

/// The newest message (`.eml`) in `dir`, as text.
fn newest_file(dir: &std::path::Path) -> String {
    let newest = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .max_by_key(|e| e.metadata().unwrap().modified().unwrap())
        .unwrap();
    std::fs::read_to_string(newest.path()).unwrap()
}

/// `routes.update` of the official Lettermint SDKs (issue 18): the Python
/// SDK's team client, pointed at the admin API.
fn python_sdk_update(server: &TestServer, settings: &str) -> serde_json::Value {
    let script = format!(
        "import json, lettermint\n\
         c = lettermint.Lettermint(team_token={API_TOKEN:?}, base_url='http://{}/v1')\n\
         try:\n    print(json.dumps(c.routes.update('news', {{'settings': {settings}}})))\n\
         except lettermint.APIError as e:\n    print(json.dumps({{'error': type(e).__name__, 'status': e.status, 'code': e.code}}))\n",
        server.app().api_addr()
    );
    sdk_output(std::process::Command::new("python3").args(["-c", &script]))
}

/// The same through the Node SDK (tests/sdk/node).
fn node_sdk_update(server: &TestServer, settings: &str) -> serde_json::Value {
    let script = format!(
        "const {{ Lettermint }} = require('lettermint');\n\
         Lettermint.api({API_TOKEN:?}, {{ baseUrl: 'http://{}/v1' }})\n\
         .routes.update('news', {{ settings: {settings} }})\n\
         .then((r) => console.log(JSON.stringify(r)));\n",
        server.app().api_addr()
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/node");
    sdk_output(
        std::process::Command::new("node")
            .args(["-e", &script])
            .current_dir(dir),
    )
}

fn sdk_output(cmd: &mut std::process::Command) -> serde_json::Value {
    let out = cmd.output().expect("the SDKs are installed (.ci/packages)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One message on route "news" over SMTP; the copy delivered.
async fn relay_news(server: &TestServer) -> String {
    let mut smtp = support::relay::Client::connect(server.app().smtp_addr()).await;
    let message = support::relay::html_message("");
    let (_, reply) = smtp
        .send("letters@news.example.com", &["bob@example.com"], &message)
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    newest_file(&server.dir.path().join("outbox"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lettermint_sdks_route_update_is_a_put_that_takes_effect() {
    let server = TestServer::start("").await;
    let v = python_sdk_update(&server, "{'track_clicks': False}");
    assert_eq!(v["message"], "Route updated successfully.", "{v}");
    assert_eq!(v["data"]["id"], "news");
    assert_eq!(
        (&v["data"]["track_opens"], &v["data"]["track_clicks"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(v["data"]["overrides"]["track_clicks"], false);
    assert_eq!(
        (&v["data"]["dkim_sign"], &v["data"]["rewrite_dkim_signed"]),
        (&json!(false), &json!(false))
    );
    let copy = relay_news(&server).await;
    assert!(copy.contains("links.news.example:8443/o/"), "pixel: {copy}");
    assert!(
        !copy.contains("links.news.example:8443/c/"),
        "no click link: {copy}"
    );

    let v = node_sdk_update(&server, "{ track_clicks: null, track_opens: false }");
    assert_eq!(
        (&v["data"]["track_opens"], &v["data"]["track_clicks"]),
        (&json!(false), &json!(true)),
        "{v}"
    );
    let copy = relay_news(&server).await;
    assert!(
        !copy.contains("links.news.example:8443/o/"),
        "no pixel: {copy}"
    );
    assert!(
        copy.contains("links.news.example:8443/c/"),
        "click link: {copy}"
    );

    // A setting trackrelay does not have: the SDK's error, nothing changed.
    let v = python_sdk_update(&server, "{'track_opens': True, 'tls': 'enforced'}");
    assert_eq!(
        (&v["error"], &v["status"]),
        (&json!("APIError"), &json!(400)),
        "{v}"
    );
    assert!(
        v["code"]
            .as_str()
            .unwrap()
            .contains("\"tls\" cannot be changed"),
        "{v}"
    );
    let now = server.api("/v1/routes/news", Some(API_TOKEN)).await.json();
    assert_eq!(now["track_opens"], false);
    server.stop().await;
}
