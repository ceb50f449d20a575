//! The sending API's answers in the shapes the Lettermint SDKs decode
//! (their `ErrorMessage`, `ApiErrorBody` and `ValidationErrorBody`, see
//! docs/send-api.md): Python's `_api_error` maps the status to its error
//! classes and reads `message`, `errors` and `error` (an object with
//! `code`/`message`, or a string); Node's client reads a string `error`
//! as the 400/422 error type. Internal causes are logged, never shown.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::request::FieldErrors;
use crate::listener::Reply;

/// Why a send request failed; each becomes one status and body.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// 400: the body is not JSON of the expected shape.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or not one of `[[send.tokens]]`.
    #[error("Unauthenticated.")]
    Unauthenticated,
    /// 403: the token may not use this route.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such path.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("Method not allowed (allowed: {0}).")]
    MethodNotAllowed(&'static str),
    /// 409: the `Idempotency-Key` is in use with another body, or in flight.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is over `send.max_request_bytes`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422: fields are wrong.
    #[error("{message}")]
    Invalid {
        message: String,
        errors: FieldErrors,
    },
    /// 422: the upstream refused the message for good (its reply).
    #[error("The upstream refused the message: {0}")]
    Refused(String),
    /// 429: the token's `send.rate_per_minute` is used up.
    #[error("Too many messages for this token; retry in {} s.", .0.as_secs())]
    RateLimited(Duration),
    /// 503: the upstream refused for now or cannot be reached.
    #[error("The upstream is unavailable for now: {0}")]
    Unavailable(String),
    /// 503: the request took longer than `send.request_timeout_seconds`.
    #[error("The request did not finish within {} s.", .0.as_secs())]
    Timeout(Duration),
    /// 500: logged with its cause.
    #[error("Internal error.")]
    Internal(String),
}

/// Seconds a client is told to wait after a temporary failure.
const RETRY_SECONDS: u64 = 30;

impl SendError {
    /// Field errors as the hosted API words them: the first message, and
    /// how many more.
    pub fn invalid(errors: FieldErrors) -> Self {
        let count: usize = errors.values().map(Vec::len).sum();
        let first = errors
            .values()
            .flatten()
            .next()
            .cloned()
            .unwrap_or_default();
        let message = match count {
            0 | 1 => first,
            n => format!(
                "{first} (and {} more error{})",
                n - 1,
                if n > 2 { "s" } else { "" }
            ),
        };
        SendError::Invalid { message, errors }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            SendError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SendError::Unauthenticated => StatusCode::UNAUTHORIZED,
            SendError::Forbidden(_) => StatusCode::FORBIDDEN,
            SendError::NotFound(_) => StatusCode::NOT_FOUND,
            SendError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            SendError::Conflict(_) => StatusCode::CONFLICT,
            SendError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            SendError::Invalid { .. } | SendError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SendError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            SendError::Unavailable(_) | SendError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            SendError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body (`details` adds `error.details`, e.g. a batch's
    /// accepted emails).
    pub fn body(&self, details: Option<Value>) -> Value {
        let message = self.to_string();
        let coded = |code: &str| {
            let mut error = json!({ "code": code, "message": message });
            if let Some(d) = &details {
                error["details"] = d.clone();
            }
            json!({ "message": message, "error": error })
        };
        match self {
            SendError::Unauthenticated
            | SendError::NotFound(_)
            | SendError::MethodNotAllowed(_)
            | SendError::Conflict(_) => match details {
                None => json!({ "message": message }),
                Some(_) => coded("CONFLICT"),
            },
            SendError::BadRequest(_) => json!({ "message": message, "error": "invalid_request" }),
            SendError::Invalid { errors, .. } => {
                let mut body = json!({ "message": message, "errors": errors });
                if let Some(d) = details {
                    body["details"] = d;
                }
                body
            }
            SendError::Refused(reply) => {
                let mut body = json!({
                    "message": message, "error": "upstream_rejected",
                    "errors": { "to": [reply] },
                });
                if let Some(d) = details {
                    body["details"] = d;
                }
                body
            }
            SendError::Forbidden(_) => coded("ROUTE_NOT_ALLOWED"),
            SendError::PayloadTooLarge(_) => coded("PAYLOAD_TOO_LARGE"),
            SendError::RateLimited(_) => coded("RATE_LIMITED"),
            SendError::Unavailable(_) => coded("UPSTREAM_UNAVAILABLE"),
            SendError::Timeout(_) => coded("TIMEOUT"),
            SendError::Internal(_) => coded("INTERNAL_ERROR"),
        }
    }

    /// The whole HTTP response.
    pub fn into_reply(self, details: Option<Value>) -> Reply {
        if let SendError::Internal(cause) = &self {
            tracing::error!(error = %cause, "send request failed");
        }
        let mut reply = json_reply(self.status(), &self.body(details));
        let retry = match &self {
            SendError::RateLimited(wait) => Some(wait.as_secs().max(1)),
            SendError::Unavailable(_) | SendError::Timeout(_) => Some(RETRY_SECONDS),
            _ => None,
        };
        if let Some(seconds) = retry {
            reply
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let SendError::MethodNotAllowed(allowed) = self {
            reply
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static(allowed));
        }
        reply
    }
}

/// A JSON response with the headers every answer carries.
pub fn json_reply(status: StatusCode, body: &Value) -> Reply {
    raw_reply(status, "application/json", body.to_string().into_bytes())
}

/// A response of `content_type` (JSON stored for an idempotent replay).
pub fn raw_reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    reply
}
