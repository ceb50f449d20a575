//! Route settings changed through another node's API: with a database
//! several nodes share (PostgreSQL), each node reads the stored overrides
//! back every [`POLL`] and takes them when they changed, so a `PATCH` on
//! one node applies on every node within about a second. Polling rather
//! than LISTEN/NOTIFY: one small indexed read a second per node, and
//! nothing is missed across a lost connection.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Registry;

/// How often a node reads the overrides back.
pub const POLL: Duration = Duration::from_millis(500);

impl Registry {
    /// Follows the stored overrides until `shutdown` (server with shared
    /// storage only).
    pub async fn follow_overrides(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last = self.storage.route_overrides().await.ok();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            let now = match self.storage.route_overrides().await {
                Ok(now) => now,
                Err(e) => {
                    tracing::warn!(error = %e, "route settings not read back; retrying");
                    continue;
                }
            };
            if last.as_ref() == Some(&now) {
                continue;
            }
            let mut table = self.table.lock().await;
            table.set_overrides(now.clone());
            self.publish(&table);
            tracing::info!(
                routes = now.len(),
                "route settings changed by another node taken"
            );
            last = Some(now);
        }
    }
}
