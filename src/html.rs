//! HTML rewriting: the open pixel and click-tracked links (SPEC §3).
//!
//! Owns what changes inside one HTML document: where the pixel goes, which
//! `href`s are replaced and which are skipped (see [`links`]). It edits the
//! original bytes in place; nothing is re-serialised, so everything but the
//! changed attribute values, removed `data-track` attributes and the pixel
//! stays byte for byte. It does not know about MIME (see `mime`) or how
//! tracking URLs are signed (the caller passes a signer).

mod lexer;
pub mod links;
mod scan;

use encoding_rs::Encoding;

use crate::mime::Edit;

pub use links::SkipReason;
pub use scan::ScanError;
use scan::{Replacement, Want};

/// Where the open pixel goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelPosition {
    /// Right after `<body…>`: still counted when a client clips long mail.
    Start,
    /// Right before `</body>` (the default).
    #[default]
    End,
}

/// What to do to one document.
pub struct Plan<'a> {
    /// The pixel's `<img>` markup and where it goes, if opens are tracked.
    pub pixel: Option<(&'a str, PixelPosition)>,
    pub clicks: bool,
    /// URLs of the message's List-Unsubscribe header, never tracked.
    pub unsubscribe: &'a [String],
}

/// The rewritten document and what was done to it.
#[derive(Debug, Default)]
pub struct Rewritten {
    pub html: Vec<u8>,
    /// The same as edits of `input`: sorted, not overlapping, the pixel an
    /// insertion (for encoders that keep what did not change).
    pub changes: Vec<Edit>,
    pub pixel: bool,
    /// Destinations of the rewritten links, in document order.
    pub links: Vec<String>,
    pub skipped: Vec<SkipReason>,
}

/// Rewrites `input` (in an ASCII-compatible `encoding`). `sign` turns a
/// destination URL into its tracking URL and is called in document order.
pub fn rewrite(
    input: &[u8],
    encoding: &'static Encoding,
    plan: &Plan<'_>,
    sign: &mut dyn FnMut(&str) -> String,
) -> Result<Rewritten, ScanError> {
    let want = Want {
        clicks: plan.clicks,
        pixel: plan.pixel.map(|(_, position)| position),
        unsubscribe: plan.unsubscribe,
    };
    let mut found = scan::scan(input, encoding, &want)?;
    found.edits.sort_by_key(|e| e.range.start);
    // Sign every link once, in document order, before any bytes are built.
    let mut links = Vec::new();
    let mut edits: Vec<Edit> = Vec::with_capacity(found.edits.len());
    for edit in found.edits {
        let bytes = match edit.replacement {
            Replacement::Remove => Vec::new(),
            Replacement::Link(url) => {
                let tracked = sign(&url).into_bytes();
                links.push(url);
                tracked
            }
        };
        edits.push((edit.range, bytes));
    }
    let skipped = found.skipped;
    let done = |(html, changes): (Vec<u8>, Vec<_>), pixel, links| {
        Ok(Rewritten {
            html,
            changes,
            pixel,
            links,
            skipped,
        })
    };
    let Some((markup, _)) = plan.pixel else {
        let (html, changes, _) = splice(input, edits, None);
        return done((html, changes), false, links);
    };
    if let Some(at) = found.pixel_at {
        let (html, changes, _) = splice(input, edits, Some((at, markup)));
        return done((html, changes), true, links);
    }
    // No <body> (a fragment, or a body never closed): the pixel goes at the
    // end of the part. A document can end inside a tag or a quoted value
    // (`<p title="a>b`), which would swallow it (found by fuzzing), so the
    // place is checked by parsing the result; else before the last `<`;
    // else at the very start (an unterminated `<!DOCTYPE` swallows both,
    // found by fuzzing); else no pixel rather than broken markup.
    let candidates = [
        Some(input.len()),
        input.iter().rposition(|&b| b == b'<'),
        Some(0),
    ];
    for at in candidates.into_iter().flatten() {
        let (html, changes, offset) = splice(input, edits.clone(), Some((at, markup)));
        if offset.is_some_and(|o| scan::element_starts_at(&html, encoding, "img", o)) {
            return done((html, changes), true, links);
        }
    }
    let (html, changes, _) = splice(input, edits, None);
    done((html, changes), false, links)
}

/// Compares the fast lexer's scan with lol_html's on `input`, for every
/// pixel position, clicks on: `None` when the lexer does not take this
/// document (lol_html is then the only scan), else what differs, if
/// anything. For the differential tests and the fuzz target.
#[doc(hidden)]
pub fn lexer_disagrees(input: &[u8], encoding: &'static Encoding) -> Option<Option<String>> {
    for pixel in [Some(PixelPosition::End), Some(PixelPosition::Start), None] {
        let want = Want {
            clicks: true,
            pixel,
            unsubscribe: &[],
        };
        let (fast, lol) = scan::both(input, encoding, &want)?;
        // Where a fallback pixel may land: every tag start of a small document.
        if input.len() <= 4096 {
            for at in memchr::memchr_iter(b'<', input) {
                let fast = scan::element_starts_at_fast(input, "img", at).ok()?;
                if fast != scan::element_starts_at_lol_html(input, encoding, "img", at) {
                    return Some(Some(format!("an <img> at {at}: lexer says {fast}")));
                }
            }
        }
        match lol {
            Ok(lol) if lol == fast => {}
            Ok(lol) => return Some(Some(format!("{pixel:?}: lexer {fast:?}\nlol_html {lol:?}"))),
            // lol_html refuses some documents (memory limits, ambiguity);
            // the lexer reading them is no disagreement.
            Err(_) => {}
        }
    }
    Some(None)
}

/// Applies sorted edits with the pixel `(position, markup)` inserted
/// before any edit that starts at or after its place; returns the bytes and
/// the edits as applied (an edit overlapping an earlier one is dropped:
/// that cannot come from one document) and where the pixel starts in the
/// bytes.
fn splice(
    input: &[u8],
    edits: Vec<Edit>,
    pixel: Option<(usize, &str)>,
) -> (Vec<u8>, Vec<Edit>, Option<usize>) {
    let mut changes: Vec<Edit> = Vec::with_capacity(edits.len() + 1);
    let mut pixel = pixel;
    let mut pixel_index = None;
    let mut cursor = 0;
    for (range, bytes) in edits {
        if let Some((at, markup)) = pixel
            && at >= cursor
            && at <= range.start
        {
            pixel_index = Some(changes.len());
            changes.push((at..at, markup.as_bytes().to_vec()));
            pixel = None;
        }
        if range.start < cursor {
            continue;
        }
        cursor = range.end;
        changes.push((range, bytes));
    }
    if let Some((at, markup)) = pixel
        && at >= cursor
    {
        pixel_index = Some(changes.len());
        changes.push((at..at, markup.as_bytes().to_vec()));
    }
    let extra: usize = changes.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(input.len() + extra);
    let mut cursor = 0;
    let mut pixel_offset = None;
    for (i, (range, bytes)) in changes.iter().enumerate() {
        out.extend_from_slice(&input[cursor..range.start]);
        if pixel_index == Some(i) {
            pixel_offset = Some(out.len());
        }
        out.extend_from_slice(bytes);
        cursor = range.end;
    }
    out.extend_from_slice(&input[cursor..]);
    (out, changes, pixel_offset)
}

/// The pixel's markup for a tracking URL: 1x1, no border, no layout.
pub fn pixel_markup(url: &str) -> String {
    format!(
        "<img src=\"{url}\" width=\"1\" height=\"1\" alt=\"\" border=\"0\" \
         style=\"height:1px!important;width:1px!important;border-width:0!important;\
         margin:0!important;padding:0!important\" />"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(html: &str, pixel: Option<PixelPosition>, clicks: bool) -> Rewritten {
        let plan = Plan {
            pixel: pixel.map(|p| ("<img src=PIXEL>", p)),
            clicks,
            unsubscribe: &[],
        };
        let mut n = 0;
        rewrite(html.as_bytes(), encoding_rs::UTF_8, &plan, &mut |_| {
            n += 1;
            format!("T{n}")
        })
        .unwrap()
    }

    fn text(r: &Rewritten) -> &str {
        std::str::from_utf8(&r.html).unwrap()
    }

    #[test]
    fn pixel_before_real_body_end_not_in_comment() {
        let r = run(
            "<html><body><p>x</p><!-- </body> --></body></html>",
            Some(PixelPosition::End),
            false,
        );
        assert_eq!(
            text(&r),
            "<html><body><p>x</p><!-- </body> --><img src=PIXEL></body></html>"
        );
    }

    #[test]
    fn pixel_at_start_and_fallback_at_end() {
        let r = run(
            "<BODY class=a>\n<p>x</p></BODY>",
            Some(PixelPosition::Start),
            false,
        );
        assert_eq!(text(&r), "<BODY class=a><img src=PIXEL>\n<p>x</p></BODY>");
        let r = run("<p>fragment</p>\n", Some(PixelPosition::End), false);
        assert_eq!(text(&r), "<p>fragment</p>\n<img src=PIXEL>");
    }

    #[test]
    fn removing_our_attribute_never_glues_its_neighbours() {
        // Found by fuzzing: the next attribute joined the unquoted href.
        let r = run(
            "<a href=https://x.test/ data-track=\"false\"title=t>x</a>",
            None,
            true,
        );
        assert_eq!(text(&r), "<a href=https://x.test/ title=t>x</a>");
        let r = run(
            "<a data-track=\"true\"href=https://x.test/>x</a>",
            None,
            true,
        );
        assert_eq!(text(&r), "<a href=T1>x</a>");
    }

    #[test]
    fn pixel_never_lands_inside_an_unterminated_tag_or_value() {
        let plan = Plan {
            pixel: Some(("<img src=p>", PixelPosition::End)),
            clicks: false,
            unsubscribe: &[],
        };
        let run = |html: &str| {
            rewrite(html.as_bytes(), encoding_rs::UTF_8, &plan, &mut |_| {
                String::new()
            })
            .unwrap()
        };
        assert_eq!(text(&run("<p>x</p><r")), "<p>x</p><img src=p><r");
        assert_eq!(text(&run("<p title=\"a>b")), "<img src=p><p title=\"a>b");
        assert_eq!(text(&run("<p>ok</p>")), "<p>ok</p><img src=p>");
    }

    #[test]
    fn links_edited_in_place_keeping_every_other_byte() {
        let html = "<a\n   class='x'  HREF='https://a.test/?q=1&amp;r=2'\n data-track=\"true\">a</a>\
                    <area href=http://b.test/ alt=b><a href=\"mailto:x@y\">m</a>";
        let r = run(html, None, true);
        assert_eq!(
            text(&r),
            "<a\n   class='x'  HREF='T1'>a</a><area href=T2 alt=b><a href=\"mailto:x@y\">m</a>"
        );
        assert_eq!(r.links, ["https://a.test/?q=1&r=2", "http://b.test/"]);
        assert_eq!(r.skipped, [SkipReason::Scheme]);
    }

    #[test]
    fn opt_outs_respected_ours_removed() {
        let html = "<a href=\"https://a.test/\" data-track=\"false\">a</a>\
                    <a href=\"https://b.test/\" clicktracking=off>b</a>\
                    <a ses:no-track href=\"https://c.test/\">c</a>";
        let r = run(html, None, true);
        assert_eq!(
            text(&r),
            "<a href=\"https://a.test/\">a</a><a href=\"https://b.test/\" clicktracking=off>b</a>\
             <a ses:no-track href=\"https://c.test/\">c</a>"
        );
        assert_eq!(r.skipped, [SkipReason::OptOut; 3]);
    }

    #[test]
    fn vml_in_outlook_conditional_comments() {
        let html = "<!--[if mso]><v:roundrect href=\"https://btn.test/?a=1&amp;b=2\" arcsize=\"10%\">\
                    <w:anchorlock/></v:roundrect><link href=\"https://css.test/\"><![endif]-->\
                    <!-- plain comment <a href=\"https://no.test/\"> --><a href=\"https://a.test/\">a</a>";
        let r = run(html, None, true);
        assert_eq!(r.links, ["https://btn.test/?a=1&b=2", "https://a.test/"]);
        assert!(text(&r).starts_with("<!--[if mso]><v:roundrect href=\"T1\" arcsize=\"10%\">"));
        assert!(text(&r).contains("<link href=\"https://css.test/\">"));
        assert!(text(&r).contains("<a href=\"https://no.test/\">"));
    }

    #[test]
    fn base_href_resolves_relative_links() {
        let html = "<head><base href=\"https://bugs.test/\"></head><a href=\"show?id=1\">b</a>";
        let r = run(html, None, true);
        assert_eq!(r.links, ["https://bugs.test/show?id=1"]);
    }

    #[test]
    fn nothing_wanted_changes_nothing() {
        let html = "<html><body><a href=\"https://a.test/\">a</a></body></html>";
        let r = run(html, None, false);
        assert_eq!(text(&r), html);
    }
}
