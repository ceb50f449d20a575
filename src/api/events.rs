//! `GET /v1/events?route=&type=&since=&cursor=&include_machine=&limit=`:
//! the event feed, each open or click as its webhook body (docs/webhooks.md)
//! so a client can export or poll everything the webhooks send.
//!
//! Without `since`, newest first, paged backwards by `next_cursor` (null
//! on the last page). With `since`, oldest first from that time, by the
//! order events were stored (storage/feed.rs): `next_cursor` is then never
//! null once a page had an event, and asking with it later returns what
//! arrived since, without gaps or repeats. A cursor keeps the order and the
//! filters it was made with. Counting events only unless
//! `include_machine=true`.

use serde_json::{Value, json};
use uuid::Uuid;

use super::cursor::{Cursors, Scope};
use super::{ApiError, LIMIT_DEFAULT};
use crate::storage::{FeedFilter, FeedItem, Observation, Storage, StorageError};
use crate::token::Kind;

const PARAMETERS: &str = "route, type, since, include_machine, limit, cursor";
const SCOPE_NAMES: &str = "route, type, since, include_machine";

/// One page of the feed.
pub async fn feed(
    storage: &Storage,
    cursors: &Cursors,
    query: Option<&str>,
) -> Result<Value, ApiError> {
    let (mut filter, cursor) = parse(query)?;
    if let Some(text) = &cursor {
        let (ascending, seq) = decode(cursors, &filter, text)?;
        filter.ascending = ascending;
        filter.after = Some(seq);
    }
    let limit = filter.limit as usize;
    // One more than the page: whether there is a next page at all.
    filter.limit += 1;
    let mut items = storage.feed(filter.clone()).await?;
    let more = items.len() > limit;
    items.truncate(limit);
    let scope = scope(&filter, filter.ascending);
    let next_cursor = match items.last() {
        // Oldest first, a feed has no end: the last position is where to
        // ask again, whether or not more is already there.
        Some(last) if more || filter.ascending => {
            Some(cursors.encode(&scope, last.seq, last.event.id))
        }
        // Nothing new: the same place.
        None if filter.ascending => cursor,
        _ => None,
    };
    Ok(json!({
        "order": if filter.ascending { "oldest_first" } else { "newest_first" },
        "events": bodies(storage, &items).await?,
        "next_cursor": next_cursor,
    }))
}

/// The webhook bodies of a page of events, each with its copy's metadata
/// (the sending API's; null for SMTP mail), read in one query.
pub async fn bodies(storage: &Storage, items: &[FeedItem]) -> Result<Vec<Value>, StorageError> {
    let ids = items.iter().map(|i| i.event.message_id).collect();
    let metadata = storage.metadata(ids).await?;
    Ok(items
        .iter()
        .map(|i| body(i, metadata.get(&i.event.message_id)))
        .collect())
}

/// What the webhook for this event sends (its JSON body).
fn body(item: &FeedItem, metadata: Option<&Value>) -> Value {
    let e = &item.event;
    // An event whose observation is gone says what a minimised one says.
    let gone = Observation {
        id: e.id,
        message_id: e.message_id,
        kind: e.kind,
        recipient_id: e.recipient_id.clone(),
        link: e.link,
        url: e.url.clone(),
        at_ms: e.at_ms,
        method: String::new(),
        host: String::new(),
        ip: None,
        user_agent: None,
        headers: Vec::new(),
        key_id: String::new(),
    };
    let observation = item.observation.as_ref().unwrap_or(&gone);
    crate::webhooks::payload::engagement(observation, e, item.copy.as_ref(), metadata)
}

/// The filter (and the cursor's text) of a query.
fn parse(query: Option<&str>) -> Result<(FeedFilter, Option<String>), ApiError> {
    let mut filter = FeedFilter {
        limit: LIMIT_DEFAULT,
        ..FeedFilter::default()
    };
    let mut cursor = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "route" => filter.route = Some(value.into_owned()),
            "type" => filter.kind = Some(kind(&value)?),
            "since" => filter.since_ms = Some(super::time("since", &value)?),
            "include_machine" => {
                filter.include_machine = super::params::flag("include_machine", &value)?;
            }
            "limit" => filter.limit = super::limit(&value)?,
            "cursor" => cursor = Some(value.into_owned()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {other:?} ({PARAMETERS})"
                )));
            }
        }
    }
    filter.ascending = filter.since_ms.is_some();
    Ok((filter, cursor))
}

/// `type`: the webhook event type of an open or a click.
pub fn kind(text: &str) -> Result<Kind, ApiError> {
    match text {
        "message.opened" => Ok(Kind::Open),
        "message.clicked" => Ok(Kind::Click),
        other => Err(ApiError::BadRequest(format!(
            "type must be message.opened or message.clicked, not {other:?}"
        ))),
    }
}

/// The scope of the feed's cursors: its filters and order.
fn scope(f: &FeedFilter, ascending: bool) -> Scope {
    let (since, machine) = (f.since_ms.map(|t| t.to_string()), f.include_machine);
    let listing = if ascending {
        "events oldest first"
    } else {
        "events newest first"
    };
    Scope::new(
        listing,
        SCOPE_NAMES,
        &[
            f.route.as_deref(),
            f.kind.map(Kind::as_str),
            since.as_deref(),
            Some(if machine { "true" } else { "false" }),
        ],
    )
}

/// A cursor's order and position (a cursor holds in the order it was
/// made in: the oldest-first scope is tried, then the other).
fn decode(cursors: &Cursors, f: &FeedFilter, text: &str) -> Result<(bool, i64), ApiError> {
    let ascending = cursors
        .decode(&scope(f, true), text)
        .map(|(seq, _)| (true, seq));
    ascending.or_else(|_| {
        cursors
            .decode(&scope(f, false), text)
            .map(|(seq, _): (i64, Uuid)| (false, seq))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters() {
        let (f, c) = parse(Some(
            "route=news&type=message.clicked&since=2026-11-01&include_machine=true&limit=7&cursor=x",
        ))
        .unwrap();
        assert_eq!(f.route.as_deref(), Some("news"));
        assert_eq!(f.kind, Some(Kind::Click));
        assert_eq!(f.since_ms, Some(1_793_491_200_000));
        assert!(f.include_machine && f.ascending);
        assert_eq!((f.limit, c.as_deref()), (7, Some("x")));
        let (f, _) = parse(None).unwrap();
        assert!(!f.ascending && !f.include_machine);
        for bad in [
            "type=open",
            "since=yesterday",
            "include_machine=1",
            "limit=0",
            "colour=red",
        ] {
            assert!(
                matches!(parse(Some(bad)), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_cursor_keeps_its_order_and_filters() {
        let c = Cursors::new("t");
        let (f, _) = parse(Some("route=news")).unwrap();
        let id = Uuid::now_v7();
        let text = c.encode(&scope(&f, false), 42, id);
        assert_eq!(decode(&c, &f, &text).unwrap(), (false, 42));
        let text = c.encode(&scope(&f, true), 43, id);
        assert_eq!(decode(&c, &f, &text).unwrap(), (true, 43));
        let (other, _) = parse(Some("route=default")).unwrap();
        assert!(decode(&c, &other, &text).is_err());
    }
}
