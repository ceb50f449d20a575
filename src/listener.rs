//! HTTP/1.1 listener plumbing shared by the tracking server and the API:
//! accept connections, serve each with hyper, stop accepting on shutdown
//! and let open connections finish their in-flight requests.
//!
//! TLS, when configured, is terminated here, before HTTP.
//! Handlers are plain async functions of a request and the peer address;
//! routing and everything else is theirs.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The response type every handler returns.
pub type Reply = Response<Full<Bytes>>;

/// A client that sends no complete request head within this is dropped
/// (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections to finish their requests.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// A client that does not finish its TLS handshake within this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` (over TLS when `tls` is given) until `shutdown` is
/// cancelled, then drains (until `DRAIN_LIMIT` or the shutdown deadline,
/// whichever comes first).
pub async fn serve<H, F>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    deadline: crate::shutdown::Deadline,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small responses: send them at once.
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let reply = handler(req, peer);
            async move { Ok::<_, Infallible>(reply.await) }
        });
        let conn = Conn {
            name,
            peer,
            builder: builder.clone(),
            watcher: graceful.watcher(),
        };
        tokio::spawn(conn.run(stream, tls.clone(), service));
    }
    drop(listener);
    let drained = tokio::select! {
        r = tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown()) => r.is_ok(),
        () = deadline.passed() => false,
    };
    if !drained {
        tracing::warn!(
            listener = name,
            "connections still open after the drain limit; closing them"
        );
    }
    tracing::info!(listener = name, "stopped");
}

/// One accepted connection, ready to be served.
struct Conn {
    name: &'static str,
    peer: SocketAddr,
    builder: http1::Builder,
    watcher: Watcher,
}

impl Conn {
    /// Does the TLS handshake when `tls` is given, then serves HTTP.
    async fn run<S>(self, stream: TcpStream, tls: Option<TlsAcceptor>, service: S)
    where
        S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(acceptor) = tls else {
            return self.serve(TokioIo::new(stream), service).await;
        };
        let (name, peer) = (self.name, self.peer);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => self.serve(TokioIo::new(tls_stream), service).await,
            Ok(Err(e)) => {
                tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed")
            }
            Err(_) => tracing::debug!(listener = name, %peer, "TLS handshake timed out"),
        }
    }

    /// Serves HTTP/1.1 on `io` until the client leaves or shutdown drains it.
    async fn serve<I, S>(self, io: I, service: S)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let conn = self.builder.serve_connection(io, service);
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(listener = self.name, peer = %self.peer, error = %e, "connection ended with an error");
        }
    }
}
