//! `trackrelay check-config`: validate a config file, list every problem.

use std::process::ExitCode;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match Config::load(&args.config.config) {
        Ok(config) => {
            println!(
                "{}: ok ({} route{}, {} key{})",
                args.config.config.display(),
                config.routes.len(),
                if config.routes.len() == 1 { "" } else { "s" },
                config.tracking.keys.len(),
                if config.tracking.keys.len() == 1 {
                    ""
                } else {
                    "s"
                },
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            eprintln!("{problems}");
            Ok(ExitCode::FAILURE)
        }
    }
}
