//! Storage: the database, SQLite (the default) or PostgreSQL (several
//! nodes on one database, docs/scaling.md), and the only module with SQL.
//! Callers see one [`Storage`] whichever backend is behind it.
//!
//! One file per table under `storage/` (and `storage/postgres/`),
//! migrations in `schema.rs`. Writes
//! from every task go through one writer thread that commits in batches
//! (`writer.rs`, group commit); reads use separate read-only connections
//! on tokio's blocking pool, so a slow read never holds up a write.
//! The database runs in WAL mode with `synchronous = NORMAL`: a committed
//! row survives the process being killed (it is in the WAL, in the OS page
//! cache); only a power loss can take the last commits.
//!
//! `transfer.rs` moves a SQLite database into PostgreSQL (`trackrelay
//! migrate-storage`): `export.rs` reads the file, `postgres/import.rs`
//! writes through the PostgreSQL writer's functions.

mod checkpoint;
mod columns;
mod dashboard;
mod events;
mod export;
mod feed;
mod idempotency;
mod messages;
mod metadata;
mod observations;
pub mod postgres;
pub mod retention;
mod routes;
mod schema;
mod scoped_stats;
mod stats;
pub mod transfer;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row};
use tokio::sync::oneshot;
use uuid::Uuid;

pub use dashboard::{CLASSIFIED_MAX, ClassCounts, RouteEvent};
pub use events::{CopyContext, Event, HitRow};
pub use feed::{FeedFilter, FeedItem};
pub use idempotency::IdempotentResponse;
pub use messages::MessageFilter;
pub use metadata::CopyMetadata;
pub use observations::Observation;
pub use routes::{DomainsSeen, KnownDomain, RouteOverride};
pub use scoped_stats::{CopyCounts, Group, GroupQuery};
pub use stats::{Counts, LinkClicks, StatsQuery};
pub use webhooks::{Attempt, Delivery, DisabledEndpoint, NewDelivery, Next, WebhookWrite};
use writer::{Command, Record, SqliteSink, Writer};

pub use postgres::PostgresSettings;

/// Where the records live: `[storage] path` or `[storage] url`.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file (the default).
    Sqlite(PathBuf),
    /// A PostgreSQL database that several nodes may share.
    Postgres(Box<PostgresSettings>),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Location::Postgres(settings) => settings.fmt(f),
        }
    }
}

/// Runs one read on whichever backend holds the data: `$sqlite` on a
/// read-only SQLite connection `$c`, or `$postgres` with the pool `$pg`.
macro_rules! read {
    ($self:ident, |$c:ident| $sqlite:expr, |$pg:ident| $postgres:expr) => {
        match &$self.inner.backend {
            Backend::Sqlite(_) => $self.read(move |$c| $sqlite).await,
            Backend::Postgres($pg) => $postgres.await,
        }
    };
}
use read;

/// Observations that may wait for the writer before new ones are refused
/// (counted and logged) instead of growing memory without bound.
pub const DEFAULT_QUEUE_CAPACITY: usize = 100_000;
/// How long the writer waits for another connection's lock before it
/// gives the batch up for a later retry.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_millis(250);
/// Idle read-only connections kept open.
const READERS_KEPT: usize = 4;

/// A relayed copy, as the relay records it after the upstream's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedCopy {
    /// The copy's id; its tokens carry it.
    pub id: Uuid,
    /// Id of the route that took the message.
    pub route: String,
    /// Envelope sender (empty for the null sender).
    pub sender: String,
    /// Envelope recipients of this copy (one for per-recipient copies).
    pub recipients: Vec<String>,
    /// Opaque recipient id carried in the tokens (base64url), if any.
    pub recipient_id: Option<String>,
    /// The Message-ID header field, as it came.
    pub message_id_header: Option<String>,
    /// `X-LM-Tag` values.
    pub tags: Vec<String>,
    /// Tracked destinations; the position is the link index in tokens.
    pub links: Vec<String>,
    /// When the upstream answered, ms since the Unix epoch.
    pub relayed_at_ms: i64,
    /// The upstream's reply, code and text.
    pub upstream_reply: String,
    /// Relayed or failed as recorded; opened or clicked as read once it
    /// has counting events.
    pub status: CopyStatus,
}

/// Where a relayed copy stands (SPEC §8 `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyStatus {
    /// The upstream accepted it.
    Relayed,
    /// The upstream refused it.
    Failed,
    /// It has a counting open (read, never recorded).
    Opened,
    /// It has a counting click (read, never recorded).
    Clicked,
}

impl CopyStatus {
    /// The word stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relayed => "relayed",
            Self::Failed => "failed",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
        }
    }
}

impl std::fmt::Display for CopyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CopyStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<CopyStatus, String> {
        match s {
            "relayed" => Ok(Self::Relayed),
            "failed" => Ok(Self::Failed),
            "opened" => Ok(Self::Opened),
            "clicked" => Ok(Self::Clicked),
            other => Err(format!("unknown copy status {other:?}")),
        }
    }
}

/// What went wrong with the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this program's ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("the database refused the row: {0}")]
    Refused(String),
    #[error("the storage writer has stopped")]
    Closed,
    #[error("a database read task failed: {0}")]
    Task(String),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot reach PostgreSQL: {0}")]
    Connect(String),
    #[error("a stored value cannot be read: {0}")]
    Corrupt(String),
}

/// What became of an observation handed to [`Storage::record_observation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Committed within the wait.
    Committed,
    /// Queued; not committed within the wait (it will be, retried).
    Pending,
    /// Not stored: the queue was full. Counted and logged.
    Overflow,
    /// The database refused the row for good (logged).
    Refused,
}

/// Test hook: faults the writer's connection can be put in.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every write fails with SQLITE_READONLY.
    ReadOnly,
}

/// Handle to the database; cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Sender<Command>,
    /// Rows sent to the writer and not yet committed or refused.
    depth: Arc<AtomicUsize>,
    capacity: usize,
    backend: Backend,
}

/// What reads need of each backend.
enum Backend {
    Sqlite(SqliteReaders),
    Postgres(postgres::Postgres),
}

struct SqliteReaders {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// The checkpoint thread runs while this is held.
    _alive: Arc<()>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.inner.backend {
            Backend::Sqlite(s) => s.path.display().to_string(),
            Backend::Postgres(_) => "postgres".to_owned(),
        };
        f.debug_struct("Storage")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens the database at `location` (creating and migrating it) and
    /// starts the writer, with `capacity` observations allowed to wait.
    pub async fn connect(location: &Location, capacity: usize) -> Result<Storage, StorageError> {
        match location {
            Location::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Self::open_with_capacity(&path, capacity))
                    .await
                    .map_err(|e| StorageError::Task(e.to_string()))?
            }
            Location::Postgres(settings) => {
                let pg = postgres::Postgres::connect(settings).await?;
                let sink = postgres::writer::PgSink::new(settings)?;
                Self::start(sink, capacity, Backend::Postgres(pg))
            }
        }
    }

    /// Starts the writer thread over `sink`.
    fn start(
        sink: impl writer::Sink,
        capacity: usize,
        backend: Backend,
    ) -> Result<Storage, StorageError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let depth = Arc::new(AtomicUsize::new(0));
        let writer = Writer::new(sink, rx, depth.clone());
        std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StorageError::Task(e.to_string()))?;
        Ok(Storage {
            inner: Arc::new(Inner {
                tx,
                depth,
                capacity,
                backend,
            }),
        })
    }

    /// Opens (creating if needed) and migrates the database, and starts the
    /// writer thread, with the default queue capacity.
    pub fn open(path: &Path) -> Result<Storage, StorageError> {
        Self::open_with_capacity(path, DEFAULT_QUEUE_CAPACITY)
    }

    /// [`Storage::open`] with `capacity` observations allowed to wait.
    pub fn open_with_capacity(path: &Path, capacity: usize) -> Result<Storage, StorageError> {
        Self::open_with_policy(path, capacity, checkpoint::Policy::default())
    }

    /// [`Storage::open_with_capacity`] with its own checkpoint policy
    /// (tests use a small WAL).
    fn open_with_policy(
        path: &Path,
        capacity: usize,
        policy: checkpoint::Policy,
    ) -> Result<Storage, StorageError> {
        let open_err = |source| StorageError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing directory shows up as the open error just below.
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.busy_timeout(WRITER_BUSY_TIMEOUT).map_err(open_err)?;
        // Checkpoints run on their own thread (storage/checkpoint.rs).
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        schema::migrate(&mut conn)?;
        let catch_up = Arc::new(checkpoint::CatchUp::default());
        let alive = Arc::new(());
        checkpoint::spawn(
            path.to_owned(),
            Arc::downgrade(&alive),
            policy,
            catch_up.clone(),
        )
        .map_err(|e| StorageError::Task(e.to_string()))?;
        let readers = SqliteReaders {
            path: path.to_owned(),
            readers: Mutex::new(Vec::new()),
            _alive: alive,
        };
        Self::start(
            SqliteSink { conn, catch_up },
            capacity,
            Backend::Sqlite(readers),
        )
    }

    /// Records a relayed copy; resolves once it is committed. While the
    /// database is failing the copy stays queued and is retried, so this
    /// waits; a caller that cannot wait may drop the future (the copy is
    /// still stored once the database recovers).
    pub async fn record_relayed(&self, copy: RelayedCopy) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(Record::Relayed(Box::new(copy)), Some(tx))?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// Queues an observation and waits up to `wait` for its commit, never
    /// longer. A full queue refuses it: counted and logged with its fields.
    pub async fn record_observation(&self, obs: Observation, wait: Duration) -> Stored {
        let depth = self.inner.depth.load(Ordering::Acquire);
        if depth >= self.inner.capacity {
            crate::metrics::overflow();
            // The log line is the hit's last record: enough to count it.
            tracing::warn!(
                message_id = %obs.message_id, kind = ?obs.kind, link = ?obs.link,
                at_ms = obs.at_ms, ip = ?obs.ip, queued = depth,
                "observation dropped: write queue full"
            );
            return Stored::Overflow;
        }
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.send(Record::Observation(Box::new(obs)), Some(tx)) {
            tracing::error!(error = %e, "observation not queued");
            return Stored::Overflow;
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(()))) => Stored::Committed,
            Ok(Ok(Err(_))) => Stored::Refused,
            Ok(Err(_)) | Err(_) => Stored::Pending,
        }
    }

    fn send(&self, record: Record, done: Option<writer::Done>) -> Result<(), StorageError> {
        let depth = self.inner.depth.fetch_add(1, Ordering::AcqRel) + 1;
        crate::metrics::queue_depth(depth);
        self.inner
            .tx
            .send(Command::Write(record, done))
            .map_err(|_| {
                self.inner.depth.fetch_sub(1, Ordering::AcqRel);
                StorageError::Closed
            })
    }

    /// The PostgreSQL backend, when that is the one (retention works on it
    /// directly: storage/postgres/retention.rs).
    pub fn postgres(&self) -> Option<&postgres::Postgres> {
        match &self.inner.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Sqlite(_) => None,
        }
    }

    /// Rows queued and not yet committed.
    pub fn queue_depth(&self) -> usize {
        self.inner.depth.load(Ordering::Acquire)
    }

    /// Waits until everything queued before this call is committed, at
    /// most `limit`. True when it all was.
    pub async fn flush(&self, limit: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Flush(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(limit, rx).await, Ok(Ok(())))
    }

    /// Test hook: puts the writer's connection in a fault, or back.
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Option<Fault>) {
        let _ = self.inner.tx.send(Command::Fault(fault));
    }

    /// Relayed copies matching `filter`, newest first.
    pub async fn messages(&self, filter: MessageFilter) -> Result<Vec<RelayedCopy>, StorageError> {
        read!(self, |c| messages::list(c, &filter), |pg| pg
            .messages(&filter))
    }

    /// One relayed copy.
    pub async fn message(&self, id: Uuid) -> Result<Option<RelayedCopy>, StorageError> {
        read!(self, |c| messages::get(c, id), |pg| pg.message(id))
    }

    /// The observations of one copy, oldest first.
    pub async fn observations(&self, message_id: Uuid) -> Result<Vec<Observation>, StorageError> {
        read!(self, |c| observations::for_message(c, message_id), |pg| pg
            .observations(message_id))
    }

    /// Stores classified observations; resolves once all are committed
    /// (or one was refused for good).
    pub async fn record_events(&self, events: Vec<Event>) -> Result<(), StorageError> {
        let mut waiting = Vec::with_capacity(events.len());
        for event in events {
            let (tx, rx) = oneshot::channel();
            self.send(Record::Event(Box::new(event)), Some(tx))?;
            waiting.push(rx);
        }
        for rx in waiting {
            rx.await.map_err(|_| StorageError::Closed)??;
        }
        Ok(())
    }

    /// The events of one copy, oldest first.
    pub async fn events(&self, message_id: Uuid) -> Result<Vec<Event>, StorageError> {
        read!(self, |c| events::for_message(c, message_id), |pg| pg
            .events(message_id))
    }

    /// What the classification pipeline needs about each copy (its hits
    /// in the window, first open, relaying time, counting events), read
    /// on one connection in one go.
    pub async fn copy_contexts(
        &self,
        wanted: Vec<(Uuid, i64, i64)>,
    ) -> Result<Vec<CopyContext>, StorageError> {
        read!(self, |c| events::contexts(c, &wanted), |pg| pg
            .copy_contexts(&wanted))
    }

    /// Observations of `(from_ms, to_ms]` without an event, oldest first.
    pub async fn unclassified(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<Observation>, StorageError> {
        read!(
            self,
            |c| events::unclassified(c, from_ms, to_ms, limit),
            |pg| pg.unclassified(from_ms, to_ms, limit)
        )
    }

    /// A route's counts in buckets, and over the whole range.
    pub async fn route_stats(
        &self,
        q: StatsQuery,
    ) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
        read!(self, |c| stats::route_stats(c, &q), |pg| pg.route_stats(&q))
    }

    /// A route's clicks per destination, most clicked first.
    pub async fn route_links(&self, q: StatsQuery) -> Result<Vec<LinkClicks>, StorageError> {
        read!(self, |c| stats::route_links(c, &q), |pg| pg.route_links(&q))
    }

    /// A group's counts (a tag's, a message's as sent) in buckets, and
    /// over the whole range.
    pub async fn group_stats(
        &self,
        q: GroupQuery,
    ) -> Result<(Vec<(i64, Counts)>, Counts), StorageError> {
        read!(self, |c| scoped_stats::group_stats(c, &q), |pg| pg
            .group_stats(&q))
    }

    /// A group's clicks per destination, most clicked first.
    pub async fn group_links(&self, q: GroupQuery) -> Result<Vec<LinkClicks>, StorageError> {
        read!(self, |c| scoped_stats::group_links(c, &q), |pg| pg
            .group_links(&q))
    }

    /// For each `(address, at_ms)`, how many distinct copies the address
    /// hit in the hour up to `at_ms`, as every node stored them
    /// (PostgreSQL: storage/postgres/addresses.rs); `None` on SQLite, where
    /// the one pipeline counts them in memory (events.rs).
    pub async fn recipients_from_ips(
        &self,
        hits: Vec<(std::net::IpAddr, i64)>,
    ) -> Result<Option<Vec<u32>>, StorageError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(pg) => pg.recipients_from_ips(&hits).await.map(Some),
        }
    }

    /// Each copy's own opens and clicks (counting events, machine ones too
    /// when `include_machine`), in the order of `ids`.
    pub async fn copy_counts(
        &self,
        ids: Vec<Uuid>,
        include_machine: bool,
    ) -> Result<Vec<CopyCounts>, StorageError> {
        read!(
            self,
            |c| scoped_stats::copy_counts(c, &ids, include_machine),
            |pg| pg.copy_counts(&ids, include_machine)
        )
    }

    /// Stores a route's run-time settings (removes them when `o` sets
    /// nothing); resolves once committed.
    pub async fn set_route_override(&self, o: RouteOverride) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(Record::RouteOverride(Box::new(o)), Some(tx))?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// Stores a sending API response for its `Idempotency-Key`, deleting
    /// rows older than `keep_ms`; resolves once committed.
    pub async fn store_idempotent(
        &self,
        r: IdempotentResponse,
        keep_ms: i64,
    ) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(Record::Idempotent(Box::new(r), keep_ms), Some(tx))?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// The stored response of a token's `Idempotency-Key`, if any.
    pub async fn idempotent(
        &self,
        token_digest: [u8; 32],
        key: String,
    ) -> Result<Option<IdempotentResponse>, StorageError> {
        read!(self, |c| idempotency::get(c, token_digest, &key), |pg| pg
            .idempotent(token_digest, &key))
    }

    /// Every route's run-time settings.
    pub async fn route_overrides(&self) -> Result<Vec<RouteOverride>, StorageError> {
        read!(self, |c| routes::all(c), |pg| pg.route_overrides())
    }

    /// Records that these tracking domains are configured (queued; the
    /// writer commits it with the next batch).
    pub fn tracking_domains_seen(&self, seen: DomainsSeen) -> Result<(), StorageError> {
        self.send(Record::TrackingDomains(Box::new(seen)), None)
    }

    /// Every tracking domain ever recorded as configured, with when last.
    pub async fn tracking_domains(&self) -> Result<Vec<KnownDomain>, StorageError> {
        read!(self, |c| routes::domains(c), |pg| pg.tracking_domains())
    }

    /// A route's events per classification over a range, human and
    /// machine alike (the dashboard's human vs machine share).
    pub async fn route_classifications(
        &self,
        q: StatsQuery,
    ) -> Result<Vec<ClassCounts>, StorageError> {
        read!(self, |c| dashboard::classifications(c, &q), |pg| pg
            .route_classifications(&q))
    }

    /// A route's newest `limit` events over a range, newest first, with
    /// their observations' raw signals (the dashboard's recent events).
    pub async fn route_events(
        &self,
        q: StatsQuery,
        limit: u32,
    ) -> Result<Vec<RouteEvent>, StorageError> {
        read!(self, |c| dashboard::recent_events(c, &q, limit), |pg| pg
            .route_events(&q, limit))
    }

    /// One page of the event feed (storage/feed.rs).
    pub async fn feed(&self, filter: FeedFilter) -> Result<Vec<FeedItem>, StorageError> {
        self.read(move |c| feed::page(c, &filter)).await
    }

    /// The feed position of the newest event, if any.
    pub async fn feed_end(&self) -> Result<Option<i64>, StorageError> {
        self.read(feed::last_seq).await
    }

    /// How many observations are stored.
    pub async fn observation_count(&self) -> Result<u64, StorageError> {
        read!(self, |c| observations::count(c), |pg| pg
            .observation_count())
    }

    /// Runs `f` on a read-only connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let Backend::Sqlite(readers) = &inner.backend else {
                return Err(StorageError::Task("not a SQLite database".into()));
            };
            let conn = readers.take_reader()?;
            let result = f(&conn);
            readers.give_back(conn);
            result
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }
}

impl SqliteReaders {
    fn take_reader(&self) -> Result<Connection, StorageError> {
        if let Some(conn) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|source| {
            StorageError::Open {
                path: self.path.clone(),
                source,
            }
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() < READERS_KEPT {
            readers.push(conn);
        }
    }
}

/// Reads a UUID stored as text.
fn uuid_column(row: &Row<'_>, name: &str) -> rusqlite::Result<Uuid> {
    let text: String = row.get(name)?;
    Uuid::parse_str(&text).map_err(|e| {
        let index = row.as_ref().column_index(name).unwrap_or(0);
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}
