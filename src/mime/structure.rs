//! The MIME tree without the bodies.
//!
//! `MessageParser::parse` decodes every body (transfer encoding, then
//! charset to UTF-8), which was a third of a rewrite's time, and none of it
//! is used: the rewrite decodes the HTML parts itself. [`structure`] finds
//! the same tree the way mail-parser does (its header parser for each part,
//! its rules for finding boundaries and part ends, read from its source)
//! and leaves every leaf body empty. What it does not model (attached
//! messages, multipart/digest, a missing boundary, a header block that
//! never ends) gives `None`, and the caller parses the whole message.
//! `tests/mime_structure.rs` checks over the corpus and generated messages
//! that the tree is the one `parse` gives.

use std::borrow::Cow;

use mail_parser::{Encoding, Header, HeaderName, Message, MessagePart, PartType};
use memchr::memmem;

/// Deeper nesting than this goes to the full parse.
const MAX_DEPTH: usize = 60;

/// The parts of `raw` (offsets, headers, multipart children) as
/// [`super::parser`]`().parse(raw)` gives them, leaf bodies empty; `None`
/// where only the full parse can say.
pub fn structure(raw: &[u8]) -> Option<Message<'_>> {
    if raw.len() >= u32::MAX as usize {
        return None;
    }
    let mut parts: Vec<MessagePart<'_>> = Vec::new();
    // Open multiparts: delimiter (`--boundary`), part index, children.
    let mut open: Vec<(Vec<u8>, usize, Vec<u32>)> = Vec::new();
    let mut pos = 0;
    'parts: loop {
        let (headers, body) = headers_at(raw, pos)?;
        let index = parts.len();
        if let Some((_, _, children)) = open.last_mut() {
            children.push(index as u32);
        }
        let content_type = headers
            .iter()
            .rev()
            .find(|h| h.name == HeaderName::ContentType)
            .and_then(|h| h.value.as_content_type());
        let ctype = content_type.map(|c| c.ctype());
        let subtype = content_type.and_then(|c| c.subtype());
        let boundary = content_type.and_then(|c| c.attribute("boundary"));
        if ctype == Some("multipart")
            && let Some(boundary) = boundary
        {
            let delimiter = [b"--", boundary.as_bytes()].concat();
            if let Some(at) = memmem::find(&raw[body..], &delimiter) {
                if subtype == Some("digest") || open.len() >= MAX_DEPTH {
                    // Digest parts default to message/rfc822.
                    return None;
                }
                parts.push(part(headers, pos, body, 0, PartType::Multipart(Vec::new())));
                pos = skip_crlf(raw, body + at + delimiter.len());
                open.push((delimiter, index, Vec::new()));
                continue 'parts;
            }
            // No first boundary: mail-parser reads the part as text.
        }
        if ctype == Some("message") && matches!(subtype, Some("rfc822" | "global")) {
            return None;
        }
        let Some((delimiter, ..)) = open.last() else {
            parts.push(part(headers, pos, body, raw.len(), leaf()));
            break;
        };
        let (end, mut after) = part_end(raw, body, delimiter)?;
        parts.push(part(headers, pos, body, end, leaf()));
        loop {
            let (ended, next) = multipart_end(raw, after);
            if !ended {
                if next >= raw.len() {
                    return None;
                }
                pos = next;
                continue 'parts;
            }
            let (_, index, children) = open.pop()?;
            parts[index].body = PartType::Multipart(children);
            match open.last() {
                Some((parent, ..)) => {
                    let (line_start, next) = next_delimiter_line(raw, next, parent)?;
                    parts[index].offset_end = line_start as u32;
                    after = next;
                }
                None => {
                    parts[index].offset_end = next as u32;
                    break 'parts;
                }
            }
        }
    }
    parts[0].offset_end = raw.len() as u32;
    Some(Message {
        parts,
        raw_message: Cow::Borrowed(raw),
        ..Message::default()
    })
}

fn leaf() -> PartType<'static> {
    PartType::Text(Cow::Borrowed(""))
}

fn part<'x>(
    headers: Vec<Header<'x>>,
    header: usize,
    body: usize,
    end: usize,
    kind: PartType<'x>,
) -> MessagePart<'x> {
    MessagePart {
        headers,
        is_encoding_problem: false,
        body: kind,
        encoding: Encoding::None,
        offset_header: header as u32,
        offset_body: body as u32,
        offset_end: end as u32,
    }
}

/// The header fields of the part at `pos` (offsets in `raw`) and where its
/// body starts, after the empty line.
fn headers_at(raw: &[u8], pos: usize) -> Option<(Vec<Header<'_>>, usize)> {
    let slice = &raw[pos..];
    match slice {
        [b'\n', ..] => return Some((Vec::new(), pos + 1)),
        [b'\r', b'\n', ..] => return Some((Vec::new(), pos + 2)),
        _ => {}
    }
    let mut message = super::parser().parse_headers(slice)?;
    if message.parts.len() != 1 {
        return None;
    }
    let mut headers = std::mem::take(&mut message.parts[0].headers);
    let shift = pos as u32;
    for h in &mut headers {
        h.offset_field += shift;
        h.offset_start += shift;
        h.offset_end += shift;
    }
    let last = headers.last()?.offset_end as usize;
    let body = match raw.get(last..)? {
        [b'\n', ..] => last + 1,
        [b'\r', b'\n', ..] => last + 2,
        _ => return None,
    };
    Some((headers, body))
}

/// Where a leaf body that starts at `body` ends, and where the text after
/// its closing delimiter starts (mail-parser's `mime_part`): the end is the
/// line break before the delimiter when the delimiter starts a line.
fn part_end(raw: &[u8], body: usize, delimiter: &[u8]) -> Option<(usize, usize)> {
    let d = body + memmem::find(&raw[body..], delimiter)?;
    let end = if d == body {
        body
    } else if raw[d - 1] == b'\n' {
        if d - 1 > body && raw[d - 2] == b'\r' {
            d - 2
        } else {
            d - 1
        }
    } else {
        d
    };
    Some((end, d + delimiter.len()))
}

/// After a delimiter: `--` closes the multipart; otherwise the line break
/// (and stray whitespace) is skipped to the next part's headers.
fn multipart_end(raw: &[u8], at: usize) -> (bool, usize) {
    match (raw.get(at), raw.get(at + 1)) {
        (Some(b'\r'), Some(b'\n')) => (false, at + 2),
        (Some(b'-'), Some(b'-')) => (true, at + 2),
        (Some(b'\n'), _) => (false, at + 1),
        (Some(a), _) if a.is_ascii_whitespace() => (false, skip_crlf(raw, at + 1)),
        _ => (false, at),
    }
}

fn skip_crlf(raw: &[u8], mut at: usize) -> usize {
    while let Some(&c) = raw.get(at) {
        match c {
            b'\r' | b' ' | b'\t' => at += 1,
            b'\n' => return at + 1,
            _ => break,
        }
    }
    at
}

/// The parent's next delimiter after a closed multipart: where the line
/// before it ends (the multipart's end) and where the text after it starts.
fn next_delimiter_line(raw: &[u8], from: usize, delimiter: &[u8]) -> Option<(usize, usize)> {
    let d = from + memmem::find(&raw[from..], delimiter)?;
    let line_start = match memchr::memrchr(b'\n', &raw[from..d]) {
        Some(i) => {
            let q = from + i;
            if q > from && raw[q - 1] == b'\r' {
                q - 1
            } else {
                q
            }
        }
        None => from,
    };
    Some((line_start, d + delimiter.len()))
}
