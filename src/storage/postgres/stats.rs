//! Statistics and the dashboard's reads on PostgreSQL. The figures mean
//! what storage/stats.rs (a route's) and storage/scoped_stats.rs (a tag's,
//! a message's as sent) say, and are read the same way: whole hours from
//! the hourly rollups (`rollups.rs`), the ends of a range that are not
//! whole hours from the copies and events themselves (each event carries
//! its route and the `firsts` bits it claimed). A 30-day query reads at
//! most 720 rollup rows per figure, whatever the number of events.

use std::collections::{BTreeMap, HashMap};

use tokio_postgres::{GenericClient, Row};

use super::{Params, events, parse, parse_ip};
use crate::storage::stats::{ranked_links, split_range};
use crate::storage::{
    CLASSIFIED_MAX, ClassCounts, Counts, Group, GroupQuery, LinkClicks, RouteEvent, StatsQuery,
    StorageError,
};

/// What a read counts: a route's copies, or a group's (of one route or
/// all), as the rollups key them; over which range.
struct Scope<'a> {
    scope: &'static str,
    /// '' for a route; the tag; the Message-ID without `<>`.
    key: &'a str,
    route: Option<&'a str>,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    include_machine: bool,
}

impl<'a> Scope<'a> {
    fn route(q: &'a StatsQuery) -> Scope<'a> {
        Scope {
            scope: "route",
            key: "",
            route: Some(&q.route),
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            bucket_ms: q.bucket_ms,
            include_machine: q.include_machine,
        }
    }

    fn group(q: &'a GroupQuery) -> Scope<'a> {
        let (scope, key) = match q.group {
            Group::Tag => ("tag", q.key.as_str()),
            Group::Message => ("message", q.key.trim_matches([' ', '<', '>'])),
        };
        Scope {
            scope,
            key,
            route: q.route.as_deref(),
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            bucket_ms: q.bucket_ms,
            include_machine: q.include_machine,
        }
    }

    /// The rollup rows of the scope: a condition, its values bound in `p`.
    fn rollup_rows(&self, p: &mut Params) -> String {
        let mut sql = format!(
            "scope = {} AND key = {}",
            p.bind(self.scope.to_owned()),
            p.bind(self.key.to_owned())
        );
        if let Some(route) = self.route {
            sql += &format!(" AND route = {}", p.bind(route.to_owned()));
        }
        sql
    }

    /// `FROM … WHERE …` of the scope's copies (alias `m`) relayed in
    /// `[from, to)`, not failed; `start` is the time to bucket by.
    fn copies(&self, p: &mut Params, from: &str, to: &str) -> (String, &'static str) {
        let route = |p: &mut Params, column: &str| {
            self.route
                .map(|r| format!(" AND {column} = {}", p.bind(r.to_owned())))
                .unwrap_or_default()
        };
        match self.scope {
            "tag" => {
                let key = p.bind(self.key.to_owned());
                let sql = format!(
                    "FROM message_tags t JOIN messages m ON m.id = t.message_id
                     WHERE t.tag = {key} AND t.relayed_at_ms >= {from} AND t.relayed_at_ms < {to}
                       AND m.status <> 'failed'{}",
                    route(p, "t.route")
                );
                (sql, "t.relayed_at_ms")
            }
            "message" => {
                let key = p.bind(self.key.to_owned());
                let sql = format!(
                    "FROM messages m WHERE btrim(m.message_id_header, ' <>') = {key}
                       AND m.relayed_at_ms >= {from} AND m.relayed_at_ms < {to}
                       AND m.status <> 'failed'{}",
                    route(p, "m.route")
                );
                (sql, "m.relayed_at_ms")
            }
            _ => {
                let sql = format!(
                    "FROM messages m WHERE m.relayed_at_ms >= {from} AND m.relayed_at_ms < {to}
                       AND m.status <> 'failed'{}",
                    route(p, "m.route")
                );
                (sql, "m.relayed_at_ms")
            }
        }
    }

    /// `FROM … WHERE …` of the events (alias `e`) in `[from, to)` on the
    /// scope's copies.
    fn events(&self, p: &mut Params, from: &str, to: &str) -> String {
        let mut sql = match self.scope {
            "tag" => format!(
                "FROM events e JOIN messages m ON m.id = e.message_id
                 WHERE {} = ANY (m.tags)",
                p.bind(self.key.to_owned())
            ),
            "message" => format!(
                "FROM events e JOIN messages m ON m.id = e.message_id
                 WHERE btrim(m.message_id_header, ' <>') = {}",
                p.bind(self.key.to_owned())
            ),
            _ => "FROM events e WHERE true".to_owned(),
        };
        sql += &format!(" AND e.at_ms >= {from} AND e.at_ms < {to} AND e.route IS NOT NULL");
        if let Some(route) = self.route {
            sql += &format!(" AND e.route = {}", p.bind(route.to_owned()));
        }
        sql
    }
}

/// A route's buckets that have anything, oldest first, and the totals.
pub(super) async fn route_stats(
    client: &impl GenericClient,
    q: &StatsQuery,
) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
    counts(client, &Scope::route(q)).await
}

/// A group's buckets that have anything, oldest first, and the totals.
pub(super) async fn group_stats(
    client: &impl GenericClient,
    q: &GroupQuery,
) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
    counts(client, &Scope::group(q)).await
}

/// A route's clicks per destination URL, most clicked first.
pub(super) async fn route_links(
    client: &impl GenericClient,
    q: &StatsQuery,
) -> Result<Vec<LinkClicks>, StorageError> {
    links(client, &Scope::route(q)).await
}

/// A group's clicks per destination URL, most clicked first.
pub(super) async fn group_links(
    client: &impl GenericClient,
    q: &GroupQuery,
) -> Result<Vec<LinkClicks>, StorageError> {
    links(client, &Scope::group(q)).await
}

/// Whole hours from the rollups, the ends of the range from the rows.
async fn counts(
    client: &impl GenericClient,
    s: &Scope<'_>,
) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
    let (bucket_ms, include_machine) = (s.bucket_ms, s.include_machine);
    let mut buckets: BTreeMap<i64, Counts> = BTreeMap::new();
    let split = split_range(s.from_ms, s.to_ms, s.bucket_ms);
    let bucket = bucket_ms.max(1);
    if split.hours.0 < split.hours.1 {
        let pre = if include_machine { "all_" } else { "" };
        let mut p = Params::default();
        let b = p.bind(bucket);
        let (from, to) = (p.bind(split.hours.0), p.bind(split.hours.1));
        let sql = format!(
            "SELECT (hour_ms / {b}) * {b} AS start, sum(relayed)::bigint, sum({pre}opens)::bigint,
                    sum({pre}unique_opens)::bigint, sum({pre}clicks)::bigint,
                    sum({pre}unique_clicks)::bigint
             FROM rollups_hourly WHERE {} AND hour_ms >= {from} AND hour_ms < {to}
             GROUP BY start",
            s.rollup_rows(&mut p)
        );
        add_rows(&mut buckets, client.query(&sql, &p.refs()).await?)?;
    }
    // The `(opens, unique, clicks, unique)` columns: bit 1 of `firsts`
    // is the first counting event, bit 2 the first of any.
    let (counting, bit) = if include_machine {
        (false, 2)
    } else {
        (true, 1)
    };
    for &(from_ms, to_ms) in &split.raw {
        let mut p = Params::default();
        let b = p.bind(bucket);
        let (from, to) = (p.bind(from_ms), p.bind(to_ms));
        let (copies, at) = s.copies(&mut p, &from, &to);
        let sql = format!(
            "SELECT ({at} / {b}) * {b} AS start, count(*), 0::bigint, 0::bigint, 0::bigint,
                    0::bigint
             {copies} GROUP BY start"
        );
        add_rows(&mut buckets, client.query(&sql, &p.refs()).await?)?;
        let mut p = Params::default();
        let b = p.bind(bucket);
        let (from, to) = (p.bind(from_ms), p.bind(to_ms));
        let (counting, bit) = (p.bind(counting), p.bind(bit));
        let sql = format!(
            "SELECT (e.at_ms / {b}) * {b} AS start, 0::bigint,
                    count(*) FILTER (WHERE e.kind = 'open' AND (e.counts OR NOT {counting})),
                    count(*) FILTER (WHERE e.kind = 'open' AND e.firsts & {bit} <> 0),
                    count(*) FILTER (WHERE e.kind = 'click' AND (e.counts OR NOT {counting})),
                    count(*) FILTER (WHERE e.kind = 'click' AND e.firsts & {bit} <> 0)
             {} GROUP BY start",
            s.events(&mut p, &from, &to)
        );
        add_rows(&mut buckets, client.query(&sql, &p.refs()).await?)?;
    }
    // Rollup rows emptied by deletions are left behind: not shown.
    buckets.retain(|_, c| !c.is_empty());
    let mut totals = Counts::default();
    for c in buckets.values() {
        totals.add(*c);
    }
    Ok((buckets.into_iter().collect(), totals))
}

/// Rows of `(start, relayed, opens, unique opens, clicks, unique clicks)`
/// added to `buckets`.
fn add_rows(buckets: &mut BTreeMap<i64, Counts>, rows: Vec<Row>) -> Result<(), StorageError> {
    for r in rows {
        let n = |i: usize| -> Result<u64, StorageError> {
            Ok(r.try_get::<_, Option<i64>>(i)?.unwrap_or(0).unsigned_abs())
        };
        buckets.entry(r.try_get(0)?).or_default().add(Counts {
            relayed: n(1)?,
            opens: n(2)?,
            unique_opens: n(3)?,
            clicks: n(4)?,
            unique_clicks: n(5)?,
        });
    }
    Ok(())
}

/// Clicks per destination URL: whole hours from the rollups, the ends of
/// the range from the events.
async fn links(
    client: &impl GenericClient,
    s: &Scope<'_>,
) -> Result<Vec<LinkClicks>, StorageError> {
    let include_machine = s.include_machine;
    let mut by_url: HashMap<String, (u64, u64)> = HashMap::new();
    let mut add = |rows: Vec<Row>| -> Result<(), StorageError> {
        for r in rows {
            let n = |i: usize| -> Result<u64, StorageError> {
                Ok(r.try_get::<_, Option<i64>>(i)?.unwrap_or(0).unsigned_abs())
            };
            let e = by_url.entry(r.try_get(0)?).or_default();
            e.0 += n(1)?;
            e.1 += n(2)?;
        }
        Ok(())
    };
    let split = split_range(s.from_ms, s.to_ms, s.bucket_ms);
    if split.hours.0 < split.hours.1 {
        let pre = if include_machine { "all_" } else { "" };
        let mut p = Params::default();
        let (from, to) = (p.bind(split.hours.0), p.bind(split.hours.1));
        let sql = format!(
            "SELECT url, sum({pre}clicks)::bigint, sum({pre}unique_clicks)::bigint
             FROM rollup_links_hourly WHERE {} AND hour_ms >= {from} AND hour_ms < {to}
             GROUP BY url",
            s.rollup_rows(&mut p)
        );
        add(client.query(&sql, &p.refs()).await?)?;
    }
    let (counting, bit) = if include_machine {
        (false, 8)
    } else {
        (true, 4)
    };
    for &(from_ms, to_ms) in &split.raw {
        let mut p = Params::default();
        let (from, to) = (p.bind(from_ms), p.bind(to_ms));
        let (counting, bit) = (p.bind(counting), p.bind(bit));
        let sql = format!(
            "SELECT e.url, count(*) FILTER (WHERE e.counts OR NOT {counting}),
                    count(*) FILTER (WHERE e.firsts & {bit} <> 0)
             {} AND e.kind = 'click' AND e.url IS NOT NULL
             GROUP BY e.url",
            s.events(&mut p, &from, &to)
        );
        add(client.query(&sql, &p.refs()).await?)?;
    }
    Ok(ranked_links(by_url))
}

/// The newest [`CLASSIFIED_MAX`] events of the range per classification.
pub(super) async fn classifications(
    client: &impl GenericClient,
    q: &StatsQuery,
) -> Result<Vec<ClassCounts>, StorageError> {
    let rows = client
        .query(
            "SELECT classification, bool_or(machine),
                    count(*) FILTER (WHERE kind = 'open'), count(*) FILTER (WHERE kind = 'click')
             FROM (SELECT classification, machine, kind FROM events
                   WHERE route = $1 AND at_ms >= $2 AND at_ms < $3
                   ORDER BY at_ms DESC LIMIT $4) e
             GROUP BY classification
             ORDER BY bool_or(machine), count(*) DESC, classification",
            &[&q.route, &q.from_ms, &q.to_ms, &i64::from(CLASSIFIED_MAX)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ClassCounts {
                classification: parse(r.try_get(0)?)?,
                machine: r.try_get(1)?,
                opens: r.try_get::<_, i64>(2)?.unsigned_abs(),
                clicks: r.try_get::<_, i64>(3)?.unsigned_abs(),
            })
        })
        .collect()
}

/// The newest `limit` events of the range, with their observations'
/// signals; machine events only when asked.
pub(super) async fn recent_events(
    client: &impl GenericClient,
    q: &StatsQuery,
    limit: u32,
) -> Result<Vec<RouteEvent>, StorageError> {
    let rows = client
        .query(
            "SELECT e.*, o.method AS o_method, o.ip AS o_ip, o.user_agent AS o_user_agent
             FROM events e LEFT JOIN observations o ON o.id = e.id AND o.at_ms = e.at_ms
             WHERE e.route = $1 AND e.at_ms >= $2 AND e.at_ms < $3 AND ($4 OR e.counts)
             ORDER BY e.at_ms DESC, e.id DESC LIMIT $5",
            &[
                &q.route,
                &q.from_ms,
                &q.to_ms,
                &q.include_machine,
                &i64::from(limit),
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let ip: Option<String> = r.try_get("o_ip")?;
            Ok(RouteEvent {
                event: events::from_row(r)?,
                method: r.try_get("o_method")?,
                ip: parse_ip(ip.unwrap_or_default())?,
                user_agent: r.try_get("o_user_agent")?,
            })
        })
        .collect()
}
