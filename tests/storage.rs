//! The storage interface on its own, on both backends (SQLite and a
//! private PostgreSQL cluster): group commit, reopening a database, the
//! flush used at shutdown. (Its own test binary: it reads the
//! process-wide batch metrics, which no other test binary moves.)

mod support;

use std::time::Duration;

use support::db::Db;
use trackrelay::storage::{MessageFilter, Observation, RelayedCopy, Stored};
use trackrelay::token::Kind;
use uuid::Uuid;

fn observation(message_id: Uuid) -> Observation {
    Observation {
        id: Uuid::now_v7(),
        message_id,
        kind: Kind::Open,
        recipient_id: None,
        link: None,
        url: None,
        at_ms: 1_700_000_000_000,
        method: "GET".into(),
        host: "t.example.com".into(),
        ip: "192.0.2.1".parse().ok(),
        user_agent: Some("Mail".into()),
        headers: vec![("user-agent".into(), "Mail".into())],
        key_id: "k1".into(),
    }
}

/// The value of an unlabelled metric line.
fn metric(name: &str) -> f64 {
    let text = trackrelay::metrics::render();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

crate::on_both_backends!(
    concurrent_writes_are_committed_together,
    a_reopened_database_keeps_its_rows,
    a_read_only_database_keeps_rows_queued_until_writable,
);

/// The batch metrics are process-wide: one grouping test at a time.
static METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn concurrent_writes_are_committed_together(db: Db) {
    let storage = db.open().await;
    let _alone = METRICS.lock().await;
    let (rows_before, batches_before) = (
        metric("trackrelay_storage_batch_size_sum"),
        metric("trackrelay_storage_batch_size_count"),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let storage = storage.clone();
        tasks.spawn(async move {
            storage
                .record_observation(observation(Uuid::now_v7()), Duration::from_secs(10))
                .await
        });
    }
    while let Some(stored) = tasks.join_next().await {
        assert_eq!(stored.unwrap(), Stored::Committed);
    }
    let rows = metric("trackrelay_storage_batch_size_sum") - rows_before;
    let batches = metric("trackrelay_storage_batch_size_count") - batches_before;
    // The other tests here may commit their few rows meanwhile.
    assert!((500.0..=520.0).contains(&rows), "{rows}");
    assert!(
        batches < 250.0,
        "{batches} commits for 500 rows: no grouping"
    );
    assert_eq!(storage.observation_count().await.unwrap(), 500);
}

async fn a_reopened_database_keeps_its_rows(db: Db) {
    let id = Uuid::now_v7();
    {
        let storage = db.open().await;
        storage
            .record_observation(observation(id), Duration::ZERO)
            .await;
        let copy = RelayedCopy {
            id,
            route: "default".into(),
            sender: String::new(),
            recipients: vec!["a@example.com".into(), "B@example.com".into()],
            recipient_id: None,
            message_id_header: None,
            tags: Vec::new(),
            links: Vec::new(),
            relayed_at_ms: 1,
            upstream_reply: "250 ok".into(),
            status: trackrelay::storage::CopyStatus::Relayed,
        };
        storage.record_relayed(copy).await.unwrap();
        assert!(storage.flush(Duration::from_secs(5)).await);
    }
    let storage = db.open().await;
    assert_eq!(storage.observations(id).await.unwrap().len(), 1);
    let filter = MessageFilter {
        recipient: Some("b@EXAMPLE.com".into()),
        limit: 10,
        ..MessageFilter::default()
    };
    let found = storage.messages(filter).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].recipients, ["a@example.com", "B@example.com"]);
}

/// A database that refuses writes (SQLite's read-only file, PostgreSQL's
/// read-only transactions) keeps the rows queued; they are committed, in
/// full, once it takes writes again.
async fn a_read_only_database_keeps_rows_queued_until_writable(db: Db) {
    let storage = db.open().await;
    storage.inject_fault(Some(trackrelay::storage::Fault::ReadOnly));
    let id = Uuid::now_v7();
    for _ in 0..20 {
        let stored = storage
            .record_observation(observation(id), Duration::from_millis(50))
            .await;
        assert_eq!(stored, Stored::Pending);
    }
    assert!(!storage.flush(Duration::from_millis(300)).await);
    assert_eq!(storage.queue_depth(), 20);
    storage.inject_fault(None);
    assert!(storage.flush(Duration::from_secs(10)).await);
    assert_eq!(storage.observations(id).await.unwrap().len(), 20);
    assert_eq!(storage.queue_depth(), 0);
}
