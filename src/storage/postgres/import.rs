//! The PostgreSQL side of `trackrelay migrate-storage`
//! (storage/transfer.rs): one connection, the schema brought up to date,
//! and a batch at a time in one transaction.
//!
//! Rows that have a write path go through the writer's own batch function
//! ([`writer::write_all`]), so whatever the writer keeps beside a row
//! (the listing indexes of a copy, an event's route and first-count
//! claims, and anything the writer maintains later) is kept for migrated
//! rows too. The webhook outbox's state (tries, schedules, disabled
//! endpoints) and retention's state have no write path that could
//! reproduce them, so they are inserted as they are, here.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::Client;
use uuid::Uuid;

use super::{PostgresSettings, partitions, schema, writer};
use crate::storage::writer::Record;
use crate::storage::{Attempt, Delivery, DisabledEndpoint, StorageError};

/// How long connecting may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Every table a migration writes, as checked for rows already there.
const TABLES: &[&str] = &[
    "messages",
    "copy_metadata",
    "observations",
    "events",
    "webhook_deliveries",
    "webhook_attempts",
    "webhook_endpoints",
    "route_overrides",
    "tracking_domains",
    "send_idempotency",
    "retention_state",
];

/// A PostgreSQL database being filled.
pub struct Target {
    client: Client,
}

impl Target {
    /// Connects to `settings`' database and brings its schema up to date
    /// (under the migration lock, as a node would).
    pub async fn connect(settings: &PostgresSettings) -> Result<Target, StorageError> {
        let tls = settings.tls().map_err(StorageError::Connect)?;
        let mut config = settings.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let (mut client, connection) = config
            .connect(tls)
            .await
            .map_err(|e| StorageError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "migrate-storage: PostgreSQL connection closed");
            }
        });
        schema::migrate(&mut client).await?;
        Ok(Target { client })
    }

    /// The tables that already hold rows, with how many.
    pub async fn holdings(&self) -> Result<Vec<(&'static str, u64)>, StorageError> {
        let mut out = Vec::new();
        for table in TABLES {
            // Table names are our own constants.
            let sql = format!("SELECT count(*) FROM {table}");
            let n: i64 = self.client.query_one(&sql, &[]).await?.get(0);
            if n > 0 {
                out.push((*table, n.unsigned_abs()));
            }
        }
        Ok(out)
    }

    /// Which of `ids` `table` holds in its `key` column (our own names).
    pub async fn present(
        &self,
        table: &'static str,
        key: &'static str,
        ids: &[Uuid],
    ) -> Result<HashSet<Uuid>, StorageError> {
        let sql = format!("SELECT {key} FROM {table} WHERE {key} = ANY($1)");
        let rows = self.client.query(&sql, &[&ids]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Writes `batch` as the storage writer would, in one transaction.
    pub(in crate::storage) async fn write(
        &mut self,
        batch: &[&Record],
    ) -> Result<(), StorageError> {
        Ok(writer::write_all(&mut self.client, batch).await?)
    }

    /// Moves the copied hits and events out of the default partition into
    /// their months (made as needed), as a retention pass would: copied
    /// rows of past months land there (postgres/partitions.rs).
    pub async fn partition_months(&self) -> Result<(), StorageError> {
        Ok(partitions::tidy(&self.client, 0).await?)
    }

    /// Gives minimised observations their IP hash back (the writer's insert
    /// has no column for it). Idempotent: only rows still without one.
    pub async fn ip_hashes(&mut self, hashes: &[(Uuid, String)]) -> Result<(), StorageError> {
        let (ids, values): (Vec<Uuid>, Vec<&str>) =
            hashes.iter().map(|(id, h)| (*id, h.as_str())).unzip();
        self.client
            .execute(
                "UPDATE observations o SET ip_hash = v.h
                 FROM unnest($1::uuid[], $2::text[]) AS v(id, h)
                 WHERE o.id = v.id AND o.ip_hash IS NULL",
                &[&ids, &values],
            )
            .await?;
        Ok(())
    }

    /// Inserts deliveries as they stand (status, tries, schedule); those
    /// already there are kept. Returns how many were inserted.
    pub async fn deliveries(&mut self, list: &[Delivery]) -> Result<u64, StorageError> {
        let tx = self.client.transaction().await?;
        let stmt = tx
            .prepare(
                "INSERT INTO webhook_deliveries (id, route, url, event_type, event_id, payload,
                     created_at_ms, status, attempts, failures, schedule_start_ms, next_at_ms,
                     last_status, last_error, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let mut inserted = 0;
        for d in list {
            let attempts = i32::try_from(d.attempts).unwrap_or(i32::MAX);
            let failures = i32::try_from(d.failures).unwrap_or(i32::MAX);
            let last_status = d.last_status.map(i32::from);
            inserted += tx
                .execute(
                    &stmt,
                    &[
                        &d.id,
                        &d.route,
                        &d.url,
                        &d.event_type,
                        &d.event_id,
                        &d.payload,
                        &d.created_at_ms,
                        &d.status,
                        &attempts,
                        &failures,
                        &d.schedule_start_ms,
                        &d.next_at_ms,
                        &last_status,
                        &d.last_error,
                        &d.updated_at_ms,
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Inserts delivery tries as they are; those already there are kept.
    pub async fn attempts(&mut self, list: &[Attempt]) -> Result<u64, StorageError> {
        let tx = self.client.transaction().await?;
        let stmt = tx
            .prepare(
                "INSERT INTO webhook_attempts
                     (delivery_id, number, at_ms, duration_ms, status_code, error)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .await?;
        let mut inserted = 0;
        for a in list {
            let number = i32::try_from(a.number).unwrap_or(i32::MAX);
            let status_code = a.status_code.map(i32::from);
            inserted += tx
                .execute(
                    &stmt,
                    &[
                        &a.delivery_id,
                        &number,
                        &a.at_ms,
                        &a.duration_ms,
                        &status_code,
                        &a.error,
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Inserts endpoints disabled by a 410; those already there are kept.
    pub async fn endpoints(&mut self, list: &[DisabledEndpoint]) -> Result<u64, StorageError> {
        let tx = self.client.transaction().await?;
        let mut inserted = 0;
        for e in list {
            inserted += tx
                .execute(
                    "INSERT INTO webhook_endpoints (route, url, disabled_at_ms, reason)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&e.route, &e.url, &e.disabled_at_ms, &e.reason],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Inserts retention's named values; those already there are kept.
    pub async fn retention_state(&mut self, list: &[(String, i64)]) -> Result<u64, StorageError> {
        let tx = self.client.transaction().await?;
        let mut inserted = 0;
        for (name, value) in list {
            inserted += tx
                .execute(
                    "INSERT INTO retention_state (name, value) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[name, value],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }
}
