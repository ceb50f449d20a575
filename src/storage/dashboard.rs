//! What the dashboard (`api/dashboard`) reads beyond the API's figures:
//! a route's events split by classification (human vs machine share) and
//! its most recent events with the raw signals of their observations.
//!
//! The time range and route are the API's [`StatsQuery`], so the
//! dashboard's figures cover exactly what `/v1/routes/{id}/stats` covers.

use rusqlite::{Connection, params};

use std::net::IpAddr;

use super::columns::ip_column;
use super::events::from_row as event_from_row;
use super::{Event, StatsQuery, StorageError};
use crate::classify::Classification;

/// A route's events of one classification over a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCounts {
    /// `bot.classification`.
    pub classification: Classification,
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
    /// `None` once minimised.
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// How many of a range's newest events the split by classification reads:
/// it has no rollup, so it is a sample, bounded, that stays fast at any
/// size (all of them on 10 million events took 4.7 s warm for a route with
/// 1.3 million in its 30 days; the newest 10,000 take milliseconds).
pub const CLASSIFIED_MAX: u32 = 10_000;

/// The newest [`CLASSIFIED_MAX`] events of `q.route` in
/// `[q.from_ms, q.to_ms)` per classification, human and machine alike
/// (`q.include_machine` is not used: the share needs both), the human ones
/// first, then by number of events.
pub(super) fn classifications(
    conn: &Connection,
    q: &StatsQuery,
) -> Result<Vec<ClassCounts>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT classification, max(machine), sum(kind = 'open'), sum(kind = 'click')
         FROM (SELECT e.classification, e.machine, e.kind FROM events e
               WHERE e.route = ?1 AND e.at_ms >= ?2 AND e.at_ms < ?3
               ORDER BY e.at_ms DESC LIMIT ?4)
         GROUP BY classification
         ORDER BY max(machine), count(*) DESC, classification",
    )?;
    let rows = stmt.query_map(params![q.route, q.from_ms, q.to_ms, CLASSIFIED_MAX], |r| {
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
         FROM events e
         LEFT JOIN observations o ON o.id = e.id
         WHERE e.route = ?1 AND e.at_ms >= ?2 AND e.at_ms < ?3 AND (?4 OR e.counts = 1)
         ORDER BY e.at_ms DESC, e.id DESC
         LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![q.route, q.from_ms, q.to_ms, q.include_machine, limit],
        |r| {
            Ok(RouteEvent {
                event: event_from_row(r)?,
                method: r.get("o_method")?,
                ip: ip_column(r, "o_ip")?,
                user_agent: r.get("o_user_agent")?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::storage::{RelayedCopy, events, messages, schema};
    use crate::token::Kind;

    const T0: i64 = 1_767_261_600_000;

    fn copy(route: &str) -> RelayedCopy {
        RelayedCopy {
            id: Uuid::now_v7(),
            route: route.into(),
            sender: "a@example.com".into(),
            recipients: vec!["b@example.com".into()],
            recipient_id: None,
            message_id_header: None,
            tags: Vec::new(),
            links: vec!["https://example.com/".into()],
            relayed_at_ms: T0,
            upstream_reply: "250 ok".into(),
            status: crate::storage::CopyStatus::Relayed,
        }
    }

    fn event(c: &RelayedCopy, kind: Kind, at_ms: i64, class: &str, machine: bool) -> Event {
        Event {
            id: Uuid::now_v7(),
            message_id: c.id,
            recipient_id: None,
            kind,
            link: (kind == Kind::Click).then_some(0),
            url: (kind == Kind::Click).then(|| c.links[0].clone()),
            at_ms,
            classification: class.parse().unwrap(),
            counts_for_metrics: !machine,
            machine,
            first: false,
            bot: json!({ "reason_codes": ["browser"] }),
            device_type: None,
            client_type: None,
            client_name: None,
        }
    }

    /// Two routes' copies with human and machine events, one outside
    /// the range.
    fn seeded() -> (Connection, Vec<Event>) {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        let (news, other) = (copy("news"), copy("other"));
        let list = vec![
            event(&news, Kind::Open, T0 + 1, "genuine", false),
            event(&news, Kind::Click, T0 + 2, "genuine", false),
            event(&news, Kind::Open, T0 + 3, "privacy_proxy", true),
            event(&news, Kind::Click, T0 + 4, "security_scanner", true),
            event(&news, Kind::Click, T0 + 5, "security_scanner", true),
            event(&news, Kind::Open, T0 + 10_000, "genuine", false),
            event(&other, Kind::Open, T0 + 1, "genuine", false),
        ];
        for c in [&news, &other] {
            messages::insert(&conn, c).unwrap();
        }
        for e in &list {
            events::insert(&conn, e).unwrap();
        }
        (conn, list)
    }

    fn query(include_machine: bool) -> StatsQuery {
        StatsQuery {
            route: "news".into(),
            from_ms: T0,
            to_ms: T0 + 10_000,
            bucket_ms: 3_600_000,
            include_machine,
        }
    }

    #[test]
    fn classifications_count_human_and_machine_events_of_the_route() {
        let (conn, _) = seeded();
        let counts: Vec<(String, bool, u64, u64)> = classifications(&conn, &query(false))
            .unwrap()
            .into_iter()
            .map(|c| {
                (
                    c.classification.as_str().to_owned(),
                    c.machine,
                    c.opens,
                    c.clicks,
                )
            })
            .collect();
        assert_eq!(
            counts,
            [
                ("genuine".into(), false, 1, 1),
                ("security_scanner".into(), true, 0, 2),
                ("privacy_proxy".into(), true, 1, 0),
            ]
        );
    }

    #[test]
    fn the_split_reads_only_the_newest_events_of_the_range() {
        let (conn, _) = seeded();
        let news = copy("news");
        messages::insert(&conn, &news).unwrap();
        // CLASSIFIED_MAX machine opens, all newer than the seeded events.
        for i in 0..i64::from(CLASSIFIED_MAX) {
            let e = event(&news, Kind::Open, T0 + 100 + i % 9_000, "image_proxy", true);
            events::insert(&conn, &e).unwrap();
        }
        let counts: Vec<(String, u64, u64)> = classifications(&conn, &query(false))
            .unwrap()
            .into_iter()
            .map(|c| (c.classification.as_str().to_owned(), c.opens, c.clicks))
            .collect();
        assert_eq!(
            counts,
            [("image_proxy".into(), u64::from(CLASSIFIED_MAX), 0)]
        );
    }

    #[test]
    fn recent_events_are_newest_first_and_human_unless_asked() {
        let (conn, list) = seeded();
        let ids = |include_machine, limit| -> Vec<Uuid> {
            recent_events(&conn, &query(include_machine), limit)
                .unwrap()
                .into_iter()
                .map(|r| r.event.id)
                .collect()
        };
        assert_eq!(ids(false, 10), [list[1].id, list[0].id]);
        assert_eq!(ids(true, 3), [list[4].id, list[3].id, list[2].id]);
        // No observation stored for these events: no raw signals.
        let first = recent_events(&conn, &query(true), 1).unwrap().remove(0);
        assert_eq!((first.ip, first.user_agent), (None, None));
        assert_eq!(first.event.bot["reason_codes"][0], "browser");
    }
}
