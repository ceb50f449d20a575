//! `trackrelay rewrite`: one message from stdin to stdout, exactly as the
//! relay would send it to one recipient (same `rewrite::rewrite` call).

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use uuid::Uuid;

use crate::rewrite::Request;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Id of the route whose settings apply.
    #[arg(long)]
    pub route: String,
    /// Recipient of this copy (its opaque id goes in the tokens); without
    /// it, tokens are message-level.
    #[arg(long)]
    pub recipient: Option<String>,
    /// Message id to put in tokens (default: a new time-ordered UUID).
    #[arg(long)]
    pub message_id: Option<Uuid>,
    /// Sending time, seconds since the Unix epoch (default: now); tokens
    /// expire `tracking.token_ttl_days` after it.
    #[arg(long)]
    pub sent_at: Option<u64>,
    /// Print what was rewritten as JSON on stderr.
    #[arg(long)]
    pub report: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let route = config.route(&args.route).with_context(|| {
        let ids: Vec<&str> = config.routes.iter().map(|r| r.id.as_str()).collect();
        format!(
            "no route {:?} in {} (routes: {})",
            args.route,
            args.config.config.display(),
            ids.join(", ")
        )
    })?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the message from stdin")?;
    let sent_at = args.sent_at.unwrap_or_else(super::unix_now);
    let expires_at = sent_at.saturating_add(config.tracking.token_ttl.as_secs());
    let request = Request {
        settings: &route.settings,
        base_url: config.tracking_base(&route.settings),
        keys: &config.tracking.keys,
        message_id: args.message_id.unwrap_or_else(Uuid::now_v7),
        recipient: args.recipient.as_deref(),
        expires_at: u32::try_from(expires_at).unwrap_or(u32::MAX),
    };
    // Signed as the relay signs, when [[dkim.keys]] hold the From domain.
    let outcome = crate::dkim::rewrite(&config.dkim, &input, &request);
    for note in &outcome.report.ignored_headers {
        tracing::warn!(message_id = %request.message_id, "{note}");
    }
    std::io::stdout()
        .lock()
        .write_all(&outcome.message)
        .context("writing the message to stdout")?;
    if args.report {
        eprintln!("{}", serde_json::to_string(&outcome.report)?);
    }
    Ok(ExitCode::SUCCESS)
}
