//! `/dashboard/routes/{id}`: one route over a range, with the parameters
//! of `GET /v1/routes/{id}/stats` (`from`, `to`, `interval=hour|day`,
//! `include_machine`), parsed by the same function: opens and clicks over
//! time as charts, the figures and rates, the human vs machine share by
//! classification, the top links, the recent events with the classifier's
//! reasons and the recent copies.

use maud::{Markup, html};

use super::chart::{self, Series};
use super::layout::{self, percent, rate_value, ratio};
use super::overview::split;
use super::tracking;
use super::{Api, ApiError};
use crate::storage::{
    ClassCounts, Counts, LinkClicks, MessageFilter, RelayedCopy, RouteEvent, StatsQuery,
};
use crate::time::rfc3339;

/// Recent events and copies shown.
const RECENT_EVENTS: u32 = 50;
const RECENT_COPIES: u32 = 20;
const HOUR_MS: i64 = 3_600_000;

/// What the page shows.
struct View {
    q: StatsQuery,
    /// The route's settings as they stand; none if it went in a reload.
    settings: Option<crate::config::RouteSettings>,
    /// Its run-time override, if any, and the tracking form's token.
    tracking_override: Option<crate::storage::RouteOverride>,
    form_token: String,
    buckets: Vec<(i64, Counts)>,
    totals: Counts,
    classes: Vec<ClassCounts>,
    links: Vec<LinkClicks>,
    events: Vec<RouteEvent>,
    copies: Vec<RelayedCopy>,
}

/// The route page.
pub async fn page(
    api: &Api,
    id: &str,
    query: Option<&str>,
    form_token: &str,
) -> Result<Markup, ApiError> {
    // The form sends empty fields for the defaults: leave them out.
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .filter(|(_, v)| !v.is_empty()),
        )
        .finish();
    let q = super::super::routes::parse(&api.route_ids(), id, Some(&query), true)?;
    let s = &api.storage;
    let copies = MessageFilter {
        route: Some(q.route.clone()),
        from_ms: Some(q.from_ms),
        to_ms: Some(q.to_ms),
        limit: RECENT_COPIES,
        ..MessageFilter::default()
    };
    // Five reads, each on its own read-only connection, at once.
    let ((buckets, totals), classes, links, events, copies) = tokio::try_join!(
        s.route_stats(q.clone()),
        s.route_classifications(q.clone()),
        s.route_links(q.clone()),
        s.route_events(q.clone(), RECENT_EVENTS),
        s.messages(copies),
    )?;
    let snapshot = api.routes.snapshot();
    let settings = snapshot.route(&q.route).map(|r| r.settings.clone());
    let tracking_override = snapshot.override_of(&q.route).cloned();
    let view = View {
        q,
        settings,
        tracking_override,
        form_token: form_token.to_owned(),
        buckets,
        totals,
        classes,
        links,
        events,
        copies,
    };
    Ok(layout::page(&format!("Route {id}"), true, render(&view)))
}

fn render(v: &View) -> Markup {
    let q = &v.q;
    let interval = if q.bucket_ms == HOUR_MS {
        "hour"
    } else {
        "day"
    };
    let series = |name, title, pick: fn(&Counts) -> u64| Series {
        name,
        title,
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        bucket_ms: q.bucket_ms,
        points: v.buckets.iter().map(|(s, c)| (*s, pick(c))).collect(),
    };
    html! {
        h1 { "Route " span data-route=(q.route) { (q.route) } }
        @if let Some(settings) = &v.settings {
            p { "Tracking " (layout::settings(settings)) "." }
            (tracking::form(&q.route, settings, v.tracking_override.as_ref(), &v.form_token))
        }
        section.params data-from=(rfc3339(q.from_ms)) data-to=(rfc3339(q.to_ms))
            data-interval=(interval) data-include-machine=(q.include_machine) {
            (params_form(q, interval))
        }
        (figures(&v.totals, q.include_machine))
        section.charts {
            (chart::bars(&series("opens", "Opens", |c| c.opens)))
            (chart::bars(&series("clicks", "Clicks", |c| c.clicks)))
        }
        (share(&v.classes))
        (links(&v.links))
        (events(&v.events, q.include_machine))
        (copies(&v.copies))
    }
}

fn params_form(q: &StatsQuery, interval: &str) -> Markup {
    html! {
        form.params method="get" {
            label { "From " input type="text" name="from" value=(rfc3339(q.from_ms)); }
            label { "To " input type="text" name="to" value=(rfc3339(q.to_ms)); }
            label { "Interval "
                select name="interval" {
                    option value="day" selected[interval == "day"] { "day" }
                    option value="hour" selected[interval == "hour"] { "hour" }
                }
            }
            label { "Machine events "
                select name="include_machine" {
                    option value="false" selected[!q.include_machine] { "excluded" }
                    option value="true" selected[q.include_machine] { "included" }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

/// The figures of `/v1/routes/{id}/stats`'s `totals`.
pub(super) fn figures(t: &Counts, include_machine: bool) -> Markup {
    let (open_rate, click_rate) = (
        ratio(t.unique_opens, t.relayed),
        ratio(t.unique_clicks, t.relayed),
    );
    let count = |name: &str, label: &str, n: u64| {
        html! { div.figure { dt { (label) } dd data-metric=(name) data-value=(n) { (n) } } }
    };
    let rate = |name: &str, label: &str, r: Option<f64>| {
        html! { div.figure { dt { (label) } dd data-metric=(name) data-value=(rate_value(r)) { (percent(r)) } } }
    };
    html! {
        section {
            h2 { "Figures" @if include_machine { " (machine events included)" } @else { " (human events)" } }
            dl.figures {
                (count("relayed", "Relayed", t.relayed))
                (count("opens", "Opens", t.opens))
                (count("unique_opens", "Unique opens", t.unique_opens))
                (rate("open_rate", "Open rate", open_rate))
                (count("clicks", "Clicks", t.clicks))
                (count("unique_clicks", "Unique clicks", t.unique_clicks))
                (rate("click_rate", "Click rate", click_rate))
            }
        }
    }
}

fn share(classes: &[ClassCounts]) -> Markup {
    let (human, machine) = split(classes);
    html! {
        section {
            h2 { "Human vs machine" }
            p {
                span data-metric="human_events" data-value=(human) { (human) } " human events ("
                (percent(ratio(human, human + machine))) "), "
                span data-metric="machine_events" data-value=(machine) { (machine) } " machine events ("
                (percent(ratio(machine, human + machine))) "), whatever the machine setting"
                @if human + machine >= u64::from(crate::storage::CLASSIFIED_MAX) {
                    " (the range's newest " (crate::storage::CLASSIFIED_MAX) " events)"
                }
                "."
            }
            (chart::share(human, machine))
            table.classes {
                thead { tr { th { "Classification" } th { "Kind" } th.num { "Opens" } th.num { "Clicks" } } }
                tbody {
                    @for c in classes {
                        tr data-classification=(c.classification.as_str()) {
                            td { (c.classification.as_str()) }
                            td { @if c.machine { "machine" } @else { "human" } }
                            td.num { (c.opens) }
                            td.num { (c.clicks) }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn links(links: &[LinkClicks]) -> Markup {
    html! {
        section {
            h2 { "Top links" }
            @if links.is_empty() { p { "No clicks in the range." } }
            @else {
                table.links {
                    thead { tr { th { "Destination" } th.num { "Clicks" } th.num { "Unique clicks" } } }
                    tbody {
                        @for l in links {
                            // Shown as text, not a link: the URL is the sender's.
                            tr data-link=(l.url) {
                                td.url { (l.url) }
                                td.num data-metric="clicks" data-value=(l.clicks) { (l.clicks) }
                                td.num data-metric="unique_clicks" data-value=(l.unique_clicks) { (l.unique_clicks) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn events(events: &[RouteEvent], include_machine: bool) -> Markup {
    html! {
        section {
            h2 { "Recent events" @if !include_machine { " (human)" } }
            @if events.is_empty() { p { "No events in the range." } }
            @else {
                table.events {
                    thead { tr {
                        th { "Time" } th { "Kind" } th { "Classification" } th { "Reasons" }
                        th { "Client" } th { "IP" } th { "User agent" } th { "Message" }
                    } }
                    tbody { @for e in events { (event_row(e)) } }
                }
            }
        }
    }
}

/// One event: what it was, the verdict and the signals behind it.
pub fn event_row(r: &RouteEvent) -> Markup {
    let e = &r.event;
    let kind = e.kind.as_str();
    html! {
        tr data-event=(e.id) data-kind=(kind) data-classification=(e.classification.as_str())
            data-machine=(e.machine) {
            td { (layout::time(e.at_ms)) }
            td { (kind) @if let Some(url) = &e.url { br; span.url { (url) } } }
            td.class { (e.classification.as_str()) @if e.first { " (first)" } }
            td.reasons { (reasons(&e.bot)) }
            td { (client(e)) }
            td { (r.ip.map_or_else(|| "–".to_owned(), |ip| ip.to_string())) }
            td.ua data-user-agent="" { (r.user_agent.as_deref().unwrap_or("–")) }
            td { a href=(layout::message_href(&e.message_id)) { "timeline" } }
        }
    }
}

/// `bot.reason_codes`, comma-separated, with the proxy type if any.
pub fn reasons(bot: &serde_json::Value) -> String {
    let mut words: Vec<&str> = bot["reason_codes"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
        .unwrap_or_default();
    if let Some(proxy) = bot["proxy_type"].as_str() {
        words.push(proxy);
    }
    if words.is_empty() {
        "–".into()
    } else {
        words.join(", ")
    }
}

/// Device, client type and name, as known.
pub fn client(e: &crate::storage::Event) -> String {
    let parts: Vec<&str> = [
        e.client_name.as_deref(),
        e.client_type.map(|c| c.as_str()),
        e.device_type.map(|d| d.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(" · ")
    }
}

fn copies(copies: &[RelayedCopy]) -> Markup {
    html! {
        section {
            h2 { "Recent copies in the range" }
            table.copies {
                thead { tr { th { "Relayed" } th { "Recipients" } th { "Status" } th { "Tags" } } }
                tbody {
                    @for c in copies {
                        tr data-message=(c.id) {
                            td { a href=(layout::message_href(&c.id)) { (rfc3339(c.relayed_at_ms)) } }
                            td { (c.recipients.join(", ")) }
                            td { (c.status) }
                            td { (c.tags.join(", ")) }
                        }
                    }
                }
            }
        }
    }
}
