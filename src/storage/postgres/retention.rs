//! Retention's SQL on PostgreSQL (what it does: storage/retention.rs;
//! the policy: `crate::retention`). Each call is one short transaction on
//! a pooled connection. One node at a time prunes: the pass holds an
//! advisory lock, and a node that cannot take it skips its pass.
//! Partitions by time (dropping a month instead of deleting its rows) are
//! not built yet (docs/scaling.md). Deleted copies and events leave the
//! hourly rollups in the same statement (`rollups.rs`).

use std::net::IpAddr;

use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::{Postgres, parse_ip, rollups};
use crate::storage::StorageError;
use crate::storage::retention::Removed;

/// The advisory lock a retention pass holds ("trackret").
const RETENTION_LOCK: i64 = 0x7472_6163_6b72_6574;

/// A retention pass's connection, holding the lock; released on drop
/// (the session ends, or goes back to the pool unlocked).
pub struct Pass {
    /// `None` once finished.
    client: Option<deadpool_postgres::Object>,
}

impl Postgres {
    /// Takes the retention lock; `None` while another node holds it.
    pub async fn retention_pass(&self) -> Result<Option<Pass>, StorageError> {
        let client = self.client().await?;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RETENTION_LOCK])
            .await?
            .get(0);
        Ok(locked.then_some(Pass {
            client: Some(client),
        }))
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        // Not finished (an error, shutdown): the session is closed rather
        // than pooled, which releases its lock.
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

async fn self_unlock(client: &deadpool_postgres::Object) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&RETENTION_LOCK])
        .await
        .map(drop)
}

impl Pass {
    /// Releases the lock.
    pub async fn finish(mut self) -> Result<(), StorageError> {
        if let Some(client) = self.client.take() {
            self_unlock(&client).await?;
        }
        Ok(())
    }

    fn conn(&mut self) -> Result<&mut deadpool_postgres::Object, StorageError> {
        self.client
            .as_mut()
            .ok_or_else(|| StorageError::Task("retention pass finished".into()))
    }

    /// Copies, observations and events older than `before_ms`.
    pub async fn count_before(&mut self, before_ms: i64) -> Result<Removed, StorageError> {
        let row = self
            .conn()?
            .query_one(
                "SELECT (SELECT count(*) FROM messages WHERE relayed_at_ms < $1),
                        (SELECT count(*) FROM observations WHERE at_ms < $1),
                        (SELECT count(*) FROM events WHERE at_ms < $1)",
                &[&before_ms],
            )
            .await?;
        let n = |i: usize| row.get::<_, i64>(i).unsigned_abs();
        Ok(Removed {
            copies: n(0),
            observations: n(1),
            events: n(2),
            ..Removed::default()
        })
    }

    /// Deletes copies relayed before `before_ms` with their hits, events
    /// and claims, then older hits and events left (copies elsewhere).
    pub async fn delete_before(&mut self, before_ms: i64) -> Result<Removed, StorageError> {
        let tx = self.conn()?.transaction().await?;
        let ids: Vec<Uuid> = tx
            .query(
                "SELECT id FROM messages WHERE relayed_at_ms < $1",
                &[&before_ms],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut removed = delete_copies(&*tx, &ids).await?;
        super::feed::forget_before(&*tx, before_ms).await?;
        removed.events += rollups::delete_events_before(&*tx, before_ms).await?;
        removed.observations += tx
            .execute("DELETE FROM observations WHERE at_ms < $1", &[&before_ms])
            .await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Deletes the per-address counts of minutes before `before_ms`.
    pub async fn forget_address_counts(&mut self, before_ms: i64) -> Result<u64, StorageError> {
        let client: &tokio_postgres::Client = self.conn()?;
        super::addresses::forget_before(client, before_ms).await
    }

    /// Observations before `before_ms` not minimised yet: id and IP, at
    /// most `limit`, oldest first.
    pub async fn raw_rows(
        &mut self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(Uuid, Option<IpAddr>)>, StorageError> {
        let rows = self
            .conn()?
            .query(
                "SELECT id, ip FROM observations WHERE at_ms < $1 AND ip_hash IS NULL
                 ORDER BY at_ms LIMIT $2",
                &[&before_ms, &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, parse_ip(r.try_get(1)?)?)))
            .collect()
    }

    /// Minimises `rows` (id, IP hash): exact IP, user agent and headers go.
    pub async fn minimise(&mut self, rows: &[(Uuid, String)]) -> Result<u64, StorageError> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        let hashes: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        Ok(self
            .conn()?
            .execute(
                "UPDATE observations o SET ip_hash = h.hash, ip = '', user_agent = NULL,
                     headers = '[]'::jsonb
                 FROM unnest($1::uuid[], $2::text[]) AS h(id, hash)
                 WHERE o.id = h.id AND o.ip_hash IS NULL",
                &[&ids, &hashes],
            )
            .await?)
    }

    /// Removes `ip` and `user_agent` from sent (or given up) webhook
    /// bodies created before `before_ms`.
    pub async fn minimise_webhook_payloads(&mut self, before_ms: i64) -> Result<u64, StorageError> {
        Ok(self
            .conn()?
            .execute(
                "UPDATE webhook_deliveries
                 SET payload = ((payload::jsonb) #- '{data,ip}' #- '{data,user_agent}')::text
                 WHERE created_at_ms < $1 AND status <> 'pending'
                   AND ((payload::jsonb) #> '{data,ip}' IS NOT NULL
                        OR (payload::jsonb) #> '{data,user_agent}' IS NOT NULL)",
                &[&before_ms],
            )
            .await?)
    }

    /// Removes what is stored about `address` (as SQLite's `forget`).
    pub async fn forget(
        &mut self,
        address: &str,
        recipient_ids: &[String],
    ) -> Result<Removed, StorageError> {
        let address = address.trim().to_lowercase();
        let tx = self.conn()?.transaction().await?;
        let copies = tx
            .query(
                "SELECT m.id, m.recipients FROM message_recipients r
                 JOIN messages m ON m.id = r.message_id WHERE r.address = $1",
                &[&address],
            )
            .await?;
        let mut alone = Vec::new();
        let mut removed = Removed::default();
        for row in &copies {
            let (id, list): (Uuid, Vec<String>) = (row.get(0), row.get(1));
            let others: Vec<&String> = list
                .iter()
                .filter(|r| r.trim().to_lowercase() != address)
                .collect();
            if others.is_empty() {
                alone.push(id);
                continue;
            }
            tx.execute(
                "UPDATE messages SET recipients = $2 WHERE id = $1",
                &[&id, &others],
            )
            .await?;
            tx.execute(
                "DELETE FROM message_recipients WHERE message_id = $1 AND address = $2",
                &[&id, &address],
            )
            .await?;
            removed.copies_edited += 1;
        }
        removed.add(delete_copies(&*tx, &alone).await?);
        removed.observations += tx
            .execute(
                "DELETE FROM observations WHERE recipient_id = ANY ($1)",
                &[&recipient_ids],
            )
            .await?;
        super::feed::forget(&*tx, "recipient_id = ANY ($1)", &recipient_ids).await?;
        removed.events += rollups::delete_events_of(&*tx, recipient_ids).await?;
        tx.execute(
            "DELETE FROM event_firsts WHERE recipient = ANY ($1)",
            &[&recipient_ids],
        )
        .await?;
        let ids: Vec<String> = alone.iter().map(Uuid::to_string).collect();
        removed.webhook_deliveries = tx
            .execute(
                "DELETE FROM webhook_deliveries WHERE status = 'pending' AND (
                     (payload::jsonb) #>> '{data,message_id}' = ANY ($1)
                     OR (payload::jsonb) #>> '{data,recipient_id}' = ANY ($2)
                     OR lower((payload::jsonb) #>> '{data,recipient}') = $3)",
                &[&ids, &recipient_ids, &address],
            )
            .await?;
        tx.commit().await?;
        Ok(removed)
    }
}

/// Deletes copies with their hits, events and first-count claims (their
/// recipient and tag rows go by `ON DELETE CASCADE`); copies and events
/// leave the rollups in the statement that deletes them.
async fn delete_copies(client: &impl GenericClient, ids: &[Uuid]) -> Result<Removed, StorageError> {
    let observations = client
        .execute(
            "DELETE FROM observations WHERE message_id = ANY ($1)",
            &[&ids],
        )
        .await?;
    super::feed::forget(client, "message_id = ANY ($1)", &ids).await?;
    let (events, copies) = rollups::delete_copies(client, ids).await?;
    client
        .execute(
            "DELETE FROM event_firsts WHERE message_id = ANY ($1)",
            &[&ids],
        )
        .await?;
    Ok(Removed {
        copies,
        observations,
        events,
        ..Removed::default()
    })
}
