//! The dashboard's login session: a cookie whose value is an expiry time
//! and an HMAC-SHA256 of it, keyed by the API token (its SHA-256 digest,
//! which is all the API keeps). Nothing is stored on the server: changing
//! the token ends every session; logging out removes the browser's cookie.
//!
//! Value: `v1.<expiry, seconds since the epoch>.<base64url MAC>`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use hyper::HeaderMap;
use hyper::header::COOKIE;

/// The cookie's name.
pub const COOKIE_NAME: &str = "trackrelay_dashboard";
/// How long a login lasts.
pub const LIFETIME_SECS: i64 = 12 * 3600;
/// Domain separation: this MAC is for nothing but dashboard sessions.
const CONTEXT: &[u8] = b"trackrelay dashboard session v1\0";

fn mac(key: &[u8; 32], expiry: i64) -> crate::token::HmacSha256 {
    let mut mac = crate::token::hmac_sha256(key);
    mac.update(CONTEXT);
    mac.update(expiry.to_string().as_bytes());
    mac
}

/// A session value valid until `now_secs + LIFETIME_SECS`.
pub fn issue(key: &[u8; 32], now_secs: i64) -> String {
    let expiry = now_secs + LIFETIME_SECS;
    let tag = mac(key, expiry).finalize().into_bytes();
    format!("v1.{expiry}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Whether `value` is a session issued with `key` that has not expired.
/// The MAC is compared in constant time (`Mac::verify_slice`).
pub fn valid(key: &[u8; 32], value: &str, now_secs: i64) -> bool {
    let mut parts = value.splitn(3, '.');
    let (Some("v1"), Some(expiry), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(expiry) = expiry.parse::<i64>() else {
        return false;
    };
    // An expiry further away than a fresh login's was not issued here.
    if expiry <= now_secs || expiry > now_secs + LIFETIME_SECS {
        return false;
    }
    let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
        return false;
    };
    mac(key, expiry).verify_slice(&tag).is_ok()
}

/// The session cookie's value among the request's cookies, if any.
pub fn from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The `Set-Cookie` value that starts a session. `Secure` is left out:
/// the admin listener may be plain HTTP on loopback, where a browser
/// would drop a Secure cookie.
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE_NAME}={value}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={LIFETIME_SECS}"
    )
}

/// The `Set-Cookie` value that ends it.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const KEY: [u8; 32] = [7; 32];
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_session_is_valid_until_it_expires() {
        let value = issue(&KEY, NOW);
        assert!(valid(&KEY, &value, NOW));
        assert!(valid(&KEY, &value, NOW + LIFETIME_SECS - 1));
        assert!(!valid(&KEY, &value, NOW + LIFETIME_SECS));
        assert!(!valid(&[8; 32], &value, NOW), "another token's key");
    }

    #[test]
    fn forged_and_malformed_values_are_refused() {
        let value = issue(&KEY, NOW);
        let (head, tag) = value.rsplit_once('.').unwrap();
        // A later expiry with the old MAC.
        let later = format!("v1.{}.{tag}", NOW + LIFETIME_SECS + 60);
        assert!(!valid(&KEY, &later, NOW + 30));
        let mut flipped = tag.as_bytes().to_vec();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{head}.{}", String::from_utf8(flipped).unwrap());
        for bad in [
            "",
            "v1",
            "v1.x.y",
            "v2.1.abc",
            head,
            &flipped,
            &format!("{head}.!!"),
        ] {
            assert!(!valid(&KEY, bad, NOW), "{bad:?}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(
            COOKIE,
            HeaderValue::from_static("x=y; trackrelay_dashboard=v1.5.abc"),
        );
        assert_eq!(from_headers(&headers), Some("v1.5.abc"));
        assert_eq!(from_headers(&HeaderMap::new()), None);
        assert!(set_cookie("v").contains("HttpOnly; SameSite=Strict"));
    }
}
