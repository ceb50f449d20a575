//! Golden files for the rewrite rules: `tests/fixtures/rewrite/NAME.in.eml`
//! must become `NAME.out.eml`, with LF and with CRLF line endings (the
//! CRLF run converts both files). On a mismatch the output is written as
//! `NAME.{lf,crlf}.actual`; `UPDATE_GOLDEN=1` rewrites the `.out.eml` files
//! (review the diff before committing them).
//!
//! Besides the bytes, each case lists the destinations its click tokens
//! must verify to, in order.

mod support;

use std::path::{Path, PathBuf};

use trackrelay::config::RouteSettings;
use trackrelay::html::PixelPosition;
use trackrelay::rewrite::Outcome;

use support::{keys, rewrite_with, settings, tracking_tokens};

struct Case {
    name: &'static str,
    settings: RouteSettings,
    /// Destinations of the click tokens, in document order.
    links: &'static [&'static str],
    pixels: usize,
}

fn cases() -> Vec<Case> {
    let both = settings(true, true);
    let case = |name, links, pixels| Case {
        name,
        settings: both.clone(),
        links,
        pixels,
    };
    vec![
        case("pixel_end", &[], 1),
        Case {
            settings: RouteSettings {
                pixel_position: PixelPosition::Start,
                ..both.clone()
            },
            ..case("pixel_start", &[], 1)
        },
        case(
            "no_body",
            &["https://app.example.com/verify?code=123456&user=42"],
            1,
        ),
        case(
            "links",
            &[
                "https://shop.example/reset?token=abc&user=42",
                "https://shop.example/?a=1&b=2",
                "HTTPS://Shop.Example/Caf%C3%A9/é?q=ü#Frag",
                "http://shop.example/unquoted",
                "https://shop.example/spaced",
                "https://shop.example/area",
                "https://shop.example/ours-true",
                "https://shop.example/sp1",
            ],
            1,
        ),
        case(
            "vml",
            &[
                "https://shop.example/sale?src=vml&x=1",
                "https://shop.example/sale?src=html&x=1",
            ],
            1,
        ),
        case(
            "base_href",
            &[
                "https://bugs.example.org/show_bug.cgi?id=1",
                "https://bugs.example.org/show_bug.cgi?id=1#c2",
            ],
            1,
        ),
        case(
            "nested_multipart",
            &["https://shop.example/deep?a=1&b=2"],
            1,
        ),
        case("base64", &["https://shop.example/b64?x=1&y=2"], 1),
        case("long_line", &["https://shop.example/long"], 1),
        case("latin1", &["https://shop.example/straße?q=été"], 1),
        case("utf16", &["https://shop.example/ja"], 1),
        case("signed", &[], 0),
        case("dkim", &[], 0),
        // Route off; the message's own headers switch clicks on, opens off.
        Case {
            settings: settings(false, false),
            ..case("overrides", &["https://app.example.com/reset?t=1"], 0)
        },
        case("plain_only", &[], 0),
    ]
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rewrite")
}

fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 20);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[test]
fn golden_files_lf_and_crlf() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in cases() {
        let input = std::fs::read(dir().join(format!("{}.in.eml", case.name))).unwrap();
        let expected_path = dir().join(format!("{}.out.eml", case.name));
        let lf = rewrite_with(&input, &case.settings);
        if update {
            std::fs::write(&expected_path, &lf.message).unwrap();
        }
        let expected = std::fs::read(&expected_path).unwrap_or_default();
        for (label, input, expected) in [
            ("lf", input.clone(), expected.clone()),
            ("crlf", to_crlf(&input), to_crlf(&expected)),
        ] {
            let outcome = rewrite_with(&input, &case.settings);
            let actual_path = dir().join(format!("{}.{label}.actual", case.name));
            if outcome.message != expected {
                std::fs::write(&actual_path, &outcome.message).unwrap();
                failures.push(format!(
                    "{} ({label}): see {}",
                    case.name,
                    actual_path.display()
                ));
            } else {
                let _ = std::fs::remove_file(&actual_path);
            }
            check_tokens(&case, &outcome);
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

/// The click tokens verify to exactly the listed destinations, in order,
/// and the report agrees.
fn check_tokens(case: &Case, outcome: &Outcome) {
    let name = case.name;
    assert_eq!(outcome.report.links, case.links, "{name}: reported links");
    assert_eq!(outcome.report.pixels, case.pixels, "{name}: pixels");
    let text = String::from_utf8_lossy(&outcome.message);
    // Tokens are only readable in 7/8bit parts; QP and base64 parts are
    // checked through the report (and the corpus test decodes them).
    if ["base64", "utf16", "nested_multipart", "long_line"].contains(&name) {
        return;
    }
    let keys = keys();
    let urls: Vec<String> = tracking_tokens(&text, "c")
        .into_iter()
        .map(|t| keys.verify(t).unwrap().0.url.unwrap())
        .collect();
    assert_eq!(urls, case.links, "{name}: token destinations");
}

#[test]
fn tracking_off_is_byte_identical() {
    for case in cases() {
        let input = std::fs::read(dir().join(format!("{}.in.eml", case.name))).unwrap();
        if String::from_utf8_lossy(&input)
            .to_ascii_lowercase()
            .contains("x-lm-")
        {
            continue;
        }
        for input in [input.clone(), to_crlf(&input)] {
            let out = rewrite_with(&input, &settings(false, false));
            assert!(
                out.message == input,
                "{}: changed with tracking off",
                case.name
            );
        }
    }
}

#[test]
fn dkim_signed_mail_is_rewritten_when_the_route_says_so() {
    let input = std::fs::read(dir().join("dkim.in.eml")).unwrap();
    let out = rewrite_with(
        &input,
        &RouteSettings {
            rewrite_dkim_signed: true,
            ..settings(true, true)
        },
    );
    assert_eq!(out.report.links, ["https://shop.example/"]);
    assert_eq!(out.report.pixels, 1);
    let kept = rewrite_with(&input, &settings(true, true));
    assert_eq!(kept.report.untracked_reason, Some("dkim_signed"));
}

#[test]
fn overrides_are_applied_and_removed() {
    let input = std::fs::read(dir().join("overrides.in.eml")).unwrap();
    // Route tracks both; the header switches opens off for this message.
    let out = rewrite_with(&input, &settings(true, true));
    assert!(!out.report.track_opens);
    assert!(
        out.report.track_clicks,
        "TRUE wins over the unrecognised 'maybe'"
    );
    assert_eq!(out.report.tags, ["password-reset", "sécurité"]);
    assert_eq!(
        out.report.ignored_headers.len(),
        1,
        "{:?}",
        out.report.ignored_headers
    );
    let text = String::from_utf8_lossy(&out.message).to_ascii_lowercase();
    assert!(!text.contains("x-lm-"), "X-LM-* headers removed");
}
