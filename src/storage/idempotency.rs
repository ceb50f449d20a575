//! The `send_idempotency` table: the first response to each
//! `Idempotency-Key` of the sending API (`send::idempotency`), per token,
//! with a digest of the request body, so a retry within the window gets
//! the same answer without sending again, on any node of the database.

use rusqlite::{Connection, OptionalExtension, params};

use super::StorageError;

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    /// SHA-256 of the sending token (the key's namespace; never the token).
    pub token_digest: [u8; 32],
    pub key: String,
    /// SHA-256 of the request body the key was first used with.
    pub body_digest: [u8; 32],
    pub status: u16,
    /// The JSON answered.
    pub body: Vec<u8>,
    pub created_at_ms: i64,
}

/// Stores `r` (replacing an expired one of the same key) and deletes rows
/// older than `r.created_at_ms - keep_ms`.
pub(super) fn write(
    conn: &Connection,
    r: &IdempotentResponse,
    keep_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO send_idempotency
             (token_digest, key, body_digest, status, body, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        r.token_digest,
        r.key,
        r.body_digest,
        r.status,
        r.body,
        r.created_at_ms
    ])?;
    conn.prepare_cached("DELETE FROM send_idempotency WHERE created_at_ms < ?1")?
        .execute([r.created_at_ms.saturating_sub(keep_ms)])?;
    Ok(())
}

/// The stored response of `key` for this token, if any.
pub(super) fn get(
    conn: &Connection,
    token_digest: [u8; 32],
    key: &str,
) -> Result<Option<IdempotentResponse>, StorageError> {
    let row = conn
        .prepare_cached(
            "SELECT body_digest, status, body, created_at_ms FROM send_idempotency
             WHERE token_digest = ?1 AND key = ?2",
        )?
        .query_row(params![token_digest, key], |r| {
            Ok(IdempotentResponse {
                token_digest,
                key: key.to_owned(),
                body_digest: r.get(0)?,
                status: r.get(1)?,
                body: r.get(2)?,
                created_at_ms: r.get(3)?,
            })
        })
        .optional()?;
    Ok(row)
}
