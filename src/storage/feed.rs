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

/// One page of the feed.
pub(super) fn page(conn: &Connection, f: &FeedFilter) -> Result<Vec<FeedItem>, StorageError> {
    let order = if f.ascending { "ASC" } else { "DESC" };
    let position = if f.ascending { ">" } else { "<" };
    // Two fixed texts (one per order), so each is prepared once.
    let sql = format!(
        "SELECT f.seq AS feed_seq, e.* FROM event_feed f JOIN events e ON e.id = f.event_id
         WHERE (?1 IS NULL OR f.seq {position} ?1)
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
            f.after,
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

/// The position of the newest event, if any (where a feed that starts
/// "now" begins).
pub(super) fn last_seq(conn: &Connection) -> Result<Option<i64>, StorageError> {
    Ok(conn.query_row("SELECT max(seq) FROM event_feed", [], |r| r.get(0))?)
}
