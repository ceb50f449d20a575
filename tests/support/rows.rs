//! Stored rows for tests that seed storage directly: a relayed copy and a
//! classified event with the usual fields; tests change what they need
//! with struct update syntax.

use serde_json::json;
use trackrelay::storage::{Event, RelayedCopy};
use trackrelay::token::Kind;
use uuid::Uuid;

/// A copy of `route` to `recipient` relayed at `at_ms`: sender
/// news@example.com, links https://example.com/a and /b, recipient id
/// `rid-{recipient}`, upstream reply "250 ok".
pub fn copy(route: &str, recipient: &str, at_ms: i64) -> RelayedCopy {
    RelayedCopy {
        id: Uuid::now_v7(),
        route: route.into(),
        sender: "news@example.com".into(),
        recipients: vec![recipient.into()],
        recipient_id: Some(format!("rid-{recipient}")),
        message_id_header: None,
        tags: Vec::new(),
        links: vec![
            "https://example.com/a".into(),
            "https://example.com/b".into(),
        ],
        relayed_at_ms: at_ms,
        upstream_reply: "250 ok".into(),
        status: trackrelay::storage::CopyStatus::Relayed,
    }
}

/// An event of `kind` on copy `c` (its link's URL from the copy): human
/// ones are "genuine" and count, the others are `machine_class`.
pub fn event(
    c: &RelayedCopy,
    kind: Kind,
    link: Option<u16>,
    at_ms: i64,
    human: bool,
    machine_class: &str,
) -> Event {
    Event {
        id: Uuid::now_v7(),
        message_id: c.id,
        recipient_id: c.recipient_id.clone(),
        kind,
        link,
        url: link.map(|i| c.links[usize::from(i)].clone()),
        at_ms,
        classification: if human { "genuine" } else { machine_class }
            .parse()
            .unwrap(),
        counts_for_metrics: human,
        machine: !human,
        first: false,
        bot: json!({}),
        device_type: None,
        client_type: None,
        client_name: None,
    }
}
