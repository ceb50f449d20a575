//! Where relayed copies go: an SMTP server (`smtp://`) or a directory
//! (`dir:`), behind one [`Connection`] type, and a small pool that reuses
//! idle SMTP connections.
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
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("connection lost: {0}")]
    Io(String),
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

    /// Sends one message (CRLF line endings; dot-stuffing is done here).
    /// `copy_id` names the file for `dir:` upstreams.
    pub async fn data(&mut self, message: &[u8], copy_id: Uuid) -> Result<Reply, UpstreamError> {
        match self {
            Self::Smtp(c) => c.data(message).await,
            Self::Dir(c) => c.data(message, copy_id).await,
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

    /// An idle connection if there is one, else a new one.
    pub async fn connect(&self) -> Result<Connection, UpstreamError> {
        match &self.config.target {
            Target::Dir(path) => Ok(Connection::Dir(dir::DirConnection::new(path.clone()))),
            Target::Smtp(url) => {
                if let Some(conn) = self.take_idle() {
                    return Ok(Connection::Smtp(conn));
                }
                let conn =
                    smtp::SmtpConnection::open(url, &self.config, &self.limits, &self.helo_name)
                        .await?;
                Ok(Connection::Smtp(conn))
            }
        }
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

    /// Returns a connection after a finished transaction: it is reset and
    /// kept for reuse, or closed when the pool is full or it is unhealthy.
    pub async fn release(&self, conn: Connection) {
        let Connection::Smtp(mut conn) = conn else {
            return;
        };
        if conn.rset().await.is_err() {
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
