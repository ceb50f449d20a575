//! `trackrelay classify`: JSON lines in, one verdict per line out (SPEC
//! §6), through the same `classify::classify` the server calls, with the
//! lists the config names.
//!
//! A line that cannot be read gives, in its place on stdout, an object
//! `{"line": N, "error": "..."}` (so output lines stay aligned with input
//! lines) and the same message on stderr; the rest is still classified and
//! the exit status is 1.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::classify::{self, Lists, input};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let lists = crate::app::load_lists(&config)?;
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let bad = classify_lines(stdin, &mut out, &lists)?;
    out.flush().context("writing to stdout")?;
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Classifies every line of `input`; returns how many could not be read.
pub fn classify_lines(
    input: impl BufRead,
    out: &mut impl Write,
    lists: &Lists,
) -> anyhow::Result<usize> {
    let mut bad = 0;
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("reading line {n} of stdin"))?;
        if line.trim().is_empty() {
            continue;
        }
        match input::parse_line(&line) {
            Ok(parsed) => {
                let verdict = classify::classify(&parsed.observation(), &parsed.context(), lists);
                serde_json::to_writer(&mut *out, &verdict)?;
            }
            Err(e) => {
                bad += 1;
                eprintln!("line {n}: {e}");
                serde_json::to_writer(&mut *out, &serde_json::json!({"line": n, "error": e}))?;
            }
        }
        out.write_all(b"\n").context("writing to stdout")?;
    }
    Ok(bad)
}
