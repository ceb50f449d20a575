//! `trackrelay dkim keygen` (a signing key and its DNS record) and
//! `trackrelay dkim verify` (every signature of a message, checked against
//! a given key record or DNS): what an operator needs to set up DKIM
//! signing (docs/dkim.md) and to debug it.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::dkim::verify::{self, Records};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a signing key: the private key (PEM, mode 0600) to --out or
    /// stdout, the DNS TXT record to publish on stdout (stderr with no --out).
    Keygen {
        #[arg(long)]
        domain: String,
        #[arg(long)]
        selector: String,
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: Algorithm,
        /// Where to write the private key; refused if the file exists.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check every DKIM-Signature of the message on stdin. With
    /// --public-key (a file holding the TXT record `v=DKIM1; k=…; p=…`),
    /// --domain and --selector the key comes from that file; with --dns
    /// from DNS. Exit status 0 only when every signature passes.
    Verify {
        #[arg(long, requires_all = ["domain", "selector"])]
        public_key: Option<PathBuf>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        selector: Option<String>,
        /// Look up keys not given with --public-key in DNS.
        #[arg(long)]
        dns: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Algorithm {
    /// RSA, 2048 bits.
    Rsa,
    Ed25519,
}

pub fn run(cmd: &Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Keygen {
            domain,
            selector,
            algorithm,
            out,
        } => keygen(domain, selector, *algorithm, out.as_ref()),
        Command::Verify {
            public_key,
            domain,
            selector,
            dns,
        } => verify_stdin(
            public_key.as_ref(),
            domain.as_deref(),
            selector.as_deref(),
            *dns,
        ),
    }
}

fn keygen(
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    out: Option<&PathBuf>,
) -> anyhow::Result<ExitCode> {
    let (pem, k, public) = match algorithm {
        Algorithm::Rsa => rsa_key()?,
        Algorithm::Ed25519 => ed25519_key()?,
    };
    let record = format!(
        "{selector}._domainkey.{domain} IN TXT \"v=DKIM1; k={k}; p={}\"",
        STANDARD.encode(public)
    );
    match out {
        Some(path) => {
            write_private(path, pem.as_bytes())?;
            crate::outln!("{record}");
        }
        None => {
            crate::outln!("{}", pem.trim_end());
            eprintln!("{record}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A 2048-bit RSA key: PKCS #1 PEM and the SubjectPublicKeyInfo DER
/// (what `p=` holds for k=rsa, RFC 6376 §3.6.1).
fn rsa_key() -> anyhow::Result<(String, &'static str, Vec<u8>)> {
    use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
    use rsa::pkcs8::EncodePublicKey as _;
    let pair = mail_auth::dkim::generate::DkimKeyPair::generate_rsa(2048)
        .map_err(|e| anyhow::anyhow!("cannot make an RSA key: {e}"))?;
    let private = rsa::RsaPrivateKey::from_pkcs1_der(pair.private_key())?;
    let pem = private
        .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)?
        .to_string();
    let spki = private.to_public_key().to_public_key_der()?.into_vec();
    Ok((pem, "rsa", spki))
}

/// An Ed25519 key: PKCS #8 PEM and the bare 32-byte public key (RFC 8463).
fn ed25519_key() -> anyhow::Result<(String, &'static str, Vec<u8>)> {
    let pair = mail_auth::dkim::generate::DkimKeyPair::generate_ed25519()
        .map_err(|e| anyhow::anyhow!("cannot make an Ed25519 key: {e}"))?;
    let body = STANDARD.encode(pair.private_key());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok((pem, "ed25519", pair.public_key().to_vec()))
}

/// Creates `path` with mode 0600 (never over an existing file).
fn write_private(path: &PathBuf, pem: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    file.write_all(pem)
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn verify_stdin(
    public_key: Option<&PathBuf>,
    domain: Option<&str>,
    selector: Option<&str>,
    dns: bool,
) -> anyhow::Result<ExitCode> {
    let mut records = Records::default();
    if let (Some(path), Some(d), Some(s)) = (public_key, domain, selector) {
        let txt = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        // The file may hold the whole zone line or just the record text.
        let txt = txt.split_once("TXT").map_or(txt.as_str(), |(_, r)| r);
        records
            .add(d, s, &txt.replace("\" \"", "").replace(['"', '\n'], ""))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    } else if !dns {
        bail!("no key source: give --public-key FILE --domain D --selector S, or --dns");
    }
    let mut message = Vec::new();
    std::io::stdin().read_to_end(&mut message)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let verdicts = runtime
        .block_on(verify::verify(&message, &records, dns))
        .map_err(|e| anyhow::anyhow!(e))?;
    if verdicts.is_empty() {
        crate::outln!("no DKIM-Signature");
        return Ok(ExitCode::FAILURE);
    }
    for v in &verdicts {
        crate::outln!("d={} s={}: {}", v.domain, v.selector, v.result);
    }
    Ok(if verdicts.iter().all(verify::Verdict::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
