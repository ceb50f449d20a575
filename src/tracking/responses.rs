//! The tracking server's responses, built once per request from constants.
//! The two answered on every hit (the pixel and the redirect) take their
//! headers from static values: nothing is parsed or copied but the
//! `Location`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, EXPIRES, HeaderMap, HeaderValue, LOCATION,
    PRAGMA, REFERRER_POLICY,
};
use hyper::{Response, StatusCode};

use crate::listener::Reply;

/// The 1x1 transparent GIF (GIF89a, two-colour palette, colour 0
/// transparent): 43 bytes.
pub const PIXEL: &[u8; 43] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\
\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

/// Shown for a click token that does not verify.
const INVALID_LINK_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Link not valid</title></head><body><h1>This link is not valid</h1>\
<p>It may have been altered or copied incompletely. Please use the link exactly as it \
appears in the email.</p></body></html>\n";

/// The open pixel; every cache told not to keep it (PITFALLS P23), so
/// every open reaches us.
pub fn pixel() -> Reply {
    let mut headers = HeaderMap::with_capacity(5);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("43"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, private"),
    );
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(EXPIRES, HeaderValue::from_static("0"));
    let mut reply = Response::new(Full::new(Bytes::from_static(PIXEL)));
    *reply.headers_mut() = headers;
    reply
}

/// The click redirect; `location` is already a valid header value
/// (see [`super::location`]).
pub fn redirect(location: &str) -> Reply {
    let Ok(location) = HeaderValue::from_str(location) else {
        return invalid_link();
    };
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(LOCATION, location);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = StatusCode::FOUND;
    *reply.headers_mut() = headers;
    reply
}

/// 404 with a short page, for click tokens that do not verify.
pub fn invalid_link() -> Reply {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .header(CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from_static(INVALID_LINK_PAGE.as_bytes())))
        .expect("static response parts are valid")
}

/// 421 Misdirected Request: the Host is not a configured tracking domain.
pub fn misdirected() -> Reply {
    status_text(
        StatusCode::MISDIRECTED_REQUEST,
        "this host is not a tracking domain of this server\n",
    )
}

/// 405 for anything but GET and HEAD on the hit paths.
pub fn method_not_allowed() -> Reply {
    let mut reply = status_text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    reply
        .headers_mut()
        .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
    reply
}

/// A short plain-text response.
pub fn text(status: u16, body: &'static str) -> Reply {
    status_text(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}

fn status_text(status: StatusCode, body: &'static str) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_is_a_43_byte_gif89a() {
        assert_eq!(PIXEL.len(), 43);
        assert!(PIXEL.starts_with(b"GIF89a"));
        assert_eq!(PIXEL.last(), Some(&0x3b));
        // The static Content-Length says what the body holds.
        assert_eq!(pixel().headers()[CONTENT_LENGTH], PIXEL.len().to_string());
    }

    #[test]
    fn a_location_that_is_no_header_value_gets_the_invalid_link_page() {
        assert_eq!(
            redirect("https://example.com/a").status(),
            StatusCode::FOUND
        );
        assert_eq!(
            redirect("https://example.com/\r\nSet-Cookie: a=b").status(),
            StatusCode::NOT_FOUND
        );
    }
}
