//! `GET /v1/events` pages without gaps or repeats while events arrive
//! (issue 17): a writer task stores events in small batches while a
//! client pages the feed, oldest first by cursor and newest first; every
//! event shows up exactly once. On both backends, and on PostgreSQL with
//! two nodes storing events at once (issue 16).

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use support::db::{Db, Kind as Backend};
use support::server::{API_TOKEN, TestServer};
use trackrelay::storage::{Event, FeedFilter, Storage};
use trackrelay::token::Kind;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const BATCHES: usize = 40;
const PER_BATCH: usize = 6;

async fn page(server: &TestServer, path: &str) -> Value {
    let resp = server.api(path, Some(API_TOKEN)).await;
    assert_eq!(
        resp.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    resp.json()
}

fn ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Stores `BATCHES` batches of events on two copies, human and machine
/// alternately, with event times out of order (late classifications);
/// returns the human ones and all, in the order stored.
fn writer(server: &TestServer) -> tokio::task::JoinHandle<(Vec<String>, Vec<String>)> {
    let storage = server.app().storage().clone();
    tokio::spawn(async move {
        let copies = [
            support::rows::copy("default", "ann@example.com", T0),
            support::rows::copy("news", "bob@example.com", T0),
        ];
        for c in &copies {
            storage.record_relayed(c.clone()).await.unwrap();
        }
        let (mut human, mut all) = (Vec::new(), Vec::new());
        for batch in 0..BATCHES {
            let events: Vec<Event> = (0..PER_BATCH)
                .map(|i| {
                    let n = batch * PER_BATCH + i;
                    let c = &copies[n % 2];
                    // Times go back and forth: the feed's order is the
                    // order stored, not the hits' times.
                    let at = T0 + 60_000 + ((n * 7919) % 1000) as i64 * 1000;
                    let kind = if n.is_multiple_of(3) {
                        Kind::Click
                    } else {
                        Kind::Open
                    };
                    let link = (kind == Kind::Click).then_some(0);
                    support::rows::event(c, kind, link, at, n.is_multiple_of(2), "security_scanner")
                })
                .collect();
            for e in &events {
                all.push(e.id.to_string());
                if e.counts_for_metrics {
                    human.push(e.id.to_string());
                }
            }
            storage.record_events(events).await.unwrap();
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        (human, all)
    })
}

crate::on_both_backends!(the_feed_pages_without_gaps_or_repeats_while_events_arrive);

async fn the_feed_pages_without_gaps_or_repeats_while_events_arrive(db: Db) {
    let server = TestServer::start_on(&db, "").await;
    let writing = writer(&server);
    // Oldest first from a time, by cursor, for machine events too; and a
    // second reader of human events only, small pages.
    let (mut all_seen, mut human_seen) = (Vec::new(), Vec::new());
    let (mut all_cursor, mut human_cursor) = (None::<String>, None::<String>);
    let since = "since=2026-01-01T00:00:00Z";
    let mut done = false;
    loop {
        let path = match &all_cursor {
            Some(c) => format!("/v1/events?{since}&include_machine=true&limit=5&cursor={c}"),
            None => format!("/v1/events?{since}&include_machine=true&limit=5"),
        };
        let p = page(&server, &path).await;
        assert_eq!(p["order"], "oldest_first");
        all_seen.extend(ids(&p));
        all_cursor = p["next_cursor"].as_str().map(str::to_owned).or(all_cursor);
        let path = match &human_cursor {
            Some(c) => format!("/v1/events?{since}&limit=3&cursor={c}"),
            None => format!("/v1/events?{since}&limit=3"),
        };
        let p = page(&server, &path).await;
        human_seen.extend(ids(&p));
        human_cursor = p["next_cursor"]
            .as_str()
            .map(str::to_owned)
            .or(human_cursor);
        if done && ids(&p).is_empty() {
            // One more full pass of the first reader after the writer
            // finished: it must be caught up too.
            let path = format!(
                "/v1/events?{since}&include_machine=true&limit=1000&cursor={}",
                all_cursor.as_deref().unwrap()
            );
            let p = page(&server, &path).await;
            all_seen.extend(ids(&p));
            break;
        }
        done = writing.is_finished();
    }
    let (human, all) = writing.await.unwrap();
    assert_eq!(all_seen, all, "every event once, in the order stored");
    assert_eq!(human_seen, human, "every human event once");

    // Newest first: a listing begun while events arrive lists the ones
    // stored before it once each, newest first, whatever comes after.
    let first = page(&server, "/v1/events?include_machine=true&limit=7").await;
    assert_eq!(first["order"], "newest_first");
    let writing = writer(&server);
    let mut seen = ids(&first);
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let p = page(
            &server,
            &format!("/v1/events?include_machine=true&limit=7&cursor={c}"),
        )
        .await;
        seen.extend(ids(&p));
        cursor = p["next_cursor"].as_str().map(str::to_owned);
    }
    let expected: Vec<String> = all.iter().rev().cloned().collect();
    assert_eq!(seen, expected);
    writing.await.unwrap();

    // A cursor holds only with its filters.
    let p = page(&server, "/v1/events?limit=2").await;
    let c = p["next_cursor"].as_str().unwrap();
    let resp = server
        .api(
            &format!("/v1/events?route=news&limit=2&cursor={c}"),
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(resp.status, 400);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    server.stop().await;
}

/// Events two nodes stored, as one node's writer stores them: `batches`
/// batches of `per_batch` on one copy; their ids in the order stored.
async fn node_writes(storage: Storage, batches: usize, per_batch: usize) -> Vec<uuid::Uuid> {
    let c = support::rows::copy("default", "eve@example.com", T0);
    storage.record_relayed(c.clone()).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..batches {
        let events: Vec<Event> = (0..per_batch)
            .map(|i| {
                support::rows::event(
                    &c,
                    Kind::Open,
                    None,
                    T0 + (n * per_batch + i) as i64,
                    i.is_multiple_of(2),
                    "generic_bot",
                )
            })
            .collect();
        ids.extend(events.iter().map(|e| e.id));
        storage.record_events(events).await.unwrap();
    }
    ids
}

/// Two nodes (two writers on one PostgreSQL database) store events at once
/// while a third handle follows the feed oldest first by position, as
/// `trackrelay events --follow` does: it gets every event once, and each
/// node's in the order that node stored them. A position taken later never
/// becomes visible before one taken earlier (storage/postgres/feed.rs), so
/// following "after the last position seen" skips nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_misses_nothing_while_two_nodes_store_events() {
    const BATCHES: usize = 300;
    const PER_BATCH: usize = 4;
    let db = Db::new(Backend::Postgres);
    let (a, b, follower) = (db.open().await, db.open().await, db.open().await);
    let writing_a = tokio::spawn(node_writes(a, BATCHES, PER_BATCH));
    let writing_b = tokio::spawn(node_writes(b, BATCHES, PER_BATCH));
    let mut filter = FeedFilter {
        include_machine: true,
        ascending: true,
        after: Some(0),
        limit: 50,
        ..FeedFilter::default()
    };
    let mut seen = Vec::new();
    let mut last_round = false;
    loop {
        let done = writing_a.is_finished() && writing_b.is_finished();
        let page = follower.feed(filter.clone()).await.unwrap();
        for item in &page {
            assert!(Some(item.seq) > filter.after, "positions go up");
            filter.after = Some(item.seq);
            seen.push(item.event.id);
        }
        if page.is_empty() && last_round {
            break;
        }
        // One more round once both are done and a page came back empty.
        last_round = done && page.is_empty();
    }
    let (from_a, from_b) = (writing_a.await.unwrap(), writing_b.await.unwrap());
    assert_eq!(seen.len(), 2 * BATCHES * PER_BATCH, "every event once");
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    for stored in [from_a, from_b] {
        let mine: HashSet<_> = stored.iter().collect();
        let order: Vec<_> = seen
            .iter()
            .filter(|id| mine.contains(id))
            .copied()
            .collect();
        assert_eq!(order, stored, "a node's events in the order it stored them");
    }
    assert_eq!(
        follower.feed_end().await.unwrap(),
        filter.after,
        "the end of the feed is the last position followed"
    );
}
