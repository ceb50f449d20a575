//! The few header facts DKIM decisions need, read from the raw header
//! section: field boundaries (RFC 5322 §2.2, folded lines included), the
//! `d=` tag of each DKIM-Signature (RFC 6376 §3.5) and the From domain.

use std::ops::Range;

/// Byte ranges of the header fields (each with its line ending) and the
/// field names, up to the empty line that ends the header section.
fn fields(raw: &[u8]) -> Vec<(Range<usize>, &[u8])> {
    let mut out: Vec<(Range<usize>, &[u8])> = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let end = memchr::memchr(b'\n', &raw[at..]).map_or(raw.len(), |i| at + i + 1);
        let line = &raw[at..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        match (line.first(), out.last_mut()) {
            // A continuation line belongs to the field before it.
            (Some(b' ' | b'\t'), Some((range, _))) => range.end = end,
            _ => {
                let name_end = memchr::memchr(b':', line).unwrap_or(line.len());
                out.push((at..end, &raw[at..at + name_end]));
            }
        }
        at = end;
    }
    out
}

fn is_signature(name: &[u8]) -> bool {
    name.trim_ascii().eq_ignore_ascii_case(b"dkim-signature")
}

/// The `d=` domain of a DKIM-Signature field, lowercase.
fn d_tag(field: &[u8]) -> Option<String> {
    let value = &field[memchr::memchr(b':', field)? + 1..];
    let value = String::from_utf8_lossy(value);
    value.split(';').find_map(|tag| {
        let (name, v) = tag.split_once('=')?;
        (name.trim() == "d").then(|| {
            v.chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase()
        })
    })
}

/// The `d=` domains of the message's DKIM signatures, in header order (an
/// unreadable signature counts as the empty domain, which nobody holds).
pub fn signature_domains(raw: &[u8]) -> Vec<String> {
    fields(raw)
        .into_iter()
        .filter(|(_, name)| is_signature(name))
        .map(|(range, _)| d_tag(&raw[range]).unwrap_or_default())
        .collect()
}

/// The message without the DKIM-Signature fields whose `d=` domain
/// `remove` accepts.
pub fn strip_signatures(raw: &[u8], remove: impl Fn(&str) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut copied = 0;
    for (range, name) in fields(raw) {
        if is_signature(name) && remove(&d_tag(&raw[range.clone()]).unwrap_or_default()) {
            out.extend_from_slice(&raw[copied..range.start]);
            copied = range.end;
        }
    }
    out.extend_from_slice(&raw[copied..]);
    out
}

/// The domain of the (first) From address, lowercase.
pub fn from_domain(raw: &[u8]) -> Option<String> {
    let message = mail_parser::MessageParser::new().parse_headers(raw)?;
    domain_of(message.from()?.first()?.address()?)
}

/// The domains a signature may be made for, in the order they are tried
/// (docs/dkim.md), each with the field it came from: the (first) From
/// address's, then Sender's, then Return-Path's.
pub fn signer_domains(raw: &[u8]) -> Vec<(&'static str, String)> {
    let Some(message) = mail_parser::MessageParser::new().parse_headers(raw) else {
        return Vec::new();
    };
    let first = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.first())
            .and_then(|a| a.address())
            .and_then(domain_of)
    };
    let return_path = match message.return_path() {
        mail_parser::HeaderValue::Text(t) => domain_of(t),
        mail_parser::HeaderValue::Address(a) => first(Some(a)),
        _ => None,
    };
    [
        ("From", first(message.from())),
        ("Sender", first(message.sender())),
        ("Return-Path", return_path),
    ]
    .into_iter()
    .filter_map(|(field, domain)| Some((field, domain?)))
    .collect()
}

/// The domain of `local@domain` (angle brackets allowed), lowercase.
fn domain_of(address: &str) -> Option<String> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// `field` (CRLF line endings, from mail-auth) with the line endings of
/// `message`, so a message stored with bare LF stays consistent.
pub fn line_endings_like(field: String, message: &[u8]) -> Vec<u8> {
    let first_line = memchr::memchr(b'\n', message).map(|i| &message[..i]);
    if first_line.is_some_and(|l| !l.ends_with(b"\r")) {
        field.replace("\r\n", "\n").into_bytes()
    } else {
        field.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &[u8] = b"DKIM-Signature: v=1; a=rsa-sha256;\r\n d=Example.COM; s=s1; b=x\r\nDKIM-Signature: v=1; d=other.example;\r\n\tb=y\r\nFrom: Ann <ann@news.example.com>\r\nSubject: hi\r\n\r\nDKIM-Signature: d=body.example\r\n";

    #[test]
    fn finds_signature_domains_and_from_domain() {
        assert_eq!(signature_domains(SIGNED), ["example.com", "other.example"]);
        assert_eq!(from_domain(SIGNED).as_deref(), Some("news.example.com"));
    }

    #[test]
    fn signer_domains_are_from_then_sender_then_return_path() {
        let raw = b"Return-Path: <bounce@Mail.Example.NET>\r\nFrom: a@example.org\r\n\
                    Sender: Lists <lists@example.com>\r\n\r\nbody\r\n";
        assert_eq!(
            signer_domains(raw),
            [
                ("From", "example.org".to_owned()),
                ("Sender", "example.com".to_owned()),
                ("Return-Path", "mail.example.net".to_owned()),
            ]
        );
        assert!(signer_domains(b"Subject: none\r\n\r\n").is_empty());
    }

    #[test]
    fn strips_only_the_chosen_signatures_with_their_folded_lines() {
        let out = strip_signatures(SIGNED, |d| d == "example.com");
        assert!(out.starts_with(b"DKIM-Signature: v=1; d=other.example;\r\n\tb=y\r\nFrom:"));
        // The body is never touched, even where it looks like a header.
        assert!(out.ends_with(b"\r\n\r\nDKIM-Signature: d=body.example\r\n"));
        assert_eq!(
            signature_domains(&strip_signatures(SIGNED, |_| true)),
            Vec::<String>::new()
        );
    }
}
