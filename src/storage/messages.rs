//! The `messages` table (one row per relayed copy) and its recipient index
//! `message_recipients`, which the API's `recipient=` filter uses.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::{RelayedCopy, StorageError};

/// Which copies to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Only this route.
    pub route: Option<String>,
    /// Any recipient of the copy, compared without case.
    pub recipient: Option<String>,
    /// Most copies returned.
    pub limit: u32,
}

/// A copy's engagement from its counting events: 2 when clicked, 1 when
/// opened, NULL when neither. The status moves only on counting events.
const ENGAGEMENT: &str = "SELECT max(CASE e.kind WHEN 'click' THEN 2 ELSE 1 END) FROM events e
     WHERE e.message_id = m.id AND e.counts = 1";

/// Inserts one copy and its recipient index rows (inside the writer's
/// transaction).
pub(super) fn insert(conn: &Connection, copy: &RelayedCopy) -> rusqlite::Result<()> {
    let id = copy.id.to_string();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO messages (id, route, sender, recipients, recipient_id, message_id_header,
                               tags, links, relayed_at_ms, upstream_reply, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    stmt.execute(params![
        id,
        copy.route,
        copy.sender,
        json(&copy.recipients),
        copy.recipient_id,
        copy.message_id_header,
        json(&copy.tags),
        json(&copy.links),
        copy.relayed_at_ms,
        copy.upstream_reply,
        copy.status,
    ])?;
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO message_recipients (address, message_id) VALUES (?1, ?2)",
    )?;
    for address in &copy.recipients {
        stmt.execute(params![address.trim().to_lowercase(), id])?;
    }
    Ok(())
}

/// Copies matching `filter`, newest first.
pub(super) fn list(
    conn: &Connection,
    filter: &MessageFilter,
) -> Result<Vec<RelayedCopy>, StorageError> {
    let recipient = filter.recipient.as_ref().map(|r| r.trim().to_lowercase());
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT m.*, ({ENGAGEMENT}) AS engagement FROM messages m
         WHERE (?1 IS NULL OR m.route = ?1)
           AND (?2 IS NULL OR m.id IN (SELECT message_id FROM message_recipients WHERE address = ?2))
         ORDER BY m.relayed_at_ms DESC, m.id DESC
         LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![filter.route, recipient, filter.limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One copy by id.
pub(super) fn get(conn: &Connection, id: Uuid) -> Result<Option<RelayedCopy>, StorageError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT m.*, ({ENGAGEMENT}) AS engagement FROM messages m WHERE m.id = ?1"
    ))?;
    Ok(stmt.query_row([id.to_string()], from_row).optional()?)
}

fn json(list: &[String]) -> String {
    // Serialising strings cannot fail.
    serde_json::to_string(list).expect("a list of strings serialises")
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<RelayedCopy> {
    Ok(RelayedCopy {
        id: super::uuid_column(row, "id")?,
        route: row.get("route")?,
        sender: row.get("sender")?,
        recipients: json_column(row, "recipients")?,
        recipient_id: row.get("recipient_id")?,
        message_id_header: row.get("message_id_header")?,
        tags: json_column(row, "tags")?,
        links: json_column(row, "links")?,
        relayed_at_ms: row.get("relayed_at_ms")?,
        upstream_reply: row.get("upstream_reply")?,
        status: match row.get::<_, Option<i64>>("engagement")? {
            Some(2) => "clicked".into(),
            Some(1) => "opened".into(),
            _ => row.get("status")?,
        },
    })
}

fn json_column(row: &Row<'_>, name: &str) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(name)?;
    serde_json::from_str(&text).map_err(|e| {
        let index = row.as_ref().column_index(name).unwrap_or(0);
        rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e))
    })
}
