//! Editing one HTML part in place: its transfer encoding and charset.
//!
//! [`edit_html_part`] decodes a part's body (quoted-printable, base64,
//! identity) and charset (bytes as they are for ASCII-compatible charsets,
//! UTF-8 for UTF-16 and ISO-2022-JP), hands the HTML to the caller's edit
//! and encodes the result back into byte-range edits of the message: the
//! same encoding (quoted-printable lines no edit touched are copied as they
//! came), or quoted-printable when an identity line would pass 998 octets,
//! with the message's own line ending, and a delimiter that followed the
//! part still at the start of its line. What the edit does to the HTML is
//! the caller's business (`rewrite` with `html`).

use std::borrow::Cow;
use std::ops::Range;

use encoding_rs::{Encoding, UTF_8};

use super::charset::{self, Charset};
use super::transfer::{self, QpLine, TransferEncoding};
use super::{Edit, HtmlPart, PartSkip};

/// What the caller's edit made of the HTML it was given.
#[derive(Debug, Default)]
pub struct Edited {
    /// The edited document.
    pub html: Vec<u8>,
    /// The same as edits of the given document: sorted, not overlapping
    /// (so that quoted-printable lines they do not touch are kept).
    pub changes: Vec<Edit>,
}

/// The part's edit as edits of the message.
#[derive(Debug, Default)]
pub struct PartEdit {
    /// Byte-range edits of the message (header field and body).
    pub edits: Vec<Edit>,
    /// The body became quoted-printable to keep lines within 998 octets.
    pub reencoded: bool,
}

/// Decodes `part` of `raw`, lets `edit` change its HTML (given as bytes in
/// an ASCII-compatible encoding) and encodes it back. Fails, and the part
/// is left alone, when it does not decode, the edit fails, or the new body
/// would hold one of `delimiters` (the message's `--boundary`s).
pub fn edit_html_part(
    raw: &[u8],
    part: &HtmlPart,
    delimiters: &[Vec<u8>],
    edit: impl FnOnce(&[u8], &'static Encoding) -> Result<Edited, PartSkip>,
) -> Result<PartEdit, PartSkip> {
    let encoded = &raw[part.body.clone()];
    // Quoted-printable lines that no edit touches go out as they came.
    let mut qp_lines = None;
    let content = match part.transfer {
        TransferEncoding::QuotedPrintable => {
            let (decoded, lines) = transfer::decode_qp_lines(encoded);
            qp_lines = Some(lines);
            Cow::Owned(decoded)
        }
        _ => part.transfer.decode(encoded).ok_or(PartSkip::Undecodable)?,
    };
    let edited = match part.charset {
        Charset::AsciiCompatible(enc) => edit(&content, enc)?,
        Charset::Transcode(enc) => {
            // Edits are in UTF-8 offsets: every line is encoded again.
            qp_lines = None;
            let enc = charset::utf16_by_bom(enc, &content);
            let text = charset::to_utf8(enc, &content).ok_or(PartSkip::Undecodable)?;
            let edited = edit(text.as_bytes(), UTF_8)?;
            let utf8 = String::from_utf8(edited.html).map_err(|_| PartSkip::Undecodable)?;
            Edited {
                html: charset::from_utf8(enc, &utf8).ok_or(PartSkip::Undecodable)?,
                changes: Vec::new(),
            }
        }
    };
    let kept = qp_lines
        .as_deref()
        .map(|lines| (lines, &*content, &*edited.changes));
    let part_edit = encode_part(raw, part, edited.html, kept);
    if part_edit
        .edits
        .iter()
        .any(|(_, body)| super::collides(body, delimiters))
    {
        return Err(PartSkip::BoundaryCollision);
    }
    Ok(part_edit)
}

/// Re-applies the part's transfer encoding; an identity part whose lines
/// would pass 998 octets becomes quoted-printable and its header is updated.
/// `kept`: for a quoted-printable part, its lines, decoded content and the
/// changes made to that content, so that untouched lines are kept.
fn encode_part(
    raw: &[u8],
    part: &HtmlPart,
    html: Vec<u8>,
    kept: Option<(&[QpLine], &[u8], &[Edit])>,
) -> PartEdit {
    let newline = transfer::newline_of(raw);
    let encoded = &raw[part.body.clone()];
    let final_newline = encoded.ends_with(b"\n");
    let mut transfer = part.transfer;
    if transfer == TransferEncoding::Identity
        && transfer::has_line_longer_than(&html, transfer::MAX_LINE_LEN)
    {
        transfer = TransferEncoding::QuotedPrintable;
    }
    let mut edits = Vec::new();
    let header_outdated = transfer != part.transfer || !part.transfer_header_canonical;
    if transfer != TransferEncoding::Identity && header_outdated {
        let mut field = format!("Content-Transfer-Encoding: {}", transfer.name()).into_bytes();
        field.extend_from_slice(newline);
        match &part.transfer_header {
            Some(range) => edits.push((range.clone(), field)),
            None => edits.push((part.header_insert_at..part.header_insert_at, field)),
        }
    }
    let body = match (transfer, kept) {
        // The edited bytes are the body: no copy.
        (TransferEncoding::Identity, _) => html,
        (TransferEncoding::QuotedPrintable, Some((lines, decoded, changes))) => {
            transfer::encode_qp_edited(encoded, lines, decoded, changes, newline)
        }
        _ => transfer.encode(&html, newline, final_newline),
    };
    let body = delimiter_kept_on_its_line(raw, &part.body, body, newline);
    edits.push((part.body.clone(), body));
    PartEdit {
        edits,
        reencoded: transfer != part.transfer,
    }
}

/// `body`, the new bytes for `range` of `raw`, with a line break added
/// when the text after the range (a delimiter) started a line and would
/// no longer: an empty part has no line break of its own before the next
/// delimiter, and a pixel put there would glue the two (`<img … />--b`),
/// hiding the boundary from every parser that wants it at a line start
/// (issue 15). The pixel then sits on a line of its own.
fn delimiter_kept_on_its_line(
    raw: &[u8],
    range: &Range<usize>,
    mut body: Vec<u8>,
    newline: &[u8],
) -> Vec<u8> {
    let original = &raw[range.clone()];
    let text_follows = raw
        .get(range.end)
        .is_some_and(|c| !matches!(c, b'\r' | b'\n'));
    let started_a_line = match original {
        [] => range.start == 0 || raw[range.start - 1] == b'\n',
        _ => original.ends_with(b"\n"),
    };
    let starts_one = body.is_empty() || body.ends_with(b"\n");
    if text_follows && started_a_line && !starts_one {
        body.extend_from_slice(newline);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delimiter_right_after_an_empty_body_keeps_its_line() {
        let raw = b"Content-Type: text/html\n\n--b\n";
        let at = raw.len() - 4;
        let body = delimiter_kept_on_its_line(raw, &(at..at), b"<img>".to_vec(), b"\n");
        assert_eq!(body, b"<img>\n");
        // A body followed by its line break, or by the end, needs none.
        let raw = b"Content-Type: text/html\n\n<p>\n--b\n";
        let body = delimiter_kept_on_its_line(raw, &(25..28), b"<p><img>".to_vec(), b"\n");
        assert_eq!(body, b"<p><img>");
        let raw = b"Content-Type: text/html\n\n";
        let body = delimiter_kept_on_its_line(raw, &(25..25), b"<img>".to_vec(), b"\n");
        assert_eq!(body, b"<img>");
    }
}
