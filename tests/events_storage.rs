//! The events table through the storage interface: which observations
//! still wait for a verdict, events read back as written, and a message's
//! status moving only on counting events. On both backends.

mod support;

use std::time::Duration;

use support::db::Db;

use serde_json::json;
use trackrelay::storage::{Event, Observation, RelayedCopy, Storage};
use trackrelay::token::Kind;
use uuid::Uuid;

fn observation(message_id: Uuid, kind: Kind, at_ms: i64) -> Observation {
    Observation {
        id: Uuid::now_v7(),
        message_id,
        kind,
        recipient_id: Some("r1".into()),
        link: (kind == Kind::Click).then_some(0),
        url: (kind == Kind::Click).then(|| "https://example.com/".into()),
        at_ms,
        method: "GET".into(),
        host: "t.example.com".into(),
        ip: "192.0.2.1".parse().ok(),
        user_agent: Some("Mozilla/5.0".into()),
        headers: Vec::new(),
        key_id: "k1".into(),
    }
}

fn event(o: &Observation, classification: &str, counts: bool) -> Event {
    Event {
        id: o.id,
        message_id: o.message_id,
        recipient_id: o.recipient_id.clone(),
        kind: o.kind,
        link: o.link,
        url: o.url.clone(),
        at_ms: o.at_ms,
        classification: classification.parse().unwrap(),
        counts_for_metrics: counts,
        machine: !counts,
        first: counts,
        bot: json!({ "classification": classification, "reason_codes": ["test"] }),
        device_type: Some(trackrelay::classify::DeviceType::Desktop),
        client_type: Some(trackrelay::classify::ClientType::Browser),
        client_name: None,
    }
}

fn copy(id: Uuid) -> RelayedCopy {
    RelayedCopy {
        id,
        route: "default".into(),
        sender: "a@example.com".into(),
        recipients: vec!["b@example.com".into()],
        recipient_id: Some("r1".into()),
        message_id_header: None,
        tags: Vec::new(),
        links: vec!["https://example.com/".into()],
        relayed_at_ms: 1_000,
        upstream_reply: "250 ok".into(),
        status: trackrelay::storage::CopyStatus::Relayed,
    }
}

async fn status(storage: &Storage, id: Uuid) -> String {
    storage
        .message(id)
        .await
        .unwrap()
        .unwrap()
        .status
        .to_string()
}

crate::on_both_backends!(
    status_moves_only_on_counting_events,
    first_open_is_taken_once_per_recipient,
);

async fn status_moves_only_on_counting_events(db: Db) {
    let storage = db.open().await;
    let id = Uuid::now_v7();
    storage.record_relayed(copy(id)).await.unwrap();
    let hits = [
        observation(id, Kind::Open, 10_000),
        observation(id, Kind::Click, 11_000),
        observation(id, Kind::Open, 50_000),
        observation(id, Kind::Click, 60_000),
    ];
    for o in &hits {
        storage
            .record_observation(o.clone(), Duration::from_secs(5))
            .await;
    }
    assert!(storage.flush(Duration::from_secs(5)).await);

    // Only hits in the window, and only those without an event.
    let waiting = storage.unclassified(0, 20_000, 100).await.unwrap();
    assert_eq!(
        waiting.iter().map(|o| o.id).collect::<Vec<_>>(),
        [hits[0].id, hits[1].id]
    );

    // A prefetch and a scanner's click: machine, so nothing moves.
    storage
        .record_events(vec![
            event(&hits[0], "privacy_proxy", false),
            event(&hits[1], "security_scanner", false),
        ])
        .await
        .unwrap();
    assert_eq!(status(&storage, id).await, "relayed");
    assert!(
        storage
            .unclassified(0, 20_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        storage.unclassified(0, 100_000, 100).await.unwrap().len(),
        2
    );

    // A human open, then a human click.
    storage
        .record_events(vec![event(&hits[2], "genuine", true)])
        .await
        .unwrap();
    assert_eq!(status(&storage, id).await, "opened");
    storage
        .record_events(vec![event(&hits[3], "genuine", true)])
        .await
        .unwrap();
    assert_eq!(status(&storage, id).await, "clicked");
    let listed = storage
        .messages(trackrelay::storage::MessageFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed[0].status, trackrelay::storage::CopyStatus::Clicked);

    // Read back as written, oldest first; a second verdict for the same
    // observation keeps the first.
    let mut again = event(&hits[0], "genuine", true);
    again.bot = json!({});
    storage.record_events(vec![again]).await.unwrap();
    let events = storage.events(id).await.unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events[0], event(&hits[0], "privacy_proxy", false));
    assert_eq!(events[3], event(&hits[3], "genuine", true));
}

/// Two verdicts of "first open" for one recipient (two nodes judging its
/// hits at once): only one is stored as the first; another recipient of
/// the same copy has its own.
async fn first_open_is_taken_once_per_recipient(db: Db) {
    let storage = db.open().await;
    let id = Uuid::now_v7();
    storage.record_relayed(copy(id)).await.unwrap();
    let a = observation(id, Kind::Open, 10_000);
    let b = observation(id, Kind::Open, 10_001);
    let mut other = observation(id, Kind::Open, 10_002);
    other.recipient_id = Some("r2".into());
    for o in [&a, &b, &other] {
        storage
            .record_observation(o.clone(), Duration::from_secs(5))
            .await;
    }
    let (ea, eb, eo) = (
        event(&a, "genuine", true),
        event(&b, "genuine", true),
        event(&other, "genuine", true),
    );
    assert!(ea.first && eb.first && eo.first);
    let (x, y) = tokio::join!(
        storage.record_events(vec![ea]),
        storage.record_events(vec![eb, eo]),
    );
    x.unwrap();
    y.unwrap();
    let events = storage.events(id).await.unwrap();
    let firsts = |r: &str| {
        events
            .iter()
            .filter(|e| e.first && e.recipient_id.as_deref() == Some(r))
            .count()
    };
    assert_eq!((firsts("r1"), firsts("r2")), (1, 1), "{events:#?}");
}

/// How many copies one address hit lately (the classifier's
/// `many_recipients_from_ip`), on PostgreSQL: counted from what every node
/// stored, and still there for a node started afresh (issue 16: in memory
/// it was per node, and a restart forgot it). On SQLite the pipeline
/// counts in memory: `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_per_address_are_counted_across_nodes_and_restarts() {
    let sqlite = Db::new(support::db::Kind::Sqlite);
    let storage = sqlite.open().await;
    let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(
        storage.recipients_from_ips(vec![(ip, 0)]).await.unwrap(),
        None
    );

    let db = Db::new(support::db::Kind::Postgres);
    let (a, b) = (db.open().await, db.open().await);
    let t = 1_767_225_600_000;
    let copies: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    // A hits three copies (one of them twice), B two others, and one of
    // A's again; another address hits one.
    let hits = [
        (&a, 0, 0),
        (&a, 0, 60_000),
        (&a, 1, 120_000),
        (&a, 2, 180_000),
    ];
    let more = [(&b, 3, 240_000), (&b, 4, 300_000), (&b, 1, 360_000)];
    for (node, copy, at) in hits.into_iter().chain(more) {
        let o = observation(copies[copy], Kind::Open, t + at);
        assert_eq!(
            node.record_observation(o, Duration::from_secs(10)).await,
            trackrelay::storage::Stored::Committed
        );
    }
    let mut other = observation(copies[0], Kind::Open, t);
    other.ip = "198.51.100.7".parse().ok();
    a.record_observation(other, Duration::from_secs(10)).await;
    drop((a, b));

    let fresh = db.open().await;
    let other: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    let asked = vec![
        (ip, t + 360_000),
        // Before B's hits: A's three copies.
        (ip, t + 180_000),
        (other, t + 360_000),
        // An hour and more after the first hits: those have left the window.
        (ip, t + 180_000 + 3_600_000),
        // Nothing in the window at all: the hit itself.
        (ip, t + 10 * 3_600_000),
    ];
    let counted = fresh.recipients_from_ips(asked).await.unwrap();
    assert_eq!(counted, Some(vec![5, 3, 1, 4, 1]));
}
