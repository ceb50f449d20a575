//! Optional TLS for the tracking listener (SPEC §5): one certificate per
//! tracking domain, chosen by the SNI name the client sends.
//!
//! A client that sends no SNI (an IP address in the URL) gets the first
//! configured certificate; an SNI name with no certificate fails the
//! handshake, as the Host check would refuse the request anyway.
//! Certificates are read once at start; a change needs a restart.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, ResolvesServerCertUsingSni};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::config::TrackingTls;

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
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Certificate {
            domain: String::new(),
            source,
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Reads one certificate chain and its private key.
fn load(c: &TrackingTls) -> Result<CertifiedKey, TlsError> {
    let file_err = |path: &std::path::Path, message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| file_err(&c.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(&c.cert, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&c.key).map_err(|e| file_err(&c.key, e.to_string()))?;
    let signing = ring::sign::any_supported_type(&key).map_err(|source| TlsError::Certificate {
        domain: c.domain.clone(),
        source,
    })?;
    Ok(CertifiedKey::new(chain, signing))
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
