//! The JSON bodies (docs/webhooks.md): `{id, type, timestamp, data}`
//! (an endpoint's format may reshape it: [`super::lettermint`]).
//! `id` is the event's id (an open's or click's observation id, or the
//! relayed copy's id), `timestamp` when it happened (RFC 3339, UTC, ms).
//! The shape is stable: every key of a type is always present (null
//! when unknown), new keys may be added. `metadata` is the sending API
//! request's object (null for SMTP mail).

use serde_json::{Value, json};
use uuid::Uuid;

use crate::storage::{Event, Observation, RelayedCopy};
use crate::token::Kind;

/// The event type of a classified hit.
pub fn engagement_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Open => "message.opened",
        Kind::Click => "message.clicked",
    }
}

/// The event type of a relayed copy: `message.relayed` or `message.failed`.
pub fn relay_type(copy: &RelayedCopy) -> &'static str {
    if copy.status == crate::storage::CopyStatus::Failed {
        "message.failed"
    } else {
        "message.relayed"
    }
}

/// The body of an open or click.
pub fn engagement(
    obs: &Observation,
    event: &Event,
    copy: Option<&RelayedCopy>,
    metadata: Option<&Value>,
) -> Value {
    let mut data = message_fields(event.message_id, copy, metadata);
    let fields = json!({
        "recipient_id": event.recipient_id,
        "url": event.url,
        "link": event.link,
        "ip": obs.ip,
        "user_agent": obs.user_agent,
        "bot": event.bot,
        "first_open": event.kind == Kind::Open && event.first,
        "first_click": event.kind == Kind::Click && event.first,
        "device_type": event.device_type,
        "client_type": event.client_type,
        "client_name": event.client_name,
    });
    merge(&mut data, fields);
    body(event.id, engagement_type(event.kind), event.at_ms, data)
}

/// The body of a relayed or failed copy.
pub fn relayed(copy: &RelayedCopy, metadata: Option<&Value>) -> Value {
    let mut data = message_fields(copy.id, Some(copy), metadata);
    merge(
        &mut data,
        json!({
            "sender": copy.sender,
            "recipients": copy.recipients,
            "upstream_reply": copy.upstream_reply,
        }),
    );
    body(copy.id, relay_type(copy), copy.relayed_at_ms, data)
}

/// What every type says about the message.
fn message_fields(id: Uuid, copy: Option<&RelayedCopy>, metadata: Option<&Value>) -> Value {
    // One recipient per copy unless the route sends one copy to all.
    let recipient = copy.and_then(|c| match c.recipients.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    });
    json!({
        "message_id": id.to_string(),
        "route": copy.map(|c| c.route.clone()),
        "recipient": recipient,
        "message_id_header": copy.and_then(|c| c.message_id_header.clone()),
        "tags": copy.map_or_else(Vec::new, |c| c.tags.clone()),
        "metadata": metadata,
    })
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

fn body(id: Uuid, event_type: &str, at_ms: i64, data: Value) -> Value {
    let timestamp = jiff::Timestamp::from_millisecond(at_ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default();
    json!({
        "id": id.to_string(),
        "type": event_type,
        "timestamp": timestamp,
        "data": data,
    })
}
