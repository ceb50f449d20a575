//! `trackrelay serve`: run everything (SMTP relay, tracking server, API)
//! until SIGTERM or SIGINT, then shut down gracefully: stop accepting,
//! finish open sessions and in-flight requests, store every queued write.
//! SIGHUP re-reads the routes; systemd hears READY and STOPPING.

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
            _ = hup.recv() => reload(&app, &path),
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
    let queued = app.storage().clone();
    if app.wait().await {
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!(
            "{} queued writes could not be stored before exit (database failing)",
            queued.queue_depth()
        )
    }
}

/// SIGHUP: re-read the config and apply its routes, then the classifier's
/// lists (compiled on the blocking pool: a few hundred patterns take a
/// moment, and routes must not wait for them). Other keys need a restart;
/// a broken file keeps the running routes and says why.
fn reload(app: &App, path: &std::path::Path) {
    match Config::load(path) {
        Ok(config) => {
            app.webhooks().set_routes(&config.routes);
            app.relay().set_routes(config.routes.clone());
            tracing::info!(config = %path.display(), "routes reloaded");
            // Settings changed through another node's API (shared database).
            let (relay, storage) = (app.relay().clone(), app.storage().clone());
            tokio::spawn(async move {
                match storage.route_overrides().await {
                    Ok(all) => relay.set_route_overrides(all),
                    Err(e) => tracing::error!(
                        "route settings not read back, keeping the running ones: {e}"
                    ),
                }
            });
            let pipeline = app.pipeline().clone();
            tokio::task::spawn_blocking(move || match crate::app::load_lists(&config) {
                Ok(lists) => {
                    pipeline.set_lists(lists);
                    tracing::info!("classifier lists reloaded");
                }
                Err(e) => {
                    tracing::error!("classifier lists not reloaded, keeping the running ones: {e}")
                }
            });
        }
        Err(problems) => tracing::error!("reload refused, keeping the running routes: {problems}"),
    }
}
