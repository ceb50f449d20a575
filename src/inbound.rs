//! The SMTP server (RFC 5321): accepting connections, the connection limit,
//! STARTTLS, and one `session` per client. What happens to a message once
//! it is read is `relay`'s business.
//!
//! Sessions are generic over the byte stream (a boxed [`Io`]), so tests can
//! drive one in memory and STARTTLS can swap the stream under it.

mod anvil;
mod auth;
mod data;
mod input;
mod password;
mod session;
mod verbs;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::relay::Relay;
use crate::smtp::Reply;

/// A client byte stream: TCP, TLS over TCP, or an in-memory pipe.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// What every session shares.
pub struct Inbound {
    pub relay: Arc<Relay>,
    pub config: Arc<Config>,
    pub tls: Option<TlsAcceptor>,
    /// AUTH's password checks, bounded in cost.
    pub passwords: Arc<password::Passwords>,
    /// AUTH failures per client address.
    pub anvil: anvil::Anvil,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("smtp.tls_cert/tls_key: {0}")]
    Tls(String),
    #[error("smtp.users: {0}")]
    Users(String),
}

impl Inbound {
    pub fn new(relay: Arc<Relay>) -> Result<Self, StartError> {
        let config = relay.config.clone();
        let tls = match &config.smtp.tls {
            Some(files) => Some(load_tls(&files.cert, &files.key)?),
            None => None,
        };
        let auth = &config.limits.auth;
        let passwords =
            password::Passwords::new(&config.smtp.users, auth).map_err(StartError::Users)?;
        let anvil = anvil::Anvil::new(auth);
        Ok(Self {
            relay,
            tls,
            passwords: Arc::new(passwords),
            anvil,
            config,
        })
    }

    /// Whether this client may relay without AUTH.
    pub fn allowed_network(&self, peer: &SocketAddr) -> bool {
        let ip = peer.ip().to_canonical();
        self.config
            .smtp
            .allowed_networks
            .iter()
            .any(|n| n.contains(&ip))
    }
}

/// Accepts clients until `shutdown`, then waits for open sessions to end
/// (each finishes its current transaction and says 421), or for the
/// `deadline`, which cuts the ones still open.
pub async fn serve(
    listener: TcpListener,
    inbound: Arc<Inbound>,
    shutdown: CancellationToken,
    deadline: crate::shutdown::Deadline,
) {
    let limit = Arc::new(Semaphore::new(inbound.config.limits.max_connections));
    let sessions = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off a little.
                tracing::warn!(error = %e, "smtp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            sessions.spawn(refuse_busy(stream, inbound.config.limits.write_timeout));
            continue;
        };
        let inbound = inbound.clone();
        let (shutdown, deadline) = (shutdown.clone(), deadline.clone());
        sessions.spawn(async move {
            session::run(Box::new(stream), peer, inbound, shutdown, deadline).await;
            drop(permit);
        });
    }
    sessions.close();
    sessions.wait().await;
    // The last copies' records, before the process waits for storage.
    inbound.relay.flush_records().await;
}

async fn refuse_busy(mut stream: tokio::net::TcpStream, timeout: std::time::Duration) {
    let reply = Reply::new(421, (4, 3, 2), "Too many connections, try again later");
    let _ = tokio::time::timeout(timeout, stream.write_all(&reply.to_wire())).await;
}

pub(crate) fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, StartError> {
    let config = crate::tls::server_from_files(cert, key).map_err(StartError::Tls)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
