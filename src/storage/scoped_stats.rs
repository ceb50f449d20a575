//! Statistics of a group of copies (issue 17): all copies carrying one
//! `X-LM-Tag` value, or all copies of one message as sent (sharing its
//! Message-ID header), optionally only those of one route; and each
//! copy's own counts for the messages listing.
//!
//! The figures mean what the route statistics' mean (storage/stats.rs):
//! unique counts are per copy and recipient, counted in the bucket of the
//! first (counting) event. They come from the hourly rollups
//! `stats_scoped_hourly` and `stats_scoped_links_hourly`, kept by triggers
//! (the migration is in `scoped_stats/migration.rs`); the ends of a range
//! that are not whole hours are counted from the rows, as for routes.
//!
//! A Message-ID is compared without surrounding spaces and angle brackets:
//! `<a@b>` and `a@b` name the same message.

pub(super) mod migration;

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, named_params};
use uuid::Uuid;

use super::StorageError;
use super::stats::{Counts, LinkClicks, counts_row, split_range};

/// Which copies a group gathers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// The copies carrying one `X-LM-Tag` value (exactly as it came).
    Tag,
    /// The copies of one message as sent: one Message-ID header.
    Message,
}

impl Group {
    /// The `scope` column's word.
    fn as_str(self) -> &'static str {
        match self {
            Group::Tag => "tag",
            Group::Message => "message",
        }
    }
}

/// What to count for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupQuery {
    pub group: Group,
    /// The tag, or the Message-ID (with or without `<>`).
    pub key: String,
    /// Only the group's copies relayed by this route.
    pub route: Option<String>,
    /// `[from_ms, to_ms)`, ms since the Unix epoch.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Bucket length (an hour or a day), as in [`super::StatsQuery`].
    pub bucket_ms: i64,
    pub include_machine: bool,
}

impl GroupQuery {
    /// The key as the rollups store it.
    fn stored_key(&self) -> &str {
        match self.group {
            Group::Tag => &self.key,
            Group::Message => self.key.trim_matches([' ', '<', '>']),
        }
    }
}

/// A copy's own counting events: how many opens and clicks, and when the
/// first of each came.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyCounts {
    pub opens: u64,
    pub clicks: u64,
    pub first_open_ms: Option<i64>,
    pub first_click_ms: Option<i64>,
}

/// The copies of the group counted from the rows: which ones and how.
fn copies_of(group: Group) -> &'static str {
    match group {
        Group::Tag => "EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = :key)",
        Group::Message => "trim(m.message_id_header, ' <>') = :key",
    }
}

/// The buckets that have anything, oldest first, and the totals.
pub(super) fn group_stats(
    conn: &Connection,
    q: &GroupQuery,
) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
    let mut buckets: BTreeMap<i64, Counts> = BTreeMap::new();
    let mut add = |row: (i64, Counts)| buckets.entry(row.0).or_default().add(row.1);
    let split = split_range(q.from_ms, q.to_ms, q.bucket_ms);
    let (key, scope, route) = (q.stored_key(), q.group.as_str(), q.route.as_deref());
    if split.hours.0 < split.hours.1 {
        let p = if q.include_machine { "all_" } else { "" };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT (hour_ms / :bucket) * :bucket AS start, sum(relayed), sum({p}opens),
                    sum({p}unique_opens), sum({p}clicks), sum({p}unique_clicks)
             FROM stats_scoped_hourly
             WHERE scope = :scope AND key = :key AND (:route IS NULL OR route = :route)
               AND hour_ms >= :from AND hour_ms < :to
             GROUP BY start"
        ))?;
        let rows = stmt.query_map(
            named_params! {":bucket": q.bucket_ms, ":scope": scope, ":key": key,
            ":route": route, ":from": split.hours.0, ":to": split.hours.1},
            counts_row,
        )?;
        for row in rows {
            add(row?);
        }
    }
    // The `(opens, unique, clicks, unique)` columns: bit 1 of `firsts`
    // is the first counting event, bit 2 the first of any.
    let (counting, bit) = if q.include_machine { (0, 2) } else { (1, 1) };
    let relayed_sql = match q.group {
        Group::Tag => {
            "SELECT (t.relayed_at_ms / :bucket) * :bucket AS start, count(*), 0, 0, 0, 0
             FROM message_tags t CROSS JOIN messages m ON m.id = t.message_id
             WHERE t.tag = :key AND t.relayed_at_ms >= :from AND t.relayed_at_ms < :to
               AND (:route IS NULL OR t.route = :route) AND m.status != 'failed'
             GROUP BY start"
        }
        Group::Message => {
            "SELECT (m.relayed_at_ms / :bucket) * :bucket AS start, count(*), 0, 0, 0, 0
             FROM messages m
             WHERE trim(m.message_id_header, ' <>') = :key
               AND m.relayed_at_ms >= :from AND m.relayed_at_ms < :to
               AND (:route IS NULL OR m.route = :route) AND m.status != 'failed'
             GROUP BY start"
        }
    };
    let events_sql = format!(
        "SELECT (e.at_ms / :bucket) * :bucket AS start, 0,
                sum(e.kind = 'open' AND e.counts >= :counting),
                sum(e.kind = 'open' AND e.firsts & :bit != 0),
                sum(e.kind = 'click' AND e.counts >= :counting),
                sum(e.kind = 'click' AND e.firsts & :bit != 0)
         FROM events e CROSS JOIN messages m ON m.id = e.message_id
         WHERE e.at_ms >= :from AND e.at_ms < :to AND e.route IS NOT NULL
           AND (:route IS NULL OR e.route = :route) AND {}
         GROUP BY start",
        copies_of(q.group)
    );
    for &(from, to) in &split.raw {
        let mut stmt = conn.prepare_cached(relayed_sql)?;
        let rows = stmt.query_map(
            named_params! {":bucket": q.bucket_ms, ":key": key, ":route": route,
            ":from": from, ":to": to},
            counts_row,
        )?;
        for row in rows {
            add(row?);
        }
        let mut stmt = conn.prepare_cached(&events_sql)?;
        let rows = stmt.query_map(
            named_params! {":bucket": q.bucket_ms, ":key": key, ":route": route,
            ":from": from, ":to": to, ":counting": counting, ":bit": bit},
            counts_row,
        )?;
        for row in rows {
            add(row?);
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

/// Clicks per destination URL of the group's copies, most clicked first.
pub(super) fn group_links(
    conn: &Connection,
    q: &GroupQuery,
) -> Result<Vec<LinkClicks>, StorageError> {
    let mut by_url: HashMap<String, (u64, u64)> = HashMap::new();
    let mut add = |url: String, clicks: Option<i64>, unique: Option<i64>| {
        let e = by_url.entry(url).or_default();
        e.0 += clicks.unwrap_or(0).unsigned_abs();
        e.1 += unique.unwrap_or(0).unsigned_abs();
    };
    let split = split_range(q.from_ms, q.to_ms, q.bucket_ms);
    let (key, scope, route) = (q.stored_key(), q.group.as_str(), q.route.as_deref());
    if split.hours.0 < split.hours.1 {
        let p = if q.include_machine { "all_" } else { "" };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT url, sum({p}clicks), sum({p}unique_clicks) FROM stats_scoped_links_hourly
             WHERE scope = :scope AND key = :key AND (:route IS NULL OR route = :route)
               AND hour_ms >= :from AND hour_ms < :to
             GROUP BY url"
        ))?;
        let mut rows = stmt.query(named_params! {":scope": scope, ":key": key,
        ":route": route, ":from": split.hours.0, ":to": split.hours.1})?;
        while let Some(r) = rows.next()? {
            add(r.get(0)?, r.get(1)?, r.get(2)?);
        }
    }
    let (counting, bit) = if q.include_machine { (0, 8) } else { (1, 4) };
    let sql = format!(
        "SELECT e.url, sum(e.counts >= :counting), sum(e.firsts & :bit != 0)
         FROM events e CROSS JOIN messages m ON m.id = e.message_id
         WHERE e.at_ms >= :from AND e.at_ms < :to AND e.route IS NOT NULL
           AND (:route IS NULL OR e.route = :route) AND {}
           AND e.kind = 'click' AND e.url IS NOT NULL
         GROUP BY e.url",
        copies_of(q.group)
    );
    for &(from, to) in &split.raw {
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(named_params! {":key": key, ":route": route,
        ":from": from, ":to": to, ":counting": counting, ":bit": bit})?;
        while let Some(r) = rows.next()? {
            add(r.get(0)?, r.get(1)?, r.get(2)?);
        }
    }
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
    Ok(out)
}

/// Each copy's counting events, in the order of `ids`; machine ones too
/// when `include_machine`. Reads the copy's events by the
/// `(message_id, at_ms)` index: a page of copies costs their events.
pub(super) fn copy_counts(
    conn: &Connection,
    ids: &[Uuid],
    include_machine: bool,
) -> Result<Vec<CopyCounts>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT sum(kind = 'open'), sum(kind = 'click'),
                min(CASE WHEN kind = 'open' THEN at_ms END),
                min(CASE WHEN kind = 'click' THEN at_ms END)
         FROM events WHERE message_id = ?1 AND counts >= ?2",
    )?;
    let counting = i64::from(!include_machine);
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(stmt.query_row((id.to_string(), counting), |r| {
            Ok(CopyCounts {
                opens: r.get::<_, Option<i64>>(0)?.unwrap_or(0).unsigned_abs(),
                clicks: r.get::<_, Option<i64>>(1)?.unwrap_or(0).unsigned_abs(),
                first_open_ms: r.get(2)?,
                first_click_ms: r.get(3)?,
            })
        })?);
    }
    Ok(out)
}
