//! Wires the process together: the listeners and background tasks, one
//! shutdown signal for all, readiness and reload for systemd.
//!
//! `run` binds every listener first (so a port in use fails the start with
//! a clear error), says READY, then serves until the shutdown token fires,
//! and returns once every session has finished.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::inbound::{self, Inbound};
use crate::relay::Relay;

/// A running instance: what `serve` and the tests hold on to.
pub struct App {
    pub relay: Arc<Relay>,
    pub smtp_addr: std::net::SocketAddr,
    tasks: tokio::task::JoinSet<()>,
}

impl App {
    /// Binds the listeners and starts serving.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<App> {
        let config = Arc::new(config);
        let relay = Arc::new(Relay::new(config.clone()));
        let inbound = Arc::new(Inbound::new(relay.clone())?);
        let smtp = TcpListener::bind(config.smtp.listen)
            .await
            .with_context(|| format!("smtp.listen: cannot listen on {}", config.smtp.listen))?;
        let smtp_addr = smtp.local_addr()?;
        tracing::info!(addr = %smtp_addr, upstream = %relay.upstream.describe(), "smtp listening");
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(inbound::serve(smtp, inbound, shutdown.clone()));
        Ok(App {
            relay,
            smtp_addr,
            tasks,
        })
    }

    /// Waits until every task has stopped (after the shutdown token fired).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}
