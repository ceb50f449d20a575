//! The command line: one file per subcommand under `cli/`. Each command
//! calls the same library functions the server calls, so what it prints is
//! what the server does. anyhow is used here only (STYLE.md §4).

mod check_config;
mod classify;
mod completions;
mod dkim;
mod events;
mod forget;
mod hash_password;
mod man;
mod migrate;
mod migrate_storage;
pub mod out;
mod prune;
mod rewrite;
mod serve;
mod stats;
mod token;
mod update_ranges;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::LogFormat;

/// SMTP relay with open and click tracking, and its tracking server.
#[derive(Debug, Parser)]
#[command(name = "trackrelay", version, about)]
pub struct Cli {
    /// Log lines on stderr as text or JSON (default: [log] format of the
    /// config, else text).
    #[arg(long, global = true, value_enum, env = "TRACKRELAY_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log format: the flag, else the config's `[log] format`.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
            .or_else(|| {
                self.command
                    .config()
                    .and_then(|c| crate::config::log::peek_format(&c.config))
            })
            .unwrap_or_default()
    }
}

/// The config file option every command shares.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Path of the TOML config file.
    #[arg(
        long,
        short,
        env = "TRACKRELAY_CONFIG",
        default_value = "conf/trackrelay.toml"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a config file and list every problem with its key.
    CheckConfig(check_config::Args),
    /// Classify hits: JSON lines on stdin, one verdict per line on stdout.
    Classify(classify::Args),
    /// Download the address ranges named in [[classifier.ranges]].
    UpdateRanges(update_ranges::Args),
    /// Rewrite one message from stdin to stdout exactly as the relay would.
    Rewrite(rewrite::Args),
    /// Print the Argon2 hash of a password read on stdin (for smtp.users).
    HashPassword(hash_password::Args),
    /// Run the relay (SMTP in, rewrite, SMTP out).
    Serve(serve::Args),
    /// Minimise old observations and delete expired data ([retention]).
    Prune(prune::Args),
    /// Remove everything stored about one recipient.
    Forget(forget::Args),
    /// Bring the database's schema up to date (also done at every start).
    Migrate(migrate::Args),
    /// Copy a SQLite database into an empty PostgreSQL one (docs/scaling.md).
    MigrateStorage(migrate_storage::Args),
    /// Opens, clicks and rates over time of a route, a tag or a message as
    /// sent (as GET /v1/stats).
    Stats(stats::Args),
    /// The webhook outbox: list deliveries, retry one.
    Webhooks(webhooks::Args),
    /// Opens and clicks as JSON lines, as the webhooks send them; can follow.
    Events(events::Args),
    /// Work with tracking tokens.
    #[command(subcommand)]
    Token(token::Command),
    /// Print the man page (roff) on stdout: `trackrelay man | man -l -`.
    Man(man::Args),
    /// Print the completion script for a shell on stdout.
    Completions(completions::Args),
    /// DKIM: make a signing key, verify a message's signatures.
    #[command(subcommand)]
    Dkim(dkim::Command),
}

impl Command {
    /// The config option of the commands that read a config.
    fn config(&self) -> Option<&ConfigArg> {
        match self {
            Command::CheckConfig(a) => Some(&a.config),
            Command::Classify(a) => Some(&a.config),
            Command::UpdateRanges(a) => Some(&a.config),
            Command::Rewrite(a) => Some(&a.config),
            Command::Serve(a) => Some(&a.config),
            Command::Prune(a) => Some(&a.config),
            Command::Forget(a) => Some(&a.config),
            Command::Migrate(a) => Some(&a.config),
            Command::Stats(a) => Some(&a.config),
            Command::Webhooks(a) => Some(&a.config),
            Command::Events(a) => Some(&a.config),
            Command::Token(token::Command::Inspect { config, .. }) => Some(config),
            Command::HashPassword(_)
            | Command::MigrateStorage(_)
            | Command::Man(_)
            | Command::Completions(_)
            | Command::Dkim(_) => None,
        }
    }
}

/// Runs a parsed command line. Output cut short by a closed stdout is a
/// clean exit.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match dispatch(cli) {
        Err(e) if out::is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Classify(args) => classify::run(&args),
        Command::UpdateRanges(args) => update_ranges::run(&args),
        Command::Rewrite(args) => rewrite::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::HashPassword(args) => hash_password::run(&args),
        Command::Token(cmd) => token::run(&cmd),
        Command::Prune(args) => prune::run(&args),
        Command::Forget(args) => forget::run(&args),
        Command::Migrate(args) => migrate::run(&args),
        Command::MigrateStorage(args) => migrate_storage::run(&args),
        Command::Stats(args) => stats::run(&args),
        Command::Webhooks(args) => webhooks::run(&args),
        Command::Events(args) => events::run(&args),
        Command::Man(args) => man::run(&args),
        Command::Completions(args) => completions::run(&args),
        Command::Dkim(cmd) => dkim::run(&cmd),
    }
}

/// Logs go to stderr (stdout carries command output); `RUST_LOG` filters.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder
            // Colours only on a terminal, not in journald or log files.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .compact()
            .init(),
        // The event's fields under "fields" (message included), the
        // current span's under "span": the same data as the text line.
        // The target is kept ("maillog" marks the operator's lines).
        LogFormat::Json => builder
            .with_ansi(false)
            .with_target(true)
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Loads the config or fails with every problem listed.
pub(crate) fn load_config(arg: &ConfigArg) -> anyhow::Result<crate::config::Config> {
    Ok(crate::config::Config::load(&arg.config)?)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    crate::time::now_secs()
}
