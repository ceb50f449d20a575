//! Route statistics and the dashboard's reads on PostgreSQL. The figures
//! mean what storage/stats.rs says; here they are counted from the events
//! and copies of the range directly (each event carries its route and the
//! `firsts` bits it claimed). Hourly rollups as on SQLite are not built
//! yet (docs/scaling.md): a 30-day query reads the range's events.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use super::{events, parse, parse_ip};
use crate::storage::{
    CLASSIFIED_MAX, ClassCounts, Counts, LinkClicks, RouteEvent, StatsQuery, StorageError,
};

/// The buckets that have anything, oldest first, and the totals.
pub(super) async fn route_stats(
    client: &impl GenericClient,
    q: &StatsQuery,
) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
    let mut buckets: BTreeMap<i64, Counts> = BTreeMap::new();
    let bucket = q.bucket_ms.max(1);
    let relayed = client
        .query(
            "SELECT (relayed_at_ms / $4) * $4 AS start, count(*)
             FROM messages
             WHERE route = $1 AND relayed_at_ms >= $2 AND relayed_at_ms < $3
               AND status <> 'failed'
             GROUP BY start",
            &[&q.route, &q.from_ms, &q.to_ms, &bucket],
        )
        .await?;
    for r in relayed {
        let n: i64 = r.try_get(1)?;
        buckets.entry(r.try_get(0)?).or_default().relayed += n.unsigned_abs();
    }
    let (counting, bit) = if q.include_machine {
        (false, 2)
    } else {
        (true, 1)
    };
    let rows = client
        .query(
            "SELECT (at_ms / $4) * $4 AS start,
                    count(*) FILTER (WHERE kind = 'open' AND (counts OR NOT $5)),
                    count(*) FILTER (WHERE kind = 'open' AND firsts & $6 <> 0),
                    count(*) FILTER (WHERE kind = 'click' AND (counts OR NOT $5)),
                    count(*) FILTER (WHERE kind = 'click' AND firsts & $6 <> 0)
             FROM events WHERE route = $1 AND at_ms >= $2 AND at_ms < $3
             GROUP BY start",
            &[&q.route, &q.from_ms, &q.to_ms, &bucket, &counting, &bit],
        )
        .await?;
    for r in rows {
        let n =
            |i: usize| -> Result<u64, StorageError> { Ok(r.try_get::<_, i64>(i)?.unsigned_abs()) };
        let c = buckets.entry(r.try_get(0)?).or_default();
        c.opens += n(1)?;
        c.unique_opens += n(2)?;
        c.clicks += n(3)?;
        c.unique_clicks += n(4)?;
    }
    buckets.retain(|_, c| *c != Counts::default());
    let mut totals = Counts::default();
    for c in buckets.values() {
        totals.add(*c);
    }
    Ok((buckets.into_iter().collect(), totals))
}

/// Clicks per destination URL, most clicked first.
pub(super) async fn route_links(
    client: &impl GenericClient,
    q: &StatsQuery,
) -> Result<Vec<LinkClicks>, StorageError> {
    let (counting, bit) = if q.include_machine {
        (false, 8)
    } else {
        (true, 4)
    };
    let rows = client
        .query(
            "SELECT url, count(*) FILTER (WHERE counts OR NOT $4) AS clicks,
                    count(*) FILTER (WHERE firsts & $5 <> 0)
             FROM events
             WHERE route = $1 AND at_ms >= $2 AND at_ms < $3 AND kind = 'click'
               AND url IS NOT NULL
             GROUP BY url HAVING count(*) FILTER (WHERE counts OR NOT $4) > 0
             ORDER BY clicks DESC, url",
            &[&q.route, &q.from_ms, &q.to_ms, &counting, &bit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(LinkClicks {
                url: r.try_get(0)?,
                clicks: r.try_get::<_, i64>(1)?.unsigned_abs(),
                unique_clicks: r.try_get::<_, i64>(2)?.unsigned_abs(),
            })
        })
        .collect()
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
