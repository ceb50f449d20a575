//! `trackrelay check-config`: validate a config file, list every problem
//! (weak secrets included); load the TLS certificates and the classifier's
//! lists the config names, so a bad file is found before the server starts
//! (a missing downloaded range list is a warning: `trackrelay
//! update-ranges` fetches it), and say how old each address range list is
//! (a warning past `classifier.max_list_age_days`). Secrets the file leaves
//! out are not generated here, only announced; risky settings are warnings.

use std::process::ExitCode;

use crate::classify::Lists;
use crate::config::secrets::Missing;
use crate::config::{Config, Problem};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let file = args.config.config.display();
    let (config, filled) = match Config::load_with(&args.config.config, Missing::Preview) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut problems = tls_problems(&config);
    let loaded = match Lists::load(&config.classifier) {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            problems.push(Problem {
                key: "classifier".into(),
                message: e.to_string(),
            });
            None
        }
    };
    let Some(loaded) = loaded.filter(|_| problems.is_empty()) else {
        let n = problems.len();
        eprintln!("{file}: {n} problem{}", plural(n));
        for p in problems {
            eprintln!("  {p}");
        }
        return Ok(ExitCode::FAILURE);
    };
    for w in config.warnings() {
        eprintln!("{file}: warning: {w}");
    }
    for w in &loaded.warnings {
        eprintln!("{file}: warning: {w}");
    }
    for f in &filled {
        eprintln!("{file}: note: {f}");
    }
    let (patterns, families) = loaded.lists.pattern_counts();
    let networks = loaded.lists.networks().summary();
    crate::outln!(
        "{file}: ok ({} route{}, {} key{})",
        config.routes.len(),
        plural(config.routes.len()),
        config.tracking.keys.len(),
        plural(config.tracking.keys.len()),
    );
    crate::outln!(
        "  classifier: {patterns} bot patterns, {families} user-agent families, {} networks",
        networks.len()
    );
    let now_ms = crate::time::now_ms();
    for (name, ranges) in networks {
        match loaded.ages.iter().find(|a| a.name == name) {
            Some(age) => crate::outln!(
                "  classifier network {name}: {ranges} ranges, {} days old ({})",
                age.age_seconds(now_ms) / 86_400,
                age.source
            ),
            None => crate::outln!("  classifier network {name}: {ranges} ranges"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The certificates and keys of `smtp.tls_*` and `[[tracking.tls]]`, loaded
/// as the server loads them.
fn tls_problems(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(files) = &config.smtp.tls
        && let Err(e) = crate::inbound::load_tls(&files.cert, &files.key)
    {
        out.push(Problem {
            key: "smtp.tls_cert".into(),
            message: e.to_string(),
        });
    }
    if let Err(e) = crate::tracking::tls::acceptor(&config.tracking.tls) {
        out.push(Problem {
            key: "tracking.tls".into(),
            message: e.to_string(),
        });
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
