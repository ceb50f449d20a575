//! `GET /v1/webhooks/deliveries?status=&limit=&cursor=` (SPEC §7): the
//! outbox, newest first (ties by id), each delivery with its tries.
//! `status` is `pending`, `delivered` or `failed` (all when absent). Pages
//! by cursor as `GET /v1/messages` does (`next_cursor`, null at the end).

use serde_json::{Value, json};

use super::cursor::{Cursors, Scope};
use super::{ApiError, LIMIT_DEFAULT};
use crate::storage::{Attempt, Delivery, Storage};

const STATUSES: [&str; 3] = ["pending", "delivered", "failed"];

/// One page of the listing.
pub async fn deliveries(
    storage: &Storage,
    cursors: &Cursors,
    query: Option<&str>,
) -> Result<Value, ApiError> {
    let (status, limit, cursor) = filter(query)?;
    let scope = Scope::new("webhooks/deliveries", "status", &[status.as_deref()]);
    let after = match cursor {
        Some(text) => Some(cursors.decode(&scope, &text)?),
        None => None,
    };
    // One more than the page: whether there is a next page at all.
    let mut list = storage.deliveries_after(status, after, limit + 1).await?;
    let next_cursor = if list.len() > limit as usize {
        list.truncate(limit as usize);
        list.last()
            .map(|d| cursors.encode(&scope, d.created_at_ms, d.id))
    } else {
        None
    };
    let mut out = Vec::with_capacity(list.len());
    for d in &list {
        let attempts = storage.delivery_attempts(d.id).await?;
        out.push(delivery(d, &attempts));
    }
    Ok(json!({ "deliveries": out, "next_cursor": next_cursor }))
}

/// `status`, `limit` and `cursor`.
fn filter(query: Option<&str>) -> Result<(Option<String>, u32, Option<String>), ApiError> {
    let (mut status, mut limit, mut cursor) = (None, LIMIT_DEFAULT, None);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "status" if STATUSES.contains(&value.as_ref()) => status = Some(value.into_owned()),
            "status" => {
                return Err(ApiError::BadRequest(format!(
                    "status must be one of {}, not {value:?}",
                    STATUSES.join(", ")
                )));
            }
            "limit" => limit = super::limit(&value)?,
            "cursor" => cursor = Some(value.into_owned()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {other:?} (status, limit, cursor)"
                )));
            }
        }
    }
    Ok((status, limit, cursor))
}

/// One delivery as the API and `trackrelay webhooks list` show it.
pub fn delivery(d: &Delivery, attempts: &[Attempt]) -> Value {
    json!({
        "id": d.id.to_string(),
        "route": d.route,
        "url": d.url,
        "type": d.event_type,
        "event_id": d.event_id.to_string(),
        "status": d.status,
        "created_at": rfc3339(d.created_at_ms),
        "next_attempt_at": d.next_at_ms.map(rfc3339),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "attempts": attempts.iter().map(|a| json!({
            "number": a.number,
            "at": rfc3339(a.at_ms),
            "duration_ms": a.duration_ms,
            "status_code": a.status_code,
            "error": a.error,
        })).collect::<Vec<_>>(),
    })
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}
