//! `trackrelay forget --recipient ADDR`: erase a recipient on request
//! (SPEC §9) and print what was removed. See docs/privacy.md for what
//! stays elsewhere (logs, the upstream's copies).

use std::process::ExitCode;

use anyhow::Context;

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
    let done = crate::retention::forget(
        &config.storage_path,
        address,
        &config.tracking.keys,
        args.vacuum,
    )
    .with_context(|| format!("forgetting {address} in {}", config.storage_path.display()))?;
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
