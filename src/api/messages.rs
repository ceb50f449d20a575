//! `GET /v1/messages`, `GET /v1/messages/{id}` and
//! `GET /v1/messages/{id}/observations` (SPEC §8): relayed copies and the
//! raw hits on their tracking URLs.
//!
//! A message's `events` are its classified observations (SPEC §6): the
//! bot object, `first_open`/`first_click`, device and client, and the raw
//! IP and user agent while the observation still has them (null once
//! minimised, SPEC §9). Only counting events unless `include_machine=true`;
//! `machine_events_hidden` says how many were left out. Observations
//! still waiting for their verdict are counted in `unclassified`.
//!
//! The listing pages by cursor: newest first, ties by id, each page ends
//! with `next_cursor` (the position of its last copy; null on the last
//! page). Copies relayed after the first page do not shift later pages:
//! a cursor names a position, not an offset.

use serde_json::{Value, json};
use uuid::Uuid;

use super::cursor::{Cursors, Scope};
use super::{ApiError, LIMIT_DEFAULT};
use crate::storage::{Event, MessageFilter, Observation, RelayedCopy, Storage};
use crate::time::rfc3339;
use crate::token::Kind;

const PARAMETERS: &str = "route, recipient, tag, from, to, limit, cursor";

/// `GET /v1/messages?route=&recipient=&tag=&from=&to=&limit=&cursor=`:
/// one page, newest first.
pub async fn list(
    storage: &Storage,
    cursors: &Cursors,
    query: Option<&str>,
) -> Result<Value, ApiError> {
    let (mut filter, scope) = filter(cursors, query)?;
    let limit = filter.limit as usize;
    // One more than the page: whether there is a next page at all.
    filter.limit += 1;
    let mut copies = storage.messages(filter).await?;
    let next_cursor = if copies.len() > limit {
        copies.truncate(limit);
        copies
            .last()
            .map(|c| cursors.encode(&scope, c.relayed_at_ms, c.id))
    } else {
        None
    };
    let ids: Vec<_> = copies.iter().map(|c| c.id).collect();
    let counts = storage.copy_counts(ids.clone(), false).await?;
    // The sending API's metadata (null for SMTP mail), from its own table.
    let metadata = storage.metadata(ids).await?;
    let messages: Vec<Value> = copies
        .iter()
        .zip(&counts)
        .map(|(c, n)| {
            let mut v = super::stats::with_counts(summary(c), n);
            v["metadata"] = json!(metadata.get(&c.id));
            v
        })
        .collect();
    Ok(json!({
        "messages": messages,
        "next_cursor": next_cursor,
    }))
}

/// `GET /v1/messages/{id}?include_machine=`: the copy with its links and
/// events.
pub async fn one(storage: &Storage, id: &str, query: Option<&str>) -> Result<Value, ApiError> {
    let include_machine = super::params::include_machine_only(query)?;
    let id = parse_id(id)?;
    let copy = storage
        .message(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no message {id}")))?;
    let observations = storage.observations(id).await?;
    let counts = storage.copy_counts(vec![id], false).await?;
    let counts = counts.first().copied().unwrap_or_default();
    let mut value = super::stats::with_counts(summary(&copy), &counts);
    value["sender"] = json!(copy.sender);
    value["recipient_id"] = json!(copy.recipient_id);
    value["tags"] = json!(copy.tags);
    value["metadata"] = json!(storage.metadata(vec![id]).await?.remove(&id));
    value["upstream_reply"] = json!(copy.upstream_reply);
    value["links"] = copy
        .links
        .iter()
        .enumerate()
        .map(|(index, url)| json!({ "index": index, "url": url }))
        .collect();
    let events = storage.events(id).await?;
    value["unclassified"] = json!(observations.len().saturating_sub(events.len()));
    let (shown, hidden) = super::params::split_machine(&events, include_machine);
    value["machine_events_hidden"] = json!(hidden);
    value["events"] = shown
        .into_iter()
        .map(|e| event(e, observations.iter().find(|o| o.id == e.id)))
        .collect();
    Ok(value)
}

/// `GET /v1/messages/{id}/observations`: every raw hit, oldest first.
/// 404 only when neither the copy nor any hit on it is known (hits may
/// name copies relayed by another node sharing the tracking keys).
pub async fn observations(
    storage: &Storage,
    id: &str,
    query: Option<&str>,
) -> Result<Value, ApiError> {
    super::params::none(query)?;
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
            // Minimisation empties the headers with the IP (SPEC §9).
            v["headers"] = if o.ip.is_some() {
                json!(o.headers)
            } else {
                Value::Null
            };
            v
        })
        .collect();
    Ok(json!({ "message_id": id.to_string(), "observations": list }))
}

/// The listing's filter, and the scope its cursors are bound to (every
/// filter but `limit`, which may change from page to page).
fn filter(cursors: &Cursors, query: Option<&str>) -> Result<(MessageFilter, Scope), ApiError> {
    let mut filter = MessageFilter {
        limit: LIMIT_DEFAULT,
        ..MessageFilter::default()
    };
    let mut cursor = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "route" => filter.route = Some(value.into_owned()),
            "recipient" => filter.recipient = Some(value.into_owned()),
            "tag" => filter.tag = Some(value.into_owned()),
            "from" => filter.from_ms = Some(super::time("from", &value)?),
            "to" => filter.to_ms = Some(super::time("to", &value)?),
            "limit" => filter.limit = super::limit(&value)?,
            "cursor" => cursor = Some(value.into_owned()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {other:?} ({PARAMETERS})"
                )));
            }
        }
    }
    if let (Some(from_ms), Some(to_ms)) = (filter.from_ms, filter.to_ms)
        && from_ms >= to_ms
    {
        return Err(ApiError::BadRequest("from must be before to".into()));
    }
    // Recipients compare without case; times as the instants they name.
    let recipient = filter.recipient.as_ref().map(|r| r.trim().to_lowercase());
    let (from_ms, to_ms) = (
        filter.from_ms.map(|t| t.to_string()),
        filter.to_ms.map(|t| t.to_string()),
    );
    let scope = Scope::new(
        "messages",
        "route, recipient, tag, from, to",
        &[
            filter.route.as_deref(),
            recipient.as_deref(),
            filter.tag.as_deref(),
            from_ms.as_deref(),
            to_ms.as_deref(),
        ],
    );
    if let Some(text) = cursor {
        filter.after = Some(cursors.decode(&scope, &text)?);
    }
    Ok((filter, scope))
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
        "ip": o.and_then(ip),
        "user_agent": o.and_then(|o| o.user_agent.as_deref()),
    })
}

fn observation(o: &Observation) -> Value {
    json!({
        "id": o.id.to_string(),
        "kind": o.kind,
        "at": rfc3339(o.at_ms),
        "method": o.method,
        "ip": ip(o),
        "user_agent": o.user_agent,
        "link": o.link,
        "url": o.url,
    })
}

/// The observation's IP as text; null once minimised (SPEC §9).
fn ip(o: &Observation) -> Option<String> {
    o.ip.map(|ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_parameters() {
        let c = Cursors::new("t");
        let (f, _) = filter(
            &c,
            Some("route=news&recipient=Bob%40example.com&tag=a%20b&from=2026-11-01&to=2026-11-02T12:00:00%2B01:00&limit=5"),
        )
        .unwrap();
        assert_eq!(f.route.as_deref(), Some("news"));
        assert_eq!(f.recipient.as_deref(), Some("Bob@example.com"));
        assert_eq!(f.tag.as_deref(), Some("a b"));
        assert_eq!(f.from_ms, Some(1_793_491_200_000));
        assert_eq!(f.to_ms, Some(1_793_617_200_000));
        assert_eq!(f.limit, 5);
        assert_eq!(filter(&c, None).unwrap().0.limit, LIMIT_DEFAULT);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "colour=red",
            "from=yesterday",
            "to=2026-13-01",
            "from=2026-11-02&to=2026-11-01",
            "from=2026-11-01&to=2026-11-01",
            "cursor=x",
        ] {
            assert!(
                matches!(filter(&c, Some(bad)), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_cursor_holds_only_with_the_filters_it_was_made_for() {
        let c = Cursors::new("t");
        let (_, scope) = filter(&c, Some("route=news&recipient=BOB@x&from=2026-11-01")).unwrap();
        let id = Uuid::now_v7();
        let text = c.encode(&scope, 42, id);
        // The same filters, spelt otherwise, and another limit.
        let same =
            format!("recipient=bob@x&from=2026-11-01T00:00:00Z&route=news&limit=3&cursor={text}");
        assert_eq!(filter(&c, Some(&same)).unwrap().0.after, Some((42, id)));
        for other in [
            format!("route=news&recipient=bob@x&cursor={text}"),
            format!("route=news&recipient=bob@x&from=2026-11-01&tag=t&cursor={text}"),
            format!("cursor={text}"),
        ] {
            assert!(
                matches!(filter(&c, Some(&other)), Err(ApiError::BadRequest(_))),
                "{other}"
            );
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
