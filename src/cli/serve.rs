//! `trackrelay serve`: run everything (SMTP relay, tracking server, API)
//! until SIGTERM or SIGINT, then shut down gracefully: stop accepting,
//! finish open sessions and in-flight requests (until
//! `shutdown.deadline_seconds`, then cut them), store every queued write.
//! SIGHUP reloads the config (`App::reload`); systemd hears READY and
//! STOPPING.

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
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, args.config.config.clone()))
}

async fn serve(config: Config, path: std::path::PathBuf) -> anyhow::Result<ExitCode> {
    // Handlers first: a SIGTERM that comes as soon as the listeners
    // accept (a loaded machine may run a client before this task) must
    // stop the process gracefully, not kill it.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let shutdown = CancellationToken::new();
    let app = App::start(config, shutdown.clone()).await?;
    // Not under systemd (no NOTIFY_SOCKET) this does nothing.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); break }
            _ = int.recv() => { tracing::info!("SIGINT received"); break }
            _ = hup.recv() => reload(&app, &path).await,
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
    let queued = app.storage().clone();
    let deadline = app.deadline().clone();
    if app.wait().await {
        // The last line: a cut session's client retries its message.
        tracing::info!(sessions_cut = deadline.sessions_cut(), "stopped");
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!(
            "{} queued writes could not be stored before exit (database failing)",
            queued.queue_depth()
        )
    }
}

/// SIGHUP: [`App::reload`]; a file with problems keeps the running config
/// and says why.
async fn reload(app: &App, path: &std::path::Path) {
    if let Err(e) = app.reload(path).await {
        tracing::error!(config = %path.display(), "{e}");
    }
}
