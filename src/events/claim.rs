//! One node judges at a time. With several nodes on one PostgreSQL
//! database, each would otherwise judge every hit it reads (the event is
//! stored once, keyed by its hit, but the work is done on every node). The
//! pipeline runs a pass only while it holds the `classification` lease
//! (storage/postgres/lease.rs), renewed before each pass with the pass's
//! checkpoint; the other nodes wait. A holder killed mid-work stops
//! renewing: after [`LEASE`] another node takes the lease and continues
//! from the stored checkpoint (less the look-back), judging what the dead
//! node had not stored. A clean stop gives the lease up at once, and a
//! running node takes over from the checkpoint the same way.
//!
//! A node that takes the lease for the first time since it started sweeps
//! instead, as a single node does after every start: it looks at every
//! hit without an event, so hits committed later than the look-back (a
//! node cut off from the database for a while) are judged after the next
//! start, as on SQLite. Only a start of the first node to claim the lease
//! sweeps; a takeover by a running node does not.
//!
//! On SQLite one process has the file and the lease is always granted.

use std::time::Duration;

use uuid::Uuid;

use super::State;
use crate::storage::{Claim, Storage, StorageError};

/// How long a claim on the pipeline lasts without renewal: how long hits
/// wait for a verdict after their judge died. Many passes long (one starts
/// every second, or after a full one as long again as it took), so a slow
/// pass does not lose it; one that does anyway costs double work, not
/// double events (they are keyed by their hit).
pub const LEASE: Duration = Duration::from_secs(10);
/// The lease's name in `work_leases`.
const NAME: &str = "classification";

/// This process's standing on the pipeline lease.
#[derive(Debug)]
pub(super) struct Lease {
    /// Who this process is in `work_leases`: unique per process.
    holder: String,
    /// Whether it held the lease after its last claim (`None` before).
    held: Option<bool>,
}

impl Lease {
    pub(super) fn new() -> Lease {
        Lease {
            holder: format!("pid {} {}", std::process::id(), Uuid::now_v7()),
            held: None,
        }
    }

    /// Renews or takes the lease, storing `state`'s checkpoint while held;
    /// true when this node is to judge now. A running node that has just
    /// taken the lease over continues from the checkpoint stored with it;
    /// one that has just started sweeps (no checkpoint).
    pub(super) async fn renew(
        &mut self,
        storage: &Storage,
        state: &mut State,
    ) -> Result<bool, StorageError> {
        let was_held = self.held == Some(true);
        let claim = Claim {
            name: NAME,
            holder: &self.holder,
            lease_ms: i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX),
            cursor_ms: state.cursor_ms.filter(|_| was_held),
        };
        let granted = storage.claim(claim).await?;
        match &granted {
            Some(held) if !was_held => {
                let started = self.held.is_none();
                state.cursor_ms = held.cursor_ms.filter(|_| !started);
                tracing::info!(
                    holder = %self.holder, previous = ?held.previous, cursor_ms = ?state.cursor_ms,
                    sweep = started, "classification pipeline claimed"
                );
            }
            None if self.held != Some(false) => tracing::info!(
                holder = %self.holder,
                "classification pipeline held by another node; judging there"
            ),
            _ => {}
        }
        self.held = Some(granted.is_some());
        Ok(granted.is_some())
    }

    /// Gives the lease up if held (at shutdown).
    pub(super) async fn release(&self, storage: &Storage) {
        if self.held != Some(true) {
            return;
        }
        match storage.release(NAME, &self.holder).await {
            Ok(()) => tracing::info!(holder = %self.holder, "classification pipeline released"),
            Err(e) => tracing::warn!(error = %e, "classification lease not released; it runs out"),
        }
    }
}
