//! Cursors of the API's listings (`next_cursor`, passed back as
//! `cursor=`): a position in a listing's order, `(time, id)` of the last
//! item of a page, bound to the listing and its filters and signed, so a
//! client can neither forge a position nor carry one to other filters.
//!
//! The text is base64url (no padding) of 8 bytes of time (ms, big-endian),
//! the 16 bytes of the id and the first 16 bytes of an HMAC-SHA256 of
//! both and the listing's scope (its name and filters). The key is derived
//! from the API token: cursors survive restarts, and a new token voids them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ApiError;
use crate::token::HmacSha256;

const TIME_BYTES: usize = 8;
const ID_BYTES: usize = 16;
const MAC_BYTES: usize = 16;
const CURSOR_BYTES: usize = TIME_BYTES + ID_BYTES + MAC_BYTES;

/// Makes and checks cursors.
pub struct Cursors {
    key: [u8; 32],
}

impl Cursors {
    /// Cursors keyed by (a hash of) the API `token`.
    pub fn new(token: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"trackrelay listing cursor v1\0");
        h.update(token.as_bytes());
        Self {
            key: h.finalize().into(),
        }
    }

    /// The cursor for position `(at_ms, id)` of the listing `scope`.
    pub fn encode(&self, scope: &Scope, at_ms: i64, id: Uuid) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_BYTES);
        bytes.extend_from_slice(&at_ms.to_be_bytes());
        bytes.extend_from_slice(id.as_bytes());
        let mac = self.mac(scope, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&mac[..MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position `text` stands for, if this API made it for `scope`.
    pub fn decode(&self, scope: &Scope, text: &str) -> Result<(i64, Uuid), ApiError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .filter(|b| b.len() == CURSOR_BYTES)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "cursor {text:?} is malformed: pass next_cursor from the previous page unchanged"
                ))
            })?;
        let (position, mac) = bytes.split_at(TIME_BYTES + ID_BYTES);
        self.mac(scope, position)
            .verify_truncated_left(mac)
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "cursor {text:?} was not made by this server for this listing with these \
                     filters ({}): pass next_cursor unchanged, with the same filters",
                    scope.names
                ))
            })?;
        let (time, id) = position.split_at(TIME_BYTES);
        // Both lengths are fixed by the split above.
        let at_ms = i64::from_be_bytes(time.try_into().expect("8 bytes"));
        let id = Uuid::from_slice(id).expect("16 bytes");
        Ok((at_ms, id))
    }

    fn mac(&self, scope: &Scope, position: &[u8]) -> HmacSha256 {
        let mut mac = crate::token::hmac_sha256(&self.key);
        mac.update(scope.text.as_bytes());
        mac.update(&[0]);
        mac.update(position);
        mac
    }
}

/// What a cursor is bound to: a listing and the values of its filters.
#[derive(Debug, Clone)]
pub struct Scope {
    text: String,
    /// The filters' names, for error messages.
    names: &'static str,
}

impl Scope {
    /// The scope of `listing` with its filters, `names` listing their
    /// names in the same order as `values` (absent ones as `None`).
    pub fn new(listing: &str, names: &'static str, values: &[Option<&str>]) -> Self {
        // Each value is length-prefixed so no two filter sets collide.
        let mut text = listing.to_owned();
        for v in values {
            match v {
                Some(v) => text.push_str(&format!("\0{}:{v}", v.len())),
                None => text.push_str("\0-"),
            }
        }
        Self { text, names }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(route: Option<&str>) -> Scope {
        Scope::new("messages", "route", &[route])
    }

    #[test]
    fn a_cursor_gives_back_its_position() {
        let c = Cursors::new("token");
        let id = Uuid::now_v7();
        let text = c.encode(&scope(Some("news")), 1_700_000_000_123, id);
        assert_eq!(
            c.decode(&scope(Some("news")), &text).unwrap(),
            (1_700_000_000_123, id)
        );
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn other_filters_another_token_or_an_edit_are_refused() {
        let c = Cursors::new("token");
        let id = Uuid::now_v7();
        let text = c.encode(&scope(Some("news")), 5, id);
        let refused = |r: Result<(i64, Uuid), ApiError>| match r {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(refused(c.decode(&scope(None), &text)).contains("these filters"));
        assert!(refused(c.decode(&scope(Some("new")), &text)).contains("these filters"));
        let other = Cursors::new("another token");
        assert!(refused(other.decode(&scope(Some("news")), &text)).contains("not made"));
        // One bit of the time changed: the MAC no longer holds.
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        bytes[7] ^= 1;
        let forged = URL_SAFE_NO_PAD.encode(&bytes);
        assert!(refused(c.decode(&scope(Some("news")), &forged)).contains("not made"));
        for bad in ["", "abc", "!!!!", &text[1..], &format!("{text}AA")] {
            assert!(
                refused(c.decode(&scope(Some("news")), bad)).contains("malformed"),
                "{bad}"
            );
        }
    }

    #[test]
    fn scopes_do_not_collide() {
        let a = Scope::new("l", "a, b", &[Some("x\0"), None]);
        let b = Scope::new("l", "a, b", &[Some("x"), Some("")]);
        assert_ne!(a.text, b.text);
    }
}
