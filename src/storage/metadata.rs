//! The `copy_metadata` table: the `metadata` object a sending API request
//! carried (docs/send-api.md), stored once per relayed copy beside its
//! `messages` row, for the messages API and webhooks. SMTP mail has none:
//! no row. A trigger deletes the row with its copy (forget, retention).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use uuid::Uuid;

use super::writer::Record;
use super::{Backend, Storage, StorageError};

/// One copy's metadata: a JSON object of string values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyMetadata {
    pub copy_id: Uuid,
    pub metadata: Value,
}

impl Storage {
    /// Queues `metadata` for the copy `copy_id` without waiting: queued
    /// before the copy itself, it is committed with it or earlier.
    pub fn record_metadata(&self, copy_id: Uuid, metadata: Value) -> Result<(), StorageError> {
        let row = CopyMetadata { copy_id, metadata };
        self.send(Record::Metadata(Box::new(row)), None)
    }

    /// The metadata of each of `ids` that has some.
    pub async fn metadata(&self, ids: Vec<Uuid>) -> Result<HashMap<Uuid, Value>, StorageError> {
        super::read!(
            self,
            |c| {
                let mut out = HashMap::new();
                for id in ids {
                    if let Some(m) = get(c, id)? {
                        out.insert(id, m);
                    }
                }
                Ok(out)
            },
            |pg| pg.metadata(&ids)
        )
    }
}

pub(super) fn write(conn: &Connection, row: &CopyMetadata) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO copy_metadata (copy_id, json) VALUES (?1, ?2)")?
        .execute(params![row.copy_id.to_string(), row.metadata.to_string()])?;
    Ok(())
}

/// One copy's metadata; `None` without a row (or with unreadable JSON,
/// which this program never writes).
pub(super) fn get(conn: &Connection, id: Uuid) -> Result<Option<Value>, StorageError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT json FROM copy_metadata WHERE copy_id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_copy_s_metadata_is_read_back_and_deleted_with_the_copy() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let id = Uuid::now_v7();
        conn.execute(
            "INSERT INTO messages (id, route, sender, recipients, tags, links,
                                   relayed_at_ms, upstream_reply, status)
             VALUES (?1, 'r', 's', '[\"a@x\"]', '[]', '[]', 1, '250', 'relayed')",
            [id.to_string()],
        )
        .unwrap();
        let metadata = json!({ "customer": "42" });
        write(
            &conn,
            &CopyMetadata {
                copy_id: id,
                metadata: metadata.clone(),
            },
        )
        .unwrap();
        assert_eq!(get(&conn, id).unwrap(), Some(metadata));
        assert_eq!(get(&conn, Uuid::now_v7()).unwrap(), None, "SMTP: no row");
        conn.execute("DELETE FROM messages WHERE id = ?1", [id.to_string()])
            .unwrap();
        assert_eq!(get(&conn, id).unwrap(), None, "the trigger deleted it");
    }
}
