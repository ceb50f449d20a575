//! Where relayed copies go: an SMTP server (`smtp://`) or a directory
//! (`dir:`), behind one [`Connection`] type, and a small pool that reuses
//! idle SMTP connections.
//!
//! A connection goes back to the pool without RSET when its transaction
//! ended with the reply to the message (the common case: one round trip
//! less per message). Whether a pooled connection still works is learnt
//! at the next MAIL; when it does not, the transaction starts again on a
//! new connection ([`Upstream::begin`]).
//!
//! Every command's reply is the upstream's own (code, enhanced code, text)
//! so the relay can pass it through; an [`UpstreamError`] means the upstream
//! could not be reached or broke off, which the relay turns into a 4xx.

mod dir;
mod smtp;

use std::sync::Mutex;

use uuid::Uuid;

use crate::config::{Upstream as Target, UpstreamConfig};
use crate::limits::Limits;
use crate::smtp::Reply;

/// The upstream could not be used; the client must retry later.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {target}: {why}")]
    Connect { target: String, why: String },
    /// No answer (or no room to write) within `upstream.timeout_seconds`.
    #[error("upstream {target} did not answer within {after:?}")]
    Timeout {
        target: String,
        after: std::time::Duration,
    },
    #[error("connection to upstream {target} lost: {why}")]
    Io { target: String, why: String },
    #[error("STARTTLS required but {0}")]
    Tls(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("cannot write the copy: {0}")]
    Write(String),
}

/// ESMTP parameters of MAIL FROM the upstream is told about.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailParams {
    pub body_8bitmime: bool,
    pub smtputf8: bool,
    pub size: Option<u64>,
}

/// One open upstream transaction channel.
pub enum Connection {
    Smtp(smtp::SmtpConnection),
    Dir(dir::DirConnection),
}

impl Connection {
    pub async fn mail_from(
        &mut self,
        sender: &str,
        params: MailParams,
    ) -> Result<Reply, UpstreamError> {
        match self {
            Self::Smtp(c) => c.mail_from(sender, params).await,
            Self::Dir(c) => Ok(c.mail_from(sender)),
        }
    }

    pub async fn rcpt_to(&mut self, recipient: &str) -> Result<Reply, UpstreamError> {
        match self {
            Self::Smtp(c) => c.rcpt_to(recipient).await,
            Self::Dir(c) => Ok(c.rcpt_to(recipient)),
        }
    }

    /// Sends one message (CRLF line endings; dot-stuffing is done here,
    /// in the message's own buffer when it can be). `copy_id` names the
    /// file for `dir:` upstreams.
    pub async fn data(&mut self, message: Vec<u8>, copy_id: Uuid) -> Result<Reply, UpstreamError> {
        match self {
            Self::Smtp(c) => c.data(message).await,
            Self::Dir(c) => c.data(&message, copy_id).await,
        }
    }

    pub async fn rset(&mut self) -> Result<(), UpstreamError> {
        match self {
            Self::Smtp(c) => c.rset().await,
            Self::Dir(c) => {
                c.rset();
                Ok(())
            }
        }
    }
}

/// Opens connections to the configured upstream and keeps idle ones.
pub struct Upstream {
    config: UpstreamConfig,
    limits: Limits,
    helo_name: String,
    idle: Mutex<Vec<smtp::SmtpConnection>>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig, limits: Limits, helo_name: String) -> Self {
        Self {
            config,
            limits,
            helo_name,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Starts a transaction: MAIL FROM on an idle connection if there is
    /// one, else on a new one. The reply is the upstream's (a refusal is
    /// not an error; the connection is then still returned, for release).
    ///
    /// A pooled connection the upstream closed or is closing (an I/O
    /// error, or 421, typically its idle timeout) is not the client's
    /// problem: MAIL is sent again on a new connection, once. A timeout is
    /// not retried: the upstream is slow, and the client has waited enough.
    pub async fn begin(
        &self,
        sender: &str,
        params: MailParams,
    ) -> Result<(Connection, Reply), UpstreamError> {
        let url = match &self.config.target {
            Target::Dir(path) => {
                let mut conn = Connection::Dir(dir::DirConnection::new(path.clone()));
                let reply = conn.mail_from(sender, params).await?;
                return Ok((conn, reply));
            }
            Target::Smtp(url) => url,
        };
        if let Some(conn) = self.take_idle() {
            let mut conn = Connection::Smtp(conn);
            match conn.mail_from(sender, params).await {
                Ok(reply) if reply.code != 421 => return Ok((conn, reply)),
                Ok(reply) => tracing::debug!(%reply, "pooled upstream connection closing"),
                Err(e @ UpstreamError::Timeout { .. }) => return Err(e),
                Err(e) => tracing::debug!(error = %e, "pooled upstream connection lost"),
            }
        }
        let mut conn = Connection::Smtp(
            smtp::SmtpConnection::open(url, &self.config, &self.limits, &self.helo_name).await?,
        );
        let reply = conn.mail_from(sender, params).await?;
        Ok((conn, reply))
    }

    fn take_idle(&self) -> Option<smtp::SmtpConnection> {
        // A poisoned lock only means another task panicked mid-push.
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.is_fresh() {
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection after a transaction: it is kept for reuse
    /// (reset first if the transaction is still open), or closed when the
    /// pool is full or RSET fails.
    pub async fn release(&self, conn: Connection) {
        let Connection::Smtp(mut conn) = conn else {
            return;
        };
        if conn.in_transaction() && conn.rset().await.is_err() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.config.max_idle_connections {
            idle.push(conn);
        }
    }

    /// A short description for logs: `smtp://host:port` or `dir:path`.
    pub fn describe(&self) -> String {
        match &self.config.target {
            Target::Smtp(url) => url.to_string(),
            Target::Dir(path) => format!("dir:{}", path.display()),
        }
    }
}
