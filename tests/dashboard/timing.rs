//! How long the pages take on a bigger database: a measurement, run by
//! hand.

use std::time::Instant;

use serde_json::json;
use uuid::Uuid;

use crate::support::server::{API_TOKEN, TestServer};

/// How long the pages take on a bigger database (not run by default):
/// `cargo test --test dashboard -- --ignored --nocapture`. 20,000 copies
/// over 30 days and 100,000 events (a third of them machine), stored
/// through the storage interface; each page asked for 10 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
async fn page_times_on_a_large_database() {
    use trackrelay::storage::{Event, RelayedCopy};
    const COPIES: usize = 20_000;
    const EVENTS_PER_COPY: usize = 5;
    let server = TestServer::start("").await;
    let storage = server.app().storage();
    let now = jiff::Timestamp::now().as_millisecond();
    let month_ms = 30 * 86_400_000_i64;
    let mut ids = Vec::new();
    let started = Instant::now();
    for i in 0..COPIES {
        let at = now - month_ms + (i as i64 * month_ms / COPIES as i64);
        let copy = RelayedCopy {
            id: Uuid::now_v7(),
            route: "default".into(),
            sender: "a@example.com".into(),
            recipients: vec![format!("r{i}@example.com")],
            recipient_id: Some(format!("rid{i}")),
            message_id_header: None,
            tags: vec!["bench".into()],
            links: (0..4).map(|l| format!("https://example.com/{l}")).collect(),
            relayed_at_ms: at,
            upstream_reply: "250 ok".into(),
            status: trackrelay::storage::CopyStatus::Relayed,
        };
        let events: Vec<Event> = (0..EVENTS_PER_COPY)
            .map(|n| {
                let machine = n % 3 == 2;
                let click = n % 2 == 1;
                Event {
                    id: Uuid::now_v7(),
                    message_id: copy.id,
                    recipient_id: copy.recipient_id.clone(),
                    kind: if click {
                        trackrelay::token::Kind::Click
                    } else {
                        trackrelay::token::Kind::Open
                    },
                    link: click.then_some((n % 4) as u16),
                    url: click.then(|| copy.links[n % 4].clone()),
                    at_ms: at + 60_000 * (n as i64 + 1),
                    classification: if machine {
                        "security_scanner"
                    } else {
                        "genuine"
                    }
                    .parse()
                    .unwrap(),
                    counts_for_metrics: !machine,
                    machine,
                    first: n < 2,
                    bot: json!({ "reason_codes": ["browser"] }),
                    device_type: None,
                    client_type: None,
                    client_name: None,
                }
            })
            .collect();
        ids.push(copy.id);
        storage.record_relayed(copy).await.unwrap();
        storage.record_events(events).await.unwrap();
    }
    println!(
        "seeded {COPIES} copies, {} events in {:.1?}",
        COPIES * EVENTS_PER_COPY,
        started.elapsed()
    );
    let addr = server.app().api_addr();
    let auth = format!("Bearer {API_TOKEN}");
    let message = format!("/dashboard/messages/{}", ids[COPIES / 2]);
    for path in [
        "/v1/routes/default/stats",
        "/dashboard",
        "/dashboard/routes/default",
        "/dashboard/routes/default?interval=hour",
        "/dashboard/routes/default?include_machine=true",
        message.as_str(),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..10 {
            let t = Instant::now();
            let r = server
                .http
                .send(
                    "GET",
                    addr,
                    &addr.to_string(),
                    path,
                    &[("authorization", &auth)],
                )
                .await
                .unwrap();
            times.push(t.elapsed());
            assert_eq!(r.status, 200, "{path}");
            bytes = r.body.len();
        }
        times.sort();
        println!(
            "{path}: median {:.1?}, max {:.1?}, {bytes} bytes",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    server.stop().await;
}
