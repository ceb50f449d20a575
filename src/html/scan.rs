//! Finding what to change in an HTML document, with lol_html as a locator.
//!
//! lol_html re-serialises a start tag as soon as one attribute changes
//! (attributes joined by single spaces), which would alter bytes we promise
//! to keep. So it is only asked *where* things are (source locations), and
//! the edits are spliced into the original bytes by `html::rewrite`.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

use encoding_rs::Encoding;
use lol_html::html_content::{Comment, Element};
use lol_html::{AsciiCompatibleEncoding, HtmlRewriter, Settings, doc_comments, element};
use url::Url;

use super::PixelPosition;
use super::links::{self, SkipReason};

/// One change to the original bytes.
#[derive(Debug)]
pub struct Edit {
    pub range: Range<usize>,
    pub replacement: Replacement,
}

#[derive(Debug)]
pub enum Replacement {
    /// Remove the range.
    Remove,
    /// The tracking URL for this destination (signed by the caller).
    Link(String),
}

/// What the scan found.
#[derive(Debug, Default)]
pub struct Found {
    pub edits: Vec<Edit>,
    pub skipped: Vec<SkipReason>,
    /// Where the pixel goes: before `</body>`, or after `<body…>`.
    pub pixel_at: Option<usize>,
}

/// What the scan looks for.
pub struct Want<'a> {
    pub clicks: bool,
    pub pixel: Option<PixelPosition>,
    pub unsubscribe: &'a [String],
}

#[derive(Debug, thiserror::Error)]
#[error("HTML could not be parsed: {0}")]
pub struct ScanError(String);

struct State<'a> {
    input: &'a [u8],
    want: &'a Want<'a>,
    base: Option<Url>,
    found: Found,
}

/// Scans `input` (in `encoding`) and returns the edits to make.
pub fn scan(
    input: &[u8],
    encoding: &'static Encoding,
    want: &Want<'_>,
) -> Result<Found, ScanError> {
    let encoding =
        AsciiCompatibleEncoding::new(encoding).ok_or_else(|| ScanError("charset".into()))?;
    let body_start = &Cell::new(None);
    let body_end = Rc::new(Cell::new(None));
    let body_end_seen = body_end.clone();
    let state = RefCell::new(State {
        input,
        want,
        base: None,
        found: Found::default(),
    });
    {
        let mut settings = Settings::new().with_encoding(encoding);
        if want.clicks {
            settings = settings
                .append_element_content_handler(element!("base[href]", |el| {
                    on_base(&mut state.borrow_mut(), el);
                    Ok(())
                }))
                .append_element_content_handler(element!("a[href], area[href]", |el| {
                    on_link(&mut state.borrow_mut(), el, 0);
                    Ok(())
                }));
            // Comments cost the tokenizer; look at them only when there
            // is an Outlook conditional comment to look into.
            let conditional = memchr::memmem::find(input, b"[if").is_some()
                || memchr::memmem::find(input, b"[IF").is_some();
            if conditional {
                settings = settings.append_document_content_handler(doc_comments!(|c| {
                    on_comment(&mut state.borrow_mut(), c, encoding)?;
                    Ok(())
                }));
            }
        }
        if let Some(position) = want.pixel {
            settings = settings.append_element_content_handler(element!("body", move |el| {
                on_body(el, position, body_start, &body_end);
                Ok(())
            }));
        }
        run(input, settings)?;
    }
    let mut found = state.into_inner().found;
    found.pixel_at = body_start.get().or(body_end_seen.get());
    Ok(found)
}

/// Notes where the pixel goes for the first `<body>`: after its start tag,
/// or before its end tag (reported later by an end tag handler, which must
/// be `'static`, hence the shared cell).
fn on_body(
    el: &mut Element<'_, '_>,
    position: PixelPosition,
    start: &Cell<Option<usize>>,
    end: &Rc<Cell<Option<usize>>>,
) {
    if start.get().is_some() || end.get().is_some() {
        return;
    }
    match position {
        PixelPosition::Start => start.set(Some(el.source_location().bytes().end)),
        PixelPosition::End => {
            let end = end.clone();
            if let Some(handlers) = el.end_tag_handlers() {
                handlers.push(Box::new(move |tag| {
                    if end.get().is_none() {
                        end.set(Some(tag.source_location().bytes().start));
                    }
                    Ok(())
                }));
            }
        }
    }
}

/// Whether an element named `tag` starts at byte `offset` of `html` as an
/// HTML parser reads it (used to check where a fallback pixel landed).
pub fn element_starts_at(
    html: &[u8],
    encoding: &'static Encoding,
    tag: &str,
    offset: usize,
) -> bool {
    let Some(encoding) = AsciiCompatibleEncoding::new(encoding) else {
        return false;
    };
    let found = Cell::new(false);
    let settings = Settings::new()
        .with_encoding(encoding)
        .append_element_content_handler(element!(tag, |el| {
            if el.source_location().bytes().start == offset {
                found.set(true);
            }
            Ok(())
        }));
    run(html, settings).is_ok() && found.get()
}

/// Feeds the input through lol_html, discarding its output.
fn run(input: &[u8], settings: Settings<'_, '_>) -> Result<(), ScanError> {
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    rewriter
        .write(input)
        .map_err(|e| ScanError(e.to_string()))?;
    rewriter.end().map_err(|e| ScanError(e.to_string()))
}

fn on_base(state: &mut State<'_>, el: &mut Element<'_, '_>) {
    // The first <base> counts, as in browsers.
    if state.base.is_none()
        && let Some(href) = el.get_attribute("href")
    {
        let href = htmlize::unescape_attribute(href.trim()).into_owned();
        state.base = Url::parse(&href)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
    }
}

fn on_link(state: &mut State<'_>, el: &mut Element<'_, '_>, offset: usize) {
    let mut opted_out = false;
    let mut href = None;
    for attr in el.attributes() {
        let name = attr.name();
        if name == "href" {
            href = attr
                .value_source_location()
                .map(|l| (attr.value(), l.bytes()));
        } else if name == links::OWN_OPT_OUT {
            let value = attr.value();
            let value = value.trim();
            if value.eq_ignore_ascii_case("false") || value.eq_ignore_ascii_case("true") {
                opted_out |= value.eq_ignore_ascii_case("false");
                if let Some(range) = attribute_extent(state.input, attr, offset) {
                    state.found.edits.push(Edit {
                        range,
                        replacement: Replacement::Remove,
                    });
                }
            }
        } else if links::is_foreign_opt_out(&name, &attr.value()) {
            opted_out = true;
        }
    }
    let Some((value, range)) = href else {
        // `href` without a value: nothing to follow.
        return;
    };
    let decision = if opted_out {
        Err(SkipReason::OptOut)
    } else {
        links::destination(&value, state.base.as_ref(), state.want.unsubscribe)
    };
    match decision {
        Ok(url) => state.found.edits.push(Edit {
            range: range.start + offset..range.end + offset,
            replacement: Replacement::Link(url),
        }),
        Err(reason) => state.found.skipped.push(reason),
    }
}

/// The bytes of an attribute with the whitespace before it, so removing it
/// leaves the tag as if it had never been there.
fn attribute_extent(
    input: &[u8],
    attr: &lol_html::html_content::Attribute<'_>,
    offset: usize,
) -> Option<Range<usize>> {
    let name = attr.name_source_location()?.bytes();
    let mut end = name.end;
    if let Some(value) = attr.value_source_location() {
        let value = value.bytes();
        end = value.end;
        let quote = input.get(offset + value.start.checked_sub(1)?).copied();
        if matches!(quote, Some(b'"' | b'\'')) && input.get(offset + end).copied() == quote {
            end += 1;
        }
    }
    let end = offset + end;
    let mut start = offset + name.start;
    // Take the whitespace before it only when what follows still stands
    // apart: `a="x"title=t` must not become `…/title=t` glued to an
    // unquoted value or to the tag name (found by fuzzing).
    // `/` is not enough: `href=x/ data-track="false"/>` would end `x//>`.
    let next_stands_apart = input
        .get(end)
        .is_none_or(|&b| b.is_ascii_whitespace() || b == b'>');
    if next_stands_apart {
        while start > 0 && input[start - 1].is_ascii_whitespace() {
            start -= 1;
        }
    }
    Some(start..end)
}

/// Outlook conditional comments (`<!--[if mso]>…<![endif]-->`) hold VML
/// buttons whose `href` Outlook desktop follows: scan their inside as HTML.
fn on_comment(
    state: &mut State<'_>,
    c: &mut Comment<'_>,
    encoding: AsciiCompatibleEncoding,
) -> Result<(), ScanError> {
    let range = c.source_location().bytes();
    let Some(bytes) = state.input.get(range.clone()) else {
        return Ok(());
    };
    let inner = range.start + 4..range.end.saturating_sub(3);
    let is_conditional = bytes.starts_with(b"<!--")
        && bytes.ends_with(b"-->")
        && inner.start < inner.end
        && trim_start(&state.input[inner.clone()]).starts_with(b"[if");
    if !is_conditional || !contains_ci(&state.input[inner.clone()], b"href") {
        return Ok(());
    }
    let input = state.input;
    let offset = inner.start;
    let settings = Settings::new()
        .with_encoding(encoding)
        .append_element_content_handler(element!("*[href]", |el| {
            let name = el.tag_name();
            // Links and VML shapes (v:roundrect, v:rect…), not <link>/<base>.
            if name == "a" || name == "area" || name.starts_with("v:") {
                on_link(state, el, offset);
            }
            Ok(())
        }));
    run(&input[inner], settings)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
