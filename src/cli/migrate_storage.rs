//! `trackrelay migrate-storage --from sqlite:PATH --to URL`: moves a
//! node's SQLite database into an empty PostgreSQL database
//! (storage/transfer.rs; the steps around it: docs/scaling.md, "Moving a
//! SQLite database over"). Progress goes to the log on stderr, a line per
//! table and one every few seconds within a big one; the summary, a line
//! per table, to stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::storage::PostgresSettings;
use crate::storage::transfer::{DEFAULT_BATCH_ROWS, Table, Tally, Transfer};

/// Time between two progress lines within one table.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SQLite database to read (opened read-only): `sqlite:PATH`.
    #[arg(long, value_name = "sqlite:PATH", value_parser = sqlite_path)]
    pub from: PathBuf,
    /// The PostgreSQL database to fill, as `[storage] url` takes it.
    #[arg(long, value_name = "URL", value_parser = postgres_url)]
    pub to: Box<PostgresSettings>,
    /// Continue a migration into this target that stopped: rows whose key
    /// is there already are kept and skipped. Without it, a target holding
    /// any row is refused.
    #[arg(long)]
    pub resume: bool,
    /// Rows read and written per transaction.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_ROWS)]
    pub batch_rows: usize,
}

/// `sqlite:PATH` (or a bare path) → the path.
fn sqlite_path(text: &str) -> Result<PathBuf, String> {
    let path = text.strip_prefix("sqlite:").unwrap_or(text);
    if path.is_empty() || text.starts_with("postgres") {
        return Err("give the SQLite file as sqlite:PATH".into());
    }
    Ok(PathBuf::from(path))
}

/// `[storage] url`'s forms, parsed as a node parses them.
fn postgres_url(text: &str) -> Result<Box<PostgresSettings>, String> {
    PostgresSettings::parse(text).map(Box::new)
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let from = format!("sqlite:{}", args.from.display());
    let tallies = runtime.block_on(migrate(args)).context("migrate-storage")?;
    for t in &tallies {
        let present = match t.present {
            0 => String::new(),
            n => format!(", {n} already there"),
        };
        crate::outln!(
            "{}: {} of {} copied{present}",
            t.table.name(),
            t.copied,
            t.in_source
        );
    }
    crate::outln!(
        "{from} copied into {}; start the nodes with [storage] url set to it",
        args.to
    );
    Ok(ExitCode::SUCCESS)
}

async fn migrate(args: &Args) -> anyhow::Result<Vec<Tally>> {
    let mut transfer = Transfer::open(&args.from, &args.to, args.resume, args.batch_rows).await?;
    let mut tallies = Vec::new();
    for table in Table::ALL {
        let mut last_line = Instant::now();
        let tally = transfer
            .copy(table, &mut |t| {
                if last_line.elapsed() >= PROGRESS_EVERY {
                    last_line = Instant::now();
                    log(t, "copying");
                }
            })
            .await?;
        log(&tally, "copied");
        tallies.push(tally);
    }
    Ok(tallies)
}

fn log(t: &Tally, what: &str) {
    tracing::info!(
        table = t.table.name(),
        rows = t.copied,
        of = t.in_source,
        already_there = t.present,
        "migrate-storage: {what}"
    );
}
