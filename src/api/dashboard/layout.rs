//! The frame every dashboard page shares (head, navigation, stylesheet),
//! the login form and the error page, and small formatting helpers.
//!
//! Everything is rendered with maud, which escapes every interpolated
//! value: user agents, URLs, tags and recipients come from the outside.

use maud::{DOCTYPE, Markup, html};

use crate::time::rfc3339;

/// A whole page: `title`, the navigation (with logout when `signed_in`)
/// and `body`.
pub fn page(title: &str, signed_in: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · trackrelay" }
                link rel="stylesheet" href="/dashboard/style.css";
            }
            body {
                header {
                    a.brand href="/dashboard" { "trackrelay" }
                    @if signed_in {
                        nav { a href="/dashboard" { "Routes" } }
                        form.logout method="post" action="/dashboard/logout" {
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The login form, with `message` above it after a failed attempt.
pub fn login(message: Option<&str>) -> Markup {
    page(
        "Log in",
        false,
        html! {
            h1 { "Log in" }
            @if let Some(message) = message {
                p.error role="alert" { (message) }
            }
            form.login method="post" action="/dashboard/login" {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
            p.hint { "The token is the [api] token of the server's configuration." }
        },
    )
}

/// An error page: `heading` (the status) and what was wrong.
pub fn error(heading: &str, detail: &str) -> Markup {
    page(
        heading,
        true,
        html! {
            h1 { (heading) }
            p.error data-error="" { (detail) }
            p { a href="/dashboard" { "Back to the routes" } }
        },
    )
}

/// A route's tracking settings as they stand (the config's, or what
/// `PATCH /v1/routes/{id}` set), with `data-setting` hooks.
pub fn settings(s: &crate::config::RouteSettings) -> Markup {
    let on = |b: bool| if b { "on" } else { "off" };
    html! {
        span.settings {
            "opens " span data-setting="track_opens" data-value=(s.track_opens) { (on(s.track_opens)) }
            ", clicks " span data-setting="track_clicks" data-value=(s.track_clicks) { (on(s.track_clicks)) }
        }
    }
}

/// A time as RFC 3339 UTC in a `<time>` element.
pub fn time(ms: i64) -> Markup {
    let text = rfc3339(ms);
    html! { time datetime=(text) { (text) } }
}

/// A rate (0–1) as a percentage with one decimal, "–" without copies.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".into(), |r| format!("{:.1}%", r * 100.0))
}

/// A rate for a `data-value` attribute: the number, or empty.
pub fn rate_value(rate: Option<f64>) -> String {
    rate.map(|r| r.to_string()).unwrap_or_default()
}

/// `part / whole`, none when `whole` is zero.
pub fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The dashboard path of a route (its id percent-encoded as a segment).
pub fn route_href(id: &str) -> String {
    href(&["routes", id])
}

/// The dashboard path of a message's timeline.
pub fn message_href(id: &uuid::Uuid) -> String {
    href(&["messages", &id.to_string()])
}

/// The Message-ID as a link to the message-as-sent page, "–" without.
pub fn sent_link(message_id: Option<&str>) -> Markup {
    match message_id {
        Some(m) => html! { a href=(query_href("sent", &[("message", m)])) data-sent=(m) { (m) } },
        None => html! { "–" },
    }
}

/// Each tag as a link to its page, "–" without any.
pub fn tag_links(tags: &[String]) -> Markup {
    html! {
        @if tags.is_empty() { "–" }
        @for (i, tag) in tags.iter().enumerate() {
            @if i > 0 { ", " }
            a href=(query_href("tag", &[("tag", tag)])) data-tag=(tag) { (tag) }
        }
    }
}

/// `/dashboard/{page}?{pairs}`, the values form-encoded.
fn query_href(page: &str, pairs: &[(&str, &str)]) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("/dashboard/{page}?{query}")
}

fn href(segments: &[&str]) -> String {
    // A fixed base URL always parses and can have path segments.
    let mut url = url::Url::parse("http://dashboard.invalid/dashboard").expect("a valid URL");
    url.path_segments_mut()
        .expect("an http URL has segments")
        .extend(segments);
    url.path().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let out = error("400", "<script>alert(1)</script>").into_string();
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
        assert!(!out.contains("<script>"));
    }

    #[test]
    fn paths_encode_their_segments() {
        assert_eq!(route_href("news"), "/dashboard/routes/news");
        assert_eq!(route_href("a/b c"), "/dashboard/routes/a%2Fb%20c");
        assert_eq!(percent(Some(0.5)), "50.0%");
        assert_eq!(percent(None), "–");
        assert_eq!(ratio(1, 0), None);
    }
}
