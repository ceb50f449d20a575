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
use crate::storage::{CopyContext, Event, HitRow, Observation, RelayedCopy, Storage, StorageError};
use crate::time::Clock;
use crate::token::Kind;
use crate::webhooks::Webhooks;

/// Most observations judged in one pass.
const PASS_MAX: u32 = 1000;
/// How far back each pass looks again for hits committed late (a database
/// that failed for a while commits its queue in one go); hits committed
/// later still are judged after the next start.
const LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Longest pause between passes.
const TICK_MAX: Duration = Duration::from_secs(1);
/// Context of a hit: the copy's other hits at most this far from it (or
/// the burst window, if longer).
const CONTEXT_MIN_MS: i64 = 2_000;
/// Most hits of the copy on each side of a hit in its context.
const CONTEXT_SIDE: usize = 32;
/// Hits of one address kept to count the copies it has hit.
const IP_WINDOW_MS: i64 = 60 * 60 * 1000;

/// Judges stored observations and stores their events.
pub struct Pipeline {
    storage: Storage,
    lists: RwLock<Arc<Lists>>,
    wait: Duration,
    /// Where each event's webhook deliveries come from, if anywhere.
    webhooks: Option<Arc<Webhooks>>,
    /// What "old enough to judge" is measured against.
    clock: Clock,
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
            webhooks: None,
            clock: Clock::system(),
        }
    }

    /// Judges by `clock` instead of the system's (tests).
    pub fn with_clock(mut self, clock: Clock) -> Pipeline {
        self.clock = clock;
        self
    }

    /// Events are stored with their webhook deliveries from `webhooks`.
    pub fn with_webhooks(mut self, webhooks: Arc<Webhooks>) -> Pipeline {
        self.webhooks = Some(webhooks);
        self
    }

    /// Replaces the lists (`App::reload`); the next pass uses them.
    pub fn set_lists(&self, lists: Lists) {
        *self.lists.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(lists);
    }

    /// The lists in force.
    pub fn lists(&self) -> Arc<Lists> {
        self.lists.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs passes until `shutdown`; what is left is judged after the next
    /// start (observations are stored before they are judged).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut state = State::default();
        let tick = (self.wait / 2).clamp(Duration::from_millis(50), TICK_MAX);
        loop {
            let started = std::time::Instant::now();
            let judged = match self.pass(&mut state).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "classification pass failed; retrying");
                    0
                }
            };
            // A full pass means more is waiting: go on after a pause as
            // long as the pass took, so that catching up after a burst
            // takes at most half of the time and the hits keep theirs.
            let pause = if judged == PASS_MAX as usize {
                started.elapsed()
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
        let cutoff = self.clock.now_ms() - i64::try_from(self.wait.as_millis()).unwrap_or(i64::MAX);
        let waiting = self
            .storage
            .unclassified(cursor.saturating_sub(LOOKBACK_MS), cutoff, PASS_MAX)
            .await?;
        if waiting.is_empty() {
            state.cursor_ms = Some(cursor.max(cutoff));
            return Ok(0);
        }
        let lists = self.lists();
        let window = i64::try_from(lists.rules().burst_window.as_millis())
            .unwrap_or(i64::MAX)
            .max(CONTEXT_MIN_MS);
        // Each copy's hits are read once per pass, for the time its waiting
        // hits span and the window around them.
        let mut spans: HashMap<Uuid, (i64, i64)> = HashMap::new();
        for o in &waiting {
            let span = spans.entry(o.message_id).or_insert((o.at_ms, o.at_ms));
            *span = (span.0.min(o.at_ms), span.1.max(o.at_ms));
        }
        let wanted: Vec<(Uuid, i64, i64)> = spans
            .iter()
            .map(|(id, (from, to))| (*id, from - window, to + window))
            .collect();
        let contexts = self.storage.copy_contexts(wanted.clone()).await?;
        let mut copies: HashMap<Uuid, JudgedCopy> = wanted
            .iter()
            .zip(contexts)
            .map(|((id, _, _), c)| (*id, JudgedCopy::new(c)))
            .collect();
        // How many copies each hit's address hit lately: from the
        // database where several nodes judge (PostgreSQL), else counted
        // here in memory.
        let from_ips: Vec<(IpAddr, i64)> = waiting
            .iter()
            .filter_map(|o| o.ip.map(|ip| (ip, o.at_ms)))
            .collect();
        let mut shared = self
            .storage
            .recipients_from_ips(from_ips)
            .await?
            .map(Vec::into_iter);
        let mut events = Vec::with_capacity(waiting.len());
        for obs in &waiting {
            let copy = copies
                .get_mut(&obs.message_id)
                .expect("every waiting copy was read");
            let recipients_from_ip = match (obs.ip, shared.as_mut()) {
                (Some(_), Some(counts)) => counts.next().unwrap_or(1),
                (Some(ip), None) => state.ips.note(ip, obs),
                (None, _) => 1,
            };
            let hits = copy.context(obs, window);
            let ctx = Context {
                hits: &hits,
                seconds_after_send: copy
                    .relayed
                    .as_ref()
                    .map(|m| (obs.at_ms - m.relayed_at_ms) as f64 / 1000.0),
                recipients_from_ip,
            };
            let verdict = classify::classify(&classifier_view(obs), &ctx, &lists);
            let first = verdict.bot.counts_for_metrics && copy.first_counting(obs);
            crate::metrics::event(verdict.bot.classification.as_str());
            let event = event(obs, &verdict, first);
            let deliveries = self.webhooks.as_ref().map_or_else(Vec::new, |w| {
                w.for_event(obs, &event, copy.relayed.as_ref(), copy.metadata.as_ref())
            });
            events.push((event, deliveries));
        }
        let n = events.len();
        let last = waiting.last().map_or(cursor, |o| o.at_ms);
        let queued = events.iter().any(|(_, d)| !d.is_empty());
        self.storage.record_events_with_webhooks(events).await?;
        if let Some(w) = self.webhooks.as_ref().filter(|_| queued) {
            w.wake();
        }
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

/// Per address, its hits of the last hour (oldest first) and how many of
/// them fell on each copy. SQLite only: on PostgreSQL, where several nodes
/// judge, the database counts them (storage/postgres/addresses.rs).
#[derive(Debug, Default)]
struct RecentIps {
    seen: HashMap<IpAddr, Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    hits: VecDeque<(i64, Uuid)>,
    copies: HashMap<Uuid, u32>,
}

impl RecentIps {
    /// Notes this hit; returns how many distinct copies the address hit in
    /// the window, this one included.
    fn note(&mut self, ip: IpAddr, obs: &Observation) -> u32 {
        let since = obs.at_ms - IP_WINDOW_MS;
        let recent = self.seen.entry(ip).or_default();
        while let Some(&(at, id)) = recent.hits.front() {
            if at >= since {
                break;
            }
            recent.hits.pop_front();
            if let Entry::Occupied(mut e) = recent.copies.entry(id) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
        recent.hits.push_back((obs.at_ms, obs.message_id));
        *recent.copies.entry(obs.message_id).or_default() += 1;
        let distinct = u32::try_from(recent.copies.len()).unwrap_or(u32::MAX);
        if self.seen.len() > 100_000 {
            self.seen
                .retain(|_, r| r.hits.back().is_some_and(|(at, _)| *at >= since));
        }
        distinct
    }
}

/// One relayed copy as the pipeline needs it.
struct JudgedCopy {
    /// Its hits around the waiting ones, oldest first.
    hits: Vec<HitRow>,
    /// Its first open, for hits outside that window.
    first_open_ms: Option<i64>,
    /// The stored copy, for webhooks (route, recipient, tags).
    relayed: Option<RelayedCopy>,
    /// Its sending API `metadata`, for webhooks.
    metadata: Option<serde_json::Value>,
    /// (kind, recipient) pairs that have a counting event.
    counted: HashSet<(Kind, Option<String>)>,
}

impl JudgedCopy {
    fn new(c: CopyContext) -> JudgedCopy {
        JudgedCopy {
            hits: c.hits,
            first_open_ms: c.first_open_ms,
            relayed: c.relayed,
            metadata: c.metadata,
            counted: c.counted.into_iter().collect(),
        }
    }

    /// The other hits within `window` of `obs`, and the copy's first open
    /// when that was earlier.
    fn context(&self, obs: &Observation, window: i64) -> Vec<Hit> {
        let start = self.hits.partition_point(|h| h.at_ms < obs.at_ms - window);
        let end = self.hits.partition_point(|h| h.at_ms <= obs.at_ms + window);
        // The nearest ones on each side, for a copy hit very often.
        let at = self.hits.partition_point(|h| h.at_ms < obs.at_ms);
        let (start, end) = (
            start.max(at.saturating_sub(CONTEXT_SIDE)),
            end.min(at + CONTEXT_SIDE),
        );
        let mut hits: Vec<Hit> = self.hits[start..end]
            .iter()
            .filter(|h| h.id != obs.id)
            .map(|h| Hit {
                at_ms: h.at_ms,
                kind: h.kind,
                ip: h.ip,
                link: h.link,
            })
            .collect();
        if let Some(at_ms) = self.first_open_ms.filter(|t| *t < obs.at_ms - window) {
            hits.insert(
                0,
                Hit {
                    at_ms,
                    kind: Kind::Open,
                    ip: None,
                    link: None,
                },
            );
        }
        hits
    }

    /// Whether a counting `obs` is the first of its kind for its
    /// recipient; remembers that one now exists.
    fn first_counting(&mut self, obs: &Observation) -> bool {
        self.counted.insert((obs.kind, obs.recipient_id.clone()))
    }
}

fn event(o: &Observation, v: &Verdict, first: bool) -> Event {
    Event {
        id: o.id,
        message_id: o.message_id,
        recipient_id: o.recipient_id.clone(),
        kind: o.kind,
        link: o.link,
        url: o.url.clone(),
        at_ms: o.at_ms,
        classification: v.bot.classification,
        counts_for_metrics: v.bot.counts_for_metrics,
        machine: v.bot.machine,
        first,
        // Plain data: serialising cannot fail.
        bot: serde_json::to_value(&v.bot).expect("the bot object serialises"),
        device_type: v.device_type,
        client_type: v.client_type,
        client_name: v.client_name.as_deref().map(str::to_owned),
    }
}

/// The classifier's view of a stored observation (borrowed). It lives here,
/// where storage and the classifier meet, so `classify` needs no `storage`.
fn classifier_view(o: &Observation) -> classify::Observation<'_> {
    classify::Observation {
        kind: o.kind,
        at_ms: o.at_ms,
        method: &o.method,
        ip: o.ip,
        user_agent: o.user_agent.as_deref(),
        headers: &o.headers,
        link: o.link,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(message_id: Uuid, at_ms: i64) -> Observation {
        Observation {
            id: Uuid::now_v7(),
            message_id,
            kind: Kind::Click,
            recipient_id: None,
            link: Some(0),
            url: None,
            at_ms,
            method: "GET".into(),
            host: "t.example.com".into(),
            ip: "192.0.2.1".parse().ok(),
            user_agent: None,
            headers: Vec::new(),
            key_id: "k1".into(),
        }
    }

    #[test]
    fn an_address_counts_the_copies_it_hit_within_the_hour() {
        let mut ips = RecentIps::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(ips.note(ip, &obs(a, 0)), 1);
        assert_eq!(ips.note(ip, &obs(a, 1_000)), 1);
        assert_eq!(ips.note(ip, &obs(b, 2_000)), 2);
        // An hour and a bit later only b's hit and this one are left.
        assert_eq!(ips.note(ip, &obs(a, IP_WINDOW_MS + 1_500)), 2);
        assert_eq!(ips.note(ip, &obs(b, 2 * IP_WINDOW_MS + 10_000)), 1);
        let other: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ips.note(other, &obs(a, 0)), 1);
    }

    #[test]
    fn context_is_the_window_around_the_hit_and_the_first_open() {
        let id = Uuid::now_v7();
        let me = obs(id, 100_000);
        let row = |at_ms, kind| HitRow {
            id: Uuid::now_v7(),
            at_ms,
            kind,
            ip: "192.0.2.9".parse().ok(),
            link: Some(1),
        };
        let mut hits = vec![
            row(90_000, Kind::Click),
            row(98_500, Kind::Click),
            row(101_000, Kind::Click),
            row(103_000, Kind::Click),
        ];
        hits.insert(
            2,
            HitRow {
                id: me.id,
                ..row(100_000, Kind::Click)
            },
        );
        let copy = JudgedCopy {
            hits,
            first_open_ms: Some(50_000),
            relayed: None,
            metadata: None,
            counted: HashSet::new(),
        };
        let ctx = copy.context(&me, 2_000);
        let times: Vec<(i64, Kind)> = ctx.iter().map(|h| (h.at_ms, h.kind)).collect();
        assert_eq!(
            times,
            [
                (50_000, Kind::Open),
                (98_500, Kind::Click),
                (101_000, Kind::Click)
            ]
        );
    }
}
