//! The one writer: a thread that owns the read-write connection and commits
//! everything queued in batches (group commit).
//!
//! Callers send [`Command`]s over a channel and, when they want to, wait on
//! a oneshot for their row's commit. The thread takes whatever is queued (up
//! to [`BATCH_MAX`] rows), writes it in one `BEGIN IMMEDIATE` transaction
//! and commits; while it commits, the next batch gathers. When the database
//! is locked, read-only or full, the batch stays at the head of the queue
//! and is retried with a growing pause (10 ms to 1 s); nothing is dropped
//! here. A row the database refuses for good (a constraint) is reported to
//! its waiter and skipped, so one bad row cannot block the rest.
//!
//! The queue, batching and retries are the backend's business only
//! through [`Sink`]: SQLite's connection here, PostgreSQL's in
//! storage/postgres/writer.rs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use tokio::sync::oneshot;

use super::checkpoint::CatchUp;
use super::{Event, Observation, RelayedCopy, StorageError, events, messages, observations};
use crate::metrics;

/// Most rows in one transaction.
pub const BATCH_MAX: usize = 1000;
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// What the writer stores.
#[derive(Debug)]
pub enum Record {
    Observation(Box<Observation>),
    Relayed(Box<RelayedCopy>),
    Event(Box<Event>),
    /// The webhook outbox (storage/webhooks.rs).
    Webhook(Box<super::WebhookWrite>),
    /// A route's run-time settings (storage/routes.rs).
    RouteOverride(Box<super::RouteOverride>),
    /// Tracking domains configured now (storage/routes.rs).
    TrackingDomains(Box<super::DomainsSeen>),
    /// A sending API response to replay, and how long rows are kept
    /// (storage/idempotency.rs).
    Idempotent(Box<super::IdempotentResponse>, i64),
    /// A sending API copy's `metadata` (storage/metadata.rs).
    Metadata(Box<super::CopyMetadata>),
}

/// Told when a row is committed (`Ok`) or refused for good (`Err`).
pub type Done = oneshot::Sender<Result<(), StorageError>>;

/// A message to the writer thread.
#[derive(Debug)]
pub enum Command {
    Write(Record, Option<Done>),
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
    /// Test hook: make the connection fail as a read-only database would.
    Fault(Option<super::Fault>),
}

struct Pending {
    record: Record,
    done: Option<Done>,
}

/// Where a batch goes: one backend's connection.
pub trait Sink: Send + 'static {
    /// Writes `batch` in one transaction and commits it. Rows refused for
    /// good come back by position with why (the rest is committed); an
    /// error leaves the whole batch for a retry.
    fn write_batch(&mut self, batch: &[&Record]) -> Result<Vec<(usize, String)>, String>;

    /// Between batches (SQLite: the checkpoint thread's catch-up).
    fn idle(&mut self) {}

    /// Test hook: puts the connection in a fault, or back.
    fn fault(&mut self, fault: Option<super::Fault>);
}

/// SQLite's sink: the one read-write connection.
pub struct SqliteSink {
    pub conn: Connection,
    /// The checkpoint thread's requests to copy the last WAL frames.
    pub catch_up: Arc<CatchUp>,
}

impl Sink for SqliteSink {
    fn write_batch(&mut self, batch: &[&Record]) -> Result<Vec<(usize, String)>, String> {
        write_batch(&mut self.conn, batch.iter().copied())
            .map(|refused| {
                refused
                    .into_iter()
                    .map(|(i, e)| (i, e.to_string()))
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    fn idle(&mut self) {
        // Between batches, when the checkpoint thread asks: the WAL
        // then starts over at the next commit (storage/checkpoint.rs).
        self.catch_up.run(&self.conn);
    }

    fn fault(&mut self, fault: Option<super::Fault>) {
        let on = matches!(fault, Some(super::Fault::ReadOnly));
        // query_only makes every write fail with SQLITE_READONLY, exactly as
        // a database on a read-only file system does.
        if let Err(e) = self.conn.pragma_update(None, "query_only", on) {
            tracing::error!(error = %e, "cannot set the test fault");
        }
    }
}

/// The writer's state; [`Writer::run`] is the thread's body.
pub struct Writer<S: Sink> {
    sink: S,
    rx: Receiver<Command>,
    queue: VecDeque<Pending>,
    flushes: Vec<(usize, oneshot::Sender<()>)>,
    /// Rows committed or refused so far; flushes wait for a count.
    done_total: usize,
    received_total: usize,
    depth: Arc<AtomicUsize>,
    retry: Option<(Instant, Duration)>,
}

impl<S: Sink> Writer<S> {
    /// A writer into `sink` (migrated), fed by `rx`; `depth` counts rows
    /// not yet committed.
    pub fn new(sink: S, rx: Receiver<Command>, depth: Arc<AtomicUsize>) -> Self {
        Self {
            sink,
            rx,
            queue: VecDeque::new(),
            flushes: Vec::new(),
            done_total: 0,
            received_total: 0,
            depth,
            retry: None,
        }
    }

    /// Runs until every sender is gone and the queue is empty.
    pub fn run(mut self) {
        loop {
            if !self.receive() {
                return;
            }
            if self.retry.is_some_and(|(at, _)| Instant::now() < at) {
                continue;
            }
            if !self.queue.is_empty() {
                self.commit_batch();
            }
            self.answer_flushes();
            self.sink.idle();
        }
    }

    /// Waits for work (or for the next retry), then takes everything queued
    /// in the channel. False when the channel is closed and nothing is left.
    fn receive(&mut self) -> bool {
        let first = if self.queue.is_empty() {
            match self.rx.recv() {
                Ok(cmd) => Some(cmd),
                Err(_) => return false,
            }
        } else {
            let wait = self.retry.map_or(Duration::ZERO, |(at, _)| {
                at.saturating_duration_since(Instant::now())
            });
            match self.rx.recv_timeout(wait) {
                Ok(cmd) => Some(cmd),
                Err(RecvTimeoutError::Timeout) => None,
                // Keep retrying what is queued: the process decides when to
                // stop waiting (shutdown has its own bound).
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(wait);
                    None
                }
            }
        };
        if let Some(cmd) = first {
            self.accept(cmd);
        }
        loop {
            match self.rx.try_recv() {
                Ok(cmd) => self.accept(cmd),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return true,
            }
        }
    }

    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Write(record, done) => {
                self.received_total += 1;
                self.queue.push_back(Pending { record, done });
            }
            Command::Flush(tx) => self.flushes.push((self.received_total, tx)),
            Command::Fault(fault) => self.sink.fault(fault),
        }
    }

    /// Writes and commits the head of the queue; on a transient failure it
    /// stays queued and a retry is scheduled.
    fn commit_batch(&mut self) {
        let n = self.queue.len().min(BATCH_MAX);
        let started = Instant::now();
        let batch: Vec<&Record> = self.queue.range(..n).map(|p| &p.record).collect();
        match self.sink.write_batch(&batch) {
            Ok(refused) => {
                metrics::batch_committed(n, started.elapsed());
                if self.retry.take().is_some() {
                    tracing::info!(rows = n, "database writable again; queued rows committed");
                }
                let mut refused = refused.into_iter().peekable();
                for (i, pending) in self.queue.drain(..n).enumerate() {
                    let result = match refused.next_if(|(j, _)| *j == i) {
                        Some((_, e)) => {
                            tracing::error!(error = %e, "row refused by the database, skipped");
                            Err(StorageError::Refused(e))
                        }
                        None => Ok(()),
                    };
                    if let Some(done) = pending.done {
                        // The waiter may have stopped waiting; that is fine.
                        let _ = done.send(result);
                    }
                }
                self.done_total += n;
                let depth = self.depth.fetch_sub(n, Ordering::AcqRel) - n;
                metrics::queue_depth(depth);
            }
            Err(e) => self.schedule_retry(&e),
        }
    }

    fn schedule_retry(&mut self, e: &str) {
        metrics::commit_failed();
        let pause = match self.retry {
            None => {
                tracing::warn!(error = %e, queued = self.queue.len(), "commit failed; rows kept and retried");
                RETRY_FIRST
            }
            Some((_, last)) => (last * 2).min(RETRY_MAX),
        };
        self.retry = Some((Instant::now() + pause, pause));
    }

    fn answer_flushes(&mut self) {
        let done = self.done_total;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(upto, _)| *upto <= done);
        self.flushes = waiting;
        for (_, tx) in ready {
            let _ = tx.send(());
        }
    }
}

/// Writes `batch` in one transaction. Rows refused for good are returned by
/// position (the rest is committed); any other error rolls everything back.
fn write_batch<'a>(
    conn: &mut Connection,
    batch: impl Iterator<Item = &'a Record>,
) -> rusqlite::Result<Vec<(usize, rusqlite::Error)>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut refused = Vec::new();
    // Observations are most of every batch: one statement for all of them.
    let mut insert_observation = observations::insert_statement(&tx)?;
    for (i, record) in batch.enumerate() {
        let result = match record {
            Record::Observation(o) => observations::insert(&mut insert_observation, o),
            Record::Relayed(c) => messages::insert(&tx, c),
            Record::Event(e) => events::insert(&tx, e),
            Record::Webhook(w) => super::webhooks::write(&tx, w),
            Record::RouteOverride(o) => super::routes::write(&tx, o),
            Record::TrackingDomains(d) => super::routes::seen(&tx, d),
            Record::Idempotent(r, keep_ms) => super::idempotency::write(&tx, r, *keep_ms),
            Record::Metadata(m) => super::metadata::write(&tx, m),
        };
        match result {
            Ok(()) => {}
            // A failed statement is undone alone (SQLite's ABORT); the
            // transaction goes on.
            Err(e) if is_permanent(&e) => refused.push((i, e)),
            Err(e) => return Err(e),
        }
    }
    // Back into the connection's cache before the transaction ends.
    drop(insert_observation);
    tx.commit()?;
    Ok(refused)
}

/// Errors that retrying cannot fix: the row itself is wrong.
fn is_permanent(e: &rusqlite::Error) -> bool {
    match e.sqlite_error_code() {
        Some(code) => matches!(code, ErrorCode::ConstraintViolation | ErrorCode::TooBig),
        None => true,
    }
}
