//! DKIM signing keys (`[[dkim.keys]]`): loaded and checked once, when the
//! config is read, so a bad key stops `serve` and `check-config` with the
//! key's path instead of leaving mail unsigned at run time.
//!
//! RSA keys (PKCS #1 or PKCS #8 PEM) must have at least 2048 bits (RFC
//! 8301 §3.2); Ed25519 keys are PKCS #8 PEM (RFC 8463). Signing itself is
//! `mail-auth`'s (canonicalization, tags, the signature header).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// Header fields signed by default. Names absent from a message are signed
/// as absent (mail-auth lists them once more), so a hop cannot add them.
pub const DEFAULT_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Sender",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
];

/// A private key of one of the two DKIM algorithms.
enum Secret {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

/// The signer of one key: mail-auth's template (d=, s=, h=, c=) and key.
enum Signer {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// One `[[dkim.keys]]` entry, loaded.
#[derive(Clone)]
pub struct Key {
    /// The `d=` domain (lowercase).
    pub domain: String,
    pub selector: String,
    pub path: PathBuf,
    pub headers: Vec<String>,
    /// Header and body canonicalization, in that order.
    pub canonicalization: (Canonicalization, Canonicalization),
    signer: Arc<Signer>,
}

impl std::fmt::Debug for Key {
    // The secret stays out of logs and `check-config` output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("path", &self.path)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Loads the key file and checks it; the error says what is wrong with
    /// the file (the caller adds the key path of the config).
    pub fn load(
        domain: &str,
        selector: &str,
        path: &Path,
        headers: Vec<String>,
        canonicalization: (Canonicalization, Canonicalization),
    ) -> Result<Key, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let secret = parse_secret(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let signer = match secret {
            Secret::Rsa(k) => Signer::Rsa(signer(k, &domain, selector, &headers, canonicalization)),
            Secret::Ed25519(k) => {
                Signer::Ed25519(signer(k, &domain, selector, &headers, canonicalization))
            }
        };
        Ok(Key {
            domain,
            selector: selector.to_owned(),
            path: path.to_owned(),
            headers,
            canonicalization,
            signer: Arc::new(signer),
        })
    }

    pub fn algorithm(&self) -> &'static str {
        match *self.signer {
            Signer::Rsa(_) => "rsa-sha256",
            Signer::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// The `DKIM-Signature:` header field (CRLF-terminated) for `message`.
    pub fn sign(&self, message: &[u8]) -> Result<String, mail_auth::Error> {
        let signature = match &*self.signer {
            Signer::Rsa(s) => s.sign(message)?,
            Signer::Ed25519(s) => s.sign(message)?,
        };
        Ok(signature.to_header())
    }
}

/// mail-auth's signer for one key: its `d=`, `s=`, `h=` and `c=` tags.
fn signer<T: SigningKey>(
    key: T,
    domain: &str,
    selector: &str,
    headers: &[String],
    (ch, cb): (Canonicalization, Canonicalization),
) -> DkimSigner<T, Done> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(headers.iter().cloned())
        .header_canonicalization(ch)
        .body_canonicalization(cb)
}

/// Reads a PEM private key: PKCS #1 RSA, or PKCS #8 RSA or Ed25519.
fn parse_secret(pem: &[u8]) -> Result<Secret, String> {
    let der =
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key ({e})"))?;
    let rejected = |e: mail_auth::Error| {
        let text = e.to_string();
        if text.contains("TooSmall") {
            "weak RSA key: DKIM needs at least 2048 bits (RFC 8301)".to_owned()
        } else {
            format!("unusable key ({text})")
        }
    };
    match der {
        PrivateKeyDer::Pkcs1(_) => RsaKey::from_key_der(der).map(Secret::Rsa).map_err(rejected),
        PrivateKeyDer::Pkcs8(ref p8) => {
            match Ed25519Key::from_pkcs8_maybe_unchecked_der(p8.secret_pkcs8_der()) {
                Ok(k) => Ok(Secret::Ed25519(k)),
                Err(_) => RsaKey::from_key_der(der).map(Secret::Rsa).map_err(rejected),
            }
        }
        _ => Err("wrong key type: DKIM signs with RSA or Ed25519 keys (not EC/SEC1)".into()),
    }
}

/// Parses `relaxed/simple`-style canonicalization (RFC 6376 §3.5 `c=`).
pub fn canonicalization(text: &str) -> Result<(Canonicalization, Canonicalization), String> {
    let one = |s: &str| match s.trim() {
        "relaxed" => Ok(Canonicalization::Relaxed),
        "simple" => Ok(Canonicalization::Simple),
        other => Err(format!("{other:?}: expected relaxed or simple")),
    };
    match text.split_once('/') {
        Some((h, b)) => Ok((one(h)?, one(b)?)),
        // RFC 6376 §3.5: a lone value names the header canonicalization.
        None => Ok((one(text)?, Canonicalization::Simple)),
    }
}
