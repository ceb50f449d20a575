//! HTML rewriting: the open pixel and click-tracked links (SPEC §3).
//!
//! Owns what changes inside one HTML document: where the pixel goes, which
//! `href`s are replaced and which are skipped (see [`links`]). It edits the
//! original bytes in place; nothing is re-serialised, so everything but the
//! changed attribute values, removed `data-track` attributes and the pixel
//! stays byte for byte. It does not know about MIME (see `mime`) or how
//! tracking URLs are signed (the caller passes a signer).

pub mod links;
mod scan;

use encoding_rs::Encoding;

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
    if plan.pixel.is_some() {
        // No <body> (a fragment, or a body never closed): the pixel goes at
        // the very end of the part, or before a tag left open there.
        let at = found.pixel_at.unwrap_or_else(|| end_of_content(input));
        found.edits.push(scan::Edit {
            range: at..at,
            replacement: Replacement::Pixel,
        });
    }
    found.edits.sort_by_key(|e| e.range.start);

    let mut out = Vec::with_capacity(input.len() + found.edits.len() * 96 + 256);
    let mut links = Vec::new();
    let mut pixel = false;
    let mut cursor = 0;
    for edit in found.edits {
        if edit.range.start < cursor {
            // Overlapping edits cannot come from one document; keep the first.
            continue;
        }
        out.extend_from_slice(&input[cursor..edit.range.start]);
        match edit.replacement {
            Replacement::Remove => {}
            Replacement::Link(url) => {
                out.extend_from_slice(sign(&url).as_bytes());
                links.push(url);
            }
            Replacement::Pixel => {
                out.extend_from_slice(plan.pixel.map_or("", |(m, _)| m).as_bytes());
                pixel = true;
            }
        }
        cursor = edit.range.end;
    }
    out.extend_from_slice(&input[cursor..]);
    Ok(Rewritten {
        html: out,
        pixel,
        links,
        skipped: found.skipped,
    })
}

/// Where content can be appended: the end, unless the document ends
/// inside an unterminated tag (`…<r`), which would swallow the pixel
/// (found by fuzzing); then just before that tag.
fn end_of_content(input: &[u8]) -> usize {
    let last_open = input.iter().rposition(|&b| b == b'<');
    let last_close = input.iter().rposition(|&b| b == b'>');
    match (last_open, last_close) {
        (Some(open), Some(close)) if open > close => open,
        (Some(open), None) => open,
        _ => input.len(),
    }
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
            pixel: pixel.map(|p| ("<PIXEL>", p)),
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
            "<html><body><p>x</p><!-- </body> --><PIXEL></body></html>"
        );
    }

    #[test]
    fn pixel_at_start_and_fallback_at_end() {
        let r = run(
            "<BODY class=a>\n<p>x</p></BODY>",
            Some(PixelPosition::Start),
            false,
        );
        assert_eq!(text(&r), "<BODY class=a><PIXEL>\n<p>x</p></BODY>");
        let r = run("<p>fragment</p>\n", Some(PixelPosition::End), false);
        assert_eq!(text(&r), "<p>fragment</p>\n<PIXEL>");
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
    fn pixel_never_lands_inside_an_unterminated_tag() {
        let r = run("<p>x</p><r", Some(PixelPosition::End), false);
        assert_eq!(text(&r), "<p>x</p><PIXEL><r");
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
