//! MIME: parsing a message, which parts to rewrite, editing them, and
//! splicing bytes back.
//!
//! Owns the parse ([`parse`]: the tree with byte offsets, mail-parser's
//! header parser), the walk over the MIME tree ([`html_parts`]), the
//! decoding and re-encoding of one HTML part around the caller's edit
//! ([`edit_html_part`]: transfer encodings, charsets, line endings) and the
//! byte-range edits that put it back. Only the ranges named in a [`Splice`]
//! change; every other byte of the message (headers, other parts,
//! boundaries, preamble, epilogue) is copied as is. What to put in a part
//! is `rewrite`'s business (with `html`); this module knows nothing of
//! tracking.

pub mod charset;
mod edit;
mod structure;
pub mod transfer;

pub use edit::{Edited, PartEdit, edit_html_part};
pub use structure::structure;

use std::ops::Range;

use mail_parser::{HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use charset::Charset;
use transfer::TransferEncoding;

/// Bytes that replace a range of some original (an empty range inserts).
pub type Edit = (Range<usize>, Vec<u8>);

/// A text/html part that may be rewritten.
#[derive(Debug, Clone)]
pub struct HtmlPart {
    /// The encoded body in the message.
    pub body: Range<usize>,
    pub transfer: TransferEncoding,
    pub charset: Charset,
    /// The part's Content-Transfer-Encoding field (with its line ending),
    /// to replace when the encoding must change.
    pub transfer_header: Option<Range<usize>>,
    /// Whether that field names the encoding plainly. `quoted-printable;`
    /// or `7-bit` are understood here but not by every client, so the field
    /// is rewritten when the body is re-encoded.
    pub transfer_header_canonical: bool,
    /// Where a new header field can go: after the Content-Type field.
    pub header_insert_at: usize,
}

/// Why a part that looks like HTML is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartSkip {
    /// Inside multipart/signed or multipart/encrypted: rewriting would
    /// break the signature (PITFALLS P8).
    Signed,
    /// A Content-Transfer-Encoding we do not know.
    UnknownEncoding,
    /// Base64 that does not decode, or a charset that does not round-trip.
    Undecodable,
    /// HTML lol_html could not parse.
    Unparsable,
    /// The header block never ends (no empty line): there is no body to
    /// put anything in, and appending would write into the header.
    NoBody,
    /// The re-encoded body would contain `--` and a boundary of the
    /// message, which lax parsers take for a part break (found by fuzzing).
    BoundaryCollision,
}

impl PartSkip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signed => "signed",
            Self::UnknownEncoding => "unknown_transfer_encoding",
            Self::Undecodable => "undecodable",
            Self::Unparsable => "unparsable_html",
            Self::NoBody => "no_body",
            Self::BoundaryCollision => "boundary_collision",
        }
    }
}

/// The HTML parts SPEC §3 says to rewrite: every text/html part that is not
/// an attachment, at any depth of multipart/*, never inside a signed or
/// encrypted multipart, never inside an attached message/rfc822 (that is
/// someone else's mail, carried as content).
pub fn html_parts(message: &Message<'_>) -> (Vec<HtmlPart>, Vec<PartSkip>) {
    let mut parts = Vec::new();
    let mut skips = Vec::new();
    if !message.parts.is_empty() {
        walk(message, 0, &mut parts, &mut skips, 0);
    }
    (parts, skips)
}

/// Every multipart boundary of the message, as the delimiter `--boundary`.
pub fn delimiters(message: &Message<'_>) -> Vec<Vec<u8>> {
    message
        .parts
        .iter()
        // Every part that names a boundary, multipart or not: a parser may
        // disagree with mail-parser about which ones are multiparts.
        .filter_map(|p| {
            p.content_type()?
                .attribute("boundary")
                .map(|b| format!("--{b}").into_bytes())
        })
        .collect()
}

/// Whether `body` holds a delimiter anywhere (not only at a line start:
/// some parsers look for it mid-line).
pub fn collides(body: &[u8], delimiters: &[Vec<u8>]) -> bool {
    delimiters
        .iter()
        .any(|d| memchr::memmem::find(body, d).is_some())
}

/// Why a message is relayed without looking inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unparsed {
    /// A byte-order mark before the header: standard parsers (Python's
    /// `email`, …) see no header field at all, so an edit would land in
    /// what they read as text (issue 15).
    ByteOrderMark,
    /// A line in the header block that is neither a field (`name:`) nor a
    /// continuation: standard parsers end the header there and read the
    /// rest as a plain-text body (an SMTP transcript, a mangled `From`).
    MalformedHeader,
    /// Not a message mail-parser can read.
    Unparsable,
}

impl Unparsed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ByteOrderMark => "byte_order_mark",
            Self::MalformedHeader => "malformed_header",
            Self::Unparsable => "unparsable_message",
        }
    }
}

/// The MIME tree of `raw` with byte offsets: the walk without decoding
/// bodies ([`structure`]), the full parse where that cannot say.
pub fn parse(raw: &[u8]) -> Result<Message<'_>, Unparsed> {
    if starts_with_byte_order_mark(raw) {
        return Err(Unparsed::ByteOrderMark);
    }
    let message = structure(raw)
        .or_else(|| parser().parse(raw))
        .ok_or(Unparsed::Unparsable)?;
    let head = &raw[..(message.parts[0].offset_body as usize).min(raw.len())];
    if !header_block_is_standard(head) {
        return Err(Unparsed::MalformedHeader);
    }
    Ok(message)
}

/// Whether every line of the header block is one standard parsers read as
/// header (Python's `email`: a field `name:` with a name of printable
/// ASCII, a continuation, the `From ` envelope line, the final empty
/// line). mail-parser reads on past other lines; they end the header, and
/// an edit would land in what they read as the body (issue 15).
fn header_block_is_standard(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line {
            [] | [b' ' | b'\t', ..] => true,
            _ if line.starts_with(b"From ") => true,
            _ => memchr::memchr(b':', line)
                .is_some_and(|colon| line[..colon].iter().all(|b| (33..=126).contains(b))),
        }
    })
}

/// The parser: MIME headers for the structure, every other field as
/// unstructured text (RFC 2047 decoded, for `X-LM-Tag`). Addresses, dates
/// and Received fields are not needed and not parsed.
pub fn parser() -> &'static MessageParser {
    static PARSER: std::sync::LazyLock<MessageParser> = std::sync::LazyLock::new(|| {
        MessageParser::new()
            .with_mime_headers()
            .default_header_text()
    });
    &PARSER
}

/// Whether the message starts with a byte-order mark (UTF-8 or UTF-16):
/// then standard parsers see no header field at all.
fn starts_with_byte_order_mark(raw: &[u8]) -> bool {
    raw.starts_with(b"\xEF\xBB\xBF") || raw.starts_with(b"\xFF\xFE") || raw.starts_with(b"\xFE\xFF")
}

/// Deeper than this is not a real message (mail-parser has its own limit).
const MAX_DEPTH: usize = 64;

fn walk(
    message: &Message<'_>,
    id: usize,
    parts: &mut Vec<HtmlPart>,
    skips: &mut Vec<PartSkip>,
    depth: usize,
) {
    let Some(part) = message.parts.get(id) else {
        return;
    };
    match &part.body {
        PartType::Multipart(children) if depth < MAX_DEPTH => {
            let subtype = part
                .content_type()
                .and_then(|ct| ct.subtype())
                .unwrap_or("")
                .to_ascii_lowercase();
            if subtype == "signed" || subtype == "encrypted" {
                if contains_html(message, children) {
                    skips.push(PartSkip::Signed);
                }
                return;
            }
            for &child in children {
                walk(message, child as usize, parts, skips, depth + 1);
            }
        }
        PartType::Multipart(_) | PartType::Message(_) => {}
        _ if is_html(part) && !is_attachment(part) => match html_part(&message.raw_message, part) {
            Ok(p) => parts.push(p),
            Err(skip) => skips.push(skip),
        },
        _ => {}
    }
}

fn contains_html(message: &Message<'_>, children: &[u32]) -> bool {
    children
        .iter()
        .any(|&c| match message.parts.get(c as usize).map(|p| &p.body) {
            Some(PartType::Multipart(grand)) => contains_html(message, grand),
            Some(_) => is_html(&message.parts[c as usize]),
            None => false,
        })
}

fn is_html(part: &MessagePart<'_>) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("text")
            && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("html"))
    })
}

fn is_attachment(part: &MessagePart<'_>) -> bool {
    part.content_disposition()
        .is_some_and(|cd| cd.ctype().eq_ignore_ascii_case("attachment"))
}

fn html_part(raw: &[u8], part: &MessagePart<'_>) -> Result<HtmlPart, PartSkip> {
    let head = &raw[..(part.offset_body as usize).min(raw.len())];
    if !(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n")) {
        return Err(PartSkip::NoBody);
    }
    let field = |name: HeaderName<'_>| part.headers.iter().find(|h| h.name == name);
    let transfer_field = field(HeaderName::ContentTransferEncoding);
    let transfer_value = transfer_field.and_then(|h| h.value.as_text());
    let transfer = TransferEncoding::parse(transfer_value).ok_or(PartSkip::UnknownEncoding)?;
    let canonical = transfer_value.is_none_or(|v| v.trim().eq_ignore_ascii_case(transfer.name()));
    let charset = Charset::from_label(part.content_type().and_then(|ct| ct.attribute("charset")));
    let content_type = field(HeaderName::ContentType).map(|h| h.offset_end as usize);
    let body = part.offset_body as usize..(part.offset_end as usize).max(part.offset_body as usize);
    Ok(HtmlPart {
        body,
        transfer,
        charset,
        transfer_header: transfer_field.map(|h| h.offset_field as usize..h.offset_end as usize),
        transfer_header_canonical: canonical,
        header_insert_at: content_type.unwrap_or(part.offset_header as usize),
    })
}

/// Byte-range edits to a message, applied in one pass.
#[derive(Debug, Default)]
pub struct Splice {
    edits: Vec<Edit>,
}

impl Splice {
    /// Replaces `range` of the original with `bytes` (an empty range inserts).
    pub fn replace(&mut self, range: Range<usize>, bytes: Vec<u8>) {
        self.edits.push((range, bytes));
    }

    pub fn remove(&mut self, range: Range<usize>) {
        self.edits.push((range, Vec::new()));
    }

    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// The original with every edit applied. Edits must not overlap; an
    /// edit overlapping an earlier one is dropped rather than corrupt bytes.
    pub fn apply(mut self, original: &[u8]) -> Vec<u8> {
        self.edits.sort_by_key(|(r, _)| (r.start, r.end));
        let extra: usize = self.edits.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::with_capacity(original.len() + extra);
        let mut cursor = 0;
        for (range, bytes) in self.edits {
            if range.start < cursor || range.end > original.len() {
                debug_assert!(false, "overlapping or out-of-range splice {range:?}");
                continue;
            }
            out.extend_from_slice(&original[cursor..range.start]);
            out.extend_from_slice(&bytes);
            cursor = range.end;
        }
        out.extend_from_slice(&original[cursor..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn parts_of(raw: &str) -> (Vec<HtmlPart>, Vec<PartSkip>) {
        let msg = MessageParser::default().parse(raw.as_bytes()).unwrap();
        html_parts(&msg)
    }

    #[test]
    fn finds_nested_html_but_not_attachments_signed_or_attached_messages() {
        let raw = "Content-Type: multipart/mixed; boundary=a\r\n\r\n\
--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
--b\r\nContent-Type: multipart/related; boundary=c\r\n\r\n\
--c\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>deep</p>\r\n--c--\r\n\
--b--\r\n\
--a\r\nContent-Type: text/html\r\nContent-Disposition: attachment; filename=a.html\r\n\r\n<p>att</p>\r\n\
--a\r\nContent-Type: multipart/signed; boundary=s\r\n\r\n\
--s\r\nContent-Type: text/html\r\n\r\n<p>signed</p>\r\n--s\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--s--\r\n\
--a\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: text/html\r\n\r\n<p>fwd</p>\r\n\
--a--\r\n";
        let (parts, skips) = parts_of(raw);
        assert_eq!(parts.len(), 1);
        assert_eq!(&raw[parts[0].body.clone()], "<p>deep</p>");
        assert_eq!(parts[0].transfer, TransferEncoding::QuotedPrintable);
        assert_eq!(skips, [PartSkip::Signed]);
    }

    #[test]
    fn a_header_block_without_end_has_no_body_to_rewrite() {
        // Found by fuzzing: the pixel went into the Subject field.
        let (parts, skips) = parts_of("Content-Type: text/html\r\nSubject: x");
        assert!(parts.is_empty());
        assert_eq!(skips, [PartSkip::NoBody]);
        let (parts, _) = parts_of("Content-Type: text/html\r\n\r\n");
        assert_eq!(parts.len(), 1, "an empty body after the blank line is fine");
    }

    #[test]
    fn unknown_transfer_encoding_is_skipped() {
        let (parts, skips) =
            parts_of("Content-Type: text/html\nContent-Transfer-Encoding: x-uuencode\n\nbegin\n");
        assert!(parts.is_empty());
        assert_eq!(skips, [PartSkip::UnknownEncoding]);
    }

    #[test]
    fn splice_applies_in_order() {
        let mut s = Splice::default();
        s.replace(6..11, b"there".to_vec());
        s.remove(0..1);
        s.replace(11..11, b"!".to_vec());
        assert_eq!(s.apply(b"hello world"), b"ello there!");
    }
}
