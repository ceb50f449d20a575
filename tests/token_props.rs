//! Property tests for tokens: every signed token verifies to its claims;
//! any altered byte, truncation or other key is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use trackrelay::token::{Claims, Invalid, Key, KeyRing, Kind, RECIPIENT_ID_LEN};
use uuid::Uuid;

fn ring(secret: u8) -> KeyRing {
    KeyRing::new(vec![Key::new("k1", vec![secret; 32])])
}

fn claims() -> impl Strategy<Value = Claims> {
    (
        any::<bool>(),
        any::<u128>(),
        proptest::option::of(any::<[u8; RECIPIENT_ID_LEN]>()),
        any::<u32>(),
        any::<u16>(),
        "https?://[a-z.]{1,20}/[ -~é✓]{0,200}",
    )
        .prop_map(|(click, id, rcpt, exp, link, url)| Claims {
            kind: if click { Kind::Click } else { Kind::Open },
            message_id: Uuid::from_u128(id),
            recipient_id: rcpt,
            expires_at: exp,
            link: click.then_some(link),
            url: click.then_some(url),
        })
}

proptest! {
    #[test]
    fn round_trip(c in claims()) {
        let ring = ring(1);
        let (back, key) = ring.verify(&ring.sign(&c)).unwrap();
        prop_assert_eq!(back, c);
        prop_assert_eq!(key, "k1");
    }

    #[test]
    fn any_altered_byte_is_refused(c in claims(), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let ring = ring(1);
        let mut raw = URL_SAFE_NO_PAD.decode(ring.sign(&c)).unwrap();
        let i = pos.index(raw.len());
        raw[i] ^= flip;
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        prop_assert!(ring.verify(&forged).is_err());
    }

    #[test]
    fn truncation_is_refused(c in claims(), cut in any::<prop::sample::Index>()) {
        let ring = ring(1);
        let token = ring.sign(&c);
        let n = cut.index(token.len());
        prop_assert!(ring.verify(&token[..n]).is_err());
    }

    #[test]
    fn another_key_is_refused(c in claims()) {
        let token = ring(1).sign(&c);
        let other_secret = ring(2);
        prop_assert_eq!(other_secret.verify(&token), Err(Invalid::Signature));
        let other_id = KeyRing::new(vec![Key::new("k2", vec![1; 32])]);
        prop_assert_eq!(other_id.verify(&token), Err(Invalid::UnknownKey("k1".into())));
    }
}
