//! Hourly rollups on PostgreSQL (migration 3): SQLite's `stats_hourly`,
//! `stats_scoped_hourly` and their `_links_` tables (storage/stats.rs,
//! storage/scoped_stats.rs) in two tables keyed by group: scope `route`
//! (key ''), `tag` (an `X-LM-Tag` value) or `message` (the Message-ID
//! without spaces and angle brackets), then route and hour.
//!
//! SQLite keeps its rollups with triggers, one upsert per event. Here
//! several nodes write at once, and a trigger would update a hot row (a
//! busy route's current hour) once per hit, each node's transaction
//! waiting on the others'. Instead the writer sums what its batch stored
//! per (group, route, hour) in one statement and upserts those few rows
//! (`ON CONFLICT DO UPDATE SET n = n + EXCLUDED.n`) in the batch's
//! transaction, in key order (so two nodes' batches cannot deadlock on
//! them): a hot row is written once per batch per node. The numbers add
//! up exactly whatever the interleaving: each upsert adds to the row as
//! committed, under its row lock.
//!
//! Deletions (retention, forget) take rows out in the statement that
//! deletes them (`DELETE … RETURNING` feeding the same upsert with the
//! sign turned), so a row written meanwhile is never taken out uncounted.
//! Rollup rows emptied by deletions stay, as on SQLite; the reads skip them.

use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::storage::StorageError;

/// The statement that adds (`$sign` "") or takes out ("-") the events of
/// `$ev` (`message_id, route, kind, url, at_ms, counts, firsts`) and the
/// copies of `$cp` (`route, relayed_at_ms, status, tags,
/// message_id_header`), and answers how many of each it saw. An event
/// counts in the groups of its copy, on its own route; a copy in
/// `relayed` when not failed.
macro_rules! apply {
    ($ev:literal, $cp:literal, $sign:literal) => {
        concat!(
            "WITH ev AS (",
            $ev,
            "), cp AS (",
            $cp,
            "),
            x AS (
                SELECT cp.route, cp.relayed_at_ms / 3600000 * 3600000 AS hour_ms,
                    cp.tags, cp.message_id_header AS header, 1 AS relayed,
                    0 AS opens, 0 AS unique_opens, 0 AS clicks, 0 AS unique_clicks,
                    0 AS all_opens, 0 AS all_unique_opens, 0 AS all_clicks,
                    0 AS all_unique_clicks
                FROM cp WHERE cp.status <> 'failed'
                UNION ALL
                SELECT ev.route, ev.at_ms / 3600000 * 3600000, m.tags, m.message_id_header, 0,
                    (ev.kind = 'open' AND ev.counts)::int,
                    (ev.kind = 'open' AND ev.firsts & 1 <> 0)::int,
                    (ev.kind = 'click' AND ev.counts)::int,
                    (ev.kind = 'click' AND ev.firsts & 1 <> 0)::int,
                    (ev.kind = 'open')::int,
                    (ev.kind = 'open' AND ev.firsts & 2 <> 0)::int,
                    (ev.kind = 'click')::int,
                    (ev.kind = 'click' AND ev.firsts & 2 <> 0)::int
                FROM ev LEFT JOIN messages m ON m.id = ev.message_id
                WHERE ev.route IS NOT NULL),
            counted AS (
                INSERT INTO rollups_hourly AS r (scope, key, route, hour_ms, relayed, opens,
                    unique_opens, clicks, unique_clicks, all_opens, all_unique_opens,
                    all_clicks, all_unique_clicks)
                SELECT g.scope, g.key, x.route, x.hour_ms,
                    (",
            $sign,
            "1 * sum(x.relayed))::bigint,
                    (",
            $sign,
            "1 * sum(x.opens))::bigint,
                    (",
            $sign,
            "1 * sum(x.unique_opens))::bigint,
                    (",
            $sign,
            "1 * sum(x.clicks))::bigint,
                    (",
            $sign,
            "1 * sum(x.unique_clicks))::bigint,
                    (",
            $sign,
            "1 * sum(x.all_opens))::bigint,
                    (",
            $sign,
            "1 * sum(x.all_unique_opens))::bigint,
                    (",
            $sign,
            "1 * sum(x.all_clicks))::bigint,
                    (",
            $sign,
            "1 * sum(x.all_unique_clicks))::bigint
                FROM x CROSS JOIN LATERAL rollup_groups(x.tags, x.header) g
                GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
                ON CONFLICT (scope, key, route, hour_ms) DO UPDATE SET
                    relayed = r.relayed + EXCLUDED.relayed,
                    opens = r.opens + EXCLUDED.opens,
                    unique_opens = r.unique_opens + EXCLUDED.unique_opens,
                    clicks = r.clicks + EXCLUDED.clicks,
                    unique_clicks = r.unique_clicks + EXCLUDED.unique_clicks,
                    all_opens = r.all_opens + EXCLUDED.all_opens,
                    all_unique_opens = r.all_unique_opens + EXCLUDED.all_unique_opens,
                    all_clicks = r.all_clicks + EXCLUDED.all_clicks,
                    all_unique_clicks = r.all_unique_clicks + EXCLUDED.all_unique_clicks
                RETURNING 1),
            linked AS (
                INSERT INTO rollup_links_hourly AS r (scope, key, route, hour_ms, url, clicks,
                    unique_clicks, all_clicks, all_unique_clicks)
                SELECT g.scope, g.key, ev.route, ev.at_ms / 3600000 * 3600000, ev.url,
                    ",
            $sign,
            "count(*) FILTER (WHERE ev.counts),
                    ",
            $sign,
            "count(*) FILTER (WHERE ev.firsts & 4 <> 0),
                    ",
            $sign,
            "count(*),
                    ",
            $sign,
            "count(*) FILTER (WHERE ev.firsts & 8 <> 0)
                FROM ev LEFT JOIN messages m ON m.id = ev.message_id
                    CROSS JOIN LATERAL rollup_groups(m.tags, m.message_id_header) g
                WHERE ev.route IS NOT NULL AND ev.kind = 'click' AND ev.url IS NOT NULL
                GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
                ON CONFLICT (scope, key, route, hour_ms, url) DO UPDATE SET
                    clicks = r.clicks + EXCLUDED.clicks,
                    unique_clicks = r.unique_clicks + EXCLUDED.unique_clicks,
                    all_clicks = r.all_clicks + EXCLUDED.all_clicks,
                    all_unique_clicks = r.all_unique_clicks + EXCLUDED.all_unique_clicks
                RETURNING 1)
            SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM cp)"
        )
    };
}

/// Every stored row counted: the migration's backfill, and [`rebuild`].
macro_rules! backfill {
    () => {
        apply!(
            "SELECT message_id, route, kind, url, at_ms, counts, firsts FROM events",
            "SELECT route, relayed_at_ms, status, tags, message_id_header FROM messages",
            ""
        )
    };
}

/// Migration 3: the rollup tables, the groups of a copy, an index for
/// the copies of one message as sent, the backfill of stored rows; and
/// the per-address counts of `addresses.rs`.
pub(super) const MIGRATION: &str = concat!(
    "
    -- `relayed` counts copies not failed; `opens` … `unique_clicks` count
    -- counting (human) events, the `all_` columns every event.
    CREATE TABLE rollups_hourly (
        scope             text NOT NULL,      -- route | tag | message
        key               text NOT NULL,      -- '' | the tag | the Message-ID without <>
        route             text NOT NULL,
        hour_ms           bigint NOT NULL,
        relayed           bigint NOT NULL DEFAULT 0,
        opens             bigint NOT NULL DEFAULT 0,
        unique_opens      bigint NOT NULL DEFAULT 0,
        clicks            bigint NOT NULL DEFAULT 0,
        unique_clicks     bigint NOT NULL DEFAULT 0,
        all_opens         bigint NOT NULL DEFAULT 0,
        all_unique_opens  bigint NOT NULL DEFAULT 0,
        all_clicks        bigint NOT NULL DEFAULT 0,
        all_unique_clicks bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, key, route, hour_ms)
    );
    CREATE TABLE rollup_links_hourly (
        scope             text NOT NULL,
        key               text NOT NULL,
        route             text NOT NULL,
        hour_ms           bigint NOT NULL,
        url               text NOT NULL,
        clicks            bigint NOT NULL DEFAULT 0,
        unique_clicks     bigint NOT NULL DEFAULT 0,
        all_clicks        bigint NOT NULL DEFAULT 0,
        all_unique_clicks bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, key, route, hour_ms, url)
    );
    -- The groups a copy counts in: its route, each distinct tag, its
    -- message as sent.
    CREATE FUNCTION rollup_groups(tags text[], header text)
    RETURNS TABLE (scope text, key text) LANGUAGE sql IMMUTABLE AS $$
        SELECT 'route'::text, ''::text
        UNION SELECT 'tag', t FROM unnest(tags) t
        UNION SELECT 'message', btrim(header, ' <>') WHERE btrim(header, ' <>') <> ''
    $$;
    -- The copies of one message as sent, in time order (the ends of a
    -- range not on whole hours are counted from the rows).
    CREATE INDEX messages_sent ON messages (btrim(message_id_header, ' <>'), relayed_at_ms);
    -- Hits per client address, minute and copy, for the last hour
    -- (addresses.rs): how many recipients one address hit lately.
    CREATE TABLE address_copies (
        ip         text NOT NULL,
        minute_ms  bigint NOT NULL,
        message_id uuid NOT NULL,
        hits       bigint NOT NULL,
        PRIMARY KEY (ip, minute_ms, message_id)
    );
    CREATE INDEX address_copies_minute ON address_copies (minute_ms);
    ",
    backfill!(),
    ";"
);

/// Adds what one writer batch stored: the new `events`, and the new
/// `copies` (with their events stored before them, which had no route
/// until now). Inside the batch's transaction.
pub(super) async fn add_written(
    client: &impl GenericClient,
    events: &[Uuid],
    copies: &[Uuid],
) -> Result<(), tokio_postgres::Error> {
    if events.is_empty() && copies.is_empty() {
        return Ok(());
    }
    const SQL: &str = apply!(
        "SELECT message_id, route, kind, url, at_ms, counts, firsts FROM events
         WHERE id = ANY ($1) OR message_id = ANY ($2)",
        "SELECT route, relayed_at_ms, status, tags, message_id_header FROM messages
         WHERE id = ANY ($2)",
        ""
    );
    client.query_one(SQL, &[&events, &copies]).await.map(drop)
}

/// Deletes the copies `ids` with their events, taking both out of the
/// rollups; returns (events, copies) deleted.
pub(super) async fn delete_copies(
    client: &impl GenericClient,
    ids: &[Uuid],
) -> Result<(u64, u64), StorageError> {
    const SQL: &str = apply!(
        "DELETE FROM events WHERE message_id = ANY ($1)
         RETURNING message_id, route, kind, url, at_ms, counts, firsts",
        "DELETE FROM messages WHERE id = ANY ($1)
         RETURNING route, relayed_at_ms, status, tags, message_id_header",
        "-"
    );
    let row = client.query_one(SQL, &[&ids]).await?;
    Ok((count(&row, 0)?, count(&row, 1)?))
}

/// Deletes the events older than `before_ms`, out of the rollups too.
pub(super) async fn delete_events_before(
    client: &impl GenericClient,
    before_ms: i64,
) -> Result<u64, StorageError> {
    const SQL: &str = apply!(
        "DELETE FROM events WHERE at_ms < $1
         RETURNING message_id, route, kind, url, at_ms, counts, firsts",
        "SELECT route, relayed_at_ms, status, tags, message_id_header FROM messages WHERE false",
        "-"
    );
    count(&client.query_one(SQL, &[&before_ms]).await?, 0)
}

/// Takes the events of `[from_ms, to_ms)` out of the rollups without
/// deleting them: a month dropped whole (partitions.rs), in the
/// transaction that drops it, under its lock. Returns how many it saw.
pub(super) async fn take_out_events_between(
    client: &impl GenericClient,
    from_ms: i64,
    to_ms: i64,
) -> Result<u64, StorageError> {
    const SQL: &str = apply!(
        "SELECT message_id, route, kind, url, at_ms, counts, firsts FROM events
         WHERE at_ms >= $1 AND at_ms < $2",
        "SELECT route, relayed_at_ms, status, tags, message_id_header FROM messages WHERE false",
        "-"
    );
    count(&client.query_one(SQL, &[&from_ms, &to_ms]).await?, 0)
}

/// Deletes the events of `recipient_ids`, out of the rollups too.
pub(super) async fn delete_events_of(
    client: &impl GenericClient,
    recipient_ids: &[String],
) -> Result<u64, StorageError> {
    const SQL: &str = apply!(
        "DELETE FROM events WHERE recipient_id = ANY ($1)
         RETURNING message_id, route, kind, url, at_ms, counts, firsts",
        "SELECT route, relayed_at_ms, status, tags, message_id_header FROM messages WHERE false",
        "-"
    );
    count(&client.query_one(SQL, &[&recipient_ids]).await?, 0)
}

/// Counts every stored row again from nothing, in one transaction (for
/// rows written around the writer, e.g. a bulk copy from another
/// database).
pub async fn rebuild(client: &mut tokio_postgres::Client) -> Result<(), StorageError> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "LOCK TABLE rollups_hourly, rollup_links_hourly IN EXCLUSIVE MODE;
         DELETE FROM rollups_hourly; DELETE FROM rollup_links_hourly;",
    )
    .await?;
    tx.query_one(backfill!(), &[]).await?;
    tx.commit().await?;
    Ok(())
}

fn count(row: &tokio_postgres::Row, i: usize) -> Result<u64, StorageError> {
    Ok(row.try_get::<_, i64>(i)?.unsigned_abs())
}
