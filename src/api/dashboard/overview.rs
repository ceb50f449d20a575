//! `/dashboard`: every live route over the last 30 days: relayed copies,
//! unique opens and clicks with their rates (human events, as the API's
//! default), and the share of human and machine events.

use maud::{Markup, html};

use super::chart::{self, Series};
use super::layout::{self, percent, rate_value, ratio};
use super::{Api, ApiError};
use crate::storage::{ClassCounts, Counts, StatsQuery};

const DAY_MS: i64 = 86_400_000;
/// The overview's range: the API's default one.
const RANGE_DAYS: i64 = 30;

/// One route's row.
struct Row {
    id: String,
    /// Daily buckets with anything, for the charts.
    buckets: Vec<(i64, Counts)>,
    settings: crate::config::RouteSettings,
    totals: Counts,
    human: u64,
    machine: u64,
}

/// The overview page.
pub async fn page(api: &Api) -> Result<Markup, ApiError> {
    let to_ms = crate::report::default_to(crate::time::now_ms());
    let from_ms = to_ms - RANGE_DAYS * DAY_MS;
    let mut rows = Vec::new();
    let routes = api.routes.snapshot();
    for route in routes.routes() {
        let q = StatsQuery {
            route: route.id.clone(),
            from_ms,
            to_ms,
            bucket_ms: DAY_MS,
            include_machine: false,
        };
        let (buckets, totals) = api.storage.route_stats(q.clone()).await?;
        let classes = api.storage.route_classifications(q).await?;
        let (human, machine) = split(&classes);
        rows.push(Row {
            id: route.id.clone(),
            buckets,
            settings: route.settings.clone(),
            totals,
            human,
            machine,
        });
    }
    Ok(layout::page("Routes", true, render(&rows, from_ms, to_ms)))
}

/// Human and machine events among `classes`.
pub fn split(classes: &[ClassCounts]) -> (u64, u64) {
    classes.iter().fold((0, 0), |(h, m), c| {
        let n = c.opens + c.clicks;
        if c.machine { (h, m + n) } else { (h + n, m) }
    })
}

fn render(rows: &[Row], from_ms: i64, to_ms: i64) -> Markup {
    html! {
        h1 { "Routes" }
        p.range {
            "Last " (RANGE_DAYS) " days: " (layout::time(from_ms)) " to " (layout::time(to_ms))
            ". Opens and clicks count human events; the share counts every event."
        }
        table.overview data-from=(crate::time::rfc3339(from_ms)) data-to=(crate::time::rfc3339(to_ms)) {
            thead { tr {
                th { "Route" } th { "Tracking" } th.num { "Relayed" } th.num { "Unique opens" } th.num { "Open rate" }
                th.num { "Unique clicks" } th.num { "Click rate" } th.num { "Human / machine events" }
            } }
            tbody {
                @for row in rows {
                    @let t = &row.totals;
                    @let (open_rate, click_rate) = (ratio(t.unique_opens, t.relayed), ratio(t.unique_clicks, t.relayed));
                    tr data-route=(row.id) {
                        td { a href=(layout::route_href(&row.id)) { (row.id) } }
                        td { (layout::settings(&row.settings)) }
                        td.num data-metric="relayed" data-value=(t.relayed) { (t.relayed) }
                        td.num data-metric="unique_opens" data-value=(t.unique_opens) { (t.unique_opens) }
                        td.num data-metric="open_rate" data-value=(rate_value(open_rate)) { (percent(open_rate)) }
                        td.num data-metric="unique_clicks" data-value=(t.unique_clicks) { (t.unique_clicks) }
                        td.num data-metric="click_rate" data-value=(rate_value(click_rate)) { (percent(click_rate)) }
                        td.num {
                            span data-metric="human_events" data-value=(row.human) { (row.human) }
                            " / "
                            span data-metric="machine_events" data-value=(row.machine) { (row.machine) }
                            " (" (percent(ratio(row.human, row.human + row.machine))) " human)"
                        }
                    }
                }
            }
        }
        @for row in rows { (charts(row, from_ms, to_ms)) }
    }
}

/// A route's opens and clicks per day (human events).
fn charts(row: &Row, from_ms: i64, to_ms: i64) -> Markup {
    let series = |name, title, pick: fn(&Counts) -> u64| Series {
        name,
        title,
        from_ms,
        to_ms,
        bucket_ms: DAY_MS,
        points: row.buckets.iter().map(|(s, c)| (*s, pick(c))).collect(),
    };
    html! {
        section.route-charts data-route-charts=(row.id) {
            h2 { a href=(layout::route_href(&row.id)) { (row.id) } ": opens and clicks per day" }
            div.mini {
                (chart::bars(&series("opens", "Opens", |c| c.opens)))
                (chart::bars(&series("clicks", "Clicks", |c| c.clicks)))
            }
        }
    }
}
