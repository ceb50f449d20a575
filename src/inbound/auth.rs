//! AUTH PLAIN and LOGIN (RFC 4954, 4616), checked against the Argon2
//! hashes in the config. Only over TLS, or in clear text from a loopback
//! client when the config allows it. Secrets are never logged.
//!
//! Guessing is bounded three ways: a try from an address with recent
//! failures waits first (`anvil`), verifications run a few at a time
//! (`password`), and a connection is closed after
//! `auth_failures_per_connection` failures. Each failure is logged in one
//! line an operator's fail2ban can match (docs/security.md).

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};

use super::password::Verdict;
use super::session::{Session, State};
use crate::smtp::Reply;

/// The longest AUTH response line: far above any PLAIN or LOGIN response
/// of sane credentials.
const MAX_AUTH_LINE_BYTES: usize = 12 * 1024;

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
        let ip = self.peer.ip().to_canonical();
        if !self.anvil_wait(ip).await {
            self.quit = true;
            return Reply::new(421, (4, 3, 0), "Shutting down, try again later");
        }
        match self.inbound.passwords.verify(&user, &password).await {
            Verdict::Valid => {
                tracing::info!(user = %user, "authenticated");
                self.auth_user = Some(user);
                Reply::new(235, (2, 7, 0), "Authentication successful")
            }
            Verdict::Busy => Reply::new(
                454,
                (4, 7, 0),
                "Too many authentications in progress, try again later",
            ),
            Verdict::Invalid => self.auth_failed(ip, &user),
        }
    }

    /// Waits the delay `ip`'s recent failures earned; false on shutdown.
    async fn anvil_wait(&self, ip: IpAddr) -> bool {
        let delay = self.inbound.anvil.delay(ip);
        if delay.is_zero() {
            return true;
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Counts and logs a failure; 535, or 421 and close at the limit.
    fn auth_failed(&mut self, ip: IpAddr, user: &str) -> Reply {
        self.auth_failures += 1;
        let address_failures = self.inbound.anvil.failed(ip);
        log_failure(ip, user, self.auth_failures, address_failures);
        if self.auth_failures >= self.inbound.config.limits.auth.failures_per_connection {
            self.quit = true;
            return Reply::new(
                421,
                (4, 7, 0),
                "Too many failed authentications, closing connection",
            );
        }
        Reply::new(535, (5, 7, 8), "Authentication credentials invalid")
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
        let deadline = self.command_deadline();
        loop {
            let unread = self.input.unread();
            let end = memchr::memchr(b'\n', unread);
            if end.unwrap_or(unread.len()) > MAX_AUTH_LINE_BYTES {
                // The rest of the line must not be read as commands, and
                // its end may never come: the connection ends here.
                self.quit = true;
                return None;
            }
            if let Some(end) = end {
                // Consumed before it is looked at: whatever it holds, it
                // is not a command.
                let line = String::from_utf8(unread[..=end].to_vec());
                self.input.consume(end + 1);
                let line = line.ok()?.trim_end().to_owned();
                return (line != "*").then_some(line);
            }
            self.read_more(deadline).await.ok()?;
        }
    }
}

/// The operator's line for one failed AUTH, for fail2ban and the like:
/// `WARN smtp auth failed client=203.0.113.5 user="app" ...`. The client
/// address comes first and the user name is quoted (its `Debug` form), so
/// no name can shape what a filter matches. The password is never logged.
fn log_failure(ip: IpAddr, user: &str, connection_failures: u32, address_failures: u32) {
    tracing::warn!(
        target: "maillog",
        client = %ip,
        user = ?user,
        connection_failures,
        address_failures,
        "smtp auth failed"
    );
}
