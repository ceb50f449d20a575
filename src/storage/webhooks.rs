//! The webhook outbox (SPEC §7): `webhook_deliveries` (one row per event
//! and endpoint, with the exact body to send), `webhook_attempts` (one row
//! per try) and `webhook_endpoints` (endpoints disabled by a 410).
//!
//! An event's deliveries reach the writer in the same [`Record`] as the
//! event (or relayed copy) itself, and are written under one savepoint
//! with it: both are committed or neither is. The `webhooks` module
//! decides what to send and when; this file only stores it.

use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::writer::Record;
use super::{Backend, Event, RelayedCopy, Storage, StorageError, events, messages, read};

/// A delivery to queue with its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The delivery's id; the `webhook-id` header (the same on every try).
    pub id: Uuid,
    pub route: String,
    pub url: String,
    /// `message.opened`, …
    pub event_type: String,
    /// The event's id (an observation's, or a relayed copy's).
    pub event_id: Uuid,
    /// The JSON body, sent as is on every try.
    pub payload: String,
    pub created_at_ms: i64,
}

/// A queued delivery and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: Uuid,
    pub route: String,
    pub url: String,
    pub event_type: String,
    pub event_id: Uuid,
    pub payload: String,
    pub created_at_ms: i64,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Tries so far.
    pub attempts: u32,
    /// Failed tries since the schedule (re)started: the next delay's step.
    pub failures: u32,
    /// When the retry schedule started (queued, or retried by hand).
    pub schedule_start_ms: i64,
    /// When the next try is due (pending only).
    pub next_at_ms: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub updated_at_ms: i64,
}

/// One try of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivery_id: Uuid,
    /// 1 for the first try.
    pub number: u32,
    pub at_ms: i64,
    pub duration_ms: i64,
    /// The HTTP status, when an answer came.
    pub status_code: Option<u16>,
    /// Why it failed (connection, timeout, refused address, status).
    pub error: Option<String>,
}

/// What a try leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// 2xx.
    Delivered,
    /// Try again at this time (ms since the epoch).
    RetryAt(i64),
    /// Out of time: failed for good.
    Failed,
    /// 410 Gone: the delivery fails and its endpoint is disabled.
    Disable,
}

/// A write of the outbox, handed to the writer thread as one record.
#[derive(Debug)]
pub enum WebhookWrite {
    /// A classified observation and its deliveries.
    Event(Box<Event>, Vec<NewDelivery>),
    /// A relayed (or failed) copy and its deliveries.
    Relayed(Box<RelayedCopy>, Vec<NewDelivery>),
    /// A finished try and what follows it.
    Attempt(Attempt, Next),
    /// Back to pending now, the schedule started over, its endpoint
    /// enabled again (`trackrelay webhooks retry`).
    Retry { id: Uuid, at_ms: i64 },
}

/// Writes one outbox record inside the writer's transaction.
pub(super) fn write(conn: &Connection, w: &WebhookWrite) -> rusqlite::Result<()> {
    match w {
        WebhookWrite::Event(e, d) => with_savepoint(conn, || {
            // An event stored before (judged twice) queues nothing again.
            events::insert(conn, e)?;
            if conn.changes() == 0 {
                return Ok(());
            }
            insert_deliveries(conn, d)
        }),
        WebhookWrite::Relayed(c, d) => with_savepoint(conn, || {
            messages::insert(conn, c)?;
            insert_deliveries(conn, d)
        }),
        WebhookWrite::Attempt(a, next) => record_attempt(conn, a, *next),
        WebhookWrite::Retry { id, at_ms } => retry(conn, *id, *at_ms),
    }
}

/// Runs `f` under a savepoint: all of it is kept or none.
fn with_savepoint(
    conn: &Connection,
    f: impl FnOnce() -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    conn.execute_batch("SAVEPOINT outbox")?;
    match f() {
        Ok(()) => conn.execute_batch("RELEASE outbox"),
        Err(e) => {
            conn.execute_batch("ROLLBACK TO outbox; RELEASE outbox")?;
            Err(e)
        }
    }
}

fn insert_deliveries(conn: &Connection, list: &[NewDelivery]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO webhook_deliveries
             (id, route, url, event_type, event_id, payload, created_at_ms, status,
              attempts, failures, schedule_start_ms, next_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, 0, ?7, ?7, ?7)",
    )?;
    for d in list {
        stmt.execute(params![
            d.id.to_string(),
            d.route,
            d.url,
            d.event_type,
            d.event_id.to_string(),
            d.payload,
            d.created_at_ms,
        ])?;
    }
    Ok(())
}

fn record_attempt(conn: &Connection, a: &Attempt, next: Next) -> rusqlite::Result<()> {
    let id = a.delivery_id.to_string();
    conn.prepare_cached(
        "INSERT OR REPLACE INTO webhook_attempts
             (delivery_id, number, at_ms, duration_ms, status_code, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id,
        a.number,
        a.at_ms,
        a.duration_ms,
        a.status_code,
        a.error
    ])?;
    let (status, next_at, failed) = match next {
        Next::Delivered => ("delivered", None, false),
        Next::RetryAt(at) => ("pending", Some(at), true),
        Next::Failed | Next::Disable => ("failed", None, true),
    };
    let now = a.at_ms + a.duration_ms;
    conn.prepare_cached(
        "UPDATE webhook_deliveries
         SET status = ?2, next_at_ms = ?3, attempts = max(attempts, ?4),
             failures = failures + ?5, last_status = ?6, last_error = ?7, updated_at_ms = ?8
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        status,
        next_at,
        a.number,
        i64::from(failed),
        a.status_code,
        a.error,
        now
    ])?;
    if next == Next::Disable {
        conn.prepare_cached(
            "INSERT INTO webhook_endpoints (route, url, disabled_at_ms, reason)
             SELECT route, url, ?2, ?3 FROM webhook_deliveries WHERE id = ?1
             ON CONFLICT (route, url) DO UPDATE
                 SET disabled_at_ms = excluded.disabled_at_ms, reason = excluded.reason",
        )?
        .execute(params![id, now, a.error])?;
        // The endpoint's other pending deliveries fail with it.
        conn.prepare_cached(
            "UPDATE webhook_deliveries
             SET status = 'failed', next_at_ms = NULL, updated_at_ms = ?2,
                 last_error = 'endpoint disabled (410 Gone)'
             WHERE status = 'pending'
               AND (route, url) IN (SELECT route, url FROM webhook_deliveries WHERE id = ?1)",
        )?
        .execute(params![id, now])?;
    }
    Ok(())
}

fn retry(conn: &Connection, id: Uuid, at_ms: i64) -> rusqlite::Result<()> {
    let id = id.to_string();
    conn.prepare_cached(
        "DELETE FROM webhook_endpoints
         WHERE (route, url) IN (SELECT route, url FROM webhook_deliveries WHERE id = ?1)",
    )?
    .execute([&id])?;
    conn.prepare_cached(
        "UPDATE webhook_deliveries
         SET status = 'pending', next_at_ms = ?2, failures = 0, schedule_start_ms = ?2,
             updated_at_ms = ?2
         WHERE id = ?1",
    )?
    .execute(params![id, at_ms])?;
    Ok(())
}

/// Pending deliveries due at `now_ms` whose endpoint is not disabled,
/// soonest first.
pub(super) fn due(
    conn: &Connection,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<Delivery>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM webhook_deliveries d
         WHERE d.status = 'pending' AND d.next_at_ms <= ?1
           AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                           WHERE e.route = d.route AND e.url = d.url)
         ORDER BY d.next_at_ms, d.id
         LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now_ms, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next pending delivery is due, if any is.
pub(super) fn next_due(conn: &Connection) -> Result<Option<i64>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT min(next_at_ms) FROM webhook_deliveries WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

/// Deliveries of one status or all, newest first (ties by id, so the
/// order is total), after position `(created_at_ms, id)` when given.
pub(super) fn list(
    conn: &Connection,
    status: Option<&str>,
    after: Option<(i64, Uuid)>,
    limit: u32,
) -> Result<Vec<Delivery>, StorageError> {
    let (sql, values) = list_query(status, after, limit);
    let params: Vec<&dyn ToSql> = values.iter().map(|v| v.as_ref()).collect();
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params.as_slice(), from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The listing's SQL and its values, in order. One statement per shape
/// (`?1 IS NULL OR …` would keep the planner from reading the status
/// index, `webhook_deliveries_status`, from the cursor on).
fn list_query(
    status: Option<&str>,
    after: Option<(i64, Uuid)>,
    limit: u32,
) -> (String, Vec<Box<dyn ToSql>>) {
    let mut conditions = Vec::new();
    let mut values: Vec<Box<dyn ToSql>> = Vec::new();
    if let Some(status) = status {
        conditions.push("status = ?");
        values.push(Box::new(status.to_owned()));
    }
    if let Some((at_ms, id)) = after {
        conditions.push("(created_at_ms, id) < (?, ?)");
        values.push(Box::new(at_ms));
        values.push(Box::new(id.to_string()));
    }
    values.push(Box::new(limit));
    let condition = if conditions.is_empty() {
        "1".to_owned()
    } else {
        conditions.join(" AND ")
    };
    let sql = format!(
        "SELECT * FROM webhook_deliveries WHERE {condition}
         ORDER BY created_at_ms DESC, id DESC LIMIT ?"
    );
    (sql, values)
}

/// One delivery.
pub(super) fn get(conn: &Connection, id: Uuid) -> Result<Option<Delivery>, StorageError> {
    let mut stmt = conn.prepare_cached("SELECT * FROM webhook_deliveries WHERE id = ?1")?;
    Ok(stmt.query_row([id.to_string()], from_row).optional()?)
}

/// The tries of one delivery, first first.
pub(super) fn attempts(conn: &Connection, id: Uuid) -> Result<Vec<Attempt>, StorageError> {
    let mut stmt = conn
        .prepare_cached("SELECT * FROM webhook_attempts WHERE delivery_id = ?1 ORDER BY number")?;
    let rows = stmt.query_map([id.to_string()], |row| {
        Ok(Attempt {
            delivery_id: super::uuid_column(row, "delivery_id")?,
            number: row.get("number")?,
            at_ms: row.get("at_ms")?,
            duration_ms: row.get("duration_ms")?,
            status_code: row.get("status_code")?,
            error: row.get("error")?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An endpoint disabled by a 410.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledEndpoint {
    pub route: String,
    pub url: String,
    pub disabled_at_ms: i64,
    /// The try's error (`HTTP 410`).
    pub reason: Option<String>,
}

/// Endpoints disabled by a 410.
pub(super) fn disabled(conn: &Connection) -> Result<Vec<DisabledEndpoint>, StorageError> {
    let mut stmt =
        conn.prepare_cached("SELECT route, url, disabled_at_ms, reason FROM webhook_endpoints")?;
    let rows = stmt.query_map([], |r| {
        Ok(DisabledEndpoint {
            route: r.get(0)?,
            url: r.get(1)?,
            disabled_at_ms: r.get(2)?,
            reason: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: super::uuid_column(row, "id")?,
        route: row.get("route")?,
        url: row.get("url")?,
        event_type: row.get("event_type")?,
        event_id: super::uuid_column(row, "event_id")?,
        payload: row.get("payload")?,
        created_at_ms: row.get("created_at_ms")?,
        status: row.get("status")?,
        attempts: row.get("attempts")?,
        failures: row.get("failures")?,
        schedule_start_ms: row.get("schedule_start_ms")?,
        next_at_ms: row.get("next_at_ms")?,
        last_status: row.get("last_status")?,
        last_error: row.get("last_error")?,
        updated_at_ms: row.get("updated_at_ms")?,
    })
}

impl Storage {
    /// Stores classified observations, each with its webhook deliveries in
    /// the same transaction; resolves once all are committed.
    pub async fn record_events_with_webhooks(
        &self,
        events: Vec<(Event, Vec<NewDelivery>)>,
    ) -> Result<(), StorageError> {
        let mut waiting = Vec::with_capacity(events.len());
        for (event, deliveries) in events {
            let record = if deliveries.is_empty() {
                Record::Event(Box::new(event))
            } else {
                Record::Webhook(Box::new(WebhookWrite::Event(Box::new(event), deliveries)))
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.send(record, Some(tx))?;
            waiting.push(rx);
        }
        for rx in waiting {
            rx.await.map_err(|_| StorageError::Closed)??;
        }
        Ok(())
    }

    /// Records a relayed copy with its deliveries; resolves once committed.
    pub async fn record_relayed_with_webhooks(
        &self,
        copy: RelayedCopy,
        deliveries: Vec<NewDelivery>,
    ) -> Result<(), StorageError> {
        if deliveries.is_empty() {
            return self.record_relayed(copy).await;
        }
        self.write_webhook(WebhookWrite::Relayed(Box::new(copy), deliveries))
            .await
    }

    /// Writes one outbox record; resolves once committed.
    pub async fn write_webhook(&self, write: WebhookWrite) -> Result<(), StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Record::Webhook(Box::new(write)), Some(tx))?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// Pending deliveries due now, soonest first, at most `limit`. On
    /// PostgreSQL they are claimed for this node for `lease` (nodes share
    /// the outbox); SQLite has one node, nothing to claim.
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<Delivery>, StorageError> {
        read!(self, |c| due(c, now_ms, limit), |pg| pg
            .due_deliveries(now_ms, limit, lease))
    }

    /// When the next pending delivery is due.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>, StorageError> {
        read!(self, |c| next_due(c), |pg| pg.next_delivery_at())
    }

    /// Deliveries newest first, of `status` (or all), at most `limit`.
    pub async fn deliveries(
        &self,
        status: Option<String>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.deliveries_after(status, None, limit).await
    }

    /// [`Storage::deliveries`] after position `(created_at_ms, id)` of
    /// the order (a page's last delivery), if given.
    pub async fn deliveries_after(
        &self,
        status: Option<String>,
        after: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StorageError> {
        read!(self, |c| list(c, status.as_deref(), after, limit), |pg| pg
            .deliveries_after(status.as_deref(), after, limit))
    }

    /// One delivery.
    pub async fn delivery(&self, id: Uuid) -> Result<Option<Delivery>, StorageError> {
        read!(self, |c| get(c, id), |pg| pg.delivery(id))
    }

    /// The tries of one delivery.
    pub async fn delivery_attempts(&self, id: Uuid) -> Result<Vec<Attempt>, StorageError> {
        read!(self, |c| attempts(c, id), |pg| pg.delivery_attempts(id))
    }

    /// Endpoints disabled by a 410.
    pub async fn disabled_endpoints(&self) -> Result<Vec<DisabledEndpoint>, StorageError> {
        read!(self, |c| disabled(c), |pg| pg.disabled_endpoints())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listing reads an index in its order from the cursor on, with or
    /// without a status: a page costs about `limit` rows.
    #[test]
    fn the_listing_walks_an_index_without_sorting() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let after = Some((5, Uuid::now_v7()));
        for (status, after, index) in [
            (None, None, "webhook_deliveries_created"),
            (None, after, "webhook_deliveries_created"),
            (Some("failed"), None, "webhook_deliveries_status"),
            (Some("failed"), after, "webhook_deliveries_status"),
        ] {
            let (sql, values) = list_query(status, after, 10);
            let params: Vec<&dyn ToSql> = values.iter().map(|v| v.as_ref()).collect();
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params.as_slice(), |r| r.get::<_, String>("detail"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let plan = plan.join("\n");
            assert!(plan.contains(index), "{status:?} {after:?}: {plan}");
            assert!(
                !plan.contains("TEMP B-TREE"),
                "{status:?} {after:?}: {plan}"
            );
        }
    }
}
