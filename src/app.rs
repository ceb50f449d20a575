//! Wires the process together: opens storage, starts each listener as a
//! task, and on shutdown stops accepting, lets in-flight requests finish and
//! flushes every queued write.
//!
//! Every long-running part is a task in [`App::tasks`] that ends when the
//! one [`CancellationToken`] is cancelled; adding a listener (the SMTP
//! server) is one more `spawn` in [`App::start`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::config::Config;
use crate::listener;
use crate::storage::{Storage, StorageError};
use crate::tracking::Tracking;

/// How long shutdown waits for queued writes to be committed.
const FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// What stops the process from starting.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{queued} queued writes could not be stored before exit (database failing)")]
    Unflushed { queued: usize },
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running process: its listeners' addresses, storage and tasks.
#[derive(Debug)]
pub struct App {
    tracking_addr: SocketAddr,
    api_addr: SocketAddr,
    storage: Storage,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl App {
    /// Opens storage and starts every listener (bound before this returns,
    /// so a port 0 in the config gives a real port here).
    pub async fn start(config: Config) -> Result<App, AppError> {
        let storage =
            Storage::open_with_capacity(&config.storage_path, config.tracking.queue_capacity)?;
        tracing::info!(path = %config.storage_path.display(), "storage open");
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let tracking = Arc::new(Tracking::new(&config, storage.clone()));
        let socket = bind("tracking.listen", config.tracking.listen).await?;
        let tracking_addr = local_addr(&socket, config.tracking.listen);
        tasks.spawn(listener::serve(
            "tracking",
            socket,
            shutdown.clone(),
            move |req, peer| tracking.clone().handle(req, peer),
        ));
        tracing::info!(addr = %tracking_addr, base_url = %config.tracking.base_url, "tracking listener started");

        let api = Arc::new(Api::new(&config, storage.clone()));
        let socket = bind("api.listen", config.api.listen).await?;
        let api_addr = local_addr(&socket, config.api.listen);
        tasks.spawn(listener::serve(
            "api",
            socket,
            shutdown.clone(),
            move |req, peer| api.clone().handle(req, peer),
        ));
        tracing::info!(addr = %api_addr, "api listener started");

        Ok(App {
            tracking_addr,
            api_addr,
            storage,
            shutdown,
            tasks,
        })
    }

    /// Where the tracking server listens.
    pub fn tracking_addr(&self) -> SocketAddr {
        self.tracking_addr
    }

    /// Where the API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The process's storage handle.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Stops accepting, waits for in-flight requests, flushes the write
    /// queue (at most [`FLUSH_LIMIT`]). True when every write was stored.
    pub async fn stop(mut self) -> bool {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        let flushed = self.storage.flush(FLUSH_LIMIT).await;
        if flushed {
            tracing::info!("every queued write stored");
        } else {
            tracing::error!(
                queued = self.storage.queue_depth(),
                "database still failing at shutdown; queued writes are lost"
            );
        }
        flushed
    }
}

/// Runs until `shutdown` resolves, then stops gracefully; an error when
/// queued writes could not be stored in time.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let app = App::start(config).await?;
    shutdown.await;
    let storage = app.storage.clone();
    if app.stop().await {
        Ok(())
    } else {
        Err(AppError::Unflushed {
            queued: storage.queue_depth(),
        })
    }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { key, addr, source })
}

fn local_addr(socket: &TcpListener, configured: SocketAddr) -> SocketAddr {
    socket.local_addr().unwrap_or(configured)
}
