//! The route statistics' rollups and denormalised event columns (issue
//! 7): copies and events stored through the real writer, retention run
//! through the backend's own pass, and every figure `Storage::route_stats`
//! and `route_links` answer compared with a straightforward recount of
//! the rows (events joined to their copies, uniques by order of storing;
//! support/stored.rs). The same for the tag and message-as-sent rollups
//! (issue 17): `Storage::group_stats` and `group_links` against the same
//! recount over the copies carrying the tag or the Message-ID. On both
//! backends (PostgreSQL's rollups are summed per writer batch, issue 16),
//! and two writers on one PostgreSQL adding to the same rows at once.

mod support;

use support::db::{Db, Kind as Backend};
use support::stored::{self, Recount, Stored};
use trackrelay::storage::retention::{Maintenance, Removed};
use trackrelay::storage::{
    Counts, Event, Group, GroupQuery, LinkClicks, RelayedCopy, StatsQuery, Storage,
};
use trackrelay::token::Kind;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Tags a copy may carry (some twice), and the Message-IDs of its sends.
const TAGS: [&[&str]; 4] = [&[], &["spring"], &["spring", "all"], &["all", "all"]];
const SENDS: [Option<&str>; 4] = [
    None,
    Some("<send-1@example.com>"),
    Some("send-2@example.com"),
    Some(" <send-3@example.com> "),
];

fn copy(route: &str, user: u64, at_ms: i64, failed: bool) -> RelayedCopy {
    RelayedCopy {
        tags: TAGS[(user % 4) as usize]
            .iter()
            .map(|t| t.to_string())
            .collect(),
        message_id_header: SENDS[((user / 4 + at_ms as u64) % 4) as usize].map(str::to_owned),
        recipient_id: Some(format!("rid-{user}")),
        links: (0..3).map(|i| format!("https://example.com/{i}")).collect(),
        status: if failed {
            trackrelay::storage::CopyStatus::Failed
        } else {
            trackrelay::storage::CopyStatus::Relayed
        },
        ..support::rows::copy(route, &format!("user{user}@example.org"), at_ms)
    }
}

fn event(c: &RelayedCopy, link: Option<u16>, at_ms: i64, human: bool) -> Event {
    let kind = if link.is_some() {
        Kind::Click
    } else {
        Kind::Open
    };
    support::rows::event(c, kind, link, at_ms, human, "image_proxy")
}

/// Two routes over three days; a few users get several copies; one copy's
/// events are stored before the copy itself.
async fn fill(storage: &Storage) -> Vec<RelayedCopy> {
    let mut rng = Rng(42);
    let mut copies = Vec::new();
    for i in 0..120u64 {
        let route = if i % 4 == 0 { "small" } else { "big" };
        let at = T0 + rng.below(3 * DAY as u64) as i64;
        copies.push(copy(route, rng.below(40), at, i % 17 == 0));
    }
    let late = copies.pop().unwrap();
    for c in &copies {
        storage.record_relayed(c.clone()).await.unwrap();
    }
    let mut events = Vec::new();
    for c in copies.iter().chain([&late]) {
        for _ in 0..rng.below(6) {
            let link = match rng.below(3) {
                0 => Some(rng.below(3) as u16),
                _ => None,
            };
            let at = c.relayed_at_ms + rng.below(2 * DAY as u64) as i64;
            events.push(event(c, link, at, rng.below(4) != 0));
        }
    }
    storage.record_events(events).await.unwrap();
    storage.record_relayed(late.clone()).await.unwrap();
    copies.push(late);
    copies
}

/// The recount of `q` over the rows stored now.
fn recount_route(stored: &Stored, q: &StatsQuery) -> (Vec<(i64, Counts)>, Counts, Vec<LinkClicks>) {
    let of_route = |c: &stored::Copy| c.route == q.route;
    recount(
        stored,
        &of_route,
        (q.from_ms, q.to_ms, q.bucket_ms, q.include_machine),
    )
}

/// The recount of a group query: the copies carrying the tag (of the
/// route, if given), or those of the message as sent.
fn recount_group(stored: &Stored, q: &GroupQuery) -> (Vec<(i64, Counts)>, Counts, Vec<LinkClicks>) {
    let in_group = |c: &stored::Copy| {
        q.route.as_ref().is_none_or(|r| *r == c.route)
            && match q.group {
                Group::Tag => c.tags.contains(&q.key),
                Group::Message => c
                    .message_id_header
                    .as_deref()
                    .is_some_and(|h| stored::bare(h) == stored::bare(&q.key)),
            }
    };
    recount(
        stored,
        &in_group,
        (q.from_ms, q.to_ms, q.bucket_ms, q.include_machine),
    )
}

/// Buckets, totals and links of `copies` over `(from, to, bucket,
/// include_machine)`.
fn recount(
    stored: &Stored,
    copies: &dyn Fn(&stored::Copy) -> bool,
    (from_ms, to_ms, bucket_ms, include_machine): (i64, i64, i64, bool),
) -> (Vec<(i64, Counts)>, Counts, Vec<LinkClicks>) {
    let r = Recount {
        copies,
        from_ms,
        to_ms,
        bucket_ms,
        include_machine,
    };
    let (buckets, totals) = stored.counts(&r);
    (buckets, totals, stored.links(&r))
}

/// Every route, bucket length, machine setting and a few ranges (on
/// whole hours and not): the answers equal the recount. Returns how many
/// events were counted, so callers know the data was not empty.
async fn check_all(storage: &Storage, db: &Db) -> u64 {
    let stored = stored::load(db).await;
    let mut counted = 0;
    let ranges = [
        (T0 - DAY, T0 + 10 * DAY),
        (T0 + 7 * HOUR + 1_234, T0 + 2 * DAY + 59 * 60_000),
        (T0 + 30 * 60_000, T0 + 50 * 60_000),
    ];
    for route in ["big", "small"] {
        for (from_ms, to_ms) in ranges {
            for bucket_ms in [HOUR, DAY] {
                for include_machine in [false, true] {
                    let q = StatsQuery {
                        route: route.into(),
                        from_ms,
                        to_ms,
                        bucket_ms,
                        include_machine,
                    };
                    let got = storage.route_stats(q.clone()).await.unwrap();
                    let (buckets, totals, links) = recount_route(&stored, &q);
                    assert_eq!(got, (buckets, totals), "{q:?}");
                    counted += got.1.opens + got.1.clicks;
                    let got = storage.route_links(q.clone()).await.unwrap();
                    assert_eq!(got, links, "{q:?}");
                }
            }
        }
    }
    let in_groups = check_groups(storage, &stored).await;
    assert!(in_groups > 0, "the tags and sends have events");
    counted + in_groups
}

/// Every tag (across routes and within each), every Message-ID (with and
/// without its brackets), with the same ranges and settings: the group
/// figures equal the recount. Returns how many events were counted.
async fn check_groups(storage: &Storage, stored: &Stored) -> u64 {
    let mut groups: Vec<(Group, &str, Option<&str>)> = Vec::new();
    for tag in ["spring", "all", "none"] {
        for route in [None, Some("big"), Some("small")] {
            groups.push((Group::Tag, tag, route));
        }
    }
    for send in [
        "send-1@example.com",
        "<send-2@example.com>",
        "send-3@example.com",
    ] {
        groups.push((Group::Message, send, None));
    }
    let mut counted = 0;
    for (group, key, route) in groups {
        for (from_ms, to_ms) in [
            (T0 - DAY, T0 + 10 * DAY),
            (T0 + 7 * HOUR + 1_234, T0 + 2 * DAY),
        ] {
            for (bucket_ms, include_machine) in [(HOUR, false), (DAY, true), (DAY, false)] {
                let q = GroupQuery {
                    group,
                    key: key.into(),
                    route: route.map(str::to_owned),
                    from_ms,
                    to_ms,
                    bucket_ms,
                    include_machine,
                };
                let got = storage.group_stats(q.clone()).await.unwrap();
                let (buckets, totals, links) = recount_group(stored, &q);
                assert_eq!(got, (buckets, totals), "{q:?}");
                counted += got.1.opens + got.1.clicks;
                let got = storage.group_links(q.clone()).await.unwrap();
                assert_eq!(got, links, "{q:?}");
            }
        }
    }
    counted
}

crate::on_both_backends!(rollups_equal_a_recount_through_writes_forget_and_prune);

/// Forgets `address` (recipient id `rid`) on either backend.
async fn forget(db: &Db, storage: &Storage, address: &str, rid: &str) -> Removed {
    let rids = [rid.to_owned()];
    match db.kind {
        Backend::Sqlite => Maintenance::open(&db.dir.path().join("t.db"))
            .unwrap()
            .forget(address, &rids)
            .unwrap(),
        Backend::Postgres => {
            let pass = storage.postgres().unwrap().retention_pass().await.unwrap();
            let mut pass = pass.expect("no other pass running");
            let removed = pass.forget(address, &rids).await.unwrap();
            pass.finish().await.unwrap();
            removed
        }
    }
}

/// Deletes what is older than `before_ms` on either backend.
async fn prune(db: &Db, storage: &Storage, before_ms: i64) {
    match db.kind {
        Backend::Sqlite => {
            let mut maintenance = Maintenance::open(&db.dir.path().join("t.db")).unwrap();
            while !maintenance.delete_before(before_ms, 25).unwrap().is_empty() {}
        }
        Backend::Postgres => {
            let pass = storage.postgres().unwrap().retention_pass().await.unwrap();
            let mut pass = pass.expect("no other pass running");
            assert!(!pass.delete_before(before_ms).await.unwrap().is_empty());
            pass.finish().await.unwrap();
        }
    }
}

async fn rollups_equal_a_recount_through_writes_forget_and_prune(db: Db) {
    let storage = db.open().await;
    let copies = fill(&storage).await;
    assert!(check_all(&storage, &db).await > 100);

    // The copy stored after its events has them counted on its route.
    let late = copies.last().unwrap();
    let stored = stored::load(&db).await;
    assert!(stored.events.iter().any(|e| e.message_id == late.id));
    let whole = |route: &str| StatsQuery {
        route: route.to_owned(),
        from_ms: T0 - DAY,
        to_ms: T0 + 10 * DAY,
        bucket_ms: DAY,
        include_machine: true,
    };
    let late_only = |c: &stored::Copy| c.id == late.id;
    let (_, late_counts) = stored.counts(&Recount {
        copies: &late_only,
        from_ms: T0 - DAY,
        to_ms: T0 + 10 * DAY,
        bucket_ms: DAY,
        include_machine: true,
    });
    assert!(late_counts.opens + late_counts.clicks > 0);

    // Forgetting a recipient takes their counts out of the rollups.
    let user = &copies[1];
    let before = storage.route_stats(whole(&user.route)).await.unwrap().1;
    let theirs = stored
        .events
        .iter()
        .filter(|e| e.recipient_id == user.recipient_id)
        .filter(|e| {
            stored
                .copy(e.message_id)
                .is_some_and(|c| c.route == user.route)
        })
        .count() as u64;
    assert!(theirs > 0, "the forgotten user has events on the route");
    let removed = forget(
        &db,
        &storage,
        &user.recipients[0],
        user.recipient_id.as_ref().unwrap(),
    )
    .await;
    assert!(removed.events > 0 && removed.copies > 0, "{removed:?}");
    let after = storage.route_stats(whole(&user.route)).await.unwrap().1;
    assert_eq!(
        after.opens + after.clicks,
        before.opens + before.clicks - theirs
    );
    check_all(&storage, &db).await;

    // A copy Ann shares with Bob stays when she is forgotten; her events
    // on it go, and their counts with them.
    let shared = RelayedCopy {
        recipients: vec!["ann@example.org".into(), "bob@example.org".into()],
        ..copy("big", 900, T0 + 40 * HOUR, false)
    };
    storage.record_relayed(shared.clone()).await.unwrap();
    let hers = |link, minutes: i64| Event {
        recipient_id: Some("rid-ann".into()),
        ..event(&shared, link, T0 + 41 * HOUR + minutes * 60_000, true)
    };
    let his = event(&shared, Some(1), T0 + 42 * HOUR, true);
    storage
        .record_events(vec![hers(None, 1), hers(Some(0), 2), his])
        .await
        .unwrap();
    check_all(&storage, &db).await;
    let removed = forget(&db, &storage, "ann@example.org", "rid-ann").await;
    assert_eq!(
        (removed.events, removed.copies_edited),
        (2, 1),
        "{removed:?}"
    );
    check_all(&storage, &db).await;

    // Pruning the first day and a half: copies, events and their counts go.
    prune(&db, &storage, T0 + 36 * HOUR).await;
    for route in ["big", "small"] {
        let q = StatsQuery {
            to_ms: T0 + 36 * HOUR,
            ..whole(route)
        };
        let left = storage.route_stats(q).await.unwrap().1;
        assert_eq!(
            left,
            Counts::default(),
            "no count left before the pruning time"
        );
    }
    check_all(&storage, &db).await;
}

/// Two nodes (two `Storage` handles, each with its own writer) on one
/// PostgreSQL store events on the same copies, so the same route, tag,
/// message and hour, at once and in many small batches: every batch adds
/// its sums to the same rollup rows, and the totals are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_add_to_the_same_rollup_rows_exactly() {
    let db = Db::new(Backend::Postgres);
    let (a, b) = (db.open().await, db.open().await);
    let hour = T0 + 5 * HOUR;
    let copies: Vec<RelayedCopy> = (0..20)
        .map(|i| {
            let mut c = copy("hot", i, hour + 60_000, false);
            c.tags = vec!["spring".into()];
            c.message_id_header = Some("<hot-send@example.com>".into());
            c
        })
        .collect();
    for (i, c) in copies.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        node.record_relayed(c.clone()).await.unwrap();
    }
    // Each node stores 40 batches of 10 events, every event in the hour.
    let write = |node: Storage, seed: u64| {
        let copies = copies.clone();
        async move {
            let mut rng = Rng(seed);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..40 {
                let events: Vec<Event> = (0..10)
                    .map(|_| {
                        let c = &copies[rng.below(20) as usize];
                        let link = (rng.below(2) == 0).then(|| rng.below(3) as u16);
                        let at = hour + 120_000 + rng.below(HOUR as u64 - 180_000) as i64;
                        event(c, link, at, rng.below(3) != 0)
                    })
                    .collect();
                let node = node.clone();
                tasks.spawn(async move { node.record_events(events).await.unwrap() });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        }
    };
    tokio::join!(write(a.clone(), 1), write(b.clone(), 2));

    let stored = stored::load(&db).await;
    assert_eq!(stored.events.len(), 800);
    // Whole hours come from the rollups; the recount needs no order for
    // these totals (uniques are distinct copies and recipients).
    let q = StatsQuery {
        route: "hot".into(),
        from_ms: T0,
        to_ms: T0 + DAY,
        bucket_ms: HOUR,
        include_machine: false,
    };
    let count = |kind: &str, counting: bool, unique: bool| {
        let mut seen = std::collections::HashSet::new();
        stored
            .events
            .iter()
            .filter(|e| e.kind == kind && (e.counts || !counting))
            .filter(|e| !unique || seen.insert((e.message_id, e.recipient_id.clone())))
            .count() as u64
    };
    for include_machine in [false, true] {
        let want = Counts {
            relayed: 20,
            opens: count("open", !include_machine, false),
            unique_opens: count("open", !include_machine, true),
            clicks: count("click", !include_machine, false),
            unique_clicks: count("click", !include_machine, true),
        };
        let q = StatsQuery {
            include_machine,
            ..q.clone()
        };
        for node in [&a, &b] {
            let (buckets, totals) = node.route_stats(q.clone()).await.unwrap();
            assert_eq!(totals, want, "{q:?}");
            assert_eq!(buckets, [(hour, want)]);
            for group in [Group::Tag, Group::Message] {
                let key = match group {
                    Group::Tag => "spring",
                    Group::Message => "hot-send@example.com",
                };
                let g = GroupQuery {
                    group,
                    key: key.into(),
                    route: None,
                    from_ms: q.from_ms,
                    to_ms: q.to_ms,
                    bucket_ms: DAY,
                    include_machine,
                };
                assert_eq!(node.group_stats(g).await.unwrap().1, want);
            }
        }
        // The same from the rows alone (a range not on whole hours).
        let odd = StatsQuery {
            from_ms: hour + 1,
            ..q.clone()
        };
        assert_eq!(a.route_stats(odd).await.unwrap().1.clicks, want.clicks);
        let links = a.route_links(q.clone()).await.unwrap();
        assert_eq!(links.iter().map(|l| l.clicks).sum::<u64>(), want.clicks);
    }
}
