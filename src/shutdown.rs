//! The shutdown deadline: after SIGTERM, open SMTP and milter sessions may
//! finish what they are doing, but only until `shutdown.deadline_seconds`;
//! then [`Deadline::expire`] cuts the ones still open (an SMTP client hears
//! 421 4.3.2, a milter connection is closed and the MTA applies its
//! `milter_default_action`) so a peer that never answers cannot keep the
//! process alive. Queued writes are flushed after that, as on any stop.
//!
//! The stop itself (stop accepting, finish the current transaction) is the
//! [`tokio_util::sync::CancellationToken`] `app` hands to every listener;
//! this is the second, harder signal, and the count of what it cut.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;

/// Shared by `app` (which expires it) and every session (which obeys).
#[derive(Debug, Clone, Default)]
pub struct Deadline {
    passed: CancellationToken,
    cut: Arc<AtomicUsize>,
}

impl Deadline {
    /// Resolves once the deadline has passed.
    pub async fn passed(&self) {
        self.passed.cancelled().await;
    }

    /// Whether the deadline has passed.
    pub fn has_passed(&self) -> bool {
        self.passed.is_cancelled()
    }

    /// The deadline has passed: sessions still open end now.
    pub fn expire(&self) {
        self.passed.cancel();
    }

    /// A session was cut by the deadline (for the last log line).
    pub fn count_cut(&self) {
        self.cut.fetch_add(1, Ordering::Relaxed);
    }

    /// How many sessions the deadline cut.
    pub fn sessions_cut(&self) -> usize {
        self.cut.load(Ordering::Relaxed)
    }
}
