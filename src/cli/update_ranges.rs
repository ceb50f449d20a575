//! `trackrelay update-ranges`: download every `[[classifier.ranges]]` list
//! that has a `url`, check that it parses as address ranges, and replace
//! its `file` atomically (write beside it, fsync, rename), so a running
//! server reloading at the same moment reads the old list or the new one,
//! never half of one. A list that fails keeps its old file; the others are
//! still updated and the exit status is 1.
//!
//! HTTP through the webhooks' pooled client ([`HttpClient`]): HTTP/1.1,
//! https with rustls and the system's root certificates. Redirects are
//! followed (at most 5, never from https to http). The configured URL is
//! the operator's choice and may be on a private network; a redirect to
//! another host goes through the special-purpose address check
//! (docs/security.md) unless `[webhooks] allow_private_networks`. A body
//! is limited to 256 MiB and a download to two minutes.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Limited};
use url::Url;

use crate::classify::networks;
use crate::config::RangeSource;
use crate::webhooks::client::HttpClient;

const MAX_BODY_BYTES: usize = 256 << 20;
const MAX_REDIRECTS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(120);
const USER_AGENT: &str = concat!("trackrelay/", env!("CARGO_PKG_VERSION"), " update-ranges");

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

/// The two pooled clients: one for the configured hosts, one with the
/// address check for hosts a redirect leads to.
struct Clients {
    configured: HttpClient,
    redirected: HttpClient,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // Built inside the runtime: the pool's tasks run on it.
    let clients = runtime.block_on(async {
        Clients {
            configured: HttpClient::new(true, TIMEOUT, USER_AGENT),
            redirected: HttpClient::new(
                config.webhooks.allow_private_networks,
                TIMEOUT,
                USER_AGENT,
            ),
        }
    });
    let mut failed = 0;
    for (i, range) in config.classifier.ranges.iter().enumerate() {
        let Some(url) = &range.url else {
            crate::outln!("{}: no url, kept as it is", range.name);
            continue;
        };
        match runtime.block_on(update(range, url, &clients)) {
            Ok(count) => crate::outln!(
                "{}: {count} ranges from {url} written to {}",
                range.name,
                range.file.display()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("classifier.ranges[{i}] ({}): {e:#}", range.name);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Downloads, checks and writes one list; returns how many ranges it has.
async fn update(range: &RangeSource, url: &Url, clients: &Clients) -> anyhow::Result<usize> {
    let body = tokio::time::timeout(TIMEOUT, fetch(url, clients))
        .await
        .with_context(|| format!("{url}: no answer within {} s", TIMEOUT.as_secs()))??;
    let text = String::from_utf8(body).with_context(|| format!("{url}: not UTF-8 text"))?;
    let count = networks::parse_ranges(url.as_str(), &text)?.len();
    if count == 0 {
        bail!("{url}: no address ranges in the answer");
    }
    write_atomically(&range.file, text.as_bytes())?;
    Ok(count)
}

/// GET with redirects followed.
async fn fetch(configured: &Url, clients: &Clients) -> anyhow::Result<Vec<u8>> {
    let mut url = configured.clone();
    for _ in 0..=MAX_REDIRECTS {
        let client = if same_origin(&url, configured) {
            &clients.configured
        } else {
            &clients.redirected
        };
        let response = client.get(&url).await.with_context(|| url.to_string())?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .with_context(|| format!("{url}: {status} without a Location"))?;
            let next = url
                .join(location)
                .with_context(|| format!("{url}: bad Location {location:?}"))?;
            if url.scheme() == "https" && next.scheme() != "https" {
                bail!("{url}: redirect from https to {next} refused");
            }
            url = next;
            continue;
        }
        if !status.is_success() {
            bail!("{url}: {status}");
        }
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("{url}: reading the body: {e}"))?;
        return Ok(body.to_bytes().to_vec());
    }
    bail!("{url}: more than {MAX_REDIRECTS} redirects")
}

/// Same scheme, host and port.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames
/// it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file_name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}
