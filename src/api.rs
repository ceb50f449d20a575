//! The admin and reporting API on its own listener (`[api]`), behind a
//! bearer token compared in constant time. This issue serves the message
//! paths of SPEC §8 (`api/messages.rs`) and `/healthz`; routes, stats and
//! the dashboard come with the reporting issue.

mod dashboard;
mod error;
mod messages;
mod routes;

pub use routes::stats as route_stats;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, Method, Request, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::listener::Reply;
use crate::relay::Relay;
use crate::storage::Storage;
pub use error::ApiError;

/// The API's shared state.
pub struct Api {
    storage: Storage,
    /// The relay, whose routes are the live ones (reloads included).
    relay: Arc<Relay>,
    /// SHA-256 of the configured token: comparing digests keeps the
    /// comparison constant-time whatever the presented token's length.
    token_digest: [u8; 32],
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

impl Api {
    /// The API for `config`, reading from `storage`; routes are `relay`'s.
    pub fn new(config: &Config, storage: Storage, relay: Arc<Relay>) -> Self {
        Self {
            storage,
            relay,
            token_digest: Sha256::digest(config.api.token.as_bytes()).into(),
        }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, _peer: SocketAddr) -> Reply {
        let path = req.uri().path();
        if path == "/healthz" {
            return error::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }));
        }
        if path == "/dashboard" || path.starts_with("/dashboard/") {
            // The dashboard does its own auth (bearer token or its cookie).
            return dashboard::handle(&self, req).await;
        }
        if !self.authorized(req.headers()) {
            return ApiError::Unauthorized.into_reply();
        }
        match self.route(req.method(), path, req.uri().query()).await {
            Ok(value) => error::json(StatusCode::OK, &value),
            Err(e) => e.into_reply(),
        }
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Result<serde_json::Value, ApiError> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let known = matches!(segments.as_slice(), ["v1", "messages", ..] if segments.len() <= 4)
            || segments == ["v1", "webhooks", "deliveries"]
            || matches!(segments.as_slice(), ["v1", "routes", ..] if segments.len() <= 4);
        if known && method != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        match segments.as_slice() {
            ["v1", "messages"] => messages::list(&self.storage, query).await,
            ["v1", "messages", id] => messages::one(&self.storage, id).await,
            ["v1", "messages", id, "observations"] => {
                messages::observations(&self.storage, id).await
            }
            ["v1", "webhooks", "deliveries"] => webhooks::deliveries(&self.storage, query).await,
            ["v1", "routes"] => Ok(routes::list(&self.relay.routes())),
            ["v1", "routes", id] => routes::one(&self.relay.routes(), id),
            ["v1", "routes", id, "stats"] => {
                routes::stats(&self.storage, &self.route_ids(), id, query).await
            }
            ["v1", "routes", id, "links"] => {
                routes::links(&self.storage, &self.route_ids(), id, query).await
            }
            _ => Err(ApiError::NotFound(format!("no such path {path}"))),
        }
    }

    fn route_ids(&self) -> Vec<String> {
        self.relay.routes().into_iter().map(|r| r.id).collect()
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
