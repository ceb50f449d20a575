//! `trackrelay check-config`: validate a config file, list every problem;
//! then load the classifier's lists the config names, so a bad data file
//! is found before the server starts (a missing downloaded range list is a
//! warning: `trackrelay update-ranges` fetches it), and say how old each
//! address range list is (a warning past `classifier.max_list_age_days`).

use std::process::ExitCode;

use crate::classify::Lists;
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&args.config.config) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let file = args.config.config.display();
    let loaded = match Lists::load(&config.classifier) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{file}: 1 problem\n  classifier: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &loaded.warnings {
        eprintln!("{file}: warning: {w}");
    }
    let (patterns, families) = loaded.lists.pattern_counts();
    let networks = loaded.lists.networks().summary();
    println!(
        "{file}: ok ({} route{}, {} key{})",
        config.routes.len(),
        plural(config.routes.len()),
        config.tracking.keys.len(),
        plural(config.tracking.keys.len()),
    );
    println!(
        "  classifier: {patterns} bot patterns, {families} user-agent families, {} networks",
        networks.len()
    );
    let now_ms = crate::time::now_ms();
    for (name, ranges) in networks {
        match loaded.ages.iter().find(|a| a.name == name) {
            Some(age) => println!(
                "  classifier network {name}: {ranges} ranges, {} days old ({})",
                age.age_seconds(now_ms) / 86_400,
                age.source
            ),
            None => println!("  classifier network {name}: {ranges} ranges"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
