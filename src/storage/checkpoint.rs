//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the
//! WAL size limit and syncs the database file there: a commit that
//! normally takes well under a millisecond then takes tens, and every hit
//! in the batch waits for it. So the writer's automatic checkpoint is off
//! and this thread, with its own connection, runs a PASSIVE checkpoint
//! (never blocks the writer or readers) every [`INTERVAL`], until the
//! storage handle is gone.
//!
//! Under sustained writes a PASSIVE checkpoint never catches up with the
//! writer, and SQLite only starts the WAL over once it has: the WAL would
//! grow without bound. So when it holds more than [`RESTART_FRAMES`], a
//! RESTART checkpoint briefly holds the writer back (the PASSIVE ones have
//! already copied most frames, so only the rest and the syncs remain) and
//! the next commit starts the WAL from its beginning again.

use std::path::PathBuf;
use std::sync::Weak;
use std::time::Duration;

use rusqlite::Connection;

/// Time between checkpoints.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// WAL frames (pages) above which the WAL is started over: 16,384 pages of
/// 4 KiB, 64 MiB.
pub const RESTART_FRAMES: i64 = 16_384;
/// How long a RESTART checkpoint waits for the writer's transaction.
const RESTART_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts the checkpoint thread; it ends once `alive` can no longer be
/// upgraded (every [`super::Storage`] clone dropped).
pub fn spawn(path: PathBuf, alive: Weak<()>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("storage-checkpoint".into())
        .spawn(move || run(&path, &alive))
        .map(|_| ())
}

fn run(path: &PathBuf, alive: &Weak<()>) {
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
        std::thread::sleep(INTERVAL);
        let result = checkpoint(&conn, "PASSIVE").and_then(|frames| {
            if frames > RESTART_FRAMES {
                checkpoint(&conn, "RESTART")?;
            }
            Ok(())
        });
        match result {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("WAL checkpoints work again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
            }
            Err(_) => {}
        }
    }
}

/// Runs one checkpoint; returns the WAL's size in frames before it.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    // Columns: busy flag, frames in the WAL, frames checkpointed. The mode
    // is one of our two constants.
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
}
