//! The route page's tracking form: Track Opens / Track Clicks switches
//! with Save, and "Back to the config file's values", posted to
//! `POST /dashboard/routes/{id}/tracking`. It stores the same run-time
//! override as `PATCH /v1/routes/{id}` (through `api::routes::set`), then
//! sends the browser back to the route page. A plain form, no script; its
//! hidden `csrf` field must be the token of the session (`csrf.rs`), else
//! the answer is a 403 page.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::LOCATION;
use hyper::{Request, StatusCode};
use maud::{Markup, html};

use super::{Api, ApiError, csrf, error_page, layout, response};
use crate::listener::Reply;
use crate::routes::Change;
use crate::storage::RouteOverride;

/// The form's body: three short fields.
const BODY_MAX_BYTES: usize = 4096;

/// The form for route `id` with its settings in force, the override if
/// any, and the session's form token.
pub fn form(
    id: &str,
    settings: &crate::config::RouteSettings,
    o: Option<&RouteOverride>,
    token: &str,
) -> Markup {
    let overridden = o.is_some_and(|o| o.track_opens.is_some() || o.track_clicks.is_some());
    html! {
        form.tracking method="post" action=(format!("{}/tracking", layout::route_href(id))) {
            input type="hidden" name=(csrf::FIELD) value=(token);
            label { input type="checkbox" name="track_opens" value="on" checked[settings.track_opens]; " Track Opens" }
            label { input type="checkbox" name="track_clicks" value="on" checked[settings.track_clicks]; " Track Clicks" }
            button type="submit" name="action" value="save" { "Save" }
            button type="submit" name="action" value="reset" { "Back to the config file's values" }
            @if let Some(o) = o.filter(|_| overridden) {
                p.hint data-overridden="true" {
                    "Set here (or by PATCH /v1/routes) at " (layout::time(o.updated_at_ms))
                    ", over the config file."
                }
            } @else {
                p.hint data-overridden="false" { "As the config file says." }
            }
        }
    }
}

/// `POST /dashboard/routes/{id}/tracking` from a session (`session`: its
/// cookie value, empty for a bearer token).
pub async fn post(api: &Api, req: Request<Incoming>, id: &str, session: &str) -> Reply {
    let body = match Limited::new(req.into_body(), BODY_MAX_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            let e = ApiError::BadRequest(format!("the form was over {BODY_MAX_BYTES} bytes"));
            return error_page(e);
        }
    };
    let field = |name: &str| {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let presented = field(csrf::FIELD).unwrap_or_default();
    if !csrf::valid(&api.token_digest, session, &presented) {
        tracing::warn!(
            route = id,
            "dashboard form refused: missing or wrong csrf token"
        );
        return error_page(ApiError::Forbidden(
            "the form's security token is missing or not this session's: \
             reload the route page and submit it again"
                .into(),
        ));
    }
    let change = match field("action").as_deref() {
        Some("save") => Change {
            track_opens: Some(Some(field("track_opens").is_some())),
            track_clicks: Some(Some(field("track_clicks").is_some())),
        },
        Some("reset") => Change {
            track_opens: Some(None),
            track_clicks: Some(None),
        },
        other => {
            return error_page(ApiError::BadRequest(format!(
                "action must be save or reset, not {other:?}"
            )));
        }
    };
    match super::super::routes::set(&api.routes, id, change).await {
        Ok(_) => {
            tracing::info!(
                route = id,
                ?change,
                "route tracking changed from the dashboard"
            );
            response(StatusCode::SEE_OTHER)
                .header(LOCATION, layout::route_href(id))
                .body(Full::new(Bytes::new()))
                .expect("a route path is a valid header value")
        }
        Err(e) => error_page(e),
    }
}
