//! The `events` table: one row per classified observation (SPEC §6), with
//! the verdict, and the queries the classification pipeline needs (which
//! observations still wait for a verdict, what a message already has).
//!
//! An event has its observation's id, so "is it classified" is "is there an
//! event with that id". A message's engagement (opened, clicked) is read
//! from its counting events, never stored twice.

use std::net::IpAddr;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::columns::ip_column;
use super::{Observation, RelayedCopy, StorageError, messages, observations};
use crate::classify::{Classification, ClientType, DeviceType};
use crate::token::Kind;

/// A classified observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The observation's id (UUIDv7).
    pub id: Uuid,
    /// The relayed copy named by the token.
    pub message_id: Uuid,
    /// Opaque recipient id from the token, if any.
    pub recipient_id: Option<String>,
    /// Open or click.
    pub kind: Kind,
    /// Link index and destination (clicks).
    pub link: Option<u16>,
    pub url: Option<String>,
    /// When the hit arrived, ms since the Unix epoch.
    pub at_ms: i64,
    /// `bot.classification`.
    pub classification: Classification,
    /// `bot.counts_for_metrics`.
    pub counts_for_metrics: bool,
    /// `bot.machine`.
    pub machine: bool,
    /// The first counting open (or click) of this recipient for this
    /// message: `first_open` / `first_click`.
    pub first: bool,
    /// The whole bot object, as the API and webhooks show it.
    pub bot: serde_json::Value,
    pub device_type: Option<DeviceType>,
    pub client_type: Option<ClientType>,
    pub client_name: Option<String>,
}

/// Inserts one event (inside the writer's transaction). An observation
/// classified twice (a restart between the verdict and its commit) keeps
/// its first event. `first` (first_open / first_click) is kept only when
/// no counting event of its kind for the recipient is stored yet: one per
/// copy and recipient, as PostgreSQL's claims make it
/// (storage/postgres/events.rs).
///
/// The row also gets its copy's route and `firsts`, the unique counts it
/// is the first of for its copy and recipient (bits: 1 first counting
/// event of its kind, 2 first of its kind, 4 and 8 the same for a click's
/// URL; see the migration in schema.rs): the route statistics' rollups
/// are kept from them by triggers (storage/stats.rs).
pub(super) fn insert(conn: &Connection, e: &Event) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO events (id, message_id, recipient_id, kind, link, url, at_ms,
             classification, counts, machine, first, bot, device_type, client_type, client_name,
             route, firsts)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
             ?11 AND ?9 AND NOT EXISTS (SELECT 1 FROM events WHERE message_id = ?2
                  AND kind = ?4 AND recipient_id IS ?3 AND counts = 1),
             ?12, ?13, ?14, ?15,
             (SELECT route FROM messages WHERE id = ?2),
             (CASE WHEN ?9 AND NOT EXISTS (SELECT 1 FROM events WHERE message_id = ?2
                  AND kind = ?4 AND recipient_id IS ?3 AND counts = 1) THEN 1 ELSE 0 END)
             | (CASE WHEN NOT EXISTS (SELECT 1 FROM events WHERE message_id = ?2
                  AND kind = ?4 AND recipient_id IS ?3) THEN 2 ELSE 0 END)
             | (CASE WHEN ?4 = 'click' AND ?6 IS NOT NULL AND ?9 AND NOT EXISTS (
                  SELECT 1 FROM events WHERE message_id = ?2 AND kind = ?4
                  AND recipient_id IS ?3 AND url = ?6 AND counts = 1) THEN 4 ELSE 0 END)
             | (CASE WHEN ?4 = 'click' AND ?6 IS NOT NULL AND NOT EXISTS (
                  SELECT 1 FROM events WHERE message_id = ?2 AND kind = ?4
                  AND recipient_id IS ?3 AND url = ?6) THEN 8 ELSE 0 END)",
    )?;
    stmt.execute(params![
        e.id.to_string(),
        e.message_id.to_string(),
        e.recipient_id,
        e.kind,
        e.link,
        e.url,
        e.at_ms,
        e.classification,
        e.counts_for_metrics,
        e.machine,
        e.first,
        e.bot.to_string(),
        e.device_type,
        e.client_type,
        e.client_name,
    ])?;
    Ok(())
}

/// Every event of one copy, oldest first.
pub(super) fn for_message(conn: &Connection, message_id: Uuid) -> Result<Vec<Event>, StorageError> {
    let mut stmt =
        conn.prepare_cached("SELECT * FROM events WHERE message_id = ?1 ORDER BY at_ms, id")?;
    let rows = stmt.query_map([message_id.to_string()], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Observations that arrived after `from_ms` and at or before `to_ms` and
/// have no event yet, oldest first, at most `limit`.
pub(super) fn unclassified(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
    limit: u32,
) -> Result<Vec<Observation>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.* FROM observations o
         WHERE o.at_ms > ?1 AND o.at_ms <= ?2
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = o.id)
         ORDER BY o.at_ms, o.id
         LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![from_ms, to_ms, limit], observations::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One hit on a copy, as much as the classifier's context needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitRow {
    pub id: Uuid,
    pub at_ms: i64,
    pub kind: Kind,
    /// `None` once minimised.
    pub ip: Option<IpAddr>,
    pub link: Option<u16>,
}

/// Most hits [`hits_between`] returns: a copy hit thousands of times a
/// second (message-level tokens of a big send) gets a partial context
/// rather than a pass that reads them all.
const HITS_MAX: u32 = 10_000;

/// The hits on one copy that arrived in `[from_ms, to_ms]`, oldest first,
/// at most [`HITS_MAX`].
/// Observation ids are UUIDv7, whose first 48 bits are the arrival time,
/// so the `(message_id, id)` index finds the window without reading the
/// copy's other hits (a copy may have hundreds of thousands).
pub(super) fn hits_between(
    conn: &Connection,
    message_id: Uuid,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<HitRow>, StorageError> {
    // The id is taken a moment before the time is read: a second of slack.
    let (low, high) = (v7_bound(from_ms - 1000, 0x00), v7_bound(to_ms + 1000, 0xff));
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, kind, ip, link FROM observations
         WHERE message_id = ?1 AND id >= ?2 AND id <= ?3 AND at_ms >= ?4 AND at_ms <= ?5
         ORDER BY at_ms, id
         LIMIT ?6",
    )?;
    let rows = stmt.query_map(
        params![message_id.to_string(), low, high, from_ms, to_ms, HITS_MAX],
        |row| {
            Ok(HitRow {
                id: super::uuid_column(row, "id")?,
                at_ms: row.get("at_ms")?,
                kind: row.get("kind")?,
                ip: ip_column(row, "ip")?,
                link: row.get("link")?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The text of the smallest (`fill` 0x00) or largest (0xff) UUIDv7 of
/// millisecond `ms`.
fn v7_bound(ms: i64, fill: u8) -> String {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0).min((1 << 48) - 1);
    let mut bytes = [fill; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes).to_string()
}

/// What the pipeline reads about one copy to judge its waiting hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyContext {
    /// Its hits in the asked window, oldest first (at most [`HITS_MAX`]).
    pub hits: Vec<HitRow>,
    /// Its first open (any hit).
    pub first_open_ms: Option<i64>,
    /// The copy itself, if this database has it.
    pub relayed: Option<RelayedCopy>,
    /// Its sending API `metadata`, if any.
    pub metadata: Option<serde_json::Value>,
    /// (kind, recipient id) pairs that already have a counting event.
    pub counted: Vec<(Kind, Option<String>)>,
}

/// The context of each `(copy, from_ms, to_ms)`, in order, read in one go.
pub(super) fn contexts(
    conn: &Connection,
    wanted: &[(Uuid, i64, i64)],
) -> Result<Vec<CopyContext>, StorageError> {
    let mut counted = conn.prepare_cached(
        "SELECT DISTINCT kind, recipient_id FROM events WHERE message_id = ?1 AND counts = 1",
    )?;
    let mut out = Vec::with_capacity(wanted.len());
    for &(id, from_ms, to_ms) in wanted {
        let text = id.to_string();
        out.push(CopyContext {
            hits: hits_between(conn, id, from_ms, to_ms)?,
            first_open_ms: first_open_at(conn, id)?,
            relayed: messages::get(conn, id)?,
            metadata: super::metadata::get(conn, id)?,
            counted: counted
                .query_map([&text], |r| Ok((r.get("kind")?, r.get("recipient_id")?)))?
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(out)
}

/// When the copy was first opened, if it was (any hit, machine or not).
pub(super) fn first_open_at(
    conn: &Connection,
    message_id: Uuid,
) -> Result<Option<i64>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at_ms FROM observations WHERE message_id = ?1 AND kind = 'open'
         ORDER BY id LIMIT 1",
    )?;
    Ok(stmt
        .query_row([message_id.to_string()], |r| r.get(0))
        .optional()?)
}

pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let bot: String = row.get("bot")?;
    let bot = serde_json::from_str(&bot).map_err(|e| {
        let index = row.as_ref().column_index("bot").unwrap_or(0);
        rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e))
    })?;
    Ok(Event {
        id: super::uuid_column(row, "id")?,
        message_id: super::uuid_column(row, "message_id")?,
        recipient_id: row.get("recipient_id")?,
        kind: row.get("kind")?,
        link: row.get("link")?,
        url: row.get("url")?,
        at_ms: row.get("at_ms")?,
        classification: row.get("classification")?,
        counts_for_metrics: row.get("counts")?,
        machine: row.get("machine")?,
        first: row.get("first")?,
        bot,
        device_type: row.get("device_type")?,
        client_type: row.get("client_type")?,
        client_name: row.get("client_name")?,
    })
}
