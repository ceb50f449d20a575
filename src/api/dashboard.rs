//! The dashboard at `/dashboard` on the admin listener (SPEC §8): server-
//! rendered HTML pages, no script, charts as inline SVG, the stylesheet
//! served by the binary itself (no CDN: the host may have no internet).
//!
//! Pages: `/dashboard` (every route over the last 30 days),
//! `/dashboard/routes/{id}?from=&to=&interval=&include_machine=` (one
//! route: the API's `/v1/routes/{id}/stats` parameters), and
//! `/dashboard/messages/{id}` (one relayed copy's timeline). Figures come
//! from the same storage functions as the API's answers.
//!
//! Access: the API's bearer token in `Authorization`, or a session cookie
//! set by the login form (`session.rs`). A page asked for without either
//! redirects to the form. Every response forbids scripts, framing and
//! caching.

mod chart;
mod layout;
mod message;
mod overview;
mod route;
mod session;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};
use maud::Markup;
use sha2::{Digest, Sha256};
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
pub(super) async fn handle(api: &Api, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/dashboard").unwrap_or_default();
    let method = req.method().clone();
    match rest {
        "/style.css" if method == Method::GET => response(StatusCode::OK)
            .header(CONTENT_TYPE, "text/css; charset=utf-8")
            .body(Full::new(Bytes::from_static(STYLE.as_bytes())))
            .expect("static response parts are valid"),
        "/login" if method == Method::GET => html(StatusCode::OK, layout::login(None)),
        "/login" if method == Method::POST => login(api, req).await,
        "/logout" if method == Method::POST => redirect("/dashboard/login")
            .header(SET_COOKIE, session::clear_cookie())
            .body(Full::default())
            .expect("static response parts are valid"),
        "/style.css" => not_allowed("GET"),
        "/login" => not_allowed("GET, POST"),
        "/logout" => not_allowed("POST"),
        _ if !signed_in(api, &req) => redirect("/dashboard/login")
            .body(Full::default())
            .expect("static response parts are valid"),
        _ if method != Method::GET => not_allowed("GET"),
        _ => match page(api, rest, req.uri().query()).await {
            Ok(markup) => html(StatusCode::OK, markup),
            Err(e) => error_page(e),
        },
    }
}

/// The page at `rest` (the path after `/dashboard`).
async fn page(api: &Api, rest: &str, query: Option<&str>) -> Result<Markup, ApiError> {
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => overview::page(api).await,
        ["routes", id] => route::page(api, id, query).await,
        ["messages", id] => message::page(api, id).await,
        _ => Err(ApiError::NotFound(format!("no dashboard page {rest:?}"))),
    }
}

/// A bearer token, or a valid session cookie.
fn signed_in(api: &Api, req: &Request<Incoming>) -> bool {
    api.authorized(req.headers())
        || session::from_headers(req.headers())
            .is_some_and(|v| session::valid(&api.token_digest, v, now_secs()))
}

/// `POST /dashboard/login`: the form's token, compared as the API compares
/// bearer tokens (digests, constant time). Attempts are not rate-limited
/// (docs/dashboard.md).
async fn login(api: &Api, req: Request<Incoming>) -> Reply {
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
        let message = "Wrong token: it must be the API token of the [api] section.";
        return html(StatusCode::UNAUTHORIZED, layout::login(Some(message)));
    }
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
