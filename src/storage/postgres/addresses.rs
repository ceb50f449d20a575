//! How many copies one client address hit lately, kept in the database
//! (table `address_copies`, migration 3 in `rollups.rs`). The classifier
//! calls a hit from an address that hit many recipients' copies within
//! the hour a machine (`many_recipients_from_ip`). On SQLite the pipeline
//! counts that in memory (events.rs `RecentIps`): one node judges every
//! hit, and a restart forgets the last hour. With several nodes, each
//! would see only the hits it judged; so on PostgreSQL the writer adds
//! each batch's hits per (address, minute, copy) with one upsert, as the
//! rollups do, and the pipeline asks the table. Exact to the minute: the
//! window starts at the beginning of the minute an hour before the hit.
//! Rows older than the window are deleted by retention (`forget_before`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::storage::{Observation, StorageError};

const MINUTE: i64 = 60_000;

/// How far back a hit's address is looked at (events.rs's window).
pub const WINDOW_MS: i64 = 60 * MINUTE;

/// Adds `hits` (one writer batch's) per address, minute and copy.
pub(super) async fn add(
    client: &impl GenericClient,
    hits: &[&Observation],
) -> Result<(), tokio_postgres::Error> {
    let mut sums: BTreeMap<(String, i64, Uuid), i64> = BTreeMap::new();
    for o in hits {
        if let Some(ip) = o.ip {
            // Saturating: a hit dated near i64::MIN has no whole minute
            // below it (tests/partitions.rs stores hits of any time).
            let minute = o.at_ms.div_euclid(MINUTE).saturating_mul(MINUTE);
            *sums
                .entry((ip.to_string(), minute, o.message_id))
                .or_default() += 1;
        }
    }
    if sums.is_empty() {
        return Ok(());
    }
    let mut ips = Vec::with_capacity(sums.len());
    let mut minutes = Vec::with_capacity(sums.len());
    let mut copies = Vec::with_capacity(sums.len());
    let mut counts = Vec::with_capacity(sums.len());
    // In key order: two nodes' batches lock shared rows in the same order.
    for ((ip, minute, copy), n) in sums {
        ips.push(ip);
        minutes.push(minute);
        copies.push(copy);
        counts.push(n);
    }
    client
        .execute(
            "INSERT INTO address_copies AS a (ip, minute_ms, message_id, hits)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::bigint[])
             ON CONFLICT (ip, minute_ms, message_id) DO UPDATE SET hits = a.hits + EXCLUDED.hits",
            &[&ips, &minutes, &copies, &counts],
        )
        .await
        .map(drop)
}

/// For each `(address, at_ms)`: how many distinct copies the address hit
/// from the minute an hour before up to `at_ms` (at least 1: the hit).
pub(super) async fn recipients(
    client: &impl GenericClient,
    hits: &[(IpAddr, i64)],
) -> Result<Vec<u32>, StorageError> {
    let ips: Vec<String> = hits.iter().map(|(ip, _)| ip.to_string()).collect();
    let at: Vec<i64> = hits.iter().map(|(_, at)| *at).collect();
    let rows = client
        .query(
            "SELECT w.i, count(DISTINCT a.message_id)
             FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS w(ip, at_ms, i)
             JOIN address_copies a ON a.ip = w.ip
               AND a.minute_ms >= (w.at_ms - $3) / 60000 * 60000 AND a.minute_ms <= w.at_ms
             GROUP BY w.i",
            &[&ips, &at, &WINDOW_MS],
        )
        .await?;
    let mut out = vec![1; hits.len()];
    for r in rows {
        let i: i64 = r.try_get(0)?;
        let n: i64 = r.try_get(1)?;
        if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) {
            *slot = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        }
    }
    Ok(out)
}

/// Deletes the rows of minutes before `before_ms` (out of every window).
pub(super) async fn forget_before(
    client: &impl GenericClient,
    before_ms: i64,
) -> Result<u64, StorageError> {
    Ok(client
        .execute(
            "DELETE FROM address_copies WHERE minute_ms < $1",
            &[&before_ms],
        )
        .await?)
}
