//! The dashboard at `/dashboard` on the admin listener (SPEC §8): server-
//! rendered HTML pages, no script, charts as inline SVG, the stylesheet
//! served by the binary itself (no CDN: the host may have no internet).
//!
//! Pages: `/dashboard` (every route over the last 30 days),
//! `/dashboard/routes/{id}?from=&to=&interval=&include_machine=` (one
//! route: the API's `/v1/routes/{id}/stats` parameters), and
//! `/dashboard/messages/{id}?include_machine=` (one relayed copy's
//! timeline), `/dashboard/tag?tag=&route=` (a tag's copies) and
//! `/dashboard/sent?message=` (a message as sent, `report.rs`). Figures come
//! from the same storage functions as the API's answers.
//!
//! Access: the API's bearer token in `Authorization`, or a session cookie
//! set by the login form (`session.rs`). A page asked for without either
//! redirects to the form. Every response forbids scripts, framing and
//! caching. Wrong tokens in the form are limited per client address
//! (`throttle.rs`) and each is logged (`dashboard login failed
//! client=ADDR`, for fail2ban). Every POST (login, logout) must come from
//! the dashboard itself: a browser's `Sec-Fetch-Site` or `Origin` naming
//! another site gets 403 (cross-site request forgery); the route page's
//! tracking form (`tracking.rs`, `POST /dashboard/routes/{id}/tracking`)
//! also carries a token bound to the session (`csrf.rs`).

mod chart;
mod csrf;
mod layout;
mod message;
mod overview;
mod report;
mod route;
mod session;
mod throttle;
mod tracking;

pub use throttle::Throttle;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, LOCATION, ORIGIN,
    REFERRER_POLICY, RETRY_AFTER, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use maud::Markup;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use subtle::ConstantTimeEq;

use super::{Api, ApiError};
use crate::listener::Reply;

/// The policy of every dashboard response: nothing but our own
/// stylesheet and forms, no script at all, never inside a frame.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The login form's body is one token: a few KiB at most.
const LOGIN_BODY_MAX_BYTES: usize = 4096;
/// The stylesheet, compiled into the binary.
const STYLE: &str = include_str!("dashboard/style.css");

/// Answers a request for a path under `/dashboard`.
pub(super) async fn handle(api: &Api, req: Request<Incoming>, peer: SocketAddr) -> Reply {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/dashboard").unwrap_or_default();
    let method = req.method().clone();
    if method == Method::POST && !same_origin(req.headers()) {
        tracing::warn!(client = %peer.ip(), path, "dashboard cross-site POST refused");
        return error_page(ApiError::Forbidden("a form of another site".into()));
    }
    match rest {
        "/style.css" if method == Method::GET => response(StatusCode::OK)
            .header(CONTENT_TYPE, "text/css; charset=utf-8")
            .body(Full::new(Bytes::from_static(STYLE.as_bytes())))
            .expect("static response parts are valid"),
        "/login" if method == Method::GET => html(StatusCode::OK, layout::login(None)),
        "/login" if method == Method::POST => login(api, req, peer.ip()).await,
        "/logout" if method == Method::POST => logout(),
        "/style.css" => not_allowed("GET"),
        "/login" => not_allowed("GET, POST"),
        "/logout" => not_allowed("POST"),
        _ if !signed_in(api, &req) => redirect("/dashboard/login")
            .body(Full::default())
            .expect("static response parts are valid"),
        _ if method == Method::POST && tracking_route(rest).is_some() => {
            let id = tracking_route(rest).unwrap_or_default().to_owned();
            let session = session::from_headers(req.headers())
                .unwrap_or_default()
                .to_owned();
            tracking::post(api, req, &id, &session).await
        }
        _ if tracking_route(rest).is_some() => not_allowed("POST"),
        _ if method != Method::GET => not_allowed("GET"),
        _ => match page(api, rest, req.uri().query(), &form_token(api, &req)).await {
            Ok(markup) => html(StatusCode::OK, markup),
            Err(e) => error_page(e),
        },
    }
}

/// The page at `rest` (the path after `/dashboard`); `form_token` goes
/// into its forms.
async fn page(
    api: &Api,
    rest: &str,
    query: Option<&str>,
    form_token: &str,
) -> Result<Markup, ApiError> {
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => overview::page(api).await,
        ["routes", id] => route::page(api, id, query, form_token).await,
        ["messages", id] => message::page(api, id, query).await,
        ["tag"] => report::page(api, report::Kind::Tag, query).await,
        ["sent"] => report::page(api, report::Kind::Sent, query).await,
        _ => Err(ApiError::NotFound(format!("no dashboard page {rest:?}"))),
    }
}

/// The route of a `/routes/{id}/tracking` path (the tracking form's).
fn tracking_route(rest: &str) -> Option<&str> {
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["routes", id, "tracking"] => Some(id),
        _ => None,
    }
}

/// The form token of the request's session (`csrf.rs`).
fn form_token(api: &Api, req: &Request<Incoming>) -> String {
    let session = session::from_headers(req.headers()).unwrap_or_default();
    csrf::token(&api.token_digest, session)
}

/// A bearer token, or a valid session cookie.
fn signed_in(api: &Api, req: &Request<Incoming>) -> bool {
    api.authorized(req.headers())
        || session::from_headers(req.headers())
            .is_some_and(|v| session::valid(&api.token_digest, v, now_secs()))
}

/// Whether a POST comes from the dashboard's own pages: a browser says
/// where a request comes from in `Sec-Fetch-Site` (all current ones) or
/// `Origin`; a request with neither is not a browser's form (curl, a test),
/// which cannot carry a victim's cookie anyway.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let host = headers.get(HOST).map(HeaderValue::as_bytes);
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| url::Url::parse(o).ok())
        .and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        });
    matches!((origin_host, host), (Some(o), Some(h)) if o.as_bytes().eq_ignore_ascii_case(h))
}

/// `POST /dashboard/logout`: the cookie is cleared.
fn logout() -> Reply {
    redirect("/dashboard/login")
        .header(SET_COOKIE, session::clear_cookie())
        .body(Full::default())
        .expect("static response parts are valid")
}

/// `POST /dashboard/login`: the form's token, compared as the API compares
/// bearer tokens (SHA-256 digests, constant time, so every wrong try costs
/// the same whatever its length), after the client's address passed the
/// [`Throttle`].
async fn login(api: &Api, req: Request<Incoming>, client: IpAddr) -> Reply {
    if let throttle::Verdict::Wait(wait) = api.login_throttle.check(client, Instant::now()) {
        tracing::warn!(%client, "dashboard login throttled");
        let message = "Too many wrong tokens from your address: wait before trying again.";
        let mut reply = html(StatusCode::TOO_MANY_REQUESTS, layout::login(Some(message)));
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        reply
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
        return reply;
    }
    let body = match Limited::new(req.into_body(), LOGIN_BODY_MAX_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            let message = format!("The form was over {LOGIN_BODY_MAX_BYTES} bytes.");
            return html(StatusCode::BAD_REQUEST, layout::login(Some(&message)));
        }
    };
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    if !bool::from(digest.ct_eq(&api.token_digest)) {
        let failures = api.login_throttle.failed(client, Instant::now());
        // One line per failure with the address, for fail2ban.
        tracing::warn!(%client, failures, "dashboard login failed");
        let message = "Wrong token: it must be the API token of the [api] section.";
        return html(StatusCode::UNAUTHORIZED, layout::login(Some(message)));
    }
    api.login_throttle.succeeded(client);
    tracing::info!(%client, "dashboard login");
    let value = session::issue(&api.token_digest, now_secs());
    redirect("/dashboard")
        .header(SET_COOKIE, session::set_cookie(&value))
        .body(Full::default())
        .expect("static response parts are valid")
}

fn now_secs() -> i64 {
    crate::time::now_ms().div_euclid(1000)
}

/// A response with the headers every dashboard answer carries.
fn response(status: StatusCode) -> hyper::http::response::Builder {
    Response::builder()
        .status(status)
        .header(CONTENT_SECURITY_POLICY, CSP)
        .header(X_FRAME_OPTIONS, "DENY")
        .header(X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(REFERRER_POLICY, "no-referrer")
        .header(CACHE_CONTROL, "no-store")
}

fn html(status: StatusCode, markup: Markup) -> Reply {
    response(status)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Full::new(Bytes::from(markup.into_string())))
        .expect("static response parts are valid")
}

/// A 303 to `location` (a GET after a form, or to the login form).
fn redirect(location: &'static str) -> hyper::http::response::Builder {
    response(StatusCode::SEE_OTHER).header(LOCATION, location)
}

fn not_allowed(allow: &'static str) -> Reply {
    error_page(ApiError::MethodNotAllowed(allow))
}

/// The error as a page with its status; internal causes are logged, not
/// shown.
fn error_page(e: ApiError) -> Reply {
    let status = e.status();
    let heading = match &e {
        ApiError::Unauthorized => "Not signed in",
        ApiError::Internal(cause) => {
            tracing::error!(error = %cause, "dashboard page failed");
            "Internal error"
        }
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    let mut reply = html(status, layout::error(heading, &e.to_string()));
    if let ApiError::MethodNotAllowed(allow) = e {
        reply
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    reply
}
