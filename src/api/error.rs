//! The one API error type: what the client did wrong, or that we failed.
//! It becomes a JSON body `{"error": "..."}` with its status; internal
//! errors are logged and never shown (STYLE.md §4).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Response, StatusCode};

use crate::listener::Reply;
use crate::storage::StorageError;

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a parameter is missing, unknown or malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no bearer token, or the wrong one.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// 403: refused whoever asks (a cross-site form).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such path or object.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not (the allowed ones).
    #[error("method not allowed (allowed: {0})")]
    MethodNotAllowed(&'static str),
    /// 413: the request body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the request body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 500: logged with its cause; the client sees a generic message.
    #[error("internal error")]
    Internal(#[from] StorageError),
}

impl ApiError {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The HTTP response for this error.
    pub fn into_reply(self) -> Reply {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "API request failed");
        }
        let mut reply = json(
            self.status(),
            &serde_json::json!({ "error": self.to_string() }),
        );
        match self {
            ApiError::Unauthorized => {
                reply
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed(allowed) => {
                reply
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allowed));
            }
            _ => {}
        }
        reply
    }
}

/// A JSON response. `nosniff`: a browser must never read an answer (which
/// may echo request data) as HTML or script.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    body(status, "application/json", Bytes::from(value.to_string()))
}

/// A response of `content_type` with the headers every API answer carries.
pub fn body(status: StatusCode, content_type: &'static str, bytes: Bytes) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header(CACHE_CONTROL, "no-store")
        .header(X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Full::new(bytes))
        .expect("static response parts are valid")
}
