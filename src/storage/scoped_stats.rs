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
    Ok(super::stats::ranked_links(by_url))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::schema;
    use rusqlite::params;

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600_000;
    const HOUR: i64 = 3_600_000;

    /// Copies and events written as the writer writes them (route and
    /// `firsts` included) into `conn`.
    fn fill(conn: &Connection) {
        let copies = [
            (
                "a",
                "news",
                r#"["spring","all"]"#,
                Some("<s1@x>"),
                "relayed",
                10,
            ),
            (
                "b",
                "news",
                r#"["spring","spring"]"#,
                Some("s1@x"),
                "relayed",
                11,
            ),
            ("f", "news", r#"["spring"]"#, Some("<s1@x>"), "failed", 11),
            ("c", "other", r#"["all"]"#, None, "relayed", 12),
        ];
        for (id, route, tags, header, status, hour) in copies {
            conn.execute(
                "INSERT INTO messages (id, route, sender, recipients, recipient_id,
                     message_id_header, tags, links, relayed_at_ms, upstream_reply, status)
                 VALUES (?1, ?2, 's', '[]', 'rid', ?3, ?4, '[]', ?5, '250', ?6)",
                params![id, route, header, tags, T0 + hour * HOUR, status],
            )
            .unwrap();
        }
        let events = [
            ("e1", "a", "open", None, 13, 1, 3),
            ("e2", "a", "click", Some("u1"), 13, 1, 15),
            ("e3", "b", "open", None, 14, 0, 2),
            ("e4", "b", "click", Some("u1"), 15, 0, 10),
            ("e5", "c", "open", None, 15, 1, 3),
        ];
        for (id, copy, kind, url, hour, counts, firsts) in events {
            conn.execute(
                "INSERT INTO events (id, message_id, recipient_id, kind, url, at_ms,
                     classification, counts, machine, first, bot, route, firsts)
                 VALUES (?1, ?2, 'rid', ?3, ?4, ?5, '', ?6, 1 - ?6, 0, '{}',
                     (SELECT route FROM messages WHERE id = ?2), ?7)",
                params![id, copy, kind, url, T0 + hour * HOUR, counts, firsts],
            )
            .unwrap();
        }
    }

    fn rollups(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare(
                "SELECT scope || ' ' || key || ' ' || route || ' ' || hour_ms || ' ' || relayed
                     || ' ' || opens || ' ' || unique_opens || ' ' || clicks || ' '
                     || unique_clicks || ' ' || all_opens || ' ' || all_unique_opens || ' '
                     || all_clicks || ' ' || all_unique_clicks
                 FROM stats_scoped_hourly WHERE relayed + all_opens + all_clicks > 0
                 UNION ALL
                 SELECT scope || ' ' || key || ' ' || route || ' ' || hour_ms || ' ' || url
                     || ' ' || clicks || ' ' || unique_clicks || ' ' || all_clicks || ' '
                     || all_unique_clicks
                 FROM stats_scoped_links_hourly ORDER BY 1",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The backfill of stored rows builds the rollups the triggers build.
    #[test]
    fn the_backfill_equals_the_triggers() {
        let mut before = Connection::open_in_memory().unwrap();
        let version = schema::version_before("CREATE TABLE stats_scoped_hourly");
        schema::migrate_to(&mut before, version).unwrap();
        fill(&before);
        schema::migrate(&mut before).unwrap();
        let mut after = Connection::open_in_memory().unwrap();
        schema::migrate(&mut after).unwrap();
        fill(&after);
        let rows = rollups(&after);
        assert_eq!(rollups(&before), rows);
        let q = |group, key: &str, route: Option<&str>| GroupQuery {
            group,
            key: key.into(),
            route: route.map(str::to_owned),
            from_ms: T0,
            to_ms: T0 + 24 * HOUR,
            bucket_ms: 24 * HOUR,
            include_machine: true,
        };
        let totals = |q: GroupQuery| group_stats(&after, &q).unwrap().1;
        // A tag given twice counts its copy once; a failed copy not at all.
        let spring = totals(q(Group::Tag, "spring", None));
        assert_eq!((spring.relayed, spring.opens, spring.clicks), (2, 2, 2));
        let all = totals(q(Group::Tag, "all", None));
        assert_eq!((all.relayed, all.opens, all.clicks), (2, 2, 1));
        let all_news = totals(q(Group::Tag, "all", Some("news")));
        assert_eq!((all_news.relayed, all_news.opens), (1, 1));
        // `<s1@x>` and `s1@x` are one message as sent.
        let sent = totals(q(Group::Message, "<s1@x>", None));
        assert_eq!((sent.relayed, sent.opens, sent.unique_opens), (2, 2, 2));
        let links = group_links(&after, &q(Group::Message, "s1@x", None)).unwrap();
        assert_eq!((links[0].clicks, links[0].unique_clicks), (2, 2));
    }
}
