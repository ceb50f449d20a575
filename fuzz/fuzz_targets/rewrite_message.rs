//! Arbitrary bytes as a whole email message through `rewrite::rewrite`.
//!
//! Each input is rewritten twice: once by a route that tracks nothing and
//! once by one that tracks opens and clicks. Invariants (see README.md):
//!
//! 1. Never panics.
//! 2. Untracked (route off and no `X-LM-Override-Track-*` turning it on, or
//!    no HTML part rewritten): the output is the input with exactly the
//!    top-level `X-LM-*` fields removed, so never longer; byte-identical when
//!    the input has no `x-lm-` anywhere. Every removed range is a field whose
//!    name starts with `X-LM-`, and the ranges neither overlap nor run out
//!    of the message.
//! 3. The report adds up: rewritten + skipped parts = HTML parts; one pixel
//!    per rewritten part when opens are tracked, none otherwise; no links
//!    when clicks are not tracked; tracking is on unless an override header
//!    or a DKIM signature turned it off, or the message did not parse.
//! 4. Tracking tokens: every token in the output (read from the raw bytes
//!    and from each HTML part of the re-parsed output, transfer-decoded and
//!    in UTF-8, so quoted-printable soft breaks and base64 do not hide it)
//!    that verifies carries this request's message id, recipient id and
//!    expiry; a click token's (index, URL) is `report.links[index]`. And
//!    every tracked link, index 0..links.len(), has its token in the output;
//!    there is an open token when a pixel was inserted.
//! 5. A rewritten HTML part (one holding our tokens) has no line over 998
//!    octets in the output.
//! 6. Only HTML bodies change: the output re-parses into as many MIME parts
//!    as the input (minus its `X-LM-*` fields) with the same header fields
//!    (name and raw value; `Content-Transfer-Encoding` excepted, as a part
//!    may be re-encoded) and the same bytes in every leaf part that is not a
//!    rewritten HTML part.
//!
//! The regressions in `regressions/rewrite_message/` are inputs that broke
//! these invariants before they were fixed (see README.md).

#![no_main]

#[path = "common.rs"]
mod common;

use std::borrow::Cow;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trackrelay::config::RouteSettings;
use trackrelay::mime::charset::{self, Charset};
use trackrelay::mime::{self, transfer};
use trackrelay::rewrite::{self, Outcome, Request, overrides};
use trackrelay::token::{KeyRing, Kind, RECIPIENT_ID_LEN};
use url::Url;
use uuid::Uuid;

use common::{assert_bytes_eq, contains_ci};

struct Fixture {
    on: RouteSettings,
    off: RouteSettings,
    ring: KeyRing,
    base: Url,
    recipient_id: [u8; RECIPIENT_ID_LEN],
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ring = common::ring();
    Fixture {
        on: RouteSettings {
            track_opens: true,
            track_clicks: true,
            ..Default::default()
        },
        off: RouteSettings {
            track_opens: false,
            track_clicks: false,
            ..Default::default()
        },
        recipient_id: ring.recipient_id(common::RECIPIENT),
        ring,
        base: Url::parse(common::BASE_URL).expect("base URL"),
    }
});

/// `TRACKRELAY_FUZZ_DEBUG=1` prints what each input's tracked rewrite did
/// (to see the token checks at work on the seeds: `-runs=0`).
static DEBUG: LazyLock<bool> = LazyLock::new(|| std::env::var_os("TRACKRELAY_FUZZ_DEBUG").is_some());

fn request<'a>(f: &'a Fixture, settings: &'a RouteSettings) -> Request<'a> {
    Request {
        settings,
        base_url: &f.base,
        keys: &f.ring,
        message_id: Uuid::from_u128(common::MESSAGE_ID),
        recipient: Some(common::RECIPIENT),
        expires_at: common::EXPIRES_AT,
    }
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let stripped = strip_xlm(data);

    let off = rewrite::rewrite(data, &request(f, &f.off));
    if !contains_ci(data, b"x-lm-override-track-") {
        assert!(
            !off.report.track_opens && !off.report.track_clicks,
            "tracking turned on without an override header: {:?}",
            off.report
        );
    }
    check_outcome(f, data, &stripped, &off);

    let on = rewrite::rewrite(data, &request(f, &f.on));
    let r = &on.report;
    if matches!(r.untracked_reason, Some("dkim_signed" | "unparsable_message" | "byte_order_mark" | "malformed_header")) {
        assert!(!r.track_opens && !r.track_clicks, "tracked although {:?}: {r:?}", r.untracked_reason);
    } else if !contains_ci(data, b"x-lm-override-track-") {
        assert!(r.track_opens && r.track_clicks, "route tracks but report says not: {r:?}");
    }
    check_outcome(f, data, &stripped, &on);
});

/// The input with its top-level `X-LM-*` fields removed, as `rewrite` must
/// relay it when nothing is tracked. Checks the ranges on the way.
fn strip_xlm(raw: &[u8]) -> Vec<u8> {
    let Some(message) = mime::parser().parse(raw) else {
        return raw.to_vec();
    };
    let mut ranges = overrides::read(&message).remove;
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut out = Vec::with_capacity(raw.len());
    let mut cursor = 0;
    for r in ranges {
        assert!(
            r.start >= cursor && r.start <= r.end && r.end <= raw.len(),
            "X-LM-* field ranges overlap or leave the message: {r:?} (cursor {cursor}, len {})",
            raw.len()
        );
        let field = &raw[r.clone()];
        assert!(
            field.len() >= 5 && field[..5].eq_ignore_ascii_case(b"x-lm-"),
            "range {r:?} removed as an X-LM-* field is {:?}",
            String::from_utf8_lossy(field)
        );
        out.extend_from_slice(&raw[cursor..r.start]);
        cursor = r.end;
    }
    out.extend_from_slice(&raw[cursor..]);
    out
}

fn check_outcome(f: &Fixture, data: &[u8], stripped: &[u8], out: &Outcome) {
    let r = &out.report;
    // If `rewrite` catches panics of its own, libfuzzer-sys's panic hook
    // still aborts first; this is the backstop should that ever change.
    assert_ne!(r.untracked_reason, Some("internal_error"), "rewrite caught an internal panic");
    if matches!(r.untracked_reason, Some("byte_order_mark" | "malformed_header")) {
        // Standard parsers see another header block: relayed as it came.
        assert_bytes_eq(&out.message, data, "message with a header others cannot read");
        return;
    }
    let tracked = r.track_opens || r.track_clicks;
    let skipped_parts: usize = r.parts_skipped.values().sum();
    assert!(r.reencoded_parts <= r.parts_rewritten, "{r:?}");
    if tracked {
        assert_eq!(r.parts_rewritten + skipped_parts, r.html_parts, "parts do not add up: {r:?}");
    } else {
        assert!(
            r.html_parts == 0 && r.parts_rewritten == 0 && skipped_parts == 0 && r.links.is_empty(),
            "untracked message has rewritten parts or links: {r:?}"
        );
    }
    if r.track_opens {
        assert_eq!(r.pixels, r.parts_rewritten, "a rewritten part without its pixel: {r:?}");
    } else {
        assert_eq!(r.pixels, 0, "pixel without open tracking: {r:?}");
    }
    if !r.track_clicks {
        assert!(r.links.is_empty(), "links without click tracking: {r:?}");
    }

    if r.parts_rewritten == 0 {
        // Nothing but our own header fields may change.
        assert!(out.message.len() <= data.len(), "untracked output grew");
        assert_bytes_eq(&out.message, stripped, "untracked message");
        if !contains_ci(data, b"x-lm-") {
            assert_bytes_eq(&out.message, data, "untracked message without X-LM-*");
        }
        return;
    }
    check_tokens(f, out);
    check_shape(stripped, &out.message);
}

/// What must survive a rewrite: per MIME part, its header fields (name,
/// raw value) but `Content-Transfer-Encoding`, and its body unless it is a
/// container or an HTML part that may be rewritten.
#[derive(Debug, PartialEq)]
struct PartShape {
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

fn shape(raw: &[u8]) -> Option<Vec<PartShape>> {
    let message = mime::parser().parse(raw)?;
    let (html, _) = mime::html_parts(&message);
    let slice = |a: u32, b: u32| raw.get(a as usize..(b as usize).max(a as usize)).unwrap_or(b"<out of range>").to_vec();
    let shapes = message
        .parts
        .iter()
        .map(|part| {
            let headers = part
                .headers
                .iter()
                .filter(|h| !h.name.as_str().eq_ignore_ascii_case("content-transfer-encoding"))
                .map(|h| (h.name.as_str().to_ascii_lowercase(), slice(h.offset_start, h.offset_end)))
                .collect();
            let range = part.offset_body as usize..(part.offset_end as usize).max(part.offset_body as usize);
            let body = match part.body {
                mail_parser::PartType::Multipart(_) => None,
                _ if html.iter().any(|h| h.body == range) => None,
                _ => Some(slice(part.offset_body, part.offset_end)),
            };
            PartShape { headers, body }
        })
        .collect();
    Some(shapes)
}

fn check_shape(stripped: &[u8], output: &[u8]) {
    let Some(want) = shape(stripped) else {
        return;
    };
    let got = shape(output).expect("the input parses but the rewritten message does not");
    assert_eq!(got.len(), want.len(), "the rewritten message has a different number of MIME parts");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let show = |b: &[u8]| b.escape_ascii().to_string();
        assert_eq!(
            g.headers.len(),
            w.headers.len(),
            "part {i}: header fields differ: got {:?}, want {:?}",
            g.headers.iter().map(|(n, v)| format!("{n}: {}", show(v))).collect::<Vec<_>>(),
            w.headers.iter().map(|(n, v)| format!("{n}: {}", show(v))).collect::<Vec<_>>()
        );
        for ((gn, gv), (wn, wv)) in g.headers.iter().zip(&w.headers) {
            assert!(
                gn == wn && gv == wv,
                "part {i}: header field changed: got {gn}: {}, want {wn}: {}",
                show(gv),
                show(wv)
            );
        }
        match (&g.body, &w.body) {
            (Some(gb), Some(wb)) => assert_bytes_eq(gb, wb, &format!("part {i} (not a rewritten HTML part) body")),
            (None, None) => {}
            _ => panic!("part {i}: is an HTML part in one message but not in the other"),
        }
    }
}

/// The token text after every `<base>/c/` and `<base>/o/` in `view`
/// (whether it verifies is the caller's question).
fn tokens_in<'v>(view: &'v [u8], base: &str) -> impl Iterator<Item = &'v str> + 'v {
    let prefix_len = base.len() + 3; // "<base>/c/" or "<base>/o/"
    let base = base.as_bytes().to_vec();
    (0..view.len()).filter_map(move |i| {
        let rest = &view[i..];
        if rest.len() < prefix_len || !rest.starts_with(&base) {
            return None;
        }
        let kind = &rest[base.len()..prefix_len];
        if kind != b"/c/" && kind != b"/o/" {
            return None;
        }
        let token = &rest[prefix_len..];
        let n = token
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_')
            .count();
        std::str::from_utf8(&token[..n]).ok()
    })
}

fn check_tokens(f: &Fixture, out: &Outcome) {
    let r = &out.report;
    let message = &out.message[..];

    // Views of the output in which our tokens are contiguous ASCII: the raw
    // bytes (identity parts), and every HTML part transfer-decoded and in UTF-8.
    let mut views: Vec<Cow<'_, [u8]>> = vec![Cow::Borrowed(message)];
    // Encoded bodies of the HTML parts, to check line lengths of rewritten ones.
    let mut encoded_parts: Vec<(usize, &[u8])> = Vec::new();
    if let Some(parsed) = mime::parser().parse(message) {
        let (parts, _) = mime::html_parts(&parsed);
        for part in parts {
            let Some(body) = message.get(part.body.clone()) else {
                continue;
            };
            let Some(content) = part.transfer.decode(body) else {
                continue;
            };
            let text = match part.charset {
                Charset::AsciiCompatible(_) => content.into_owned(),
                Charset::Transcode(enc) => {
                    let enc = charset::utf16_by_bom(enc, &content);
                    enc.decode_without_bom_handling(&content).0.into_owned().into_bytes()
                }
            };
            if matches!(part.charset, Charset::AsciiCompatible(_)) {
                encoded_parts.push((views.len(), body));
            }
            views.push(Cow::Owned(text));
        }
    }

    let mut seen_links = vec![false; r.links.len().min(usize::from(u16::MAX))];
    let mut seen_open = false;
    let mut view_has_token = vec![false; views.len()];
    for (v, view) in views.iter().enumerate() {
        for token in tokens_in(view, common::BASE_URL) {
            let Ok((claims, key_id)) = f.ring.verify(token) else {
                // Text of the input that merely looks like a tracking URL,
                // or a token cut by a quoted-printable soft break (raw view).
                continue;
            };
            view_has_token[v] = true;
            assert_eq!(key_id, common::SIGNING_KEY_ID);
            assert_eq!(claims.message_id, Uuid::from_u128(common::MESSAGE_ID), "{claims:?}");
            assert_eq!(claims.recipient_id, Some(f.recipient_id), "{claims:?}");
            assert_eq!(claims.expires_at, common::EXPIRES_AT, "{claims:?}");
            match claims.kind {
                Kind::Open => {
                    assert!(r.track_opens, "open token without open tracking: {r:?}");
                    assert!(claims.link.is_none() && claims.url.is_none(), "{claims:?}");
                    seen_open = true;
                }
                Kind::Click => {
                    assert!(r.track_clicks, "click token without click tracking: {r:?}");
                    let index = usize::from(claims.link.expect("click token has a link index"));
                    let url = claims.url.as_deref().expect("click token has a URL");
                    if index < usize::from(u16::MAX) {
                        assert!(
                            index < r.links.len(),
                            "click token index {index} but only {} links reported",
                            r.links.len()
                        );
                        assert_eq!(url, r.links[index], "click token {index} URL differs from report.links");
                        seen_links[index] = true;
                    } else {
                        assert!(
                            r.links[usize::from(u16::MAX)..].iter().any(|l| l == url),
                            "saturated click token URL {url:?} not among report.links[65535..]"
                        );
                    }
                }
            }
        }
    }
    if *DEBUG {
        let found = seen_links.iter().filter(|s| **s).count();
        eprintln!(
            "parts_rewritten={} reencoded={} links={} click_tokens_found={found} pixels={} open_token_found={seen_open} views={}",
            r.parts_rewritten,
            r.reencoded_parts,
            r.links.len(),
            r.pixels,
            views.len()
        );
    }
    if let Some(missing) = seen_links.iter().position(|seen| !seen) {
        panic!(
            "tracked link {missing} ({:?}) has no click token in the output; report: {r:?}",
            r.links[missing]
        );
    }
    if r.pixels > 0 {
        assert!(seen_open, "pixel reported but no open token in the output: {r:?}");
    }
    for (v, body) in encoded_parts {
        if view_has_token[v] {
            let longest = transfer::max_line_len(body);
            assert!(
                longest <= transfer::MAX_LINE_LEN,
                "rewritten part has a {longest}-octet line (limit {})",
                transfer::MAX_LINE_LEN
            );
        }
    }
}
