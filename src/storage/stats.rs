//! Route statistics (SPEC §8): relayed copies, opens and clicks of one
//! route over a time range in hourly or daily buckets, and clicks per
//! destination. Counting events only, unless machine activity is asked
//! for. "Unique" counts one per recipient of a copy (copy id and opaque
//! recipient id), so a recipient opening twice is one unique open.

use rusqlite::{Connection, params};

use super::StorageError;

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

/// Clicks on one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClicks {
    pub url: String,
    pub clicks: u64,
    pub unique_clicks: u64,
}

/// The buckets that have anything, oldest first, and the totals.
pub(super) fn route_stats(
    conn: &Connection,
    q: &StatsQuery,
) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
    let mut buckets: std::collections::BTreeMap<i64, Counts> = Default::default();
    let mut stmt = conn.prepare_cached(
        "SELECT (relayed_at_ms / ?4) * ?4 AS start, count(*) FROM messages
         WHERE route = ?1 AND relayed_at_ms >= ?2 AND relayed_at_ms < ?3 AND status != 'failed'
         GROUP BY start",
    )?;
    let rows = stmt.query_map(params![q.route, q.from_ms, q.to_ms, q.bucket_ms], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (start, n) = row?;
        buckets.entry(start).or_default().relayed = n.unsigned_abs();
    }
    let mut stmt = conn.prepare_cached(
        "SELECT (e.at_ms / ?4) * ?4 AS start, e.kind, count(*),
                count(DISTINCT e.message_id || '/' || coalesce(e.recipient_id, ''))
         FROM events e JOIN messages m ON m.id = e.message_id
         WHERE m.route = ?1 AND e.at_ms >= ?2 AND e.at_ms < ?3 AND (?5 OR e.counts = 1)
         GROUP BY start, e.kind",
    )?;
    let rows = stmt.query_map(
        params![q.route, q.from_ms, q.to_ms, q.bucket_ms, q.include_machine],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )?;
    for row in rows {
        let (start, kind, n, unique) = row?;
        let b = buckets.entry(start).or_default();
        add(b, &kind, n, unique);
    }
    let mut totals = Counts {
        relayed: buckets.values().map(|b| b.relayed).sum(),
        ..Counts::default()
    };
    let mut stmt = conn.prepare_cached(
        "SELECT e.kind, count(*),
                count(DISTINCT e.message_id || '/' || coalesce(e.recipient_id, ''))
         FROM events e JOIN messages m ON m.id = e.message_id
         WHERE m.route = ?1 AND e.at_ms >= ?2 AND e.at_ms < ?3 AND (?4 OR e.counts = 1)
         GROUP BY e.kind",
    )?;
    let rows = stmt.query_map(
        params![q.route, q.from_ms, q.to_ms, q.include_machine],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )?;
    for row in rows {
        let (kind, n, unique) = row?;
        add(&mut totals, &kind, n, unique);
    }
    Ok((buckets.into_iter().collect(), totals))
}

fn add(c: &mut Counts, kind: &str, n: i64, unique: i64) {
    let (n, unique) = (n.unsigned_abs(), unique.unsigned_abs());
    if kind == "click" {
        c.clicks += n;
        c.unique_clicks += unique;
    } else {
        c.opens += n;
        c.unique_opens += unique;
    }
}

/// Clicks per destination URL of the route's copies, most clicked first.
pub(super) fn route_links(
    conn: &Connection,
    q: &StatsQuery,
) -> Result<Vec<LinkClicks>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.url, count(*),
                count(DISTINCT e.message_id || '/' || coalesce(e.recipient_id, '')) AS uniq
         FROM events e JOIN messages m ON m.id = e.message_id
         WHERE m.route = ?1 AND e.kind = 'click' AND e.url IS NOT NULL
           AND e.at_ms >= ?2 AND e.at_ms < ?3 AND (?4 OR e.counts = 1)
         GROUP BY e.url ORDER BY count(*) DESC, e.url",
    )?;
    let rows = stmt.query_map(
        params![q.route, q.from_ms, q.to_ms, q.include_machine],
        |r| {
            Ok(LinkClicks {
                url: r.get(0)?,
                clicks: r.get::<_, i64>(1)?.unsigned_abs(),
                unique_clicks: r.get::<_, i64>(2)?.unsigned_abs(),
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}
