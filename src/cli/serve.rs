//! `trackrelay serve`: run the server (tracking and API listeners) until
//! SIGTERM or SIGINT, then shut down gracefully: stop accepting, finish
//! in-flight requests, store every queued hit.

use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        crate::app::run(config, shutdown_signal())
            .await
            .context("serve")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; use SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
