//! Hits and events partitioned by month on PostgreSQL (issue 16, "Built
//! to grow"; docs/scaling.md): the migration keeps every row, the coming
//! months are made ahead, a hit of any time is stored, retention drops the
//! months wholly past its horizon (seen in the catalog) and keeps the
//! rest, and a node writing hits while another drops months loses none.
//! What retention deletes is checked on both backends.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use support::db::{Db, Kind};
use support::rows;
use tokio_postgres::Client;
use trackrelay::retention::{IpHashKey, Pace, Policy, Pruned};
use trackrelay::storage::postgres::schema;
use trackrelay::storage::{Location, Observation, StatsQuery, Storage, Stored};
use trackrelay::token::Kind as HitKind;
use uuid::Uuid;

const DAY_MS: i64 = 86_400_000;
/// 2200-01-01T00:00:00Z.
const YEAR_2200_MS: i64 = 7_258_118_400_000;
/// 1990-01-01T00:00:00Z.
const YEAR_1990_MS: i64 = 631_152_000_000;

fn hit(message_id: Uuid, at_ms: i64) -> Observation {
    Observation {
        id: Uuid::now_v7(),
        message_id,
        kind: HitKind::Open,
        recipient_id: Some("rid-1".into()),
        link: None,
        url: None,
        at_ms,
        method: "GET".into(),
        host: "t.example.com".into(),
        ip: "192.0.2.7".parse().ok(),
        user_agent: Some("Mail".into()),
        headers: vec![("user-agent".into(), "Mail".into())],
        key_id: "k1".into(),
    }
}

/// The event of hit `o` (same id and time, as the pipeline makes it).
fn event_of(o: &Observation) -> trackrelay::storage::Event {
    let copy = rows::copy("default", "a@example.com", o.at_ms);
    trackrelay::storage::Event {
        id: o.id,
        message_id: o.message_id,
        at_ms: o.at_ms,
        ..rows::event(&copy, HitKind::Open, None, o.at_ms, true, "")
    }
}

fn policy(event_days: Option<u64>) -> Policy {
    Policy {
        raw_signals: Duration::from_secs(28 * 86_400),
        events: event_days.map(|d| Duration::from_secs(d * 86_400)),
        interval: Duration::from_secs(3600),
        ip_hash_key: IpHashKey::new(b"a key for the tests, 32 bytes.."),
    }
}

/// One retention pass as of `as_of_ms`, on whichever backend `db` is.
async fn prune(db: &Db, storage: &Storage, policy: &Policy, as_of_ms: i64) -> Pruned {
    match db.location() {
        Location::Sqlite(path) => {
            let policy = policy.clone();
            tokio::task::spawn_blocking(move || {
                let pace = Pace::default();
                trackrelay::retention::prune(&path, &policy, as_of_ms, false, pace, &|| false)
            })
            .await
            .unwrap()
            .unwrap()
        }
        Location::Postgres(_) => {
            let pace = Pace::default();
            trackrelay::retention::postgres::prune(storage, policy, as_of_ms, false, pace, &|| {
                false
            })
            .await
            .unwrap()
            .expect("no other node prunes")
        }
    }
}

async fn store(storage: &Storage, o: &Observation) {
    let stored = storage
        .record_observation(o.clone(), Duration::from_secs(10))
        .await;
    assert_eq!(stored, Stored::Committed, "{o:?}");
}

/// The partitions of `table`, by name.
async fn partitions(client: &Client, table: &str) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1::text::regclass ORDER BY 1",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The name of `table`'s partition for the UTC month of `at_ms`.
fn month_of(table: &str, at_ms: i64) -> String {
    let t = jiff::Timestamp::from_millisecond(at_ms).unwrap();
    let month = t.to_zoned(jiff::tz::TimeZone::UTC).strftime("%Y%m");
    format!("{table}_p{month}")
}

/// The partition each row of `table` is in, by id.
async fn placed(client: &Client, table: &str) -> Vec<(Uuid, String)> {
    // `table` is one of the test's two names.
    let sql = format!("SELECT id, tableoid::regclass::text FROM {table} ORDER BY id");
    let rows = client.query(&sql, &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// The partition each row of `table` is in, by time.
async fn placed_by_time(client: &Client, table: &str) -> Vec<(i64, String)> {
    let sql = format!("SELECT at_ms, tableoid::regclass::text FROM {table} ORDER BY at_ms");
    let rows = client.query(&sql, &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Every row of `table` as JSON text, by id.
async fn snapshot(client: &Client, table: &str) -> Vec<String> {
    let sql = format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY id");
    let rows = client.query(&sql, &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Observation and event rows of a schema before partitioning, at `times`.
async fn seed_unpartitioned(client: &Client, times: &[i64]) -> Vec<(Uuid, i64)> {
    let mut seeded = Vec::new();
    for (i, &at_ms) in times.iter().enumerate() {
        let (id, message) = (Uuid::now_v7(), Uuid::now_v7());
        let link = i32::try_from(i).unwrap();
        client
            .execute(
                "INSERT INTO observations (id, message_id, kind, recipient_id, link, url, at_ms,
                     method, host, ip, user_agent, headers, key_id, ip_hash)
                 VALUES ($1, $2, 'click', 'rid', $3, 'https://example.com/', $4, 'GET',
                     't.example.com', '192.0.2.1', 'UA', '[[\"a\",\"b\"]]', 'k1', NULL)",
                &[&id, &message, &link, &at_ms],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO events (id, message_id, recipient_id, kind, link, url, at_ms,
                     classification, counts, machine, first, bot, device_type, client_type,
                     client_name, route, firsts)
                 VALUES ($1, $2, 'rid', 'click', $3, 'https://example.com/', $4, 'genuine',
                     true, false, true, '{\"classification\":\"genuine\"}', 'desktop',
                     'browser', 'Firefox', 'default', 3)",
                &[&id, &message, &link, &at_ms],
            )
            .await
            .unwrap();
        seeded.push((id, at_ms));
    }
    seeded
}

crate::on_both_backends!(event_days_deletes_exactly_the_older_rows);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_keeps_every_row_and_puts_it_in_its_month() {
    let db = Db::new(Kind::Postgres);
    let mut client = db.cluster().unwrap().client().await;
    schema::migrate_to(&mut client, schema::partitioned_version() - 1)
        .await
        .unwrap();
    let now = trackrelay::time::now_ms();
    let times = [
        now,
        now - 40 * DAY_MS,
        now - 100 * DAY_MS,
        0,
        YEAR_1990_MS,
        -DAY_MS,
        YEAR_2200_MS,
        i64::MAX,
    ];
    let seeded = seed_unpartitioned(&client, &times).await;
    // As an earlier migration may have: an index and a trigger of its own.
    client
        .batch_execute(
            "CREATE INDEX events_kind ON events (kind);
             CREATE TABLE noted (id uuid NOT NULL);
             CREATE FUNCTION note_event() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO noted VALUES (NEW.id); RETURN NEW; END $$;
             CREATE TRIGGER events_noted AFTER INSERT ON events
                 FOR EACH ROW EXECUTE FUNCTION note_event();",
        )
        .await
        .unwrap();
    let before = (
        snapshot(&client, "observations").await,
        snapshot(&client, "events").await,
    );

    schema::migrate(&mut client).await.unwrap();

    let after = (
        snapshot(&client, "observations").await,
        snapshot(&client, "events").await,
    );
    assert_eq!(before.0.len(), times.len());
    assert_eq!(before, after);
    for table in ["observations", "events"] {
        let kind: i8 = client
            .query_one("SELECT relkind FROM pg_class WHERE relname = $1", &[&table])
            .await
            .unwrap()
            .get(0);
        assert_eq!(kind, b'p' as i8, "{table} is partitioned");
        // Months from 1970 to next month have their partition; the rest
        // waits in the default one.
        let mut expected: Vec<(Uuid, String)> = seeded
            .iter()
            .map(|&(id, at)| {
                let in_months = (0..now + 62 * DAY_MS).contains(&at);
                let name = if in_months {
                    month_of(table, at)
                } else {
                    format!("{table}_default")
                };
                (id, name)
            })
            .collect();
        expected.sort();
        assert_eq!(placed(&client, table).await, expected, "{table}");
    }

    let indexes = |table: &'static str| {
        let client = &client;
        async move {
            let rows = client
                .query(
                    "SELECT indexname::text FROM pg_indexes WHERE tablename = $1 ORDER BY 1",
                    &[&table],
                )
                .await
                .unwrap();
            rows.iter().map(|r| r.get(0)).collect::<Vec<String>>()
        }
    };
    assert_eq!(
        indexes("observations").await,
        [
            "observations_at",
            "observations_message",
            "observations_pkey"
        ]
    );
    assert_eq!(
        indexes("events").await,
        [
            "events_at",
            "events_kind",
            "events_message",
            "events_pkey",
            "events_route_at"
        ]
    );

    // A migrated hit judged again (by a node of the new version) is still
    // stored once: its key is (id, at_ms).
    let storage = db.open().await;
    let (id, at_ms) = seeded[1];
    let again = trackrelay::storage::Event {
        id,
        at_ms,
        ..event_of(&hit(Uuid::now_v7(), at_ms))
    };
    storage.record_events(vec![again]).await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM events WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // The trigger came along: silent for the copied rows and the
    // conflict, it notes a new event.
    let noted = async || -> i64 {
        let row = client.query_one("SELECT count(*) FROM noted", &[]);
        row.await.unwrap().get(0)
    };
    assert_eq!(noted().await, 0);
    storage
        .record_events(vec![event_of(&hit(Uuid::now_v7(), now))])
        .await
        .unwrap();
    assert_eq!(noted().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn months_are_made_ahead_and_a_hit_of_any_time_is_stored() {
    let db = Db::new(Kind::Postgres);
    let storage = db.open().await;
    let client = db.cluster().unwrap().client().await;
    let now = trackrelay::time::now_ms();
    let next_month = now + 31 * DAY_MS;
    for table in ["observations", "events"] {
        let found = partitions(&client, table).await;
        for name in [
            month_of(table, now),
            month_of(table, next_month),
            format!("{table}_default"),
        ] {
            assert!(found.contains(&name), "{name} in {found:?}");
        }
    }

    let message = Uuid::now_v7();
    let times = [i64::MIN, -1, 0, YEAR_1990_MS, now, YEAR_2200_MS, i64::MAX];
    let hits: Vec<Observation> = times.iter().map(|&t| hit(message, t)).collect();
    for h in &hits {
        store(&storage, h).await;
    }
    storage
        .record_events(hits.iter().map(event_of).collect())
        .await
        .unwrap();
    let mut stored: Vec<i64> = storage
        .observations(message)
        .await
        .unwrap()
        .iter()
        .map(|o| o.at_ms)
        .collect();
    stored.sort();
    assert_eq!(stored, times);
    assert_eq!(storage.events(message).await.unwrap().len(), times.len());

    // A pass with nothing to delete moves the stray months out of the
    // default partition; times no month can hold stay there.
    let pruned = prune(&db, &storage, &policy(None), now).await;
    assert!(pruned.deleted.is_empty(), "{pruned:?}");
    for table in ["observations", "events"] {
        let default = format!("{table}_default");
        let expected: Vec<(i64, String)> = times
            .iter()
            .map(|&t| {
                let in_a_month = t == 0 || t == YEAR_1990_MS || t == now;
                (
                    t,
                    if in_a_month {
                        month_of(table, t)
                    } else {
                        default.clone()
                    },
                )
            })
            .collect();
        let found = placed_by_time(&client, table).await;
        assert_eq!(found, expected, "{table}");
    }
    assert_eq!(
        storage.observations(message).await.unwrap().len(),
        times.len()
    );
}

/// Hits and events from 200 days ago to now, on copies not stored here,
/// plus a copy relayed 120 days ago with a hit of 5 days ago (deleted
/// with its copy) and one relayed 10 days ago (kept): `event_days = 90`
/// deletes exactly what is older. On PostgreSQL the months wholly before
/// the horizon are gone from the catalog; the horizon's month, the later
/// ones and the default partition stay.
async fn event_days_deletes_exactly_the_older_rows(db: Db) {
    let storage = db.open().await;
    let now = trackrelay::time::now_ms();
    let ages = [200, 150, 120, 100, 95, 89, 60, 10, 0];
    let mut loose = Vec::new();
    for days in ages {
        let h = hit(Uuid::now_v7(), now - days * DAY_MS);
        store(&storage, &h).await;
        storage.record_events(vec![event_of(&h)]).await.unwrap();
        loose.push((days, h.message_id));
    }
    let old_copy = rows::copy("default", "old@example.com", now - 120 * DAY_MS);
    let new_copy = rows::copy("default", "new@example.com", now - 10 * DAY_MS);
    for c in [&old_copy, &new_copy] {
        storage.record_relayed(c.clone()).await.unwrap();
        let h = hit(c.id, now - 5 * DAY_MS);
        store(&storage, &h).await;
        storage.record_events(vec![event_of(&h)]).await.unwrap();
    }
    // A copy relayed now with hits dated long ago, counted in those hours:
    // a month dropped whole takes them out of the statistics, as deleting
    // them does.
    let live = rows::copy("default", "live@example.com", now);
    storage.record_relayed(live.clone()).await.unwrap();
    for days in [200, 150, 10] {
        let h = hit(live.id, now - days * DAY_MS);
        store(&storage, &h).await;
        storage.record_events(vec![event_of(&h)]).await.unwrap();
    }
    assert!(storage.flush(Duration::from_secs(10)).await);
    let whole = StatsQuery {
        route: "default".into(),
        from_ms: now - 400 * DAY_MS,
        to_ms: now + DAY_MS,
        bucket_ms: DAY_MS,
        include_machine: false,
    };
    let counted = async || {
        let totals = storage.route_stats(whole.clone()).await.unwrap().1;
        (totals.relayed, totals.opens)
    };
    assert_eq!(counted().await, (3, 5));
    let pg = match db.cluster() {
        Some(cluster) => Some(cluster.client().await),
        None => None,
    };
    if let Some(client) = &pg {
        // The months of the old hits exist once a pass has tidied up (a
        // node running back then would have made them).
        prune(&db, &storage, &policy(None), now).await;
        let found = partitions(client, "observations").await;
        for days in ages {
            let name = month_of("observations", now - days * DAY_MS);
            assert!(found.contains(&name), "{name} in {found:?}");
        }
    }

    let pruned = prune(&db, &storage, &policy(Some(90)), now).await;

    let old = ages.iter().filter(|&&d| d > 90).count() as u64;
    assert_eq!(pruned.deleted.copies, 1, "{pruned:?}");
    assert_eq!(pruned.deleted.observations, old + 3, "{pruned:?}");
    assert_eq!(pruned.deleted.events, old + 3, "{pruned:?}");
    assert_eq!(counted().await, (2, 2));
    assert_eq!(storage.events(live.id).await.unwrap().len(), 1);
    for (days, message) in loose {
        let kept = usize::from(days <= 90);
        assert_eq!(storage.observations(message).await.unwrap().len(), kept);
        assert_eq!(storage.events(message).await.unwrap().len(), kept);
    }
    assert_eq!(storage.message(old_copy.id).await.unwrap(), None);
    assert!(storage.observations(old_copy.id).await.unwrap().is_empty());
    assert_eq!(storage.observations(new_copy.id).await.unwrap().len(), 1);
    assert_eq!(storage.events(new_copy.id).await.unwrap().len(), 1);

    if let Some(client) = &pg {
        let horizon = now - 90 * DAY_MS;
        for table in ["observations", "events"] {
            let found = partitions(client, table).await;
            for days in [200, 150, 120] {
                let name = month_of(table, now - days * DAY_MS);
                let expired = month_of(table, horizon) != name;
                assert_eq!(!found.contains(&name), expired, "{name} in {found:?}");
            }
            for days in [89, 60, 10, 0] {
                let name = month_of(table, now - days * DAY_MS);
                assert!(found.contains(&name), "{name} in {found:?}");
            }
            assert!(found.contains(&month_of(table, horizon)), "{found:?}");
            assert!(found.contains(&format!("{table}_default")), "{found:?}");
        }
    }
}

/// Returns once `written` has moved: the writers are at work (a bounded
/// wait, nothing asserted about how long it took).
async fn writers_running(written: &AtomicU64) {
    let before = written.load(Ordering::Relaxed);
    for _ in 0..2000 {
        if written.load(Ordering::Relaxed) > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the writers stopped");
}

/// Node A writes hits of now without a pause while node B, round after
/// round, makes months long past (hits 400 to 340 days old, then a pass
/// that partitions them) and drops them (a pass with `event_days = 300`).
/// Every one of A's hits is committed and stored; each round's old hits
/// are deleted, their months gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_written_while_another_node_drops_months_are_all_stored() {
    let db = Db::new(Kind::Postgres);
    let (a, b) = (db.open().await, db.open().await);
    let client = db.cluster().unwrap().client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let message = Uuid::now_v7();
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (a, stop, written) = (a.clone(), stop.clone(), written.clone());
        writers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let h = hit(message, trackrelay::time::now_ms());
                let stored = a.record_observation(h, Duration::from_secs(30)).await;
                assert_eq!(stored, Stored::Committed);
                written.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    for _ in 0..4 {
        let now = trackrelay::time::now_ms();
        let old: Vec<i64> = [400, 370, 340].iter().map(|d| now - d * DAY_MS).collect();
        for &at in &old {
            store(&b, &hit(Uuid::now_v7(), at)).await;
        }
        prune(&db, &b, &policy(None), now).await;
        let found = partitions(&client, "observations").await;
        assert!(
            old.iter()
                .all(|&at| found.contains(&month_of("observations", at)))
        );

        writers_running(&written).await;
        let pruned = prune(&db, &b, &policy(Some(300)), now).await;
        assert_eq!(pruned.deleted.observations, 3, "{pruned:?}");
        let found = partitions(&client, "observations").await;
        assert!(
            old.iter()
                .all(|&at| !found.contains(&month_of("observations", at))),
            "{found:?}"
        );
    }

    stop.store(true, Ordering::Relaxed);
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let stored = a.observations(message).await.unwrap().len() as u64;
    assert_eq!(stored, written.load(Ordering::Relaxed));
}

/// A month that cannot be dropped at once (a reader holds it) has its rows
/// deleted row by row instead, counted the same; the emptied table is
/// dropped by the next pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_month_is_emptied_row_by_row_and_dropped_later() {
    let db = Db::new(Kind::Postgres);
    let storage = db.open().await;
    let mut client = db.cluster().unwrap().client().await;
    let now = trackrelay::time::now_ms();
    let at = now - 400 * DAY_MS;
    for _ in 0..2 {
        store(&storage, &hit(Uuid::now_v7(), at)).await;
    }
    prune(&db, &storage, &policy(None), now).await;
    let month = month_of("observations", at);
    assert!(partitions(&client, "observations").await.contains(&month));

    let reader = client.transaction().await.unwrap();
    let sql = format!("SELECT count(*) FROM {month}");
    let held: i64 = reader.query_one(&sql, &[]).await.unwrap().get(0);
    assert_eq!(held, 2);
    let pruned = prune(&db, &storage, &policy(Some(300)), now).await;
    assert_eq!(pruned.deleted.observations, 2, "{pruned:?}");
    reader.commit().await.unwrap();
    assert!(partitions(&client, "observations").await.contains(&month));
    assert_eq!(storage.observation_count().await.unwrap(), 0);

    let pruned = prune(&db, &storage, &policy(Some(300)), now).await;
    assert!(pruned.deleted.is_empty(), "{pruned:?}");
    assert!(!partitions(&client, "observations").await.contains(&month));
}

/// `trackrelay migrate-storage` from a SQLite file with hits and events of
/// past months: on PostgreSQL each is in its month's partition, not left
/// in the default one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_moved_over_from_sqlite_are_put_in_their_months() {
    let sqlite = Db::new(Kind::Sqlite);
    let now = trackrelay::time::now_ms();
    let times = [now - 100 * DAY_MS, now - 40 * DAY_MS, now];
    {
        let storage = sqlite.open().await;
        for &at in &times {
            let h = hit(Uuid::now_v7(), at);
            store(&storage, &h).await;
            storage.record_events(vec![event_of(&h)]).await.unwrap();
        }
        assert!(storage.flush(Duration::from_secs(10)).await);
    }
    let Location::Sqlite(path) = sqlite.location() else {
        unreachable!("a SQLite database")
    };
    let target = Db::new(Kind::Postgres);
    let cluster = target.cluster().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .arg("migrate-storage")
        .arg("--from")
        .arg(format!("sqlite:{}", path.display()))
        .arg("--to")
        .arg(cluster.url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let client = cluster.client().await;
    for table in ["observations", "events"] {
        let found = placed_by_time(&client, table).await;
        let expected: Vec<(i64, String)> = times.iter().map(|&t| (t, month_of(table, t))).collect();
        assert_eq!(found, expected, "{table}");
    }
}
