//! `trackrelay forget --recipient ADDR`: erase a recipient on request
//! (SPEC §9) and print what was removed. See docs/privacy.md for what
//! stays elsewhere (logs, the upstream's copies).

use std::process::ExitCode;

use anyhow::Context;

use crate::retention::postgres;
use crate::storage::Location;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// The recipient's address (compared without case).
    #[arg(long)]
    pub recipient: String,
    /// Rebuild the database file afterwards (VACUUM), so no slack space
    /// keeps old bytes. Holds the write lock while it runs.
    #[arg(long)]
    pub vacuum: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let address = args.recipient.trim();
    if !address.contains('@') {
        anyhow::bail!("--recipient {address:?}: not an email address");
    }
    let keys = &config.tracking.keys;
    let done = match &config.storage {
        Location::Sqlite(path) => crate::retention::forget(path, address, keys, args.vacuum),
        Location::Postgres(_) => postgres::with_storage(&config.storage, async |s| {
            postgres::forget(s, address, keys).await
        }),
    }
    .with_context(|| format!("forgetting {address} in {}", config.storage))?;
    let r = done.removed;
    crate::outln!("{address}:");
    crate::outln!("  copies deleted: {}", r.copies);
    crate::outln!(
        "  copies shared with other recipients, address removed: {}",
        r.copies_edited
    );
    crate::outln!("  observations deleted: {}", r.observations);
    crate::outln!("  events deleted: {}", r.events);
    crate::outln!(
        "  webhook deliveries not yet sent, deleted: {}",
        r.webhook_deliveries
    );
    if done.vacuumed {
        crate::outln!("  database file rebuilt (VACUUM)");
    }
    if !done.wal_emptied {
        crate::outln!("  warning: the WAL could not be emptied (a reader was busy); run again");
    }
    Ok(ExitCode::SUCCESS)
}
