//! Arbitrary bytes as one HTML document (UTF-8) through `html::rewrite`.
//!
//! Invariants, whenever rewrite returns `Ok` (it may refuse input lol_html
//! cannot parse, but must never panic):
//!
//! 1. A plan that tracks nothing (no pixel, no clicks) returns the input
//!    byte for byte, never calls the signer, and reports nothing.
//! 2. Pixel only (at the end, then at the start): the output is the input
//!    with the pixel markup inserted at exactly one place: right before an
//!    end tag `</…` (End: `</body>`, or whatever end tag closes the body for
//!    lol_html, e.g. `</html>`), or right after a start tag's `>` with
//!    `<body` before it (Start), or, without a body, at the end of the input
//!    or just before a tag left open there; `pixel` is reported.
//! 3. Clicks and pixel: the signer is called once per reported link, in
//!    order; each tracked destination is an http(s) URL with a host, at most
//!    `token::MAX_URL_LEN` long, without tab/CR/LF, and never the
//!    List-Unsubscribe URL; the signer's results appear in the output in
//!    document order, and the pixel is there.
//! 4. With clicks and pixel, lol_html sees the same elements in the output
//!    as in the input, with the same attributes in the same order and the
//!    same values, except: the pixel `<img>` is new, `data-track="true|false"`
//!    is gone from links, and a link's `href` may have become a signer result.
//!    (Elements inside comments are not compared.)
//!
//! 0. The fast lexer's scan finds exactly what lol_html's finds (when the
//!    lexer takes the document at all).
//!
//! The regressions in `regressions/html_rewrite/` are inputs that broke
//! these invariants before they were fixed (see README.md).

#![no_main]

#[path = "common.rs"]
mod common;

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use lol_html::{HtmlRewriter, Settings, element};
use trackrelay::html::{self, PixelPosition, Plan};
use trackrelay::token::MAX_URL_LEN;
use url::Url;

use common::{assert_bytes_eq, contains_ci};

/// Pixel markup with a control byte, so it cannot be mistaken for input.
const PIXEL: &str = "<img src=\"\u{1}PIXEL\u{1}\">";
const UNSUBSCRIBE: &str = "https://unsub.test/u?x=1&y=2";

fuzz_target!(|data: &[u8]| {
    let utf8 = encoding_rs::UTF_8;

    // 0. The fast lexer against lol_html.
    if let Some(Some(diff)) = html::lexer_disagrees(data, utf8) {
        panic!("the lexer and lol_html disagree\n{diff}");
    }

    // 1. Nothing wanted: nothing changes.
    let nothing = Plan {
        pixel: None,
        clicks: false,
        unsubscribe: &[],
    };
    let mut calls = 0usize;
    if let Ok(r) = html::rewrite(data, utf8, &nothing, &mut |u| {
        calls += 1;
        u.to_owned()
    }) {
        assert_bytes_eq(&r.html, data, "plan tracking nothing");
        assert!(!r.pixel && r.links.is_empty() && r.skipped.is_empty(), "{r:?}");
    }
    assert_eq!(calls, 0, "signer called although clicks are not tracked");

    // 2. Pixel only.
    for position in [PixelPosition::End, PixelPosition::Start] {
        let plan = Plan {
            pixel: Some((PIXEL, position)),
            clicks: false,
            unsubscribe: &[],
        };
        if let Ok(r) = html::rewrite(data, utf8, &plan, &mut |_| unreachable!("no clicks")) {
            assert!(r.pixel, "pixel not reported ({position:?})");
            assert!(r.links.is_empty() && r.skipped.is_empty(), "{r:?}");
            let places = insertion_points(data, &r.html, PIXEL.as_bytes());
            assert!(!places.is_empty(), "output is not the input plus one pixel ({position:?})");
            let valid = |p: usize| {
                // Without a body, html::rewrite tries the end, then before
                // the last `<` (a tag or quoted value left open at the end
                // would swallow the pixel), then the start (an unterminated
                // `<!DOCTYPE` swallows both); the checks below and
                // check_elements say whether the place it took is sound.
                p == data.len()
                    || Some(p) == data.iter().rposition(|&b| b == b'<')
                    || p == 0
                    || match position {
                        // Before `</body>`, or before the end tag that closes
                        // the body implicitly in lol_html (`</html>`, or a
                        // mis-nested one): always right before some `</`.
                        PixelPosition::End => data[p..].starts_with(b"</"),
                        PixelPosition::Start => p > 0 && data[p - 1] == b'>' && contains_ci(&data[..p], b"<body"),
                    }
            };
            assert!(
                places.iter().any(|&p| valid(p)),
                "pixel inserted at {places:?}, not where {position:?} puts it"
            );
        }
    }

    // 3. Clicks and the pixel at the start.
    let unsubscribe = [UNSUBSCRIBE.to_owned()];
    let plan = Plan {
        pixel: Some((PIXEL, PixelPosition::Start)),
        clicks: true,
        unsubscribe: &unsubscribe,
    };
    let mut signed: Vec<String> = Vec::new();
    let result = html::rewrite(data, utf8, &plan, &mut |url| {
        signed.push(url.to_owned());
        marker(signed.len() - 1)
    });
    if let Ok(r) = result {
        assert!(r.pixel, "pixel not reported with clicks");
        assert!(contains(&r.html, PIXEL.as_bytes()), "pixel missing with clicks");
        assert_eq!(r.links, signed, "reported links differ from what was signed");
        for url in &r.links {
            assert!(!url.is_empty() && url.len() <= MAX_URL_LEN, "tracked URL length {}", url.len());
            assert!(!url.contains(['\t', '\r', '\n']), "tracked URL keeps tab/CR/LF: {url:?}");
            assert!(url != UNSUBSCRIBE, "List-Unsubscribe URL tracked");
            let parsed = Url::parse(url).unwrap_or_else(|e| panic!("tracked URL {url:?} does not parse: {e}"));
            assert!(
                matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some_and(|h| !h.is_empty()),
                "tracked URL {url:?} is not http(s) with a host"
            );
        }
        check_elements(data, &r.html);
        if !contains(data, b"\x02L") {
            let mut from = 0;
            for i in 0..r.links.len() {
                let m = marker(i);
                let at = find(&r.html[from..], m.as_bytes())
                    .unwrap_or_else(|| panic!("signed link {i} missing or out of order in the output"));
                from += at + m.len();
                assert!(
                    find(&r.html[from..], m.as_bytes()).is_none(),
                    "signed link {i} appears twice in the output"
                );
            }
        }
    }
});

type Element = (String, Vec<(String, String)>);

/// Every element lol_html reports, with its attributes, in document order.
fn elements(html: &[u8]) -> Option<Vec<Element>> {
    let found = RefCell::new(Vec::new());
    {
        let settings = Settings::new().append_element_content_handler(element!("*", |el| {
            let attrs = el.attributes().iter().map(|a| (a.name(), a.value())).collect();
            found.borrow_mut().push((el.tag_name(), attrs));
            Ok(())
        }));
        let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
        rewriter.write(html).ok()?;
        rewriter.end().ok()?;
    }
    Some(found.into_inner())
}

fn check_elements(input: &[u8], output: &[u8]) {
    if contains(input, "\u{1}PIXEL\u{1}".as_bytes()) {
        // The fuzzer copies our markers into inputs; then the pixel cannot be told apart.
        return;
    }
    let Some(want) = elements(input) else {
        return;
    };
    let got = elements(output).expect("lol_html parses the input but not the rewritten document");
    let is_pixel = |(tag, attrs): &Element| tag == "img" && attrs.iter().any(|(n, v)| n == "src" && v.contains("\u{1}PIXEL\u{1}"));
    if !got.iter().any(is_pixel) {
        // The pixel went into raw text (an unclosed <style>, <title>,
        // <textarea>, <script>…), where it is text, not an element.
        assert!(
            contains_raw_text_element(&want),
            "the pixel is not an element of its own in the output, and no raw-text element explains it"
        );
        return;
    }
    let got: Vec<Element> = got.into_iter().filter(|e| !is_pixel(e)).collect();
    assert_eq!(got.len(), want.len(), "rewriting changed the number of elements");
    for (i, ((got_tag, got_attrs), (tag, attrs))) in got.iter().zip(&want).enumerate() {
        assert_eq!(got_tag, tag, "element {i}: tag name changed");
        let is_link = (tag == "a" || tag == "area") && attrs.iter().any(|(n, _)| n == "href");
        let expected: Vec<&(String, String)> = attrs
            .iter()
            .filter(|(n, v)| {
                !(is_link
                    && n == "data-track"
                    && (v.trim().eq_ignore_ascii_case("true") || v.trim().eq_ignore_ascii_case("false")))
            })
            .collect();
        let got_names: Vec<&str> = got_attrs.iter().map(|(n, _)| n.as_str()).collect();
        let want_names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(got_names, want_names, "element {i} <{tag}>: attributes changed");
        for ((name, got_value), (_, value)) in got_attrs.iter().zip(expected) {
            assert!(
                got_value == value || (is_link && name == "href" && got_value.starts_with('\u{2}')),
                "element {i} <{tag}>: attribute {name} changed from {value:?} to {got_value:?}"
            );
        }
    }
}

/// Whether the document has an element whose content lol_html reads as
/// text (or, for `plaintext`, everything after it).
fn contains_raw_text_element(elements: &[Element]) -> bool {
    const RAW: [&str; 9] = ["style", "script", "title", "textarea", "xmp", "iframe", "noembed", "noframes", "plaintext"];
    elements.iter().any(|(tag, _)| RAW.contains(&tag.as_str()))
}

fn marker(i: usize) -> String {
    format!("\u{2}L{i}\u{2}")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Every `p` with `out == input[..p] + ins + input[p..]`.
fn insertion_points(input: &[u8], out: &[u8], ins: &[u8]) -> Vec<usize> {
    if out.len() != input.len() + ins.len() {
        return Vec::new();
    }
    let prefix = input.iter().zip(out).take_while(|(a, b)| a == b).count();
    let suffix = input
        .iter()
        .rev()
        .zip(out.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    // out[..p] == input[..p] needs p <= prefix; out[p + m..] == input[p..]
    // needs input.len() - p <= suffix.
    let lo = input.len().saturating_sub(suffix);
    (lo..=prefix.min(input.len()))
        .filter(|&p| &out[p..p + ins.len()] == ins)
        .collect()
}
