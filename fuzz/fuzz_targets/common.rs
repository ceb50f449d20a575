//! Fixed keys and request values shared by the fuzz targets and by
//! `examples/gen_token_seeds.rs`. Not a fuzz target itself.

#![allow(dead_code)]

use trackrelay::token::{Key, KeyRing};

/// The signing key of every ring here.
pub const SIGNING_KEY_ID: &str = "k1";
pub const SIGNING_SECRET: &[u8; 32] = b"trackrelay-fuzz-signing-key-0001";
/// A retired key that still verifies (token_verify only).
pub const OLD_KEY_ID: &str = "old";
pub const OLD_SECRET: &[u8; 32] = b"trackrelay-fuzz-retired-key-0002";

pub const BASE_URL: &str = "https://t.example.com";
pub const MESSAGE_ID: u128 = 0x0190_0000_0000_7000_8000_0000_0000_0001;
pub const RECIPIENT: &str = "bob@example.com";
pub const EXPIRES_AT: u32 = 2_000_000_000;

/// One 32-byte key: what `rewrite_message` signs with.
pub fn ring() -> KeyRing {
    KeyRing::new(vec![Key::new(SIGNING_KEY_ID, SIGNING_SECRET.to_vec())])
}

/// The signing key plus a retired one: what `token_verify` checks against.
pub fn rotated_ring() -> KeyRing {
    KeyRing::new(vec![
        Key::new(SIGNING_KEY_ID, SIGNING_SECRET.to_vec()),
        Key::new(OLD_KEY_ID, OLD_SECRET.to_vec()),
    ])
}

/// Whether `needle` occurs in `haystack`, ASCII case-insensitively.
pub fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Panics with the first difference (and some context) when `got != want`,
/// without dumping whole messages.
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    let ctx = |b: &[u8]| {
        let from = at.saturating_sub(40);
        let to = (at + 40).min(b.len());
        format!("{:?}", String::from_utf8_lossy(&b[from.min(to)..to]))
    };
    panic!(
        "{what}: output differs from expected at byte {at} (got {} bytes, want {})\n  got:  {}\n  want: {}",
        got.len(),
        want.len(),
        ctx(got),
        ctx(want)
    );
}

