//! `mime::structure` (the MIME tree without decoding bodies) against
//! mail-parser's full parse: on every message of the corpus, every HTML body
//! wrapped in a message, and generated multiparts, the parts, their offsets,
//! their header fields and the multipart children are the same, or
//! `structure` declines and the rewrite does the full parse.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use mail_parser::{Message, PartType};
use proptest::prelude::*;
use trackrelay::mime::parser;
use trackrelay::mime::structure;

use support::corpus;

/// What differs between the two trees, if anything.
fn difference(fast: &Message<'_>, full: &Message<'_>) -> Option<String> {
    if fast.parts.len() != full.parts.len() {
        return Some(format!(
            "{} parts, the full parse has {}",
            fast.parts.len(),
            full.parts.len()
        ));
    }
    for (i, (a, b)) in fast.parts.iter().zip(&full.parts).enumerate() {
        let offsets =
            |p: &mail_parser::MessagePart<'_>| (p.offset_header, p.offset_body, p.offset_end);
        if offsets(a) != offsets(b) {
            return Some(format!(
                "part {i}: offsets {:?}, full parse {:?}",
                offsets(a),
                offsets(b)
            ));
        }
        if a.headers != b.headers {
            return Some(format!(
                "part {i}: headers {:?}\nfull parse {:?}",
                a.headers, b.headers
            ));
        }
        match (&a.body, &b.body) {
            (PartType::Multipart(x), PartType::Multipart(y)) if x == y => {}
            (PartType::Multipart(_) | PartType::Message(_), _)
            | (_, PartType::Multipart(_) | PartType::Message(_)) => {
                return Some(format!(
                    "part {i}: {:?}, full parse {:?}",
                    kind(&a.body),
                    kind(&b.body)
                ));
            }
            _ => {}
        }
    }
    None
}

fn kind(body: &PartType<'_>) -> String {
    match body {
        PartType::Multipart(c) => format!("multipart {c:?}"),
        PartType::Message(_) => "message".into(),
        _ => "leaf".into(),
    }
}

/// `Some(true)` taken and equal, `Some(false)` declined; panics on a difference.
fn check(name: &str, raw: &[u8]) -> bool {
    let Some(fast) = structure(raw) else {
        return false;
    };
    let full = parser()
        .parse(raw)
        .unwrap_or_else(|| panic!("{name}: structure read a message the full parse refuses"));
    if let Some(diff) = difference(&fast, &full) {
        panic!("{name}: {diff}");
    }
    true
}

#[test]
fn structure_is_the_full_parse_on_the_corpus() {
    let (mut taken, mut declined) = (0, 0);
    for path in corpus::mime_files() {
        let raw = std::fs::read(&path).unwrap();
        if check(&path.display().to_string(), &raw) {
            taken += 1;
        } else {
            declined += 1;
        }
    }
    for (path, charset) in corpus::html_files() {
        let html = std::fs::read(&path).unwrap();
        for newline in ["\r\n", "\n"] {
            let raw = corpus::wrap_html(&html, charset.as_deref(), newline);
            assert!(
                check(&path.display().to_string(), &raw),
                "{}: declined",
                path.display()
            );
        }
    }
    eprintln!("corpus messages: {taken} read by structure, {declined} left to the full parse");
    // Most real mail must take the fast way.
    assert!(
        taken * 100 >= (taken + declined) * 80,
        "{taken} taken, {declined} declined"
    );
}

static TRIED: AtomicUsize = AtomicUsize::new(0);
static TAKEN: AtomicUsize = AtomicUsize::new(0);

#[test]
fn generated_messages_mostly_take_the_fast_way() {
    structure_is_the_full_parse_on_generated_messages();
    let (tried, taken) = (TRIED.load(Ordering::Relaxed), TAKEN.load(Ordering::Relaxed));
    eprintln!("generated: {taken} of {tried} read by structure");
    assert!(
        taken * 100 >= tried * 15,
        "only {taken} of {tried} generated messages were compared"
    );
}

const DELIMITERS: &[&str] = &[
    "--b\r\n",
    "\r\n--b\r\n",
    "--b\n",
    "\n--b \r\n",
    "x--b\r\n",
    "--b\t\r\n",
    "---b\r\n",
];
const CLOSINGS: &[&str] = &["\r\n--b--\r\n", "--b--", "\n--b--\n", "--b--x", ""];
const HEADERS: &[&str] = &[
    "Content-Type: text/html; charset=utf-8\r\n",
    "Content-Type: text/plain\r\n",
    "Content-Type: multipart/alternative; boundary=c\r\n",
    "Content-Type: MULTIPART/mixed; boundary=d\r\n",
    "Content-Type: message/rfc822\r\n",
    "Content-Transfer-Encoding: quoted-printable\r\n",
    "Content-Transfer-Encoding: base64\r\n",
    "Content-Disposition: attachment\r\n",
    "X-Other: a\r\n continued\r\n",
    "Subject: =?utf-8?q?x?=\n",
];
const BODIES: &[&str] = &[
    "<p>text</p>\r\n",
    "a==b=3D\r\n",
    "aGVsbG8=\r\n",
    "--c\r\n\r\nin c\r\n",
    "--c--\r\n",
    "--bb\r\n",
    "-",
    " ",
    "\n",
    "\t\r\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn structure_is_the_full_parse_on_generated_messages(
        parts in proptest::collection::vec(
            (
                proptest::sample::select(DELIMITERS),
                proptest::collection::vec(proptest::sample::select(HEADERS), 0..3),
                proptest::sample::select(&["\r\n", "\n", ""][..]),
                proptest::collection::vec(proptest::sample::select(BODIES), 0..5),
            ),
            0..5,
        ),
        closing in proptest::sample::select(CLOSINGS),
        epilogue in proptest::collection::vec(proptest::sample::select(BODIES), 0..3),
    ) {
        let mut raw = String::from("From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n");
        for (delimiter, headers, blank, body) in &parts {
            raw.push_str(delimiter);
            raw.push_str(&headers.concat());
            raw.push_str(blank);
            raw.push_str(&body.concat());
        }
        raw.push_str(closing);
        raw.push_str(&epilogue.concat());
        TRIED.fetch_add(1, Ordering::Relaxed);
        if let Some(fast) = structure(raw.as_bytes()) {
            let full = parser().parse(raw.as_bytes());
            prop_assert!(full.is_some(), "{raw:?}: full parse refuses");
            let diff = difference(&fast, full.as_ref().unwrap());
            prop_assert!(diff.is_none(), "{raw:?}\n{}", diff.unwrap());
            TAKEN.fetch_add(1, Ordering::Relaxed);
        }
    }
}
