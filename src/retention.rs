//! Retention (SPEC §9): raw signals minimised after `raw_signal_days`,
//! everything deleted after `event_days`, a recipient forgotten on request.
//!
//! This module owns the policy: which time is old, the key of the IP hash,
//! how fast to go, when the periodic task runs. The rows are
//! `storage::retention`'s. `trackrelay prune` and the task inside `serve`
//! call the same [`prune`]; `trackrelay forget` calls [`forget`].
//!
//! Minimisation walks the old observations in batches of
//! [`Pace::batch_rows`]: each batch is read without a lock, its IPs hashed
//! here, then written in one short transaction, with [`Pace::pause`]
//! between batches, so the tracking server's writer waits at most one
//! batch. Events are never touched: they already hold every verdict, so
//! metrics and reports stay the same.

pub mod postgres;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::Mac;
use tokio_util::sync::CancellationToken;

use crate::storage::StorageError;
use crate::storage::retention::{Cursor, Maintenance, Removed};
use crate::token::KeyRing;

/// When the task first runs after the server starts (then every interval).
const FIRST_RUN_AFTER: Duration = Duration::from_secs(60);
/// The watermark never passes the real time less this: a hit is stored a
/// moment after its `at_ms` was taken, and a prune `--as-of` a future time
/// must not mark hits still to come as done.
const WATERMARK_SLACK_MS: i64 = 3_600_000;

/// How long what is kept, and the key minimised observations are hashed
/// with: `[retention]`, read and checked by `config`.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Exact IP, user agent and headers are kept this long (`raw_signal_days`).
    pub raw_signals: Duration,
    /// Events, copies and observations are deleted after this long
    /// (`event_days`); none: kept.
    pub events: Option<Duration>,
    /// How often the retention task runs (`interval_minutes`).
    pub interval: Duration,
    /// The key of the IP hash: `ip_hash_key`, or derived from the signing key.
    pub ip_hash_key: IpHashKey,
}

/// The key of the IP hash (HMAC-SHA256). Same IP, same key: same hash;
/// without the key the hash cannot be reversed by trying every address.
#[derive(Clone)]
pub struct IpHashKey(Vec<u8>);

impl std::fmt::Debug for IpHashKey {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IpHashKey(<hidden>)")
    }
}

impl IpHashKey {
    /// A key from `retention.ip_hash_key`.
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    /// The key when `retention.ip_hash_key` is not set: derived from the
    /// signing key of the tracking key ring (docs/privacy.md says why and
    /// what rotating that key does).
    pub fn derived_from(keys: &KeyRing) -> Self {
        Self(keys.derive(b"trackrelay ip hash key v1").to_vec())
    }

    /// The hash of `ip`, 64 hex digits. The address is written in its
    /// canonical form first, so `::ffff:192.0.2.1` and `192.0.2.1` agree.
    pub fn hash(&self, ip: IpAddr) -> String {
        let canonical = ip.to_canonical().to_string();
        let mut mac = crate::token::hmac_sha256(&self.0);
        mac.update(b"trackrelay ip hash v1\0");
        mac.update(canonical.as_bytes());
        let digest = mac.finalize().into_bytes();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// How fast retention works through the database.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Rows per transaction.
    pub batch_rows: usize,
    /// Pause after each batch, so the writer's batches go in between.
    pub pause: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            batch_rows: 1000,
            pause: Duration::from_millis(20),
        }
    }
}

/// What a [`prune`] did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Observations before this time (ms) are minimised.
    pub raw_before_ms: i64,
    /// Observations minimised (dry: that would be).
    pub minimised: u64,
    /// Webhook delivery bodies whose IP and user agent were removed.
    pub webhook_payloads: u64,
    /// Copies, events and observations before this time are deleted.
    pub delete_before_ms: Option<i64>,
    /// What was deleted (dry: would be) for `event_days`.
    pub deleted: Removed,
    /// Stopped early by shutdown.
    pub interrupted: bool,
}

impl Pruned {
    /// Nothing done yet: the two cut-off times `retention` gives at `as_of_ms`.
    fn planned(retention: &Policy, as_of_ms: i64) -> Pruned {
        Pruned {
            raw_before_ms: as_of_ms.saturating_sub(millis(retention.raw_signals)),
            delete_before_ms: retention.events.map(|d| as_of_ms.saturating_sub(millis(d))),
            ..Pruned::default()
        }
    }
}

/// Applies `retention` as if it were `as_of_ms`: deletes what is older
/// than `event_days`, then minimises what is older than `raw_signal_days`.
/// `dry_run` only counts. `stop` is asked between batches.
pub fn prune(
    path: &Path,
    retention: &Policy,
    as_of_ms: i64,
    dry_run: bool,
    pace: Pace,
    stop: &dyn Fn() -> bool,
) -> Result<Pruned, StorageError> {
    let mut db = Maintenance::open(path)?;
    let mut out = Pruned::planned(retention, as_of_ms);
    let (raw_before_ms, delete_before_ms) = (out.raw_before_ms, out.delete_before_ms);
    if dry_run {
        if let Some(before) = delete_before_ms {
            out.deleted = db.count_before(before)?;
        }
        let from = db.watermark()?.max(delete_before_ms.unwrap_or(i64::MIN));
        out.minimised = db.count_raw(from, raw_before_ms)?;
        return Ok(out);
    }
    if let Some(before) = delete_before_ms {
        loop {
            if stop() {
                out.interrupted = true;
                return Ok(out);
            }
            let removed = db.delete_before(before, pace.batch_rows)?;
            if removed.is_empty() {
                break;
            }
            out.deleted.add(removed);
            std::thread::sleep(pace.pause);
        }
    }
    out.minimised = minimise(&mut db, &retention.ip_hash_key, raw_before_ms, pace, stop)?;
    // Webhook bodies carry the hit's IP and user agent too; sent (or
    // given up) ones that old lose them as well.
    out.webhook_payloads = db.minimise_webhook_payloads(raw_before_ms)?;
    // The raw versions of the pages are still in the database file until
    // a checkpoint copies the new ones over them.
    db.checkpoint_passive()?;
    out.interrupted = stop();
    Ok(out)
}

/// Minimises every raw observation before `before_ms`, batch by batch;
/// then records how far it got. Returns the rows minimised.
fn minimise(
    db: &mut Maintenance,
    key: &IpHashKey,
    before_ms: i64,
    pace: Pace,
    stop: &dyn Fn() -> bool,
) -> Result<u64, StorageError> {
    let mut cursor = Cursor {
        at_ms: db.watermark()?,
        rowid: i64::MIN,
    };
    let mut total = 0;
    loop {
        if stop() {
            // Not finished: the watermark stays where it was.
            return Ok(total);
        }
        let rows = db.after(cursor, before_ms, pace.batch_rows)?;
        let Some(last) = rows.last() else { break };
        cursor = Cursor {
            at_ms: last.at_ms,
            rowid: last.rowid,
        };
        let hashed: Vec<(i64, String)> = rows
            .iter()
            .filter(|r| r.raw)
            // A hit without an address (none is stored so) gets an empty
            // hash: still marked minimised.
            .map(|r| (r.rowid, r.ip.map(|ip| key.hash(ip)).unwrap_or_default()))
            .collect();
        if !hashed.is_empty() {
            total += db.minimise(&hashed)?;
            std::thread::sleep(pace.pause);
        }
    }
    let now_ms = crate::time::now_ms();
    db.set_watermark(before_ms.min(now_ms - WATERMARK_SLACK_MS))?;
    Ok(total)
}

/// What [`forget`] removed.
#[derive(Debug, Clone, Default)]
pub struct Forgotten {
    pub removed: Removed,
    /// The WAL was emptied afterwards (no old frame holds the rows).
    pub wal_emptied: bool,
    /// The file was rebuilt (`VACUUM`).
    pub vacuumed: bool,
}

/// Removes what is stored about `address` (see
/// `storage::retention::Maintenance::forget`); `keys` give the recipient
/// ids its tokens carried. `vacuum` rebuilds the file afterwards.
pub fn forget(
    path: &Path,
    address: &str,
    keys: &KeyRing,
    vacuum: bool,
) -> Result<Forgotten, StorageError> {
    let mut db = Maintenance::open(path)?;
    let removed = db.forget(address, &keys.recipient_ids_text(address))?;
    if vacuum {
        db.vacuum()?;
    }
    let wal_emptied = db.checkpoint()?;
    Ok(Forgotten {
        removed,
        wal_emptied,
        vacuumed: vacuum,
    })
}

/// The periodic task inside `serve`: [`prune`] a minute after start, then
/// every `retention.interval`, until `shutdown`.
pub async fn run(path: PathBuf, retention: Policy, shutdown: CancellationToken) {
    run_after(FIRST_RUN_AFTER, path, retention, shutdown).await;
}

/// [`run`] with the first pass `first` after start.
async fn run_after(first: Duration, path: PathBuf, retention: Policy, shutdown: CancellationToken) {
    let mut wait = first.min(retention.interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = retention.interval;
        let (path, retention, stop) = (path.clone(), retention.clone(), shutdown.clone());
        let now_ms = crate::time::now_ms();
        let result = tokio::task::spawn_blocking(move || {
            prune(&path, &retention, now_ms, false, Pace::default(), &|| {
                stop.is_cancelled()
            })
        })
        .await;
        match result {
            Ok(Ok(p)) => tracing::info!(
                minimised = p.minimised,
                copies_deleted = p.deleted.copies,
                events_deleted = p.deleted.events,
                observations_deleted = p.deleted.observations,
                interrupted = p.interrupted,
                "retention pass done"
            ),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "retention pass failed; retried next interval")
            }
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }
    use crate::token::Key;

    #[test]
    fn the_hash_is_stable_keyed_and_canonical() {
        let a = IpHashKey::new(b"first key, 32 bytes long........");
        let b = IpHashKey::new(b"other key, 32 bytes long........");
        assert_eq!(a.hash(ip("192.0.2.1")), a.hash(ip("192.0.2.1")));
        assert_eq!(a.hash(ip("192.0.2.1")), a.hash(ip("::ffff:192.0.2.1")));
        assert_ne!(a.hash(ip("192.0.2.1")), a.hash(ip("192.0.2.2")));
        assert_ne!(a.hash(ip("192.0.2.1")), b.hash(ip("192.0.2.1")));
        assert_eq!(a.hash(ip("192.0.2.1")).len(), 64);
        assert!(!a.hash(ip("192.0.2.1")).contains("192"));
    }

    /// A database with one raw observation `age` old.
    fn database_with_old_hit(age: Duration) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(Maintenance::open(&path).unwrap());
        let at_ms = crate::time::now_ms() - millis(age);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO observations (id, message_id, kind, at_ms, method, host, ip,
                                       user_agent, headers, key_id)
             VALUES ('o1', 'm1', 'open', ?1, 'GET', 'h', '192.0.2.9', 'UA', '[]', 'k1')",
            [at_ms],
        )
        .unwrap();
        (dir, path)
    }

    const DAY_MS: i64 = 86_400_000;

    fn ip_of(path: &Path) -> String {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("SELECT ip FROM observations", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_task_minimises_old_hits_and_stops_on_shutdown() {
        let (_dir, path) = database_with_old_hit(Duration::from_secs(29 * 86_400));
        let retention = Policy {
            raw_signals: Duration::from_secs(28 * 86_400),
            events: None,
            interval: Duration::from_secs(3600),
            ip_hash_key: IpHashKey::new(b"k"),
        };
        let shutdown = CancellationToken::new();
        let first = Duration::from_millis(10);
        let task = tokio::spawn(run_after(first, path.clone(), retention, shutdown.clone()));
        // Bounded wait for the first pass (no assertion on how long it took).
        for _ in 0..1000 {
            if ip_of(&path).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(ip_of(&path), "");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn a_prune_as_of_the_future_leaves_later_hits_to_later_runs() {
        let (_dir, path) = database_with_old_hit(Duration::from_secs(60));
        let retention = Policy {
            raw_signals: Duration::from_secs(28 * 86_400),
            events: None,
            interval: Duration::from_secs(3600),
            ip_hash_key: IpHashKey::new(b"k"),
        };
        let as_of = crate::time::now_ms() + millis(retention.raw_signals) + DAY_MS;
        let run = || prune(&path, &retention, as_of, false, Pace::default(), &|| false);
        assert_eq!(run().unwrap().minimised, 1);
        // A hit stored after that run, older than the limit at `as_of`.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO observations (id, message_id, kind, at_ms, method, host, ip,
                                       user_agent, headers, key_id)
             VALUES ('o2', 'm1', 'open', ?1, 'GET', 'h', '192.0.2.10', 'UA', '[]', 'k1')",
            [crate::time::now_ms()],
        )
        .unwrap();
        assert_eq!(run().unwrap().minimised, 1);
    }

    #[test]
    fn the_derived_key_follows_the_signing_key_only() {
        let ring = |first: &str| {
            KeyRing::new(vec![
                Key::new("k1", first.as_bytes().to_vec()),
                Key::new("k0", b"an older key, still verifying..".to_vec()),
            ])
        };
        let one = IpHashKey::derived_from(&ring("0123456789abcdef0123456789abcdef"));
        let same = IpHashKey::derived_from(&ring("0123456789abcdef0123456789abcdef"));
        let other = IpHashKey::derived_from(&ring("fedcba9876543210fedcba9876543210"));
        assert_eq!(one.hash(ip("2001:db8::1")), same.hash(ip("2001:db8::1")));
        assert_ne!(one.hash(ip("2001:db8::1")), other.hash(ip("2001:db8::1")));
    }
}
