//! What the sending API stores, on PostgreSQL (as storage/metadata.rs and
//! storage/idempotency.rs on SQLite): a copy's `metadata` object, gone
//! with its copy, and the `Idempotency-Key` answers; plus each copy's own
//! counts for the messages API (storage/scoped_stats.rs `copy_counts`).

use std::collections::HashMap;

use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::storage::{CopyCounts, CopyMetadata, IdempotentResponse, StorageError};

/// Migration 2: the sending API's tables. The metadata row may be
/// committed before its copy (the relay queues it first), so a trigger
/// rather than a foreign key deletes it with the copy.
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE copy_metadata (
        copy_id uuid PRIMARY KEY,
        json    jsonb NOT NULL
    );
    CREATE FUNCTION copy_metadata_gone() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM copy_metadata WHERE copy_id = OLD.id;
        RETURN OLD;
    END $$;
    CREATE TRIGGER messages_metadata_delete AFTER DELETE ON messages
        FOR EACH ROW EXECUTE FUNCTION copy_metadata_gone();
    CREATE TABLE send_idempotency (
        token_digest  bytea NOT NULL,
        key           text NOT NULL,
        body_digest   bytea NOT NULL,
        status        integer NOT NULL,
        body          bytea NOT NULL,
        created_at_ms bigint NOT NULL,
        PRIMARY KEY (token_digest, key)
    );
    CREATE INDEX send_idempotency_created ON send_idempotency (created_at_ms);
"#;

pub(super) async fn write_metadata(
    client: &impl GenericClient,
    row: &CopyMetadata,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO copy_metadata (copy_id, json) VALUES ($1, $2)
             ON CONFLICT (copy_id) DO UPDATE SET json = EXCLUDED.json",
            &[&row.copy_id, &row.metadata],
        )
        .await
        .map(drop)
}

pub(super) async fn metadata(
    client: &impl GenericClient,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Value>, StorageError> {
    let rows = client
        .query(
            "SELECT copy_id, json FROM copy_metadata WHERE copy_id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) async fn write_idempotent(
    client: &impl GenericClient,
    r: &IdempotentResponse,
    keep_ms: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO send_idempotency
                 (token_digest, key, body_digest, status, body, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (token_digest, key) DO UPDATE SET
                 body_digest = EXCLUDED.body_digest, status = EXCLUDED.status,
                 body = EXCLUDED.body, created_at_ms = EXCLUDED.created_at_ms",
            &[
                &r.token_digest.as_slice(),
                &r.key,
                &r.body_digest.as_slice(),
                &i32::from(r.status),
                &r.body,
                &r.created_at_ms,
            ],
        )
        .await?;
    client
        .execute(
            "DELETE FROM send_idempotency WHERE created_at_ms < $1",
            &[&r.created_at_ms.saturating_sub(keep_ms)],
        )
        .await
        .map(drop)
}

pub(super) async fn idempotent(
    client: &impl GenericClient,
    token_digest: [u8; 32],
    key: &str,
) -> Result<Option<IdempotentResponse>, StorageError> {
    let row = client
        .query_opt(
            "SELECT body_digest, status, body, created_at_ms FROM send_idempotency
             WHERE token_digest = $1 AND key = $2",
            &[&token_digest.as_slice(), &key],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let digest: Vec<u8> = row.get(0);
    let status: i32 = row.get(1);
    Ok(Some(IdempotentResponse {
        token_digest,
        key: key.to_owned(),
        body_digest: digest
            .try_into()
            .map_err(|_| StorageError::Task("send_idempotency: a digest is not 32 bytes".into()))?,
        status: u16::try_from(status)
            .map_err(|_| StorageError::Task(format!("send_idempotency: status {status}")))?,
        body: row.get(2),
        created_at_ms: row.get(3),
    }))
}

/// Each copy's counting events (machine ones too when `include_machine`),
/// in the order of `ids`.
pub(super) async fn copy_counts(
    client: &impl GenericClient,
    ids: &[Uuid],
    include_machine: bool,
) -> Result<Vec<CopyCounts>, StorageError> {
    let rows = client
        .query(
            "SELECT message_id,
                    count(*) FILTER (WHERE kind = 'open'),
                    count(*) FILTER (WHERE kind = 'click'),
                    min(at_ms) FILTER (WHERE kind = 'open'),
                    min(at_ms) FILTER (WHERE kind = 'click')
             FROM events WHERE message_id = ANY($1) AND (counts OR $2)
             GROUP BY message_id",
            &[&ids, &include_machine],
        )
        .await?;
    let mut by_id: HashMap<Uuid, CopyCounts> = rows
        .iter()
        .map(|r| {
            let counts = CopyCounts {
                opens: r.get::<_, i64>(1).unsigned_abs(),
                clicks: r.get::<_, i64>(2).unsigned_abs(),
                first_open_ms: r.get(3),
                first_click_ms: r.get(4),
            };
            (r.get(0), counts)
        })
        .collect();
    Ok(ids
        .iter()
        .map(|id| by_id.remove(id).unwrap_or_default())
        .collect())
}
