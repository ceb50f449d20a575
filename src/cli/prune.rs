//! `trackrelay prune`: apply `[retention]` now (or `--as-of` another time):
//! delete what is older than `event_days`, minimise observations older
//! than `raw_signal_days`. The same function the server runs hourly; safe
//! beside a running server (short transactions, see `crate::retention`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::retention::{Pace, postgres, prune};
use crate::storage::{Location, StorageError};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Act as if it were this time (RFC 3339, e.g. 2026-12-31T00:00:00Z, or
    /// a date, read as midnight UTC).
    #[arg(long, value_parser = crate::time::parse)]
    pub as_of: Option<jiff::Timestamp>,
    /// Only count what would be minimised or deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per transaction.
    #[arg(long, default_value_t = Pace::default().batch_rows)]
    pub batch_rows: usize,
    /// Pause after each batch, in milliseconds.
    #[arg(long, default_value_t = Pace::default().pause.as_millis() as u64)]
    pub pause_ms: u64,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let as_of = args.as_of.unwrap_or_else(crate::time::now);
    let pace = Pace {
        batch_rows: args.batch_rows.max(1),
        pause: Duration::from_millis(args.pause_ms),
    };
    let started = std::time::Instant::now();
    let as_of_ms = as_of.as_millisecond();
    let done = match &config.storage {
        Location::Sqlite(path) => prune(
            path,
            &config.retention,
            as_of_ms,
            args.dry_run,
            pace,
            &|| false,
        ),
        Location::Postgres(_) => postgres::with_storage(&config.storage, async |s| {
            let r = &config.retention;
            postgres::prune(s, r, as_of_ms, args.dry_run, pace, &|| false).await
        })
        .and_then(|done| {
            done.ok_or_else(|| StorageError::Task("another node is pruning; try again".into()))
        }),
    }
    .with_context(|| format!("pruning {}", config.storage))?;
    let verb = if args.dry_run { "would be" } else { "were" };
    let time =
        |ms: i64| jiff::Timestamp::from_millisecond(ms).map_or(ms.to_string(), |t| t.to_string());
    crate::outln!("as of {as_of}:");
    if let Some(before) = done.delete_before_ms {
        crate::outln!(
            "  before {}: {} copies, {} events, {} observations {verb} deleted",
            time(before),
            done.deleted.copies,
            done.deleted.events,
            done.deleted.observations
        );
    }
    crate::outln!(
        "  before {}: {} observations {verb} minimised",
        time(done.raw_before_ms),
        done.minimised
    );
    if !args.dry_run {
        crate::outln!(
            "  webhook bodies without IP and user agent: {}",
            done.webhook_payloads
        );
        crate::outln!("  took {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
