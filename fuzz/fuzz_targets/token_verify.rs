//! Arbitrary bytes through `KeyRing::verify`, two ways per input.
//!
//! 1. As token text (invalid UTF-8 replaced, as a URL path segment would
//!    be): verify never panics; a token that verifies re-signs to a token
//!    that verifies to the same claims, and re-signs to the very same text
//!    when it was made with the signing key (the encoding is canonical).
//! 2. As a token *body* (everything before the MAC), signed here with the
//!    secret of the key its key id names, so verification gets past the MAC
//!    and decodes arbitrary claims. The result must equal that of a small
//!    reference decoder written from the format comment in `src/token.rs`
//!    (same error, same claims), a `Signature` or `Encoding` error is a bug,
//!    and a verified body re-signs to the same token.
//!
//! The ring is the signing key `k1` plus a retired key `old` (common.rs).

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use trackrelay::token::{Claims, Invalid, Key, KeyRing, Kind, RECIPIENT_ID_LEN};
use uuid::Uuid;

static RING: LazyLock<KeyRing> = LazyLock::new(common::rotated_ring);
/// The retired key alone, to re-sign tokens it made.
static OLD_RING: LazyLock<KeyRing> =
    LazyLock::new(|| KeyRing::new(vec![Key::new(common::OLD_KEY_ID, common::OLD_SECRET.to_vec())]));

const MAC_LEN: usize = 16;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_text(&text);
    check_body(data);
});

fn check_text(text: &str) {
    match RING.verify(text) {
        Ok((claims, key_id)) => {
            assert!(
                text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "verified a token that is not base64url: {text:?}"
            );
            check_round_trip(&claims, key_id, text);
        }
        Err(Invalid::Encoding) => {
            assert!(URL_SAFE_NO_PAD.decode(text).is_err(), "decodable token refused as not base64url");
        }
        Err(_) => {
            assert!(URL_SAFE_NO_PAD.decode(text).is_ok(), "undecodable token got past decoding");
        }
    }
}

fn check_body(body: &[u8]) {
    let secret: &[u8] = match key_id_of(body) {
        Some(id) if id == common::OLD_KEY_ID.as_bytes() => common::OLD_SECRET,
        _ => common::SIGNING_SECRET,
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    let mut raw = body.to_vec();
    raw.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
    let token = URL_SAFE_NO_PAD.encode(&raw);

    let got = RING.verify(&token);
    let want = reference_decode(body);
    match (&got, &want) {
        (Ok((claims, key_id)), Ok((ref_claims, ref_key))) => {
            assert_eq!(claims, ref_claims, "claims differ from the reference decoder");
            assert_eq!(*key_id, *ref_key);
            check_round_trip(claims, key_id, &token);
        }
        (Err(e), Err(r)) => assert_eq!(e, r, "different refusal than the reference decoder"),
        _ => panic!("verify: {got:?}\nreference: {want:?}\nbody: {body:02x?}"),
    }
}

/// The key id a body names, if it gets that far.
fn key_id_of(body: &[u8]) -> Option<&[u8]> {
    let len = usize::from(*body.get(1)?);
    body.get(2..2 + len)
}

fn check_round_trip(claims: &Claims, key_id: &str, token: &str) {
    let _ = claims.is_expired(0);
    let _ = claims.is_expired(u64::MAX);
    let _ = claims.recipient_id_text();
    match claims.kind {
        Kind::Open => assert!(claims.link.is_none() && claims.url.is_none(), "{claims:?}"),
        Kind::Click => assert!(claims.link.is_some() && claims.url.is_some(), "{claims:?}"),
    }
    let resigned = RING.sign(claims);
    let (back, back_key) = RING.verify(&resigned).expect("a re-signed token verifies");
    assert_eq!(&back, claims, "re-signed claims differ");
    assert_eq!(back_key, common::SIGNING_KEY_ID);
    let same_key = match key_id {
        common::SIGNING_KEY_ID => resigned,
        common::OLD_KEY_ID => OLD_RING.sign(claims),
        other => panic!("verified with a key id not in the ring: {other:?}"),
    };
    assert_eq!(same_key, token, "verified token is not the canonical encoding of its claims");
}

/// Decodes a token body as the wire format in `src/token.rs` describes it,
/// checking in the order verify does (version, key id, then the claims).
fn reference_decode(body: &[u8]) -> Result<(Claims, &'static str), Invalid> {
    let mut r = Cursor(body);
    let first = r.take(1)?[0];
    if first >> 4 != 1 {
        return Err(Invalid::Version(first >> 4));
    }
    let key_len = usize::from(r.take(1)?[0]);
    let key_id = std::str::from_utf8(r.take(key_len)?).map_err(|_| Invalid::Malformed)?;
    let key_id = match key_id {
        common::SIGNING_KEY_ID => common::SIGNING_KEY_ID,
        common::OLD_KEY_ID => common::OLD_KEY_ID,
        other => return Err(Invalid::UnknownKey(other.to_owned())),
    };
    let kind = match first & 0x0f {
        0 => Kind::Open,
        1 => Kind::Click,
        _ => return Err(Invalid::Malformed),
    };
    let message_id = Uuid::from_bytes(r.take(16)?.try_into().expect("16 bytes"));
    let recipient_id = match usize::from(r.take(1)?[0]) {
        0 => None,
        RECIPIENT_ID_LEN => Some(r.take(RECIPIENT_ID_LEN)?.try_into().expect("10 bytes")),
        _ => return Err(Invalid::Malformed),
    };
    let expires_at = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes"));
    let (link, url) = match kind {
        Kind::Open if r.0.is_empty() => (None, None),
        Kind::Open => return Err(Invalid::Malformed),
        Kind::Click => {
            let link = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes"));
            let url = std::str::from_utf8(r.0).map_err(|_| Invalid::Malformed)?;
            (Some(link), Some(url.to_owned()))
        }
    };
    let claims = Claims {
        kind,
        message_id,
        recipient_id,
        expires_at,
        link,
        url,
    };
    Ok((claims, key_id))
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Invalid> {
        let (head, tail) = self.0.split_at_checked(n).ok_or(Invalid::Malformed)?;
        self.0 = tail;
        Ok(head)
    }
}
