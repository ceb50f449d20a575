//! `/dashboard/tag?tag=&route=` (a tag's copies, within a route when
//! given) and `/dashboard/sent?message=` (a message as sent: its copies
//! sharing one Message-ID header): the figures and rates, opens and
//! clicks over time and the top links of one [`Report`], with the
//! parameters of `GET /v1/stats` (`from`, `to`, `interval`,
//! `include_machine`), parsed by the same function. No script: the
//! range is changed with a plain GET form.

use maud::{Markup, html};

use super::chart::{self, Series};
use super::layout;
use super::route::{figures, links};
use super::{Api, ApiError};
use crate::report::{self, Interval, Report, Scope};
use crate::storage::{Counts, LinkClicks};

/// The range parameters both pages take, besides their own.
const RANGE: [&str; 4] = ["from", "to", "interval", "include_machine"];

/// Which page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/dashboard/tag`.
    Tag,
    /// `/dashboard/sent`.
    Sent,
}

/// The page of `kind` for `query`.
pub async fn page(api: &Api, kind: Kind, query: Option<&str>) -> Result<Markup, ApiError> {
    // The form sends empty fields for the defaults: leave them out.
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .filter(|(_, v)| !v.is_empty()),
        )
        .finish();
    let own: &[&str] = match kind {
        Kind::Tag => &["tag", "route"],
        Kind::Sent => &["message"],
    };
    let known: Vec<&str> = own.iter().chain(&RANGE).copied().collect();
    let p = super::super::stats::params(Some(&query), &known)?;
    let scope = match (kind, &p.tag, &p.route, &p.message) {
        (Kind::Tag, Some(tag), route, _) => match route {
            Some(id) => Scope::Route {
                id: id.clone(),
                tag: Some(tag.clone()),
            },
            None => Scope::Tag(tag.clone()),
        },
        (Kind::Sent, _, _, Some(m)) => Scope::Message(m.clone()),
        (Kind::Tag, ..) => return Err(ApiError::BadRequest("give a tag: ?tag=".into())),
        (Kind::Sent, ..) => {
            return Err(ApiError::BadRequest(
                "give the Message-ID: ?message=".into(),
            ));
        }
    };
    let q = p.query(scope, &api.route_ids())?;
    let r = report::run(&api.storage, &q).await?;
    let title = match kind {
        Kind::Tag => format!("Tag {}", r.tag.as_deref().unwrap_or_default()),
        Kind::Sent => format!("Message <{}>", r.message_id.as_deref().unwrap_or_default()),
    };
    Ok(layout::page(&title, true, render(&title, kind, &q, &r)))
}

fn render(title: &str, kind: Kind, q: &report::Query, r: &Report) -> Markup {
    let series = |name, title, pick: fn(&report::Figures) -> u64| Series {
        name,
        title,
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        bucket_ms: q.interval.ms(),
        points: r
            .buckets
            .iter()
            .map(|b| (b.start_ms, pick(&b.figures)))
            .collect(),
    };
    let t = &r.totals;
    let totals = Counts {
        relayed: t.relayed,
        opens: t.opens,
        unique_opens: t.unique_opens,
        clicks: t.clicks,
        unique_clicks: t.unique_clicks,
    };
    let top: Vec<LinkClicks> = r
        .links
        .iter()
        .map(|l| LinkClicks {
            url: l.url.clone(),
            clicks: l.clicks,
            unique_clicks: l.unique_clicks,
        })
        .collect();
    html! {
        h1 data-tag=[r.tag.as_deref()] data-message=[r.message_id.as_deref()] { (title) }
        @if let Some(route) = &r.route {
            p { "Copies of route " a href=(layout::route_href(route)) data-route=(route) { (route) } " only." }
        }
        section.params data-from=(r.from) data-to=(r.to)
            data-include-machine=(r.include_machine) {
            (form(kind, r))
        }
        (figures(&totals, r.include_machine))
        section.charts {
            (chart::bars(&series("opens", "Opens", |f| f.opens)))
            (chart::bars(&series("clicks", "Clicks", |f| f.clicks)))
        }
        (links(&top))
    }
}

/// The range form; the page's own parameters ride along as hidden fields.
fn form(kind: Kind, r: &Report) -> Markup {
    let hidden: Vec<(&str, &str)> = match kind {
        Kind::Tag => [("tag", r.tag.as_deref()), ("route", r.route.as_deref())]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
        Kind::Sent => vec![("message", r.message_id.as_deref().unwrap_or_default())],
    };
    html! {
        form.params method="get" {
            @for (name, value) in &hidden { input type="hidden" name=(name) value=(value); }
            label { "From " input type="text" name="from" value=(r.from); }
            label { "To " input type="text" name="to" value=(r.to); }
            label { "Interval "
                select name="interval" {
                    option value="day" selected[r.interval == Interval::Day] { "day" }
                    option value="hour" selected[r.interval == Interval::Hour] { "hour" }
                }
            }
            label { "Machine events "
                select name="include_machine" {
                    option value="false" selected[!r.include_machine] { "excluded" }
                    option value="true" selected[r.include_machine] { "included" }
                }
            }
            button type="submit" { "Show" }
        }
    }
}
