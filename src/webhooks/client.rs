//! The outbound HTTP client of webhooks and `update-ranges`: one pooled
//! hyper-util client per user, keeping connections alive between requests
//! to the same endpoint. https through rustls as `crate::tls` configures
//! every client (ring, the system's roots), HTTP/1.1.
//!
//! Every connection goes through [`connect::CheckedConnector`]: unless
//! `[webhooks] allow_private_networks`, a host that resolves to a
//! special-purpose address ([`super::address`]) is refused, and so is a
//! socket whose peer turns out to be one (IP literals are not resolved).
//! The client never follows redirects: a webhook's 3xx is a failed try,
//! and `update-ranges` follows them itself, each hop through the same
//! checks. At most [`BODY_MAX`] bytes of a webhook answer are read; the
//! caller bounds each try with its timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use url::Url;

use super::connect::{CheckedConnector, Refused};

/// Most bytes of an answer's body read.
pub const BODY_MAX: usize = 4096;

/// How long an unused connection stays in the pool.
const IDLE: Duration = Duration::from_secs(60);

/// Why a try got no HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Private(Refused),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("HTTP: {0}")]
    Http(String),
}

/// The request's headers besides Host and Content-Type.
pub type Headers = Vec<(&'static str, String)>;

/// A pooled client; cheap to clone (clones share the pool).
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<CheckedConnector>, Full<Bytes>>,
    user_agent: &'static str,
}

impl HttpClient {
    /// A client for `user_agent`; `connect_timeout` bounds each TCP connect.
    pub fn new(allow_private: bool, connect_timeout: Duration, user_agent: &'static str) -> Self {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client().as_ref().clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(CheckedConnector::new(allow_private, connect_timeout));
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .build(https);
        Self { inner, user_agent }
    }

    /// POSTs `body` (JSON) to `url`; returns the status (the body read up
    /// to [`BODY_MAX`] and dropped, so the connection can be reused).
    pub async fn post(&self, url: &Url, headers: Headers, body: Bytes) -> Result<u16, SendError> {
        let mut request = Request::post(uri(url)?)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, self.user_agent);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| SendError::Http(e.to_string()))?;
        let response = self.send(url, request).await?;
        let status = response.status().as_u16();
        // Read a little of the body so a well-behaved receiver is not cut
        // off mid-answer; a longer one is dropped with its connection.
        let _ = Limited::new(response.into_body(), BODY_MAX).collect().await;
        Ok(status)
    }

    /// GETs `url` (no redirect followed); the caller reads the body.
    pub async fn get(&self, url: &Url) -> Result<hyper::Response<Incoming>, SendError> {
        let request = Request::get(uri(url)?)
            .header(hyper::header::USER_AGENT, self.user_agent)
            .body(Full::new(Bytes::new()))
            .map_err(|e| SendError::Http(e.to_string()))?;
        self.send(url, request).await
    }

    async fn send(
        &self,
        url: &Url,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, SendError> {
        self.inner
            .request(request)
            .await
            .map_err(|e| send_error(url, &e))
    }
}

fn uri(url: &Url) -> Result<hyper::Uri, SendError> {
    if url.host_str().is_none_or(str::is_empty) {
        return Err(SendError::Http(format!("{url}: no host")));
    }
    url.as_str()
        .parse()
        .map_err(|e| SendError::Http(format!("{url}: {e}")))
}

/// The client's error with its causes, our refusal picked out.
fn send_error(url: &Url, e: &hyper_util::client::legacy::Error) -> SendError {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return SendError::Private(Refused {
                host: refused.host.clone(),
                ip: refused.ip,
                block: refused.block,
            });
        }
        causes.push(cause.to_string());
        source = cause.source();
    }
    let text = if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    };
    if e.is_connect() {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or_default();
        SendError::Connect(format!("{host}:{port}"), text)
    } else {
        SendError::Http(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(allow_private: bool) -> HttpClient {
        HttpClient::new(allow_private, Duration::from_secs(2), "test")
    }

    #[tokio::test]
    async fn loopback_names_and_literals_are_refused_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            format!("http://localhost:{port}/hook"),
            format!("http://127.0.0.1:{port}/hook"),
            format!("https://127.0.0.1:{port}/hook"),
        ] {
            let url = Url::parse(&url).unwrap();
            let err = client(false)
                .post(&url, Vec::new(), Bytes::new())
                .await
                .unwrap_err();
            assert!(matches!(err, SendError::Private(..)), "{url}: {err}");
            assert!(err.to_string().contains("loopback"), "{err}");
        }
        drop(listener);
        let url = Url::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        let err = client(true)
            .post(&url, Vec::new(), Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Connect(..)), "{err}");
    }

    /// `http://[::7f00:1]/` was connected to before the IANA table. A real
    /// listener on 127.0.0.1 sees no connection for any spelling of a
    /// special-purpose address, and one once private networks are allowed.
    #[tokio::test]
    async fn no_spelling_of_a_special_address_reaches_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for host in [
            "localhost",
            "127.0.0.1",
            "[::7f00:1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[64:ff9b::7f00:1]",
            "[2002:7f00:1::1]",
            "0.0.0.0",
            "2130706433",
        ] {
            let url = Url::parse(&format!("http://{host}:{port}/hook")).unwrap();
            let err = client(false)
                .post(&url, Vec::new(), Bytes::new())
                .await
                .unwrap_err();
            assert!(matches!(err, SendError::Private(..)), "{url}: {err}");
        }
        let nothing = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(nothing.is_err(), "a refused URL connected");

        let url = Url::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        let sent =
            tokio::spawn(async move { client(true).post(&url, Vec::new(), Bytes::new()).await });
        let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(matches!(accepted, Ok(Ok(_))), "allowed URL did not connect");
        sent.abort();
    }
}
