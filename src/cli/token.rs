//! `trackrelay token inspect`: verify a tracking URL and print its claims.

use std::process::ExitCode;

use anyhow::Context;

use crate::token::Kind;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify a tracking URL (…/o/TOKEN or …/c/TOKEN) and print its claims
    /// as JSON, or say why it is invalid.
    Inspect {
        #[command(flatten)]
        config: super::ConfigArg,
        /// The tracking URL, or the bare token.
        url: String,
    },
}

pub fn run(cmd: &Command) -> anyhow::Result<ExitCode> {
    let Command::Inspect { config, url } = cmd;
    let config = super::load_config(config)?;
    let (path_kind, token) = split_url(url);
    let (claims, key_id) = match config.tracking.keys.verify(token) {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("invalid token: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(kind) = path_kind
        && kind != claims.kind
    {
        eprintln!(
            "invalid token: a {:?} token under the {:?} path",
            claims.kind, kind
        );
        return Ok(ExitCode::FAILURE);
    }
    let now = super::unix_now();
    let expires = jiff::Timestamp::from_second(i64::from(claims.expires_at))
        .context("expiry out of range")?;
    let json = serde_json::json!({
        "kind": claims.kind,
        "message_id": claims.message_id.to_string(),
        "recipient_id": claims.recipient_id_text(),
        "link": claims.link,
        "url": claims.url,
        "key_id": key_id,
        "expires_at": expires.to_string(),
        "expired": claims.is_expired(now),
    });
    crate::outln!("{}", serde_json::to_string_pretty(&json)?);
    Ok(ExitCode::SUCCESS)
}

/// The token of a tracking URL and the kind its path names (`/o/`, `/c/`).
fn split_url(url: &str) -> (Option<Kind>, &str) {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .trim_end_matches('/');
    let mut segments = path.rsplit('/');
    let token = segments.next().unwrap_or(path);
    let kind = match segments.next() {
        Some("o") => Some(Kind::Open),
        Some("c") => Some(Kind::Click),
        _ => None,
    };
    (kind, token)
}
