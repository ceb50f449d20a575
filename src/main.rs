//! The `trackrelay` binary: parse the command line, set up logging, run the
//! subcommand, turn its error into an exit code. Everything else is in the
//! library.

#![forbid(unsafe_code)]
#![warn(clippy::too_many_lines)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = trackrelay::cli::Cli::parse();
    trackrelay::cli::init_logging(cli.log_format());
    match trackrelay::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("trackrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
