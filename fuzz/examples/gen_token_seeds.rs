//! Writes the seed corpus of the `token_verify` target: tokens made by
//! `KeyRing::sign` with the keys in `fuzz_targets/common.rs`, their bodies
//! (the bytes before the MAC, which the target signs itself), and a few
//! near misses. Run from `fuzz/`:
//!
//!     cargo run --example gen_token_seeds
//!
//! The output is deterministic; the files are checked in.

#[path = "../fuzz_targets/common.rs"]
mod common;

use std::fs;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use trackrelay::token::{Claims, Key, KeyRing, Kind};
use uuid::Uuid;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/token_verify");
    fs::create_dir_all(&dir)?;
    let ring = common::ring();
    let old = KeyRing::new(vec![Key::new(common::OLD_KEY_ID, common::OLD_SECRET.to_vec())]);
    let rid = ring.recipient_id(common::RECIPIENT);
    let base = Claims {
        kind: Kind::Click,
        message_id: Uuid::from_u128(common::MESSAGE_ID),
        recipient_id: Some(rid),
        expires_at: common::EXPIRES_AT,
        link: Some(0),
        url: Some("https://example.com/a?b=1&c=2#frag".into()),
    };
    let open = Claims {
        kind: Kind::Open,
        link: None,
        url: None,
        ..base.clone()
    };
    let tokens: Vec<(&str, String)> = vec![
        ("click_k1", ring.sign(&base)),
        ("open_k1", ring.sign(&open)),
        (
            "open_k1_no_recipient",
            ring.sign(&Claims {
                recipient_id: None,
                ..open.clone()
            }),
        ),
        (
            "click_k1_last_index_unicode",
            ring.sign(&Claims {
                link: Some(u16::MAX),
                url: Some("https://x.test/caf%C3%A9/é?q=ü#Überblick".into()),
                ..base.clone()
            }),
        ),
        (
            "click_k1_empty_url_expired",
            ring.sign(&Claims {
                link: Some(7),
                url: Some(String::new()),
                expires_at: 0,
                ..base.clone()
            }),
        ),
        (
            "click_k1_long_url",
            ring.sign(&Claims {
                link: Some(300),
                url: Some(format!("https://long.test/{}", "a".repeat(600))),
                ..base.clone()
            }),
        ),
        ("click_old_key", old.sign(&base)),
        ("open_old_key", old.sign(&open)),
    ];
    for (name, token) in &tokens {
        assert!(common::rotated_ring().verify(token).is_ok(), "{name} does not verify");
        fs::write(dir.join(format!("{name}.txt")), token)?;
    }
    // Bodies: the token bytes without the 16-byte MAC.
    for name in ["click_k1", "open_k1_no_recipient", "click_old_key"] {
        let token = &tokens.iter().find(|(n, _)| *n == name).expect("token").1;
        let raw = URL_SAFE_NO_PAD.decode(token).expect("base64url");
        fs::write(dir.join(format!("body_{name}.bin")), &raw[..raw.len() - 16])?;
    }
    // Near misses: a flipped MAC byte, a truncated token, an unknown key,
    // version 2, padding.
    let click = &tokens[0].1;
    let mut flipped = URL_SAFE_NO_PAD.decode(click).expect("base64url");
    *flipped.last_mut().expect("non-empty") ^= 1;
    fs::write(dir.join("bad_signature.txt"), URL_SAFE_NO_PAD.encode(&flipped))?;
    fs::write(dir.join("bad_truncated.txt"), &click[..click.len() / 2])?;
    let other = KeyRing::new(vec![Key::new("k9", vec![9u8; 32])]);
    fs::write(dir.join("bad_unknown_key.txt"), other.sign(&base))?;
    let mut v2 = URL_SAFE_NO_PAD.decode(click).expect("base64url");
    v2[0] = 0x21;
    fs::write(dir.join("bad_version.txt"), URL_SAFE_NO_PAD.encode(&v2))?;
    fs::write(dir.join("bad_padding.txt"), format!("{click}=="))?;
    println!("wrote {} files to {}", tokens.len() + 3 + 5, dir.display());
    Ok(())
}
