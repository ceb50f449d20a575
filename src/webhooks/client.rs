//! One POST to an endpoint, safely: the host is resolved first and every
//! address it resolves to must be public unless
//! `[webhooks] allow_private_networks` (else a webhook is a way into the
//! private network); the connection goes to an address that was checked
//! (no second lookup to rebind). Redirects are not followed (a 3xx is a
//! failure), at most [`BODY_MAX`] bytes of the answer are read, and the
//! caller bounds the whole try with its timeout. HTTP/1.1 with hyper;
//! https with rustls and the system's roots.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use url::Url;

/// Most bytes of an answer's body read.
pub const BODY_MAX: usize = 4096;

/// Why a try got no HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0} resolves to {1}, a private address (webhooks.allow_private_networks is false)")]
    Private(String, IpAddr),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
}

/// The request's headers besides Host and Content-Type.
pub type Headers = Vec<(&'static str, String)>;

/// Where an HTTP request for a URL goes: the host to connect to (IPv6
/// without brackets, empty when the URL has none), the Host header and
/// the request target (path and query).
pub(crate) struct Target {
    pub host: String,
    pub authority: String,
    pub path: String,
}

impl Target {
    pub(crate) fn of(url: &Url) -> Target {
        let name = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(p) => format!("{name}:{p}"),
            None => name.to_owned(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        Target {
            host: name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            authority,
            path,
        }
    }
}

/// POSTs `body` to `url`; returns the status (the body read up to
/// [`BODY_MAX`] and dropped).
pub async fn post(
    url: &Url,
    headers: Headers,
    body: Bytes,
    allow_private: bool,
) -> Result<u16, SendError> {
    let Target {
        host,
        authority,
        path,
    } = Target::of(url);
    let port = url.port_or_known_default().unwrap_or(443);
    let addr = resolve(&host, port, allow_private).await?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| SendError::Connect(addr, e))?;
    let _ = tcp.set_nodelay(true);
    let mut request = Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("trackrelay/", env!("CARGO_PKG_VERSION"), " webhooks"),
        );
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| SendError::Http(e.to_string()))?;
    if url.scheme() == "https" {
        let name = ServerName::try_from(host.clone()).map_err(|e| SendError::Tls(e.to_string()))?;
        let stream = TlsConnector::from(TLS.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| SendError::Tls(e.to_string()))?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<I>(io: I, request: Request<Full<Bytes>>) -> Result<u16, SendError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| SendError::Http(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http)?;
    // Ends with the response (or its error), or when the try is dropped.
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    // Read a little of the body so a well-behaved receiver is not cut off
    // mid-answer; a longer one is dropped unread.
    let _ = Limited::new(response.into_body(), BODY_MAX).collect().await;
    Ok(status)
}

/// The first address of `host` when every one is allowed.
async fn resolve(host: &str, port: u16, allow_private: bool) -> Result<SocketAddr, SendError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| SendError::Resolve(host.to_owned(), e))?
        .collect();
    if let Some(bad) = addrs.iter().find(|a| !allow_private && !is_public(a.ip())) {
        return Err(SendError::Private(host.to_owned(), bad.ip()));
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| SendError::Resolve(host.to_owned(), std::io::ErrorKind::NotFound.into()))
}

/// False for loopback, private, link-local, shared (CGNAT), unspecified,
/// broadcast and multicast addresses, IPv4 and IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// rustls (ring) with the system's root certificates, built once.
static TLS: LazyLock<Arc<ClientConfig>> = LazyLock::new(|| {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A certificate the store refuses is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        let url = Url::parse("http://localhost:9/hook").unwrap();
        let err = post(&url, Vec::new(), Bytes::new(), false)
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Private(..)), "{err}");
        let err = post(&url, Vec::new(), Bytes::new(), true)
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Connect(..)), "{err}");
    }
}
