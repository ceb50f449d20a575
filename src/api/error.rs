//! The one API error type: what the client did wrong, or that we failed.
//! It becomes a JSON body `{"error": "..."}` with its status; internal
//! errors are logged and never shown (STYLE.md §4).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
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
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
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
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
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
        if matches!(self, ApiError::Unauthorized) {
            reply.headers_mut().insert(
                WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
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
