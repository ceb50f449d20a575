//! `trackrelay webhooks`: the outbox from the terminal. `list` prints the
//! deliveries (newest first, one JSON object a line, as the API shows
//! them); `retry ID` queues a delivery again now, its retry schedule
//! started over and its endpoint enabled again if a 410 disabled it. A
//! running server picks it up within a second.

use std::process::ExitCode;

use anyhow::{Context, bail};
use uuid::Uuid;

use crate::storage::{Storage, WebhookWrite};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print deliveries, newest first, with their tries.
    List {
        /// Only `pending`, `delivered` or `failed` ones.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Send a delivery again now (and re-enable its endpoint).
    Retry {
        /// The delivery's id (its webhook-id header).
        id: Uuid,
    },
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let storage = Storage::connect(&config.storage, crate::storage::DEFAULT_QUEUE_CAPACITY)
            .await
            .with_context(|| format!("opening {}", config.storage))?;
        match &args.action {
            Action::List { status, limit } => list(&storage, status.clone(), *limit).await,
            Action::Retry { id } => retry(&storage, *id).await,
        }
    })
}

async fn list(storage: &Storage, status: Option<String>, limit: u32) -> anyhow::Result<ExitCode> {
    if let Some(s) = status
        .as_ref()
        .filter(|s| !["pending", "delivered", "failed"].contains(&s.as_str()))
    {
        bail!("--status must be pending, delivered or failed, not {s:?}");
    }
    for d in storage.deliveries(status, limit).await? {
        let attempts = storage.delivery_attempts(d.id).await?;
        crate::outln!("{}", crate::api::webhooks::delivery(&d, &attempts));
    }
    Ok(ExitCode::SUCCESS)
}

async fn retry(storage: &Storage, id: Uuid) -> anyhow::Result<ExitCode> {
    let Some(d) = storage.delivery(id).await? else {
        bail!("no delivery {id}");
    };
    storage
        .write_webhook(WebhookWrite::Retry {
            id,
            at_ms: crate::webhooks::now_ms(),
        })
        .await?;
    crate::outln!(
        "delivery {id} ({} to {}, was {}) queued again",
        d.event_type,
        d.url,
        d.status
    );
    Ok(ExitCode::SUCCESS)
}
