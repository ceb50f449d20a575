//! The sending API (issue 18, docs/send-api.md) on its own listener
//! (`[send]`): `POST /v1/send` and `POST /v1/send/batch` as the official
//! Lettermint SDKs call them, so an application moves to trackrelay by
//! changing the base URL and token. Each email is checked
//! (`send/request`), built with mail-builder (`send/build`) and handed to
//! the relay exactly as an SMTP message (`send/deliver`); the answer comes
//! after the upstream accepted. Tokens and rate (`send/auth`),
//! `Idempotency-Key` (`send/idempotency`) and the SDKs' error bodies
//! (`send/reply`) are here too. The admin API (`api`) stays private.

mod auth;
mod build;
mod deliver;
mod idempotency;
mod reply;
mod request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::config::Config;
use crate::config::send::SendConfig;
use crate::listener::Reply;
use crate::relay::Relay;
use crate::routes::Registry;
use crate::storage::Storage;
use auth::{Caller, Rate, Tokens};
use idempotency::{InFlight, Lookup};
use reply::{SendError, raw_reply};
use request::{Bounds, Email};

/// The sending API's shared state.
#[derive(Debug)]
pub struct SendApi {
    settings: SendConfig,
    hostname: String,
    relay: Arc<Relay>,
    routes: Arc<Registry>,
    storage: Storage,
    tokens: Tokens,
    rate: Rate,
    in_flight: Arc<InFlight>,
}

/// A parsed request: one email or a batch.
enum Body {
    One(Box<Email>),
    Batch(Vec<Email>),
}

impl SendApi {
    pub fn new(
        config: &Config,
        settings: SendConfig,
        relay: Arc<Relay>,
        storage: Storage,
        routes: Arc<Registry>,
    ) -> Self {
        Self {
            tokens: Tokens::new(&settings.tokens),
            rate: Rate::new(settings.rate_per_minute),
            hostname: config.smtp.hostname.clone(),
            settings,
            relay,
            routes,
            storage,
            in_flight: Arc::default(),
        }
    }

    /// Answers one request, within `send.request_timeout_seconds`.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Reply {
        let limit = self.settings.request_timeout;
        let started = Instant::now();
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let reply = match tokio::time::timeout(limit, self.route(req, peer)).await {
            Ok(reply) => reply,
            Err(_) => SendError::Timeout(limit).into_reply(None),
        };
        tracing::info!(%peer, %method, %path, status = reply.status().as_u16(),
            ms = started.elapsed().as_millis() as u64, "send api request");
        reply
    }

    async fn route(&self, req: Request<Incoming>, peer: SocketAddr) -> Reply {
        let batch = match (req.method(), req.uri().path()) {
            (&Method::POST, "/v1/send") => false,
            (&Method::POST, "/v1/send/batch") => true,
            (&Method::GET, "/v1/ping") => return self.ping(&req),
            (&Method::GET, "/healthz") => {
                return raw_reply(StatusCode::OK, "text/plain", b"ok\n".to_vec());
            }
            (&Method::GET, "/v1/openapi.json") => {
                return raw_reply(
                    StatusCode::OK,
                    "application/json",
                    OPENAPI.as_bytes().to_vec(),
                );
            }
            (_, "/v1/send" | "/v1/send/batch") => {
                return SendError::MethodNotAllowed("POST").into_reply(None);
            }
            (_, "/v1/ping" | "/healthz" | "/v1/openapi.json") => {
                return SendError::MethodNotAllowed("GET").into_reply(None);
            }
            (_, path) => {
                return SendError::NotFound(format!("No such path: {path}")).into_reply(None);
            }
        };
        let Some(caller) = self.tokens.caller(req.headers()) else {
            return SendError::Unauthenticated.into_reply(None);
        };
        let key = match idempotency_key(&req) {
            Ok(key) => key,
            Err(e) => return e.into_reply(None),
        };
        let body = match self.read_body(req).await {
            Ok(body) => body,
            Err(e) => return e.into_reply(None),
        };
        match key {
            None => self.send(caller, &body, batch, peer).await.1,
            Some(key) => self.send_once(caller, &key, &body, batch, peer).await,
        }
    }

    /// [`SendApi::send`] under an `Idempotency-Key`: the stored answer
    /// again, a 409, or a send whose 2xx answer is stored.
    async fn send_once(
        &self,
        caller: Caller<'_>,
        key: &str,
        body: &[u8],
        batch: bool,
        peer: SocketAddr,
    ) -> Reply {
        let window = self.settings.idempotency_window;
        let lookup = self
            .in_flight
            .claim(&self.storage, caller.digest, key, body, window)
            .await;
        match lookup {
            Err(e) => e.into_reply(None),
            Ok(Lookup::Replay(status, stored)) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
                let mut reply = raw_reply(status, "application/json", stored);
                reply.headers_mut().insert(
                    "idempotent-replayed",
                    hyper::header::HeaderValue::from_static("true"),
                );
                reply
            }
            Ok(Lookup::Fresh(claim)) => {
                let (answer, reply) = self.send(caller, body, batch, peer).await;
                if let Some(json) = answer {
                    claim
                        .store(&self.storage, reply.status().as_u16(), &json, window)
                        .await;
                }
                reply
            }
        }
    }

    /// `GET /v1/ping`: `pong` for a known token (the SDKs' `ping()`).
    fn ping(&self, req: &Request<Incoming>) -> Reply {
        match self.tokens.caller(req.headers()) {
            Some(_) => raw_reply(StatusCode::OK, "text/plain", b"pong".to_vec()),
            None => SendError::Unauthenticated.into_reply(None),
        }
    }

    /// Sends the request's email(s); the reply and, when it succeeded, its
    /// JSON (for the idempotency record).
    async fn send(
        &self,
        caller: Caller<'_>,
        body: &[u8],
        batch: bool,
        peer: SocketAddr,
    ) -> (Option<Vec<u8>>, Reply) {
        let result = match self.parse(body, batch) {
            Ok(Body::One(email)) => self.send_one(caller, &email, peer).await,
            Ok(Body::Batch(emails)) => self.send_batch(caller, &emails, peer).await,
            Err(e) => Err((e, None)),
        };
        match result {
            Ok(value) => {
                let json = value.to_string().into_bytes();
                let reply = raw_reply(StatusCode::ACCEPTED, "application/json", json.clone());
                (Some(json), reply)
            }
            Err((e, details)) => (None, e.into_reply(details)),
        }
    }

    async fn send_one(
        &self,
        caller: Caller<'_>,
        email: &Email,
        peer: SocketAddr,
    ) -> Result<Value, (SendError, Option<Value>)> {
        self.admit(caller, 1).map_err(|e| (e, None))?;
        self.send_email(caller, email, peer)
            .await
            .map_err(|e| (e, None))
    }

    /// Emails in order; the first failure ends the batch, its error's
    /// `details.accepted` listing the emails already sent (`index`,
    /// `message_id`), as the SDKs document.
    async fn send_batch(
        &self,
        caller: Caller<'_>,
        emails: &[Email],
        peer: SocketAddr,
    ) -> Result<Value, (SendError, Option<Value>)> {
        self.admit(caller, emails.len()).map_err(|e| (e, None))?;
        let mut accepted = Vec::with_capacity(emails.len());
        for (index, email) in emails.iter().enumerate() {
            match self.send_email(caller, email, peer).await {
                Ok(answer) => accepted.push(answer),
                Err(e) if accepted.is_empty() => return Err((e, None)),
                Err(e) => {
                    let done = accepted
                        .iter()
                        .enumerate()
                        .map(|(i, a)| json!({"index": i, "message_id": a["message_id"]}));
                    tracing::info!(index, sent = accepted.len(), error = %e, "batch stopped");
                    return Err((e, Some(json!({ "accepted": done.collect::<Vec<_>>() }))));
                }
            }
        }
        Ok(Value::Array(accepted))
    }

    /// Rate first (a refused request sends nothing), per message.
    fn admit(&self, caller: Caller<'_>, messages: usize) -> Result<(), SendError> {
        self.rate
            .take(caller.digest, messages, Instant::now())
            .map_err(SendError::RateLimited)
    }

    /// One validated email: route, build, relay; `{"message_id", "status"}`.
    async fn send_email(
        &self,
        caller: Caller<'_>,
        email: &Email,
        peer: SocketAddr,
    ) -> Result<Value, SendError> {
        let built = build::build(email, &self.hostname);
        let route = self.choose_route(caller, email.route.as_deref(), &built.sender, peer)?;
        let message_id = built.message_id.clone();
        let route_id = route.id.clone();
        deliver::send(&self.relay, route, built, peer.ip()).await?;
        tracing::debug!(%message_id, route = %route_id, "sent through the API");
        Ok(json!({ "message_id": message_id, "status": "pending" }))
    }

    /// The request's `route` (which the token must allow), else the
    /// token's first route, else the route SMTP would take.
    fn choose_route(
        &self,
        caller: Caller<'_>,
        asked: Option<&str>,
        sender: &str,
        peer: SocketAddr,
    ) -> Result<crate::config::Route, SendError> {
        let allowed = &caller.token.routes;
        let snapshot = self.routes.snapshot();
        match asked.or(allowed.first().map(String::as_str)) {
            Some(id) if !allowed.is_empty() && !allowed.iter().any(|a| a == id) => Err(
                SendError::Forbidden(format!("This token may not send through route {id:?}.")),
            ),
            Some(id) => snapshot.route(id).cloned().ok_or_else(|| {
                SendError::invalid([("route".to_owned(), vec![format!("No route {id:?}.")])].into())
            }),
            None => Ok(deliver::select_by_envelope(&self.relay, sender, peer.ip())),
        }
    }

    /// The JSON of one email or of a batch (an array), validated.
    fn parse(&self, body: &[u8], batch: bool) -> Result<Body, SendError> {
        let bounds = Bounds {
            max_recipients: self.settings.max_recipients,
        };
        let bad = |e: serde_json::Error| {
            SendError::BadRequest(format!("The body is not a valid request: {e}"))
        };
        if !batch {
            let email: Email = serde_json::from_slice(body).map_err(bad)?;
            email.validate(bounds, "").map_err(SendError::invalid)?;
            return Ok(Body::One(Box::new(email)));
        }
        let emails: Vec<Email> = serde_json::from_slice(body).map_err(bad)?;
        let max = self.settings.max_batch;
        if emails.is_empty() || emails.len() > max {
            let message = format!(
                "A batch holds 1 to {max} emails; this one has {}.",
                emails.len()
            );
            return Err(SendError::invalid(
                [("messages".to_owned(), vec![message])].into(),
            ));
        }
        let mut errors = request::FieldErrors::new();
        for (i, e) in emails.iter().enumerate() {
            if let Err(list) = e.validate(bounds, &i.to_string()) {
                errors.extend(list);
            }
        }
        if errors.is_empty() {
            Ok(Body::Batch(emails))
        } else {
            Err(SendError::invalid(errors))
        }
    }

    /// The body, at most `send.max_request_bytes`.
    async fn read_body(&self, req: Request<Incoming>) -> Result<bytes::Bytes, SendError> {
        let max = self.settings.max_request_bytes;
        let limited = http_body_util::Limited::new(req.into_body(), max);
        match http_body_util::BodyExt::collect(limited).await {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(SendError::PayloadTooLarge(format!(
                    "The request body is over {max} bytes (send.max_request_bytes)."
                )))
            }
            Err(e) => Err(SendError::BadRequest(format!("Cannot read the body: {e}"))),
        }
    }
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible characters.
fn idempotency_key(req: &Request<Incoming>) -> Result<Option<String>, SendError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= 255 => Ok(Some(k.to_owned())),
        _ => Err(SendError::invalid(
            [(
                "Idempotency-Key".to_owned(),
                vec!["The Idempotency-Key header must be 1 to 255 visible characters.".to_owned()],
            )]
            .into(),
        )),
    }
}

/// The sending API's OpenAPI document (docs/send-openapi.json).
const OPENAPI: &str = include_str!("../docs/send-openapi.json");
