//! The SQL of retention (SPEC §9): minimising old observations, deleting
//! old copies, forgetting a recipient. The policy (when, which key, how
//! fast) is `crate::retention`'s; this file only reads and writes rows.
//!
//! It works on a connection of its own ([`Maintenance`]), never through
//! the writer's queue, and never in one long transaction: every batch is
//! read without a lock, then written in its own short `BEGIN IMMEDIATE`
//! transaction, so the tracking server's writer waits at most one batch
//! (its busy timeout is longer than a batch takes). `secure_delete` is on
//! for this connection: the bytes a minimised or deleted row leaves behind
//! in its page are overwritten with zeros, not left as free space.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{StorageError, schema};

/// How long a maintenance statement waits for the writer's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Observations not yet minimised at or after this time (ms) may exist;
/// everything earlier is minimised. Kept in `retention_state`.
const WATERMARK: &str = "raw_signals_minimised_before_ms";

/// A read-write connection for retention work, beside the writer.
pub struct Maintenance {
    conn: Connection,
}

/// Where a minimisation pass is: the last row done, by `(at_ms, rowid)`,
/// the order of the `observations_at` index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at_ms: i64,
    pub rowid: i64,
}

/// One observation as minimisation sees it.
#[derive(Debug, Clone)]
pub struct RawRow {
    pub rowid: i64,
    pub at_ms: i64,
    /// The exact IP (`None` once minimised).
    pub ip: Option<std::net::IpAddr>,
    /// Not minimised yet.
    pub raw: bool,
}

/// Rows removed by [`Maintenance::delete_before`] or
/// [`Maintenance::forget`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Relayed copies deleted.
    pub copies: u64,
    /// Copies that had other recipients too: kept, the address taken out.
    pub copies_edited: u64,
    pub observations: u64,
    pub events: u64,
    /// Undelivered webhook deliveries (see [`forget_webhook_deliveries`]).
    pub webhook_deliveries: u64,
}

impl Removed {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: Removed) {
        self.copies += other.copies;
        self.copies_edited += other.copies_edited;
        self.observations += other.observations;
        self.events += other.events;
        self.webhook_deliveries += other.webhook_deliveries;
    }

    /// True when nothing was removed.
    pub fn is_empty(&self) -> bool {
        *self == Removed::default()
    }
}

impl Maintenance {
    /// Opens the database at `path` (migrating it, as the server would).
    pub fn open(path: &Path) -> Result<Maintenance, StorageError> {
        let open_err = |source| StorageError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Checkpoints are the checkpoint thread's (or [`Self::checkpoint`]).
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        // Freed bytes are zeroed: an old IP must not stay in the file.
        conn.pragma_update(None, "secure_delete", true)
            .map_err(open_err)?;
        schema::migrate(&mut conn)?;
        Ok(Maintenance { conn })
    }

    /// Observations before this time (ms) are all minimised already.
    pub fn watermark(&self) -> Result<i64, StorageError> {
        let ms = self
            .conn
            .query_row(
                "SELECT value FROM retention_state WHERE name = ?1",
                [WATERMARK],
                |r| r.get(0),
            )
            .optional()?;
        Ok(ms.unwrap_or(i64::MIN))
    }

    /// Records that every observation before `ms` is minimised (never
    /// moves back).
    pub fn set_watermark(&self, ms: i64) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT INTO retention_state (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
            params![WATERMARK, ms],
        )?;
        Ok(())
    }

    /// How many observations of `[from_ms, before_ms)` still hold raw signals.
    pub fn count_raw(&self, from_ms: i64, before_ms: i64) -> Result<u64, StorageError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM observations
             WHERE at_ms >= ?1 AND at_ms < ?2 AND ip_hash IS NULL",
            params![from_ms, before_ms],
            |r| r.get(0),
        )?;
        Ok(n.unsigned_abs())
    }

    /// The next `limit` observations after `cursor` and before
    /// `before_ms`, in index order, minimised or not (a plain read, no
    /// lock held; the caller hashes the raw ones and moves the cursor).
    pub fn after(
        &self,
        cursor: Cursor,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<RawRow>, StorageError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT rowid, at_ms, ip, ip_hash IS NULL AS raw FROM observations
             WHERE at_ms >= ?1 AND (at_ms > ?1 OR rowid > ?2) AND at_ms < ?3
             ORDER BY at_ms, rowid
             LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![cursor.at_ms, cursor.rowid, before_ms, limit as i64],
            |r| {
                Ok(RawRow {
                    rowid: r.get(0)?,
                    at_ms: r.get(1)?,
                    ip: super::columns::ip_column(r, "ip")?,
                    raw: r.get(3)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Minimises `rows` (rowid, IP hash) in one short transaction: exact
    /// IP, user agent and headers go, the hash is kept. Rows minimised or
    /// deleted meanwhile are left alone. Returns the rows changed.
    pub fn minimise(&mut self, rows: &[(i64, String)]) -> Result<u64, StorageError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut changed = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE observations SET ip_hash = ?2, ip = '', user_agent = NULL, headers = '[]'
                 WHERE rowid = ?1 AND ip_hash IS NULL",
            )?;
            for (rowid, hash) in rows {
                changed += stmt.execute(params![rowid, hash])? as u64;
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    /// How many copies, events and observations are older than `before_ms`
    /// (copies by relay time, the others by hit time).
    /// Removes `ip` and `user_agent` from the bodies of webhook deliveries
    /// created before `before_ms` that are no longer pending (a pending
    /// one still has to be sent as it was signed); returns how many.
    pub fn minimise_webhook_payloads(&self, before_ms: i64) -> Result<u64, StorageError> {
        let n = self.conn.execute(
            "UPDATE webhook_deliveries
             SET payload = json_remove(payload, '$.data.ip', '$.data.user_agent')
             WHERE created_at_ms < ?1 AND status != 'pending'
               AND (json_extract(payload, '$.data.ip') IS NOT NULL
                    OR json_extract(payload, '$.data.user_agent') IS NOT NULL)",
            [before_ms],
        )?;
        Ok(n as u64)
    }

    pub fn count_before(&self, before_ms: i64) -> Result<Removed, StorageError> {
        let count = |sql: &str| -> Result<u64, StorageError> {
            let n: i64 = self.conn.query_row(sql, [before_ms], |r| r.get(0))?;
            Ok(n.unsigned_abs())
        };
        Ok(Removed {
            copies: count("SELECT count(*) FROM messages WHERE relayed_at_ms < ?1")?,
            observations: count("SELECT count(*) FROM observations WHERE at_ms < ?1")?,
            events: count("SELECT count(*) FROM events WHERE at_ms < ?1")?,
            ..Removed::default()
        })
    }

    /// Deletes up to `limit` copies relayed before `before_ms` with their
    /// observations and events, then up to `limit` older events and
    /// observations left (of copies stored elsewhere), in one short
    /// transaction. Call until it returns an empty [`Removed`].
    pub fn delete_before(&mut self, before_ms: i64, limit: usize) -> Result<Removed, StorageError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids: Vec<String> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id FROM messages WHERE relayed_at_ms < ?1 ORDER BY relayed_at_ms LIMIT ?2",
            )?;
            stmt.query_map(params![before_ms, limit as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut removed = Removed::default();
        for id in &ids {
            removed.add(delete_copy(&tx, id)?);
        }
        removed.events += tx.execute(
            "DELETE FROM events WHERE rowid IN
                 (SELECT rowid FROM events WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)",
            params![before_ms, limit as i64],
        )? as u64;
        removed.observations += tx.execute(
            "DELETE FROM observations WHERE rowid IN
                 (SELECT rowid FROM observations WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)",
            params![before_ms, limit as i64],
        )? as u64;
        tx.commit()?;
        Ok(removed)
    }

    /// Removes what is stored about `address` (lower-cased): every copy
    /// sent to it alone, with its observations and events; the address in
    /// copies it shared with others; every observation and event carrying
    /// one of `recipient_ids` (the opaque ids its tokens carried, under
    /// every key of the ring); its undelivered webhook deliveries.
    pub fn forget(
        &mut self,
        address: &str,
        recipient_ids: &[String],
    ) -> Result<Removed, StorageError> {
        let address = address.trim().to_lowercase();
        // Found before the write lock is taken: `recipient_id` has no
        // index, and a table scan must not hold up the writer.
        let observation_rows = self.rowids_of("observations", recipient_ids)?;
        let event_rows = self.rowids_of("events", recipient_ids)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let copies: Vec<(String, String)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT m.id, m.recipients FROM message_recipients r
                 JOIN messages m ON m.id = r.message_id WHERE r.address = ?1",
            )?;
            stmt.query_map([&address], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut removed = Removed::default();
        let mut message_ids = Vec::new();
        for (id, recipients) in &copies {
            let list: Vec<String> = serde_json::from_str(recipients).unwrap_or_default();
            let others: Vec<&String> = list
                .iter()
                .filter(|r| r.trim().to_lowercase() != address)
                .collect();
            if others.is_empty() {
                removed.add(delete_copy(&tx, id)?);
                message_ids.push(id.clone());
            } else {
                // Serialising strings cannot fail.
                let json = serde_json::to_string(&others).expect("strings serialise");
                tx.execute(
                    "UPDATE messages SET recipients = ?2 WHERE id = ?1",
                    params![id, json],
                )?;
                tx.execute(
                    "DELETE FROM message_recipients WHERE message_id = ?1 AND address = ?2",
                    params![id, address],
                )?;
                removed.copies_edited += 1;
            }
        }
        // Rows of the copies just deleted are gone already (0 changed).
        for rowid in observation_rows {
            removed.observations +=
                tx.execute("DELETE FROM observations WHERE rowid = ?1", [rowid])? as u64;
        }
        for rowid in event_rows {
            removed.events += tx.execute("DELETE FROM events WHERE rowid = ?1", [rowid])? as u64;
        }
        removed.webhook_deliveries =
            forget_webhook_deliveries(&tx, &message_ids, recipient_ids, &address)?;
        tx.commit()?;
        Ok(removed)
    }

    /// Rowids of `table`'s rows carrying one of `recipient_ids`.
    fn rowids_of(&self, table: &str, recipient_ids: &[String]) -> Result<Vec<i64>, StorageError> {
        let mut out = Vec::new();
        // `table` is one of our two names, never input.
        let mut stmt = self.conn.prepare(&format!(
            "SELECT rowid FROM {table} WHERE recipient_id = ?1"
        ))?;
        for rid in recipient_ids {
            let rows = stmt.query_map([rid], |r| r.get(0))?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// Copies every WAL frame into the database file and empties the WAL,
    /// so bytes of removed rows are in neither; retried while readers
    /// hold old snapshots. True when the WAL was emptied.
    pub fn checkpoint(&self) -> Result<bool, StorageError> {
        for _ in 0..50 {
            let busy: i64 = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy == 0 {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(false)
    }

    /// Copies what the WAL holds into the database file, without waiting
    /// for or blocking anyone (PASSIVE): minimised pages replace the raw
    /// ones there. The WAL's old frames go when it starts over.
    pub fn checkpoint_passive(&self) -> Result<(), StorageError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Rebuilds the database file from its live rows (`VACUUM`): no freed
    /// page or slack space keeps old bytes. Holds the write lock throughout.
    pub fn vacuum(&self) -> Result<(), StorageError> {
        self.conn.execute_batch("VACUUM")?;
        Ok(())
    }
}

/// Deletes one copy with its recipient rows, observations and events.
fn delete_copy(conn: &Connection, id: &str) -> Result<Removed, StorageError> {
    let observations = conn.execute("DELETE FROM observations WHERE message_id = ?1", [id])?;
    let events = conn.execute("DELETE FROM events WHERE message_id = ?1", [id])?;
    // By the table's key (address, message_id): the addresses are the
    // copy's, normalised as they were stored; a lookup by message_id alone
    // would walk the whole table once per copy.
    let recipients: Option<String> = conn
        .query_row("SELECT recipients FROM messages WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    let list: Vec<String> = recipients
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or_default();
    let mut stmt = conn
        .prepare_cached("DELETE FROM message_recipients WHERE address = ?1 AND message_id = ?2")?;
    for address in &list {
        stmt.execute(params![address.trim().to_lowercase(), id])?;
    }
    if list.is_empty() {
        // Unreadable recipients (never written so): the slow way.
        conn.execute("DELETE FROM message_recipients WHERE message_id = ?1", [id])?;
    }
    let copies = conn.execute("DELETE FROM messages WHERE id = ?1", [id])?;
    Ok(Removed {
        copies: copies as u64,
        observations: observations as u64,
        events: events as u64,
        ..Removed::default()
    })
}

/// Deletes the webhook deliveries not yet sent (pending) that name one of
/// the copies `message_ids`, one of `recipient_ids` or `address` itself,
/// inside the forget transaction; returns how many. Sent ones are the
/// receiver's now.
fn forget_webhook_deliveries(
    tx: &Connection,
    message_ids: &[String],
    recipient_ids: &[String],
    address: &str,
) -> Result<u64, StorageError> {
    let mut stmt = tx.prepare_cached(
        "DELETE FROM webhook_deliveries WHERE status = 'pending' AND (
             json_extract(payload, '$.data.message_id') IN (SELECT value FROM json_each(?1))
             OR json_extract(payload, '$.data.recipient_id') IN (SELECT value FROM json_each(?2))
             OR lower(json_extract(payload, '$.data.recipient')) = ?3)",
    )?;
    // Serialising strings cannot fail.
    let json = |list: &[String]| serde_json::to_string(list).expect("strings serialise");
    let n = stmt.execute(params![json(message_ids), json(recipient_ids), address])?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_copy_takes_its_recipient_rows_by_key() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        for (id, recipients) in [
            ("m1", r#"[" Bob@Example.com", "ÉVA@example.org"]"#),
            ("m2", r#"["bob@example.com"]"#),
        ] {
            conn.execute(
                "INSERT INTO messages (id, route, sender, recipients, tags, links, relayed_at_ms,
                     upstream_reply, status) VALUES (?1, 'r', 's@x', ?2, '[]', '[]', 1, '250', 'relayed')",
                params![id, recipients],
            )
            .unwrap();
            let list: Vec<String> = serde_json::from_str(recipients).unwrap();
            for a in list {
                conn.execute(
                    "INSERT INTO message_recipients (address, message_id, relayed_at_ms) VALUES (?1, ?2, 1)",
                    params![a.trim().to_lowercase(), id],
                )
                .unwrap();
            }
        }
        let removed = delete_copy(&conn, "m1").unwrap();
        assert_eq!(removed.copies, 1);
        let left: Vec<(String, String)> = conn
            .prepare("SELECT address, message_id FROM message_recipients ORDER BY message_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, [("bob@example.com".to_owned(), "m2".to_owned())]);
    }

    #[test]
    fn forget_deletes_only_the_recipients_pending_deliveries() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let add = |id: &str, status: &str, data: serde_json::Value| {
            let payload = serde_json::json!({ "type": "message.opened", "data": data });
            conn.execute(
                "INSERT INTO webhook_deliveries (id, route, url, event_type, event_id, payload,
                     created_at_ms, status, attempts, failures, schedule_start_ms, updated_at_ms)
                 VALUES (?1, 'r', 'https://h.example/', 'message.opened', ?1, ?2, 0, ?3, 0, 0, 0, 0)",
                params![id, payload.to_string(), status],
            )
            .unwrap();
        };
        add("1", "pending", serde_json::json!({ "message_id": "m-bob" }));
        add(
            "2",
            "pending",
            serde_json::json!({ "message_id": "m-shared", "recipient_id": "rid-bob" }),
        );
        add(
            "3",
            "pending",
            serde_json::json!({ "message_id": "m-x", "recipient": "Bob@Example.com" }),
        );
        add(
            "4",
            "delivered",
            serde_json::json!({ "message_id": "m-bob" }),
        );
        add(
            "5",
            "pending",
            serde_json::json!({ "message_id": "m-carol", "recipient": "carol@example.org" }),
        );
        let n = forget_webhook_deliveries(
            &conn,
            &["m-bob".into()],
            &["rid-bob".into()],
            "bob@example.com",
        )
        .unwrap();
        assert_eq!(n, 3);
        let left: Vec<String> = conn
            .prepare("SELECT id FROM webhook_deliveries ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["4", "5"]);
    }

    #[test]
    fn old_sent_webhook_bodies_lose_the_ip_and_agent() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        for (id, status, created) in [
            ("1", "delivered", 10),
            ("2", "pending", 10),
            ("3", "failed", 99),
        ] {
            let payload = serde_json::json!({
                "type": "message.opened",
                "data": { "message_id": "m", "ip": "198.51.100.7", "user_agent": "UA" }
            });
            conn.execute(
                "INSERT INTO webhook_deliveries (id, route, url, event_type, event_id, payload,
                     created_at_ms, status, attempts, failures, schedule_start_ms, updated_at_ms)
                 VALUES (?1, 'r', 'https://h.example/', 'message.opened', ?1, ?2, ?3, ?4, 0, 0, 0, 0)",
                params![id, payload.to_string(), created, status],
            )
            .unwrap();
        }
        let db = Maintenance { conn };
        assert_eq!(db.minimise_webhook_payloads(50).unwrap(), 1);
        assert_eq!(db.minimise_webhook_payloads(50).unwrap(), 0, "once");
        let bodies: Vec<String> = db
            .conn
            .prepare("SELECT payload FROM webhook_deliveries ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!bodies[0].contains("198.51.100.7") && !bodies[0].contains("UA"));
        assert!(bodies[0].contains("\"message_id\""));
        assert!(
            bodies[1].contains("198.51.100.7"),
            "pending: sent as signed"
        );
        assert!(bodies[2].contains("198.51.100.7"), "not old enough");
    }
}
