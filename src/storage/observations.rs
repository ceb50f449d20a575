//! The `observations` table: one row per recorded hit on a tracking URL,
//! raw (exact IP, user agent, headers), before any classification.

use std::net::IpAddr;

use rusqlite::types::Type;
use rusqlite::{CachedStatement, Connection, Row, params};
use uuid::Uuid;

use super::StorageError;
use super::columns::{ip_column, ip_text};
use crate::token::Kind;

/// One hit as the tracking server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Time-ordered id (UUIDv7).
    pub id: Uuid,
    /// The relayed copy named by the token.
    pub message_id: Uuid,
    /// Open or click, from the token.
    pub kind: Kind,
    /// Opaque recipient id from the token (base64url), if any.
    pub recipient_id: Option<String>,
    /// Link index (clicks).
    pub link: Option<u16>,
    /// Destination URL (clicks).
    pub url: Option<String>,
    /// When the request arrived, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// `GET` or `HEAD`.
    pub method: String,
    /// The Host header the request came with.
    pub host: String,
    /// The client's address (after trusted-proxy resolution); `None` once
    /// minimised (SPEC §9).
    pub ip: Option<IpAddr>,
    /// The User-Agent header (at most 1 KiB kept).
    pub user_agent: Option<String>,
    /// Every request header, in order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// Id of the key that verified the token.
    pub key_id: String,
}

/// The insert statement, prepared once per connection and taken once per
/// batch by the writer (see [`insert`]).
pub(super) fn insert_statement(conn: &Connection) -> rusqlite::Result<CachedStatement<'_>> {
    conn.prepare_cached(
        "INSERT INTO observations (id, message_id, kind, recipient_id, link, url, at_ms,
                                   method, host, ip, user_agent, headers, key_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
}

/// Inserts one observation with `stmt` from [`insert_statement`] (inside
/// the writer's transaction).
pub(super) fn insert(stmt: &mut CachedStatement<'_>, o: &Observation) -> rusqlite::Result<()> {
    // Serialising strings cannot fail.
    let headers = serde_json::to_string(&o.headers).expect("header pairs serialise");
    stmt.execute(params![
        o.id.to_string(),
        o.message_id.to_string(),
        o.kind,
        o.recipient_id,
        o.link,
        o.url,
        o.at_ms,
        o.method,
        o.host,
        ip_text(o.ip),
        o.user_agent,
        headers,
        o.key_id,
    ])?;
    Ok(())
}

/// Every observation of one copy, oldest first.
pub(super) fn for_message(
    conn: &Connection,
    message_id: Uuid,
) -> Result<Vec<Observation>, StorageError> {
    let mut stmt =
        conn.prepare_cached("SELECT * FROM observations WHERE message_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([message_id.to_string()], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many observations are stored (for tests and the benchmark).
pub(super) fn count(conn: &Connection) -> Result<u64, StorageError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM observations", [], |r| r.get(0))?;
    Ok(n.unsigned_abs())
}

pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<Observation> {
    let headers: String = row.get("headers")?;
    let headers =
        serde_json::from_str(&headers).map_err(|e| conversion(row, "headers", e.to_string()))?;
    Ok(Observation {
        id: super::uuid_column(row, "id")?,
        message_id: super::uuid_column(row, "message_id")?,
        kind: row.get("kind")?,
        recipient_id: row.get("recipient_id")?,
        link: row.get("link")?,
        url: row.get("url")?,
        at_ms: row.get("at_ms")?,
        method: row.get("method")?,
        host: row.get("host")?,
        ip: ip_column(row, "ip")?,
        user_agent: row.get("user_agent")?,
        headers,
        key_id: row.get("key_id")?,
    })
}

fn conversion(row: &Row<'_>, name: &str, message: String) -> rusqlite::Error {
    let index = row.as_ref().column_index(name).unwrap_or(0);
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, message.into())
}
