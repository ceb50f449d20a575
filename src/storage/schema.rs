//! The database schema and its migrations, versioned with
//! `PRAGMA user_version`: migration `i` (0-based) brings the schema from
//! version `i` to `i + 1`. Migrations are only ever appended.

use rusqlite::Connection;

use super::StorageError;

/// Each step, in order. Ids are UUID text (time-ordered v7, so index
/// inserts land at the end of the B-tree); times are milliseconds since the
/// Unix epoch; lists are JSON arrays.
const MIGRATIONS: &[&str] = &[
    // 1: relayed copies and raw observations.
    r#"
    CREATE TABLE messages (
        id                TEXT PRIMARY KEY,
        route             TEXT NOT NULL,
        sender            TEXT NOT NULL,
        recipients        TEXT NOT NULL,      -- JSON array of addresses
        recipient_id      TEXT,               -- opaque id carried in tokens
        message_id_header TEXT,
        tags              TEXT NOT NULL,      -- JSON array
        links             TEXT NOT NULL,      -- JSON array; position = link index
        relayed_at_ms     INTEGER NOT NULL,
        upstream_reply    TEXT NOT NULL,
        status            TEXT NOT NULL       -- relayed | failed
    );
    CREATE INDEX messages_relayed_at ON messages (relayed_at_ms DESC, id DESC);
    CREATE INDEX messages_route ON messages (route, relayed_at_ms DESC, id DESC);
    CREATE TABLE message_recipients (
        address    TEXT NOT NULL,             -- lower-cased
        message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        PRIMARY KEY (address, message_id)
    ) WITHOUT ROWID;
    CREATE TABLE observations (
        id           TEXT PRIMARY KEY,        -- UUIDv7: time-ordered
        message_id   TEXT NOT NULL,           -- from the token; no foreign key:
                                              -- the copy may be stored elsewhere
        kind         TEXT NOT NULL,           -- open | click
        recipient_id TEXT,
        link         INTEGER,
        url          TEXT,
        at_ms        INTEGER NOT NULL,
        method       TEXT NOT NULL,
        host         TEXT NOT NULL,
        ip           TEXT NOT NULL,
        user_agent   TEXT,
        headers      TEXT NOT NULL,           -- JSON array of [name, value]
        key_id       TEXT NOT NULL
    );
    CREATE INDEX observations_message ON observations (message_id, id);
    "#,
    // 2: classified observations (SPEC §6). `counts`, `machine` and
    // `first` are 0/1; `bot` is the JSON bot object. The pipeline finds
    // unclassified observations by time.
    r#"
    CREATE TABLE events (
        id             TEXT PRIMARY KEY,      -- the observation's id
        message_id     TEXT NOT NULL,
        recipient_id   TEXT,
        kind           TEXT NOT NULL,         -- open | click
        link           INTEGER,
        url            TEXT,
        at_ms          INTEGER NOT NULL,
        classification TEXT NOT NULL,
        counts         INTEGER NOT NULL,
        machine        INTEGER NOT NULL,
        first          INTEGER NOT NULL,
        bot            TEXT NOT NULL,
        device_type    TEXT,
        client_type    TEXT,
        client_name    TEXT
    );
    CREATE INDEX events_message ON events (message_id, at_ms);
    CREATE INDEX events_counting ON events (message_id, kind, recipient_id) WHERE counts = 1;
    CREATE INDEX events_at ON events (at_ms);
    CREATE INDEX observations_at ON observations (at_ms);
    "#,
    // Privacy (issue 8, SPEC §9): a minimised observation keeps a keyed
    // hash of its IP (hex HMAC-SHA256) instead of the IP, user agent and
    // headers; NULL while the raw signals are kept. `retention_state`
    // remembers how far minimisation got (storage/retention.rs).
    r#"
    ALTER TABLE observations ADD COLUMN ip_hash TEXT;
    CREATE TABLE retention_state (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    "#,
    // webhooks: the outbox (SPEC §7): one delivery per event and endpoint
    // with the body to send, one row per try, endpoints disabled by a 410.
    // Self-contained: it touches no other table.
    r#"
    CREATE TABLE webhook_deliveries (
        id                TEXT PRIMARY KEY,   -- UUIDv7; the webhook-id header
        route             TEXT NOT NULL,
        url               TEXT NOT NULL,
        event_type        TEXT NOT NULL,
        event_id          TEXT NOT NULL,      -- observation id, or relayed copy id
        payload           TEXT NOT NULL,      -- the JSON body, sent as is
        created_at_ms     INTEGER NOT NULL,
        status            TEXT NOT NULL,      -- pending | delivered | failed
        attempts          INTEGER NOT NULL,
        failures          INTEGER NOT NULL,   -- since schedule_start_ms
        schedule_start_ms INTEGER NOT NULL,
        next_at_ms        INTEGER,
        last_status       INTEGER,
        last_error        TEXT,
        updated_at_ms     INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX webhook_deliveries_once
        ON webhook_deliveries (event_id, event_type, route, url);
    CREATE INDEX webhook_deliveries_due
        ON webhook_deliveries (next_at_ms) WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at_ms DESC, id DESC);
    CREATE TABLE webhook_attempts (
        delivery_id TEXT NOT NULL,
        number      INTEGER NOT NULL,
        at_ms       INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        status_code INTEGER,
        error       TEXT,
        PRIMARY KEY (delivery_id, number)
    ) WITHOUT ROWID;
    CREATE TABLE webhook_endpoints (
        route          TEXT NOT NULL,
        url            TEXT NOT NULL,
        disabled_at_ms INTEGER NOT NULL,
        reason         TEXT,
        PRIMARY KEY (route, url)
    ) WITHOUT ROWID;
"#,
    // 5: route settings changed through the API (storage/routes.rs).
    r#"
    CREATE TABLE route_overrides (
        route         TEXT PRIMARY KEY,
        track_opens   INTEGER,            -- NULL: the config's value stands
        track_clicks  INTEGER,
        updated_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
"#,
    // 6: the messages listing (issue 7): `tag=` walks one tag's copies
    // newest first, `tag=` with `route=` those of one route (relayed_at_ms
    // and route are copied here so the key gives the order, and a
    // cursor's range, without a sort). Filled for the copies stored so
    // far; a deleted copy (retention) takes its tag rows with it. The
    // outbox listing by status reads its own index the same way.
    r#"
    CREATE TABLE message_tags (
        tag           TEXT NOT NULL,
        relayed_at_ms INTEGER NOT NULL,
        message_id    TEXT NOT NULL,
        route         TEXT NOT NULL,
        PRIMARY KEY (tag, relayed_at_ms, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX message_tags_route ON message_tags (tag, route, relayed_at_ms, message_id);
    INSERT OR IGNORE INTO message_tags (tag, relayed_at_ms, message_id, route)
        SELECT j.value, m.relayed_at_ms, m.id, m.route FROM messages m, json_each(m.tags) j
        WHERE j.type = 'text';
    CREATE TRIGGER message_tags_delete AFTER DELETE ON messages BEGIN
        DELETE FROM message_tags
        WHERE tag IN (SELECT value FROM json_each(old.tags))
          AND relayed_at_ms = old.relayed_at_ms AND message_id = old.id;
    END;
    CREATE INDEX webhook_deliveries_status
        ON webhook_deliveries (status, created_at_ms DESC, id DESC);
    "#,
];

/// The schema version this program writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`], each step in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(StorageError::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA takes no parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StorageError::SchemaTooNew { found: 99, .. })
        ));
    }

    /// The listing's tag index is filled for copies stored before it.
    #[test]
    fn the_tag_index_is_filled_from_stored_copies() {
        let step = MIGRATIONS
            .iter()
            .position(|m| m.contains("CREATE TABLE message_tags"))
            .unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..step] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(&format!("PRAGMA user_version = {step}"))
            .unwrap();
        conn.execute_batch(
            r#"INSERT INTO messages VALUES
               ('m1', 'news', 's', '["a@x"]', NULL, NULL, '["spring","all"]', '[]', 5, '250', 'relayed'),
               ('m2', 'default', 's', '["b@x"]', NULL, NULL, '[]', '[]', 6, '250', 'relayed')"#,
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows: Vec<(String, i64, String, String)> = conn
            .prepare("SELECT tag, relayed_at_ms, message_id, route FROM message_tags ORDER BY tag")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let row = |tag: &str| (tag.to_owned(), 5, "m1".to_owned(), "news".to_owned());
        assert_eq!(rows, [row("all"), row("spring")]);
    }
}
