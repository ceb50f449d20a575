//! [`prune`](super::prune) and [`forget`](super::forget) for a PostgreSQL
//! database: the same policy, on the backend's own rows
//! (storage/postgres/retention.rs). Several nodes may run the task; one
//! pass at a time holds the retention lock and the others skip theirs.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{FIRST_RUN_AFTER, Forgotten, IpHashKey, Pace, Policy, Pruned, WATERMARK_SLACK_MS};
use crate::storage::{Storage, StorageError};
use crate::token::KeyRing;

/// [`super::prune`] on PostgreSQL; `None` when another node is pruning.
pub async fn prune(
    storage: &Storage,
    retention: &Policy,
    as_of_ms: i64,
    dry_run: bool,
    pace: Pace,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Option<Pruned>, StorageError> {
    let Some(pg) = storage.postgres() else {
        return Err(StorageError::Task("not a PostgreSQL database".into()));
    };
    let Some(mut pass) = pg.retention_pass().await? else {
        return Ok(None);
    };
    let mut out = Pruned::planned(retention, as_of_ms);
    let (raw_before_ms, delete_before_ms) = (out.raw_before_ms, out.delete_before_ms);
    if dry_run {
        if let Some(before) = delete_before_ms {
            out.deleted = pass.count_before(before).await?;
        }
        out.minimised = pass.raw_rows(raw_before_ms, usize::MAX >> 1).await?.len() as u64;
        pass.finish().await?;
        return Ok(Some(out));
    }
    // Months are made from the real time, whatever `as_of_ms` says; rows
    // waiting in the default partition are moved unless deleted next.
    let tidy_from_ms = delete_before_ms.unwrap_or(0);
    pass.partitions(crate::time::now_ms(), tidy_from_ms).await?;
    if let Some(before) = delete_before_ms {
        out.deleted = pass.delete_before(before).await?;
    }
    // The per-address counts matter for an hour: older rows go, IPs too.
    let window = crate::storage::postgres::ADDRESS_WINDOW_MS;
    pass.forget_address_counts(crate::time::now_ms() - 2 * window)
        .await?;
    out.minimised = minimise(&mut pass, &retention.ip_hash_key, raw_before_ms, pace, stop).await?;
    out.webhook_payloads = pass.minimise_webhook_payloads(raw_before_ms).await?;
    out.interrupted = stop();
    pass.finish().await?;
    Ok(Some(out))
}

async fn minimise(
    pass: &mut crate::storage::postgres::retention::Pass,
    key: &IpHashKey,
    before_ms: i64,
    pace: Pace,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<u64, StorageError> {
    // Never past the real time less the slack: hits still being stored.
    let before_ms = before_ms.min(crate::time::now_ms() - WATERMARK_SLACK_MS);
    let mut total = 0;
    while !stop() {
        let rows = pass.raw_rows(before_ms, pace.batch_rows).await?;
        if rows.is_empty() {
            break;
        }
        let hashed: Vec<_> = rows
            .into_iter()
            .map(|hit| (hit, hit.ip.map(|ip| key.hash(ip)).unwrap_or_default()))
            .collect();
        total += pass.minimise(&hashed).await?;
        tokio::time::sleep(pace.pause).await;
    }
    Ok(total)
}

/// [`super::forget`] on PostgreSQL (waits for a running pass's lock).
pub async fn forget(
    storage: &Storage,
    address: &str,
    keys: &KeyRing,
) -> Result<Forgotten, StorageError> {
    let Some(pg) = storage.postgres() else {
        return Err(StorageError::Task("not a PostgreSQL database".into()));
    };
    loop {
        if let Some(mut pass) = pg.retention_pass().await? {
            let removed = pass
                .forget(address, &keys.recipient_ids_text(address))
                .await?;
            pass.finish().await?;
            return Ok(Forgotten {
                removed,
                // No WAL file of ours to empty: PostgreSQL recycles its own.
                wal_emptied: true,
                vacuumed: false,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The periodic task inside `serve` on PostgreSQL.
pub async fn run(storage: Storage, retention: Policy, shutdown: CancellationToken) {
    let mut wait = FIRST_RUN_AFTER.min(retention.interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = retention.interval;
        let stop = || shutdown.is_cancelled();
        let now_ms = crate::time::now_ms();
        match prune(&storage, &retention, now_ms, false, Pace::default(), &stop).await {
            Ok(Some(p)) => tracing::info!(
                minimised = p.minimised,
                copies_deleted = p.deleted.copies,
                events_deleted = p.deleted.events,
                observations_deleted = p.deleted.observations,
                interrupted = p.interrupted,
                "retention pass done"
            ),
            Ok(None) => tracing::info!("retention pass skipped: another node is pruning"),
            Err(e) => tracing::error!(error = %e, "retention pass failed; retried next interval"),
        }
    }
}

/// Runs `f` with storage opened at `location` on a runtime of its own
/// (the CLI commands).
pub fn with_storage<T>(
    location: &crate::storage::Location,
    f: impl AsyncFnOnce(&Storage) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StorageError::Task(e.to_string()))?;
    runtime.block_on(async {
        let storage = Storage::connect(location, crate::storage::DEFAULT_QUEUE_CAPACITY).await?;
        f(&storage).await
    })
}
