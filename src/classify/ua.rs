//! User agents: the generic bot patterns (`bot-patterns.txt`, isbot's list
//! and ours), the families (`user-agents.tsv`: email clients, browsers,
//! proxies, previews, scanners) and the device a browser runs on.
//!
//! Every list is compiled into one [`regex::bytes::RegexSet`], matched
//! case-insensitively with ASCII classes (as isbot's JavaScript regexes
//! are), so a lookup is one pass of a lazy DFA over the agent and allocates
//! nothing. The `regex` crate has no look-around; a pattern that uses it is
//! put in the set with its look-around groups removed (a wider pattern) and,
//! only when that matches, checked in full with `fancy-regex`.

use std::sync::Arc;

use regex::bytes::{RegexSet, RegexSetBuilder};

use super::ListError;
use super::verdict::{Classification, DeviceType, ProxyType};

/// A list of patterns, compiled once.
#[derive(Debug)]
struct PatternSet {
    set: RegexSet,
    /// The full pattern of each entry that has look-around.
    full: Vec<Option<fancy_regex::Regex>>,
    has_lookaround: bool,
}

impl PatternSet {
    /// `patterns`: (line number, pattern) pairs.
    fn new(source: &str, patterns: &[(usize, &str)]) -> Result<PatternSet, ListError> {
        let mut stripped = Vec::with_capacity(patterns.len());
        let mut full = Vec::with_capacity(patterns.len());
        for &(line, p) in patterns {
            let p = &from_javascript(p);
            let wide = strip_lookaround(p);
            // Compiled alone first so an error names its line.
            builder(std::slice::from_ref(&wide))
                .build()
                .map_err(|e| ListError::new(source, line, e.to_string()))?;
            full.push(if wide == *p {
                None
            } else {
                let re = fancy_regex::Regex::new(&format!("(?i){p}"))
                    .map_err(|e| ListError::new(source, line, e.to_string()))?;
                Some(re)
            });
            stripped.push(wide);
        }
        let set = builder(&stripped)
            .build()
            .map_err(|e| ListError::new(source, 0, e.to_string()))?;
        let has_lookaround = full.iter().any(Option::is_some);
        Ok(PatternSet {
            set,
            full,
            has_lookaround,
        })
    }

    fn is_match(&self, ua: &str) -> bool {
        if !self.set.is_match(ua.as_bytes()) {
            return false;
        }
        !self.has_lookaround || self.first(ua).is_some()
    }

    /// Index of the first pattern (in file order) that matches.
    fn first(&self, ua: &str) -> Option<usize> {
        self.set
            .matches(ua.as_bytes())
            .into_iter()
            .find(|&i| match &self.full[i] {
                None => true,
                // A backtracking limit hit counts as no match.
                Some(re) => re.is_match(ua).unwrap_or(false),
            })
    }

    fn len(&self) -> usize {
        self.full.len()
    }
}

fn builder<S: AsRef<str>>(patterns: &[S]) -> RegexSetBuilder {
    let mut b = RegexSetBuilder::new(patterns);
    b.case_insensitive(true)
        // ASCII \w, \b, \d as in JavaScript; the bytes API allows it.
        .unicode(false)
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20);
    b
}

/// JavaScript regex syntax the `regex` crate reads differently: a `-` right
/// after a class escape inside brackets (`[\w-.]`) is a literal there.
fn from_javascript(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len() + 4);
    let (mut i, mut in_class, mut after_class_escape) = (0, false, false);
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() {
            let e = p[i + 1..].chars().next().unwrap_or('\0');
            out.push('\\');
            out.push(e);
            after_class_escape = in_class && "wWdDsS".contains(e);
            i += 1 + e.len_utf8();
            continue;
        }
        if in_class && c == b'-' && after_class_escape {
            out.push_str("\\-");
        } else {
            let ch = p[i..].chars().next().unwrap_or('\0');
            out.push(ch);
            i += ch.len_utf8() - 1;
        }
        match c {
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            _ => {}
        }
        after_class_escape = false;
        i += 1;
    }
    out
}

/// The pattern without its look-around groups: it matches everything the
/// pattern matches (look-around only narrows), and more.
fn strip_lookaround(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            // An escape and the character it escapes are kept as they are.
            out.push('\\');
            if let Some(e) = p[i + 1..].chars().next() {
                out.push(e);
                i += e.len_utf8();
            }
            i += 1;
            continue;
        }
        let rest = &p[i..];
        if ["(?=", "(?!", "(?<=", "(?<!"]
            .iter()
            .any(|s| rest.starts_with(s))
        {
            i = group_end(b, i);
            continue;
        }
        let ch = rest.chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// Index just past the group that opens at `start` (escapes and character
/// classes skipped).
fn group_end(b: &[u8], start: usize) -> usize {
    let (mut depth, mut i, mut in_class) = (0usize, start, false);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class => depth += 1,
            b')' if !in_class => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// Lines of a list file that are not blank or comments, with their numbers.
fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
}

/// The generic bot patterns.
#[derive(Debug)]
pub struct BotPatterns(PatternSet);

impl BotPatterns {
    /// Parses `bot-patterns.txt` (one regex a line; `#` comments).
    pub fn parse(source: &str, text: &str) -> Result<BotPatterns, ListError> {
        let list: Vec<(usize, &str)> = entries(text).map(|(n, l)| (n, l.trim())).collect();
        PatternSet::new(source, &list).map(BotPatterns)
    }

    /// Whether the agent matches any pattern.
    pub fn is_match(&self, ua: &str) -> bool {
        self.0.is_match(ua)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

/// What a family row says a matching agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    EmailClient,
    Browser,
    /// A browser that fetches pages through its maker's servers (Opera
    /// Mini, Puffin, Silk): a person, but the address is not theirs.
    ProxyBrowser,
    /// A proxy, preview bot, scanner or tool: the hit's class.
    Class(Classification),
}

/// One row of `user-agents.tsv`.
#[derive(Debug, Clone)]
pub struct Family {
    pub kind: FamilyKind,
    pub client_name: Option<Arc<str>>,
    pub proxy_type: Option<ProxyType>,
    /// Lower-cased name of the network the family must come from.
    pub network: Option<Box<str>>,
}

/// The user-agent families, first match wins.
#[derive(Debug)]
pub struct Families {
    set: PatternSet,
    rows: Vec<Family>,
}

impl Families {
    /// Parses `user-agents.tsv`: pattern, kind, client_name, proxy_type,
    /// network, tab-separated, `-` for none.
    pub fn parse(source: &str, text: &str) -> Result<Families, ListError> {
        let mut patterns = Vec::new();
        let mut rows = Vec::new();
        for (n, line) in entries(text) {
            let cols: Vec<&str> = line.split('\t').collect();
            let [pattern, kind, name, proxy, network] = cols[..] else {
                return Err(ListError::new(
                    source,
                    n,
                    format!("{} columns; 5 tab-separated ones expected", cols.len()),
                ));
            };
            let opt = |s: &str| (s != "-" && !s.is_empty()).then(|| s.to_owned());
            let kind =
                match kind {
                    "email_client" => FamilyKind::EmailClient,
                    "browser" => FamilyKind::Browser,
                    "proxy_browser" => FamilyKind::ProxyBrowser,
                    other => FamilyKind::Class(other.parse::<Classification>().map_err(|_| {
                        ListError::new(source, n, format!("unknown kind {other:?}"))
                    })?),
                };
            let proxy_type =
                match opt(proxy) {
                    None => None,
                    Some(p) => Some(p.parse::<ProxyType>().map_err(|_| {
                        ListError::new(source, n, format!("unknown proxy_type {p:?}"))
                    })?),
                };
            patterns.push((n, pattern));
            rows.push(Family {
                kind,
                client_name: opt(name).map(Arc::from),
                proxy_type,
                network: opt(network).map(|s| s.to_ascii_lowercase().into_boxed_str()),
            });
        }
        let set = PatternSet::new(source, &patterns)?;
        Ok(Families { set, rows })
    }

    /// The first family whose pattern matches the agent, with its index.
    pub fn find(&self, ua: &str) -> Option<(usize, &Family)> {
        self.set.first(ua).map(|i| (i, &self.rows[i]))
    }

    /// Every family (to resolve network names once).
    pub fn rows(&self) -> &[Family] {
        &self.rows
    }
}

/// A bare `Mozilla/N.N` with nothing after it: what Apple's Mail Privacy
/// Protection sends, and nothing else that names itself.
pub fn is_bare(ua: &str) -> bool {
    let b = ua.as_bytes();
    b.len() >= 11
        && b[..8].eq_ignore_ascii_case(b"mozilla/")
        && b[8..].iter().all(|c| c.is_ascii_digit() || *c == b'.')
}

/// The device an agent runs on, from its platform tokens.
pub fn device_type(ua: &str) -> Option<DeviceType> {
    let has = |needle: &str| contains_ignore_case(ua, needle);
    if has("ipad") || has("tablet") || (has("android") && !has("mobile")) {
        Some(DeviceType::Tablet)
    } else if has("iphone") || has("ipod") || has("mobile") || has("android") {
        Some(DeviceType::Mobile)
    } else if has("windows")
        || has("macintosh")
        || has("mac os x")
        || has("x11")
        || has("linux")
        || has("cros")
    {
        Some(DeviceType::Desktop)
    } else {
        None
    }
}

/// ASCII case-insensitive substring test; `needle` is lower case.
pub(super) fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookaround_is_stripped_for_the_set_and_checked_in_full() {
        assert_eq!(strip_lookaround("(?<!lib)http"), "http");
        assert_eq!(
            strip_lookaround(r"(?<! channel/|google/)google(?!(?:wv|app))"),
            "google"
        );
        assert_eq!(strip_lookaround(r"a\(?!b"), r"a\(?!b");
        assert_eq!(from_javascript(r"[\w\d-.]+\d-"), r"[\w\d\-.]+\d-");
        let bots = BotPatterns::parse("t", "(?<!lib)http\n").unwrap();
        assert!(bots.is_match("curl http://x"));
        assert!(!bots.is_match("libhttp/1.0"));
    }

    #[test]
    fn a_bad_pattern_names_its_line() {
        let e = BotPatterns::parse("bots.txt", "# c\nok\n(unclosed\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("bots.txt:3:"), "{e}");
    }

    #[test]
    fn first_family_wins() {
        let f = Families::parse(
            "t",
            "foxmail/\temail_client\tFoxmail\t-\t-\n\\bchrome/\tbrowser\tChrome\t-\t-\n",
        )
        .unwrap();
        let ua = "Mozilla/5.0 Chrome/101.0 Safari/537.36 Foxmail/7.2";
        assert_eq!(
            f.find(ua).unwrap().1.client_name.as_deref(),
            Some("Foxmail")
        );
        assert_eq!(f.find("x Chrome/1").unwrap().1.kind, FamilyKind::Browser);
        assert!(f.find("curl/8").is_none());
    }

    #[test]
    fn devices() {
        let d = |ua| device_type(ua);
        assert_eq!(
            d("Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X)"),
            Some(DeviceType::Mobile)
        );
        assert_eq!(
            d("Mozilla/5.0 (iPad; CPU OS 11_2_5)"),
            Some(DeviceType::Tablet)
        );
        assert_eq!(
            d("Mozilla/5.0 (Linux; Android 13; SM-X200) Safari/537.36"),
            Some(DeviceType::Tablet)
        );
        assert_eq!(
            d("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
            Some(DeviceType::Desktop)
        );
        assert_eq!(
            d("Outlook-iOS/709.2189947.prod.iphone"),
            Some(DeviceType::Mobile)
        );
        assert_eq!(d("curl/8.0"), None);
    }
}
