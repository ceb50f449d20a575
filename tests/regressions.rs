//! Inputs the fuzzers found (`fuzz/regressions/TARGET/*`), kept as tests:
//! each must rewrite without panicking, and the rewritten message must keep
//! its header block (nothing ever written into a header) and still parse.

mod support;

use std::path::Path;

#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/rewrite_message");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let raw = std::fs::read(entry.path()).unwrap();
        let name = entry.path().display().to_string();
        let out = support::rewrite(&raw, true, true);
        assert_ne!(
            out.report.untracked_reason,
            Some("internal_error"),
            "{name}: panicked inside"
        );
        if let Some(parsed) = trackrelay::rewrite::parser().parse(&raw[..]) {
            // Nothing in these inputs is ours to remove from the header.
            let header_end = parsed.parts[0].offset_body as usize;
            assert!(
                out.message.len() >= header_end,
                "{name}: output shorter than the header"
            );
            assert_eq!(
                &out.message[..header_end],
                &raw[..header_end],
                "{name}: the header block changed"
            );
            let after = trackrelay::rewrite::parser().parse(&out.message[..]);
            let after = after.unwrap_or_else(|| panic!("{name}: output does not parse"));
            // Re-encoding must never create a line that reads as a boundary.
            assert_eq!(
                after.parts.len(),
                parsed.parts.len(),
                "{name}: MIME tree changed"
            );
        }
        seen += 1;
    }
    assert!(seen >= 2, "regression files missing in {}", dir.display());
}

/// Every element with an `href` in `html`, as (tag, href).
fn links_of(html: &[u8]) -> Vec<(String, String)> {
    use lol_html::{HtmlRewriter, Settings, element};
    let mut links = Vec::new();
    let mut rewriter = HtmlRewriter::new(
        Settings::new().append_element_content_handler(element!("*[href]", |el| {
            links.push((el.tag_name(), el.get_attribute("href").unwrap_or_default()));
            Ok(())
        })),
        |_: &[u8]| {},
    );
    rewriter.write(html).unwrap();
    rewriter.end().unwrap();
    links
}

#[test]
fn html_regressions_keep_every_element_and_opted_out_href() {
    use trackrelay::html::{PixelPosition, Plan, rewrite};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/html_rewrite");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let html = std::fs::read(entry.path()).unwrap();
        let name = entry.path().display().to_string();
        let plan = Plan {
            pixel: Some(("<img src=\"p\">", PixelPosition::End)),
            clicks: true,
            unsubscribe: &[],
        };
        let out = rewrite(&html, encoding_rs::UTF_8, &plan, &mut |_| {
            "https://t.test/c/T".to_string()
        })
        .unwrap();
        let (before, after) = (links_of(&html), links_of(&out.html));
        let tags = |l: &[(String, String)]| l.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
        assert_eq!(tags(&before), tags(&after), "{name}: elements changed");
        for ((_, a), (_, b)) in before.iter().zip(&after) {
            assert!(
                a == b || b == "https://t.test/c/T",
                "{name}: href {a:?} became {b:?}"
            );
        }
        // Placed where it is an element of its own, or (no such place in a
        // document that ends inside a tag) not at all.
        let has_pixel = String::from_utf8_lossy(&out.html).contains("<img src=\"p\">");
        assert_eq!(out.pixel, has_pixel, "{name}: pixel");
        seen += 1;
    }
    assert!(seen >= 3);
}
