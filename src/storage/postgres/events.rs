//! `events` on PostgreSQL, and what the classification pipeline reads.
//!
//! Unique counts are claimed, not looked up: each event inserts the scopes
//! it could be the first of into `event_firsts` with `ON CONFLICT DO
//! NOTHING`, and is the first of those whose rows it created. Two nodes
//! judging hits of one copy at once cannot both take a first open: the
//! primary key decides, not a read before the write.

use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{observations, parse, parse_ip};
use crate::storage::{CopyContext, Event, HitRow, Observation, StorageError};
use crate::token::Kind;

/// Most hits a context holds (as SQLite's).
const HITS_MAX: i64 = 10_000;

/// Inserts one event; false when its hit was judged and stored before.
/// Its key is the hit's `(id, at_ms)` (events are partitioned by time,
/// and a unique key must hold the partition key): the same hit always
/// has the same pair, so the key is as exact as the id alone was.
pub(super) async fn insert(
    client: &impl GenericClient,
    e: &Event,
) -> Result<bool, tokio_postgres::Error> {
    let kind = e.kind.as_str();
    let link = e.link.map(i32::from);
    let inserted = client
        .execute(
            "INSERT INTO events (id, message_id, recipient_id, kind, link, url, at_ms,
                 classification, counts, machine, first, bot, device_type, client_type,
                 client_name, route)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, false, $11, $12, $13, $14,
                 (SELECT route FROM messages WHERE id = $2))
             ON CONFLICT (id, at_ms) DO NOTHING",
            &[
                &e.id,
                &e.message_id,
                &e.recipient_id,
                &kind,
                &link,
                &e.url,
                &e.at_ms,
                &e.classification.as_str(),
                &e.counts_for_metrics,
                &e.machine,
                &e.bot,
                &e.device_type.map(|d| d.as_str()),
                &e.client_type.map(|c| c.as_str()),
                &e.client_name,
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    let scopes = scopes(e);
    let names: Vec<&str> = scopes.iter().map(|(s, _)| s.as_str()).collect();
    let claimed: Vec<String> = client
        .query(
            "INSERT INTO event_firsts (message_id, recipient, scope, event_id)
             SELECT $1, $2, s, $4 FROM unnest($3::text[]) s
             ON CONFLICT DO NOTHING RETURNING scope",
            &[
                &e.message_id,
                &e.recipient_id.clone().unwrap_or_default(),
                &names,
                &e.id,
            ],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let firsts: i32 = scopes
        .iter()
        .filter(|(s, _)| claimed.contains(s))
        .map(|(_, bit)| bit)
        .sum();
    // first_open / first_click: at most one per copy and recipient.
    let first = e.first && firsts & 1 != 0;
    client
        .execute(
            "UPDATE events SET firsts = $2, first = $3 WHERE id = $1 AND at_ms = $4",
            &[&e.id, &firsts, &first, &e.at_ms],
        )
        .await?;
    Ok(true)
}

/// The unique counts `e` may be the first of, with their `firsts` bit
/// (storage/events.rs: 1 first counting of its kind, 2 first of its
/// kind, 4 and 8 the same for a click's URL).
fn scopes(e: &Event) -> Vec<(String, i32)> {
    let kind = e.kind.as_str();
    let mut out = vec![(kind.to_owned(), 2)];
    if e.counts_for_metrics {
        out.push((format!("{kind}+"), 1));
    }
    if let (Kind::Click, Some(url)) = (e.kind, &e.url) {
        out.push((format!("url:{url}"), 8));
        if e.counts_for_metrics {
            out.push((format!("url+:{url}"), 4));
        }
    }
    out
}

/// Every event of one copy, oldest first.
pub(super) async fn for_message(
    client: &impl GenericClient,
    message_id: Uuid,
) -> Result<Vec<Event>, StorageError> {
    let rows = client
        .query(
            "SELECT * FROM events WHERE message_id = $1 ORDER BY at_ms, id",
            &[&message_id],
        )
        .await?;
    rows.iter().map(from_row).collect()
}

/// Observations of `(from_ms, to_ms]` without an event, oldest first.
pub(super) async fn unclassified(
    client: &impl GenericClient,
    from_ms: i64,
    to_ms: i64,
    limit: u32,
) -> Result<Vec<Observation>, StorageError> {
    let rows = client
        .query(
            "SELECT o.* FROM observations o
             WHERE o.at_ms > $1 AND o.at_ms <= $2
               AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = o.id AND e.at_ms = o.at_ms)
             ORDER BY o.at_ms, o.id LIMIT $3",
            &[&from_ms, &to_ms, &i64::from(limit)],
        )
        .await?;
    rows.iter().map(observations::from_row).collect()
}

/// The context of each `(copy, from_ms, to_ms)`, in order. Every query of
/// every copy is sent at once: tokio-postgres pipelines them on the one
/// connection, so a pass waits for about one round trip, not five per copy.
pub(super) async fn contexts(
    client: &impl GenericClient,
    wanted: &[(Uuid, i64, i64)],
) -> Result<Vec<CopyContext>, StorageError> {
    futures_util::future::try_join_all(
        wanted
            .iter()
            .map(|&(id, from_ms, to_ms)| context(client, id, from_ms, to_ms)),
    )
    .await
}

/// One copy's context: its hits in the range, its first open, the copy, the
/// kinds and recipients already counted, its metadata.
async fn context(
    client: &impl GenericClient,
    id: Uuid,
    from_ms: i64,
    to_ms: i64,
) -> Result<CopyContext, StorageError> {
    let counted = async {
        client
            .query(
                "SELECT DISTINCT kind, recipient_id FROM events WHERE message_id = $1 AND counts",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| Ok((parse(r.try_get("kind")?)?, r.try_get("recipient_id")?)))
            .collect::<Result<_, StorageError>>()
    };
    let first_open_ms = async {
        Ok::<_, StorageError>(
            client
                .query_opt(
                    "SELECT at_ms FROM observations WHERE message_id = $1 AND kind = 'open'
                     ORDER BY id LIMIT 1",
                    &[&id],
                )
                .await?
                .map(|r| r.get(0)),
        )
    };
    let ids = [id];
    let (hits, first_open_ms, relayed, counted, mut metadata) = tokio::try_join!(
        hits_between(client, id, from_ms, to_ms),
        first_open_ms,
        super::messages::get(client, id),
        counted,
        super::sending::metadata(client, &ids),
    )?;
    Ok(CopyContext {
        hits,
        first_open_ms,
        relayed,
        counted,
        metadata: metadata.remove(&id),
    })
}

/// The hits on one copy in `[from_ms, to_ms]`, oldest first; the UUIDv7
/// ids bound the index range as on SQLite.
async fn hits_between(
    client: &impl GenericClient,
    message_id: Uuid,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<HitRow>, StorageError> {
    let (low, high) = (v7_bound(from_ms - 1000, 0x00), v7_bound(to_ms + 1000, 0xff));
    let rows = client
        .query(
            "SELECT id, at_ms, kind, ip, link FROM observations
             WHERE message_id = $1 AND id >= $2 AND id <= $3 AND at_ms >= $4 AND at_ms <= $5
             ORDER BY at_ms, id LIMIT $6",
            &[&message_id, &low, &high, &from_ms, &to_ms, &HITS_MAX],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HitRow {
                id: r.try_get("id")?,
                at_ms: r.try_get("at_ms")?,
                kind: parse(r.try_get("kind")?)?,
                ip: parse_ip(r.try_get("ip")?)?,
                link: observations::link(r)?,
            })
        })
        .collect()
}

/// The smallest (`fill` 0x00) or largest (0xff) UUIDv7 of millisecond `ms`.
fn v7_bound(ms: i64, fill: u8) -> Uuid {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0).min((1 << 48) - 1);
    let mut bytes = [fill; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

pub(super) fn from_row(row: &Row) -> Result<Event, StorageError> {
    let optional = |name: &str| -> Result<Option<String>, StorageError> { Ok(row.try_get(name)?) };
    Ok(Event {
        id: row.try_get("id")?,
        message_id: row.try_get("message_id")?,
        recipient_id: row.try_get("recipient_id")?,
        kind: parse(row.try_get("kind")?)?,
        link: observations::link(row)?,
        url: row.try_get("url")?,
        at_ms: row.try_get("at_ms")?,
        classification: parse(row.try_get("classification")?)?,
        counts_for_metrics: row.try_get("counts")?,
        machine: row.try_get("machine")?,
        first: row.try_get("first")?,
        bot: row.try_get("bot")?,
        device_type: optional("device_type")?.as_deref().map(parse).transpose()?,
        client_type: optional("client_type")?.as_deref().map(parse).transpose()?,
        client_name: row.try_get("client_name")?,
    })
}
