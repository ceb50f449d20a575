//! Content-Transfer-Encoding: decoding and re-encoding a part's body.
//!
//! Quoted-printable is done here rather than with a crate: the
//! `quoted_printable` crate drops 8-bit bytes and forces CRLF, and
//! mail-parser's decoder refuses the stray `=` that real mail is full of.
//! Both would lose or refuse bytes a mail client shows. Decoding here is
//! lenient the way mail clients are (an invalid escape stays as it is), and
//! the newline style of the message is kept in both directions.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Longest encoded line we write, as RFC 2045 requires for both encodings.
pub const ENCODED_LINE_LEN: usize = 76;
/// Longest line RFC 5322 allows, without its CRLF.
pub const MAX_LINE_LEN: usize = 998;

/// A part's Content-Transfer-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    /// 7bit, 8bit, binary or none given: the body is the content.
    Identity,
    QuotedPrintable,
    Base64,
}

impl TransferEncoding {
    /// Parses a header value as mail clients do, tolerating the variants
    /// real mail has (`7-bit`, `8bits`, `quoted-printable;`); `None` for
    /// encodings we do not know (`x-uuencode`…): such parts are left alone.
    pub fn parse(value: Option<&str>) -> Option<Self> {
        let Some(value) = value else {
            return Some(Self::Identity);
        };
        let token = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match token.as_str() {
            "" | "7bit" | "8bit" | "binary" | "7-bit" | "8-bit" | "7bits" | "8bits" => {
                Some(Self::Identity)
            }
            "quoted-printable" => Some(Self::QuotedPrintable),
            "base64" => Some(Self::Base64),
            _ => None,
        }
    }

    /// The name to write in a Content-Transfer-Encoding field.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "8bit",
            Self::QuotedPrintable => "quoted-printable",
            Self::Base64 => "base64",
        }
    }

    /// Decodes a body; `None` when it cannot be decoded without guessing.
    /// Identity bodies are borrowed, not copied.
    pub fn decode(self, body: &[u8]) -> Option<Cow<'_, [u8]>> {
        match self {
            Self::Identity => Some(Cow::Borrowed(body)),
            Self::QuotedPrintable => Some(Cow::Owned(decode_qp(body))),
            Self::Base64 => decode_base64(body).map(Cow::Owned),
        }
    }

    /// Encodes content with the given newline, ending with one when
    /// `final_newline` (so the part keeps the shape it had).
    pub fn encode(self, content: &[u8], newline: &[u8], final_newline: bool) -> Vec<u8> {
        match self {
            Self::Identity => content.to_vec(),
            // A body that ended in a soft break keeps that shape.
            Self::QuotedPrintable => {
                encode_qp_ending(content, newline, final_newline && !content.ends_with(b"\n"))
            }
            Self::Base64 => {
                let mut out = encode_base64(content, newline);
                if final_newline {
                    out.extend_from_slice(newline);
                }
                out
            }
        }
    }
}

/// The newline a message uses: CRLF when its first line ends in CRLF.
pub fn newline_of(message: &[u8]) -> &'static [u8] {
    match memchr_lf(message) {
        Some(i) if i > 0 && message[i - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => b"\r\n",
    }
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Length of the longest line, without its line ending.
pub fn max_line_len(bytes: &[u8]) -> usize {
    let mut longest = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len())) {
        let line = &bytes[start..end];
        longest = longest.max(line.strip_suffix(b"\r").unwrap_or(line).len());
        start = end + 1;
    }
    longest
}

/// Whether a line (without its line ending) is longer than `limit`: the
/// same answer as `max_line_len(bytes) > limit`, looking at each window of
/// `limit + 1` bytes once instead of at every line.
pub fn has_line_longer_than(bytes: &[u8], limit: usize) -> bool {
    // A line break among the next `limit + 1` bytes ends every line that
    // starts in them before it (within the limit); the last such line
    // starts after the last break.
    let window = limit + 1;
    let mut start = 0;
    while bytes.len() - start > limit {
        let end = (start + window).min(bytes.len());
        match memchr::memrchr(b'\n', &bytes[start..end]) {
            Some(i) => start += i + 1,
            None => {
                // No line break in the window: measure this line exactly.
                let line_end =
                    memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
                let line = &bytes[start..line_end];
                if line.strip_suffix(b"\r").unwrap_or(line).len() > limit {
                    return true;
                }
                if line_end == bytes.len() {
                    return false;
                }
                start = line_end + 1;
            }
        }
    }
    false
}

/// Decodes quoted-printable (RFC 2045 §6.7) leniently: soft breaks joined,
/// transport padding at line ends dropped, `=XX` decoded in either case, any
/// other `=` kept literally. Hard line breaks keep their CRLF or LF.
pub fn decode_qp(body: &[u8]) -> Vec<u8> {
    decode_qp_lines(body).0
}

/// Where one hard line of a quoted-printable body ends: in the body (after
/// its line break, soft breaks included) and in the decoded text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QpLine {
    pub encoded_end: usize,
    pub decoded_end: usize,
    /// A physical line of it passes 998 octets: never kept as it came.
    pub too_long: bool,
}

/// [`decode_qp`], and where each hard line ends on both sides, so that
/// [`encode_qp_edited`] can keep the lines an edit does not touch.
pub fn decode_qp_lines(body: &[u8]) -> (Vec<u8>, Vec<QpLine>) {
    let mut out = Vec::with_capacity(body.len());
    let mut lines = Vec::with_capacity(body.len() / 64 + 1);
    let mut too_long = false;
    let mut start = 0;
    while start < body.len() {
        let end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |i| start + i + 1);
        let (content, ending) = split_ending(&body[start..end]);
        too_long |= content.len() > MAX_LINE_LEN;
        // Rule 3: trailing whitespace is padding added in transport.
        let content = trim_end_wsp(content);
        start = end;
        if let Some(soft) = content.strip_suffix(b"=") {
            decode_qp_line(soft, &mut out);
            continue;
        }
        decode_qp_line(content, &mut out);
        out.extend_from_slice(ending);
        lines.push(QpLine {
            encoded_end: end,
            decoded_end: out.len(),
            too_long,
        });
        too_long = false;
    }
    if lines.last().map_or(0, |l| l.encoded_end) != body.len() {
        // The body ends in a soft break.
        lines.push(QpLine {
            encoded_end: body.len(),
            decoded_end: out.len(),
            too_long,
        });
    }
    (out, lines)
}

/// Quoted-printable for `decoded` with `edits` (sorted, not overlapping,
/// ranges in `decoded`) applied: the hard lines of `encoded` that no edit
/// touches are copied as they came, the others are encoded again. `lines`
/// is what [`decode_qp_lines`] said of `encoded`.
pub fn encode_qp_edited(
    encoded: &[u8],
    lines: &[QpLine],
    decoded: &[u8],
    edits: &[super::Edit],
    newline: &[u8],
) -> Vec<u8> {
    let extra: usize = edits.iter().map(|(_, b)| b.len() + b.len() / 8).sum();
    let mut out = Vec::with_capacity(encoded.len() + extra + 16);
    let mut edits = edits.iter().peekable();
    let (mut enc_start, mut dec_start) = (0, 0);
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        // An insertion where a line ends belongs to the next one, unless
        // there is none.
        let in_line = |at: usize, i: usize| at < lines[i].decoded_end || i + 1 == lines.len();
        let touched = edits.peek().is_some_and(|(r, _)| in_line(r.start, i));
        if !touched && !line.too_long {
            out.extend_from_slice(&encoded[enc_start..line.encoded_end]);
            (enc_start, dec_start) = (line.encoded_end, line.decoded_end);
            i += 1;
            continue;
        }
        // The group of lines the edits starting here reach into.
        let mut content = Vec::new();
        let mut cursor = dec_start;
        loop {
            while let Some((range, bytes)) = edits.next_if(|(r, _)| in_line(r.start, i)) {
                content.extend_from_slice(&decoded[cursor.min(range.start)..range.start]);
                content.extend_from_slice(bytes);
                cursor = cursor.max(range.end);
            }
            let end = lines[i].decoded_end;
            // The group ends where its text ends with a line break: an edit
            // past the line, or one that took its line break, takes the
            // next line in too (else the next line would be glued on).
            let ends_in_break = if cursor < end {
                decoded[end - 1] == b'\n'
            } else {
                cursor == end && content.ends_with(b"\n")
            };
            if i + 1 < lines.len() && (cursor > end || !ends_in_break) {
                i += 1;
                continue;
            }
            break;
        }
        let end = lines[i].decoded_end;
        content.extend_from_slice(&decoded[cursor.min(end)..end]);
        let group_end = lines[i].encoded_end;
        // A body that ended in a soft break keeps that shape.
        let soft_end =
            group_end == encoded.len() && encoded.ends_with(b"\n") && !content.ends_with(b"\n");
        out.extend_from_slice(&encode_qp_ending(&content, newline, soft_end));
        (enc_start, dec_start) = (group_end, end);
        i += 1;
    }
    if lines.is_empty() {
        // An empty body: only insertions.
        let content: Vec<u8> = edits.flat_map(|(_, b)| b.iter().copied()).collect();
        out.extend_from_slice(&encode_qp(&content, newline));
    }
    out
}

fn split_ending(line: &[u8]) -> (&[u8], &[u8]) {
    if let Some(rest) = line.strip_suffix(b"\r\n") {
        (rest, b"\r\n")
    } else if let Some(rest) = line.strip_suffix(b"\n") {
        (rest, b"\n")
    } else {
        (line, b"")
    }
}

fn trim_end_wsp(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn decode_qp_line(line: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(eq) = memchr::memchr(b'=', &line[i..]).map(|j| i + j) {
        out.extend_from_slice(&line[i..eq]);
        if let (Some(h), Some(l)) = (
            line.get(eq + 1).and_then(hex),
            line.get(eq + 2).and_then(hex),
        ) {
            out.push(h << 4 | l);
            i = eq + 3;
        } else {
            out.push(b'=');
            i = eq + 1;
        }
    }
    out.extend_from_slice(&line[i..]);
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

/// Encodes text as quoted-printable: hard line breaks stay line breaks,
/// each with the ending it had (CRLF or LF), soft breaks use `newline`;
/// lines are wrapped at 76 characters with soft breaks,
/// escapes are never split, and a leading `.`, `-` or `From ` is escaped so
/// no transport can mangle it and no line can look like a MIME boundary.
pub fn encode_qp(content: &[u8], newline: &[u8]) -> Vec<u8> {
    encode_qp_ending(content, newline, false)
}

/// [`encode_qp`], ending in a soft break when `soft_end` (the last line
/// then keeps a column for the `=`).
fn encode_qp_ending(content: &[u8], newline: &[u8], soft_end: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 8);
    for line in content.split_inclusive(|&b| b == b'\n') {
        let (text, ending) = split_ending(line);
        if ending.is_empty() || ending == newline {
            encode_qp_line(text, newline, soft_end && ending.is_empty(), &mut out);
            out.extend_from_slice(ending);
        } else {
            encode_qp_foreign_ending(line, newline, &mut out);
        }
    }
    if soft_end {
        soft_break(&mut out, newline);
    }
    out
}

/// A line whose break is not the message's (CRLF decoded from `=0D=0A` in
/// an LF message, a lone LF in a CRLF one): the bytes that differ are
/// escaped, so the content decodes to the same bytes and every line of the
/// message keeps the message's own ending.
fn encode_qp_foreign_ending(line: &[u8], newline: &[u8], out: &mut Vec<u8>) {
    if newline == b"\n" {
        // `text\r\n`: `text=0D` and a hard LF break.
        encode_qp_line(&line[..line.len() - 1], newline, false, out);
        out.extend_from_slice(newline);
    } else {
        // `text\n`: `text=0A` and a soft break.
        encode_qp_line(line, newline, true, out);
        soft_break(out, newline);
    }
}

/// `more`: a soft break follows the line, so its last byte is no line end.
fn encode_qp_line(text: &[u8], newline: &[u8], more: bool, out: &mut Vec<u8>) {
    let n = text.len();
    // Past the last byte when more follows: no byte is the line's last.
    let end = if more { n + 1 } else { n };
    let mut col = 0;
    let mut i = 0;
    while i < n {
        let b = text[i];
        let last = i + 1 == end;
        // Keep room for the soft-break '=' unless this is the line's end.
        let room = if last {
            ENCODED_LINE_LEN
        } else {
            ENCODED_LINE_LEN - 1
        };
        // A line starting with `-` could read as a MIME boundary (`--b`)
        // once soft breaks are added (found by fuzzing).
        let special_start =
            col == 0 && (b == b'.' || b == b'-' || (b == b'F' && text[i..].starts_with(b"From ")));
        if !special_start && qp_literal(b, last) {
            if col + 1 > room {
                soft_break(out, newline);
                col = 0;
                // The byte now starts a line: checked again.
                continue;
            }
            // Copy the run of literal bytes that fits on this line.
            let mut j = i + 1;
            col += 1;
            while j < n && col < ENCODED_LINE_LEN - 1 && qp_literal(text[j], j + 1 == end) {
                j += 1;
                col += 1;
            }
            // The line's last byte may take the last column.
            if j < n && j + 1 == end && col == ENCODED_LINE_LEN - 1 && qp_literal(text[j], true) {
                j += 1;
                col += 1;
            }
            out.extend_from_slice(&text[i..j]);
            i = j;
        } else {
            if col + 3 > room {
                soft_break(out, newline);
                col = 0;
            }
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            col += 3;
            i += 1;
        }
    }
}

/// Whether a byte is written as itself (a space or tab only inside a line).
fn qp_literal(b: u8, last: bool) -> bool {
    match b {
        b'=' => false,
        b' ' | b'\t' => !last,
        33..=126 => true,
        _ => false,
    }
}

fn soft_break(out: &mut Vec<u8>, newline: &[u8]) {
    out.push(b'=');
    out.extend_from_slice(newline);
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Lenient base64: whitespace ignored, padding optional. Anything else
/// outside the alphabet means we cannot be sure what the content is.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

pub fn decode_base64(body: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    LENIENT.decode(clean).ok()
}

/// Base64 in lines of 76 characters, without a final newline.
pub fn encode_base64(content: &[u8], newline: &[u8]) -> Vec<u8> {
    let flat = STANDARD.encode(content);
    let mut out = Vec::with_capacity(flat.len() + flat.len() / ENCODED_LINE_LEN * newline.len());
    for (i, chunk) in flat.as_bytes().chunks(ENCODED_LINE_LEN).enumerate() {
        if i > 0 {
            out.extend_from_slice(newline);
        }
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn transfer_encoding_names_as_real_mail_writes_them() {
        assert_eq!(
            TransferEncoding::parse(None),
            Some(TransferEncoding::Identity)
        );
        assert_eq!(
            TransferEncoding::parse(Some(" 7-bit")),
            Some(TransferEncoding::Identity)
        );
        assert_eq!(
            TransferEncoding::parse(Some("8bits")),
            Some(TransferEncoding::Identity)
        );
        assert_eq!(
            TransferEncoding::parse(Some("Quoted-Printable;")),
            Some(TransferEncoding::QuotedPrintable)
        );
        assert_eq!(
            TransferEncoding::parse(Some("BASE64")),
            Some(TransferEncoding::Base64)
        );
        assert_eq!(TransferEncoding::parse(Some("x-uuencode")), None);
        assert_eq!(TransferEncoding::parse(Some("text/html")), None);
    }

    #[test]
    fn qp_decodes_like_a_mail_client() {
        assert_eq!(decode_qp(b"a=3Db=\r\nc \r\nd"), b"a=bc\r\nd");
        assert_eq!(decode_qp(b"x=3db\n"), b"x=b\n");
        // A stray '=' (common in broken mail) is kept, not refused.
        assert_eq!(
            decode_qp(b"href=\"http://x/?a=b\""),
            b"href=\"http://x/?a=b\""
        );
        assert_eq!(decode_qp(b"caf\xe9 =\n"), b"caf\xe9 ");
    }

    #[test]
    fn qp_encoding_keeps_lines_short_and_special_starts_escaped() {
        let long = "x".repeat(200) + " \nFrom me\n.dot\n--boundary\n";
        let enc = encode_qp(long.as_bytes(), b"\r\n");
        assert!(max_line_len(&enc) <= ENCODED_LINE_LEN);
        let text = String::from_utf8(enc.clone()).unwrap();
        // Every break uses the given newline; a bare LF is escaped.
        assert!(
            text.contains(" =0A=\r\n=46rom me=0A=\r\n=2Edot=0A=\r\n=2D-boundary=0A=\r\n"),
            "{text}"
        );
        assert!(!text.replace("\r\n", "").contains('\n'), "{text}");
        assert!(text.contains("=\r\n"), "{text}");
        assert_eq!(decode_qp(&enc), long.as_bytes());
    }

    #[test]
    fn base64_wraps_and_round_trips() {
        let data: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let enc = encode_base64(&data, b"\n");
        assert!(max_line_len(&enc) == ENCODED_LINE_LEN);
        assert_eq!(decode_base64(&enc).unwrap(), data);
        assert_eq!(decode_base64(b"aGVsbG8\r\n"), Some(b"hello".to_vec()));
        assert_eq!(decode_base64(b"aGV*sbG8"), None);
    }

    const QP_PIECES: &[&[u8]] = &[
        b"a",
        b"b",
        b" ",
        b".",
        b"-",
        b"From ",
        b"F",
        b"=",
        b"\t",
        b"\r\n",
        b"\n",
        b"\xe9",
        b"\x00",
        b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvw",
    ];

    /// The byte-at-a-time encoder the run-copying one replaced.
    fn encode_qp_line_reference(text: &[u8], newline: &[u8], out: &mut Vec<u8>) {
        let mut col = 0;
        let mut escaped;
        for (i, &b) in text.iter().enumerate() {
            let at_line_start = col == 0;
            let last = i + 1 == text.len();
            let literal = match b {
                b'=' => false,
                b' ' | b'\t' => !last,
                // A line starting with `-` could read as a MIME boundary
                // (`--b`) once soft breaks are added (found by fuzzing).
                b'.' | b'-' => !at_line_start,
                b'F' => !(at_line_start && text[i..].starts_with(b"From ")),
                33..=126 => true,
                _ => false,
            };
            let piece: &[u8] = if literal {
                std::slice::from_ref(&text[i])
            } else {
                escaped = [b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
                &escaped
            };
            // Keep room for the soft-break '=' unless this is the line's end.
            let room = if last {
                ENCODED_LINE_LEN
            } else {
                ENCODED_LINE_LEN - 1
            };
            if col + piece.len() > room {
                out.push(b'=');
                out.extend_from_slice(newline);
                col = 0;
                // A piece that starts the new line gets the same checks again.
                if (b == b'.' || b == b'-' || (b == b'F' && text[i..].starts_with(b"From ")))
                    && literal
                {
                    let e = [b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
                    out.extend_from_slice(&e);
                    col += 3;
                    continue;
                }
            }
            // A one-byte slice copy is far slower than a push on this hot path.
            match piece {
                [one] => out.push(*one),
                _ => out.extend_from_slice(piece),
            }
            col += piece.len();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn long_line_check_is_max_line_len(
            lines in proptest::collection::vec((0usize..40, any::<bool>(), any::<bool>()), 0..30),
            limit in 0usize..30,
        ) {
            let mut bytes = Vec::new();
            for (len, cr, lf) in lines {
                bytes.extend(std::iter::repeat_n(b'x', len));
                if cr { bytes.push(b'\r'); }
                if lf { bytes.push(b'\n'); }
            }
            prop_assert_eq!(has_line_longer_than(&bytes, limit), max_line_len(&bytes) > limit);
        }

        #[test]
        fn qp_edits_keep_untouched_lines_and_decode_to_the_edited_text(
            pieces in proptest::collection::vec(proptest::sample::select(QP_PIECES), 0..60),
            raw_body in any::<bool>(),
            cuts in proptest::collection::vec((0.0f64..1.0, 0usize..12, proptest::sample::select(QP_PIECES)), 0..6),
            crlf in any::<bool>(),
        ) {
            let newline: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let content = pieces.concat();
            // A body as a careful encoder writes it, or any bytes read as one.
            let encoded = if raw_body { content.clone() } else { encode_qp(&content, newline) };
            let (decoded, lines) = decode_qp_lines(&encoded);
            prop_assert_eq!(&decoded, &decode_qp(&encoded));
            let mut edits: Vec<crate::mime::Edit> = Vec::new();
            let mut starts: Vec<usize> = cuts.iter().map(|(f, _, _)| (f * decoded.len() as f64) as usize).collect();
            starts.sort();
            for (start, (_, len, bytes)) in starts.into_iter().zip(&cuts) {
                let from = edits.last().map_or(0, |(r, _): &crate::mime::Edit| r.end);
                let start = start.max(from);
                let end = (start + len).min(decoded.len());
                edits.push((start..end, bytes.to_vec()));
            }
            let out = encode_qp_edited(&encoded, &lines, &decoded, &edits, newline);
            let mut want = Vec::new();
            let mut cursor = 0;
            for (r, b) in &edits {
                want.extend_from_slice(&decoded[cursor..r.start]);
                want.extend_from_slice(b);
                cursor = r.end;
            }
            want.extend_from_slice(&decoded[cursor..]);
            prop_assert_eq!(decode_qp(&out), want);
            if !raw_body {
                prop_assert!(max_line_len(&out) <= ENCODED_LINE_LEN);
            }
            if edits.is_empty() && lines.iter().all(|l| !l.too_long) {
                prop_assert_eq!(out, encoded);
            }
        }

        #[test]
        fn qp_encoding_is_the_byte_at_a_time_encoding(
            pieces in proptest::collection::vec(
                proptest::sample::select(QP_PIECES),
                0..120,
            )
        ) {
            // CRLF only: a bare LF is escaped in a CRLF body (tested below).
            let data: Vec<u8> = pieces.into_iter().filter(|p| *p != b"\n").collect::<Vec<_>>().concat();
            let mut want = Vec::new();
            for line in data.split_inclusive(|&b| b == b'\n') {
                let (text, ending) = split_ending(line);
                encode_qp_line_reference(text, b"\r\n", &mut want);
                want.extend_from_slice(ending);
            }
            prop_assert_eq!(encode_qp(&data, b"\r\n"), want);
        }

        #[test]
        fn qp_round_trips_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let enc = encode_qp(&data, b"\n");
            // Every line break is the given one, whatever the content holds.
            prop_assert!(!enc.contains(&b'\r'));
            let crlf = encode_qp(&data, b"\r\n");
            prop_assert!(crlf.iter().enumerate().all(|(i, &b)| b != b'\n' || (i > 0 && crlf[i - 1] == b'\r')));
            prop_assert!(max_line_len(&crlf) <= ENCODED_LINE_LEN);
            prop_assert_eq!(decode_qp(&crlf), &data[..]);
            prop_assert!(max_line_len(&enc) <= ENCODED_LINE_LEN);
            prop_assert_eq!(decode_qp(&enc), data);
        }
    }
}
