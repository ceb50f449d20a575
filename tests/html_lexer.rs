//! The fast HTML lexer against lol_html: on every HTML body of the corpus,
//! every HTML part of the corpus's messages, and generated markup, the scan
//! with the lexer finds exactly what the scan with lol_html finds (the same
//! link edits, skips, attribute removals and pixel place), or hands the
//! document to lol_html.

mod support;

use mail_parser::{MimeHeaders, PartType};
use proptest::prelude::*;
use trackrelay::html::lexer_disagrees;
use trackrelay::mime::parser;

use support::corpus;

#[derive(Default, Debug)]
struct Tally {
    taken: usize,
    handed_over: usize,
}

fn check(name: &str, html: &[u8], encoding: &'static encoding_rs::Encoding, tally: &mut Tally) {
    match lexer_disagrees(html, encoding) {
        None => tally.handed_over += 1,
        Some(None) => tally.taken += 1,
        Some(Some(diff)) => panic!("{name}: the lexer and lol_html disagree\n{diff}"),
    }
}

#[test]
fn lexer_agrees_with_lol_html_on_the_fuzz_regressions() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/html_rewrite");
    let mut tally = Tally::default();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let html = std::fs::read(entry.path()).unwrap();
        check(
            &entry.path().display().to_string(),
            &html,
            encoding_rs::UTF_8,
            &mut tally,
        );
    }
    assert!(tally.taken >= 5, "{tally:?}");
}

#[test]
fn lexer_agrees_with_lol_html_on_the_corpus() {
    let mut html_tally = Tally::default();
    for (path, charset) in corpus::html_files() {
        let html = std::fs::read(&path).unwrap();
        let encoding = charset
            .as_deref()
            .and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
            .unwrap_or(encoding_rs::UTF_8);
        if encoding.is_single_byte() || encoding == encoding_rs::UTF_8 {
            check(
                &path.display().to_string(),
                &html,
                encoding,
                &mut html_tally,
            );
        }
    }
    let mut mime_tally = Tally::default();
    for path in corpus::mime_files() {
        let raw = std::fs::read(&path).unwrap();
        let Some(message) = parser().parse(&raw) else {
            continue;
        };
        for part in &message.parts {
            let PartType::Html(html) = &part.body else {
                continue;
            };
            if part.is_content_type("text", "html") {
                check(
                    &path.display().to_string(),
                    html.as_bytes(),
                    encoding_rs::UTF_8,
                    &mut mime_tally,
                );
            }
        }
    }
    eprintln!("html bodies: {html_tally:?}; HTML parts of messages: {mime_tally:?}");
    // The fast path must be the path real mail takes.
    assert!(html_tally.taken * 100 >= (html_tally.taken + html_tally.handed_over) * 95);
    assert!(mime_tally.taken * 100 >= (mime_tally.taken + mime_tally.handed_over) * 90);
}

/// Pieces that real and broken markup is made of, where the tokenizer's
/// states meet.
const PIECES: &[&str] = &[
    "<a href=\"https://a.test/?x=1&amp;y=2\">",
    "<a href='https://b.test/'",
    "<A HREF=https://c.test/",
    "<a href",
    "<a href=",
    "<a href=\"https://d.test/\" href=\"https://e.test/\">",
    "<area href=https://f.test/>",
    "<base href=\"https://base.test/dir/\">",
    "<a href=\"rel/x\">",
    " data-track=\"false\"",
    " data-track=true",
    " clicktracking=off",
    "</a>",
    "<body>",
    "<BODY class=x>",
    "</body>",
    "</BODY >",
    "<body/>",
    "<html>",
    "</html>",
    "<div>",
    "</div>",
    "<p>",
    "</p>",
    "<br/>",
    "<img src=x>",
    "<table>",
    "</table>",
    "<!--",
    "-->",
    "--!>",
    "<!-->",
    "<!--->",
    "<!--[if mso]>",
    "<![endif]-->",
    "<v:roundrect href=\"https://vml.test/\">",
    "</v:roundrect>",
    "<style>",
    "</style>",
    "<title>",
    "</title>",
    "<textarea>",
    "</textarea x=\">\">",
    "<script>",
    "</script>",
    "<noscript>",
    "</noscript>",
    "<iframe>",
    "</iframe>",
    "<!DOCTYPE html>",
    "<!doctype x \">\">",
    "<?xml version=\"1.0\"?>",
    "<![CDATA[ <a href=https://cdata.test/> ]]>",
    "</ x>",
    "</>",
    "<",
    ">",
    "/",
    "=",
    "\"",
    "'",
    " ",
    "\n",
    "\r\n",
    "\t",
    "x",
    "&amp;",
    "<style x=>",
    "<x-y z=1>",
    "<hr>",
    "<META charset=x>",
    "<input>",
    "<basefont>",
    "<b>",
    "</b>",
    "<h1>",
    "</h1>",
    "<center>",
    "</center>",
    "<svg>",
    "<select>",
    "</x-y>",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)))]

    #[test]
    fn lexer_agrees_with_lol_html_on_generated_markup(
        pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..48)
    ) {
        let html = pieces.concat();
        if let Some(Some(diff)) = lexer_disagrees(html.as_bytes(), encoding_rs::UTF_8) {
            prop_assert!(false, "{html:?}\n{diff}");
        }
    }
}
