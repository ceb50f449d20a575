//! Process-wide Prometheus metrics, served at `/metrics` on the admin
//! listener (behind the API token) in the OpenMetrics text format.
//!
//! Owns the registry and one small function per thing counted, so callers
//! (tracking, storage, the relay) never touch metric types. Label values are
//! bounded: kinds, outcomes and reply classes are fixed words, route ids come
//! from the config.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HitLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    classification: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListLabels {
    list: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RelayedLabels {
    route: String,
    reply_class: String,
}

struct Metrics {
    registry: Registry,
    hits: Family<HitLabels, Counter>,
    queue_depth: Gauge,
    overflow: Counter,
    batch_size: Histogram,
    commit_seconds: Histogram,
    commit_failures: Counter,
    wal_catch_up_seconds: Histogram,
    relayed: Family<RelayedLabels, Counter>,
    events: Family<EventLabels, Counter>,
    list_ages: Family<ListLabels, Gauge>,
    /// Each classifier range list and when it was published or fetched
    /// (ms since the epoch): its age is computed when rendering.
    list_dates: std::sync::Mutex<Vec<(String, i64)>>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("trackrelay");
    let hits = Family::<HitLabels, Counter>::default();
    let queue_depth = Gauge::default();
    let overflow = Counter::default();
    // 1, 2, 4 … 4096 rows per transaction.
    let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 13));
    // 100 µs … about 3 s.
    let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
    let commit_failures = Counter::default();
    // 100 µs … about 3 s.
    let wal_catch_up_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
    let relayed = Family::<RelayedLabels, Counter>::default();
    let events = Family::<EventLabels, Counter>::default();
    let list_ages = Family::<ListLabels, Gauge>::default();
    registry.register(
        "tracking_hits",
        "Hits on tracking URLs by kind (open, click) and outcome",
        hits.clone(),
    );
    registry.register(
        "storage_queue_depth",
        "Writes waiting for the storage writer",
        queue_depth.clone(),
    );
    registry.register(
        "storage_queue_overflow",
        "Observations refused because the write queue was full",
        overflow.clone(),
    );
    registry.register(
        "storage_batch_size",
        "Rows per committed transaction",
        batch_size.clone(),
    );
    registry.register(
        "storage_commit_seconds",
        "Time to write and commit one batch",
        commit_seconds.clone(),
    );
    registry.register(
        "storage_commit_failures",
        "Batches that failed to commit and were kept for a retry",
        commit_failures.clone(),
    );
    registry.register(
        "storage_wal_catch_up_seconds",
        "Time the writer spent between batches copying the last WAL frames so the WAL starts over",
        wal_catch_up_seconds.clone(),
    );
    registry.register(
        "relayed_messages",
        "Relayed copies by route and upstream reply class (2xx, 4xx, 5xx, error)",
        relayed.clone(),
    );
    registry.register(
        "events",
        "Classified observations by classification (genuine, privacy_proxy, …)",
        events.clone(),
    );
    registry.register(
        "classifier_list_age_seconds",
        "Age of each classifier address range list (built in: since published; a file: since update-ranges wrote it)",
        list_ages.clone(),
    );
    Metrics {
        registry,
        hits,
        queue_depth,
        overflow,
        batch_size,
        commit_seconds,
        commit_failures,
        wal_catch_up_seconds,
        relayed,
        events,
        list_ages,
        list_dates: std::sync::Mutex::new(Vec::new()),
    }
});

/// Outcome of one hit on a tracking URL, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitOutcome {
    /// Stored, and the response waited for the commit.
    Recorded,
    /// Queued; answered before its batch committed (slow or failing storage).
    Queued,
    /// Not stored: the write queue was full (logged).
    Overflow,
    /// The database refused the row for good (logged).
    Refused,
    /// Valid but expired token: answered, not stored.
    Expired,
    /// Forged, altered, truncated or wrong-kind token.
    Invalid,
    /// The Host is not a tracking domain (421).
    Misdirected,
}

impl HitOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HitOutcome::Recorded => "recorded",
            HitOutcome::Queued => "queued",
            HitOutcome::Overflow => "overflow",
            HitOutcome::Refused => "refused",
            HitOutcome::Expired => "expired",
            HitOutcome::Invalid => "invalid",
            HitOutcome::Misdirected => "misdirected",
        }
    }
}

/// Counts one hit; `kind` is the path's kind, `"open"` or `"click"`.
pub fn hit(kind: &'static str, outcome: HitOutcome) {
    METRICS
        .hits
        .get_or_create(&HitLabels {
            kind,
            outcome: outcome.as_str(),
        })
        .inc();
}

/// Counts one relayed copy. `reply_class` is `"2xx"`, `"4xx"`, `"5xx"` or
/// `"error"` (no reply); see [`reply_class`].
pub fn relayed(route: &str, reply_class: &str) {
    METRICS
        .relayed
        .get_or_create(&RelayedLabels {
            route: route.to_owned(),
            reply_class: reply_class.to_owned(),
        })
        .inc();
}

/// One observation classified as `classification` (SPEC §6 words).
pub fn event(classification: &'static str) {
    METRICS
        .events
        .get_or_create(&EventLabels { classification })
        .inc();
}

/// The class of an SMTP reply code for [`relayed`]: `"2xx"`, `"4xx"`,
/// `"5xx"`, or `"error"` for anything else.
pub fn reply_class(code: u16) -> &'static str {
    match code {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "error",
    }
}

/// Sets the number of writes waiting for the storage writer.
pub fn queue_depth(depth: usize) {
    METRICS
        .queue_depth
        .set(i64::try_from(depth).unwrap_or(i64::MAX));
}

/// Counts one observation refused by a full queue.
pub fn overflow() {
    METRICS.overflow.inc();
}

/// Records one committed batch.
pub fn batch_committed(rows: usize, took: Duration) {
    METRICS.batch_size.observe(rows as f64);
    METRICS.commit_seconds.observe(took.as_secs_f64());
}

/// Counts one failed commit (the batch is retried).
pub fn commit_failed() {
    METRICS.commit_failures.inc();
}

/// Records one WAL catch-up by the writer (see `storage/checkpoint.rs`).
pub fn wal_caught_up(took: Duration) {
    METRICS.wal_catch_up_seconds.observe(took.as_secs_f64());
}

/// The classifier's range lists as loaded: (name, when published or
/// fetched, ms since the epoch); replaces the previous set.
pub fn classifier_lists(dates: Vec<(String, i64)>) {
    METRICS.list_ages.clear();
    *METRICS
        .list_dates
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = dates;
}

/// Every metric in the Prometheus text format.
/// The content type of [`render`]'s text: prometheus-client's text
/// encoder writes OpenMetrics 1.0 (it ends with `# EOF`), not the older
/// Prometheus 0.0.4 format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn render() -> String {
    let now_ms = crate::time::now_ms();
    for (list, updated_ms) in METRICS
        .list_dates
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        METRICS
            .list_ages
            .get_or_create(&ListLabels { list: list.clone() })
            .set((now_ms - updated_ms).max(0) / 1000);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    prometheus_client::encoding::text::encode(&mut out, &METRICS.registry)
        .expect("encoding metrics into a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_hits_and_relayed_copies_appear_in_the_text() {
        hit("click", HitOutcome::Expired);
        relayed("news", reply_class(250));
        let text = render();
        assert!(
            text.contains(r#"trackrelay_tracking_hits_total{kind="click",outcome="expired"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"trackrelay_relayed_messages_total{route="news",reply_class="2xx"} 1"#),
            "{text}"
        );
        assert!(text.contains("trackrelay_storage_commit_seconds_bucket"));
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics, as CONTENT_TYPE says"
        );
        classifier_lists(vec![("apple".into(), crate::time::now_ms() - 86_400_000)]);
        let text = render();
        let line = text
            .lines()
            .find(|l| l.starts_with(r#"trackrelay_classifier_list_age_seconds{list="apple"}"#))
            .unwrap_or_else(|| panic!("{text}"));
        let age: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((86_400..86_500).contains(&age), "{line}");
    }
}
