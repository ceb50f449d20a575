//! What the dashboard (`api/dashboard`) reads beyond the API's figures:
//! a route's events split by classification (human vs machine share) and
//! its most recent events with the raw signals of their observations.
//!
//! The time range and route are the API's [`StatsQuery`], so the
//! dashboard's figures cover exactly what `/v1/routes/{id}/stats` covers.

use rusqlite::{Connection, params};

use super::events::from_row as event_from_row;
use super::{Event, StatsQuery, StorageError};

/// A route's events of one classification over a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCounts {
    /// `bot.classification` (genuine, privacy_proxy, security_scanner, …).
    pub classification: String,
    /// `bot.machine`: excluded from the default (human) figures.
    pub machine: bool,
    pub opens: u64,
    pub clicks: u64,
}

/// One of a route's recent events, with what its observation still has
/// (the raw IP and user agent are gone once minimised, SPEC §9).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteEvent {
    pub event: Event,
    pub method: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Events of `q.route` in `[q.from_ms, q.to_ms)` per classification,
/// human and machine alike (`q.include_machine` is not used: the share
/// needs both), the human ones first, then by number of events.
pub(super) fn classifications(
    conn: &Connection,
    q: &StatsQuery,
) -> Result<Vec<ClassCounts>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.classification, max(e.machine),
                sum(e.kind = 'open'), sum(e.kind = 'click')
         FROM events e JOIN messages m ON m.id = e.message_id
         WHERE m.route = ?1 AND e.at_ms >= ?2 AND e.at_ms < ?3
         GROUP BY e.classification
         ORDER BY max(e.machine), count(*) DESC, e.classification",
    )?;
    let rows = stmt.query_map(params![q.route, q.from_ms, q.to_ms], |r| {
        Ok(ClassCounts {
            classification: r.get(0)?,
            machine: r.get(1)?,
            opens: r.get::<_, i64>(2)?.unsigned_abs(),
            clicks: r.get::<_, i64>(3)?.unsigned_abs(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest `limit` events of `q.route` in `[q.from_ms, q.to_ms)`,
/// newest first; machine events only when `q.include_machine`.
pub(super) fn recent_events(
    conn: &Connection,
    q: &StatsQuery,
    limit: u32,
) -> Result<Vec<RouteEvent>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.*, o.method AS o_method, o.ip AS o_ip, o.user_agent AS o_user_agent
         FROM events e JOIN messages m ON m.id = e.message_id
         LEFT JOIN observations o ON o.id = e.id
         WHERE m.route = ?1 AND e.at_ms >= ?2 AND e.at_ms < ?3 AND (?4 OR e.counts = 1)
         ORDER BY e.at_ms DESC, e.id DESC
         LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![q.route, q.from_ms, q.to_ms, q.include_machine, limit],
        |r| {
            Ok(RouteEvent {
                event: event_from_row(r)?,
                method: r.get("o_method")?,
                // A minimised observation keeps an empty IP.
                ip: r
                    .get::<_, Option<String>>("o_ip")?
                    .filter(|ip| !ip.is_empty()),
                user_agent: r.get("o_user_agent")?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}
