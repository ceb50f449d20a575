//! Finding what to change in an HTML document, with lol_html as a locator.
//!
//! lol_html re-serialises a start tag as soon as one attribute changes
//! (attributes joined by single spaces), which would alter bytes we promise
//! to keep. So it is only asked *where* things are (source locations), and
//! the edits are spliced into the original bytes by `html::rewrite`.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

use encoding_rs::Encoding;
use lol_html::html_content::{Comment, Element};
use lol_html::{AsciiCompatibleEncoding, HtmlRewriter, Settings, doc_comments, element};
use url::Url;

use super::PixelPosition;
use super::lexer::{Attr, Lexer, Token, Unsupported};
use super::links::{self, SkipReason};

/// One change to the original bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub replacement: Replacement,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Replacement {
    /// Remove the range.
    Remove,
    /// The tracking URL for this destination (signed by the caller).
    Link(String),
}

/// What the scan found.
#[derive(Debug, Default, PartialEq, Eq)]
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

/// Scans `input` (in `encoding`) and returns the edits to make: with the
/// fast lexer, or with lol_html for what the lexer does not model.
pub fn scan(
    input: &[u8],
    encoding: &'static Encoding,
    want: &Want<'_>,
) -> Result<Found, ScanError> {
    let ascii =
        AsciiCompatibleEncoding::new(encoding).ok_or_else(|| ScanError("charset".into()))?;
    match scan_fast(input, encoding, want) {
        Ok(found) => Ok(found),
        Err(_) => scan_lol_html(input, ascii, want),
    }
}

/// The scan with the fast lexer; `Err` hands the document to lol_html.
pub fn scan_fast(
    input: &[u8],
    encoding: &'static Encoding,
    want: &Want<'_>,
) -> Result<Found, Unsupported> {
    let mut state = State {
        input,
        want,
        base: None,
        found: Found::default(),
    };
    let mut lexer = Lexer::new(input)?;
    // Open elements, as lol_html's selector stack keeps them: the element
    // whose end tag pops a <body> off it is where the pixel goes.
    let mut open: Vec<Range<usize>> = Vec::new();
    let (mut body_start, mut body_end) = (None, None);
    let tracks_stack = want.pixel == Some(PixelPosition::End);
    let links = |n: &[u8]| {
        want.clicks
            && (n.eq_ignore_ascii_case(b"a")
                || n.eq_ignore_ascii_case(b"area")
                || n.eq_ignore_ascii_case(b"base"))
    };
    while let Some(token) = lexer.next_token(links)? {
        match token {
            Token::Start { name, range, attrs } => {
                let tag = &input[name.clone()];
                if !attrs.is_empty()
                    && attrs
                        .iter()
                        .any(|a| input[a.name.clone()].eq_ignore_ascii_case(b"href"))
                {
                    let views = fast_views(input, encoding, attrs);
                    if tag.eq_ignore_ascii_case(b"base") {
                        on_base(&mut state, &views);
                    } else {
                        on_link(&mut state, &views);
                    }
                }
                if want.pixel == Some(PixelPosition::Start)
                    && body_start.is_none()
                    && tag.eq_ignore_ascii_case(b"body")
                {
                    body_start = Some(range.end);
                }
                if tracks_stack && body_end.is_none() && !is_void(tag) {
                    open.push(name);
                }
            }
            Token::End { name, range } => {
                if tracks_stack && body_end.is_none() {
                    let tag = &input[name];
                    if let Some(k) = open
                        .iter()
                        .rposition(|r| input[r.clone()].eq_ignore_ascii_case(tag))
                    {
                        if open[k..]
                            .iter()
                            .any(|r| input[r.clone()].eq_ignore_ascii_case(b"body"))
                        {
                            body_end = Some(range.start);
                        }
                        open.truncate(k);
                    }
                }
            }
            Token::Comment { range } => {
                if want.clicks {
                    on_comment_fast(&mut state, range, encoding)?;
                }
            }
        }
    }
    let mut found = state.found;
    found.pixel_at = body_start.or(body_end);
    Ok(found)
}

/// lol_html's void elements (never on its stack).
fn is_void(tag: &[u8]) -> bool {
    // By length and first letter, so most tags cost one comparison or none.
    let candidate: &[u8] = match (tag.len(), tag.first().map(u8::to_ascii_lowercase)) {
        (2, Some(b'b')) => b"br",
        (2, Some(b'h')) => b"hr",
        (3, Some(b'c')) => b"col",
        (3, Some(b'i')) => b"img",
        (3, Some(b'w')) => b"wbr",
        (4, Some(b'a')) => b"area",
        (4, Some(b'b')) => b"base",
        (4, Some(b'l')) => b"link",
        (4, Some(b'm')) => b"meta",
        (5, Some(b'e')) => b"embed",
        (5, Some(b'i')) => b"input",
        (5, Some(b'p')) => b"param",
        (5, Some(b't')) => b"track",
        (6, Some(b'k')) => b"keygen",
        (6, Some(b's')) => b"source",
        (7, Some(b'b')) => b"bgsound",
        (8, Some(b'b')) => b"basefont",
        _ => return false,
    };
    candidate.eq_ignore_ascii_case(tag)
}

/// Attributes found by the lexer, decoded as lol_html decodes them.
fn fast_views<'s>(
    input: &'s [u8],
    encoding: &'static Encoding,
    attrs: &[Attr],
) -> Vec<AttrView<'s>> {
    // `decode`, BOM sniffing included, as lol_html decodes attributes.
    let text = |r: &Range<usize>| encoding.decode(&input[r.clone()]).0;
    attrs
        .iter()
        .map(|a| AttrView {
            name: text(&a.name).to_ascii_lowercase().into(),
            value: a.value.as_ref().map(text),
            name_range: Some(a.name.clone()),
            value_range: a.value.clone(),
        })
        .collect()
}

/// Outlook conditional comments, with the fast lexer over their inside.
fn on_comment_fast(
    state: &mut State<'_>,
    range: Range<usize>,
    encoding: &'static Encoding,
) -> Result<(), Unsupported> {
    let Some(inner) = conditional_inner(state.input, range) else {
        return Ok(());
    };
    let input = state.input;
    let mut lexer = Lexer::new(&input[inner.clone()])?;
    let offset = inner.start;
    while let Some(token) = lexer.next_token(is_vml_link)? {
        if let Token::Start { attrs, .. } = token
            && attrs.iter().any(|a| {
                input[a.name.start + offset..a.name.end + offset].eq_ignore_ascii_case(b"href")
            })
        {
            let shifted: Vec<Attr> = attrs
                .iter()
                .map(|a| Attr {
                    name: a.name.start + offset..a.name.end + offset,
                    value: a.value.as_ref().map(|v| v.start + offset..v.end + offset),
                })
                .collect();
            let views = fast_views(input, encoding, &shifted);
            on_link(state, &views);
        }
    }
    Ok(())
}

/// Tags inside a conditional comment whose `href` is a link: `<a>`,
/// `<area>` and VML shapes (`v:roundrect`…), not `<link>` or `<base>`.
fn is_vml_link(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"a")
        || name.eq_ignore_ascii_case(b"area")
        || name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case(b"v:"))
}

/// Both scans of `input`, to compare: `None` when the lexer hands the
/// document to lol_html (for the differential tests and fuzz target).
pub fn both(
    input: &[u8],
    encoding: &'static Encoding,
    want: &Want<'_>,
) -> Option<(Found, Result<Found, ScanError>)> {
    let fast = scan_fast(input, encoding, want).ok()?;
    let ascii = AsciiCompatibleEncoding::new(encoding)?;
    Some((fast, scan_lol_html(input, ascii, want)))
}

/// The scan with lol_html.
fn scan_lol_html(
    input: &[u8],
    encoding: AsciiCompatibleEncoding,
    want: &Want<'_>,
) -> Result<Found, ScanError> {
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
                    on_base(&mut state.borrow_mut(), &lol_views(el, 0));
                    Ok(())
                }))
                .append_element_content_handler(element!("a[href], area[href]", |el| {
                    on_link(&mut state.borrow_mut(), &lol_views(el, 0));
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
    match element_starts_at_fast(html, tag, offset) {
        Ok(found) => found,
        Err(_) => element_starts_at_lol_html(html, encoding, tag, offset),
    }
}

/// [`element_starts_at`] with the fast lexer.
pub fn element_starts_at_fast(html: &[u8], tag: &str, offset: usize) -> Result<bool, Unsupported> {
    let mut lexer = Lexer::new(html)?;
    while let Some(token) = lexer.next_token(|_| false)? {
        if let Token::Start { name, range, .. } = token {
            if range.start == offset {
                return Ok(html[name].eq_ignore_ascii_case(tag.as_bytes()));
            }
            if range.start > offset {
                return Ok(false);
            }
        }
    }
    Ok(false)
}

/// [`element_starts_at`] with lol_html.
pub fn element_starts_at_lol_html(
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

/// An attribute as the link rules see it; ranges are in the scanned input.
pub struct AttrView<'s> {
    /// Lower-case.
    name: Cow<'s, str>,
    value: Option<Cow<'s, str>>,
    name_range: Option<Range<usize>>,
    value_range: Option<Range<usize>>,
}

/// An element's attributes from lol_html; `offset` is where the input it
/// parsed starts in the scanned input.
fn lol_views(el: &Element<'_, '_>, offset: usize) -> Vec<AttrView<'static>> {
    let shift = |r: Range<usize>| r.start + offset..r.end + offset;
    el.attributes()
        .iter()
        .map(|a| {
            let value_range = a.value_source_location().map(|l| shift(l.bytes()));
            AttrView {
                name: a.name().into(),
                value: value_range.is_some().then(|| a.value().into()),
                name_range: a.name_source_location().map(|l| shift(l.bytes())),
                value_range,
            }
        })
        .collect()
}

fn on_base(state: &mut State<'_>, attrs: &[AttrView<'_>]) {
    // The first <base> counts, as in browsers.
    if state.base.is_none()
        && let Some(href) = attrs
            .iter()
            .find(|a| a.name == "href")
            .and_then(|a| a.value.as_deref())
    {
        let href = htmlize::unescape_attribute(href.trim()).into_owned();
        state.base = Url::parse(&href)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
    }
}

fn on_link(state: &mut State<'_>, attrs: &[AttrView<'_>]) {
    let mut opted_out = false;
    let mut href = None;
    for attr in attrs {
        let name = &*attr.name;
        let value = attr.value.as_deref().unwrap_or("");
        if name == "href" {
            // The first `href` is the one a browser follows.
            if href.is_none() {
                href = Some(attr.value.as_deref().zip(attr.value_range.clone()));
            }
        } else if name == links::OWN_OPT_OUT {
            let value = value.trim();
            if value.eq_ignore_ascii_case("false") || value.eq_ignore_ascii_case("true") {
                opted_out |= value.eq_ignore_ascii_case("false");
                if let Some(range) = attribute_extent(state.input, attr) {
                    state.found.edits.push(Edit {
                        range,
                        replacement: Replacement::Remove,
                    });
                }
            }
        } else if links::is_foreign_opt_out(name, value) {
            opted_out = true;
        }
    }
    let Some(Some((value, range))) = href else {
        // `href` without a value: nothing to follow.
        return;
    };
    let decision = if opted_out {
        Err(SkipReason::OptOut)
    } else {
        links::destination(value, state.base.as_ref(), state.want.unsubscribe)
    };
    match decision {
        Ok(url) => state.found.edits.push(Edit {
            range,
            replacement: Replacement::Link(url),
        }),
        Err(reason) => state.found.skipped.push(reason),
    }
}

/// The bytes of an attribute with the whitespace before it, so removing it
/// leaves the tag as if it had never been there.
fn attribute_extent(input: &[u8], attr: &AttrView<'_>) -> Option<Range<usize>> {
    let name = attr.name_range.clone()?;
    let mut end = name.end;
    if let Some(value) = attr.value_range.clone() {
        end = value.end;
        let quote = input.get(value.start.checked_sub(1)?).copied();
        if matches!(quote, Some(b'"' | b'\'')) && input.get(end).copied() == quote {
            end += 1;
        }
    }
    let mut start = name.start;
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

/// The inside of an Outlook conditional comment with an `href` in it, or
/// `None` for any other comment.
fn conditional_inner(input: &[u8], range: Range<usize>) -> Option<Range<usize>> {
    let bytes = input.get(range.clone())?;
    let inner = range.start + 4..range.end.saturating_sub(3);
    let is_conditional = bytes.starts_with(b"<!--")
        && bytes.ends_with(b"-->")
        && inner.start < inner.end
        && trim_start(&input[inner.clone()]).starts_with(b"[if");
    (is_conditional && contains_ci(&input[inner.clone()], b"href")).then_some(inner)
}

/// Outlook conditional comments (`<!--[if mso]>…<![endif]-->`) hold VML
/// buttons whose `href` Outlook desktop follows: scan their inside as HTML.
fn on_comment(
    state: &mut State<'_>,
    c: &mut Comment<'_>,
    encoding: AsciiCompatibleEncoding,
) -> Result<(), ScanError> {
    let Some(inner) = conditional_inner(state.input, c.source_location().bytes()) else {
        return Ok(());
    };
    let input = state.input;
    let offset = inner.start;
    let settings = Settings::new()
        .with_encoding(encoding)
        .append_element_content_handler(element!("*[href]", |el| {
            if is_vml_link(el.tag_name().as_bytes()) {
                on_link(state, &lol_views(el, offset));
            }
            Ok(())
        }));
    run(&input[inner], settings)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Whether `haystack` holds `needle` in any case (`needle` non-empty).
fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    let first = needle[0];
    memchr::memchr2_iter(
        first.to_ascii_lowercase(),
        first.to_ascii_uppercase(),
        haystack,
    )
    .any(|i| {
        haystack
            .get(i..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
}
