//! Classification through the real server (issue 5): hits over real
//! sockets, the pipeline judging them after its wait, events and message
//! status read back through storage and the API. The client address comes
//! from X-Forwarded-For (loopback is a trusted proxy in test configs), so a
//! hit can come from Apple's relay ranges of the shared corpus.

mod support;

use std::time::Duration;

use support::bob::{claims, path};
use support::server::{API_TOKEN, HOST, TestServer};
use trackrelay::storage::{Event, RelayedCopy};
use trackrelay::token::Kind;
use uuid::Uuid;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
/// An address inside the corpus's Apple relay egress list (104.28.28.0/26).
const APPLE_IP: &str = "104.28.28.10";
/// Documentation addresses (RFC 5737): in no list.
const HOME_IP: &str = "198.51.100.20";
const OFFICE_IP: &str = "203.0.113.7";

async fn server() -> TestServer {
    TestServer::start(&support::bob::classifier_with_apple_ranges()).await
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Records a copy with five links, relayed `ago` before now.
async fn relayed(server: &TestServer, ago: Duration) -> RelayedCopy {
    let copy = RelayedCopy {
        id: Uuid::now_v7(),
        route: "default".into(),
        sender: "news@example.com".into(),
        recipients: vec!["bob@example.com".into()],
        recipient_id: claims(Uuid::nil(), None).recipient_id_text(),
        message_id_header: None,
        tags: Vec::new(),
        links: (0..5).map(|i| format!("https://example.com/{i}")).collect(),
        relayed_at_ms: now_ms() - ago.as_millis() as i64,
        upstream_reply: "250 2.0.0 queued".into(),
        status: trackrelay::storage::CopyStatus::Relayed,
    };
    server
        .app()
        .storage()
        .record_relayed(copy.clone())
        .await
        .unwrap();
    copy
}

/// What a desktop Chrome sends with a top-level navigation.
fn browser(ip: &str) -> Vec<(&str, &str)> {
    vec![
        ("x-forwarded-for", ip),
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
    ]
}

/// Waits until the copy has `n` events (the pipeline waits a second).
async fn events(server: &TestServer, copy: &RelayedCopy, n: usize) -> Vec<Event> {
    let storage = server.app().storage();
    for _ in 0..200 {
        let events = storage.events(copy.id).await.unwrap();
        if events.len() >= n {
            assert_eq!(events.len(), n, "{events:#?}");
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} events expected within 10 s");
}

async fn status(server: &TestServer, copy: &RelayedCopy) -> String {
    let v = server
        .api(&format!("/v1/messages/{}", copy.id), Some(API_TOKEN))
        .await
        .json();
    v["status"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_fetching_every_link_at_once_counts_for_nothing() {
    let server = server().await;
    let copy = relayed(&server, Duration::from_secs(3)).await;
    for link in 0..5 {
        let headers = [("x-forwarded-for", OFFICE_IP), ("user-agent", CHROME)];
        let resp = server
            .tracking("GET", HOST, &path(&copy, Some(link)), &headers)
            .await;
        assert_eq!(resp.status, 302);
    }
    let events = events(&server, &copy, 5).await;
    for e in &events {
        assert!(!e.counts_for_metrics, "{e:#?}");
        assert!(e.machine);
        assert!(!e.first);
        assert!(
            ["security_scanner", "suspicious"].contains(&e.classification.as_str()),
            "{e:#?}"
        );
        assert!(!e.bot["reason_codes"].as_array().unwrap().is_empty());
    }
    assert_eq!(status(&server, &copy).await, "relayed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apple_prefetch_then_a_human_click() {
    let server = server().await;
    let copy = relayed(&server, Duration::from_secs(3 * 3600)).await;
    // Mail Privacy Protection fetches the pixel from Apple's relay network
    // with a bare agent.
    let mpp = [("x-forwarded-for", APPLE_IP), ("user-agent", "Mozilla/5.0")];
    let resp = server.tracking("GET", HOST, &path(&copy, None), &mpp).await;
    assert_eq!(resp.status, 200);
    let first = events(&server, &copy, 1).await;
    assert_eq!(
        first[0].classification.as_str(),
        "privacy_proxy",
        "{:#?}",
        first[0]
    );
    assert_eq!(first[0].bot["proxy_type"], "apple_mpp");
    assert!(!first[0].counts_for_metrics);
    assert_eq!(status(&server, &copy).await, "relayed");

    // Hours after sending, a person clicks from home.
    let resp = server
        .tracking("GET", HOST, &path(&copy, Some(2)), &browser(HOME_IP))
        .await;
    assert_eq!(resp.status, 302);
    let both = events(&server, &copy, 2).await;
    let click = &both[1];
    assert_eq!(click.kind, Kind::Click);
    assert_eq!(click.classification.as_str(), "genuine", "{click:#?}");
    assert!(click.counts_for_metrics);
    assert!(click.first, "the first counting click");
    assert_eq!(click.client_name.as_deref(), Some("Chrome"));
    assert_eq!(click.device_type.map(|d| d.as_str()), Some("desktop"));
    assert_eq!(status(&server, &copy).await, "clicked");

    // The API shows both events with their bot objects.
    let v = server
        .api(
            &format!("/v1/messages/{}?include_machine=true", copy.id),
            Some(API_TOKEN),
        )
        .await
        .json();
    assert_eq!(v["events"][0]["bot"]["classification"], "privacy_proxy");
    assert_eq!(v["events"][0]["first_open"], false);
    assert_eq!(v["events"][1]["first_click"], true);
    assert_eq!(v["events"][1]["bot"]["counts_for_metrics"], true);
    assert_eq!(v["unclassified"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_preview_and_a_head_probe_count_for_nothing() {
    let server = server().await;
    let copy = relayed(&server, Duration::from_secs(600)).await;
    let slack = [
        ("x-forwarded-for", HOME_IP),
        (
            "user-agent",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        ),
    ];
    let resp = server
        .tracking("GET", HOST, &path(&copy, Some(0)), &slack)
        .await;
    assert_eq!(resp.status, 302);
    let resp = server
        .tracking("HEAD", HOST, &path(&copy, Some(1)), &browser(OFFICE_IP))
        .await;
    assert_eq!(resp.status, 302);
    let events = events(&server, &copy, 2).await;
    let slack = events.iter().find(|e| e.link == Some(0)).unwrap();
    assert_eq!(
        slack.classification.as_str(),
        "link_preview_bot",
        "{slack:#?}"
    );
    let head = events.iter().find(|e| e.link == Some(1)).unwrap();
    assert!(!head.counts_for_metrics, "{head:#?}");
    assert!(head.machine);
    assert!(events.iter().all(|e| !e.first && !e.counts_for_metrics));
    assert_eq!(status(&server, &copy).await, "relayed");

    // A person's click afterwards (past the burst window: two links
    // within 2 s look like a scanner) is the first counting one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = server
        .tracking("GET", HOST, &path(&copy, Some(0)), &browser(HOME_IP))
        .await;
    assert_eq!(resp.status, 302);
    let all = self::events(&server, &copy, 3).await;
    assert!(all[2].counts_for_metrics && all[2].first, "{:#?}", all[2]);
    assert_eq!(status(&server, &copy).await, "clicked");
    server.stop().await;
}
