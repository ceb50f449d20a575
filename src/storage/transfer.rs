//! Moving a SQLite database into PostgreSQL (`trackrelay migrate-storage`,
//! docs/scaling.md "Moving a SQLite database over"): every table that
//! holds something an operator would miss, read from the SQLite file
//! (storage/export.rs) and written into PostgreSQL
//! (storage/postgres/import.rs) one batch, one transaction, at a time.
//!
//! Ids and times are kept as they are, so tokens already in inboxes keep
//! resolving to the same copy. What one table derives from another (a
//! copy's listing indexes, an event's route and first-count claims) is
//! not copied: rows go through the PostgreSQL writer's own functions,
//! which rebuild it. SQLite's rollups and feed positions are not tables
//! of the PostgreSQL schema.
//!
//! Restartable: a batch is committed whole or not at all, and with
//! `resume` rows whose key is already in the target are skipped, so a
//! second run continues where a failed one stopped.

use std::path::Path;

use rusqlite::types::Value;
use uuid::Uuid;

use super::export::{
    Cursor, Source, Walk, attempt_row, endpoint_row, idempotent_row, metadata_row, override_row,
};
use super::postgres::import::Target;
use super::writer::Record;
use super::{
    DomainsSeen, PostgresSettings, StorageError, events, messages, observations, webhooks,
};

pub use super::export::SourceError;

/// Most rows read and written in one batch, unless told otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 1000;

/// The tables copied, in the order they are copied: copies before their
/// events (an event takes its copy's route when written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Messages,
    Metadata,
    Observations,
    Events,
    Deliveries,
    Attempts,
    Endpoints,
    Overrides,
    Domains,
    Idempotency,
    RetentionState,
}

impl Table {
    /// Every table, in copy order.
    pub const ALL: [Table; 11] = [
        Table::Messages,
        Table::Metadata,
        Table::Observations,
        Table::Events,
        Table::Deliveries,
        Table::Attempts,
        Table::Endpoints,
        Table::Overrides,
        Table::Domains,
        Table::Idempotency,
        Table::RetentionState,
    ];

    /// The table's name (the same on both backends).
    pub fn name(self) -> &'static str {
        self.walk().table
    }

    fn walk(self) -> &'static Walk {
        const fn walk(
            table: &'static str,
            select: &'static str,
            key: &'static [&'static str],
        ) -> Walk {
            Walk { table, select, key }
        }
        // The stored status, not the one read from events (`engagement`).
        static MESSAGES: Walk = walk(
            "messages",
            "m.*, NULL AS engagement FROM messages m",
            &["m.id"],
        );
        static METADATA: Walk = walk(
            "copy_metadata",
            "copy_id, json FROM copy_metadata",
            &["copy_id"],
        );
        static OBSERVATIONS: Walk = walk("observations", "* FROM observations", &["id"]);
        // In the order stored: first counts are claimed in that order.
        static EVENTS: Walk = walk("events", "* FROM events", &["rowid"]);
        static DELIVERIES: Walk = walk("webhook_deliveries", "* FROM webhook_deliveries", &["id"]);
        static ATTEMPTS: Walk = walk(
            "webhook_attempts",
            "* FROM webhook_attempts",
            &["delivery_id", "number"],
        );
        static ENDPOINTS: Walk = walk(
            "webhook_endpoints",
            "* FROM webhook_endpoints",
            &["route", "url"],
        );
        static OVERRIDES: Walk = walk("route_overrides", "* FROM route_overrides", &["route"]);
        static DOMAINS: Walk = walk("tracking_domains", "* FROM tracking_domains", &["url"]);
        static IDEMPOTENCY: Walk = walk(
            "send_idempotency",
            "* FROM send_idempotency",
            &["token_digest", "key"],
        );
        static RETENTION: Walk = walk("retention_state", "* FROM retention_state", &["name"]);
        match self {
            Table::Messages => &MESSAGES,
            Table::Metadata => &METADATA,
            Table::Observations => &OBSERVATIONS,
            Table::Events => &EVENTS,
            Table::Deliveries => &DELIVERIES,
            Table::Attempts => &ATTEMPTS,
            Table::Endpoints => &ENDPOINTS,
            Table::Overrides => &OVERRIDES,
            Table::Domains => &DOMAINS,
            Table::Idempotency => &IDEMPOTENCY,
            Table::RetentionState => &RETENTION,
        }
    }
}

/// Where one table's copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub table: Table,
    /// Rows in the SQLite snapshot.
    pub in_source: u64,
    /// Rows written so far.
    pub copied: u64,
    /// Rows skipped because the target had their key already (`resume`).
    pub present: u64,
}

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot reach PostgreSQL at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("preparing PostgreSQL at {target}: {source}")]
    Target {
        target: String,
        source: StorageError,
    },
    #[error(
        "PostgreSQL at {target} already holds data ({tables}): migrate-storage fills an empty \
         database; to continue a migration into it that stopped, run it again with --resume"
    )]
    NotEmpty { target: String, tables: String },
    #[error("copying {table} (the batch after {after}): {source}")]
    Write {
        table: &'static str,
        after: String,
        source: StorageError,
    },
}

/// A SQLite database being moved into a PostgreSQL one.
pub struct Transfer {
    source: Source,
    target: Target,
    batch_rows: usize,
}

impl Transfer {
    /// Opens both ends: the SQLite file read-only (checked first, so a bad
    /// source leaves the target untouched), then PostgreSQL, migrated. The
    /// target must hold nothing unless `resume`.
    pub async fn open(
        from: &Path,
        to: &PostgresSettings,
        resume: bool,
        batch_rows: usize,
    ) -> Result<Transfer, TransferError> {
        let source = Source::open(from)?;
        let shown = to.to_string();
        let target = Target::connect(to).await.map_err(|source| match source {
            StorageError::Connect(reason) => TransferError::Unreachable {
                target: shown.clone(),
                reason,
            },
            StorageError::Postgres(e) if e.code().is_none() => TransferError::Unreachable {
                target: shown.clone(),
                reason: e.to_string(),
            },
            source => TransferError::Target {
                target: shown.clone(),
                source,
            },
        })?;
        if !resume {
            let held = target
                .holdings()
                .await
                .map_err(|source| TransferError::Target {
                    target: shown.clone(),
                    source,
                })?;
            if !held.is_empty() {
                let tables: Vec<String> =
                    held.iter().map(|(t, n)| format!("{t}: {n} rows")).collect();
                return Err(TransferError::NotEmpty {
                    target: shown,
                    tables: tables.join(", "),
                });
            }
        }
        Ok(Transfer {
            source,
            target,
            batch_rows: batch_rows.max(1),
        })
    }

    /// Copies `table` whole, batch by batch; `progress` is told after each.
    pub async fn copy(
        &mut self,
        table: Table,
        progress: &mut dyn FnMut(&Tally),
    ) -> Result<Tally, TransferError> {
        let mut tally = Tally {
            table,
            in_source: self.source.count(table.walk())?,
            copied: 0,
            present: 0,
        };
        let mut cursor: Option<Cursor> = None;
        loop {
            let next = self.copy_batch(cursor.as_ref(), &mut tally).await?;
            progress(&tally);
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if matches!(table, Table::Observations | Table::Events) {
            // Past months' rows landed in the default partition.
            let moved = self.target.partition_months().await;
            moved.map_err(|source| TransferError::Write {
                table: table.name(),
                after: "the last batch, putting rows in their months".into(),
                source,
            })?;
        }
        Ok(tally)
    }

    /// One batch of `tally.table` after `after`; the cursor after it.
    async fn copy_batch(
        &mut self,
        after: Option<&Cursor>,
        tally: &mut Tally,
    ) -> Result<Option<Cursor>, TransferError> {
        let table = tally.table;
        let failed = |source| TransferError::Write {
            table: table.name(),
            after: describe(after),
            source,
        };
        let result = match table {
            Table::Messages | Table::Metadata | Table::Observations | Table::Events => {
                self.copy_written(after, tally).await
            }
            _ => self.copy_inserted(after, tally).await,
        };
        result.map_err(|e| match e {
            Step::Source(e) => TransferError::Source(e),
            Step::Target(e) => failed(e),
        })
    }

    /// Tables written through the writer's functions, skipping rows the
    /// target has already (by id).
    async fn copy_written(
        &mut self,
        after: Option<&Cursor>,
        tally: &mut Tally,
    ) -> Result<Option<Cursor>, Step> {
        let (records, ids, hashes, next) =
            written(&self.source, self.batch_rows, tally.table, after)?;
        let key = if tally.table == Table::Metadata {
            "copy_id"
        } else {
            "id"
        };
        let present = self.target.present(tally.table.name(), key, &ids).await?;
        let fresh: Vec<&Record> = records
            .iter()
            .zip(&ids)
            .filter(|(_, id)| !present.contains(id))
            .map(|(r, _)| r)
            .collect();
        if !fresh.is_empty() {
            self.target.write(&fresh).await?;
        }
        if !hashes.is_empty() {
            self.target.ip_hashes(&hashes).await?;
        }
        tally.copied += fresh.len() as u64;
        tally.present += present.len() as u64;
        Ok(next)
    }

    /// The outbox's state, retention's, and the small tables written with
    /// upserts (route overrides, tracking domains, idempotency answers).
    async fn copy_inserted(
        &mut self,
        after: Option<&Cursor>,
        tally: &mut Tally,
    ) -> Result<Option<Cursor>, Step> {
        let (walk, n, target) = (tally.table.walk(), self.batch_rows, &mut self.target);
        let (rows, inserted, next) = match tally.table {
            Table::Deliveries => {
                let (rows, next) = self.source.batch(walk, after, n, webhooks::from_row)?;
                (rows.len(), target.deliveries(&rows).await?, next)
            }
            Table::Attempts => {
                let (rows, next) = self.source.batch(walk, after, n, attempt_row)?;
                (rows.len(), target.attempts(&rows).await?, next)
            }
            Table::Endpoints => {
                let (rows, next) = self.source.batch(walk, after, n, endpoint_row)?;
                (rows.len(), target.endpoints(&rows).await?, next)
            }
            Table::RetentionState => {
                let (rows, next) = self.source.batch(walk, after, n, |r| {
                    Ok((r.get::<_, String>("name")?, r.get::<_, i64>("value")?))
                })?;
                (rows.len(), target.retention_state(&rows).await?, next)
            }
            table => {
                let (records, next) = upserts(&self.source, n, table, after)?;
                let all: Vec<&Record> = records.iter().collect();
                target.write(&all).await?;
                (records.len(), records.len() as u64, next)
            }
        };
        tally.copied += inserted;
        tally.present += rows as u64 - inserted;
        Ok(next)
    }
}

/// A batch of the tables written through the writer's functions.
fn written(
    source: &Source,
    n: usize,
    table: Table,
    after: Option<&Cursor>,
) -> Result<Written, SourceError> {
    let walk = table.walk();
    Ok(match table {
        Table::Messages => {
            let (rows, next) = source.batch(walk, after, n, messages::from_row)?;
            let ids = rows.iter().map(|c| c.id).collect();
            let records = rows.into_iter().map(|c| Record::Relayed(Box::new(c)));
            (records.collect(), ids, Vec::new(), next)
        }
        Table::Metadata => {
            let (rows, next) = source.batch(walk, after, n, metadata_row)?;
            let ids = rows.iter().map(|m| m.copy_id).collect();
            let records = rows.into_iter().map(|m| Record::Metadata(Box::new(m)));
            (records.collect(), ids, Vec::new(), next)
        }
        Table::Observations => {
            let (rows, next) = source.batch(walk, after, n, |r| {
                Ok((
                    observations::from_row(r)?,
                    r.get::<_, Option<String>>("ip_hash")?,
                ))
            })?;
            let ids = rows.iter().map(|(o, _)| o.id).collect();
            let hashes = rows
                .iter()
                .filter_map(|(o, h)| h.clone().map(|h| (o.id, h)))
                .collect();
            let records = rows
                .into_iter()
                .map(|(o, _)| Record::Observation(Box::new(o)));
            (records.collect(), ids, hashes, next)
        }
        _ => {
            let (rows, next) = source.batch(walk, after, n, events::from_row)?;
            let ids = rows.iter().map(|e| e.id).collect();
            let records = rows.into_iter().map(|e| Record::Event(Box::new(e)));
            (records.collect(), ids, Vec::new(), next)
        }
    })
}

/// A batch of the tables whose write path is an upsert.
fn upserts(
    source: &Source,
    n: usize,
    table: Table,
    after: Option<&Cursor>,
) -> Result<(Vec<Record>, Option<Cursor>), SourceError> {
    let walk = table.walk();
    Ok(match table {
        Table::Overrides => {
            let (rows, next) = source.batch(walk, after, n, override_row)?;
            let records = rows.into_iter().map(|o| Record::RouteOverride(Box::new(o)));
            (records.collect(), next)
        }
        Table::Domains => {
            let (rows, next) = source.batch(walk, after, n, |r| {
                Ok(DomainsSeen {
                    urls: vec![r.get("url")?],
                    at_ms: r.get("last_configured_ms")?,
                })
            })?;
            let records = rows
                .into_iter()
                .map(|d| Record::TrackingDomains(Box::new(d)));
            (records.collect(), next)
        }
        _ => {
            let (rows, next) = source.batch(walk, after, n, idempotent_row)?;
            // Kept as long as they are: nothing older is deleted here.
            let records = rows
                .into_iter()
                .map(|r| Record::Idempotent(Box::new(r), i64::MAX));
            (records.collect(), next)
        }
    })
}

/// A batch for the writer: its records, their ids in the same order, the
/// IP hashes of minimised hits, the cursor after it.
type Written = (Vec<Record>, Vec<Uuid>, Vec<(Uuid, String)>, Option<Cursor>);

/// A batch's failure, before the table is named.
enum Step {
    Source(SourceError),
    Target(StorageError),
}

impl From<SourceError> for Step {
    fn from(e: SourceError) -> Step {
        Step::Source(e)
    }
}

impl From<StorageError> for Step {
    fn from(e: StorageError) -> Step {
        Step::Target(e)
    }
}

/// A cursor as the operator reads it: the last key copied.
fn describe(after: Option<&Cursor>) -> String {
    let Some(key) = after else {
        return "the start".to_owned();
    };
    let parts: Vec<String> = key
        .iter()
        .map(|v| match v {
            Value::Text(t) => t.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
            other => format!("{other:?}"),
        })
        .collect();
    format!("key {}", parts.join(", "))
}
