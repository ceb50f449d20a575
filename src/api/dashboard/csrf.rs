//! The dashboard forms' token against cross-site request forgery: an
//! HMAC-SHA256 of the login session (the session cookie's value), keyed by
//! the API token's digest, so it is worth nothing without that session and
//! dies with it. A form carries it in a hidden field; the POST is refused
//! (403) unless it is there and right, compared in constant time. This is
//! on top of the same-origin check every dashboard POST passes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;

/// The hidden field's name.
pub const FIELD: &str = "csrf";
/// Domain separation: this MAC is for nothing but form tokens.
const CONTEXT: &[u8] = b"trackrelay dashboard form v1\0";

fn mac(key: &[u8; 32], session: &str) -> crate::token::HmacSha256 {
    let mut mac = crate::token::hmac_sha256(key);
    mac.update(CONTEXT);
    mac.update(session.as_bytes());
    mac
}

/// The token of the forms shown in `session` (a bearer-token request has
/// no session: the empty string stands for it).
pub fn token(key: &[u8; 32], session: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, session).finalize().into_bytes())
}

/// Whether `presented` is the token of `session` (constant time:
/// `Mac::verify_slice`).
pub fn valid(key: &[u8; 32], session: &str, presented: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(presented) else {
        return false;
    };
    mac(key, session).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_holds_for_its_session_only() {
        let key = [3; 32];
        let t = token(&key, "v1.100.abc");
        assert!(valid(&key, "v1.100.abc", &t));
        assert!(!valid(&key, "v1.101.abc", &t), "another session");
        assert!(!valid(&[4; 32], "v1.100.abc", &t), "another API token");
        for bad in ["", "x", "!!", &t[1..]] {
            assert!(!valid(&key, "v1.100.abc", bad), "{bad:?}");
        }
    }
}
