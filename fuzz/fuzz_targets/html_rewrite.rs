//! Arbitrary bytes as one HTML document (UTF-8) through `html::rewrite`.
//!
//! Invariants, whenever rewrite returns `Ok` (it may refuse input lol_html
//! cannot parse, but must never panic):
//!
//! 1. A plan that tracks nothing (no pixel, no clicks) returns the input
//!    byte for byte, never calls the signer, and reports nothing.
//! 2. Pixel only (at the end, then at the start): the output is the input
//!    with the pixel markup inserted at exactly one place, which is before a
//!    `</body` end tag or the end of the input (End), or right after a
//!    start tag's `>` with `<body` before it, or the end of the input (Start);
//!    `pixel` is reported.
//! 3. Clicks and pixel: the signer is called once per reported link, in
//!    order; each tracked destination is an http(s) URL with a host, at most
//!    `token::MAX_URL_LEN` long, without tab/CR/LF, and never the
//!    List-Unsubscribe URL; the signer's results appear in the output in
//!    document order, and the pixel is there.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use trackrelay::html::{self, PixelPosition, Plan};
use trackrelay::token::MAX_URL_LEN;
use url::Url;

use common::{assert_bytes_eq, contains_ci};

/// Pixel markup with a control byte, so it cannot be mistaken for input.
const PIXEL: &str = "<img src=\"\u{1}PIXEL\u{1}\">";
const UNSUBSCRIBE: &str = "https://unsub.test/u?x=1&y=2";

fuzz_target!(|data: &[u8]| {
    let utf8 = encoding_rs::UTF_8;

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
                p == data.len()
                    || match position {
                        PixelPosition::End => data[p..].len() >= 6 && data[p..p + 6].eq_ignore_ascii_case(b"</body"),
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
