//! Bob's hits on a copy with links https://example.com/0 … /4, signed with
//! the test key: the claims and the tracking path of an open or a click,
//! and the Apple relay range of the shared corpus, for the tests that send
//! classified traffic through a real server.

use trackrelay::storage::RelayedCopy;
use trackrelay::token::{Claims, Kind};
use uuid::Uuid;

/// Bob's token claims for an open (`link` None) or a click on link `link`
/// of copy `id`.
pub fn claims(id: Uuid, link: Option<u16>) -> Claims {
    Claims {
        kind: if link.is_some() {
            Kind::Click
        } else {
            Kind::Open
        },
        message_id: id,
        recipient_id: Some(super::keys().recipient_id("bob@example.com")),
        expires_at: super::server::next_week(),
        link,
        url: link.map(|i| format!("https://example.com/{i}")),
    }
}

/// The tracking path of an open or a click (see [`claims`]).
pub fn path(copy: &RelayedCopy, link: Option<u16>) -> String {
    let prefix = if link.is_some() { "c" } else { "o" };
    let token = super::keys().sign(&claims(copy.id, link));
    format!("/{prefix}/{token}")
}

/// The `[classifier]` section of a test config: a one-second wait and
/// Apple's relay egress ranges from the corpus (104.28.28.0/26 among them).
pub fn classifier_with_apple_ranges() -> String {
    let apple = super::corpus::root().join("ua/ip-ranges/apple-private-relay-egress-ipv4.csv");
    format!(
        "\n[classifier]\nwait_seconds = 1\n\
         [[classifier.ranges]]\nname = \"apple\"\nclass = \"apple_relay\"\nfile = \"{}\"\n",
        apple.display()
    )
}
