//! The schema of the tag and message rollups (migration 10, appended to
//! schema.rs's list): two tables, one index, six triggers and the
//! backfill of what is stored already. Self-contained: it reads
//! `messages` and `events` and writes only its own tables.
//!
//! A copy belongs to one group per distinct `X-LM-Tag` value (scope
//! `tag`) and, when it has a Message-ID header, to the group of its
//! message as sent (scope `message`, the header without spaces and angle
//! brackets). The rollups are those of `stats_hourly` and
//! `stats_links_hourly` (migration 8) keyed by `(scope, key, route)`
//! instead of the route alone, kept by triggers in the same way: a copy
//! counts in `relayed` when not failed; an event counts with its `counts`
//! flag and `firsts` bits (storage/events.rs). An event finds its groups
//! through its copy, so the triggers read the copy's row by id; events
//! are deleted before their copy (retention's `delete_copy`), while the
//! copy is still there to say which groups they were counted in.

/// The groups of the copy with id `$id`, as `(scope, key)` rows.
macro_rules! groups_of {
    ($id:literal) => {
        concat!(
            "(SELECT 'tag' AS scope, j.value AS key FROM messages m, json_each(m.tags) j
               WHERE m.id = ",
            $id,
            " AND j.type = 'text'
             UNION SELECT 'message', trim(m.message_id_header, ' <>') FROM messages m
               WHERE m.id = ",
            $id,
            " AND trim(m.message_id_header, ' <>') != '')"
        )
    };
}

/// The groups of the copy row `$row` (`NEW` or `OLD` in a trigger on
/// `messages`).
macro_rules! groups_of_row {
    ($row:literal) => {
        concat!(
            "(SELECT 'tag' AS scope, j.value AS key FROM json_each(",
            $row,
            ".tags) j WHERE j.type = 'text'
             UNION SELECT 'message', trim(",
            $row,
            ".message_id_header, ' <>') WHERE trim(",
            $row,
            ".message_id_header, ' <>') != '')"
        )
    };
}

/// The event `NEW` added to the rollups of its copy's groups.
macro_rules! event_in {
    () => {
        concat!(
            "INSERT INTO stats_scoped_hourly (scope, key, route, hour_ms, opens, unique_opens,
                 clicks, unique_clicks, all_opens, all_unique_opens, all_clicks, all_unique_clicks)
             SELECT g.scope, g.key, NEW.route, NEW.at_ms / 3600000 * 3600000,
                 NEW.kind = 'open' AND NEW.counts = 1,
                 NEW.kind = 'open' AND NEW.firsts & 1 != 0,
                 NEW.kind = 'click' AND NEW.counts = 1,
                 NEW.kind = 'click' AND NEW.firsts & 1 != 0,
                 NEW.kind = 'open', NEW.kind = 'open' AND NEW.firsts & 2 != 0,
                 NEW.kind = 'click', NEW.kind = 'click' AND NEW.firsts & 2 != 0
             FROM ", groups_of!("NEW.message_id"), " g WHERE NEW.route IS NOT NULL
             ON CONFLICT (scope, key, route, hour_ms) DO UPDATE SET
                 opens = opens + excluded.opens,
                 unique_opens = unique_opens + excluded.unique_opens,
                 clicks = clicks + excluded.clicks,
                 unique_clicks = unique_clicks + excluded.unique_clicks,
                 all_opens = all_opens + excluded.all_opens,
                 all_unique_opens = all_unique_opens + excluded.all_unique_opens,
                 all_clicks = all_clicks + excluded.all_clicks,
                 all_unique_clicks = all_unique_clicks + excluded.all_unique_clicks;
             INSERT INTO stats_scoped_links_hourly (scope, key, route, hour_ms, url, clicks,
                 unique_clicks, all_clicks, all_unique_clicks)
             SELECT g.scope, g.key, NEW.route, NEW.at_ms / 3600000 * 3600000, NEW.url,
                 NEW.counts = 1, NEW.firsts & 4 != 0, 1, NEW.firsts & 8 != 0
             FROM ", groups_of!("NEW.message_id"), " g
             WHERE NEW.route IS NOT NULL AND NEW.kind = 'click' AND NEW.url IS NOT NULL
             ON CONFLICT (scope, key, route, hour_ms, url) DO UPDATE SET
                 clicks = clicks + excluded.clicks,
                 unique_clicks = unique_clicks + excluded.unique_clicks,
                 all_clicks = all_clicks + 1,
                 all_unique_clicks = all_unique_clicks + excluded.all_unique_clicks;"
        )
    };
}

/// The event `OLD` taken out of the rollups of its copy's groups.
macro_rules! event_out {
    () => {
        concat!(
            "UPDATE stats_scoped_hourly SET
                 opens = opens - (OLD.kind = 'open' AND OLD.counts = 1),
                 unique_opens = unique_opens - (OLD.kind = 'open' AND OLD.firsts & 1 != 0),
                 clicks = clicks - (OLD.kind = 'click' AND OLD.counts = 1),
                 unique_clicks = unique_clicks - (OLD.kind = 'click' AND OLD.firsts & 1 != 0),
                 all_opens = all_opens - (OLD.kind = 'open'),
                 all_unique_opens = all_unique_opens - (OLD.kind = 'open' AND OLD.firsts & 2 != 0),
                 all_clicks = all_clicks - (OLD.kind = 'click'),
                 all_unique_clicks = all_unique_clicks - (OLD.kind = 'click' AND OLD.firsts & 2 != 0)
             WHERE OLD.route IS NOT NULL AND route = OLD.route
               AND hour_ms = OLD.at_ms / 3600000 * 3600000
               AND (scope, key) IN ",
            groups_of!("OLD.message_id"),
            ";
             UPDATE stats_scoped_links_hourly SET
                 clicks = clicks - (OLD.counts = 1),
                 unique_clicks = unique_clicks - (OLD.firsts & 4 != 0),
                 all_clicks = all_clicks - 1,
                 all_unique_clicks = all_unique_clicks - (OLD.firsts & 8 != 0)
             WHERE OLD.route IS NOT NULL AND OLD.kind = 'click' AND route = OLD.route
               AND hour_ms = OLD.at_ms / 3600000 * 3600000 AND url = OLD.url
               AND (scope, key) IN ",
            groups_of!("OLD.message_id"),
            ";"
        )
    };
}

/// Migration 10: the tag and message rollups.
pub(in crate::storage) const MIGRATION: &str = concat!(
    "
    CREATE TABLE stats_scoped_hourly (
        scope             TEXT NOT NULL,      -- tag | message
        key               TEXT NOT NULL,      -- the tag, or the Message-ID without <>
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
        PRIMARY KEY (scope, key, route, hour_ms)
    ) WITHOUT ROWID;
    CREATE TABLE stats_scoped_links_hourly (
        scope             TEXT NOT NULL,
        key               TEXT NOT NULL,
        route             TEXT NOT NULL,
        hour_ms           INTEGER NOT NULL,
        url               TEXT NOT NULL,
        clicks            INTEGER NOT NULL DEFAULT 0,
        unique_clicks     INTEGER NOT NULL DEFAULT 0,
        all_clicks        INTEGER NOT NULL DEFAULT 0,
        all_unique_clicks INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, key, route, hour_ms, url)
    ) WITHOUT ROWID;
    -- The copies of one message as sent, in time order (the ends of a
    -- range not on whole hours are counted from the rows).
    CREATE INDEX messages_sent ON messages (trim(message_id_header, ' <>'), relayed_at_ms);

    INSERT INTO stats_scoped_hourly (scope, key, route, hour_ms, relayed)
        SELECT scope, key, route, h, count(*) FROM (
            SELECT DISTINCT m.id, 'tag' AS scope, j.value AS key, m.route,
                m.relayed_at_ms / 3600000 * 3600000 AS h
            FROM messages m, json_each(m.tags) j WHERE j.type = 'text' AND m.status != 'failed'
            UNION ALL
            SELECT m.id, 'message', trim(m.message_id_header, ' <>'), m.route,
                m.relayed_at_ms / 3600000 * 3600000
            FROM messages m
            WHERE trim(m.message_id_header, ' <>') != '' AND m.status != 'failed')
        GROUP BY scope, key, route, h;
    INSERT INTO stats_scoped_hourly (scope, key, route, hour_ms, opens, unique_opens, clicks,
            unique_clicks, all_opens, all_unique_opens, all_clicks, all_unique_clicks)
        SELECT g.scope, g.key, e.route, e.at_ms / 3600000 * 3600000 AS h,
            sum(kind = 'open' AND counts = 1), sum(kind = 'open' AND firsts & 1 != 0),
            sum(kind = 'click' AND counts = 1), sum(kind = 'click' AND firsts & 1 != 0),
            sum(kind = 'open'), sum(kind = 'open' AND firsts & 2 != 0),
            sum(kind = 'click'), sum(kind = 'click' AND firsts & 2 != 0)
        FROM events e JOIN (
            SELECT DISTINCT m.id AS copy, 'tag' AS scope, j.value AS key
            FROM messages m, json_each(m.tags) j WHERE j.type = 'text'
            UNION ALL
            SELECT m.id, 'message', trim(m.message_id_header, ' <>') FROM messages m
            WHERE trim(m.message_id_header, ' <>') != '') g ON g.copy = e.message_id
        WHERE e.route IS NOT NULL GROUP BY g.scope, g.key, e.route, h
        ON CONFLICT (scope, key, route, hour_ms) DO UPDATE SET
            opens = excluded.opens, unique_opens = excluded.unique_opens,
            clicks = excluded.clicks, unique_clicks = excluded.unique_clicks,
            all_opens = excluded.all_opens, all_unique_opens = excluded.all_unique_opens,
            all_clicks = excluded.all_clicks, all_unique_clicks = excluded.all_unique_clicks;
    INSERT INTO stats_scoped_links_hourly (scope, key, route, hour_ms, url, clicks,
            unique_clicks, all_clicks, all_unique_clicks)
        SELECT g.scope, g.key, e.route, e.at_ms / 3600000 * 3600000 AS h, e.url,
            sum(counts = 1), sum(firsts & 4 != 0), count(*), sum(firsts & 8 != 0)
        FROM events e JOIN (
            SELECT DISTINCT m.id AS copy, 'tag' AS scope, j.value AS key
            FROM messages m, json_each(m.tags) j WHERE j.type = 'text'
            UNION ALL
            SELECT m.id, 'message', trim(m.message_id_header, ' <>') FROM messages m
            WHERE trim(m.message_id_header, ' <>') != '') g ON g.copy = e.message_id
        WHERE e.route IS NOT NULL AND e.kind = 'click' AND e.url IS NOT NULL
        GROUP BY g.scope, g.key, e.route, h, e.url;

    CREATE TRIGGER messages_scoped_insert AFTER INSERT ON messages
    WHEN NEW.status != 'failed' BEGIN
        INSERT INTO stats_scoped_hourly (scope, key, route, hour_ms, relayed)
        SELECT g.scope, g.key, NEW.route, NEW.relayed_at_ms / 3600000 * 3600000, 1
        FROM ",
    groups_of_row!("NEW"),
    " g WHERE true
        ON CONFLICT (scope, key, route, hour_ms) DO UPDATE SET relayed = relayed + 1;
    END;
    CREATE TRIGGER messages_scoped_delete AFTER DELETE ON messages
    WHEN OLD.status != 'failed' BEGIN
        UPDATE stats_scoped_hourly SET relayed = relayed - 1
        WHERE route = OLD.route AND hour_ms = OLD.relayed_at_ms / 3600000 * 3600000
          AND (scope, key) IN ",
    groups_of_row!("OLD"),
    ";
    END;
    CREATE TRIGGER messages_scoped_update
    AFTER UPDATE OF route, relayed_at_ms, status, tags, message_id_header ON messages BEGIN
        UPDATE stats_scoped_hourly SET relayed = relayed - 1
        WHERE OLD.status != 'failed'
          AND route = OLD.route AND hour_ms = OLD.relayed_at_ms / 3600000 * 3600000
          AND (scope, key) IN ",
    groups_of_row!("OLD"),
    ";
        INSERT INTO stats_scoped_hourly (scope, key, route, hour_ms, relayed)
        SELECT g.scope, g.key, NEW.route, NEW.relayed_at_ms / 3600000 * 3600000, 1
        FROM ",
    groups_of_row!("NEW"),
    " g WHERE NEW.status != 'failed'
        ON CONFLICT (scope, key, route, hour_ms) DO UPDATE SET relayed = relayed + 1;
    END;

    CREATE TRIGGER events_scoped_insert AFTER INSERT ON events
    WHEN NEW.route IS NOT NULL BEGIN
    ",
    event_in!(),
    "
    END;
    CREATE TRIGGER events_scoped_delete AFTER DELETE ON events
    WHEN OLD.route IS NOT NULL BEGIN
    ",
    event_out!(),
    "
    END;
    -- Any change to a counted column: the old row out, the new one in.
    CREATE TRIGGER events_scoped_update
    AFTER UPDATE OF message_id, route, kind, url, at_ms, counts, firsts ON events BEGIN
    ",
    event_out!(),
    event_in!(),
    "
    END;
    "
);
