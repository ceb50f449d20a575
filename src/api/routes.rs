//! `GET /v1/routes`, `GET /v1/routes/{id}` (the live routes and their
//! settings), `PATCH /v1/routes/{id}` (tracking switched at run time;
//! `PUT` too, as the Lettermint SDKs' `routes.update` sends it),
//! `GET /v1/routes/{id}/stats` and `GET /v1/routes/{id}/links` (SPEC §8): a route's relayed copies, opens and clicks in hourly or daily buckets
//! with open and click rates on unique counts, and its clicks per
//! destination. Counting (human) events only unless `include_machine=true`.
//!
//! Parameters: `from`, `to` (RFC 3339 time or a date, UTC; default the 30
//! days up to the end of the current hour), `interval=hour|day` (default
//! day), `include_machine`; `/stats` also `tag` (only the route's copies
//! carrying it). The figures are [`crate::report`]'s.

use serde_json::{Value, json};

use super::ApiError;
use crate::config::Route;
use crate::report::Scope;
use crate::routes::{Change, Registry, RoutesError, Snapshot};
use crate::storage::{RouteOverride, StatsQuery, Storage};
use crate::time::rfc3339;

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

/// `GET /v1/routes/{id}/stats`: the route's [`crate::report::Report`];
/// `tag=` keeps only its copies carrying that tag.
pub async fn stats(
    storage: &Storage,
    routes: &[String],
    id: &str,
    query: Option<&str>,
) -> Result<Value, ApiError> {
    let p = super::stats::params(query, &["from", "to", "interval", "include_machine", "tag"])?;
    let scope = Scope::Route {
        id: id.to_owned(),
        tag: p.tag.clone(),
    };
    let q = p.query(scope, routes)?;
    Ok(super::stats::to_json(
        &crate::report::run(storage, &q).await?,
    ))
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

/// The route and `from`, `to`, `interval`, `include_machine` of a query
/// (the dashboard's route page takes the same).
pub(super) fn parse(
    routes: &[String],
    id: &str,
    query: Option<&str>,
    interval_allowed: bool,
) -> Result<StatsQuery, ApiError> {
    let known: &[&str] = if interval_allowed {
        &["from", "to", "interval", "include_machine"]
    } else {
        &["from", "to", "include_machine"]
    };
    let scope = Scope::Route {
        id: id.to_owned(),
        tag: None,
    };
    let q = super::stats::params(query, known)?.query(scope, routes)?;
    q.route_query()
        .ok_or_else(|| ApiError::BadRequest("not a route's query".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
