//! The admin and reporting API on its own listener (`[api]`), behind a
//! bearer token compared in constant time: the paths of SPEC §8 (messages,
//! routes and their settings, stats, links; stats per tag and per message
//! as sent), webhook deliveries, the
//! OpenAPI document of them all (`/v1/openapi.json`, docs/openapi.json),
//! the Prometheus metrics (`/metrics`, OpenMetrics text: they name routes,
//! so they are behind the token too) and `/healthz` (no token). A request
//! with several `Host` headers is refused with 400. Every answer carries
//! `X-Content-Type-Options: nosniff`. Listings page by signed cursors
//! (`api/cursor.rs`); docs/api.md is the user's guide.

mod cursor;
mod dashboard;
mod error;
pub mod events;
mod messages;
mod openapi;
mod params;
mod routes;
mod stats;

pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{HeaderMap, Method, Request, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::listener::Reply;
use crate::routes::Registry;
use crate::storage::Storage;
pub use error::ApiError;

/// Largest request body read (a PATCH of a route's settings is tiny).
const BODY_MAX: usize = 16 * 1024;

/// A request's JSON body, at most [`BODY_MAX`] bytes.
async fn json_body(req: Request<Incoming>) -> Result<bytes::Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body must be application/json, not {content_type:?}"
        )));
    }
    let limited = http_body_util::Limited::new(req.into_body(), BODY_MAX);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge(
            format!("the body is over {BODY_MAX} bytes"),
        )),
        Err(e) => Err(ApiError::BadRequest(format!("cannot read the body: {e}"))),
    }
}

/// The API's shared state.
pub struct Api {
    storage: Storage,
    /// The routes in force (reloads and overrides included).
    routes: Arc<Registry>,
    /// SHA-256 of the configured token: comparing digests keeps the
    /// comparison constant-time whatever the presented token's length.
    token_digest: [u8; 32],
    /// Signs and checks the listings' cursors.
    cursors: cursor::Cursors,
    /// Failed dashboard logins per client address.
    login_throttle: dashboard::Throttle,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// Default and largest `limit` of a listing.
const LIMIT_DEFAULT: u32 = 100;
const LIMIT_MAX: u32 = 1000;

/// The `limit` parameter of a listing: 1 to [`LIMIT_MAX`].
fn limit(value: &str) -> Result<u32, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=LIMIT_MAX).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "limit must be a whole number from 1 to {LIMIT_MAX}, not {value:?}"
            ))
        })
}

/// Every path the API serves, as the OpenAPI document names it (`{id}`
/// stands for one segment), with its methods: the `Allow` header of a 405.
/// A path missing here is a 404, so the router serves no other; a unit
/// test checks that docs/openapi.json has exactly these.
const PATHS: &[(&str, &str)] = &[
    ("/healthz", "GET"),
    ("/metrics", "GET"),
    ("/v1/openapi.json", "GET"),
    ("/v1/messages", "GET"),
    ("/v1/messages/{id}", "GET"),
    ("/v1/messages/{id}/observations", "GET"),
    ("/v1/events", "GET"),
    ("/v1/webhooks/deliveries", "GET"),
    ("/v1/routes", "GET"),
    ("/v1/routes/{id}", "GET, PATCH, PUT"),
    ("/v1/routes/{id}/stats", "GET"),
    ("/v1/routes/{id}/links", "GET"),
    ("/v1/stats", "GET"),
];

/// The methods allowed on the path of `segments`, if [`PATHS`] has it.
fn allowed(segments: &[&str]) -> Option<&'static str> {
    PATHS.iter().find_map(|(template, methods)| {
        let parts: Vec<&str> = template.split('/').skip(1).collect();
        let fits = parts.len() == segments.len()
            && parts
                .iter()
                .zip(segments)
                .all(|(p, s)| p.starts_with('{') || p == s);
        fits.then_some(*methods)
    })
}

/// A time parameter (`key`): an RFC 3339 time or a date (midnight UTC),
/// as ms since the epoch.
fn time(key: &str, text: &str) -> Result<i64, ApiError> {
    crate::time::parse(text)
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{key} must be an RFC 3339 time or a date (2026-11-27), not {text:?}"
            ))
        })
}

impl Api {
    /// The API for `config`, reading from `storage`, showing and changing
    /// the routes of `routes`.
    pub fn new(config: &Config, storage: Storage, routes: Arc<Registry>) -> Self {
        Self {
            storage,
            routes,
            token_digest: Sha256::digest(config.api.token.as_bytes()).into(),
            cursors: cursor::Cursors::new(&config.api.token),
            login_throttle: dashboard::Throttle::default(),
        }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Reply {
        if req.headers().get_all(HOST).iter().count() > 1 {
            tracing::debug!(%peer, "API request with several Host headers refused");
            return ApiError::BadRequest("several Host headers".into()).into_reply();
        }
        let path = req.uri().path();
        if path == "/healthz" {
            if req.method() != Method::GET {
                return ApiError::MethodNotAllowed("GET").into_reply();
            }
            if let Err(e) = params::none(req.uri().query()) {
                return e.into_reply();
            }
            return error::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }));
        }
        if path == "/dashboard" || path.starts_with("/dashboard/") {
            // The dashboard does its own auth (bearer token or its cookie).
            return dashboard::handle(&self, req, peer).await;
        }
        if !self.authorized(req.headers()) {
            return ApiError::Unauthorized.into_reply();
        }
        if path == "/metrics" {
            if req.method() != Method::GET {
                return ApiError::MethodNotAllowed("GET").into_reply();
            }
            if let Err(e) = params::none(req.uri().query()) {
                return e.into_reply();
            }
            let text = crate::metrics::render();
            return error::body(StatusCode::OK, crate::metrics::CONTENT_TYPE, text.into());
        }
        match self.route(req).await {
            Ok(value) => error::json(StatusCode::OK, &value),
            Err(e) => e.into_reply(),
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<serde_json::Value, ApiError> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        let query = query.as_deref();
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let Some(allowed) = allowed(&segments) else {
            return Err(ApiError::NotFound(format!("no such path {path}")));
        };
        let method = req.method().clone();
        if !allowed.split(", ").any(|m| m == method.as_str()) {
            return Err(ApiError::MethodNotAllowed(allowed));
        }
        if matches!(
            segments.as_slice(),
            ["v1", "openapi.json"] | ["v1", "routes"] | ["v1", "routes", _]
        ) {
            params::none(query)?;
        }
        match segments.as_slice() {
            ["v1", "openapi.json"] => Ok(openapi::document().clone()),
            ["v1", "messages"] => messages::list(&self.storage, &self.cursors, query).await,
            ["v1", "messages", id] => messages::one(&self.storage, id, query).await,
            ["v1", "messages", id, "observations"] => {
                messages::observations(&self.storage, id, query).await
            }
            ["v1", "events"] => events::feed(&self.storage, &self.cursors, query).await,
            ["v1", "webhooks", "deliveries"] => {
                webhooks::deliveries(&self.storage, &self.cursors, query).await
            }
            ["v1", "routes"] => Ok(routes::list(&self.routes.snapshot())),
            ["v1", "routes", id] if method == Method::PATCH || method == Method::PUT => {
                let (id, put) = ((*id).to_owned(), method == Method::PUT);
                let body = json_body(req).await?;
                let route = routes::patch(&self.routes, &id, &body).await?;
                // The Lettermint SDKs' route update: their answer's shape.
                Ok(if put { routes::updated(route) } else { route })
            }
            ["v1", "routes", id] => routes::one(&self.routes.snapshot(), id),
            ["v1", "routes", id, "stats"] => {
                routes::stats(&self.storage, &self.route_ids(), id, query).await
            }
            ["v1", "routes", id, "links"] => {
                routes::links(&self.storage, &self.route_ids(), id, query).await
            }
            ["v1", "stats"] => stats::stats(&self.storage, &self.route_ids(), query).await,
            _ => Err(ApiError::NotFound(format!("no such path {path}"))),
        }
    }

    fn route_ids(&self) -> Vec<String> {
        let routes = self.routes.snapshot();
        routes.routes().iter().map(|r| r.id.clone()).collect()
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        digest.ct_eq(&self.token_digest).into()
    }
}
