//! Handing relayed copies to storage without holding up the client, a few
//! at a time: copies answered within [`GATHER`] of each other reach the
//! writer together, so it commits them in one transaction instead of one
//! transaction per copy (each commit writes every page the row touched to
//! the WAL: about a dozen writes per copy at a thousand copies a second).
//!
//! A copy is handed, not waited for: the writer keeps it queued and retries
//! while the database fails, and logs a row it refuses for good. At
//! shutdown the SMTP listener calls [`Recorder::flush`] once its sessions
//! have ended, before the process waits for the writer's queue to drain.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use serde_json::Value;

use crate::storage::{RelayedCopy, Storage};
use crate::webhooks::Webhooks;

/// How long the first copy of a batch waits for others.
const GATHER: Duration = Duration::from_millis(10);

/// Collects copies and hands them to storage in batches; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    storage: Storage,
    /// Where a copy's `message.relayed`/`failed` deliveries come from.
    webhooks: Option<Arc<Webhooks>>,
    queue: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    /// Each copy with its sending API metadata, if any.
    copies: Vec<(RelayedCopy, Option<Value>)>,
    /// A task is waiting out [`GATHER`] to hand them.
    gathering: bool,
}

impl Recorder {
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            webhooks: None,
            queue: Arc::default(),
        }
    }

    /// Copies are stored with their webhook deliveries from `webhooks`.
    pub fn with_webhooks(mut self, webhooks: Arc<Webhooks>) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// Queues a copy with its `metadata`; it reaches the writer within
    /// [`GATHER`].
    pub fn record(&self, copy: RelayedCopy, metadata: Option<Value>) {
        let start = {
            let mut queue = self.lock();
            queue.copies.push((copy, metadata));
            !std::mem::replace(&mut queue.gathering, true)
        };
        if start {
            let recorder = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(GATHER).await;
                recorder.flush().await;
            });
        }
    }

    /// Hands every queued copy to storage now.
    pub async fn flush(&self) {
        let copies = {
            let mut queue = self.lock();
            queue.gathering = false;
            std::mem::take(&mut queue.copies)
        };
        for (copy, metadata) in copies {
            let id = copy.id;
            // Queued before the copy: committed with it or earlier.
            if let Some(m) = &metadata
                && let Err(e) = self.storage.record_metadata(id, m.clone())
            {
                tracing::error!(%id, error = %e, "copy metadata not recorded");
            }
            // `record_relayed` sends on its first poll and then waits for the
            // commit, which we do not: dropping it after that poll is allowed
            // (the copy stays queued). An error on the first poll means the
            // writer has stopped.
            let deliveries = self
                .webhooks
                .as_ref()
                .map_or_else(Vec::new, |w| w.for_relayed_with(&copy, metadata.as_ref()));
            let mut stored = pin!(self.storage.record_relayed_with_webhooks(copy, deliveries));
            let first = std::future::poll_fn(|cx| Poll::Ready(stored.as_mut().poll(cx))).await;
            if let Poll::Ready(Err(e)) = first {
                tracing::error!(%id, error = %e, "relayed copy not recorded");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A poisoned lock only means another task panicked mid-push.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}
