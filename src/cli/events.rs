//! `trackrelay events`: the event feed (`GET /v1/events`) as JSON lines,
//! each line the webhook body of one open or click. Without `--since`,
//! the newest `--limit` events, newest first. With `--since`, every event
//! from that time, oldest first. `--follow` then keeps polling and prints
//! each new event once, in the order stored (storage/feed.rs): it never
//! repeats or skips one; without `--since` it starts with what comes next.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};

use crate::storage::{FeedFilter, Storage};

/// Events read per query.
const PAGE: u32 = 500;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Only this route's events.
    #[arg(long)]
    pub route: Option<String>,
    /// Only `message.opened` or `message.clicked`.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Every event from this time on, oldest first (RFC 3339 time or a
    /// date, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Machine events too (scanners, proxies, previews).
    #[arg(long)]
    pub include_machine: bool,
    /// At most this many, newest first (when neither a start time nor
    /// following is asked for).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Keep printing new events as they are stored (Ctrl-C to stop).
    #[arg(long)]
    pub follow: bool,
    /// How often a follower asks the database, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let filter = filter(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let storage = Storage::connect(&config.storage, crate::storage::DEFAULT_QUEUE_CAPACITY)
            .await
            .with_context(|| format!("opening {}", config.storage))?;
        if filter.ascending {
            forward(&storage, filter, args).await
        } else {
            newest(&storage, filter, args.limit).await
        }
    })
}

/// The feed's filter from the options; oldest first with --since or
/// --follow.
fn filter(args: &Args) -> anyhow::Result<FeedFilter> {
    let kind = args
        .event_type
        .as_deref()
        .map(crate::api::events::kind)
        .transpose()
        .map_err(|e| anyhow!("--type: {e}"))?;
    let since_ms = args
        .since
        .as_deref()
        .map(crate::time::parse)
        .transpose()
        .map_err(|e| anyhow!("--since: {e}"))?
        .map(|t| t.as_millisecond());
    Ok(FeedFilter {
        route: args.route.clone(),
        kind,
        since_ms,
        include_machine: args.include_machine,
        ascending: since_ms.is_some() || args.follow,
        after: None,
        limit: PAGE,
    })
}

/// The newest `limit` events, newest first.
async fn newest(storage: &Storage, mut filter: FeedFilter, limit: u32) -> anyhow::Result<ExitCode> {
    let mut left = limit;
    while left > 0 {
        filter.limit = left.min(PAGE);
        let items = storage.feed(filter.clone()).await?;
        for body in crate::api::events::bodies(storage, &items).await? {
            crate::outln!("{body}");
        }
        match items.last() {
            Some(last) if items.len() == filter.limit as usize => filter.after = Some(last.seq),
            _ => break,
        }
        left -= filter.limit;
    }
    Ok(ExitCode::SUCCESS)
}

/// Oldest first from --since (or from now with --follow alone), then, with
/// --follow, every new event as it comes.
async fn forward(
    storage: &Storage,
    mut filter: FeedFilter,
    args: &Args,
) -> anyhow::Result<ExitCode> {
    if filter.since_ms.is_none() {
        // Following from now: after the newest event stored.
        filter.after = storage.feed_end().await?;
    }
    let poll = Duration::from_millis(args.poll_ms.max(10));
    loop {
        let items = storage.feed(filter.clone()).await?;
        for body in crate::api::events::bodies(storage, &items).await? {
            crate::outln!("{body}");
        }
        if let Some(last) = items.last() {
            filter.after = Some(last.seq);
        }
        if items.len() == filter.limit as usize {
            continue;
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(poll).await;
    }
}
