//! The PostgreSQL schema and its migrations, versioned in
//! `schema_version`. Every node runs them at start (and `trackrelay
//! migrate` explicitly) under one advisory lock, so two nodes starting
//! together migrate once; migration `i` brings version `i` to `i + 1`,
//! and migrations are only ever appended.
//!
//! The tables mirror SQLite's (storage/schema.rs) with native types:
//! `uuid` ids, `bigint` milliseconds, `text[]` lists, `jsonb` objects.
//! Unique counts ("the first open of this recipient") are claimed in
//! `event_firsts` with `ON CONFLICT DO NOTHING`, so two nodes judging hits
//! of one copy at once cannot both record a first open.
//!
//! `observations` and `events` are partitioned by month of `at_ms`
//! (partitions.rs), so their primary keys are `(id, at_ms)`.

use tokio_postgres::Client;

use crate::storage::StorageError;

/// The advisory lock key migrations hold ("trackrel" in ASCII).
const MIGRATION_LOCK: i64 = 0x7472_6163_6b72_656c;

const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite reached in its nine steps.
    r#"
    CREATE TABLE messages (
        id                uuid PRIMARY KEY,
        route             text NOT NULL,
        sender            text NOT NULL,
        recipients        text[] NOT NULL,
        recipient_id      text,
        message_id_header text,
        tags              text[] NOT NULL,
        links             text[] NOT NULL,
        relayed_at_ms     bigint NOT NULL,
        upstream_reply    text NOT NULL,
        status            text NOT NULL
    );
    CREATE INDEX messages_relayed_at ON messages (relayed_at_ms DESC, id DESC);
    CREATE INDEX messages_route ON messages (route, relayed_at_ms DESC, id DESC);
    CREATE TABLE message_recipients (
        address       text NOT NULL,
        message_id    uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        relayed_at_ms bigint NOT NULL,
        PRIMARY KEY (address, message_id)
    );
    CREATE INDEX message_recipients_time ON message_recipients (address, relayed_at_ms, message_id);
    CREATE TABLE message_tags (
        tag           text NOT NULL,
        relayed_at_ms bigint NOT NULL,
        message_id    uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        route         text NOT NULL,
        PRIMARY KEY (tag, relayed_at_ms, message_id)
    );
    CREATE INDEX message_tags_route ON message_tags (tag, route, relayed_at_ms, message_id);
    CREATE TABLE observations (
        id           uuid PRIMARY KEY,
        message_id   uuid NOT NULL,
        kind         text NOT NULL,
        recipient_id text,
        link         integer,
        url          text,
        at_ms        bigint NOT NULL,
        method       text NOT NULL,
        host         text NOT NULL,
        ip           text NOT NULL,
        user_agent   text,
        headers      jsonb NOT NULL,
        key_id       text NOT NULL,
        ip_hash      text
    );
    CREATE INDEX observations_message ON observations (message_id, id);
    CREATE INDEX observations_at ON observations (at_ms);
    CREATE TABLE events (
        id             uuid PRIMARY KEY,
        message_id     uuid NOT NULL,
        recipient_id   text,
        kind           text NOT NULL,
        link           integer,
        url            text,
        at_ms          bigint NOT NULL,
        classification text NOT NULL,
        counts         boolean NOT NULL,
        machine        boolean NOT NULL,
        first          boolean NOT NULL,
        bot            jsonb NOT NULL,
        device_type    text,
        client_type    text,
        client_name    text,
        route          text,
        firsts         integer NOT NULL DEFAULT 0
    );
    CREATE INDEX events_message ON events (message_id, at_ms);
    CREATE INDEX events_at ON events (at_ms);
    CREATE INDEX events_route_at ON events (route, at_ms);
    -- One row per unique count taken: (copy, recipient, scope) where scope
    -- is `open`, `open+` (counting), `click`, `click+`, `url:…`, `url+:…`.
    CREATE TABLE event_firsts (
        message_id uuid NOT NULL,
        recipient  text NOT NULL,
        scope      text NOT NULL,
        event_id   uuid NOT NULL,
        PRIMARY KEY (message_id, recipient, scope)
    );
    CREATE TABLE retention_state (
        name  text PRIMARY KEY,
        value bigint NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        id                uuid PRIMARY KEY,
        route             text NOT NULL,
        url               text NOT NULL,
        event_type        text NOT NULL,
        event_id          uuid NOT NULL,
        payload           text NOT NULL,
        created_at_ms     bigint NOT NULL,
        status            text NOT NULL,
        attempts          integer NOT NULL,
        failures          integer NOT NULL,
        schedule_start_ms bigint NOT NULL,
        next_at_ms        bigint,
        last_status       integer,
        last_error        text,
        updated_at_ms     bigint NOT NULL
    );
    CREATE UNIQUE INDEX webhook_deliveries_once
        ON webhook_deliveries (event_id, event_type, route, url);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at_ms) WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at_ms DESC, id DESC);
    CREATE INDEX webhook_deliveries_status
        ON webhook_deliveries (status, created_at_ms DESC, id DESC);
    CREATE TABLE webhook_attempts (
        delivery_id uuid NOT NULL,
        number      integer NOT NULL,
        at_ms       bigint NOT NULL,
        duration_ms bigint NOT NULL,
        status_code integer,
        error       text,
        PRIMARY KEY (delivery_id, number)
    );
    CREATE TABLE webhook_endpoints (
        route          text NOT NULL,
        url            text NOT NULL,
        disabled_at_ms bigint NOT NULL,
        reason         text,
        PRIMARY KEY (route, url)
    );
    CREATE TABLE route_overrides (
        route         text PRIMARY KEY,
        track_opens   boolean,
        track_clicks  boolean,
        updated_at_ms bigint NOT NULL
    );
    CREATE TABLE tracking_domains (
        url                text PRIMARY KEY,
        last_configured_ms bigint NOT NULL
    );
    "#,
    // 2: the sending API's metadata and Idempotency-Key answers.
    super::sending::MIGRATION,
    // 3: hourly rollups per route, tag and message as sent (rollups.rs).
    super::rollups::MIGRATION,
    // 4: the event feed's positions (feed.rs) and the classification
    // pipeline's lease (lease.rs).
    r#"
    CREATE TABLE event_feed (
        seq      bigserial PRIMARY KEY,
        event_id uuid NOT NULL UNIQUE,
        at_ms    bigint NOT NULL
    );
    CREATE INDEX event_feed_at ON event_feed (at_ms);
    INSERT INTO event_feed (event_id, at_ms) SELECT id, at_ms FROM events ORDER BY id;
    CREATE TABLE work_leases (
        name           text PRIMARY KEY,
        holder         text NOT NULL,
        lease_until_ms bigint NOT NULL,
        cursor_ms      bigint
    );
    "#,
    // 5: `observations` and `events` partitioned by month of `at_ms`, their
    // rows kept (after every migration that changes those two tables).
    super::partitions::MIGRATION,
];

/// The schema version this program writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// The version whose tables are partitioned by time (the migration test
/// starts from the one before).
#[doc(hidden)]
pub fn partitioned_version() -> i64 {
    let index = MIGRATIONS
        .iter()
        .position(|m| *m == super::partitions::MIGRATION);
    // The partitioning migration is in the list just above.
    index.expect("the partitioning migration") as i64 + 1
}

/// Brings the database to [`VERSION`] under the migration lock, each step
/// in its own transaction. Refuses a newer schema.
pub async fn migrate(client: &mut Client) -> Result<(), StorageError> {
    migrate_to(client, VERSION).await
}

/// Brings the database to `version` (at most [`VERSION`]); tests start
/// from an older schema with it.
#[doc(hidden)]
pub async fn migrate_to(client: &mut Client, version: i64) -> Result<(), StorageError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = migrate_locked(client, version.min(VERSION)).await;
    // The lock goes with the session anyway; released at once for the others.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result?;
    unlocked?;
    Ok(())
}

async fn migrate_locked(client: &mut Client, target: i64) -> Result<(), StorageError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version bigint NOT NULL)")
        .await?;
    let found: i64 = client
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
        .map_or(0, |r| r.get(0));
    if found > VERSION {
        return Err(StorageError::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    let steps = MIGRATIONS
        .iter()
        .enumerate()
        .take(usize::try_from(target).unwrap_or(0));
    for (i, sql) in steps.skip(found as usize) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        let version = i as i64 + 1;
        tx.execute("DELETE FROM schema_version", &[]).await?;
        tx.execute("INSERT INTO schema_version VALUES ($1)", &[&version])
            .await?;
        tx.commit().await?;
        tracing::info!(version, "database schema migrated (PostgreSQL)");
    }
    Ok(())
}
