//! `/dashboard/messages/{id}`: one relayed copy's timeline: its relaying
//! (envelope, tags, the upstream's reply), then every hit on its tracking
//! URLs in order with the classification and the classifier's reasons, or
//! "waiting" while the pipeline has not judged it; and its links with
//! their clicks. The same storage reads as `GET /v1/messages/{id}`, and
//! like it, machine events only with `?include_machine=true` (the page
//! says how many it left out, with a link to show them).

use maud::{Markup, html};
use uuid::Uuid;

use super::layout;
use super::route::{client, reasons};
use super::{Api, ApiError};
use crate::storage::{Event, Observation, RelayedCopy};
use crate::token::Kind;

/// The timeline page.
pub async fn page(api: &Api, id: &str, query: Option<&str>) -> Result<Markup, ApiError> {
    let include_machine = super::super::params::include_machine_only(query)?;
    let id = Uuid::parse_str(id)
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a message id (UUID)")))?;
    let s = &api.storage;
    let copy = s.message(id).await?;
    let observations = s.observations(id).await?;
    if copy.is_none() && observations.is_empty() {
        return Err(ApiError::NotFound(format!("no message {id}")));
    }
    let events = s.events(id).await?;
    let (shown, hidden) = super::super::params::split_machine(&events, include_machine);
    // Hits judged machine are left out with their events.
    let observations: Vec<Observation> = observations
        .into_iter()
        .filter(|o| {
            include_machine || !events.iter().any(|e| e.id == o.id && !e.counts_for_metrics)
        })
        .collect();
    let shown: Vec<Event> = shown.into_iter().cloned().collect();
    let body = html! {
        h1 { "Message " code data-message=(id) { (id) } }
        @if let Some(copy) = &copy { (relaying(copy)) }
        @else { p { "This copy was relayed elsewhere: only the hits on it are known here." } }
        (machine_note(id, hidden, include_machine))
        (timeline(copy.as_ref(), &observations, &shown))
        @if let Some(copy) = &copy { (links(copy, &events)) }
    };
    Ok(layout::page(&format!("Message {id}"), true, body))
}

/// How many machine events the timeline leaves out, and the link that
/// shows or hides them.
fn machine_note(id: Uuid, hidden: usize, include_machine: bool) -> Markup {
    let href = layout::message_href(&id);
    html! {
        @if include_machine {
            p.machine-note { "Machine events included. " a href=(href) { "Hide them" } }
        } @else {
            p.machine-note data-machine-events-hidden=(hidden) {
                (hidden) " machine events hidden. "
                @if hidden > 0 { a href=(format!("{href}?include_machine=true")) { "Show them" } }
            }
        }
    }
}

fn relaying(c: &RelayedCopy) -> Markup {
    html! {
        section {
            h2 { "Relaying" }
            dl.details {
                dt { "Route" } dd { a href=(layout::route_href(&c.route)) data-route=(c.route) { (c.route) } }
                dt { "Status" } dd data-status=(c.status) { (c.status) }
                dt { "Relayed" } dd { (layout::time(c.relayed_at_ms)) }
                dt { "Sender" } dd { (c.sender) }
                dt { "Recipients" } dd { (c.recipients.join(", ")) }
                dt { "Message-ID" } dd { (layout::sent_link(c.message_id_header.as_deref())) }
                dt { "Tags" } dd { (layout::tag_links(&c.tags)) }
                dt { "Upstream reply" } dd { (c.upstream_reply) }
            }
        }
    }
}

fn timeline(copy: Option<&RelayedCopy>, observations: &[Observation], events: &[Event]) -> Markup {
    html! {
        section {
            h2 { "Timeline" }
            ol.timeline {
                @if let Some(c) = copy {
                    li.relayed data-step="relayed" {
                        (layout::time(c.relayed_at_ms)) " relayed to " (c.recipients.join(", "))
                        ": " (c.upstream_reply)
                    }
                }
                @for o in observations {
                    (hit(o, events.iter().find(|e| e.id == o.id)))
                }
            }
        }
    }
}

/// One hit with its verdict (if judged yet).
fn hit(o: &Observation, event: Option<&Event>) -> Markup {
    let kind = o.kind.as_str();
    html! {
        li.hit data-event=(o.id) data-kind=(kind)
            data-classification=(event.map_or("", |e| e.classification.as_str())) {
            (layout::time(o.at_ms)) " " strong { (kind) }
            @if let Some(url) = &o.url { " of " span.url { (url) } }
            " — "
            @match event {
                Some(e) => {
                    span.class { (e.classification.as_str()) }
                    @if e.machine { " (machine)" } @else { " (human)" }
                    @if e.first { @if e.kind == Kind::Click { ", first click" } @else { ", first open" } }
                    br;
                    "Reasons: " span.reasons { (reasons(&e.bot)) }
                    " · Client: " (client(e))
                }
                None => { span.class { "waiting for classification" } }
            }
            br;
            (o.method) " from " (o.ip.map_or_else(|| "–".to_owned(), |ip| ip.to_string()))
            " · " span.ua data-user-agent="" { (o.user_agent.as_deref().unwrap_or("–")) }
        }
    }
}

/// The copy's tracked links and their clicks (human / all).
fn links(c: &RelayedCopy, events: &[Event]) -> Markup {
    html! {
        section {
            h2 { "Links" }
            table.links {
                thead { tr { th { "#" } th { "Destination" } th { "Human clicks" } th { "All clicks" } } }
                tbody {
                    @for (index, url) in c.links.iter().enumerate() {
                        @let clicks = events.iter().filter(|e| e.kind == Kind::Click && e.link.map(usize::from) == Some(index));
                        @let (human, all) = clicks.fold((0, 0), |(h, a), e| (h + usize::from(e.counts_for_metrics), a + 1));
                        tr data-link-index=(index) {
                            td.num { (index) }
                            td.url { (url) }
                            td.num data-metric="human_clicks" data-value=(human) { (human) }
                            td.num data-metric="clicks" data-value=(all) { (all) }
                        }
                    }
                }
            }
        }
    }
}
