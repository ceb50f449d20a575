//! The route statistics' rollups and denormalised event columns (issue
//! 7): copies and events stored through the real writer, retention run
//! through `Maintenance`, and every figure `Storage::route_stats` and
//! `route_links` answer compared with a straightforward recount of the
//! rows (events joined to their copies, uniques by order of storing).
//! The same for the tag and message-as-sent rollups (issue 17):
//! `Storage::group_stats` and `group_links` against the same recount over
//! the copies carrying the tag or the Message-ID.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, params};
use trackrelay::storage::retention::Maintenance;
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

/// A count column as `u64`.
fn n(r: &rusqlite::Row<'_>, i: usize) -> u64 {
    r.get::<_, i64>(i).unwrap().unsigned_abs()
}

const RECOUNT: &str = "
    WITH e AS (
        SELECT e.kind, e.url, e.at_ms, e.counts, m.route, m.tags, m.message_id_header,
            e.counts = 1 AND row_number() OVER (PARTITION BY e.message_id, e.recipient_id,
                e.kind, e.counts ORDER BY e.rowid) = 1 AS first_counting,
            row_number() OVER (PARTITION BY e.message_id, e.recipient_id, e.kind
                ORDER BY e.rowid) = 1 AS first_any,
            e.counts = 1 AND row_number() OVER (PARTITION BY e.message_id, e.recipient_id,
                e.kind, e.url, e.counts ORDER BY e.rowid) = 1 AS url_first_counting,
            row_number() OVER (PARTITION BY e.message_id, e.recipient_id, e.kind, e.url
                ORDER BY e.rowid) = 1 AS url_first_any
        FROM events e JOIN messages m ON m.id = e.message_id)";

/// Which copies a recount counts: a condition on a copy's `route`,
/// `tags` and `message_id_header` columns with `?6` (route) and `?7`
/// (tag or Message-ID) bound, and the query's times.
struct Recount<'a> {
    copies: &'static str,
    route: Option<&'a str>,
    key: Option<&'a str>,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    include_machine: bool,
}

const OF_ROUTE: &str = "route = ?6 AND ?7 IS NULL";
const OF_TAG: &str = "(?6 IS NULL OR route = ?6)
    AND ?7 IN (SELECT value FROM json_each(tags))";
const OF_MESSAGE: &str = "ltrim(rtrim(message_id_header, ' >'), ' <') = ?7 AND ?6 IS NULL";

impl<'a> From<&'a StatsQuery> for Recount<'a> {
    fn from(q: &'a StatsQuery) -> Recount<'a> {
        Recount {
            copies: OF_ROUTE,
            route: Some(&q.route),
            key: None,
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            bucket_ms: q.bucket_ms,
            include_machine: q.include_machine,
        }
    }
}

impl<'a> From<&'a GroupQuery> for Recount<'a> {
    fn from(q: &'a GroupQuery) -> Recount<'a> {
        Recount {
            copies: match q.group {
                Group::Tag => OF_TAG,
                Group::Message => OF_MESSAGE,
            },
            route: q.route.as_deref(),
            // The Message-ID compares without its brackets.
            key: Some(q.key.trim_matches([' ', '<', '>'])),
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            bucket_ms: q.bucket_ms,
            include_machine: q.include_machine,
        }
    }
}

/// The figures recounted from the rows, as `route_stats` (or
/// `group_stats`) should answer.
fn recount(conn: &Connection, q: &Recount<'_>) -> (Vec<(i64, Counts)>, Counts) {
    let mut buckets: BTreeMap<i64, Counts> = BTreeMap::new();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT (relayed_at_ms / ?4) * ?4, count(*) FROM messages
             WHERE relayed_at_ms >= ?2 AND relayed_at_ms < ?3
               AND status != 'failed' AND ?1 = ?1 AND ?5 = ?5 AND {} GROUP BY 1",
            q.copies
        ))
        .unwrap();
    let mut rows = stmt
        .query(params![
            0,
            q.from_ms,
            q.to_ms,
            q.bucket_ms,
            q.include_machine,
            q.route,
            q.key
        ])
        .unwrap();
    while let Some(r) = rows.next().unwrap() {
        buckets.entry(r.get(0).unwrap()).or_default().relayed = n(r, 1);
    }
    let sql = format!(
        "{RECOUNT}
        SELECT (at_ms / ?4) * ?4,
            sum(kind = 'open' AND (?5 OR counts = 1)),
            sum(kind = 'open' AND CASE WHEN ?5 THEN first_any ELSE first_counting END),
            sum(kind = 'click' AND (?5 OR counts = 1)),
            sum(kind = 'click' AND CASE WHEN ?5 THEN first_any ELSE first_counting END)
        FROM e WHERE ?1 = ?1 AND at_ms >= ?2 AND at_ms < ?3 AND (?5 OR counts = 1)
          AND {}
        GROUP BY 1",
        q.copies
    );
    let mut stmt = conn.prepare(&sql).unwrap();
    let mut rows = stmt
        .query(params![
            0,
            q.from_ms,
            q.to_ms,
            q.bucket_ms,
            q.include_machine,
            q.route,
            q.key
        ])
        .unwrap();
    while let Some(r) = rows.next().unwrap() {
        let b = buckets.entry(r.get(0).unwrap()).or_default();
        b.opens = n(r, 1);
        b.unique_opens = n(r, 2);
        b.clicks = n(r, 3);
        b.unique_clicks = n(r, 4);
    }
    buckets.retain(|_, c| *c != Counts::default());
    let mut totals = Counts::default();
    for c in buckets.values() {
        totals.relayed += c.relayed;
        totals.opens += c.opens;
        totals.unique_opens += c.unique_opens;
        totals.clicks += c.clicks;
        totals.unique_clicks += c.unique_clicks;
    }
    (buckets.into_iter().collect(), totals)
}

fn recount_links(conn: &Connection, q: &Recount<'_>) -> Vec<LinkClicks> {
    let sql = format!(
        "{RECOUNT}
        SELECT url, count(*),
            sum(CASE WHEN ?4 THEN url_first_any ELSE url_first_counting END)
        FROM e WHERE ?1 = ?1 AND at_ms >= ?2 AND at_ms < ?3 AND (?4 OR counts = 1)
          AND kind = 'click' AND url IS NOT NULL AND ?5 = ?5 AND {}
        GROUP BY url ORDER BY count(*) DESC, url",
        q.copies
    );
    let mut stmt = conn.prepare(&sql).unwrap();
    stmt.query_map(
        params![0, q.from_ms, q.to_ms, q.include_machine, 0, q.route, q.key],
        |r| {
            Ok(LinkClicks {
                url: r.get(0)?,
                clicks: r.get::<_, i64>(1)?.unsigned_abs(),
                unique_clicks: r.get::<_, i64>(2)?.unsigned_abs(),
            })
        },
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Every route, bucket length, machine setting and a few ranges (on
/// whole hours and not): the answers equal the recount. Returns how many
/// events were counted, so callers know the data was not empty.
async fn check_all(storage: &Storage, path: &Path) -> u64 {
    let conn = Connection::open(path).unwrap();
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
                    assert_eq!(got, recount(&conn, &(&q).into()), "{q:?}");
                    counted += got.1.opens + got.1.clicks;
                    let links = storage.route_links(q.clone()).await.unwrap();
                    assert_eq!(links, recount_links(&conn, &(&q).into()), "{q:?}");
                }
            }
        }
    }
    let in_groups = check_groups(storage, &conn).await;
    assert!(in_groups > 0, "the tags and sends have events");
    counted + in_groups
}

/// Every tag (across routes and within each), every Message-ID (with and
/// without its brackets), with the same ranges and settings: the group
/// figures equal the recount. Returns how many events were counted.
async fn check_groups(storage: &Storage, conn: &Connection) -> u64 {
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
                assert_eq!(got, recount(conn, &(&q).into()), "{q:?}");
                counted += got.1.opens + got.1.clicks;
                let links = storage.group_links(q.clone()).await.unwrap();
                assert_eq!(links, recount_links(conn, &(&q).into()), "{q:?}");
            }
        }
    }
    counted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_a_recount_through_writes_forget_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let storage = Storage::open(&path).unwrap();
    let copies = fill(&storage).await;
    assert!(check_all(&storage, &path).await > 100);

    // The copy stored after its events has them counted on its route.
    let late = copies.last().unwrap();
    let conn = Connection::open(&path).unwrap();
    let (with_route, all): (i64, i64) = conn
        .query_row(
            "SELECT count(route), count(*) FROM events WHERE message_id = ?1",
            [late.id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(with_route, all);

    // Forgetting a recipient takes their counts out of the rollups.
    let user = &copies[1];
    let whole = StatsQuery {
        route: user.route.clone(),
        from_ms: T0 - DAY,
        to_ms: T0 + 10 * DAY,
        bucket_ms: DAY,
        include_machine: true,
    };
    let before = storage.route_stats(whole.clone()).await.unwrap().1;
    let theirs: i64 = conn
        .query_row(
            "SELECT count(*) FROM events e JOIN messages m ON m.id = e.message_id
             WHERE e.recipient_id = ?1 AND m.route = ?2",
            params![user.recipient_id, user.route],
            |r| r.get(0),
        )
        .unwrap();
    assert!(theirs > 0, "the forgotten user has events on the route");
    let mut maintenance = Maintenance::open(&path).unwrap();
    let removed = maintenance
        .forget(
            &user.recipients[0],
            std::slice::from_ref(user.recipient_id.as_ref().unwrap()),
        )
        .unwrap();
    assert!(removed.events > 0 && removed.copies > 0, "{removed:?}");
    let after = storage.route_stats(whole.clone()).await.unwrap().1;
    assert_eq!(
        after.opens + after.clicks,
        before.opens + before.clicks - theirs.unsigned_abs()
    );
    check_all(&storage, &path).await;

    // Pruning the first day and a half: copies, events and their counts go.
    while !maintenance
        .delete_before(T0 + 36 * HOUR, 25)
        .unwrap()
        .is_empty()
    {}
    let left: i64 = conn
        .query_row(
            "SELECT coalesce(sum(relayed + all_opens + all_clicks), 0) FROM stats_hourly
             WHERE hour_ms < ?1",
            [T0 + 36 * HOUR],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "no count left before the pruning time");
    check_all(&storage, &path).await;
}
