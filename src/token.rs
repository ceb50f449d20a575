//! Signed, self-contained tracking tokens (SPEC §4).
//!
//! Owns the token format, the key ring and verification. A token carries
//! everything the tracking server needs to answer a hit without a database
//! lookup: kind, message id, opaque recipient id, link index, destination URL
//! (clicks) and expiry, signed with HMAC-SHA256. It knows nothing of HTTP or
//! storage; `tracking` and the `token inspect` command build on it.
//!
//! Wire format (version 1), base64url without padding:
//!
//! ```text
//! byte 0        version << 4 | kind      (kind 0 = open, 1 = click)
//! byte 1        key id length L (1..=16), then L bytes of key id
//! 16 bytes      message id (UUID, time-ordered v7 when we make it)
//! byte          recipient id length R (0 or RECIPIENT_ID_LEN), then R bytes
//! 4 bytes       expires_at, seconds since the Unix epoch, big-endian
//! clicks only:  2 bytes link index (big-endian), then the URL's UTF-8 bytes
//! 16 bytes      HMAC-SHA256 over everything before it, truncated
//! ```
//!
//! The recipient id is a keyed hash of the address, so the address cannot be
//! read from a token or recovered by guessing without the key.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// HMAC-SHA256, the one MAC of the program (tokens, webhook signatures,
/// cursors, dashboard sessions, IP hashes).
pub type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 keyed with `key`, ready for `update`: the one place the
/// MAC is set up.
pub fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length (RFC 2104 §2), so this cannot fail.
    HmacSha256::new_from_slice(key).expect("HMAC takes any key length")
}

const VERSION: u8 = 1;
/// Length of the truncated MAC. 128 bits is what NIST SP 800-107 considers
/// ample for HMAC-SHA256 tags; full 256 bits would lengthen every link.
const MAC_LEN: usize = 16;
/// Length of the opaque recipient id carried in tokens.
pub const RECIPIENT_ID_LEN: usize = 10;
/// Longest key id accepted in the config and in tokens.
pub const MAX_KEY_ID_LEN: usize = 16;
/// Shortest secret accepted: 32 bytes, the HMAC-SHA256 block-size guidance.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest destination URL a click token carries. Longer links are left
/// alone by the rewriter (PITFALLS P16: some relays refuse > 4 KiB links).
pub const MAX_URL_LEN: usize = 4096;

/// What a hit on the token means.
#[derive(Debug, Clone, Copy, PartialEq, Hash, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Open,
    Click,
}

impl Kind {
    /// The word stored, served and logged (`open`, `click`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Open => "open",
            Kind::Click => "click",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "open" => Ok(Kind::Open),
            "click" => Ok(Kind::Click),
            other => Err(format!("unknown kind {other:?} (open, click)")),
        }
    }
}

/// The signed content of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub kind: Kind,
    /// Id of the relayed copy (or of the message when copies are not split).
    pub message_id: Uuid,
    /// Opaque recipient id, `None` for message-level tokens.
    pub recipient_id: Option<[u8; RECIPIENT_ID_LEN]>,
    /// Seconds since the Unix epoch after which hits are no longer recorded.
    pub expires_at: u32,
    /// Index of the link in the message (clicks), in document order.
    pub link: Option<u16>,
    /// Destination URL (clicks), exactly as a mail client would open it.
    pub url: Option<String>,
}

impl Claims {
    /// Whether the token has expired at `now` (seconds since the epoch).
    pub fn is_expired(&self, now: u64) -> bool {
        now > u64::from(self.expires_at)
    }

    /// The recipient id as it is shown in JSON and stored: base64url.
    pub fn recipient_id_text(&self) -> Option<String> {
        self.recipient_id.map(|id| URL_SAFE_NO_PAD.encode(id))
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not base64url")]
    Encoding,
    #[error("truncated or malformed token")]
    Malformed,
    #[error("unsupported token version {0}")]
    Version(u8),
    #[error("signed with unknown key id {0:?}")]
    UnknownKey(String),
    #[error("signature does not match")]
    Signature,
}

/// One signing key from the config.
#[derive(Clone)]
pub struct Key {
    pub id: String,
    secret: Vec<u8>,
}

impl Key {
    /// A key; the caller (config validation) has checked id and length.
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        hmac_sha256(&self.secret)
    }
}

impl fmt::Debug for Key {
    // Never print secrets, even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &"<hidden>")
            .finish()
    }
}

/// The configured keys: the first signs, all verify (rotation without
/// breaking links in mail already sent).
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    /// A key ring; `keys` must not be empty (config validation ensures it).
    pub fn new(keys: Vec<Key>) -> Self {
        assert!(!keys.is_empty(), "a key ring needs at least one key");
        Self { keys }
    }

    /// How many keys verify.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: a key ring always has a signing key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> &Key {
        &self.keys[0]
    }

    /// Opaque id of a recipient: a keyed hash of the lower-cased address
    /// under the signing key, so tokens carry nothing readable.
    pub fn recipient_id(&self, address: &str) -> [u8; RECIPIENT_ID_LEN] {
        let mut mac = self.signing_key().mac();
        mac.update(b"trackrelay recipient id v1\0");
        mac.update(address.trim().to_lowercase().as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut id = [0u8; RECIPIENT_ID_LEN];
        id.copy_from_slice(&digest[..RECIPIENT_ID_LEN]);
        id
    }

    /// The recipient ids `address` has under every key of the ring, as
    /// tokens carry them (base64url): what `forget` looks for.
    pub fn recipient_ids_text(&self, address: &str) -> Vec<String> {
        self.keys
            .iter()
            .map(|key| {
                let ring = KeyRing::new(vec![key.clone()]);
                URL_SAFE_NO_PAD.encode(ring.recipient_id(address))
            })
            .collect()
    }

    /// A secret for another purpose, derived from the signing key under
    /// `label` (HMAC-SHA256): it tells nothing about the signing key.
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = self.signing_key().mac();
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    /// Encodes and signs `claims` with the signing key.
    pub fn sign(&self, claims: &Claims) -> String {
        let key = self.signing_key();
        let mut buf = Vec::with_capacity(64 + claims.url.as_ref().map_or(0, String::len));
        let kind = match claims.kind {
            Kind::Open => 0,
            Kind::Click => 1,
        };
        buf.push(VERSION << 4 | kind);
        buf.push(key.id.len() as u8);
        buf.extend_from_slice(key.id.as_bytes());
        buf.extend_from_slice(claims.message_id.as_bytes());
        match &claims.recipient_id {
            Some(id) => {
                buf.push(RECIPIENT_ID_LEN as u8);
                buf.extend_from_slice(id);
            }
            None => buf.push(0),
        }
        buf.extend_from_slice(&claims.expires_at.to_be_bytes());
        if claims.kind == Kind::Click {
            buf.extend_from_slice(&claims.link.unwrap_or(0).to_be_bytes());
            buf.extend_from_slice(claims.url.as_deref().unwrap_or("").as_bytes());
        }
        let mut mac = key.mac();
        mac.update(&buf);
        buf.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Decodes a token and checks its signature against every key, in
    /// constant time. Expiry is the caller's decision (see [`Claims::is_expired`]).
    pub fn verify(&self, token: &str) -> Result<(Claims, &str), Invalid> {
        let raw = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| Invalid::Encoding)?;
        let (head, tag) = raw
            .split_at_checked(raw.len().saturating_sub(MAC_LEN))
            .filter(|(head, _)| !head.is_empty())
            .ok_or(Invalid::Malformed)?;
        let mut reader = Reader(head);
        let first = reader.byte()?;
        if first >> 4 != VERSION {
            return Err(Invalid::Version(first >> 4));
        }
        let key_id_len = usize::from(reader.byte()?);
        let key_id =
            std::str::from_utf8(reader.take(key_id_len)?).map_err(|_| Invalid::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| Invalid::UnknownKey(key_id.to_owned()))?;
        let mut mac = key.mac();
        mac.update(head);
        // verify_truncated_left compares in constant time.
        mac.verify_truncated_left(tag)
            .map_err(|_| Invalid::Signature)?;
        let claims = decode_claims(first & 0x0f, &mut reader)?;
        Ok((claims, key.id.as_str()))
    }
}

/// Reads the claims after the key id; the signature has been checked.
fn decode_claims(kind: u8, reader: &mut Reader<'_>) -> Result<Claims, Invalid> {
    let kind = match kind {
        0 => Kind::Open,
        1 => Kind::Click,
        _ => return Err(Invalid::Malformed),
    };
    let message_id = Uuid::from_slice(reader.take(16)?).map_err(|_| Invalid::Malformed)?;
    let recipient_id = match usize::from(reader.byte()?) {
        0 => None,
        RECIPIENT_ID_LEN => {
            let mut id = [0u8; RECIPIENT_ID_LEN];
            id.copy_from_slice(reader.take(RECIPIENT_ID_LEN)?);
            Some(id)
        }
        _ => return Err(Invalid::Malformed),
    };
    let expires_at = u32::from_be_bytes(reader.array()?);
    let (link, url) = match kind {
        Kind::Open => (None, None),
        Kind::Click => {
            let link = u16::from_be_bytes(reader.array()?);
            let url = std::str::from_utf8(reader.rest()).map_err(|_| Invalid::Malformed)?;
            (Some(link), Some(url.to_owned()))
        }
    };
    if kind == Kind::Open && !reader.rest().is_empty() {
        return Err(Invalid::Malformed);
    }
    Ok(Claims {
        kind,
        message_id,
        recipient_id,
        expires_at,
        link,
        url,
    })
}

/// A cursor over the token bytes that fails with `Malformed` when short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Invalid> {
        let (head, tail) = self.0.split_at_checked(n).ok_or(Invalid::Malformed)?;
        self.0 = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, Invalid> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Invalid> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(vec![Key::new("k1", vec![7u8; 32])])
    }

    fn click() -> Claims {
        Claims {
            kind: Kind::Click,
            message_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            recipient_id: Some(ring().recipient_id("Bob@Example.com")),
            expires_at: 2_000_000_000,
            link: Some(3),
            url: Some("https://example.com/a?b=1&c=2#frag".into()),
        }
    }

    #[test]
    fn click_round_trips() {
        let ring = ring();
        let token = ring.sign(&click());
        let (claims, key_id) = ring.verify(&token).unwrap();
        assert_eq!(claims, click());
        assert_eq!(key_id, "k1");
    }

    #[test]
    fn recipient_id_ignores_case_and_hides_address() {
        let ring = ring();
        assert_eq!(
            ring.recipient_id("bob@example.com"),
            ring.recipient_id(" BOB@example.COM")
        );
        assert_ne!(
            ring.recipient_id("bob@example.com"),
            ring.recipient_id("alice@example.com")
        );
        let token = ring.sign(&click());
        let raw = URL_SAFE_NO_PAD.decode(token).unwrap();
        assert!(!raw.windows(3).any(|w| w.eq_ignore_ascii_case(b"bob")));
    }

    #[test]
    fn open_has_no_link_or_url() {
        let claims = Claims {
            kind: Kind::Open,
            link: None,
            url: None,
            ..click()
        };
        let (back, _) = ring().verify(&ring().sign(&claims)).unwrap();
        assert_eq!(back, claims);
    }

    #[test]
    fn rotated_key_still_verifies() {
        let old = ring();
        let token = old.sign(&click());
        let rotated = KeyRing::new(vec![
            Key::new("k2", vec![9u8; 32]),
            Key::new("k1", vec![7u8; 32]),
        ]);
        let (_, key_id) = rotated.verify(&token).unwrap();
        assert_eq!(key_id, "k1");
        let fresh = rotated.sign(&click());
        assert_eq!(old.verify(&fresh), Err(Invalid::UnknownKey("k2".into())));
    }

    #[test]
    fn wrong_secret_same_id_is_refused() {
        let token = ring().sign(&click());
        let other = KeyRing::new(vec![Key::new("k1", vec![8u8; 32])]);
        assert_eq!(other.verify(&token), Err(Invalid::Signature));
    }

    #[test]
    fn expiry() {
        let claims = click();
        assert!(!claims.is_expired(2_000_000_000));
        assert!(claims.is_expired(2_000_000_001));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(ring().verify("!!"), Err(Invalid::Encoding));
        assert_eq!(ring().verify(""), Err(Invalid::Malformed));
        assert_eq!(ring().verify("AAAA"), Err(Invalid::Malformed));
    }
}
