//! Where the PostgreSQL database is and how to reach it: the `[storage]
//! url` parsed once (libpq's URL or `key=value` form, `host=/socket/dir`
//! for a Unix socket), and the TLS its `sslmode` asks for.
//!
//! tokio-postgres parses the URL but knows only `sslmode` disable, prefer
//! and require, and does not check certificates itself; `verify-full`
//! (and `verify-ca`) are taken out here and become rustls with the system
//! roots (or `sslrootcert`) and, for verify-full, the host name checked.
//! `require` and `prefer` encrypt without checking, as libpq does when
//! no root certificate is given.

use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls;

/// libpq's `sslmode`, the values we support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, unchecked (libpq's default).
    Prefer,
    /// TLS, certificate unchecked.
    Require,
    /// TLS, certificate checked against the roots, not the name.
    VerifyCa,
    /// TLS, certificate and host name checked.
    VerifyFull,
}

/// A parsed `[storage] url`.
#[derive(Clone)]
pub struct PostgresSettings {
    pub(super) config: tokio_postgres::Config,
    pub(super) ssl_mode: SslMode,
    /// `sslrootcert`: a PEM file of roots instead of the system's.
    pub(super) root_cert: Option<String>,
    /// The URL with its password replaced, for logs and errors.
    shown: String,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PostgresSettings {
    /// Parses `url`; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<PostgresSettings, String> {
        let (rest, ssl_mode, root_cert) = take_ssl_params(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if config.get_hosts().is_empty() {
            return Err("names no host (host=/socket/dir or postgres://host/db)".into());
        }
        if config.get_application_name().is_none() {
            config.application_name("trackrelay");
        }
        Ok(PostgresSettings {
            config,
            ssl_mode,
            root_cert,
            shown: hide_password(url),
        })
    }

    /// The TLS connector for this `sslmode`.
    pub(super) fn tls(&self) -> Result<MakeRustlsConnect, String> {
        let config = match self.ssl_mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => {
                (*crate::tls::client_without_verification()).clone()
            }
            SslMode::VerifyCa | SslMode::VerifyFull => {
                crate::tls::client_with_roots(self.roots()?, self.ssl_mode == SslMode::VerifyFull)?
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> Result<rustls::RootCertStore, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {path}: {e}"))?;
                for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
                    let cert: CertificateDer<'_> =
                        cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // A system root rustls cannot use is skipped, as browsers do.
                    let _ = roots.add(cert);
                }
            }
        }
        Ok(roots)
    }
}

/// Takes `sslmode` and `sslrootcert` out of the URL's query (or the
/// `key=value` string), which tokio-postgres would refuse or ignore.
fn take_ssl_params(url: &str) -> Result<(String, SslMode, Option<String>), String> {
    let mut mode = SslMode::Prefer;
    let mut root = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => {
                mode = match value {
                    "disable" => SslMode::Disable,
                    "prefer" | "allow" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                        ));
                    }
                };
                Ok(true)
            }
            "sslrootcert" => {
                root = Some(value.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let v = url::form_urlencoded::parse(format!("v={v}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    if !take(k, &v)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(k, v)? {
                kept.push(pair);
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode, root))
}

/// The URL for logs: a password, in the user part or a `password=`
/// parameter, becomes `***`.
fn hide_password(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url)
        && parsed.scheme().starts_with("postgres")
    {
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some("***"));
        }
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" { "***".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        if !pairs.is_empty() {
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return parsed.to_string();
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some(("password", _)) => "password=***".to_owned(),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_ssl_mode_and_hide_the_password() {
        let s = PostgresSettings::parse(
            "postgres://tr:secret@db.example:5433/mail?sslmode=verify-full",
        )
        .unwrap();
        assert_eq!(s.ssl_mode, SslMode::VerifyFull);
        assert_eq!(s.config.get_ports(), [5433]);
        assert!(!s.to_string().contains("secret"), "{s}");
        let s = PostgresSettings::parse("postgresql:///mail?host=/run/pg&user=tr").unwrap();
        assert_eq!(s.ssl_mode, SslMode::Prefer);
        assert!(matches!(
            s.config.get_hosts()[0],
            tokio_postgres::config::Host::Unix(_)
        ));
        let s = PostgresSettings::parse("host=/tmp dbname=x password=pw sslmode=disable").unwrap();
        assert_eq!(s.ssl_mode, SslMode::Disable);
        assert_eq!(
            s.to_string(),
            "host=/tmp dbname=x password=*** sslmode=disable"
        );
        assert!(
            PostgresSettings::parse("postgres://h/db?sslmode=sometimes")
                .unwrap_err()
                .contains("sslmode")
        );
    }
}
