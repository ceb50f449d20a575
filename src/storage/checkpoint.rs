//! WAL checkpoints off the commit path, and a WAL that starts over without
//! stalling the writer.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the
//! WAL size limit and syncs the database file there: a commit that
//! normally takes well under a millisecond then takes tens, and every hit
//! in the batch waits for it. So the writer's automatic checkpoint is off
//! and this thread, with its own connection, runs a PASSIVE checkpoint
//! (it never blocks the writer or readers) every [`Policy::interval`],
//! until the storage handle is gone.
//!
//! Under sustained writes that is not enough: SQLite starts the WAL over
//! (writes from its beginning again) only when a write transaction begins
//! with every frame already copied into the database, and a PASSIVE
//! checkpoint running beside the writer is always a few commits behind, so
//! the WAL would grow without bound. A RESTART checkpoint forces it, but it
//! holds the write lock while it copies what is left and syncs the WAL and
//! the database file; under load that is milliseconds to tens of
//! milliseconds, and the writer (and every hit waiting on its next batch)
//! waits, in SQLite's busy-handler sleeps on top. So once the WAL holds more
//! than [`Policy::restart_frames`]:
//!
//! 1. **Pre-sync.** This thread runs PASSIVE checkpoints back to back until
//!    at most [`Policy::catch_up_frames`] are left to copy. Each one copies
//!    the frames and syncs the database file while the writer keeps
//!    committing: the expensive part, done off the commit path.
//! 2. **Catch-up.** It then asks the writer ([`CatchUp::request`]). Between
//!    two batches the writer runs a PASSIVE checkpoint on its own connection
//!    ([`CatchUp::run`]): nobody writes meanwhile, so it copies the last few
//!    frames and every frame is in the database. Its next transaction starts
//!    the WAL over. The time it takes is the metric
//!    `trackrelay_storage_wal_catch_up_seconds`.
//!
//! If that keeps failing (a reader holding an old snapshot pins the WAL),
//! past [`Policy::forced_restart_frames`] this thread falls back to a
//! RESTART checkpoint, stalling the writer, so the WAL stays bounded.
//!
//! Durability is SQLite's own: a checkpoint only copies committed frames,
//! and with `synchronous = NORMAL` it syncs the WAL before copying and the
//! database file after, so the WAL is never overwritten before what it held
//! is on disk in the database.

use std::path::PathBuf;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::metrics;

/// When checkpoints run and when the WAL is started over.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Time between checkpoints.
    pub interval: Duration,
    /// WAL frames (pages) above which the WAL is started over.
    pub restart_frames: i64,
    /// Frames the pre-sync may leave for the writer's catch-up.
    pub catch_up_frames: i64,
    /// WAL frames above which a RESTART checkpoint forces the WAL to start
    /// over, stalling the writer (only when catch-ups keep failing).
    pub forced_restart_frames: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            // 16,384 pages of 4 KiB: 64 MiB.
            restart_frames: 16_384,
            // 1 MiB. The copy is quick; the two syncs SQLite makes around
            // it (WAL before, database after) are most of a catch-up.
            catch_up_frames: 256,
            forced_restart_frames: 4 * 16_384,
        }
    }
}

/// Most PASSIVE checkpoints in one pre-sync; each leaves only what was
/// committed while it ran, so a few suffice.
const PRE_SYNC_ROUNDS: usize = 8;
/// How long a RESTART checkpoint waits for the writer's transaction.
const RESTART_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// The checkpoint thread's request to the writer: copy the last frames
/// between two batches. Shared by both threads.
#[derive(Debug, Default)]
pub struct CatchUp {
    wanted: AtomicBool,
}

impl CatchUp {
    /// Asks the writer for a catch-up after its next batch.
    fn request(&self) {
        self.wanted.store(true, Ordering::Release);
    }

    /// On the writer's connection, between batches: when asked, runs a
    /// PASSIVE checkpoint that (no transaction being open) copies every
    /// frame left, so the next transaction starts the WAL over. Otherwise
    /// an atomic load and nothing else.
    pub fn run(&self, conn: &Connection) {
        if !self.wanted.swap(false, Ordering::AcqRel) {
            return;
        }
        let started = Instant::now();
        match passive(conn) {
            Ok(wal) => {
                metrics::wal_caught_up(started.elapsed());
                if wal.left() > 0 {
                    // A reader's snapshot (or the checkpoint thread) was in
                    // the way; the next pass asks again.
                    tracing::debug!(left = wal.left(), "WAL catch-up incomplete");
                }
            }
            Err(e) => tracing::debug!(error = %e, "WAL catch-up failed"),
        }
    }
}

/// What `PRAGMA wal_checkpoint` reports.
#[derive(Debug, Clone, Copy)]
struct Wal {
    /// Frames in the WAL.
    frames: i64,
    /// Frames already copied into the database.
    checkpointed: i64,
}

impl Wal {
    /// Frames not yet copied into the database.
    fn left(self) -> i64 {
        self.frames - self.checkpointed
    }
}

/// Starts the checkpoint thread; it ends once `alive` can no longer be
/// upgraded (every [`super::Storage`] clone dropped).
pub fn spawn(
    path: PathBuf,
    alive: Weak<()>,
    policy: Policy,
    catch_up: std::sync::Arc<CatchUp>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("storage-checkpoint".into())
        .spawn(move || run(&path, &alive, policy, &catch_up))
        .map(|_| ())
}

fn run(path: &PathBuf, alive: &Weak<()>, policy: Policy, catch_up: &CatchUp) {
    let conn = match Connection::open(path) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "checkpoint connection failed; the WAL will grow");
            return;
        }
    };
    if let Err(e) = conn.busy_timeout(RESTART_BUSY_TIMEOUT) {
        tracing::warn!(error = %e, "checkpoint connection: no busy timeout");
    }
    let mut failing = false;
    while alive.strong_count() > 0 {
        std::thread::sleep(policy.interval);
        match pass(&conn, &policy, catch_up) {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("WAL checkpoints work again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
            }
            Err(_) => {}
        }
    }
}

/// One checkpoint pass: PASSIVE, and past the restart size the pre-sync and
/// the catch-up request (or, past the forced size, a RESTART).
fn pass(conn: &Connection, policy: &Policy, catch_up: &CatchUp) -> rusqlite::Result<()> {
    let mut wal = passive(conn)?;
    if wal.frames <= policy.restart_frames {
        return Ok(());
    }
    for _ in 0..PRE_SYNC_ROUNDS {
        if wal.left() <= policy.catch_up_frames {
            break;
        }
        wal = passive(conn)?;
    }
    if wal.left() <= policy.catch_up_frames {
        // Even with nothing left now: under load the writer has committed
        // more by the time it begins its next transaction.
        catch_up.request();
    } else if wal.frames > policy.forced_restart_frames {
        tracing::info!(frames = wal.frames, "WAL not caught up; RESTART checkpoint");
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}

/// Runs a PASSIVE checkpoint (never waits for a lock).
fn passive(conn: &Connection) -> rusqlite::Result<Wal> {
    // Columns: busy flag, frames in the WAL, frames checkpointed (-1 and -1
    // when the database is not in WAL mode).
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(Wal {
            frames: r.get(1)?,
            checkpointed: r.get(2)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use uuid::Uuid;

    use super::*;
    use crate::storage::writer::Record;
    use crate::storage::{Observation, Storage};
    use crate::token::Kind;

    /// Times the WAL has started over: the WAL header's checkpoint
    /// sequence number (bytes 12..16, big-endian), which SQLite increments
    /// each time it does.
    fn wal_restarts(db: &Path) -> u32 {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        match std::fs::read(wal) {
            Ok(bytes) if bytes.len() >= 16 => {
                u32::from_be_bytes(bytes[12..16].try_into().expect("4 bytes"))
            }
            _ => 0,
        }
    }

    fn catch_ups() -> f64 {
        let text = metrics::render();
        text.lines()
            .find_map(|l| {
                l.strip_prefix("trackrelay_storage_wal_catch_up_seconds_count ")?
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    fn observation() -> Observation {
        Observation {
            id: Uuid::now_v7(),
            message_id: Uuid::now_v7(),
            kind: Kind::Open,
            recipient_id: None,
            link: None,
            url: None,
            at_ms: 1_700_000_000_000,
            method: "GET".into(),
            host: "t.example.com".into(),
            ip: "192.0.2.1".parse().ok(),
            user_agent: Some("Mail".into()),
            headers: vec![("user-agent".into(), "Mail".repeat(50))],
            key_id: "k1".into(),
        }
    }

    /// A backlog the writer drains in full batches, back to back: a
    /// checkpoint beside it never finds every frame copied, so the WAL can
    /// only start over mid-drain through the writer's catch-ups (the forced
    /// RESTART is out of reach here). It does, and every row is stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_while_the_writer_keeps_committing_and_no_row_is_lost() {
        const ROWS: u64 = 30_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let policy = Policy {
            interval: Duration::from_millis(5),
            restart_frames: 64,
            // About one batch of these rows.
            catch_up_frames: 1_000,
            forced_restart_frames: i64::MAX,
        };
        let storage = Storage::open_with_policy(&path, usize::MAX, policy).unwrap();
        storage.inject_fault(Some(crate::storage::Fault::ReadOnly));
        for _ in 0..ROWS {
            // Queued without waiting (record_observation's timeout waits for
            // the next timer tick even when zero).
            let record = Record::Observation(Box::new(observation()));
            storage.send(record, None).unwrap();
        }
        let (restarts, catch_ups_before) = (wal_restarts(&path), catch_ups());
        storage.inject_fault(None);
        assert!(storage.flush(Duration::from_secs(60)).await);
        // The first commit of the drain may start the WAL over on its own.
        let restarts = wal_restarts(&path) - restarts;
        assert!(restarts >= 2, "the WAL started over {restarts} times");
        assert!(catch_ups() > catch_ups_before, "no catch-up by the writer");
        assert_eq!(storage.observation_count().await.unwrap(), ROWS);
        let check: String = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}
