//! `trackrelay serve`: run the relay until SIGTERM or SIGINT (graceful:
//! open sessions finish), reload routes on SIGHUP, tell systemd when ready.

use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;

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
    runtime.block_on(serve(config, args.config.config.clone()))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config, path: std::path::PathBuf) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let app = App::start(config, shutdown.clone()).await?;
    // Not under systemd (no NOTIFY_SOCKET) this does nothing.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&app, &path),
        }
    }
    tracing::info!("shutting down: finishing open sessions");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
    app.wait().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: re-read the config and apply its routes. Other keys need a
/// restart; a broken file keeps the running routes and says why.
fn reload(app: &App, path: &std::path::Path) {
    match Config::load(path) {
        Ok(config) => {
            app.relay.set_routes(config.routes);
            tracing::info!(config = %path.display(), "routes reloaded");
        }
        Err(problems) => tracing::error!("reload refused, keeping the running routes: {problems}"),
    }
}
