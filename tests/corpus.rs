//! Property checks over every real message and HTML body in the shared
//! corpus (issue: the rewrite engine). For each input, tracked and not:
//! no panic; the output parses to the same MIME tree; every part other than
//! rewritten HTML is byte-identical; the HTML's text is unchanged; every
//! http(s) link is rewritten or skipped by a rule; every token verifies back
//! to a URL of the original; at most one pixel per rewritten part, always
//! as an element (none where the document has no place for one); no new line over
//! 998 octets; with tracking off the output is the input.
//!
//! Besides, an independent check (issue 15): every message rewritten, and
//! Python's `email` (not the parser the rewrite uses) compares input and
//! output: MIME tree, non-HTML parts' decoded bytes, header fields, HTML
//! decoding in its transfer encoding and charset (`tests/support/mime_equiv.py`).

mod support;

use std::collections::BTreeMap;

use lol_html::{HtmlRewriter, Settings, doc_text, element};
use mail_parser::{Message, MimeHeaders, PartType};
use trackrelay::config::RouteSettings;
use trackrelay::html::links;
use trackrelay::mime::parser;
use trackrelay::mime::transfer::{MAX_LINE_LEN, TransferEncoding, max_line_len};
use trackrelay::rewrite::Report;

use support::mime_equiv::{self, Pair};
use support::{BASE, corpus, keys, rewrite, tracking_tokens};

#[derive(Default)]
struct Counts {
    messages: usize,
    parts_rewritten: usize,
    pixels: usize,
    without_pixel: usize,
    links: usize,
    links_skipped: BTreeMap<&'static str, usize>,
    parts_skipped: BTreeMap<&'static str, usize>,
    untracked: BTreeMap<&'static str, usize>,
    reencoded: usize,
}

impl Counts {
    fn add(&mut self, r: &Report) {
        self.messages += 1;
        self.parts_rewritten += r.parts_rewritten;
        self.pixels += r.pixels;
        self.without_pixel += r.parts_without_pixel;
        self.links += r.links.len();
        self.reencoded += r.reencoded_parts;
        for (k, v) in &r.links_skipped {
            *self.links_skipped.entry(k).or_default() += v;
        }
        for (k, v) in &r.parts_skipped {
            *self.parts_skipped.entry(k).or_default() += v;
        }
        if let Some(reason) = r.untracked_reason {
            *self.untracked.entry(reason).or_default() += 1;
        }
    }
}

#[test]
fn every_corpus_message_survives_rewriting() {
    let mut counts = Counts::default();
    for path in corpus::mime_files() {
        let raw = std::fs::read(&path).unwrap();
        let name = path.display().to_string();
        check_message(&name, &raw, &mut counts);
    }
    eprintln!("mime corpus: {}", summary(&counts));
    assert!(counts.messages >= 550, "only {} messages", counts.messages);
    assert_eq!(
        counts.parts_skipped.get("unparsable_html"),
        None,
        "{}",
        summary(&counts)
    );
}

#[test]
fn every_corpus_html_body_survives_rewriting_lf_and_crlf() {
    let mut counts = Counts::default();
    for (path, charset) in corpus::html_files() {
        let html = std::fs::read(&path).unwrap();
        for newline in ["\r\n", "\n"] {
            let raw = corpus::wrap_html(&html, charset.as_deref(), newline);
            let name = format!("{} ({})", path.display(), newline.escape_debug());
            check_message(&name, &raw, &mut counts);
        }
    }
    eprintln!("html corpus: {}", summary(&counts));
    assert_eq!(counts.messages, 2 * corpus::html_files().len());
    // Every body is rewritten: none may be skipped.
    assert!(counts.parts_skipped.is_empty(), "{}", summary(&counts));
    assert_eq!(
        counts.parts_rewritten,
        counts.messages,
        "{}",
        summary(&counts)
    );
    // Every body got its pixel, unless no place in it renders one.
    assert_eq!(counts.pixels + counts.without_pixel, counts.messages);
    assert!(
        counts.without_pixel * 50 < counts.messages,
        "{}",
        summary(&counts)
    );
}

/// Inputs Python's `email` cannot read through itself (so nothing can be
/// said of their output), with the reason: (file name, what Python says).
const UNCHECKABLE: &[(&str, &str)] = &[];

/// The settings of the property checks: opens and clicks, DKIM-signed
/// messages rewritten too (to cover their HTML).
fn tracking_everything() -> RouteSettings {
    RouteSettings {
        rewrite_dkim_signed: true,
        ..support::settings(true, true)
    }
}

#[test]
fn python_email_sees_the_same_mime_tree_in_every_rewritten_corpus_message() {
    let settings = tracking_everything();
    let mut pairs = Vec::new();
    for path in corpus::mime_files() {
        let before = std::fs::read(&path).unwrap();
        let after = support::rewrite_with(&before, &settings).message;
        let name = path.display().to_string();
        pairs.push(Pair {
            name,
            before,
            after,
        });
    }
    for (path, charset) in corpus::html_files() {
        let html = std::fs::read(&path).unwrap();
        for newline in ["\r\n", "\n"] {
            let before = corpus::wrap_html(&html, charset.as_deref(), newline);
            let after = support::rewrite_with(&before, &settings).message;
            let name = format!("{} ({})", path.display(), newline.escape_debug());
            pairs.push(Pair {
                name,
                before,
                after,
            });
        }
    }
    let result = mime_equiv::check(&pairs).unwrap_or_else(|problems| panic!("{problems}"));
    let mut uncheckable: Vec<String> = result
        .uncheckable
        .iter()
        .map(|(name, why)| {
            let file = name.rsplit('/').next().unwrap_or(name);
            format!("{file}: {why}")
        })
        .collect();
    uncheckable.sort();
    let mut expected: Vec<String> = UNCHECKABLE
        .iter()
        .map(|(file, why)| format!("{file}: {why}"))
        .collect();
    expected.sort();
    assert_eq!(uncheckable, expected, "inputs Python cannot read");
    eprintln!(
        "Python's email: {} pairs checked, {} uncheckable",
        result.checked,
        uncheckable.len()
    );
    assert_eq!(result.checked + uncheckable.len(), pairs.len());
}

fn summary(c: &Counts) -> String {
    format!(
        "messages {}, parts rewritten {}, pixels {}, links rewritten {}, links skipped {:?}, \
         parts skipped {:?}, untracked {:?}, re-encoded to QP {}",
        c.messages,
        c.parts_rewritten,
        c.pixels,
        c.links,
        c.links_skipped,
        c.parts_skipped,
        c.untracked,
        c.reencoded
    )
}

fn check_message(name: &str, raw: &[u8], counts: &mut Counts) {
    // Tracking off: byte for byte the input (the corpus has no X-LM-* fields).
    let off = rewrite(raw, false, false);
    assert!(
        off.message == raw,
        "{name}: tracking off changed the message"
    );

    // DKIM-signed messages are rewritten too here, to cover their HTML; the
    // rule that leaves them alone has its own tests.
    let on = support::rewrite_with(raw, &tracking_everything());
    counts.add(&on.report);
    let skipped: usize = on.report.parts_skipped.values().sum();
    assert_eq!(
        on.report.parts_rewritten + skipped,
        on.report.html_parts,
        "{name}: every HTML part accounted for"
    );
    let Some(before) = parser().parse(raw) else {
        assert!(on.message == raw, "{name}: unparsable input was changed");
        return;
    };
    let after = parser()
        .parse(&on.message[..])
        .unwrap_or_else(|| panic!("{name}: output does not parse"));
    assert_eq!(
        before.parts.len(),
        after.parts.len(),
        "{name}: MIME tree changed"
    );
    let mut open_tokens = 0;
    let mut click_tokens = Vec::new();
    for (i, (a, b)) in before.parts.iter().zip(&after.parts).enumerate() {
        let what = format!("{name} part {i}");
        assert_eq!(
            shape(&before, i),
            shape(&after, i),
            "{what}: MIME structure changed"
        );
        let raw_a = &raw[a.offset_body as usize..a.offset_end as usize];
        let raw_b = &on.message[b.offset_body as usize..b.offset_end as usize];
        if raw_a == raw_b || matches!(a.body, PartType::Multipart(_)) {
            continue;
        }
        assert!(
            a.is_content_type("text", "html"),
            "{what}: a part that is not HTML changed"
        );
        let (html_a, html_b) = match (&a.body, &b.body) {
            (PartType::Html(x), PartType::Html(y)) => (x.to_string(), y.to_string()),
            // mail-parser gave up decoding the original (stray '=' in
            // quoted-printable); compare what our lenient decoder reads.
            _ => (decoded(a, raw_a), decoded(b, raw_b)),
        };
        let (html_a, html_b) = (html_a.as_str(), html_b.as_str());
        if max_line_len(raw_a) <= MAX_LINE_LEN {
            assert!(
                max_line_len(raw_b) <= MAX_LINE_LEN,
                "{what}: line over 998 octets"
            );
        }
        let opens = tracking_tokens(html_b, "o");
        assert!(opens.len() <= 1, "{what}: one pixel per rewritten part");
        // The pixel is markup, never text (not even in an unclosed <title>).
        assert_eq!(
            text_of(html_a),
            text_of(html_b),
            "{what}: the HTML's text changed"
        );
        open_tokens += opens.len();
        check_links(&what, html_a, html_b, &on.report);
        click_tokens.extend(tracking_tokens(html_b, "c").into_iter().map(str::to_owned));
    }
    assert_eq!(open_tokens, on.report.pixels, "{name}: pixels reported");
    check_tokens(name, &click_tokens, &on.report);
    // Headers outside the parts are untouched (none of ours in the corpus).
    let header_end = before.parts[0].offset_body as usize;
    let cte_changed = on.report.reencoded_parts > 0;
    if !cte_changed {
        assert!(
            raw[..header_end] == on.message[..header_end],
            "{name}: top-level header changed"
        );
    }
}

/// Content type, disposition and children of part `i`: what must not change.
fn shape(m: &Message<'_>, i: usize) -> String {
    let p = &m.parts[i];
    let ct = p
        .content_type()
        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
        .unwrap_or_default();
    let children = match &p.body {
        PartType::Multipart(c) => format!("{c:?}"),
        PartType::Html(_) | PartType::Text(_) => "text".into(),
        PartType::Message(_) => "message".into(),
        _ => "binary".into(),
    };
    format!(
        "{ct} {:?} {children}",
        p.content_disposition().map(|d| d.ctype().to_string())
    )
}

/// A part's content as our decoder reads it (charset aside).
fn decoded(part: &mail_parser::MessagePart<'_>, body: &[u8]) -> String {
    let cte = part
        .headers
        .iter()
        .find(|h| h.name == mail_parser::HeaderName::ContentTransferEncoding)
        .and_then(|h| h.value.as_text());
    let transfer = TransferEncoding::parse(cte).unwrap();
    String::from_utf8_lossy(&transfer.decode(body).unwrap()).into_owned()
}

/// The document's text content (outside tags), concatenated, with newlines
/// normalised as every HTML parser does before tokenising.
fn text_of(html: &str) -> String {
    let html = html.replace("\r\n", "\n").replace('\r', "\n");
    let mut text = String::new();
    let mut rewriter = HtmlRewriter::new(
        Settings::new().append_document_content_handler(doc_text!(|t| {
            text.push_str(t.as_str());
            Ok(())
        })),
        |_: &[u8]| {},
    );
    rewriter.write(html.as_bytes()).unwrap();
    rewriter.end().unwrap();
    text
}

/// Every `<a>`/`<area>` http(s) link of the output is a tracking URL or one
/// the rules skip; every tracked URL comes from the original's hrefs.
fn check_links(what: &str, original: &str, output: &str, report: &Report) {
    let mut hrefs = Vec::new();
    let mut rewriter = HtmlRewriter::new(
        Settings::new().append_element_content_handler(element!("a[href], area[href]", |el| {
            let opted_out = el.attributes().iter().any(|a| {
                links::is_foreign_opt_out(&a.name(), &a.value())
                    || (a.name() == links::OWN_OPT_OUT && a.value().eq_ignore_ascii_case("false"))
            });
            hrefs.push((el.get_attribute("href").unwrap_or_default(), opted_out));
            Ok(())
        })),
        |_: &[u8]| {},
    );
    rewriter.write(output.as_bytes()).unwrap();
    rewriter.end().unwrap();
    let has_base = original.to_ascii_lowercase().contains("<base");
    for (href, opted_out) in hrefs {
        if href.starts_with(&format!("{BASE}/c/")) || opted_out || has_base {
            continue;
        }
        let unsub: Vec<String> = Vec::new();
        if let Ok(url) = links::destination(&href, None, &unsub) {
            // Only the List-Unsubscribe rule may leave a trackable link.
            assert!(
                report.links_skipped.contains_key("unsubscribe"),
                "{what}: link left untracked: {url}"
            );
        }
    }
    let flat: String = htmlize::unescape(original)
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    for url in &report.links {
        assert!(
            has_base || flat.contains(url.as_str()),
            "{what}: tracked URL not in the original: {url}"
        );
    }
}

/// Each click token verifies to the link at its index, in document order.
fn check_tokens(name: &str, tokens: &[String], report: &Report) {
    let keys = keys();
    assert_eq!(
        tokens.len(),
        report.links.len(),
        "{name}: tracked links reported"
    );
    for (i, token) in tokens.iter().enumerate() {
        let (claims, _) = keys
            .verify(token)
            .unwrap_or_else(|e| panic!("{name}: token {i} does not verify: {e}"));
        let index = usize::from(claims.link.unwrap());
        assert_eq!(index, i, "{name}: link index");
        assert_eq!(
            claims.url.as_deref(),
            Some(report.links[i].as_str()),
            "{name}: token URL"
        );
        assert_eq!(
            claims.recipient_id,
            Some(keys.recipient_id("bob@example.com"))
        );
    }
}
