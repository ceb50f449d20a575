//! Optional TLS for the tracking listener (SPEC §5): one certificate per
//! tracking domain, chosen by the SNI name the client sends.
//!
//! A client that sends no SNI (an IP address in the URL) gets the first
//! configured certificate; an SNI name with no certificate fails the
//! handshake, as the Host check would refuse the request anyway.
//! Certificates are read once at start; a change needs a restart.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, ResolvesServerCertUsingSni};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::config::TrackingTls;
use crate::tls::CertificateError;

/// Why the certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("certificate for {domain}: {source}")]
    Certificate {
        domain: String,
        source: rustls::Error,
    },
}

/// The acceptor for `certs`, or `None` when there are none (plain HTTP).
pub fn acceptor(certs: &[TrackingTls]) -> Result<Option<TlsAcceptor>, TlsError> {
    if certs.is_empty() {
        return Ok(None);
    }
    let mut by_name = ResolvesServerCertUsingSni::new();
    let mut first = None;
    for c in certs {
        let key = Arc::new(load(c)?);
        // add() also checks that the certificate is valid for the name.
        by_name
            .add(&c.domain, (*key).clone())
            .map_err(|source| TlsError::Certificate {
                domain: c.domain.clone(),
                source,
            })?;
        first.get_or_insert(key);
    }
    let resolver = Resolver {
        by_name,
        // `certs` is not empty, so there is a first key.
        default: first.expect("at least one certificate"),
    };
    let mut config = crate::tls::server_with_resolver(Arc::new(resolver)).map_err(|source| {
        TlsError::Certificate {
            domain: String::new(),
            source,
        }
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Reads one certificate chain and its private key.
fn load(c: &TrackingTls) -> Result<CertifiedKey, TlsError> {
    crate::tls::certified_key(&c.cert, &c.key).map_err(|e| match e {
        CertificateError::File(e) => TlsError::File {
            path: e.path,
            message: e.message,
        },
        CertificateError::Key(source) => TlsError::Certificate {
            domain: c.domain.clone(),
            source,
        },
    })
}

/// SNI lookup with a default for clients that send no name.
#[derive(Debug)]
struct Resolver {
    by_name: ResolvesServerCertUsingSni,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if hello.server_name().is_none() {
            return Some(self.default.clone());
        }
        self.by_name.resolve(hello)
    }
}
