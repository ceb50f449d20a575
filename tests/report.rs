//! Message and tag analytics over real HTTP (issue 17, item 3): copies
//! with tags and Message-IDs and their events stored through the storage
//! interface; `/v1/stats?message=`, `?tag=`, `/v1/routes/{id}/stats?tag=`
//! compared with a plain recount of the stored rows (support/stored.rs),
//! machine activity left out and let in; each copy's own counts in
//! `/v1/messages`; `trackrelay stats` (the real binary) printing the
//! API's figures. Every test on both backends.

mod support;

use serde_json::Value;
use support::db::Db;
use support::rows::copy;
use support::server::{API_TOKEN, TestServer};
use support::stored::{self, Recount, Stored};
use trackrelay::storage::{CopyStatus, Event, RelayedCopy};
use trackrelay::token::Kind;

/// 2026-01-01T10:00:00Z.
const T0: i64 = 1_767_261_600_000;
const HOUR: i64 = 3_600_000;
const RANGE: &str = "from=2026-01-01T00:00:00Z&to=2026-01-02";
const SEND: &str = "<spring-1@news.example.com>";

fn event(c: &RelayedCopy, kind: Kind, link: Option<u16>, at_ms: i64, human: bool) -> Event {
    support::rows::event(c, kind, link, at_ms, human, "security_scanner")
}

fn with(mut c: RelayedCopy, tags: &[&str], send: Option<&str>) -> RelayedCopy {
    c.tags = tags.iter().map(|t| t.to_string()).collect();
    c.message_id_header = send.map(str::to_owned);
    c
}

/// One send of route news to Bob, Ann and Dan (refused), tagged spring
/// (Ann's also all); Cy's copy of another route tagged spring too.
async fn seeded(db: &Db) -> (TestServer, [RelayedCopy; 4]) {
    let server = TestServer::start_on(db, "").await;
    let storage = server.app().storage();
    let bob = with(copy("news", "bob@example.com", T0), &["spring"], Some(SEND));
    let ann = with(
        copy("news", "ann@example.com", T0),
        &["spring", "all"],
        Some(SEND),
    );
    let mut dan = with(copy("news", "dan@example.com", T0), &["spring"], Some(SEND));
    dan.status = CopyStatus::Failed;
    let cy = with(copy("default", "cy@example.com", T0), &["spring"], None);
    for c in [&bob, &ann, &dan, &cy] {
        storage.record_relayed(c.clone()).await.unwrap();
    }
    storage
        .record_events(vec![
            event(&bob, Kind::Open, None, T0 + HOUR, true),
            event(&bob, Kind::Open, None, T0 + 2 * HOUR, true),
            event(&bob, Kind::Click, Some(0), T0 + 2 * HOUR + 60_000, true),
            // A scanner clicks b on Bob's copy and opens Ann's.
            event(&bob, Kind::Click, Some(1), T0 + 60_000, false),
            event(&ann, Kind::Open, None, T0 + 60_000, false),
            event(&ann, Kind::Open, None, T0 + 3 * HOUR, true),
            event(&cy, Kind::Open, None, T0 + HOUR, true),
        ])
        .await
        .unwrap();
    (server, [bob, ann, dan, cy])
}

/// `relayed, opens, unique opens, clicks, unique clicks` of the copies
/// matching `copies`, recounted from the rows.
fn recount(
    stored: &Stored,
    copies: &dyn Fn(&stored::Copy) -> bool,
    include_machine: bool,
) -> [u64; 5] {
    let (_, c) = stored.counts(&Recount {
        copies,
        from_ms: 0,
        to_ms: i64::MAX,
        bucket_ms: 24 * HOUR,
        include_machine,
    });
    [
        c.relayed,
        c.opens,
        c.unique_opens,
        c.clicks,
        c.unique_clicks,
    ]
}

/// Which copies a case counts.
type Copies<'a> = &'a dyn Fn(&stored::Copy) -> bool;

fn tagged(c: &stored::Copy, tag: &str) -> bool {
    c.tags.iter().any(|t| t == tag)
}

fn figures(v: &Value) -> [u64; 5] {
    [
        "relayed",
        "opens",
        "unique_opens",
        "clicks",
        "unique_clicks",
    ]
    .map(|k| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}")))
}

async fn get(server: &TestServer, path: &str) -> Value {
    let r = server.api(path, Some(API_TOKEN)).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

crate::on_both_backends!(
    message_and_tag_figures_equal_a_recount,
    each_copy_carries_its_own_counts,
    bad_statistics_queries_are_refused,
    the_cli_prints_the_api_figures,
    the_dashboard_pages_show_the_api_figures,
);

async fn message_and_tag_figures_equal_a_recount(db: Db) {
    let (server, _) = seeded(&db).await;
    let stored = stored::load(&db).await;
    let send = url::form_urlencoded::byte_serialize(SEND.as_bytes()).collect::<String>();
    let of_send = |c: &stored::Copy| {
        c.message_id_header.as_deref().map(stored::bare) == Some("spring-1@news.example.com")
    };
    let spring = |c: &stored::Copy| tagged(c, "spring");
    let spring_news = |c: &stored::Copy| tagged(c, "spring") && c.route == "news";
    let all_news = |c: &stored::Copy| tagged(c, "all") && c.route == "news";
    let cases: [(String, Copies); 5] = [
        (format!("/v1/stats?message={send}"), &of_send),
        // The same message without its brackets.
        (
            "/v1/stats?message=spring-1%40news.example.com".to_owned(),
            &of_send,
        ),
        ("/v1/stats?tag=spring".to_owned(), &spring),
        ("/v1/stats?tag=spring&route=news".to_owned(), &spring_news),
        ("/v1/routes/news/stats?tag=all".to_owned(), &all_news),
    ];
    for (path, copies) in cases {
        let human = get(&server, &format!("{path}&{RANGE}&interval=hour")).await;
        let all = get(&server, &format!("{path}&{RANGE}&include_machine=true")).await;
        assert_eq!(
            figures(&human["totals"]),
            recount(&stored, copies, false),
            "{path}"
        );
        assert_eq!(
            figures(&all["totals"]),
            recount(&stored, copies, true),
            "{path}"
        );
        assert_eq!(all["include_machine"], true);
        // The hourly buckets add up to the totals.
        let mut sum = [0; 5];
        for b in human["buckets"].as_array().unwrap() {
            for (s, v) in sum.iter_mut().zip(figures(b)) {
                *s += v;
            }
        }
        assert_eq!(sum, figures(&human["totals"]), "{path}");
    }
    // The figures themselves, so a recount that is wrong the same way fails.
    let sent = get(&server, &format!("/v1/stats?message={send}&{RANGE}")).await;
    assert_eq!(figures(&sent["totals"]), [2, 3, 2, 1, 1]);
    assert_eq!(sent["totals"]["open_rate"], 1.0);
    assert_eq!(sent["message_id"], "spring-1@news.example.com");
    assert_eq!(sent["links"][0]["url"], "https://example.com/a");
    let sent_all = get(
        &server,
        &format!("/v1/stats?message={send}&{RANGE}&include_machine=true"),
    )
    .await;
    // Two clicks on Bob's copy (a scanner's, then his): one unique.
    assert_eq!(figures(&sent_all["totals"]), [2, 4, 2, 2, 1]);
    let spring = get(&server, &format!("/v1/stats?tag=spring&{RANGE}")).await;
    assert_eq!(figures(&spring["totals"]), [3, 4, 3, 1, 1]);
    assert!(spring.get("route").is_none(), "{spring}");
}

async fn each_copy_carries_its_own_counts(db: Db) {
    let (server, [bob, ann, dan, _]) = seeded(&db).await;
    let list = get(&server, "/v1/messages?route=news").await;
    let find = |c: &RelayedCopy| {
        let all = list["messages"].as_array().unwrap();
        all.iter()
            .find(|m| m["id"] == c.id.to_string())
            .unwrap()
            .clone()
    };
    let (b, a, d) = (find(&bob), find(&ann), find(&dan));
    assert_eq!(
        (b["opens"].as_u64(), b["clicks"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(b["first_open_at"], "2026-01-01T11:00:00Z");
    assert_eq!(b["first_click_at"], "2026-01-01T12:01:00Z");
    // Ann's machine open is not hers: her first open is the human one.
    assert_eq!(
        (a["opens"].as_u64(), a["clicks"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(a["first_open_at"], "2026-01-01T13:00:00Z");
    assert_eq!(a["first_click_at"], Value::Null);
    assert_eq!(
        (d["opens"].as_u64(), d["first_open_at"].clone()),
        (Some(0), Value::Null)
    );
    let one = get(&server, &format!("/v1/messages/{}", bob.id)).await;
    assert_eq!(one["opens"], 2);
    assert_eq!(one["first_click_at"], "2026-01-01T12:01:00Z");
}

async fn bad_statistics_queries_are_refused(db: Db) {
    let (server, _) = seeded(&db).await;
    for (path, status, needle) in [
        ("/v1/stats", 400, "give route, tag"),
        ("/v1/stats?message=x&tag=y", 400, "cannot be combined"),
        ("/v1/stats?tag=", 400, "empty"),
        ("/v1/stats?tag=a&colour=red", 400, "colour"),
        ("/v1/stats?route=nope", 404, "no route"),
        ("/v1/stats?tag=a&interval=week", 400, "interval"),
        ("/v1/routes/news/links?tag=a", 400, "unknown parameter"),
    ] {
        let r = server.api(path, Some(API_TOKEN)).await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, status, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
    }
}

/// `trackrelay stats` on the same database prints the API's JSON, and a
/// table with the same totals.
async fn the_cli_prints_the_api_figures(db: Db) {
    let (server, _) = seeded(&db).await;
    let dir = server.dir.path();
    let config = dir.join("trackrelay.toml");
    let text = support::server::config_text(dir, "127.0.0.1:0", "127.0.0.1:0", "")
        .replace(&support::server::storage_section(dir), &db.config_section());
    std::fs::write(&config, text).unwrap();
    let range = ["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02"];
    let cases: [(&[&str], String); 3] = [
        (
            &["--message", SEND, "--include-machine"],
            format!(
                "/v1/stats?message=%3C{}%3E&include_machine=true",
                &SEND[1..SEND.len() - 1]
            ),
        ),
        (&["--tag", "spring"], "/v1/stats?tag=spring".into()),
        (
            &["--route", "news", "--tag", "all", "--interval", "hour"],
            "/v1/routes/news/stats?tag=all&interval=hour".into(),
        ),
    ];
    for (flags, path) in cases {
        let run = |json: bool| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trackrelay"));
            cmd.arg("stats")
                .arg("--config")
                .arg(&config)
                .args(range)
                .args(flags);
            if json {
                cmd.arg("--json");
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{flags:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let printed: Value = serde_json::from_str(run(true).trim()).unwrap();
        let api = get(&server, &format!("{path}&{RANGE}")).await;
        assert_eq!(printed, api, "{flags:?}");
        let table = run(false);
        let total = table.lines().find(|l| l.starts_with("total")).unwrap();
        let numbers: Vec<u64> = total
            .split_whitespace()
            .skip(1)
            .take(5)
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(numbers, figures(&api["totals"]), "{flags:?}: {table}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(["stats", "--config"])
        .arg(&config)
        .args(["--route", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no route"));
}

/// The dashboard's tag and message-as-sent pages show the API's figures,
/// and the copy page links to them.
async fn the_dashboard_pages_show_the_api_figures(db: Db) {
    let (server, [bob, ..]) = seeded(&db).await;
    let send = url::form_urlencoded::byte_serialize(SEND.as_bytes()).collect::<String>();
    for (page, api) in [
        (
            format!("/dashboard/tag?tag=spring&{RANGE}"),
            format!("/v1/stats?tag=spring&{RANGE}"),
        ),
        (
            format!("/dashboard/tag?tag=all&route=news&{RANGE}&include_machine=true"),
            format!("/v1/stats?tag=all&route=news&{RANGE}&include_machine=true"),
        ),
        (
            format!("/dashboard/sent?message={send}&{RANGE}"),
            format!("/v1/stats?message={send}&{RANGE}"),
        ),
    ] {
        let r = server.api(&page, Some(API_TOKEN)).await;
        let html = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 200, "{page}: {html}");
        let totals = get(&server, &api).await["totals"].clone();
        for (metric, value) in [
            "relayed",
            "opens",
            "unique_opens",
            "clicks",
            "unique_clicks",
        ]
        .iter()
        .zip(figures(&totals))
        {
            let attr = format!("data-metric=\"{metric}\" data-value=\"{value}\"");
            assert!(html.contains(&attr), "{page}: {attr} missing");
        }
        assert!(!html.contains("<script"), "{page}");
    }
    let r = server.api("/dashboard/tag", Some(API_TOKEN)).await;
    assert_eq!(r.status, 400);
    let copy = server
        .api(&format!("/dashboard/messages/{}", bob.id), Some(API_TOKEN))
        .await;
    let html = String::from_utf8_lossy(&copy.body);
    assert!(
        html.contains("href=\"/dashboard/tag?tag=spring\""),
        "{html}"
    );
    assert!(
        html.contains("href=\"/dashboard/sent?message=%3Cspring-1%40news.example.com%3E\""),
        "{html}"
    );
}
