//! Retention's SQL on PostgreSQL (what it does: storage/retention.rs;
//! the policy: `crate::retention`). Each call is one short transaction on
//! a pooled connection. One node at a time prunes: the pass holds an
//! advisory lock, and a node that cannot take it skips its pass.
//!
//! `observations` and `events` are partitioned by month (partitions.rs):
//! a pass first makes the coming months' partitions and moves stray rows
//! out of the default partition, then drops the months wholly past the
//! deletion horizon, and only then deletes row by row what is left
//! before it (the month the horizon falls in, the default partition, and
//! the copies relayed before it with all their hits). Minimisation
//! rewrites columns and forget deletes rows, on every partition alike.
//! Deleted copies and events leave the hourly rollups in the same
//! statement (`rollups.rs`); a dropped month's events leave them in the
//! transaction that drops it.

use std::net::IpAddr;

use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::{Postgres, parse_ip, partitions, rollups};
use crate::storage::StorageError;
use crate::storage::retention::Removed;

/// The advisory lock a retention pass holds ("trackret").
const RETENTION_LOCK: i64 = 0x7472_6163_6b72_6574;

/// An observation not minimised yet, as minimisation reads it.
#[derive(Debug, Clone, Copy)]
pub struct RawHit {
    pub id: Uuid,
    pub at_ms: i64,
    /// The exact IP.
    pub ip: Option<IpAddr>,
}

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

    /// Makes this month's and next month's partitions (as of `now_ms`)
    /// and moves the default partitions' rows from `from_ms` on into their
    /// months. A failure (a lock not had in time) is logged, not returned:
    /// rows wait in the default partition meanwhile, none is lost.
    pub async fn partitions(&mut self, now_ms: i64, from_ms: i64) -> Result<(), StorageError> {
        let client = self.conn()?;
        let made = async {
            partitions::ensure(client, now_ms).await?;
            partitions::tidy(client, from_ms).await
        };
        if let Err(e) = made.await {
            tracing::warn!(error = %e, "time partitions not made; tried again next pass");
        }
        Ok(())
    }

    /// Drops the partitions whose every row is before `before_ms`;
    /// returns the rows they held.
    async fn drop_expired(&mut self, before_ms: i64) -> Result<Removed, StorageError> {
        let client = self.conn()?;
        let mut removed = Removed::default();
        for table in partitions::TABLES {
            for month in partitions::expired(client, table, before_ms).await? {
                let Some(rows) = partitions::drop_partition(client, &month).await? else {
                    continue;
                };
                tracing::info!(partition = %month.name, rows, "expired partition dropped");
                match table {
                    "events" => removed.events += rows,
                    _ => removed.observations += rows,
                }
            }
        }
        Ok(removed)
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

    /// Drops the partitions wholly before `before_ms`, then deletes
    /// copies relayed before it with their hits, events and claims, then
    /// the older hits and events left (the horizon's month, the default
    /// partition, copies stored elsewhere).
    pub async fn delete_before(&mut self, before_ms: i64) -> Result<Removed, StorageError> {
        let dropped = self.drop_expired(before_ms).await?;
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
        removed.add(dropped);
        Ok(removed)
    }

    /// Deletes the per-address counts of minutes before `before_ms`.
    pub async fn forget_address_counts(&mut self, before_ms: i64) -> Result<u64, StorageError> {
        let client: &tokio_postgres::Client = self.conn()?;
        super::addresses::forget_before(client, before_ms).await
    }

    /// Observations before `before_ms` not minimised yet, at most
    /// `limit`, oldest first.
    pub async fn raw_rows(
        &mut self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<RawHit>, StorageError> {
        let rows = self
            .conn()?
            .query(
                "SELECT id, at_ms, ip FROM observations WHERE at_ms < $1 AND ip_hash IS NULL
                 ORDER BY at_ms LIMIT $2",
                &[&before_ms, &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RawHit {
                    id: r.try_get(0)?,
                    at_ms: r.try_get(1)?,
                    ip: parse_ip(r.try_get(2)?)?,
                })
            })
            .collect()
    }

    /// Minimises `rows` (a hit, its IP hash): exact IP, user agent and
    /// headers go. By `(id, at_ms)`, the key: one partition per row.
    pub async fn minimise(&mut self, rows: &[(RawHit, String)]) -> Result<u64, StorageError> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.0.id).collect();
        let times: Vec<i64> = rows.iter().map(|r| r.0.at_ms).collect();
        let hashes: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        Ok(self
            .conn()?
            .execute(
                "UPDATE observations o SET ip_hash = h.hash, ip = '', user_agent = NULL,
                     headers = '[]'::jsonb
                 FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS h(id, at_ms, hash)
                 WHERE o.id = h.id AND o.at_ms = h.at_ms AND o.ip_hash IS NULL",
                &[&ids, &times, &hashes],
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
