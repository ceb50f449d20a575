//! Route statistics (SPEC §8): relayed copies, opens and clicks of one
//! route over a time range in hourly or daily buckets, and clicks per
//! destination. Counting events only, unless machine activity is asked
//! for.
//!
//! "Unique" counts one per recipient of a copy (copy id and opaque
//! recipient id): a recipient opening twice is one unique open, counted
//! in the bucket of their first open (their first counting open when
//! machine activity is left out). So buckets add up to the range's total,
//! and a recipient whose first open is before the range is not a unique
//! open of the range. Unique clicks per destination likewise: the first
//! click of the recipient on that URL.
//!
//! The figures come from hourly rollups (`stats_hourly`,
//! `stats_links_hourly`) that triggers keep as events and copies are
//! stored, updated or deleted (migration in schema.rs); the part of the
//! range that does not start or end on a whole hour is counted from the
//! events themselves (each carries its route and which uniques it is the
//! first of). A 30-day query reads at most 720 rollup rows per figure,
//! whatever the number of events (docs/benchmarks.md, "Route statistics").

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, params};

use super::StorageError;

/// The rollups' granularity.
const HOUR: i64 = 3_600_000;

/// What to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub route: String,
    /// `[from_ms, to_ms)`, ms since the Unix epoch.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Bucket length (an hour or a day); buckets start at multiples of it
    /// since the epoch (UTC hours and days).
    pub bucket_ms: i64,
    pub include_machine: bool,
}

/// The counts of one bucket, or of the whole range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub relayed: u64,
    pub opens: u64,
    pub unique_opens: u64,
    pub clicks: u64,
    pub unique_clicks: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub(super) fn add(&mut self, other: Counts) {
        self.relayed += other.relayed;
        self.opens += other.opens;
        self.unique_opens += other.unique_opens;
        self.clicks += other.clicks;
        self.unique_clicks += other.unique_clicks;
    }

    pub(super) fn is_empty(&self) -> bool {
        *self == Counts::default()
    }
}

/// Clicks on one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClicks {
    pub url: String,
    pub clicks: u64,
    pub unique_clicks: u64,
}

/// How `[from_ms, to_ms)` splits: whole hours read from the rollups, the
/// rest (at most an hour at each end) from the events.
pub(super) struct Split {
    /// Whole hours `[start, end)`; empty when `start >= end`.
    pub hours: (i64, i64),
    /// Pieces counted from the events.
    pub raw: Vec<(i64, i64)>,
}

fn split(q: &StatsQuery) -> Split {
    split_range(q.from_ms, q.to_ms, q.bucket_ms)
}

/// How `[from_ms, to_ms)` in buckets of `bucket_ms` splits.
pub(super) fn split_range(from_ms: i64, to_ms: i64, bucket_ms: i64) -> Split {
    let whole = |from: i64, to: i64| Split {
        hours: (0, 0),
        raw: vec![(from, to)],
    };
    // Buckets that are not whole hours, or times before the epoch (where
    // SQL's division rounds the other way): everything from the events.
    if bucket_ms <= 0 || bucket_ms % HOUR != 0 || from_ms < 0 || to_ms <= from_ms {
        return whole(from_ms, to_ms.max(from_ms));
    }
    let start = (from_ms + HOUR - 1) / HOUR * HOUR;
    let end = to_ms / HOUR * HOUR;
    if start >= end {
        return whole(from_ms, to_ms);
    }
    let raw = [(from_ms, start), (end, to_ms)]
        .into_iter()
        .filter(|(a, b)| a < b)
        .collect();
    Split {
        hours: (start, end),
        raw,
    }
}

/// A row of `(bucket start, relayed, opens, unique opens, clicks, unique
/// clicks)`, sums that may be NULL.
pub(super) fn counts_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Counts)> {
    let n = |i: usize| -> rusqlite::Result<u64> {
        Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).unsigned_abs())
    };
    Ok((
        r.get(0)?,
        Counts {
            relayed: n(1)?,
            opens: n(2)?,
            unique_opens: n(3)?,
            clicks: n(4)?,
            unique_clicks: n(5)?,
        },
    ))
}

/// The buckets that have anything, oldest first, and the totals.
pub(super) fn route_stats(
    conn: &Connection,
    q: &StatsQuery,
) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
    let mut buckets: BTreeMap<i64, Counts> = BTreeMap::new();
    let split = split(q);
    let read = counts_row;
    if split.hours.0 < split.hours.1 {
        let sql = if q.include_machine {
            "SELECT (hour_ms / ?4) * ?4 AS start, sum(relayed), sum(all_opens),
                    sum(all_unique_opens), sum(all_clicks), sum(all_unique_clicks)
             FROM stats_hourly WHERE route = ?1 AND hour_ms >= ?2 AND hour_ms < ?3
             GROUP BY start"
        } else {
            "SELECT (hour_ms / ?4) * ?4 AS start, sum(relayed), sum(opens),
                    sum(unique_opens), sum(clicks), sum(unique_clicks)
             FROM stats_hourly WHERE route = ?1 AND hour_ms >= ?2 AND hour_ms < ?3
             GROUP BY start"
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(
            params![q.route, split.hours.0, split.hours.1, q.bucket_ms],
            read,
        )?;
        for row in rows {
            let (start, counts) = row?;
            buckets.entry(start).or_default().add(counts);
        }
    }
    for &(from, to) in &split.raw {
        let mut stmt = conn.prepare_cached(
            "SELECT (relayed_at_ms / ?4) * ?4 AS start, count(*), 0, 0, 0, 0 FROM messages
             WHERE route = ?1 AND relayed_at_ms >= ?2 AND relayed_at_ms < ?3
               AND status != 'failed'
             GROUP BY start",
        )?;
        let rows = stmt.query_map(params![q.route, from, to, q.bucket_ms], read)?;
        for row in rows {
            let (start, counts) = row?;
            buckets.entry(start).or_default().add(counts);
        }
        // The `(opens, unique, clicks, unique)` columns: bit 1 of `firsts`
        // is the first counting event, bit 2 the first of any.
        let (counting, bit) = if q.include_machine { (0, 2) } else { (1, 1) };
        let mut stmt = conn.prepare_cached(
            "SELECT (at_ms / ?4) * ?4 AS start, 0,
                    sum(kind = 'open' AND counts >= ?5), sum(kind = 'open' AND firsts & ?6 != 0),
                    sum(kind = 'click' AND counts >= ?5), sum(kind = 'click' AND firsts & ?6 != 0)
             FROM events WHERE at_ms >= ?2 AND at_ms < ?3 AND route = ?1
             GROUP BY start",
        )?;
        let rows = stmt.query_map(params![q.route, from, to, q.bucket_ms, counting, bit], read)?;
        for row in rows {
            let (start, counts) = row?;
            buckets.entry(start).or_default().add(counts);
        }
    }
    // Rollup rows emptied by deletions are left behind: not shown.
    buckets.retain(|_, c| !c.is_empty());
    let mut totals = Counts::default();
    for c in buckets.values() {
        totals.add(*c);
    }
    Ok((buckets.into_iter().collect(), totals))
}

/// Clicks per destination URL of the route's copies, most clicked first.
pub(super) fn route_links(
    conn: &Connection,
    q: &StatsQuery,
) -> Result<Vec<LinkClicks>, StorageError> {
    let mut by_url: HashMap<String, (u64, u64)> = HashMap::new();
    let split = split(q);
    let mut add = |url: String, clicks: Option<i64>, unique: Option<i64>| {
        let e = by_url.entry(url).or_default();
        e.0 += clicks.unwrap_or(0).unsigned_abs();
        e.1 += unique.unwrap_or(0).unsigned_abs();
    };
    if split.hours.0 < split.hours.1 {
        let sql = if q.include_machine {
            "SELECT url, sum(all_clicks), sum(all_unique_clicks) FROM stats_links_hourly
             WHERE route = ?1 AND hour_ms >= ?2 AND hour_ms < ?3 GROUP BY url"
        } else {
            "SELECT url, sum(clicks), sum(unique_clicks) FROM stats_links_hourly
             WHERE route = ?1 AND hour_ms >= ?2 AND hour_ms < ?3 GROUP BY url"
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![q.route, split.hours.0, split.hours.1])?;
        while let Some(r) = rows.next()? {
            add(r.get(0)?, r.get(1)?, r.get(2)?);
        }
    }
    let (counting, bit) = if q.include_machine { (0, 8) } else { (1, 4) };
    for &(from, to) in &split.raw {
        let mut stmt = conn.prepare_cached(
            "SELECT url, sum(counts >= ?4), sum(firsts & ?5 != 0) FROM events
             WHERE at_ms >= ?2 AND at_ms < ?3 AND route = ?1
               AND kind = 'click' AND url IS NOT NULL
             GROUP BY url",
        )?;
        let mut rows = stmt.query(params![q.route, from, to, counting, bit])?;
        while let Some(r) = rows.next()? {
            add(r.get(0)?, r.get(1)?, r.get(2)?);
        }
    }
    Ok(ranked_links(by_url))
}

/// Clicks per destination, those with any, most clicked first (ties by
/// URL): how routes, tags and messages list their links.
pub(super) fn ranked_links(by_url: HashMap<String, (u64, u64)>) -> Vec<LinkClicks> {
    let mut out: Vec<LinkClicks> = by_url
        .into_iter()
        .filter(|(_, (clicks, _))| *clicks > 0)
        .map(|(url, (clicks, unique_clicks))| LinkClicks {
            url,
            clicks,
            unique_clicks,
        })
        .collect();
    out.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.url.cmp(&b.url)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::schema;

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600_000;
    const DAY: i64 = 24 * HOUR;

    /// A database of the schema before the rollups, with copies and
    /// events, migrated: routes and firsts backfilled, rollups built.
    #[test]
    fn the_migration_backfills_routes_firsts_and_rollups() {
        let mut conn = Connection::open_in_memory().unwrap();
        let before = schema::version_before("CREATE TABLE stats_hourly");
        schema::migrate_to(&mut conn, before).unwrap();
        let copy = |id: &str, route: &str, status: &str| {
            conn.execute(
                "INSERT INTO messages (id, route, sender, recipients, recipient_id, tags, links,
                     relayed_at_ms, upstream_reply, status)
                 VALUES (?1, ?2, 's@example.com', '[]', 'rid-' || ?1, '[]', '[]', ?3, '250', ?4)",
                params![id, route, T0 + 10 * HOUR, status],
            )
            .unwrap();
        };
        copy("a", "news", "relayed");
        copy("b", "news", "relayed");
        copy("f", "news", "failed");
        copy("c", "other", "relayed");
        let mut n = 0;
        let mut event = |copy: &str, url: Option<&str>, at_ms: i64, human: bool| {
            n += 1;
            conn.execute(
                "INSERT INTO events (id, message_id, recipient_id, kind, url, at_ms,
                     classification, counts, machine, first, bot)
                 VALUES (?1, ?2, 'rid-' || ?2, ?3, ?4, ?5, '', ?6, ?7, 0, '{}')",
                params![
                    format!("e{n:02}"),
                    copy,
                    if url.is_some() { "click" } else { "open" },
                    url,
                    at_ms,
                    human,
                    !human
                ],
            )
            .unwrap();
        };
        let h = |hours: i64, minutes: i64| T0 + hours * HOUR + minutes * 60_000;
        // Stored out of time order: the backfill goes by time.
        event("a", None, h(12, 0), true);
        event("a", None, h(11, 0), true);
        event("a", Some("u1"), h(12, 0), true);
        event("a", Some("u1"), h(13, 0), true);
        event("a", None, h(10, 1), false);
        event("b", None, h(10, 1), false);
        event("b", Some("u2"), h(10, 1), false);
        event("c", None, h(11, 0), true);
        event("x", None, h(11, 0), true);
        schema::migrate(&mut conn).unwrap();

        let routes: Vec<(String, Option<String>, i64)> = conn
            .prepare("SELECT message_id, route, firsts FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let firsts: Vec<i64> = routes.iter().map(|r| r.2).collect();
        assert_eq!(firsts, [0, 1, 1 | 2 | 4 | 8, 0, 2, 2, 2 | 8, 1 | 2, 1 | 2]);
        assert_eq!(routes[7].1.as_deref(), Some("other"));
        assert_eq!(routes[8].1, None, "copy not stored here: no route");

        let q = |bucket_ms, include_machine| StatsQuery {
            route: "news".into(),
            from_ms: T0,
            to_ms: T0 + DAY,
            bucket_ms,
            include_machine,
        };
        let c = |relayed, opens, unique_opens, clicks, unique_clicks| Counts {
            relayed,
            opens,
            unique_opens,
            clicks,
            unique_clicks,
        };
        let (buckets, totals) = route_stats(&conn, &q(DAY, false)).unwrap();
        assert_eq!(totals, c(2, 2, 1, 2, 1));
        assert_eq!(buckets, [(T0, c(2, 2, 1, 2, 1))]);
        let (_, totals) = route_stats(&conn, &q(DAY, true)).unwrap();
        assert_eq!(totals, c(2, 4, 2, 3, 2));
        let (buckets, _) = route_stats(&conn, &q(HOUR, false)).unwrap();
        assert_eq!(
            buckets,
            [
                (h(10, 0), c(2, 0, 0, 0, 0)),
                (h(11, 0), c(0, 1, 1, 0, 0)),
                (h(12, 0), c(0, 1, 0, 1, 1)),
                (h(13, 0), c(0, 0, 0, 1, 0)),
            ]
        );
        let (buckets, _) = route_stats(&conn, &q(HOUR, true)).unwrap();
        assert_eq!(buckets[0], (h(10, 0), c(2, 2, 2, 1, 1)));
        // Not on whole hours: the ends are counted from the events.
        let odd = StatsQuery {
            from_ms: h(10, 1),
            to_ms: h(12, 30),
            ..q(DAY, true)
        };
        assert_eq!(route_stats(&conn, &odd).unwrap().1, c(0, 4, 2, 2, 2));
        let link = |url: &str, clicks, unique_clicks| LinkClicks {
            url: url.into(),
            clicks,
            unique_clicks,
        };
        assert_eq!(
            route_links(&conn, &q(DAY, false)).unwrap(),
            [link("u1", 2, 1)]
        );
        assert_eq!(
            route_links(&conn, &q(DAY, true)).unwrap(),
            [link("u1", 2, 1), link("u2", 1, 1)]
        );
    }
}
