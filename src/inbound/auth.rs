//! AUTH PLAIN and LOGIN (RFC 4954, 4616), checked against the Argon2
//! hashes in the config. Only over TLS, or in clear text from a loopback
//! client when the config allows it. Secrets are never logged.

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};

use super::session::{Session, State};
use crate::smtp::Reply;

impl Session {
    /// Whether AUTH may be offered and used on this connection now.
    pub fn auth_allowed(&self) -> bool {
        let config = &self.inbound.config.smtp;
        !config.users.is_empty()
            && (self.tls
                || (config.auth_plaintext_on_loopback
                    && self.peer.ip().to_canonical().is_loopback()))
    }

    pub async fn auth(&mut self, mechanism: u64, initial: String) -> Reply {
        if !matches!(self.state, State::Ready) {
            return Reply::bad_sequence("AUTH only after EHLO and outside a transaction");
        }
        if self.auth_user.is_some() {
            return Reply::bad_sequence("Already authenticated");
        }
        if !self.auth_allowed() {
            return Reply::new(
                538,
                (5, 7, 11),
                "Encryption required for requested authentication mechanism",
            );
        }
        let credentials = match mechanism {
            AUTH_PLAIN => self.read_plain(initial).await,
            AUTH_LOGIN => self.read_login(initial).await,
            _ => return Reply::new(504, (5, 5, 4), "Unrecognized authentication type"),
        };
        let Some((user, password)) = credentials else {
            return Reply::new(501, (5, 5, 2), "Malformed authentication data");
        };
        if self.verify(&user, &password).await {
            tracing::info!(user = %user, "authenticated");
            self.auth_user = Some(user);
            Reply::new(235, (2, 7, 0), "Authentication successful")
        } else {
            tracing::warn!(user = %user, peer = %self.peer, "authentication failed");
            Reply::new(535, (5, 7, 8), "Authentication credentials invalid")
        }
    }

    async fn read_plain(&mut self, initial: String) -> Option<(String, String)> {
        let response = if initial.is_empty() {
            self.challenge("").await?
        } else {
            initial
        };
        let decoded = STANDARD.decode(response.trim()).ok()?;
        // authzid \0 authcid \0 password
        let mut fields = decoded.split(|&b| b == 0);
        let _authzid = fields.next()?;
        let user = String::from_utf8(fields.next()?.to_vec()).ok()?;
        let password = String::from_utf8(fields.next()?.to_vec()).ok()?;
        Some((user, password))
    }

    async fn read_login(&mut self, initial: String) -> Option<(String, String)> {
        let user = if initial.is_empty() {
            self.challenge("VXNlcm5hbWU6").await?
        } else {
            initial
        };
        let password = self.challenge("UGFzc3dvcmQ6").await?;
        let user = String::from_utf8(STANDARD.decode(user.trim()).ok()?).ok()?;
        let password = String::from_utf8(STANDARD.decode(password.trim()).ok()?).ok()?;
        Some((user, password))
    }

    /// Sends a 334 challenge and reads one line back; `*` cancels.
    async fn challenge(&mut self, prompt: &str) -> Option<String> {
        self.out
            .extend_from_slice(format!("334 {prompt}\r\n").as_bytes());
        loop {
            let unread = self.input.unread();
            if let Some(end) = memchr::memchr(b'\n', unread) {
                let line = std::str::from_utf8(&unread[..=end]).ok()?;
                let line = line.trim_end().to_owned();
                self.input.consume(end + 1);
                return (line != "*").then_some(line);
            }
            if unread.len() > 12 * 1024 {
                return None;
            }
            self.read_more(self.inbound.config.limits.command_timeout)
                .await
                .ok()?;
        }
    }

    /// Argon2 is slow on purpose: verify off the async threads.
    async fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self
            .inbound
            .config
            .smtp
            .users
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.password_hash.clone())
        else {
            return false;
        };
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}
