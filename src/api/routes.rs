//! `GET /v1/routes`, `GET /v1/routes/{id}` (the live routes and their
//! settings), `GET /v1/routes/{id}/stats` and `GET /v1/routes/{id}/links` (SPEC §8):
//! a route's relayed copies, opens and clicks in hourly or daily buckets
//! with open and click rates on unique counts, and its clicks per
//! destination. Counting (human) events only unless `include_machine=true`.
//!
//! Parameters: `from`, `to` (RFC 3339 time or a date, UTC; default the 30
//! days before now), `interval=hour|day` (default day), `include_machine`.

use serde_json::{Value, json};

use super::ApiError;
use crate::config::Route;
use crate::storage::{Counts, StatsQuery, Storage};
use crate::time::rfc3339;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Most buckets one answer holds.
const BUCKETS_MAX: i64 = 24 * 400;

/// `GET /v1/routes`: every route with its settings, in matching order.
pub fn list(routes: &[Route]) -> Value {
    json!({ "routes": routes.iter().map(route).collect::<Vec<_>>() })
}

/// `GET /v1/routes/{id}`.
pub fn one(routes: &[Route], id: &str) -> Result<Value, ApiError> {
    routes
        .iter()
        .find(|r| r.id == id)
        .map(route)
        .ok_or_else(|| ApiError::NotFound(format!("no route {id:?}")))
}

fn route(r: &Route) -> Value {
    let s = &r.settings;
    json!({
        "id": r.id,
        "track_opens": s.track_opens,
        "track_clicks": s.track_clicks,
        "tracking_domain": s.tracking_domain.as_ref().map(|u| u.as_str()),
        "per_recipient": s.per_recipient,
        "pixel_position": format!("{:?}", s.pixel_position).to_lowercase(),
        "rewrite_dkim_signed": s.rewrite_dkim_signed,
        "webhooks": r.webhooks.len(),
    })
}

/// `GET /v1/routes/{id}/stats`.
pub async fn stats(
    storage: &Storage,
    routes: &[String],
    id: &str,
    query: Option<&str>,
) -> Result<Value, ApiError> {
    let q = parse(routes, id, query, true)?;
    let (buckets, totals) = storage.route_stats(q.clone()).await?;
    let buckets: Vec<Value> = buckets
        .iter()
        .map(|(start, c)| {
            let mut v = counts(c);
            v["start"] = json!(rfc3339(*start));
            v
        })
        .collect();
    Ok(json!({
        "route": q.route,
        "from": rfc3339(q.from_ms),
        "to": rfc3339(q.to_ms),
        "interval": if q.bucket_ms == HOUR_MS { "hour" } else { "day" },
        "include_machine": q.include_machine,
        "totals": counts(&totals),
        "buckets": buckets,
    }))
}

/// `GET /v1/routes/{id}/links`.
pub async fn links(
    storage: &Storage,
    routes: &[String],
    id: &str,
    query: Option<&str>,
) -> Result<Value, ApiError> {
    let q = parse(routes, id, query, false)?;
    let links = storage.route_links(q.clone()).await?;
    Ok(json!({
        "route": q.route,
        "from": rfc3339(q.from_ms),
        "to": rfc3339(q.to_ms),
        "include_machine": q.include_machine,
        "links": links.iter().map(|l| json!({
            "url": l.url, "clicks": l.clicks, "unique_clicks": l.unique_clicks,
        })).collect::<Vec<_>>(),
    }))
}

/// The figures of SPEC §8; rates are unique counts over relayed copies
/// (null without any).
fn counts(c: &Counts) -> Value {
    let rate = |n: u64| (c.relayed > 0).then(|| n as f64 / c.relayed as f64);
    json!({
        "relayed": c.relayed,
        "opens": c.opens,
        "unique_opens": c.unique_opens,
        "clicks": c.clicks,
        "unique_clicks": c.unique_clicks,
        "open_rate": rate(c.unique_opens),
        "click_rate": rate(c.unique_clicks),
    })
}

/// The route and `from`, `to`, `interval`, `include_machine` of a query
/// (the dashboard's route page takes the same).
pub(super) fn parse(
    routes: &[String],
    id: &str,
    query: Option<&str>,
    interval_allowed: bool,
) -> Result<StatsQuery, ApiError> {
    if !routes.iter().any(|r| r == id) {
        return Err(ApiError::NotFound(format!("no route {id:?}")));
    }
    let now = crate::time::now_ms();
    let (mut from, mut to, mut bucket, mut machine) = (None, None, DAY_MS, false);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "from" => from = Some(time("from", &value)?),
            "to" => to = Some(time("to", &value)?),
            "interval" if interval_allowed => {
                bucket = match value.as_ref() {
                    "hour" => HOUR_MS,
                    "day" => DAY_MS,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "interval must be hour or day, not {other:?}"
                        )));
                    }
                }
            }
            "include_machine" => {
                machine = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "include_machine must be true or false, not {other:?}"
                        )));
                    }
                }
            }
            other => {
                let known = if interval_allowed {
                    "from, to, interval, include_machine"
                } else {
                    "from, to, include_machine"
                };
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {other:?} ({known})"
                )));
            }
        }
    }
    let to_ms = to.unwrap_or(now);
    let from_ms = from.unwrap_or(to_ms - 30 * DAY_MS);
    if from_ms >= to_ms {
        return Err(ApiError::BadRequest("from must be before to".into()));
    }
    if (to_ms - from_ms) / bucket > BUCKETS_MAX {
        return Err(ApiError::BadRequest(format!(
            "at most {BUCKETS_MAX} buckets: use interval=day or a shorter range"
        )));
    }
    Ok(StatsQuery {
        route: id.to_owned(),
        from_ms,
        to_ms,
        bucket_ms: bucket,
        include_machine: machine,
    })
}

/// An RFC 3339 time or a date (midnight UTC), as ms since the epoch.
fn time(key: &str, text: &str) -> Result<i64, ApiError> {
    crate::time::parse(text)
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{key} must be an RFC 3339 time or a date (2026-11-27), not {text:?}"
            ))
        })
}
