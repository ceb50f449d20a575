//! `observations` on PostgreSQL: a batch of hits is one multi-row insert
//! (`unnest` of one array per column), so the writer's group commit costs
//! one statement however many hits it carries.

use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{parse, parse_ip};
use crate::storage::{Observation, StorageError};

/// Inserts every observation of `list` in one statement.
pub(super) async fn insert_all(
    client: &impl GenericClient,
    list: &[&Observation],
) -> Result<(), tokio_postgres::Error> {
    if list.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Observation) -> String| list.iter().map(|o| f(o)).collect::<Vec<_>>();
    let opt = |f: fn(&Observation) -> Option<String>| list.iter().map(|o| f(o)).collect::<Vec<_>>();
    let ids: Vec<Uuid> = list.iter().map(|o| o.id).collect();
    let messages: Vec<Uuid> = list.iter().map(|o| o.message_id).collect();
    let links: Vec<Option<i32>> = list.iter().map(|o| o.link.map(i32::from)).collect();
    let at: Vec<i64> = list.iter().map(|o| o.at_ms).collect();
    let headers: Vec<serde_json::Value> = list
        .iter()
        // Serialising strings cannot fail.
        .map(|o| serde_json::to_value(&o.headers).expect("header pairs serialise"))
        .collect();
    client
        .execute(
            "INSERT INTO observations (id, message_id, kind, recipient_id, link, url, at_ms,
                                       method, host, ip, user_agent, headers, key_id)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[],
                                  $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[],
                                  $11::text[], $12::jsonb[], $13::text[])",
            &[
                &ids,
                &messages,
                &col(|o| o.kind.as_str().to_owned()),
                &opt(|o| o.recipient_id.clone()),
                &links,
                &opt(|o| o.url.clone()),
                &at,
                &col(|o| o.method.clone()),
                &col(|o| o.host.clone()),
                &col(|o| o.ip.map(|ip| ip.to_string()).unwrap_or_default()),
                &opt(|o| o.user_agent.clone()),
                &headers,
                &col(|o| o.key_id.clone()),
            ],
        )
        .await?;
    Ok(())
}

/// Every observation of one copy, oldest first.
pub(super) async fn for_message(
    client: &impl GenericClient,
    message_id: Uuid,
) -> Result<Vec<Observation>, StorageError> {
    let rows = client
        .query(
            "SELECT * FROM observations WHERE message_id = $1 ORDER BY id",
            &[&message_id],
        )
        .await?;
    rows.iter().map(from_row).collect()
}

/// How many observations are stored.
pub(super) async fn count(client: &impl GenericClient) -> Result<u64, StorageError> {
    let n: i64 = client
        .query_one("SELECT count(*) FROM observations", &[])
        .await?
        .get(0);
    Ok(n.unsigned_abs())
}

pub(super) fn from_row(row: &Row) -> Result<Observation, StorageError> {
    let headers: serde_json::Value = row.try_get("headers")?;
    Ok(Observation {
        id: row.try_get("id")?,
        message_id: row.try_get("message_id")?,
        kind: parse(row.try_get("kind")?)?,
        recipient_id: row.try_get("recipient_id")?,
        link: link(row)?,
        url: row.try_get("url")?,
        at_ms: row.try_get("at_ms")?,
        method: row.try_get("method")?,
        host: row.try_get("host")?,
        ip: parse_ip(row.try_get("ip")?)?,
        user_agent: row.try_get("user_agent")?,
        headers: serde_json::from_value(headers)
            .map_err(|e| StorageError::Corrupt(format!("observation headers: {e}")))?,
        key_id: row.try_get("key_id")?,
    })
}

/// The `link` column (an `integer`) as the link index it holds.
pub(super) fn link(row: &Row) -> Result<Option<u16>, StorageError> {
    let link: Option<i32> = row.try_get("link")?;
    link.map(|l| u16::try_from(l).map_err(|e| StorageError::Corrupt(format!("link {l}: {e}"))))
        .transpose()
}
