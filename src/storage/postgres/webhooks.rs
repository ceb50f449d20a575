//! The webhook outbox on PostgreSQL (what it holds: storage/webhooks.rs).
//! An event's deliveries are written with the event in the writer's
//! transaction; an event judged twice queues nothing again.

use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{Params, all_of, events, messages};
use crate::storage::{
    Attempt, Delivery, DisabledEndpoint, NewDelivery, Next, StorageError, WebhookWrite,
};

/// Writes one outbox record inside the writer's transaction; true when
/// it stored an event or a copy (the rollups count it).
pub(super) async fn write(
    client: &impl GenericClient,
    w: &WebhookWrite,
) -> Result<bool, tokio_postgres::Error> {
    match w {
        WebhookWrite::Event(e, d) => {
            let stored = events::insert(client, e).await?;
            if stored {
                insert_deliveries(client, d).await?;
            }
            Ok(stored)
        }
        WebhookWrite::Relayed(c, d) => {
            messages::insert(client, c).await?;
            insert_deliveries(client, d).await.map(|()| true)
        }
        WebhookWrite::Attempt(a, next) => record_attempt(client, a, *next).await.map(|()| false),
        WebhookWrite::Retry { id, at_ms } => retry(client, *id, *at_ms).await.map(|()| false),
    }
}

async fn insert_deliveries(
    client: &impl GenericClient,
    list: &[NewDelivery],
) -> Result<(), tokio_postgres::Error> {
    for d in list {
        client
            .execute(
                "INSERT INTO webhook_deliveries
                     (id, route, url, event_type, event_id, payload, created_at_ms, status,
                      attempts, failures, schedule_start_ms, next_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, 0, $7, $7, $7)
                 ON CONFLICT DO NOTHING",
                &[
                    &d.id,
                    &d.route,
                    &d.url,
                    &d.event_type,
                    &d.event_id,
                    &d.payload,
                    &d.created_at_ms,
                ],
            )
            .await?;
    }
    Ok(())
}

async fn record_attempt(
    client: &impl GenericClient,
    a: &Attempt,
    next: Next,
) -> Result<(), tokio_postgres::Error> {
    let number = i32::try_from(a.number).unwrap_or(i32::MAX);
    let status_code = a.status_code.map(i32::from);
    client
        .execute(
            "INSERT INTO webhook_attempts (delivery_id, number, at_ms, duration_ms, status_code, error)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (delivery_id, number) DO UPDATE SET at_ms = excluded.at_ms,
                 duration_ms = excluded.duration_ms, status_code = excluded.status_code,
                 error = excluded.error",
            &[&a.delivery_id, &number, &a.at_ms, &a.duration_ms, &status_code, &a.error],
        )
        .await?;
    let (status, next_at, failed) = match next {
        Next::Delivered => ("delivered", None, 0),
        Next::RetryAt(at) => ("pending", Some(at), 1),
        Next::Failed | Next::Disable => ("failed", None, 1),
    };
    let now = a.at_ms + a.duration_ms;
    client
        .execute(
            "UPDATE webhook_deliveries
             SET status = $2, next_at_ms = $3, attempts = greatest(attempts, $4),
                 failures = failures + $5, last_status = $6, last_error = $7, updated_at_ms = $8
             WHERE id = $1",
            &[
                &a.delivery_id,
                &status,
                &next_at,
                &number,
                &failed,
                &status_code,
                &a.error,
                &now,
            ],
        )
        .await?;
    if next == Next::Disable {
        client
            .execute(
                "INSERT INTO webhook_endpoints (route, url, disabled_at_ms, reason)
                 SELECT route, url, $2, $3 FROM webhook_deliveries WHERE id = $1
                 ON CONFLICT (route, url) DO UPDATE
                     SET disabled_at_ms = excluded.disabled_at_ms, reason = excluded.reason",
                &[&a.delivery_id, &now, &a.error],
            )
            .await?;
        client
            .execute(
                "UPDATE webhook_deliveries
                 SET status = 'failed', next_at_ms = NULL, updated_at_ms = $2,
                     last_error = 'endpoint disabled (410 Gone)'
                 WHERE status = 'pending'
                   AND (route, url) IN (SELECT route, url FROM webhook_deliveries WHERE id = $1)",
                &[&a.delivery_id, &now],
            )
            .await?;
    }
    Ok(())
}

async fn retry(
    client: &impl GenericClient,
    id: Uuid,
    at_ms: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM webhook_endpoints
             WHERE (route, url) IN (SELECT route, url FROM webhook_deliveries WHERE id = $1)",
            &[&id],
        )
        .await?;
    client
        .execute(
            "UPDATE webhook_deliveries
             SET status = 'pending', next_at_ms = $2, failures = 0, schedule_start_ms = $2,
                 updated_at_ms = $2
             WHERE id = $1",
            &[&id, &at_ms],
        )
        .await?;
    Ok(())
}

/// Pending deliveries due at `now_ms`, endpoint not disabled, claimed for
/// this node: their next try moves `lease` (`webhooks.claim_lease_seconds`,
/// longer than a try) ahead, so no other node takes them meanwhile (rows
/// another node is claiming are skipped, not waited for). The try's
/// outcome sets the real next time; a node killed mid-try leaves the
/// delivery due again when the lease ends, and another node sends it.
pub(super) async fn due(
    client: &impl GenericClient,
    now_ms: i64,
    limit: u32,
    lease: std::time::Duration,
) -> Result<Vec<Delivery>, StorageError> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "WITH picked AS (
                 SELECT d.id FROM webhook_deliveries d
                 WHERE d.status = 'pending' AND d.next_at_ms <= $1
                   AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                                   WHERE e.route = d.route AND e.url = d.url)
                 ORDER BY d.next_at_ms, d.id LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             UPDATE webhook_deliveries w SET next_at_ms = $1 + $3
             FROM picked WHERE w.id = picked.id
             RETURNING w.*",
            &[&now_ms, &i64::from(limit), &lease_ms],
        )
        .await?;
    let mut out: Vec<Delivery> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    out.sort_by_key(|d| (d.created_at_ms, d.id));
    Ok(out)
}

/// When the next pending delivery is due.
pub(super) async fn next_due(client: &impl GenericClient) -> Result<Option<i64>, StorageError> {
    Ok(client
        .query_one(
            "SELECT min(next_at_ms) FROM webhook_deliveries WHERE status = 'pending'",
            &[],
        )
        .await?
        .try_get(0)?)
}

/// Deliveries of one status or all, newest first, after a position.
pub(super) async fn list(
    client: &impl GenericClient,
    status: Option<&str>,
    after: Option<(i64, Uuid)>,
    limit: u32,
) -> Result<Vec<Delivery>, StorageError> {
    let mut p = Params::default();
    let mut conditions = Vec::new();
    if let Some(status) = status {
        conditions.push(format!("status = {}", p.bind(status.to_owned())));
    }
    if let Some((at_ms, id)) = after {
        let (a, b) = (p.bind(at_ms), p.bind(id));
        conditions.push(format!("(created_at_ms, id) < ({a}, {b})"));
    }
    let sql = format!(
        "SELECT * FROM webhook_deliveries WHERE {}
         ORDER BY created_at_ms DESC, id DESC LIMIT {}",
        all_of(&conditions),
        p.bind(i64::from(limit))
    );
    let rows = client.query(&sql, &p.refs()).await?;
    rows.iter().map(from_row).collect()
}

/// One delivery.
pub(super) async fn get(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Delivery>, StorageError> {
    let row = client
        .query_opt("SELECT * FROM webhook_deliveries WHERE id = $1", &[&id])
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The tries of one delivery, first first.
pub(super) async fn attempts(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Vec<Attempt>, StorageError> {
    let rows = client
        .query(
            "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY number",
            &[&id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Attempt {
                delivery_id: r.try_get("delivery_id")?,
                number: unsigned(r.try_get("number")?),
                at_ms: r.try_get("at_ms")?,
                duration_ms: r.try_get("duration_ms")?,
                status_code: status_code(r.try_get("status_code")?),
                error: r.try_get("error")?,
            })
        })
        .collect()
}

/// Endpoints disabled by a 410.
pub(super) async fn disabled(
    client: &impl GenericClient,
) -> Result<Vec<DisabledEndpoint>, StorageError> {
    let rows = client
        .query(
            "SELECT route, url, disabled_at_ms, reason FROM webhook_endpoints",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(DisabledEndpoint {
                route: r.try_get(0)?,
                url: r.try_get(1)?,
                disabled_at_ms: r.try_get(2)?,
                reason: r.try_get(3)?,
            })
        })
        .collect()
}

fn unsigned(n: i32) -> u32 {
    n.unsigned_abs()
}

fn status_code(n: Option<i32>) -> Option<u16> {
    n.and_then(|n| u16::try_from(n).ok())
}

fn from_row(row: &Row) -> Result<Delivery, StorageError> {
    Ok(Delivery {
        id: row.try_get("id")?,
        route: row.try_get("route")?,
        url: row.try_get("url")?,
        event_type: row.try_get("event_type")?,
        event_id: row.try_get("event_id")?,
        payload: row.try_get("payload")?,
        created_at_ms: row.try_get("created_at_ms")?,
        status: row.try_get("status")?,
        attempts: unsigned(row.try_get("attempts")?),
        failures: unsigned(row.try_get("failures")?),
        schedule_start_ms: row.try_get("schedule_start_ms")?,
        next_at_ms: row.try_get("next_at_ms")?,
        last_status: status_code(row.try_get("last_status")?),
        last_error: row.try_get("last_error")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}
