//! The delivery worker: one task that looks for due deliveries (woken when
//! new ones are committed, else every tick), and sends each in its own
//! task, at most `concurrency_per_endpoint` at once per endpoint. Each
//! try's outcome is committed before the delivery can be picked again.
//!
//! With several nodes (PostgreSQL) what a look reads is claimed for
//! `claim_lease_seconds`; a try starts only while its claim outlasts it
//! (`timeout_seconds` plus the time to store its outcome), so that no
//! other node can claim and send the same delivery meanwhile.
//!
//! A delivery whose endpoint left the config (or was switched off) waits,
//! pending, until it comes back or is failed by hand; one whose endpoint
//! answered 410 is failed with the endpoint's other pending ones.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Webhooks, client, lettermint, now_ms, retry, sign};
use crate::config::WebhookFormat;
use crate::storage::{Attempt, Delivery, Next, WebhookWrite};

/// Most deliveries started per look.
const LOOK_MAX: u32 = 512;
/// Longest pause between looks.
const TICK_MAX: Duration = Duration::from_millis(250);
/// Shortest pause between looks.
const TICK_MIN: Duration = Duration::from_millis(10);
/// Kept between the latest end of a try and the end of its claim, to
/// store the try's outcome before the delivery looks due to other nodes.
const OUTCOME_MARGIN: Duration = Duration::from_millis(500);

/// Deliveries being sent, and one semaphore per endpoint.
#[derive(Default)]
struct InFlight {
    ids: Mutex<HashSet<Uuid>>,
    /// Deliveries whose outcome was committed, with the number of looks
    /// started by then: a look that started earlier may have read them
    /// still pending, so they are skipped until a later look starts.
    finished: Mutex<HashMap<Uuid, u64>>,
    looks: std::sync::atomic::AtomicU64,
    endpoints: Mutex<HashMap<(String, String), Arc<Semaphore>>>,
}

impl InFlight {
    fn finish(&self, id: Uuid) {
        let looks = self.looks.load(std::sync::atomic::Ordering::SeqCst);
        lock(&self.finished).insert(id, looks);
        lock(&self.ids).remove(&id);
    }
}

impl Webhooks {
    /// Delivers until `shutdown`. Tries cut short by it are sent again
    /// after the next start (their outcome was not stored).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let in_flight = Arc::new(InFlight::default());
        let mut tasks = JoinSet::new();
        let tick = (self.settings.retry_base / 4).clamp(TICK_MIN, TICK_MAX);
        loop {
            while tasks.try_join_next().is_some() {}
            if let Err(e) = self.look(&in_flight, &mut tasks).await {
                tracing::warn!(error = %e, "webhook outbox not read; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
        tasks.shutdown().await;
    }

    /// Starts every due delivery not already in flight.
    async fn look(
        self: &Arc<Self>,
        in_flight: &Arc<InFlight>,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), crate::storage::StorageError> {
        self.refresh_disabled().await?;
        let look = in_flight
            .looks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let busy = (lock(&in_flight.ids).len() + lock(&in_flight.finished).len()) as u32;
        let now = now_ms();
        let lease = &self.settings.claim_lease;
        let due = self
            .storage
            .due_deliveries(now, LOOK_MAX + busy, *lease)
            .await?;
        // What was read is claimed for this node until then (PostgreSQL).
        let claimed_until = now.saturating_add(millis(*lease));
        for delivery in due {
            if lock(&in_flight.finished).contains_key(&delivery.id)
                || !lock(&in_flight.ids).insert(delivery.id)
            {
                continue;
            }
            let Some((format, secrets)) = self.signing(&delivery.route, &delivery.url) else {
                lock(&in_flight.ids).remove(&delivery.id);
                continue;
            };
            let permit = lock(&in_flight.endpoints)
                .entry((delivery.route.clone(), delivery.url.clone()))
                .or_insert_with(|| Arc::new(Semaphore::new(self.settings.concurrency_per_endpoint)))
                .clone();
            let (hooks, in_flight) = (self.clone(), in_flight.clone());
            tasks.spawn(async move {
                // The semaphore is never closed.
                let _permit = permit.acquire_owned().await.expect("semaphore open");
                let id = delivery.id;
                if hooks.outlasts_claim(claimed_until) {
                    // Waiting for a permit took most of the claim: another
                    // node could claim and send it during this try. It is
                    // sent after it is claimed again, here or elsewhere.
                    tracing::debug!(delivery = %id, "webhook try put off: its claim ends too soon");
                    lock(&in_flight.ids).remove(&id);
                    return;
                }
                hooks.attempt(delivery, format, &secrets).await;
                in_flight.finish(id);
            });
        }
        // What finished before this look's read began was seen by it.
        lock(&in_flight.finished).retain(|_, at| *at >= look);
        Ok(())
    }

    /// Whether a try started now could end (and store its outcome) after
    /// `claimed_until`.
    fn outlasts_claim(&self, claimed_until: i64) -> bool {
        let longest = millis(self.settings.timeout + OUTCOME_MARGIN);
        now_ms().saturating_add(longest) > claimed_until
    }

    async fn refresh_disabled(&self) -> Result<(), crate::storage::StorageError> {
        let list = self.storage.disabled_endpoints().await?;
        let set = list.into_iter().map(|e| (e.route, e.url)).collect();
        *self.disabled.write().unwrap_or_else(|p| p.into_inner()) = set;
        Ok(())
    }

    /// One try of `d`, its outcome stored.
    async fn attempt(&self, d: Delivery, format: WebhookFormat, secrets: &[Vec<u8>]) {
        let started_ms = now_ms();
        let started = Instant::now();
        let timestamp = started_ms / 1000;
        let body = Bytes::from(d.payload.clone());
        let headers = match format {
            WebhookFormat::Standard => sign::headers(secrets, &d.id.to_string(), timestamp, &body),
            WebhookFormat::Lettermint => lettermint::headers(secrets, timestamp, &body),
        };
        let result = match url::Url::parse(&d.url) {
            Ok(url) => {
                tokio::time::timeout(self.settings.timeout, self.client.post(&url, headers, body))
                    .await
                    .unwrap_or_else(|_| {
                        Err(client::SendError::Http(format!(
                            "no answer within {} s",
                            self.settings.timeout.as_secs()
                        )))
                    })
            }
            Err(e) => Err(client::SendError::Http(format!("bad URL: {e}"))),
        };
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (status_code, error) = match &result {
            Ok(s) if (200..300).contains(s) => (Some(*s), None),
            Ok(s) => (Some(*s), Some(format!("HTTP {s}"))),
            Err(e) => (None, Some(e.to_string())),
        };
        let next = match status_code {
            Some(200..=299) => Next::Delivered,
            Some(410) => Next::Disable,
            _ => retry::after_failure(
                &self.settings,
                d.id,
                d.failures + 1,
                d.schedule_start_ms,
                started_ms + duration_ms,
            ),
        };
        log(&d, status_code, error.as_deref(), next);
        let attempt = Attempt {
            delivery_id: d.id,
            number: d.attempts + 1,
            at_ms: started_ms,
            duration_ms,
            status_code,
            error,
        };
        if let Err(e) = self
            .storage
            .write_webhook(WebhookWrite::Attempt(attempt, next))
            .await
        {
            tracing::error!(delivery = %d.id, error = %e, "webhook try not stored; it will be sent again");
        }
        if next == Next::Disable {
            self.disabled
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert((d.route, d.url));
        }
    }
}

fn log(d: &Delivery, status: Option<u16>, error: Option<&str>, next: Next) {
    match next {
        Next::Delivered => {
            tracing::debug!(delivery = %d.id, url = %d.url, status, "webhook delivered")
        }
        Next::RetryAt(at) => tracing::info!(
            delivery = %d.id, url = %d.url, error, retry_in_ms = at - now_ms(),
            "webhook try failed; retrying"
        ),
        Next::Failed => {
            tracing::warn!(delivery = %d.id, url = %d.url, error, "webhook failed for good")
        }
        Next::Disable => tracing::warn!(
            route = %d.route, url = %d.url,
            "webhook endpoint answered 410 Gone: disabled (trackrelay webhooks retry re-enables it)"
        ),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoned only if a task panicked while holding it: the set is fine.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
