//! Every rustls configuration of the process, built in one place: the
//! inbound STARTTLS and the tracking listener (servers), the upstream SMTP
//! client and the outbound HTTP client of webhooks and `update-ranges`.
//!
//! One policy for all four, changed here only:
//! - the crypto provider is ring (the one feature every rustls crate of
//!   ours is built with; no process-wide default is installed);
//! - the protocol versions are rustls' safe defaults (TLS 1.2 and 1.3);
//! - a client trusts the system's root certificates (`rustls-native-certs`,
//!   which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`), read once; a
//!   certificate the store refuses is skipped, as browsers do. Only the
//!   upstream may turn verification off (`upstream.tls_verify = false`,
//!   for tests and private CAs); the handshake signatures are still checked.
//!
//! The callers keep their own error types: each names the file or domain
//! a problem is about.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ResolvesServerCert;
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
};

/// The one crypto provider.
static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(ring::default_provider()));

/// The client configuration that checks certificates against the
/// system's roots, built once.
static VERIFYING: LazyLock<Arc<ClientConfig>> = LazyLock::new(|| {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A certificate the store refuses is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    Arc::new(
        client_builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
});

/// The client configuration that accepts any certificate, built once.
static UNVERIFIED: LazyLock<Arc<ClientConfig>> = LazyLock::new(|| {
    Arc::new(
        client_builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth(),
    )
});

/// A client that verifies the server's certificate against the system's
/// roots (webhooks, `update-ranges`, the upstream by default).
pub fn client() -> Arc<ClientConfig> {
    VERIFYING.clone()
}

/// A client that takes any certificate (`upstream.tls_verify = false`):
/// the connection is encrypted but the server is not authenticated.
pub fn client_without_verification() -> Arc<ClientConfig> {
    UNVERIFIED.clone()
}

/// A client that checks the chain against `roots` only (PostgreSQL's
/// `sslrootcert`); without `check_name` any name is taken
/// (`sslmode=verify-ca`), with it the name too (`verify-full`).
pub fn client_with_roots(roots: RootCertStore, check_name: bool) -> Result<ClientConfig, String> {
    let verify = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        PROVIDER.clone(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    Ok(if check_name {
        client_builder()
            .with_webpki_verifier(verify)
            .with_no_client_auth()
    } else {
        client_builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RootsOnly(verify)))
            .with_no_client_auth()
    })
}

/// A server with one certificate chain and key, read from PEM files.
pub fn server_from_files(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let chain = read_chain(cert).map_err(|e| e.to_string())?;
    let key = read_key(key).map_err(|e| e.to_string())?;
    server_builder()
        .map_err(|e| e.to_string())?
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())
}

/// A server whose certificate `resolver` chooses (by SNI, for example).
pub fn server_with_resolver(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, rustls::Error> {
    Ok(server_builder()?.with_cert_resolver(resolver))
}

/// A certificate chain and its key, read from PEM files, ready for a
/// resolver; errors name the file.
pub fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, CertificateError> {
    let chain = read_chain(cert).map_err(CertificateError::File)?;
    let key = read_key(key).map_err(CertificateError::File)?;
    let signing = PROVIDER
        .key_provider
        .load_private_key(key)
        .map_err(CertificateError::Key)?;
    Ok(CertifiedKey::new(chain, signing))
}

/// Why [`certified_key`] failed.
#[derive(Debug)]
pub enum CertificateError {
    /// A file could not be read, or holds nothing usable.
    File(FileError),
    /// The key's type is not supported.
    Key(rustls::Error),
}

/// A PEM file that could not be read or holds nothing usable.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FileError {
    pub path: String,
    pub message: String,
}

impl FileError {
    fn new(path: &Path, message: impl ToString) -> Self {
        Self {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
}

/// Every certificate of a PEM file; at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| FileError::new(path, e))?;
    if chain.is_empty() {
        return Err(FileError::new(path, "no certificate in the file"));
    }
    Ok(chain)
}

/// The private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, FileError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| FileError::new(path, e))
}

fn server_builder()
-> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>, rustls::Error> {
    Ok(ServerConfig::builder_with_provider(PROVIDER.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth())
}

fn client_builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(PROVIDER.clone())
        .with_safe_default_protocol_versions()
        // ring implements both default versions: this cannot fail.
        .expect("ring supports the default TLS versions")
}

/// Takes any certificate, but still checks that the server holds the key
/// of the one it sent (the handshake signatures), with the provider's
/// algorithms.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &PROVIDER.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &PROVIDER.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        PROVIDER
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The chain checked against the roots, any name (`sslmode=verify-ca`).
#[derive(Debug)]
struct RootsOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for RootsOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
