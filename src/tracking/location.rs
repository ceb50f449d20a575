//! The `Location` header of a click redirect: exactly the signed URL.
//!
//! The token carries the URL as a mail client would open it (entities
//! decoded, SPEC §3). Most URLs can go into the header as they are; a few
//! bytes cannot: controls, space, DEL (not allowed in a header value or a
//! URL) and non-ASCII (not allowed in a URL; browsers would send them as
//! UTF-8 percent-escapes anyway). Only those are percent-encoded, each
//! UTF-8 byte as `%XX`; everything else, including existing `%XX` escapes,
//! `#fragments` and characters such as `|` or `{`, is kept byte for byte,
//! so the browser ends up exactly where the link in the mail pointed.

/// The header value for a redirect to `url`.
pub fn encode(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for &b in url.as_bytes() {
        if needs_escape(b) {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn needs_escape(b: u8) -> bool {
    b <= b' ' || b >= 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_are_kept_byte_for_byte() {
        for url in [
            "https://example.com/a?b=1&c=2#frag",
            "https://example.com/%E2%82%AC?q=%20x",
            "http://example.com/{x}|y^z`\"<>\\",
            "https://user@example.com:8443/p;a=b?x=y&z",
        ] {
            assert_eq!(encode(url), url);
        }
    }

    #[test]
    fn spaces_controls_and_non_ascii_are_escaped_as_utf8() {
        assert_eq!(
            encode("https://example.com/caf\u{e9} menu?q=\u{20ac}\t1#\u{fc}"),
            "https://example.com/caf%C3%A9%20menu?q=%E2%82%AC%091#%C3%BC"
        );
        assert_eq!(encode("http://x/\r\n\x7f"), "http://x/%0D%0A%7F");
    }

    #[test]
    fn every_output_is_a_valid_header_value() {
        let all: String = (1u32..0x300).filter_map(char::from_u32).collect();
        let value = encode(&all);
        assert!(hyper::header::HeaderValue::from_str(&value).is_ok());
        assert!(value.bytes().all(|b| b.is_ascii_graphic()));
    }
}
