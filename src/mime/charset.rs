//! The charset of an HTML part, and how to edit it without transcoding.
//!
//! For ASCII-compatible charsets (UTF-8, ISO-8859-*, windows-*, Shift_JIS,
//! GBK, Big5, …) the HTML is edited as bytes: markup and tracking URLs are
//! ASCII, so every other byte stays as it was. UTF-16 and ISO-2022-JP are
//! not ASCII-compatible: those parts are decoded to UTF-8, edited and
//! encoded back, and only when that round trip is exact.

use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE};

/// How the HTML bytes of a part are edited.
#[derive(Debug, Clone, Copy)]
pub enum Charset {
    /// Edit the bytes directly, reading attribute values in this encoding.
    AsciiCompatible(&'static Encoding),
    /// Transcode to UTF-8 and back.
    Transcode(&'static Encoding),
}

impl Charset {
    /// Resolves a MIME charset label. A missing or unknown label reads as
    /// UTF-8: bytes are kept either way, only non-UTF-8 link text would be
    /// unreadable (and such links are left alone).
    pub fn from_label(label: Option<&str>) -> Charset {
        let encoding = label
            .and_then(|l| Encoding::for_label(l.trim().trim_matches('"').as_bytes()))
            .unwrap_or(UTF_8);
        if encoding.is_ascii_compatible() {
            Charset::AsciiCompatible(encoding)
        } else {
            Charset::Transcode(encoding)
        }
    }
}

/// Decodes a non-ASCII-compatible body to UTF-8, if it encodes back to the
/// very same bytes.
pub fn to_utf8(encoding: &'static Encoding, bytes: &[u8]) -> Option<String> {
    let encoding = utf16_by_bom(encoding, bytes);
    let text = encoding
        .decode_without_bom_handling_and_without_replacement(bytes)?
        .into_owned();
    (from_utf8(encoding, &text)? == bytes).then_some(text)
}

/// Encodes UTF-8 text back into `encoding` (the inverse of [`to_utf8`]).
pub fn from_utf8(encoding: &'static Encoding, text: &str) -> Option<Vec<u8>> {
    if encoding == UTF_16LE {
        return Some(text.encode_utf16().flat_map(u16::to_le_bytes).collect());
    }
    if encoding == UTF_16BE {
        return Some(text.encode_utf16().flat_map(u16::to_be_bytes).collect());
    }
    let (bytes, _, had_errors) = encoding.encode(text);
    (!had_errors).then(|| bytes.into_owned())
}

/// The label "utf-16" means little-endian unless a byte-order mark says otherwise.
pub fn utf16_by_bom(encoding: &'static Encoding, bytes: &[u8]) -> &'static Encoding {
    if encoding == UTF_16LE || encoding == UTF_16BE {
        match bytes {
            [0xFE, 0xFF, ..] => return UTF_16BE,
            [0xFF, 0xFE, ..] => return UTF_16LE,
            _ => {}
        }
    }
    encoding
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(
            matches!(Charset::from_label(Some("ISO-8859-1")), Charset::AsciiCompatible(e) if e.name() == "windows-1252")
        );
        assert!(matches!(
            Charset::from_label(Some("\"utf-16\"")),
            Charset::Transcode(_)
        ));
        assert!(
            matches!(Charset::from_label(Some("x-unknown")), Charset::AsciiCompatible(e) if e == UTF_8)
        );
        assert!(matches!(Charset::from_label(None), Charset::AsciiCompatible(e) if e == UTF_8));
    }

    #[test]
    fn utf16_round_trip_respects_bom() {
        let be: Vec<u8> = [0xFE, 0xFF, 0, b'<', 0, b'a'].to_vec();
        let text = to_utf8(UTF_16LE, &be).unwrap();
        assert_eq!(text, "\u{feff}<a");
        assert_eq!(from_utf8(utf16_by_bom(UTF_16LE, &be), &text).unwrap(), be);
    }

    #[test]
    fn lossy_round_trip_is_refused() {
        // An unpaired surrogate cannot come back byte for byte.
        assert_eq!(to_utf8(UTF_16LE, &[0x00, 0xD8, b'a', 0]), None);
    }
}
