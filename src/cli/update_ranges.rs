//! `trackrelay update-ranges`: download every `[[classifier.ranges]]` list
//! that has a `url`, check that it parses as address ranges, and replace
//! its `file` atomically (write beside it, fsync, rename), so a running
//! server reloading at the same moment reads the old list or the new one,
//! never half of one. A list that fails keeps its old file; the others are
//! still updated and the exit status is 1.
//!
//! HTTP/1.1 with hyper; https with rustls and the system's root
//! certificates. Redirects are followed (at most 5); a body is limited to
//! 256 MiB and a download to two minutes.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use url::Url;

use crate::classify::networks;
use crate::config::RangeSource;
use crate::webhooks::client::Target;

const MAX_BODY_BYTES: usize = 256 << 20;
const MAX_REDIRECTS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let tls = TlsConnector::from(Arc::new(client_config()?));
    let mut failed = 0;
    for (i, range) in config.classifier.ranges.iter().enumerate() {
        let Some(url) = &range.url else {
            crate::outln!("{}: no url, kept as it is", range.name);
            continue;
        };
        match runtime.block_on(update(range, url, &tls)) {
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
async fn update(range: &RangeSource, url: &Url, tls: &TlsConnector) -> anyhow::Result<usize> {
    let body = tokio::time::timeout(TIMEOUT, fetch(url, tls))
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
async fn fetch(url: &Url, tls: &TlsConnector) -> anyhow::Result<Vec<u8>> {
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let response = get(&url, tls).await?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .with_context(|| format!("{url}: {status} without a Location"))?;
            url = url
                .join(location)
                .with_context(|| format!("{url}: bad Location {location:?}"))?;
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

async fn get(
    url: &Url,
    tls: &TlsConnector,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let Target {
        host,
        authority,
        path,
    } = Target::of(url);
    if host.is_empty() {
        bail!("{url}: no host");
    }
    let port = url
        .port_or_known_default()
        .with_context(|| format!("{url}: no port"))?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("{url}: connecting to {host}:{port}"))?;
    let request = Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(
            hyper::header::USER_AGENT,
            concat!("trackrelay/", env!("CARGO_PKG_VERSION"), " update-ranges"),
        )
        .body(Empty::<Bytes>::new())?;
    if url.scheme() == "https" {
        let name = ServerName::try_from(host.clone())
            .with_context(|| format!("{url}: {host:?} is not a TLS server name"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .with_context(|| format!("{url}: TLS handshake"))?;
        send(TokioIo::new(stream), request, url).await
    } else {
        send(TokioIo::new(tcp), request, url).await
    }
}

async fn send<I>(
    io: I,
    request: Request<Empty<Bytes>>,
    url: &Url,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .with_context(|| format!("{url}: HTTP handshake"))?;
    // The connection task ends with the response body (or an error, which
    // the body read reports).
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .with_context(|| format!("{url}: request"))
}

/// rustls (ring) with the system's root certificates.
fn client_config() -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A certificate the store refuses is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
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
