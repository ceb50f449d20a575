//! The event feed (`GET /v1/events`, `trackrelay events`): every event in
//! the order it was stored, by `event_feed.seq` (schema.rs), which an
//! AUTOINCREMENT key never gives twice, even after the newest events were
//! deleted. Only the writer inserts events, one transaction at a time, so
//! a reader that has seen position N has seen every event up to N: a
//! client that asks for "after N" again later misses none and gets none
//! twice.
//!
//! Each item comes with its observation (the raw IP and user agent while
//! kept) and its copy, when this database has them: what a webhook for the
//! event carries.

use rusqlite::{Connection, OptionalExtension, params};

use super::events::from_row as event_from_row;
use super::{Event, Observation, RelayedCopy, StorageError, messages, observations};
use crate::token::Kind;

/// Which events, in which order, from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    /// Only this route's events.
    pub route: Option<String>,
    /// Only opens or only clicks.
    pub kind: Option<Kind>,
    /// Only events that happened at or after this time (ms).
    pub since_ms: Option<i64>,
    /// Machine events too.
    pub include_machine: bool,
    /// Oldest first (by position) rather than newest first.
    pub ascending: bool,
    /// Only events after (ascending) or before (descending) this position.
    pub after: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// One event of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    /// Its position: pass it back as [`FeedFilter::after`].
    pub seq: i64,
    pub event: Event,
    /// Its observation, if still stored.
    pub observation: Option<Observation>,
    /// Its copy, if this database has it.
    pub copy: Option<RelayedCopy>,
}

/// Where a page starts, for both backends.
pub(super) enum Start {
    /// Past this position (exclusive).
    Past(i64),
    /// At the first position of an event at or after this time (ms),
    /// which the backend looks up.
    Since(i64),
}

impl FeedFilter {
    /// The `ORDER BY` direction of this filter's pages and how a position
    /// compares with its bound.
    pub(super) fn direction(&self) -> (&'static str, &'static str) {
        if self.ascending {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        }
    }

    /// Where the page starts. A plain bound (no "or none"), so the scan
    /// starts at the position.
    pub(super) fn start(&self) -> Start {
        match (self.after, self.ascending, self.since_ms) {
            (Some(seq), _, _) => Start::Past(seq),
            (None, true, Some(since_ms)) => Start::Since(since_ms),
            (None, true, None) => Start::Past(0),
            (None, false, _) => Start::Past(i64::MAX),
        }
    }
}

/// One page of the feed.
pub(super) fn page(conn: &Connection, f: &FeedFilter) -> Result<Vec<FeedItem>, StorageError> {
    let (order, position) = f.direction();
    let bound = match f.start() {
        Start::Past(seq) => seq,
        Start::Since(since_ms) => match first_since(conn, since_ms)? {
            Some(seq) => seq - 1,
            None => return Ok(Vec::new()),
        },
    };
    // Two fixed texts (one per order), so each is prepared once.
    let sql = format!(
        "SELECT f.seq AS feed_seq, e.* FROM event_feed f JOIN events e ON e.id = f.event_id
         WHERE f.seq {position} ?1
           AND (?2 IS NULL OR e.route = ?2)
           AND (?3 IS NULL OR e.kind = ?3)
           AND (?4 IS NULL OR e.at_ms >= ?4)
           AND (?5 OR e.counts = 1)
         ORDER BY f.seq {order}
         LIMIT ?6"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            bound,
            f.route,
            f.kind,
            f.since_ms,
            f.include_machine,
            f.limit
        ],
        |r| Ok((r.get::<_, i64>("feed_seq")?, event_from_row(r)?)),
    )?;
    let found: Vec<(i64, Event)> = rows.collect::<Result<_, _>>()?;
    let mut observation = conn.prepare_cached("SELECT * FROM observations WHERE id = ?1")?;
    let mut items: Vec<FeedItem> = Vec::with_capacity(found.len());
    for (seq, event) in found {
        let observation = observation
            .query_row([event.id.to_string()], observations::from_row)
            .optional()?;
        // A page often holds several events of one copy: read it once.
        let copy = match items
            .iter()
            .find(|i| i.event.message_id == event.message_id)
        {
            Some(i) => i.copy.clone(),
            None => messages::get(conn, event.message_id)?,
        };
        items.push(FeedItem {
            seq,
            event,
            observation,
            copy,
        });
    }
    Ok(items)
}

/// The first position of an event that happened at or after `since_ms`
/// (through the `events_at` index: events stored since then, not all).
/// Every such event is at or after it, whatever the order it came in.
fn first_since(conn: &Connection, since_ms: i64) -> Result<Option<i64>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT min(f.seq) FROM events e JOIN event_feed f ON f.event_id = e.id
         WHERE e.at_ms >= ?1",
    )?;
    Ok(stmt.query_row([since_ms], |r| r.get(0))?)
}

/// The position of the newest event, if any (where a feed that starts
/// "now" begins).
pub(super) fn last_seq(conn: &Connection) -> Result<Option<i64>, StorageError> {
    Ok(conn.query_row("SELECT max(seq) FROM event_feed", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::storage::{CopyStatus, events, schema};

    const T0: i64 = 1_767_261_600_000;

    fn copy() -> RelayedCopy {
        RelayedCopy {
            id: Uuid::now_v7(),
            route: "news".into(),
            sender: "a@example.com".into(),
            recipients: vec!["b@example.com".into()],
            recipient_id: None,
            message_id_header: None,
            tags: Vec::new(),
            links: Vec::new(),
            relayed_at_ms: T0,
            upstream_reply: "250 ok".into(),
            status: CopyStatus::Relayed,
        }
    }

    fn event(c: &RelayedCopy, at_ms: i64, human: bool) -> Event {
        Event {
            id: Uuid::now_v7(),
            message_id: c.id,
            recipient_id: None,
            kind: Kind::Open,
            link: None,
            url: None,
            at_ms,
            classification: if human { "genuine" } else { "privacy_proxy" }
                .parse()
                .unwrap(),
            counts_for_metrics: human,
            machine: !human,
            first: false,
            bot: json!({}),
            device_type: None,
            client_type: None,
            client_name: None,
        }
    }

    fn seqs(items: &[FeedItem]) -> Vec<i64> {
        items.iter().map(|i| i.seq).collect()
    }

    /// Stored order, not event time; positions never reused after the
    /// newest events are deleted; `since` finds late-stored events.
    #[test]
    fn positions_follow_the_order_stored_and_are_never_reused() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        let c = copy();
        messages::insert(&conn, &c).unwrap();
        // The third is stored last but happened first.
        let list = [
            event(&c, T0 + 20, true),
            event(&c, T0 + 30, false),
            event(&c, T0 + 10, true),
        ];
        for e in &list {
            events::insert(&conn, e).unwrap();
        }
        let all = FeedFilter {
            include_machine: true,
            ascending: true,
            limit: 10,
            ..FeedFilter::default()
        };
        let items = page(&conn, &all).unwrap();
        assert_eq!(seqs(&items), [1, 2, 3]);
        assert_eq!(items[2].event, list[2]);
        assert_eq!(items[0].copy.as_ref().map(|c| c.id), Some(c.id));
        let newest = FeedFilter {
            ascending: false,
            include_machine: false,
            ..all.clone()
        };
        assert_eq!(seqs(&page(&conn, &newest).unwrap()), [3, 1]);
        let since = FeedFilter {
            since_ms: Some(T0 + 15),
            ..all.clone()
        };
        assert_eq!(seqs(&page(&conn, &since).unwrap()), [1, 2]);
        let after = FeedFilter {
            after: Some(1),
            ..all.clone()
        };
        assert_eq!(seqs(&page(&conn, &after).unwrap()), [2, 3]);
        conn.execute("DELETE FROM events WHERE id = ?1", [list[2].id.to_string()])
            .unwrap();
        let late = event(&c, T0 + 40, true);
        events::insert(&conn, &late).unwrap();
        let after = FeedFilter {
            after: Some(3),
            ..all
        };
        let items = page(&conn, &after).unwrap();
        assert_eq!(
            seqs(&items),
            [4],
            "the deleted event's position is not reused"
        );
        assert_eq!(last_seq(&conn).unwrap(), Some(4));
    }

    /// A page scans the feed from its position, whatever the filters.
    #[test]
    fn a_page_starts_at_its_position() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        for order in ["ASC", "DESC"] {
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT f.seq FROM event_feed f JOIN events e ON e.id = f.event_id
                 WHERE f.seq > ?1 AND (?2 IS NULL OR e.route = ?2) AND (?3 IS NULL OR e.kind = ?3)
                   AND (?4 IS NULL OR e.at_ms >= ?4) AND (?5 OR e.counts = 1)
                 ORDER BY f.seq {order} LIMIT 5"
            );
            let plan: Vec<String> = conn
                .prepare(&sql)
                .unwrap()
                .query_map(params![1, "news", "open", 5, false], |r| r.get(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                plan[0].contains("SEARCH f USING INTEGER PRIMARY KEY"),
                "{plan:?}"
            );
            assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
        }
    }

    /// Events stored before the feed existed get positions in the order
    /// they were stored.
    #[test]
    fn the_migration_numbers_stored_events() {
        let mut conn = Connection::open_in_memory().unwrap();
        let before = schema::version_before("CREATE TABLE event_feed");
        schema::migrate_to(&mut conn, before).unwrap();
        let c = copy();
        messages::insert(&conn, &c).unwrap();
        let list = [event(&c, T0 + 5, true), event(&c, T0 + 1, false)];
        for e in &list {
            events::insert(&conn, e).unwrap();
        }
        schema::migrate(&mut conn).unwrap();
        let all = FeedFilter {
            include_machine: true,
            ascending: true,
            limit: 10,
            ..FeedFilter::default()
        };
        let ids: Vec<Uuid> = page(&conn, &all)
            .unwrap()
            .iter()
            .map(|i| i.event.id)
            .collect();
        assert_eq!(ids, [list[0].id, list[1].id]);
    }
}
