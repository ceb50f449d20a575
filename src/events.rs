//! The observation → event pipeline (SPEC §6): every stored hit is judged
//! by [`classify`](crate::classify::classify) once it is
//! `classifier.wait_seconds` old, so that the rest of a burst (a scanner
//! fetching every link, a proxy fetching the pixel twice) is in the
//! database when it is judged; the verdict becomes an event.
//!
//! One task does it, in time order, so "first counting open of this
//! recipient" needs no locking: a pass reads the observations that wait
//! for a verdict, fills each one's [`Context`] from the database (the
//! copy's other hits, when it was relayed) and from its own memory (how
//! many copies an address has hit in the last hour), and hands the events
//! to the storage writer, waiting for their commit before the next pass.
//! After a start the first passes sweep every observation without an
//! event; an observation judged twice keeps its first event.
//!
//! The lists are swapped whole on SIGHUP ([`Pipeline::set_lists`]).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::classify::{self, Context, Hit, Lists, Verdict};
use crate::storage::{Event, Observation, Storage, StorageError};
use crate::token::Kind;

/// Most observations judged in one pass.
const PASS_MAX: u32 = 1000;
/// How far back each pass looks again for hits committed late (a database
/// that failed for a while commits its queue in one go); hits committed
/// later still are judged after the next start.
const LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Longest pause between passes.
const TICK_MAX: Duration = Duration::from_secs(1);
/// Hits of one address kept to count the copies it has hit.
const IP_WINDOW_MS: i64 = 60 * 60 * 1000;

/// Judges stored observations and stores their events.
pub struct Pipeline {
    storage: Storage,
    lists: RwLock<Arc<Lists>>,
    wait: Duration,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    pub fn new(storage: Storage, lists: Lists, wait: Duration) -> Pipeline {
        Pipeline {
            storage,
            lists: RwLock::new(Arc::new(lists)),
            wait,
        }
    }

    /// Replaces the lists (SIGHUP); the next pass uses them.
    pub fn set_lists(&self, lists: Lists) {
        *self.lists.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(lists);
    }

    fn lists(&self) -> Arc<Lists> {
        self.lists.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs passes until `shutdown`; what is left is judged after the next
    /// start (observations are stored before they are judged).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut state = State::default();
        let tick = (self.wait / 2).clamp(Duration::from_millis(50), TICK_MAX);
        loop {
            let judged = match self.pass(&mut state).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "classification pass failed; retrying");
                    0
                }
            };
            // A full pass means more is waiting: go on at once.
            let pause = if judged == PASS_MAX as usize {
                Duration::ZERO
            } else {
                tick
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Judges the observations old enough and not judged yet; returns how
    /// many.
    pub async fn pass(&self, state: &mut State) -> Result<usize, StorageError> {
        // After a start, every observation without an event is looked at
        // once (a sweep of the table); then only the recent ones.
        let cursor = state.cursor_ms.unwrap_or(i64::MIN);
        let cutoff = now_ms() - i64::try_from(self.wait.as_millis()).unwrap_or(i64::MAX);
        let waiting = self
            .storage
            .unclassified(cursor.saturating_sub(LOOKBACK_MS), cutoff, PASS_MAX)
            .await?;
        if waiting.is_empty() {
            state.cursor_ms = Some(cursor.max(cutoff));
            return Ok(0);
        }
        let lists = self.lists();
        let mut copies: HashMap<Uuid, Copy> = HashMap::new();
        let mut events = Vec::with_capacity(waiting.len());
        for obs in &waiting {
            let copy = match copies.entry(obs.message_id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(Copy::load(&self.storage, obs.message_id).await?),
            };
            let ip: Option<IpAddr> = obs.ip.parse().ok();
            let recipients_from_ip = ip.map_or(1, |ip| state.ips.note(ip, obs));
            let hits: Vec<Hit> = copy
                .hits
                .iter()
                .filter(|(id, _)| *id != obs.id)
                .map(|(_, h)| *h)
                .collect();
            let ctx = Context {
                hits: &hits,
                seconds_after_send: copy.relayed_at_ms.map(|t| (obs.at_ms - t) as f64 / 1000.0),
                recipients_from_ip,
            };
            let verdict =
                classify::classify(&classify::Observation::from_stored(obs), &ctx, &lists);
            let first = verdict.bot.counts_for_metrics
                && copy.counted.insert((obs.kind, obs.recipient_id.clone()));
            crate::metrics::event(verdict.bot.classification.as_str());
            events.push(event(obs, &verdict, first));
        }
        let n = events.len();
        let last = waiting.last().map_or(cursor, |o| o.at_ms);
        self.storage.record_events(events).await?;
        state.cursor_ms = Some(cursor.max(last));
        tracing::debug!(events = n, "observations classified");
        Ok(n)
    }
}

/// What a pass keeps between passes.
#[derive(Debug, Default)]
pub struct State {
    /// Observations up to here (less the look-back) have their events.
    cursor_ms: Option<i64>,
    ips: RecentIps,
}

/// Per address, the copies it hit in the last hour, oldest first.
#[derive(Debug, Default)]
struct RecentIps {
    seen: HashMap<IpAddr, VecDeque<(i64, Uuid)>>,
}

impl RecentIps {
    /// Notes this hit; returns how many distinct copies the address hit in
    /// the window, this one included.
    fn note(&mut self, ip: IpAddr, obs: &Observation) -> u32 {
        let since = obs.at_ms - IP_WINDOW_MS;
        let hits = self.seen.entry(ip).or_default();
        while hits.front().is_some_and(|(at, _)| *at < since) {
            hits.pop_front();
        }
        hits.push_back((obs.at_ms, obs.message_id));
        let distinct: HashSet<Uuid> = hits.iter().map(|(_, id)| *id).collect();
        if self.seen.len() > 100_000 {
            self.seen
                .retain(|_, h| h.back().is_some_and(|(at, _)| *at >= since));
        }
        u32::try_from(distinct.len()).unwrap_or(u32::MAX)
    }
}

/// One relayed copy as the pipeline needs it.
struct Copy {
    /// Every hit on it (id, hit), oldest first.
    hits: Vec<(Uuid, Hit)>,
    relayed_at_ms: Option<i64>,
    /// (kind, recipient) pairs that already have a counting event.
    counted: HashSet<(Kind, Option<String>)>,
}

impl Copy {
    async fn load(storage: &Storage, id: Uuid) -> Result<Copy, StorageError> {
        let hits = storage
            .observations(id)
            .await?
            .iter()
            .map(|o| {
                let hit = Hit {
                    at_ms: o.at_ms,
                    kind: o.kind,
                    ip: o.ip.parse().ok(),
                    link: o.link,
                };
                (o.id, hit)
            })
            .collect();
        let relayed_at_ms = storage.message(id).await?.map(|m| m.relayed_at_ms);
        let counted = storage
            .events(id)
            .await?
            .into_iter()
            .filter(|e| e.counts_for_metrics)
            .map(|e| (e.kind, e.recipient_id))
            .collect();
        Ok(Copy {
            hits,
            relayed_at_ms,
            counted,
        })
    }
}

fn event(o: &Observation, v: &Verdict, first: bool) -> Event {
    let text = |value: serde_json::Value| value.as_str().map(str::to_owned);
    Event {
        id: o.id,
        message_id: o.message_id,
        recipient_id: o.recipient_id.clone(),
        kind: o.kind,
        link: o.link,
        url: o.url.clone(),
        at_ms: o.at_ms,
        classification: v.bot.classification.as_str().to_owned(),
        counts_for_metrics: v.bot.counts_for_metrics,
        machine: v.bot.machine,
        first,
        // Plain data: serialising cannot fail.
        bot: serde_json::to_value(&v.bot).expect("the bot object serialises"),
        device_type: v
            .device_type
            .and_then(|d| text(serde_json::to_value(d).ok()?)),
        client_type: v
            .client_type
            .and_then(|c| text(serde_json::to_value(c).ok()?)),
        client_name: v.client_name.as_deref().map(str::to_owned),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
