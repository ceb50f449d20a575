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
        if let Some(parsed) = trackrelay::mime::parser().parse(&raw[..]) {
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
            let after = trackrelay::mime::parser().parse(&out.message[..]);
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

/// Splicing cases real mail and the hunt around issue 15 found: each is
/// rewritten (opens and clicks) and must keep its MIME tree for Python's
/// `email`, keep every boundary delimiter at the start of a line, and keep
/// the input's line endings.
fn splice_cases() -> Vec<(String, Vec<u8>, trackrelay::config::RouteSettings)> {
    use trackrelay::config::RouteSettings;
    use trackrelay::html::PixelPosition;
    let both = support::settings(true, true);
    let start = RouteSettings {
        pixel_position: PixelPosition::Start,
        ..both.clone()
    };
    let head = "From: a@example.com\nTo: bob@example.com\nSubject: s\nMIME-Version: 1.0\n";
    let mixed = |html_part: &str| {
        format!(
            "{head}Content-Type: multipart/mixed; boundary=b\n\n--b\n{html_part}\n--b\n\
             Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=a.bin\n\
             Content-Transfer-Encoding: base64\n\nAAECAw==\n--b--\n"
        )
    };
    let mut cases: Vec<(&str, String, &RouteSettings)> = vec![
        // The empty HTML part: its pixel was glued to the next delimiter.
        ("empty html part", mixed("Content-Type: text/html\n"), &both),
        (
            "empty html part, pixel at start",
            mixed("Content-Type: text/html\n"),
            &start,
        ),
        (
            "empty base64 html part",
            mixed("Content-Type: text/html\nContent-Transfer-Encoding: base64\n"),
            &both,
        ),
        (
            "empty quoted-printable html part",
            mixed("Content-Type: text/html\nContent-Transfer-Encoding: quoted-printable\n"),
            &both,
        ),
        (
            "whitespace-only html part",
            mixed("Content-Type: text/html\n\n \t \n"),
            &both,
        ),
        (
            "html part without a final line break before the delimiter",
            mixed("Content-Type: text/html\n\n<p><a href=\"https://x.test/\">x</a></p>"),
            &both,
        ),
        (
            "fragment, pixel at start",
            mixed("Content-Type: text/html\n\n<p><a href=\"https://x.test/\">x</a></p>\n"),
            &start,
        ),
        (
            "last part without a closing delimiter",
            format!(
                "{head}Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n\
                 --b\nContent-Type: text/html\n\n<p><a href=\"https://x.test/\">x</a></p>\n"
            ),
            &both,
        ),
        // Quoted-printable HTML encoding its line breaks as `=0D=0A` in an
        // LF message: lines encoded again got CRLF, the rest kept LF.
        (
            "lf message, qp html with =0D=0A",
            mixed(
                "Content-Type: text/html\nContent-Transfer-Encoding: quoted-printable\n\n\
                 <p><a href=3D\"https://x.test/a\">a</a></p>=0D=0A<p>b</p>=0D=0A",
            ),
            &both,
        ),
        (
            "lf message, long html line re-encoded",
            mixed(&format!(
                "Content-Type: text/html\n\n<p>{}</p>\r\n<a href=\"https://x.test/\">x</a>\n",
                "y".repeat(1200)
            )),
            &both,
        ),
    ];
    let mut out = Vec::new();
    for (name, text, settings) in cases.drain(..) {
        out.push((
            format!("{name} (LF)"),
            text.clone().into_bytes(),
            settings.clone(),
        ));
        let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
        out.push((
            format!("{name} (CRLF)"),
            crlf.into_bytes(),
            settings.clone(),
        ));
    }
    // Lone LF (`=0A`) in a CRLF message.
    out.push((
        "crlf message, qp html with =0A".into(),
        mixed(
            "Content-Type: text/html\nContent-Transfer-Encoding: quoted-printable\n\n\
             <p><a href=3D\"https://x.test/a\">a</a></p>=0A<p>b</p>=0A",
        )
        .replace('\n', "\r\n")
        .into_bytes(),
        both.clone(),
    ));
    out
}

/// Whether every `--b` delimiter starts a line.
fn delimiters_start_lines(message: &[u8]) -> bool {
    memchr::memmem::find_iter(message, b"--b").all(|i| i == 0 || message[i - 1] == b'\n')
}

/// The line endings in use: (CRLF, bare LF, bare CR) present.
fn endings(message: &[u8]) -> (bool, bool, bool) {
    let mut seen = (false, false, false);
    for (i, &c) in message.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| message[p]);
        let next = message.get(i + 1);
        match c {
            b'\n' if prev == Some(b'\r') => seen.0 = true,
            b'\n' => seen.1 = true,
            b'\r' if next != Some(&b'\n') => seen.2 = true,
            _ => {}
        }
    }
    seen
}

#[test]
fn splicing_keeps_the_mime_tree_delimiters_and_line_endings() {
    let mut pairs = Vec::new();
    let mut problems = Vec::new();
    for (name, raw, settings) in splice_cases() {
        let out = support::rewrite_with(&raw, &settings);
        if out.report.parts_rewritten == 0 {
            problems.push(format!("{name}: nothing rewritten {:?}", out.report));
        }
        if !delimiters_start_lines(&out.message) {
            problems.push(format!(
                "{name}: a delimiter no longer starts a line:\n{}",
                String::from_utf8_lossy(&out.message)
            ));
        }
        let (had, has) = (endings(&raw), endings(&out.message));
        if (has.0 && !had.0) || (has.1 && !had.1) || (has.2 && !had.2) {
            problems.push(format!(
                "{name}: line endings {:?} became {:?} (CRLF, LF, CR)",
                had, has
            ));
        }
        pairs.push(support::mime_equiv::Pair {
            name,
            before: raw,
            after: out.message,
        });
    }
    match support::mime_equiv::check(&pairs) {
        Ok(c) if c.checked == pairs.len() => {}
        Ok(c) => problems.push(format!("Python checked {} of {}", c.checked, pairs.len())),
        Err(found) => problems.push(found),
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_byte_order_mark_before_the_header_is_relayed_untouched() {
    // Python's `email` (like other standard parsers) sees no header field
    // after a BOM: an edit would land in what they read as plain text.
    let body = "From: a@example.com\r\nX-LM-Tag: t\r\nContent-Type: text/html\r\n\r\n\
                <p><a href=\"https://x.test/\">x</a></p>\r\n";
    for bom in [&b"\xEF\xBB\xBF"[..], b"\xFF\xFE", b"\xFE\xFF"] {
        let raw = [bom, body.as_bytes()].concat();
        let out = support::rewrite(&raw, true, true);
        assert!(out.message == raw, "{bom:?}: the message was changed");
        assert_eq!(out.report.untracked_reason, Some("byte_order_mark"));
        assert_eq!(out.report.parts_rewritten, 0);
    }
}

#[test]
fn a_cr_only_message_is_relayed_as_it_came() {
    // mail-parser finds no header block without LF; Python's `email` reads
    // CR as a line end. Nothing is edited, so the two cannot disagree.
    let raw = "From: a@example.com\rContent-Type: multipart/mixed; boundary=b\r\r--b\r\
               Content-Type: text/html\r\r<p><a href=\"https://x.test/\">x</a></p>\r--b--\r";
    let out = support::rewrite(raw.as_bytes(), true, true);
    assert!(out.message == raw.as_bytes());
    assert_eq!(out.report.parts_rewritten, 0);
}

#[test]
fn a_header_block_standard_parsers_end_early_is_relayed_untouched() {
    // From the corpus (spamassassin `spam__bsmtp.eml`, a malformed Dovecot
    // fixture): mail-parser reads on past a line that is no header field;
    // Python's `email` ends the header there and sees a text/plain body,
    // so the pixel and links landed in what it reads as plain text.
    let html = "Content-Type: text/html\r\n\r\n<p><a href=\"https://x.test/\">x</a></p>\r\n";
    for head in [
        "HELO example.com\r\nMAIL FROM:<a@example.com>\r\nDATA\r\nFrom: a@example.com\r\n",
        "Fro :m Sender <a@example.com>\r\nSubject: s\r\n",
        "From: a@example.com\r\nnot a field\r\nSubject: s\r\n",
    ] {
        let raw = format!("{head}{html}");
        let out = support::rewrite(raw.as_bytes(), true, true);
        assert!(out.message == raw.as_bytes(), "{head:?}: changed");
        assert_eq!(out.report.untracked_reason, Some("malformed_header"));
    }
    // Continuations, an envelope `From ` line and odd but valid names are fine.
    let head =
        "From a@example.com Sat Jan  1 00:00:00 2000\r\nSubject: a\r\n\tb\r\nX-{odd}_!: v\r\n";
    let out = support::rewrite(format!("{head}{html}").as_bytes(), true, true);
    assert_eq!(out.report.parts_rewritten, 1, "{:?}", out.report);
}
