//! `trackrelay migrate`: bring the database's schema up to date and say
//! which version it is at. Every node also does it at start; on
//! PostgreSQL the migrations run once, under an advisory lock, so nodes
//! starting together (or this command beside them) never run one twice.

use std::process::ExitCode;

use anyhow::Context;

use crate::retention::postgres::with_storage;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    // Opening migrates (and refuses a schema newer than this program).
    with_storage(&config.storage, async |_| Ok(()))
        .with_context(|| format!("migrating {}", config.storage))?;
    crate::outln!("{}: schema up to date", config.storage);
    Ok(ExitCode::SUCCESS)
}
