//! The event feed on PostgreSQL (what it is: storage/feed.rs): each event
//! gets a position in `event_feed` (migration 4), a `bigserial` never
//! given twice.
//!
//! Several nodes write events, and a sequence alone would not do: a
//! transaction that took position 10 may commit after one that took 11,
//! and a reader that saw 11 first would ask for "after 11" and miss 10
//! for good. So positions are taken in one place that serialises: the
//! writer takes them last in its transaction, under a transaction-scoped
//! advisory lock ([`FEED_LOCK`]) held until its commit is visible
//! (PostgreSQL releases a transaction's locks only after it shows as
//! committed to new snapshots). The next transaction takes its positions
//! after that, so positions become visible in their order: a reader that
//! has seen position N has seen every position below it. Only batches with
//! events take the lock, for the few milliseconds of their commit; hits
//! never wait for it.

use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{events, messages, observations};
use crate::storage::feed::Start;
use crate::storage::{FeedFilter, FeedItem, StorageError};

/// The advisory lock feed positions are taken under ("trackfed").
const FEED_LOCK: i64 = 0x7472_6163_6b66_6564;

/// Gives `stored` (ids of the events this transaction inserted, in order)
/// their positions, in that order, under [`FEED_LOCK`]; call it last, just
/// before the commit. An event whose id still has a position (its row was
/// deleted without it, then stored again: `migrate-storage --resume` after
/// a partial copy) moves to the new one, as stored now; it never fails the
/// batch.
pub(super) async fn append(
    client: &impl GenericClient,
    stored: &[Uuid],
) -> Result<(), tokio_postgres::Error> {
    if stored.is_empty() {
        return Ok(());
    }
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&FEED_LOCK])
        .await?;
    client
        .execute(
            "INSERT INTO event_feed (event_id, at_ms)
             SELECT e.id, e.at_ms FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n)
             JOIN events e ON e.id = t.id
             ORDER BY t.n
             ON CONFLICT (event_id) DO UPDATE SET seq = excluded.seq, at_ms = excluded.at_ms",
            &[&stored],
        )
        .await?;
    Ok(())
}

/// Deletes the positions of the events `condition` picks (a condition on
/// `events` with one parameter, `$1`); call it before deleting them.
pub(super) async fn forget(
    client: &impl GenericClient,
    condition: &str,
    value: &(dyn ToSql + Sync),
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "DELETE FROM event_feed WHERE event_id IN (SELECT id FROM events WHERE {condition})"
    );
    client.execute(&sql, &[value]).await?;
    Ok(())
}

/// Deletes the positions of events older than `before_ms` (with or
/// without their events: they go together).
pub(super) async fn forget_before(
    client: &impl GenericClient,
    before_ms: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("DELETE FROM event_feed WHERE at_ms < $1", &[&before_ms])
        .await?;
    Ok(())
}

/// One page of the feed.
pub(super) async fn page(
    client: &impl GenericClient,
    f: &FeedFilter,
) -> Result<Vec<FeedItem>, StorageError> {
    let (order, position) = f.direction();
    let bound = match f.start() {
        Start::Past(seq) => seq,
        Start::Since(since_ms) => match first_since(client, since_ms).await? {
            Some(seq) => seq - 1,
            None => return Ok(Vec::new()),
        },
    };
    let sql = format!(
        "SELECT f.seq AS feed_seq, e.* FROM event_feed f JOIN events e ON e.id = f.event_id
         WHERE f.seq {position} $1
           AND ($2::text IS NULL OR e.route = $2)
           AND ($3::text IS NULL OR e.kind = $3)
           AND ($4::bigint IS NULL OR e.at_ms >= $4)
           AND ($5 OR e.counts)
         ORDER BY f.seq {order}
         LIMIT $6"
    );
    let rows = client
        .query(
            &sql,
            &[
                &bound,
                &f.route,
                &f.kind.map(|k| k.as_str()),
                &f.since_ms,
                &f.include_machine,
                &i64::from(f.limit),
            ],
        )
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let event = events::from_row(row)?;
        items.push(FeedItem {
            seq: row.try_get("feed_seq")?,
            observation: None,
            copy: None,
            event,
        });
    }
    with_observations_and_copies(client, &mut items).await?;
    Ok(items)
}

/// Fills in each item's observation (one query) and copy (once per copy).
async fn with_observations_and_copies(
    client: &impl GenericClient,
    items: &mut [FeedItem],
) -> Result<(), StorageError> {
    let ids: Vec<Uuid> = items.iter().map(|i| i.event.id).collect();
    let found = client
        .query("SELECT * FROM observations WHERE id = ANY ($1)", &[&ids])
        .await?;
    for row in &found {
        let o = observations::from_row(row)?;
        if let Some(item) = items.iter_mut().find(|i| i.event.id == o.id) {
            item.observation = Some(o);
        }
    }
    for i in 0..items.len() {
        let id = items[i].event.message_id;
        // A page often holds several events of one copy: read it once.
        items[i].copy = match items[..i].iter().find(|e| e.event.message_id == id) {
            Some(earlier) => earlier.copy.clone(),
            None => messages::get(client, id).await?,
        };
    }
    Ok(())
}

/// The first position of an event that happened at or after `since_ms`.
async fn first_since(
    client: &impl GenericClient,
    since_ms: i64,
) -> Result<Option<i64>, StorageError> {
    Ok(client
        .query_one(
            "SELECT min(seq) FROM event_feed WHERE at_ms >= $1",
            &[&since_ms],
        )
        .await?
        .get(0))
}

/// The position of the newest event, if any.
pub(super) async fn last_seq(client: &impl GenericClient) -> Result<Option<i64>, StorageError> {
    Ok(client
        .query_one("SELECT max(seq) FROM event_feed", &[])
        .await?
        .get(0))
}
