//! The outbound client's connector: resolve, check, connect, check again.
//!
//! The resolver refuses a host name any of whose addresses is special
//! purpose ([`address`]); hyper-util skips the resolver for IP literals
//! (`http://[::7f00:1]/`), so the connector checks those itself before
//! connecting, and then checks the address the socket is actually
//! connected to before one byte is sent. Both checks
//! run on every connection, redirects included; nothing is resolved twice
//! for one connection, so DNS rebinding cannot slip an address past them.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::address;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// A connection refused because of where it goes.
#[derive(Debug, thiserror::Error)]
#[error("{host} is {ip}, {block}; refused (webhooks.allow_private_networks is false)")]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
    pub block: &'static str,
}

/// Resolves with the system resolver (getaddrinfo, as before) and refuses
/// names that resolve to a special-purpose address.
#[derive(Clone, Debug)]
pub struct CheckedResolver {
    pub allow_private: bool,
}

impl Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private {
                check(&host, &addrs)?;
            }
            Ok(addrs.into_iter())
        })
    }
}

/// Refuses when any of `addrs` is special purpose.
fn check(host: &str, addrs: &[SocketAddr]) -> Result<(), Refused> {
    for a in addrs {
        if let Some(block) = address::special_purpose(a.ip()) {
            return Err(Refused {
                host: host.to_owned(),
                ip: a.ip(),
                block,
            });
        }
    }
    Ok(())
}

/// TCP through [`CheckedResolver`], then the peer address checked.
#[derive(Clone, Debug)]
pub struct CheckedConnector {
    inner: HttpConnector<CheckedResolver>,
    allow_private: bool,
}

impl CheckedConnector {
    pub fn new(allow_private: bool, connect_timeout: std::time::Duration) -> Self {
        let mut inner = HttpConnector::new_with_resolver(CheckedResolver { allow_private });
        // https is handled by the TLS layer around this connector.
        inner.enforce_http(false);
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(connect_timeout));
        Self {
            inner,
            allow_private,
        }
    }
}

impl Service<Uri> for CheckedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = uri.host().unwrap_or_default().to_owned();
        let allow_private = self.allow_private;
        // An IP literal is refused before a packet is sent to it.
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        if let (false, Ok(ip)) = (allow_private, literal)
            && let Err(refused) = check(&host, &[SocketAddr::new(ip, 0)])
        {
            return Box::pin(async move { Err(refused.into()) });
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            if !allow_private {
                let peer = io.inner().peer_addr()?;
                check(&host, &[peer])?;
            }
            Ok(io)
        })
    }
}
