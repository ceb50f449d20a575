//! `messages` on PostgreSQL, with its listing indexes
//! (`message_recipients`, `message_tags`; deleted with their copy by
//! `ON DELETE CASCADE`). The listing's order and cursor are SQLite's
//! (storage/messages.rs): newest `relayed_at_ms` first, ties by id.

use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{Params, all_of, parse};
use crate::storage::{CopyStatus, MessageFilter, RelayedCopy, StorageError};

/// A copy's engagement from its counting events: 2 clicked, 1 opened.
const ENGAGEMENT: &str = "SELECT max(CASE e.kind WHEN 'click' THEN 2 ELSE 1 END) FROM events e
     WHERE e.message_id = m.id AND e.counts";

/// Inserts one copy and its index rows (inside the writer's transaction).
pub(super) async fn insert(
    client: &impl GenericClient,
    copy: &RelayedCopy,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO messages (id, route, sender, recipients, recipient_id, message_id_header,
                                   tags, links, relayed_at_ms, upstream_reply, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &copy.id,
                &copy.route,
                &copy.sender,
                &copy.recipients,
                &copy.recipient_id,
                &copy.message_id_header,
                &copy.tags,
                &copy.links,
                &copy.relayed_at_ms,
                &copy.upstream_reply,
                &copy.status.as_str(),
            ],
        )
        .await?;
    let addresses: Vec<String> = copy
        .recipients
        .iter()
        .map(|a| a.trim().to_lowercase())
        .collect();
    client
        .execute(
            "INSERT INTO message_recipients (address, message_id, relayed_at_ms)
             SELECT a, $2, $3 FROM unnest($1::text[]) a ON CONFLICT DO NOTHING",
            &[&addresses, &copy.id, &copy.relayed_at_ms],
        )
        .await?;
    client
        .execute(
            "INSERT INTO message_tags (tag, relayed_at_ms, message_id, route)
             SELECT t, $2, $3, $4 FROM unnest($1::text[]) t ON CONFLICT DO NOTHING",
            &[&copy.tags, &copy.relayed_at_ms, &copy.id, &copy.route],
        )
        .await?;
    // An event stored before its copy (another node relayed it) gets the
    // route now.
    client
        .execute(
            "UPDATE events SET route = $2 WHERE message_id = $1 AND route IS NULL",
            &[&copy.id, &copy.route],
        )
        .await?;
    Ok(())
}

/// Copies matching `filter`, newest first.
pub(super) async fn list(
    client: &impl GenericClient,
    filter: &MessageFilter,
) -> Result<Vec<RelayedCopy>, StorageError> {
    let mut p = Params::default();
    let mut conditions = Vec::new();
    let (source, at, id) = if let Some(address) = &filter.recipient {
        conditions.push(format!(
            "r.address = {}",
            p.bind(address.trim().to_lowercase())
        ));
        (
            "message_recipients r JOIN messages m ON m.id = r.message_id",
            "r.relayed_at_ms",
            "r.message_id",
        )
    } else if let Some(tag) = &filter.tag {
        conditions.push(format!("t.tag = {}", p.bind(tag.clone())));
        (
            "message_tags t JOIN messages m ON m.id = t.message_id",
            "t.relayed_at_ms",
            "t.message_id",
        )
    } else {
        ("messages m", "m.relayed_at_ms", "m.id")
    };
    if let (Some(tag), Some(_)) = (&filter.tag, &filter.recipient) {
        conditions.push(format!("{} = ANY (m.tags)", p.bind(tag.clone())));
    }
    if let Some(route) = &filter.route {
        conditions.push(format!("m.route = {}", p.bind(route.clone())));
    }
    if let Some(from) = filter.from_ms {
        conditions.push(format!("{at} >= {}", p.bind(from)));
    }
    if let Some(to) = filter.to_ms {
        conditions.push(format!("{at} < {}", p.bind(to)));
    }
    if let Some((after_at, after_id)) = filter.after {
        let (a, b) = (p.bind(after_at), p.bind(after_id));
        conditions.push(format!("({at}, {id}) < ({a}, {b})"));
    }
    let limit = p.bind(i64::from(filter.limit));
    let sql = format!(
        "SELECT m.*, ({ENGAGEMENT}) AS engagement FROM {source}
         WHERE {} ORDER BY {at} DESC, {id} DESC LIMIT {limit}",
        all_of(&conditions)
    );
    let rows = client.query(&sql, &p.refs()).await?;
    rows.iter().map(from_row).collect()
}

/// One copy by id.
pub(super) async fn get(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<RelayedCopy>, StorageError> {
    let sql = format!("SELECT m.*, ({ENGAGEMENT}) AS engagement FROM messages m WHERE m.id = $1");
    let row = client.query_opt(&sql, &[&id]).await?;
    row.as_ref().map(from_row).transpose()
}

fn from_row(row: &Row) -> Result<RelayedCopy, StorageError> {
    let engagement: Option<i32> = row.try_get("engagement")?;
    Ok(RelayedCopy {
        id: row.try_get("id")?,
        route: row.try_get("route")?,
        sender: row.try_get("sender")?,
        recipients: row.try_get("recipients")?,
        recipient_id: row.try_get("recipient_id")?,
        message_id_header: row.try_get("message_id_header")?,
        tags: row.try_get("tags")?,
        links: row.try_get("links")?,
        relayed_at_ms: row.try_get("relayed_at_ms")?,
        upstream_reply: row.try_get("upstream_reply")?,
        status: match engagement {
            Some(2) => CopyStatus::Clicked,
            Some(1) => CopyStatus::Opened,
            _ => parse(row.try_get("status")?)?,
        },
    })
}
