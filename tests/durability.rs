//! No answered hit is lost: the real binary killed with SIGKILL or stopped
//! with SIGTERM under load, and a database that is locked or read-only
//! while hits keep coming.

mod support;

use std::time::Duration;

use support::load::{Load, Mix};
use support::server::{Binary, TestServer, next_week, stored_message_ids, token};
use trackrelay::storage::Fault;
use trackrelay::token::Kind;
use uuid::Uuid;

/// Concurrent clients of a load run.
const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_hit_that_was_answered_after_its_commit() {
    // Responses wait for their commit (the bound is far above any commit
    // here), so every answered hit was committed before its response.
    let mut server = Binary::start("commit_wait_ms = 5000").await;
    let load = Load::start(server.tracking, CLIENTS, Mix::OpensAndClicks);
    load.wait_answered(200).await;
    server.child.kill().unwrap(); // SIGKILL, mid-load
    server.child.wait().unwrap();
    let outcome = load.finish().await;
    let stored = stored_message_ids(&server.db_path());
    outcome.assert_all_stored(&stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stores_every_answered_hit_even_those_answered_before_their_commit() {
    // commit_wait_ms = 0: no response waits for its commit, so only the
    // shutdown flush can have stored them.
    let mut server = Binary::start("commit_wait_ms = 0").await;
    let load = Load::start(server.tracking, CLIENTS, Mix::OpensAndClicks);
    load.wait_answered(200).await;
    let text = server.metrics().await;
    assert!(
        text.contains(r#"outcome="queued"} "#),
        "no hit answered before its commit:\n{text}"
    );
    server.terminate();
    let status = server.child.wait().unwrap();
    let outcome = load.finish().await;
    assert!(status.success(), "exit {status:?}: {}", server.log());
    let log = server.log();
    for line in [
        "tracking listener started",
        "api listener started",
        "SIGTERM received",
        "every queued write stored",
    ] {
        assert!(log.contains(line), "{line:?} not in:\n{log}");
    }
    let stored = stored_message_ids(&server.db_path());
    outcome.assert_all_stored(&stored);
}

/// Sends `n` clicks one after another; each must redirect. The callers
/// check that their hits were not stored yet: the redirect did not wait for
/// the database (a property, not a timing).
async fn clicks_redirected(server: &TestServer, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let (id, tok) = token(Kind::Click, Some("https://example.com/"), next_week());
        let resp = server.hit("GET", &format!("/c/{tok}")).await;
        assert_eq!(resp.status, 302);
        ids.push(id);
    }
    ids
}

/// Waits until every id is stored (at most 10 s).
async fn all_stored_eventually(server: &TestServer, ids: &[Uuid]) {
    assert!(server.app().storage().flush(Duration::from_secs(10)).await);
    let stored = stored_message_ids(&server.db_path());
    let lost = ids.iter().filter(|id| !stored.contains(id)).count();
    assert_eq!(lost, 0, "of {} hits", ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_delays_storage_never_the_redirect() {
    let server = TestServer::start("").await;
    let lock = rusqlite::Connection::open(server.db_path()).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let ids = clicks_redirected(&server, 30).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        server.app().storage().queue_depth() > 0,
        "nothing waited for the lock"
    );
    let stored = stored_message_ids(&server.db_path());
    assert!(
        ids.iter().all(|id| !stored.contains(id)),
        "written through a lock?"
    );
    lock.execute_batch("COMMIT").unwrap();
    all_stored_eventually(&server, &ids).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_delays_storage_never_the_redirect() {
    let server = TestServer::start("").await;
    server.app().storage().inject_fault(Some(Fault::ReadOnly));
    let ids = clicks_redirected(&server, 30).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.app().storage().queue_depth(), 30);
    let metrics = server.metrics().await;
    let failures = metric(&metrics, "trackrelay_storage_commit_failures_total");
    assert!(failures >= 1.0, "{metrics}");
    server.app().storage().inject_fault(None);
    all_stored_eventually(&server, &ids).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_counts_and_logs_the_overflow_and_keeps_answering() {
    let server = TestServer::start("queue_capacity = 5").await;
    server.app().storage().inject_fault(Some(Fault::ReadOnly));
    let before = overflow(&server).await;
    let ids = clicks_redirected(&server, 12).await;
    assert_eq!(overflow(&server).await - before, 7.0);
    server.app().storage().inject_fault(None);
    all_stored_eventually(&server, &ids[..5]).await;
    let stored = stored_message_ids(&server.db_path());
    assert!(ids[5..].iter().all(|id| !stored.contains(id)));
    server.stop().await;
}

async fn overflow(server: &TestServer) -> f64 {
    let text = server.metrics().await;
    metric(&text, "trackrelay_storage_queue_overflow_total")
}

/// The value of an unlabelled metric in the Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
}
