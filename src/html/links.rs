//! Which links are tracked (SPEC §3): the skip rules and per-link opt-outs.
//!
//! Pure functions over attribute values; `scan` calls them for every `href`.

use url::Url;

/// Why a link was left as it was. The names appear in reports and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// mailto:, tel:, sms:, ftp:, javascript:, data: and other non-web schemes.
    Scheme,
    /// `#anchor` links within the message.
    Fragment,
    /// Relative or protocol-relative links with no `<base>` to resolve them.
    Relative,
    /// Unrendered template placeholders (`{{`, `*|`, `%%`, `[[`, …).
    Placeholder,
    /// URLs of the List-Unsubscribe header: scanners must not unsubscribe
    /// people through us (PITFALLS P26).
    Unsubscribe,
    /// A per-link opt-out attribute (ours or another service's).
    OptOut,
    /// Longer than `token::MAX_URL_LEN`.
    TooLong,
    /// Empty, not decodable in the part's charset, or not a URL a browser
    /// would open.
    Invalid,
}

impl SkipReason {
    pub const ALL: [SkipReason; 8] = [
        Self::Scheme,
        Self::Fragment,
        Self::Relative,
        Self::Placeholder,
        Self::Unsubscribe,
        Self::OptOut,
        Self::TooLong,
        Self::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheme => "scheme",
            Self::Fragment => "fragment",
            Self::Relative => "relative",
            Self::Placeholder => "placeholder",
            Self::Unsubscribe => "unsubscribe",
            Self::OptOut => "opt_out",
            Self::TooLong => "too_long",
            Self::Invalid => "invalid",
        }
    }
}

/// Template syntaxes that mean "not rendered yet"; a tracking URL would
/// freeze the placeholder. `%7B%7B` is `{{` after URL-encoding by an editor.
const PLACEHOLDERS: [&str; 7] = ["{{", "*|", "%%", "[[", "{%", "<%", "%7b%7b"];

/// Decides whether an `href` value (raw, as written in the HTML) is tracked.
/// Returns the destination URL to sign: entity-decoded, with the tabs and
/// newlines a browser would drop removed, otherwise exactly as written
/// (fragments, percent-escapes and non-ASCII kept).
pub fn destination(
    raw: &str,
    base: Option<&Url>,
    unsubscribe: &[String],
) -> Result<String, SkipReason> {
    let decoded = htmlize::unescape_attribute(raw);
    // WHATWG URL parsing strips leading/trailing C0 controls and spaces and
    // removes every tab and newline; mail clients open that URL.
    let url: String = decoded
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    if url.is_empty() || url.contains('\u{FFFD}') {
        return Err(SkipReason::Invalid);
    }
    let lower = url.to_ascii_lowercase();
    if PLACEHOLDERS.iter().any(|p| lower.contains(p)) {
        return Err(SkipReason::Placeholder);
    }
    let url = match scheme_of(&url) {
        Some(scheme)
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            url
        }
        Some(_) => return Err(SkipReason::Scheme),
        None if url.starts_with('#') => return Err(SkipReason::Fragment),
        None => match base.and_then(|b| b.join(&url).ok()) {
            Some(joined) if matches!(joined.scheme(), "http" | "https") => joined.into(),
            _ => return Err(SkipReason::Relative),
        },
    };
    if unsubscribe.contains(&url) {
        return Err(SkipReason::Unsubscribe);
    }
    if url.len() > crate::token::MAX_URL_LEN {
        return Err(SkipReason::TooLong);
    }
    // A URL the browser could not open stays as it is (we never redirect
    // somewhere the mail client would not have gone).
    match Url::parse(&url) {
        Ok(parsed) if parsed.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        _ => Err(SkipReason::Invalid),
    }
}

/// The scheme of a URL (RFC 3986 §3.1), if it has one.
fn scheme_of(url: &str) -> Option<&str> {
    let end = url.find(':')?;
    let scheme = &url[..end];
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some(scheme)
}

/// Per-link opt-outs senders already use with other services, honoured so
/// templates move over unchanged. Each is (attribute, value that opts out;
/// `None` = present at all).
pub const FOREIGN_OPT_OUTS: [(&str, Option<&str>); 7] = [
    ("clicktracking", Some("off")),
    ("data-pm-no-track", None),
    ("ses:no-track", None),
    ("mc:disable-tracking", None),
    ("disable-tracking", None),
    ("data-msys-clicktrack", Some("0")),
    ("data-no-track", None),
];

/// Our own opt-out attribute: `data-track="false"`; removed from the output.
pub const OWN_OPT_OUT: &str = "data-track";

/// Whether an attribute (name lower-cased, value raw) opts the link out.
pub fn is_foreign_opt_out(name: &str, value: &str) -> bool {
    FOREIGN_OPT_OUTS
        .iter()
        .any(|(n, v)| *n == name && v.is_none_or(|v| value.trim().eq_ignore_ascii_case(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(raw: &str) -> Result<String, SkipReason> {
        destination(raw, None, &[])
    }

    #[test]
    fn entities_are_decoded_exactly_once() {
        assert_eq!(
            dest("https://x.test/?a=1&amp;b=2").unwrap(),
            "https://x.test/?a=1&b=2"
        );
        assert_eq!(
            dest("https://x.test/?a=1&#38;b=2").unwrap(),
            "https://x.test/?a=1&b=2"
        );
        assert_eq!(
            dest("https://x.test/?a=1&amp;amp;b").unwrap(),
            "https://x.test/?a=1&amp;b"
        );
        // In attributes, a legacy entity without ';' before '=' is not an entity.
        assert_eq!(
            dest("https://x.test/?x=1&copy=2").unwrap(),
            "https://x.test/?x=1&copy=2"
        );
    }

    #[test]
    fn fragments_escapes_and_non_ascii_kept() {
        let u = "https://x.test/caf%C3%A9/é?q=ü#Überblick";
        assert_eq!(dest(u).unwrap(), u);
        assert_eq!(
            dest("  HTTPS://X.test/a\n  b ").unwrap(),
            "HTTPS://X.test/a  b"
        );
    }

    #[test]
    fn skip_rules() {
        for (raw, reason) in [
            ("mailto:a@b.c", SkipReason::Scheme),
            ("TEL:+123", SkipReason::Scheme),
            ("sms:123", SkipReason::Scheme),
            ("ftp://x.test/f", SkipReason::Scheme),
            ("javascript:alert(1)", SkipReason::Scheme),
            ("#top", SkipReason::Fragment),
            ("/relative/path", SkipReason::Relative),
            ("//cdn.x.test/a", SkipReason::Relative),
            ("{{action_url}}", SkipReason::Placeholder),
            ("https://x.test/?u=*|EMAIL|*", SkipReason::Placeholder),
            ("https://x.test/%%unsub%%", SkipReason::Placeholder),
            ("[[link]]", SkipReason::Placeholder),
            ("", SkipReason::Invalid),
            ("http://", SkipReason::Invalid),
        ] {
            assert_eq!(dest(raw), Err(reason), "{raw}");
        }
        let long = format!("https://x.test/{}", "a".repeat(5000));
        assert_eq!(dest(&long), Err(SkipReason::TooLong));
    }

    #[test]
    fn base_resolves_relative_links() {
        let base = Url::parse("https://bugs.x.test/show/").unwrap();
        assert_eq!(
            destination("bug?id=1", Some(&base), &[]).unwrap(),
            "https://bugs.x.test/show/bug?id=1"
        );
        assert_eq!(
            destination("#c1", Some(&base), &[]),
            Err(SkipReason::Fragment)
        );
    }

    #[test]
    fn unsubscribe_urls_are_left_alone() {
        let unsub = vec!["https://x.test/unsub?u=1&l=2".to_string()];
        assert_eq!(
            destination("https://x.test/unsub?u=1&amp;l=2", None, &unsub),
            Err(SkipReason::Unsubscribe)
        );
    }

    #[test]
    fn foreign_opt_outs() {
        assert!(is_foreign_opt_out("clicktracking", "OFF"));
        assert!(!is_foreign_opt_out("clicktracking", "on"));
        assert!(is_foreign_opt_out("ses:no-track", ""));
        assert!(is_foreign_opt_out("data-msys-clicktrack", "0"));
        assert!(!is_foreign_opt_out("data-msys-clicktrack", "1"));
    }
}
