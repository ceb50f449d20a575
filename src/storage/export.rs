//! Reading a SQLite database out, table by table, in batches: the source
//! side of `trackrelay migrate-storage` (storage/transfer.rs).
//!
//! The file is opened read-only (`SQLITE_OPEN_READ_ONLY`: nothing in it
//! can change, not even its schema version) and read inside one read
//! transaction, so every table comes from the same snapshot even if a
//! node still writes beside it. Each table is walked in the order of a
//! key (keyset pagination: `WHERE key > last ORDER BY key LIMIT n`), so a
//! batch costs about its size however far the walk is.

use std::path::{Path, PathBuf};

use rusqlite::types::{Type, Value};
use rusqlite::{Connection, OpenFlags, Row};

use super::{
    Attempt, CopyMetadata, DisabledEndpoint, IdempotentResponse, RouteOverride, StorageError,
    schema, uuid_column,
};

/// Why a SQLite file cannot be read out.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}: no such file")]
    Missing(PathBuf),
    #[error("{path} is not a SQLite database: {source}")]
    NotSqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{0} is a SQLite database but not trackrelay's (it has no `messages` table)")]
    NotTrackrelay(PathBuf),
    #[error(
        "{path} is at schema version {found}, this program reads version {wanted}: bring it up \
         to date first (`trackrelay migrate` with `[storage] path` set to it, or start the node \
         on it once with this version)"
    )]
    OldSchema {
        path: PathBuf,
        found: i64,
        wanted: i64,
    },
    #[error("{path} is at schema version {found}, newer than this program's ({wanted})")]
    NewSchema {
        path: PathBuf,
        found: i64,
        wanted: i64,
    },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: StorageError },
}

/// One table's walk: what to select and the key that orders it.
pub(super) struct Walk {
    /// The table, as counted.
    pub table: &'static str,
    /// `SELECT` list and `FROM`, the key columns excluded.
    pub select: &'static str,
    /// The key columns, in order (selected as `k0`, `k1`, …).
    pub key: &'static [&'static str],
}

/// Where a walk stands: the key of the last row read.
pub(super) type Cursor = Vec<Value>;

/// A SQLite database opened for reading out.
pub struct Source {
    conn: Connection,
    path: PathBuf,
}

impl Source {
    /// Opens `path` read-only, checks it is a trackrelay database at this
    /// program's schema version, and starts the snapshot.
    pub fn open(path: &Path) -> Result<Source, SourceError> {
        if !path.is_file() {
            return Err(SourceError::Missing(path.to_owned()));
        }
        let not_sqlite = |source| SourceError::NotSqlite {
            path: path.to_owned(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(not_sqlite)?;
        // A file that is not SQLite fails at the first read of its header.
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(not_sqlite)?;
        let has_messages: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'messages')",
                [],
                |r| r.get(0),
            )
            .map_err(not_sqlite)?;
        if !has_messages {
            return Err(SourceError::NotTrackrelay(path.to_owned()));
        }
        let (path, wanted) = (path.to_owned(), schema::VERSION);
        match found.cmp(&wanted) {
            std::cmp::Ordering::Less => Err(SourceError::OldSchema {
                path,
                found,
                wanted,
            }),
            std::cmp::Ordering::Greater => Err(SourceError::NewSchema {
                path,
                found,
                wanted,
            }),
            std::cmp::Ordering::Equal => {
                // One snapshot for every table; ended when the source is dropped.
                conn.execute_batch("BEGIN")
                    .map_err(|e| read_error(&path, e.into()))?;
                Ok(Source { conn, path })
            }
        }
    }

    /// How many rows `walk`'s table holds.
    pub(super) fn count(&self, walk: &Walk) -> Result<u64, SourceError> {
        let sql = format!("SELECT count(*) FROM {}", walk.table);
        let n: i64 = self
            .conn
            .query_row(&sql, [], |r| r.get(0))
            .map_err(|e| read_error(&self.path, e.into()))?;
        Ok(n.unsigned_abs())
    }

    /// The next at most `limit` rows of `walk` after `after` (from the
    /// start when `None`), each read by `map`, and the cursor after them
    /// (`None` when the table is done).
    pub(super) fn batch<T>(
        &self,
        walk: &Walk,
        after: Option<&Cursor>,
        limit: usize,
        map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<(Vec<T>, Option<Cursor>), SourceError> {
        self.read_batch(walk, after, limit, map)
            .map_err(|e| read_error(&self.path, e))
    }

    fn read_batch<T>(
        &self,
        walk: &Walk,
        after: Option<&Cursor>,
        limit: usize,
        map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<(Vec<T>, Option<Cursor>), StorageError> {
        let keys = walk.key.join(", ");
        let named: Vec<String> = (0..walk.key.len())
            .map(|i| format!("{} AS k{i}", walk.key[i]))
            .collect();
        let mut values: Vec<Value> = after.cloned().unwrap_or_default();
        let condition = match after {
            Some(_) => {
                let marks = vec!["?"; walk.key.len()].join(", ");
                format!("WHERE ({keys}) > ({marks})")
            }
            None => String::new(),
        };
        values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT {}, {} {condition} ORDER BY {keys} LIMIT ?",
            named.join(", "),
            walk.select
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        let (mut out, mut last) = (Vec::new(), None);
        while let Some(row) = rows.next()? {
            out.push(map(row)?);
            let key = (0..walk.key.len())
                .map(|i| row.get::<_, Value>(i))
                .collect::<rusqlite::Result<Cursor>>()?;
            last = Some(key);
        }
        let next = if out.len() < limit { None } else { last };
        Ok((out, next))
    }
}

fn read_error(path: &Path, source: StorageError) -> SourceError {
    SourceError::Read {
        path: path.to_owned(),
        source,
    }
}

// How the tables without a reader of their own read a row.

pub(super) fn metadata_row(r: &Row<'_>) -> rusqlite::Result<CopyMetadata> {
    let json: String = r.get("json")?;
    let metadata = serde_json::from_str(&json).map_err(|e| {
        let index = r.as_ref().column_index("json").unwrap_or(0);
        rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e))
    })?;
    Ok(CopyMetadata {
        copy_id: uuid_column(r, "copy_id")?,
        metadata,
    })
}

pub(super) fn attempt_row(r: &Row<'_>) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        delivery_id: uuid_column(r, "delivery_id")?,
        number: r.get("number")?,
        at_ms: r.get("at_ms")?,
        duration_ms: r.get("duration_ms")?,
        status_code: r.get("status_code")?,
        error: r.get("error")?,
    })
}

pub(super) fn endpoint_row(r: &Row<'_>) -> rusqlite::Result<DisabledEndpoint> {
    Ok(DisabledEndpoint {
        route: r.get("route")?,
        url: r.get("url")?,
        disabled_at_ms: r.get("disabled_at_ms")?,
        reason: r.get("reason")?,
    })
}

pub(super) fn override_row(r: &Row<'_>) -> rusqlite::Result<RouteOverride> {
    Ok(RouteOverride {
        route: r.get("route")?,
        track_opens: r.get("track_opens")?,
        track_clicks: r.get("track_clicks")?,
        updated_at_ms: r.get("updated_at_ms")?,
    })
}

pub(super) fn idempotent_row(r: &Row<'_>) -> rusqlite::Result<IdempotentResponse> {
    Ok(IdempotentResponse {
        token_digest: r.get("token_digest")?,
        key: r.get("key")?,
        body_digest: r.get("body_digest")?,
        status: r.get("status")?,
        body: r.get("body")?,
        created_at_ms: r.get("created_at_ms")?,
    })
}
