//! The tracking server (SPEC §5): the open pixel (`/o/{token}`), the click
//! redirect (`/c/{token}`) and `/healthz`. `/metrics` is on the admin
//! listener, behind the API token (`crate::api`): it names routes.
//!
//! Owns HTTP routing, the Host check, the client address and the responses.
//! A request with more than one `Host` header is refused with 400 before
//! anything else (RFC 9112 §3.2: which one a proxy in front believed is
//! unknowable, so the host check cannot be trusted).
//! Tokens are verified by [`crate::token`] (no database lookup); each valid,
//! unexpired hit becomes a [`crate::storage::Observation`] and the response waits
//! for its commit at most `tracking.commit_wait_ms`, so a slow or failing
//! database never delays or breaks a redirect. Classification is later.

// Pure functions over request data, unit-tested without sockets.
pub mod client_ip;
pub mod hosts;
pub mod location;
mod responses;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HOST, USER_AGENT};
use hyper::{Method, Request};
use ipnet::IpNet;
use uuid::Uuid;

use crate::config::Config;
use crate::listener::Reply;
use crate::metrics::{self, HitOutcome};
use crate::routes::Registry;
use crate::storage::{Observation, Storage, Stored};
use crate::token::{Claims, KeyRing, Kind};

/// Everything a hit needs; shared by all connections.
#[derive(Debug)]
pub struct Tracking {
    keys: KeyRing,
    /// The routes in force: their tracking domains are the Hosts answered.
    routes: Arc<Registry>,
    trusted_proxies: Vec<IpNet>,
    client_ip_header: client_ip::ForwardedHeader,
    storage: Storage,
    commit_wait: Duration,
}

/// A hit's request, reduced to what is answered and recorded.
struct Hit<'a> {
    kind: Kind,
    token: &'a str,
    method: &'a Method,
    host: &'a str,
    peer: SocketAddr,
}

impl Tracking {
    /// The tracking server for `config`, answering the tracking domains
    /// of `routes`, recording into `storage`.
    pub fn new(config: &Config, storage: Storage, routes: Arc<Registry>) -> Self {
        Self {
            keys: config.tracking.keys.clone(),
            routes,
            trusted_proxies: config.tracking.trusted_proxies.clone(),
            client_ip_header: config.tracking.client_ip_header,
            storage,
            commit_wait: config.tracking.commit_wait,
        }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Reply {
        if req.headers().get_all(HOST).iter().count() > 1 {
            tracing::debug!(%peer, "request with several Host headers refused");
            return responses::text(400, "several Host headers\n");
        }
        let path = req.uri().path();
        let (kind, token) = if let Some(token) = path.strip_prefix("/o/") {
            (Kind::Open, token)
        } else if let Some(token) = path.strip_prefix("/c/") {
            (Kind::Click, token)
        } else {
            return match path {
                "/healthz" => responses::text(200, "ok\n"),
                _ => responses::text(404, "not found\n"),
            };
        };
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return responses::method_not_allowed();
        }
        let host = host_of(&req);
        let domains = self.routes.snapshot();
        if !hosts::allows(domains.domains(), host, crate::time::now_ms()) {
            tracing::debug!(host, %peer, "hit for an unknown host refused");
            metrics::hit(kind.as_str(), HitOutcome::Misdirected);
            return responses::misdirected();
        }
        let hit = Hit {
            kind,
            token,
            method: req.method(),
            host,
            peer,
        };
        self.answer(&hit, &req).await
    }

    async fn answer(&self, hit: &Hit<'_>, req: &Request<Incoming>) -> Reply {
        let label = hit.kind.as_str();
        let claims = match self.keys.verify(hit.token) {
            Ok((claims, key_id)) if claims.kind == hit.kind => Some((claims, key_id)),
            Ok(_) | Err(_) => None,
        };
        let Some((claims, key_id)) = claims else {
            metrics::hit(label, HitOutcome::Invalid);
            // Never log whole tokens: a prefix is enough to find one.
            let prefix: String = hit.token.chars().take(8).collect();
            tracing::debug!(kind = label, token = %prefix, peer = %hit.peer, "invalid token");
            return invalid(hit.kind);
        };
        let now = Duration::from_millis(crate::time::now_ms().max(0).unsigned_abs());
        let outcome = if claims.is_expired(now.as_secs()) {
            HitOutcome::Expired
        } else {
            let obs = self.observation(hit, req, &claims, key_id, now);
            match self.storage.record_observation(obs, self.commit_wait).await {
                Stored::Committed => HitOutcome::Recorded,
                Stored::Pending => HitOutcome::Queued,
                Stored::Overflow => HitOutcome::Overflow,
                Stored::Refused => HitOutcome::Refused,
            }
        };
        metrics::hit(label, outcome);
        match (hit.kind, claims.url) {
            (Kind::Click, Some(url)) => responses::redirect(&location::encode(&url)),
            // A signed click token always carries a URL; never redirect blind.
            (Kind::Click, None) => responses::invalid_link(),
            (Kind::Open, _) => responses::pixel(),
        }
    }

    fn observation(
        &self,
        hit: &Hit<'_>,
        req: &Request<Incoming>,
        claims: &Claims,
        key_id: &str,
        now: Duration,
    ) -> Observation {
        let headers = req.headers();
        let ip = client_ip::resolve(
            hit.peer.ip(),
            headers,
            &self.trusted_proxies,
            self.client_ip_header,
        );
        Observation {
            id: Uuid::now_v7(),
            message_id: claims.message_id,
            kind: claims.kind,
            recipient_id: claims.recipient_id_text(),
            link: claims.link,
            url: claims.url.clone(),
            at_ms: i64::try_from(now.as_millis()).unwrap_or(i64::MAX),
            method: hit.method.as_str().to_owned(),
            host: hit.host.to_owned(),
            ip: Some(ip),
            user_agent: headers.get(USER_AGENT).map(|v| header_text(v.as_bytes())),
            headers: recorded_headers(headers),
            key_id: key_id.to_owned(),
        }
    }
}

/// Most request headers stored per hit, and longest value kept: a client
/// must not be able to make one hit cost kilobytes of database.
const MAX_STORED_HEADERS: usize = 64;
const MAX_STORED_VALUE_BYTES: usize = 1024;
/// Headers that carry credentials: their name is kept (a signal), their
/// value never stored.
const REDACTED: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// The request headers as stored: in order, duplicates kept, bounded,
/// credentials redacted.
fn recorded_headers(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .take(MAX_STORED_HEADERS)
        .map(|(name, value)| {
            let value = if REDACTED.contains(&name.as_str()) {
                "<redacted>".to_owned()
            } else {
                header_text(value.as_bytes())
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

/// A header value as text (invalid UTF-8 replaced), cut at
/// [`MAX_STORED_VALUE_BYTES`] on a character boundary.
fn header_text(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > MAX_STORED_VALUE_BYTES {
        let mut end = MAX_STORED_VALUE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// An invalid token still gets an image (no broken image in the mail); a
/// click never goes anywhere (no open redirect, SPEC §4).
fn invalid(kind: Kind) -> Reply {
    match kind {
        Kind::Open => responses::pixel(),
        Kind::Click => responses::invalid_link(),
    }
}

/// The Host header, or the authority of an absolute-form request target.
fn host_of(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_headers_are_bounded_and_credentials_redacted() {
        let mut map = hyper::HeaderMap::new();
        map.append("cookie", "session=secret".parse().unwrap());
        map.append("x-long", "é".repeat(600).parse().unwrap());
        for i in 0..100 {
            map.append(
                hyper::header::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                "v".parse().unwrap(),
            );
        }
        let stored = recorded_headers(&map);
        assert_eq!(stored.len(), MAX_STORED_HEADERS);
        assert_eq!(stored[0], ("cookie".into(), "<redacted>".into()));
        assert_eq!(stored[1].1.len(), MAX_STORED_VALUE_BYTES);
        assert!(stored[1].1.chars().all(|c| c == 'é'));
    }
}
