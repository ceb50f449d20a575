//! `[smtp]`: the inbound listener, its STARTTLS files and AUTH users.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::{Collector, raw};

#[derive(Debug, Clone)]
pub struct Smtp {
    pub listen: SocketAddr,
    pub allowed_networks: Vec<IpNet>,
    pub hostname: String,
    /// Certificate and key files (PEM) for STARTTLS; none: no STARTTLS.
    pub tls: Option<TlsFiles>,
    /// AUTH without TLS from a loopback client (for local applications).
    pub auth_plaintext_on_loopback: bool,
    /// Prepend a Received trace field (RFC 5321 §4.4).
    pub add_received: bool,
    pub users: Vec<User>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An SMTP AUTH user; the password is kept only as an Argon2 PHC hash.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub password_hash: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// `[smtp]` (its limits are read by [`Collector::limits`]).
    pub(super) fn smtp(&mut self, raw: &raw::RawSmtp) -> Smtp {
        Smtp {
            listen: self.addr("smtp.listen", &raw.listen),
            allowed_networks: self.nets("smtp.allowed_networks", &raw.allowed_networks),
            hostname: raw.hostname.clone().unwrap_or_else(default_hostname),
            tls: self.tls_files(raw),
            auth_plaintext_on_loopback: raw.auth_plaintext_on_loopback,
            add_received: raw.add_received,
            users: self.users(&raw.users),
        }
    }

    fn tls_files(&mut self, raw: &raw::RawSmtp) -> Option<TlsFiles> {
        match (&raw.tls_cert, &raw.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            }),
            (None, None) => None,
            _ => {
                self.push("smtp.tls_key", "tls_cert and tls_key go together");
                None
            }
        }
    }

    fn users(&mut self, raw: &[raw::RawUser]) -> Vec<User> {
        let mut users = Vec::new();
        for (i, u) in raw.iter().enumerate() {
            if u.name.is_empty() {
                self.push(format!("smtp.users[{i}].name"), "must not be empty");
            }
            if argon2::PasswordHash::new(&u.password_hash).is_err() {
                self.push(
                    format!("smtp.users[{i}].password_hash"),
                    "is not a PHC hash string; make one with `trackrelay hash-password`",
                );
            }
            users.push(User {
                name: u.name.clone(),
                password_hash: u.password_hash.clone(),
            });
        }
        users
    }
}

fn default_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
