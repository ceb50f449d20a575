//! The one API error type: what the client did wrong, or that we failed.
//! It becomes a JSON body `{"error": "..."}` with its status; internal
//! errors are logged and never shown (STYLE.md §4).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
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
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
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

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static response parts are valid")
}
