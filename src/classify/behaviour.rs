//! Behaviour signals: how the request was made (HEAD, prefetch headers,
//! headers every real browser sends) and when, relative to the message's
//! other hits and its relaying. Pure functions of the observation and its
//! context.

use super::{Context, Observation};
use crate::token::Kind;

/// A HEAD request: a link checker or scanner, never a person (PITFALLS §4:
/// civicrm PR #35328, mail-tracker PR #200, mautic PR #17263).
pub fn is_head(obs: &Observation<'_>) -> bool {
    obs.method.eq_ignore_ascii_case("HEAD")
}

/// A prefetch or preview announced by `Purpose`, `Sec-Purpose`,
/// `X-Purpose` or `X-Moz` (JayBizzle/Crawler-Detect PR #218).
pub fn is_prefetch(obs: &Observation<'_>) -> bool {
    obs.headers.iter().any(|(name, value)| {
        ["purpose", "sec-purpose", "x-purpose", "x-moz"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
            && (super::ua::contains_ignore_case(value, "prefetch")
                || super::ua::contains_ignore_case(value, "preview"))
    })
}

/// Headers were recorded but not the ones every browser sends with a
/// navigation (`Accept`, `Accept-Language`). An observation without any
/// recorded headers (the CLI's input may omit them) is not judged.
pub fn missing_browser_headers(obs: &Observation<'_>) -> bool {
    if obs.headers.is_empty() {
        return false;
    }
    let has = |h: &str| obs.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(h));
    !(has("accept") && has("accept-language"))
}

/// How many distinct links of the message (this one included) were
/// clicked within `window_ms` of this click. Counting stops at `cap`.
pub fn links_within(obs: &Observation<'_>, ctx: &Context<'_>, window_ms: u64, cap: usize) -> usize {
    let mut seen = [None::<u16>; 16];
    seen[0] = obs.link;
    let mut n = 1;
    let cap = cap.min(seen.len());
    for hit in ctx.hits {
        if n >= cap {
            break;
        }
        if hit.kind != Kind::Click || hit.at_ms.abs_diff(obs.at_ms) > window_ms {
            continue;
        }
        if !seen[..n].contains(&hit.link) {
            seen[n] = hit.link;
            n += 1;
        }
    }
    n
}

/// Whether the message was opened before this hit.
pub fn earlier_open(obs: &Observation<'_>, ctx: &Context<'_>) -> bool {
    ctx.hits
        .iter()
        .any(|h| h.kind == Kind::Open && h.at_ms <= obs.at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Hit;

    fn obs<'a>(headers: &'a [(String, String)]) -> Observation<'a> {
        Observation {
            kind: Kind::Click,
            at_ms: 10_000,
            method: "GET",
            ip: None,
            user_agent: None,
            headers,
            link: Some(0),
        }
    }

    fn h(n: &str, v: &str) -> (String, String) {
        (n.into(), v.into())
    }

    #[test]
    fn prefetch_headers() {
        assert!(is_prefetch(&obs(&[h("Sec-Purpose", "prefetch;prerender")])));
        assert!(is_prefetch(&obs(&[h("X-Purpose", "preview")])));
        assert!(!is_prefetch(&obs(&[h("Accept", "prefetch")])));
    }

    #[test]
    fn browser_headers() {
        assert!(!missing_browser_headers(&obs(&[])));
        assert!(missing_browser_headers(&obs(&[h("Accept", "*/*")])));
        assert!(!missing_browser_headers(&obs(&[
            h("accept", "text/html"),
            h("Accept-Language", "en")
        ])));
    }

    #[test]
    fn distinct_links_in_the_window() {
        let hit = |at_ms, link| Hit {
            at_ms,
            kind: Kind::Click,
            ip: None,
            link: Some(link),
        };
        let hits = [hit(9_500, 1), hit(9_600, 1), hit(11_000, 2), hit(20_000, 3)];
        let ctx = Context {
            hits: &hits,
            seconds_after_send: None,
            recipients_from_ip: 1,
        };
        assert_eq!(links_within(&obs(&[]), &ctx, 2_000, 16), 3);
        assert_eq!(links_within(&obs(&[]), &ctx, 100, 16), 1);
        assert_eq!(links_within(&obs(&[]), &ctx, 2_000, 2), 2);
    }
}
