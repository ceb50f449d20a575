//! `GET /v1/messages`, `GET /v1/messages/{id}` and
//! `GET /v1/messages/{id}/observations` (SPEC §8): relayed copies and the
//! raw hits on their tracking URLs.
//!
//! A message's `events` are its classified observations (SPEC §6): the
//! bot object, `first_open`/`first_click`, device and client, and the raw
//! IP and user agent while the observation still has them. Observations
//! still waiting for their verdict are counted in `unclassified`.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiError, LIMIT_DEFAULT};
use crate::storage::{Event, MessageFilter, Observation, RelayedCopy, Storage};
use crate::time::rfc3339;
use crate::token::Kind;

/// `GET /v1/messages?route=&recipient=&limit=`: newest first.
pub async fn list(storage: &Storage, query: Option<&str>) -> Result<Value, ApiError> {
    let filter = filter(query)?;
    let copies = storage.messages(filter).await?;
    Ok(json!({ "messages": copies.iter().map(summary).collect::<Vec<_>>() }))
}

/// `GET /v1/messages/{id}`: the copy with its links and events.
pub async fn one(storage: &Storage, id: &str) -> Result<Value, ApiError> {
    let id = parse_id(id)?;
    let copy = storage
        .message(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no message {id}")))?;
    let observations = storage.observations(id).await?;
    let mut value = summary(&copy);
    value["sender"] = json!(copy.sender);
    value["recipient_id"] = json!(copy.recipient_id);
    value["tags"] = json!(copy.tags);
    value["upstream_reply"] = json!(copy.upstream_reply);
    value["links"] = copy
        .links
        .iter()
        .enumerate()
        .map(|(index, url)| json!({ "index": index, "url": url }))
        .collect();
    let events = storage.events(id).await?;
    value["unclassified"] = json!(observations.len().saturating_sub(events.len()));
    value["events"] = events
        .iter()
        .map(|e| event(e, observations.iter().find(|o| o.id == e.id)))
        .collect();
    Ok(value)
}

/// `GET /v1/messages/{id}/observations`: every raw hit, oldest first.
/// 404 only when neither the copy nor any hit on it is known (hits may
/// name copies relayed by another node sharing the tracking keys).
pub async fn observations(storage: &Storage, id: &str) -> Result<Value, ApiError> {
    let id = parse_id(id)?;
    let observations = storage.observations(id).await?;
    if observations.is_empty() && storage.message(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no message {id}")));
    }
    let list: Vec<Value> = observations
        .iter()
        .map(|o| {
            let mut v = observation(o);
            v["host"] = json!(o.host);
            v["key_id"] = json!(o.key_id);
            v["recipient_id"] = json!(o.recipient_id);
            v["headers"] = json!(o.headers);
            v
        })
        .collect();
    Ok(json!({ "message_id": id.to_string(), "observations": list }))
}

fn filter(query: Option<&str>) -> Result<MessageFilter, ApiError> {
    let mut filter = MessageFilter {
        limit: LIMIT_DEFAULT,
        ..MessageFilter::default()
    };
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "route" => filter.route = Some(value.into_owned()),
            "recipient" => filter.recipient = Some(value.into_owned()),
            "limit" => filter.limit = super::limit(&value)?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {other:?} (route, recipient, limit)"
                )));
            }
        }
    }
    Ok(filter)
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a message id (UUID)")))
}

/// The listing fields; `recipient` is the copy's first (for per-recipient
/// copies, only) recipient, `recipients` all of them.
fn summary(copy: &RelayedCopy) -> Value {
    json!({
        "id": copy.id.to_string(),
        "route": copy.route,
        "recipient": copy.recipients.first(),
        "recipients": copy.recipients,
        "message_id_header": copy.message_id_header,
        "relayed_at": rfc3339(copy.relayed_at_ms),
        "status": copy.status,
    })
}

/// An event as SPEC §6 lists its fields; `ip`, `user_agent` and `method`
/// come from its observation.
fn event(e: &Event, o: Option<&Observation>) -> Value {
    let first = if e.kind == Kind::Click {
        "first_click"
    } else {
        "first_open"
    };
    json!({
        "id": e.id.to_string(),
        "kind": e.kind,
        "at": rfc3339(e.at_ms),
        "link": e.link,
        "url": e.url,
        "bot": e.bot,
        first: e.first,
        "device_type": e.device_type,
        "client_type": e.client_type,
        "client_name": e.client_name,
        "method": o.map(|o| o.method.as_str()),
        "ip": o.map(|o| o.ip.as_str()),
        "user_agent": o.and_then(|o| o.user_agent.as_deref()),
    })
}

fn observation(o: &Observation) -> Value {
    json!({
        "id": o.id.to_string(),
        "kind": o.kind,
        "at": rfc3339(o.at_ms),
        "method": o.method,
        "ip": o.ip,
        "user_agent": o.user_agent,
        "link": o.link,
        "url": o.url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_parameters() {
        let f = filter(Some("route=news&recipient=Bob%40example.com&limit=5")).unwrap();
        assert_eq!(f.route.as_deref(), Some("news"));
        assert_eq!(f.recipient.as_deref(), Some("Bob@example.com"));
        assert_eq!(f.limit, 5);
        assert_eq!(filter(None).unwrap().limit, LIMIT_DEFAULT);
        for bad in ["limit=0", "limit=1001", "limit=x", "colour=red"] {
            assert!(
                matches!(filter(Some(bad)), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
