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
    // 7: `recipient=` reads the address's copies in time order too: the
    // recipient index keeps the copy's time (filled for stored copies).
    r#"
    ALTER TABLE message_recipients ADD COLUMN relayed_at_ms INTEGER;
    UPDATE message_recipients SET relayed_at_ms =
        (SELECT m.relayed_at_ms FROM messages m WHERE m.id = message_id);
    CREATE INDEX message_recipients_time
        ON message_recipients (address, relayed_at_ms, message_id);
    "#,
    // 8: route statistics that stay fast as data grows (issue 7; see
    // storage/stats.rs and docs/benchmarks.md "Route statistics").
    // Events carry their copy's route (denormalised at insert) and
    // `firsts`, a bit set saying which unique counts the event is the
    // first of: 1 the first counting event of its kind for its copy and
    // recipient, 2 the first of its kind at all (machine included), 4 and
    // 8 the same for a click on its URL. Hourly rollups per route (and
    // per route and URL for clicks) are kept by triggers, so every
    // writer (the storage writer, retention, forget) keeps them right.
    // Existing rows are backfilled (firsts by time). Self-contained.
    r#"
    ALTER TABLE events ADD COLUMN route TEXT;
    ALTER TABLE events ADD COLUMN firsts INTEGER NOT NULL DEFAULT 0;
    UPDATE events SET route = m.route FROM messages m WHERE m.id = events.message_id;
    UPDATE events SET firsts = f.bits FROM (
        SELECT rowid AS rid,
            (CASE WHEN counts = 1 AND row_number() OVER
                (PARTITION BY message_id, recipient_id, kind, counts ORDER BY at_ms, rowid) = 1
             THEN 1 ELSE 0 END)
          | (CASE WHEN row_number() OVER
                (PARTITION BY message_id, recipient_id, kind ORDER BY at_ms, rowid) = 1
             THEN 2 ELSE 0 END)
          | (CASE WHEN kind = 'click' AND url IS NOT NULL AND counts = 1 AND row_number() OVER
                (PARTITION BY message_id, recipient_id, kind, url, counts ORDER BY at_ms, rowid) = 1
             THEN 4 ELSE 0 END)
          | (CASE WHEN kind = 'click' AND url IS NOT NULL AND row_number() OVER
                (PARTITION BY message_id, recipient_id, kind, url ORDER BY at_ms, rowid) = 1
             THEN 8 ELSE 0 END) AS bits
        FROM events) f
    WHERE events.rowid = f.rid;
    -- What insert asks: has this copy and recipient an event of this kind
    -- (on this URL) already?
    CREATE INDEX events_firsts ON events (message_id, kind, recipient_id, url, counts);
    -- The ends of a range not on whole hours are counted from the events:
    -- covering, so a cold cache reads a few index pages, not a row each.
    CREATE INDEX events_route_at ON events (route, at_ms, kind, counts, firsts, url);

    -- `relayed` counts copies not failed; `opens` … `unique_clicks` count
    -- counting (human) events, the `all_` columns every event.
    CREATE TABLE stats_hourly (
        route             TEXT NOT NULL,
        hour_ms           INTEGER NOT NULL,
        relayed           INTEGER NOT NULL DEFAULT 0,
        opens             INTEGER NOT NULL DEFAULT 0,
        unique_opens      INTEGER NOT NULL DEFAULT 0,
        clicks            INTEGER NOT NULL DEFAULT 0,
        unique_clicks     INTEGER NOT NULL DEFAULT 0,
        all_opens         INTEGER NOT NULL DEFAULT 0,
        all_unique_opens  INTEGER NOT NULL DEFAULT 0,
        all_clicks        INTEGER NOT NULL DEFAULT 0,
        all_unique_clicks INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (route, hour_ms)
    ) WITHOUT ROWID;
    CREATE TABLE stats_links_hourly (
        route             TEXT NOT NULL,
        hour_ms           INTEGER NOT NULL,
        url               TEXT NOT NULL,
        clicks            INTEGER NOT NULL DEFAULT 0,
        unique_clicks     INTEGER NOT NULL DEFAULT 0,
        all_clicks        INTEGER NOT NULL DEFAULT 0,
        all_unique_clicks INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (route, hour_ms, url)
    ) WITHOUT ROWID;
    INSERT INTO stats_hourly (route, hour_ms, relayed)
        SELECT route, relayed_at_ms / 3600000 * 3600000 AS h, count(*) FROM messages
        WHERE status != 'failed' GROUP BY route, h;
    INSERT INTO stats_hourly (route, hour_ms, opens, unique_opens, clicks, unique_clicks,
                              all_opens, all_unique_opens, all_clicks, all_unique_clicks)
        SELECT route, at_ms / 3600000 * 3600000 AS h,
            sum(kind = 'open' AND counts = 1), sum(kind = 'open' AND firsts & 1 != 0),
            sum(kind = 'click' AND counts = 1), sum(kind = 'click' AND firsts & 1 != 0),
            sum(kind = 'open'), sum(kind = 'open' AND firsts & 2 != 0),
            sum(kind = 'click'), sum(kind = 'click' AND firsts & 2 != 0)
        FROM events WHERE route IS NOT NULL GROUP BY route, h
        ON CONFLICT (route, hour_ms) DO UPDATE SET
            opens = excluded.opens, unique_opens = excluded.unique_opens,
            clicks = excluded.clicks, unique_clicks = excluded.unique_clicks,
            all_opens = excluded.all_opens, all_unique_opens = excluded.all_unique_opens,
            all_clicks = excluded.all_clicks, all_unique_clicks = excluded.all_unique_clicks;
    INSERT INTO stats_links_hourly (route, hour_ms, url, clicks, unique_clicks,
                                    all_clicks, all_unique_clicks)
        SELECT route, at_ms / 3600000 * 3600000 AS h, url,
            sum(counts = 1), sum(firsts & 4 != 0), count(*), sum(firsts & 8 != 0)
        FROM events WHERE route IS NOT NULL AND kind = 'click' AND url IS NOT NULL
        GROUP BY route, h, url;

    CREATE TRIGGER messages_stats_insert AFTER INSERT ON messages
    WHEN NEW.status != 'failed' BEGIN
        INSERT INTO stats_hourly (route, hour_ms, relayed)
        VALUES (NEW.route, NEW.relayed_at_ms / 3600000 * 3600000, 1)
        ON CONFLICT (route, hour_ms) DO UPDATE SET relayed = relayed + 1;
    END;
    CREATE TRIGGER messages_stats_delete AFTER DELETE ON messages
    WHEN OLD.status != 'failed' BEGIN
        UPDATE stats_hourly SET relayed = relayed - 1
        WHERE route = OLD.route AND hour_ms = OLD.relayed_at_ms / 3600000 * 3600000;
    END;
    CREATE TRIGGER messages_stats_update AFTER UPDATE OF route, relayed_at_ms, status ON messages
    BEGIN
        UPDATE stats_hourly SET relayed = relayed - 1
        WHERE OLD.status != 'failed'
          AND route = OLD.route AND hour_ms = OLD.relayed_at_ms / 3600000 * 3600000;
        INSERT INTO stats_hourly (route, hour_ms, relayed)
        SELECT NEW.route, NEW.relayed_at_ms / 3600000 * 3600000, 1 WHERE NEW.status != 'failed'
        ON CONFLICT (route, hour_ms) DO UPDATE SET relayed = relayed + 1;
    END;
    -- An event stored before its copy gets the route when the copy comes.
    CREATE TRIGGER messages_route_to_events AFTER INSERT ON messages BEGIN
        UPDATE events SET route = NEW.route WHERE message_id = NEW.id AND route IS NULL;
    END;

    CREATE TRIGGER events_stats_insert AFTER INSERT ON events
    WHEN NEW.route IS NOT NULL BEGIN
        INSERT INTO stats_hourly (route, hour_ms, opens, unique_opens, clicks, unique_clicks,
                                  all_opens, all_unique_opens, all_clicks, all_unique_clicks)
        VALUES (NEW.route, NEW.at_ms / 3600000 * 3600000,
            NEW.kind = 'open' AND NEW.counts = 1, NEW.kind = 'open' AND NEW.firsts & 1 != 0,
            NEW.kind = 'click' AND NEW.counts = 1, NEW.kind = 'click' AND NEW.firsts & 1 != 0,
            NEW.kind = 'open', NEW.kind = 'open' AND NEW.firsts & 2 != 0,
            NEW.kind = 'click', NEW.kind = 'click' AND NEW.firsts & 2 != 0)
        ON CONFLICT (route, hour_ms) DO UPDATE SET
            opens = opens + excluded.opens,
            unique_opens = unique_opens + excluded.unique_opens,
            clicks = clicks + excluded.clicks,
            unique_clicks = unique_clicks + excluded.unique_clicks,
            all_opens = all_opens + excluded.all_opens,
            all_unique_opens = all_unique_opens + excluded.all_unique_opens,
            all_clicks = all_clicks + excluded.all_clicks,
            all_unique_clicks = all_unique_clicks + excluded.all_unique_clicks;
        INSERT INTO stats_links_hourly (route, hour_ms, url, clicks, unique_clicks,
                                        all_clicks, all_unique_clicks)
        SELECT NEW.route, NEW.at_ms / 3600000 * 3600000, NEW.url, NEW.counts = 1,
            NEW.firsts & 4 != 0, 1, NEW.firsts & 8 != 0
        WHERE NEW.kind = 'click' AND NEW.url IS NOT NULL
        ON CONFLICT (route, hour_ms, url) DO UPDATE SET
            clicks = clicks + excluded.clicks,
            unique_clicks = unique_clicks + excluded.unique_clicks,
            all_clicks = all_clicks + 1,
            all_unique_clicks = all_unique_clicks + excluded.all_unique_clicks;
    END;
    CREATE TRIGGER events_stats_delete AFTER DELETE ON events
    WHEN OLD.route IS NOT NULL BEGIN
        UPDATE stats_hourly SET
            opens = opens - (OLD.kind = 'open' AND OLD.counts = 1),
            unique_opens = unique_opens - (OLD.kind = 'open' AND OLD.firsts & 1 != 0),
            clicks = clicks - (OLD.kind = 'click' AND OLD.counts = 1),
            unique_clicks = unique_clicks - (OLD.kind = 'click' AND OLD.firsts & 1 != 0),
            all_opens = all_opens - (OLD.kind = 'open'),
            all_unique_opens = all_unique_opens - (OLD.kind = 'open' AND OLD.firsts & 2 != 0),
            all_clicks = all_clicks - (OLD.kind = 'click'),
            all_unique_clicks = all_unique_clicks - (OLD.kind = 'click' AND OLD.firsts & 2 != 0)
        WHERE route = OLD.route AND hour_ms = OLD.at_ms / 3600000 * 3600000;
        UPDATE stats_links_hourly SET
            clicks = clicks - (OLD.counts = 1),
            unique_clicks = unique_clicks - (OLD.firsts & 4 != 0),
            all_clicks = all_clicks - 1,
            all_unique_clicks = all_unique_clicks - (OLD.firsts & 8 != 0)
        WHERE OLD.kind = 'click' AND route = OLD.route
          AND hour_ms = OLD.at_ms / 3600000 * 3600000 AND url = OLD.url;
    END;
    -- Any change to a counted column: the old row out, the new one in.
    CREATE TRIGGER events_stats_update
    AFTER UPDATE OF route, kind, url, at_ms, counts, firsts ON events BEGIN
        UPDATE stats_hourly SET
            opens = opens - (OLD.kind = 'open' AND OLD.counts = 1),
            unique_opens = unique_opens - (OLD.kind = 'open' AND OLD.firsts & 1 != 0),
            clicks = clicks - (OLD.kind = 'click' AND OLD.counts = 1),
            unique_clicks = unique_clicks - (OLD.kind = 'click' AND OLD.firsts & 1 != 0),
            all_opens = all_opens - (OLD.kind = 'open'),
            all_unique_opens = all_unique_opens - (OLD.kind = 'open' AND OLD.firsts & 2 != 0),
            all_clicks = all_clicks - (OLD.kind = 'click'),
            all_unique_clicks = all_unique_clicks - (OLD.kind = 'click' AND OLD.firsts & 2 != 0)
        WHERE OLD.route IS NOT NULL
          AND route = OLD.route AND hour_ms = OLD.at_ms / 3600000 * 3600000;
        UPDATE stats_links_hourly SET
            clicks = clicks - (OLD.counts = 1),
            unique_clicks = unique_clicks - (OLD.firsts & 4 != 0),
            all_clicks = all_clicks - 1,
            all_unique_clicks = all_unique_clicks - (OLD.firsts & 8 != 0)
        WHERE OLD.route IS NOT NULL AND OLD.kind = 'click' AND route = OLD.route
          AND hour_ms = OLD.at_ms / 3600000 * 3600000 AND url = OLD.url;
        INSERT INTO stats_hourly (route, hour_ms, opens, unique_opens, clicks, unique_clicks,
                                  all_opens, all_unique_opens, all_clicks, all_unique_clicks)
        SELECT NEW.route, NEW.at_ms / 3600000 * 3600000,
            NEW.kind = 'open' AND NEW.counts = 1, NEW.kind = 'open' AND NEW.firsts & 1 != 0,
            NEW.kind = 'click' AND NEW.counts = 1, NEW.kind = 'click' AND NEW.firsts & 1 != 0,
            NEW.kind = 'open', NEW.kind = 'open' AND NEW.firsts & 2 != 0,
            NEW.kind = 'click', NEW.kind = 'click' AND NEW.firsts & 2 != 0
        WHERE NEW.route IS NOT NULL
        ON CONFLICT (route, hour_ms) DO UPDATE SET
            opens = opens + excluded.opens,
            unique_opens = unique_opens + excluded.unique_opens,
            clicks = clicks + excluded.clicks,
            unique_clicks = unique_clicks + excluded.unique_clicks,
            all_opens = all_opens + excluded.all_opens,
            all_unique_opens = all_unique_opens + excluded.all_unique_opens,
            all_clicks = all_clicks + excluded.all_clicks,
            all_unique_clicks = all_unique_clicks + excluded.all_unique_clicks;
        INSERT INTO stats_links_hourly (route, hour_ms, url, clicks, unique_clicks,
                                        all_clicks, all_unique_clicks)
        SELECT NEW.route, NEW.at_ms / 3600000 * 3600000, NEW.url, NEW.counts = 1,
            NEW.firsts & 4 != 0, 1, NEW.firsts & 8 != 0
        WHERE NEW.route IS NOT NULL AND NEW.kind = 'click' AND NEW.url IS NOT NULL
        ON CONFLICT (route, hour_ms, url) DO UPDATE SET
            clicks = clicks + excluded.clicks,
            unique_clicks = unique_clicks + excluded.unique_clicks,
            all_clicks = all_clicks + 1,
            all_unique_clicks = all_unique_clicks + excluded.all_unique_clicks;
    END;
    "#,
    // 9: every tracking domain this database's nodes were configured with,
    // and when last (storage/routes.rs): mail in inboxes carries a domain
    // after the config drops it, so the tracking server keeps answering it
    // for token_ttl_days (docs/tracking.md, "Host check").
    r#"
    CREATE TABLE tracking_domains (
        url                TEXT PRIMARY KEY,
        last_configured_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 10: the sending API's Idempotency-Key responses (storage/
    // idempotency.rs, docs/send-api.md): the first answer per token and
    // key, replayed for a retry with the same body.
    r#"
    CREATE TABLE send_idempotency (
        token_digest  BLOB NOT NULL,
        key           TEXT NOT NULL,
        body_digest   BLOB NOT NULL,
        status        INTEGER NOT NULL,
        body          BLOB NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (token_digest, key)
    ) WITHOUT ROWID;
    CREATE INDEX send_idempotency_created ON send_idempotency (created_at_ms);
    "#,
    // 11: the event feed's order (storage/feed.rs): a position per event
    // in the order stored, never reused (AUTOINCREMENT), kept by triggers.
    r#"
    CREATE TABLE event_feed (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE
    );
    INSERT INTO event_feed (event_id) SELECT id FROM events ORDER BY rowid;
    CREATE TRIGGER events_feed_insert AFTER INSERT ON events BEGIN
        INSERT INTO event_feed (event_id) VALUES (NEW.id);
    END;
    CREATE TRIGGER events_feed_delete AFTER DELETE ON events BEGIN
        DELETE FROM event_feed WHERE event_id = OLD.id;
    END;
    "#,
    // 12: statistics per tag and per message as sent (issue 17): rollups
    // keyed by (scope, key, route), kept by triggers like migration 8's.
    super::scoped_stats::migration::MIGRATION,
    // 13: the `metadata` object of a sending API copy (storage/
    // metadata.rs), gone with its copy whoever deletes it (forget,
    // retention).
    r#"
    CREATE TABLE copy_metadata (
        copy_id TEXT PRIMARY KEY,
        json    TEXT NOT NULL                 -- JSON object of strings
    ) WITHOUT ROWID;
    CREATE TRIGGER copy_metadata_forget AFTER DELETE ON messages BEGIN
        DELETE FROM copy_metadata WHERE copy_id = OLD.id;
    END;
    "#,
];

/// The schema version this program writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`], each step in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    migrate_to(conn, VERSION)
}

/// Brings the database to version `target` (tests build old schemas).
pub(super) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StorageError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(StorageError::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    let steps = usize::try_from(target - found).unwrap_or(0);
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(found as usize)
        .take(steps)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA takes no parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    Ok(())
}

/// The version just before the migration whose SQL contains `marker`
/// (tests of a migration's backfill; robust to renumbering).
#[cfg(test)]
pub(super) fn version_before(marker: &str) -> i64 {
    MIGRATIONS
        .iter()
        .position(|sql| sql.contains(marker))
        .expect("a migration with the marker") as i64
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

    /// The listing's tag and recipient indexes are filled for copies
    /// stored before them.
    #[test]
    fn the_listing_indexes_are_filled_from_stored_copies() {
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
        conn.execute_batch(
            "INSERT INTO message_recipients (address, message_id) VALUES ('a@x', 'm1'), ('b@x', 'm2')",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let times: Vec<(String, i64)> = conn
            .prepare("SELECT address, relayed_at_ms FROM message_recipients ORDER BY address")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(times, [("a@x".to_owned(), 5), ("b@x".to_owned(), 6)]);
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
