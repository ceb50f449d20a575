//! `GET /v1/routes`, `GET /v1/routes/{id}` (the live routes and their
//! settings), `PATCH /v1/routes/{id}` (tracking switched at run time;
//! `PUT` too, as the Lettermint SDKs' `routes.update` sends it),
//! `GET /v1/routes/{id}/stats` and `GET /v1/routes/{id}/links` (SPEC §8): a route's relayed copies, opens and clicks in hourly or daily buckets
//! with open and click rates on unique counts, and its clicks per
//! destination. Counting (human) events only unless `include_machine=true`.
//!
//! Parameters: `from`, `to` (RFC 3339 time or a date, UTC; default the 30
//! days up to the end of the current hour), `interval=hour|day` (default
//! day), `include_machine`.

use serde_json::{Value, json};

use super::ApiError;
use crate::config::Route;
use crate::routes::{Change, Registry, RoutesError, Snapshot};
use crate::storage::{Counts, RouteOverride, StatsQuery, Storage};
use crate::time::rfc3339;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Most buckets one answer holds.
const BUCKETS_MAX: i64 = 24 * 400;

/// `GET /v1/routes`: every route with its settings, in matching order.
pub fn list(routes: &Snapshot) -> Value {
    let all: Vec<Value> = routes
        .routes()
        .iter()
        .map(|r| route(r, routes.override_of(&r.id)))
        .collect();
    json!({ "routes": all })
}

/// `GET /v1/routes/{id}`.
pub fn one(routes: &Snapshot, id: &str) -> Result<Value, ApiError> {
    routes
        .route(id)
        .map(|r| route(r, routes.override_of(id)))
        .ok_or_else(|| ApiError::NotFound(format!("no route {id:?}")))
}

/// `PATCH /v1/routes/{id}` (SPEC §2): `track_opens` / `track_clicks` set to
/// true or false, or null to let the config's value stand again. Stored
/// before it takes effect (crate::routes), so what the next message gets
/// survives a restart; the answer is the route as `GET` shows it.
pub async fn patch(routes: &Registry, id: &str, body: &[u8]) -> Result<Value, ApiError> {
    set(routes, id, parse_change(body)?).await
}

/// Stores `change` as route `id`'s override (PATCH and the dashboard's
/// tracking form); the route as `GET` shows it.
pub(super) async fn set(routes: &Registry, id: &str, change: Change) -> Result<Value, ApiError> {
    match routes.set_override(id, change).await {
        Ok(snapshot) => one(&snapshot, id),
        Err(RoutesError::UnknownRoute(_)) => Err(ApiError::NotFound(format!("no route {id:?}"))),
        Err(RoutesError::Storage(e)) => Err(e.into()),
    }
}

/// The answer to a `PUT`: the route as `GET` shows it, wrapped as the
/// Lettermint SDKs' `RouteMutationResponse` (`data`, `message`).
pub fn updated(route: Value) -> Value {
    json!({ "data": route, "message": "Route updated successfully." })
}

/// The body of a PATCH or PUT: a JSON object of `track_opens` /
/// `track_clicks`, each true, false or null, either at the top or inside
/// `settings` (the Lettermint SDKs' `UpdateRouteData`), not both.
fn parse_change(body: &[u8]) -> Result<Change, ApiError> {
    let mut fields: serde_json::Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be a JSON object like {{\"track_opens\": true}}: {e}"
        ))
    })?;
    if let Some(settings) = fields.remove("settings") {
        let Value::Object(settings) = settings else {
            return Err(ApiError::BadRequest(format!(
                "settings must be a JSON object like {{\"track_opens\": true}}, not {settings}"
            )));
        };
        if let Some(key) = fields.keys().next() {
            return Err(ApiError::BadRequest(format!(
                "{key:?} beside settings: give the settings inside settings only"
            )));
        }
        fields = settings;
    }
    if fields.is_empty() {
        return Err(ApiError::BadRequest(
            "nothing to change: give track_opens and/or track_clicks (true, false or null)".into(),
        ));
    }
    let mut change = Change::default();
    for (key, value) in fields {
        let slot = match key.as_str() {
            "track_opens" => &mut change.track_opens,
            "track_clicks" => &mut change.track_clicks,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{other:?} cannot be changed at run time (track_opens, track_clicks)"
                )));
            }
        };
        *slot = Some(match value {
            Value::Bool(b) => Some(b),
            Value::Null => None,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{key} must be true, false or null, not {other}"
                )));
            }
        });
    }
    Ok(change)
}

fn route(r: &Route, o: Option<&RouteOverride>) -> Value {
    let s = &r.settings;
    json!({
        "id": r.id,
        "track_opens": s.track_opens,
        "track_clicks": s.track_clicks,
        "tracking_domain": s.tracking_domain.as_ref().map(|u| u.as_str()),
        "per_recipient": s.per_recipient,
        "pixel_position": format!("{:?}", s.pixel_position).to_lowercase(),
        "rewrite_dkim_signed": s.rewrite_dkim_signed,
        "dkim_sign": s.dkim_sign,
        "webhooks": r.webhooks.len(),
        "overrides": {
            "track_opens": o.and_then(|o| o.track_opens),
            "track_clicks": o.and_then(|o| o.track_clicks),
            "updated_at": o.map(|o| rfc3339(o.updated_at_ms)),
        },
    })
}

/// The end of a range given without `to`: the end of the current hour, so
/// that the default range (30 days up to it) is made of whole hours, which
/// the hourly rollups answer without reading events (storage/stats.rs).
pub(super) fn default_to(now_ms: i64) -> i64 {
    (now_ms.div_euclid(HOUR_MS) + 1) * HOUR_MS
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
            "from" => from = Some(super::time("from", &value)?),
            "to" => to = Some(super::time("to", &value)?),
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
            "include_machine" => machine = super::params::flag("include_machine", &value)?,
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
    let to_ms = to.unwrap_or_else(|| default_to(now));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_range_is_whole_hours_up_to_the_end_of_this_one() {
        // 2026-11-27T08:37:06.5Z → 09:00:00Z; on the hour → the next hour.
        let now = 1_795_768_626_500;
        let to = default_to(now);
        assert_eq!(rfc3339(to), "2026-11-27T09:00:00Z");
        assert_eq!(default_to(to), to + HOUR_MS);
        let q = parse(&["r".into()], "r", None, true).unwrap();
        assert_eq!(q.to_ms % HOUR_MS, 0);
        assert_eq!(q.to_ms - q.from_ms, 30 * DAY_MS);
        assert!(q.to_ms > crate::time::now_ms());
    }

    #[test]
    fn settings_may_come_nested_as_the_sdks_send_them() {
        let flat = parse_change(br#"{"track_opens": false}"#).unwrap();
        let nested = parse_change(br#"{"settings": {"track_opens": false}}"#).unwrap();
        assert_eq!(nested.track_opens, Some(Some(false)));
        assert_eq!(nested.track_opens, flat.track_opens);
        assert_eq!(nested.track_clicks, None);
        let err = |body: &[u8]| match parse_change(body) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(br#"{"settings": {"tls": "enforced"}}"#).contains("\"tls\" cannot be changed"));
        assert!(
            err(br#"{"name": "x", "settings": {"track_opens": true}}"#)
                .contains("\"name\" beside settings")
        );
        assert!(err(br#"{"settings": true}"#).contains("settings must be a JSON object"));
        assert!(err(br#"{"settings": {}}"#).contains("nothing to change"));
    }
}
