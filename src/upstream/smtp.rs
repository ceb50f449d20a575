//! The `smtp://host:port` upstream, on mail-send's client (which keeps the
//! upstream's exact replies): connect, EHLO, STARTTLS as configured, AUTH,
//! then one command at a time with a timeout on every step.
//!
//! Every read and write, from the greeting to the reply after the message,
//! goes through [`Peer::step`]: `upstream.timeout_seconds` bounds it (an
//! upstream that accepts TCP and never writes, or stalls half-way through
//! a reply line, costs the client that long, then a 451), and its error
//! names the upstream. mail-send times most of its calls itself, but not
//! the greeting or a bare `read`, so the bound is kept here, once.
//!
//! The message itself is written here, not by mail-send: dot-stuffed
//! (`smtp::data::stuff`, in the copy's own buffer unless a line starts
//! with a dot) with its end mark and sent in one write, or as one
//! `BDAT n LAST` when the upstream offers CHUNKING (RFC 3030), which also
//! saves the round trip for DATA's 354.

use std::future::Future;
use std::time::{Duration, Instant};

use mail_send::{Credentials, Error as SendError, SmtpClient};
use smtp_proto::{
    EXT_8BIT_MIME, EXT_CHUNKING, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse, Response,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use url::Url;

use super::{MailParams, UpstreamError};
use crate::config::{StartTls, UpstreamConfig};
use crate::limits::Limits;
use crate::smtp::{Reply, data};

/// Idle connections older than this are not reused (servers drop them).
const MAX_IDLE_AGE: Duration = Duration::from_secs(30);

enum Client {
    Plain(SmtpClient<TcpStream>),
    // Boxed: the TLS state is large and connections sit in the pool.
    Tls(Box<SmtpClient<TlsStream<TcpStream>>>),
}

/// Runs the same call on either kind of client.
macro_rules! on_client {
    ($client:expr, $c:ident => $body:expr) => {
        match $client {
            Client::Plain($c) => $body,
            Client::Tls($c) => $body,
        }
    };
}

pub struct SmtpConnection {
    client: Client,
    capabilities: u32,
    last_used: Instant,
    peer: Peer,
    /// MAIL was accepted and the transaction has not ended (by the reply
    /// after the message, or RSET): the connection needs RSET before reuse.
    in_transaction: bool,
}

impl SmtpConnection {
    pub async fn open(
        url: &Url,
        config: &UpstreamConfig,
        limits: &Limits,
        helo: &str,
    ) -> Result<Self, UpstreamError> {
        let host = url
            .host_str()
            .unwrap_or("localhost")
            .trim_matches(['[', ']'])
            .to_owned();
        let port = url.port().unwrap_or(25);
        let target = format!("{host}:{port}");
        let peer = Peer {
            target: target.clone(),
            timeout: limits.upstream_timeout,
        };
        let connect_err = |why: String| UpstreamError::Connect {
            target: target.clone(),
            why,
        };
        let addr = tokio::net::lookup_host(&target)
            .await
            .map_err(|e| connect_err(e.to_string()))?
            .next()
            .ok_or_else(|| connect_err("no address".into()))?;
        let mut plain = SmtpClient::connect(addr, peer.timeout)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        // Commands are small writes answered one by one: without this,
        // Nagle's algorithm and delayed ACKs stall each one by ~40 ms.
        let _ = plain.stream.set_nodelay(true);
        // mail-send reads the greeting without a timeout of its own.
        let greeting = peer.step(plain.read()).await?;
        if greeting.code != 220 {
            return Err(connect_err(format!(
                "greeting {}",
                Reply::from_upstream(&greeting)
            )));
        }
        let ehlo = peer.step(plain.ehlo(helo)).await?;
        let (client, ehlo) = start_tls(plain, ehlo, &host, helo, config, &peer).await?;
        let mut conn = Self {
            client,
            capabilities: ehlo.capabilities,
            last_used: Instant::now(),
            peer,
            in_transaction: false,
        };
        if let Some((user, password)) = &config.credentials {
            let credentials = Credentials::new(user.as_str(), password.as_str());
            let peer = &conn.peer;
            on_client!(&mut conn.client, c => peer.step(async {
                c.authenticate(&credentials, &ehlo).await.map(|_| ())
            }).await)?;
        }
        Ok(conn)
    }

    pub fn is_fresh(&self) -> bool {
        self.last_used.elapsed() < MAX_IDLE_AGE
    }

    /// Whether a transaction is open (RSET needed before the next MAIL).
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    pub async fn mail_from(
        &mut self,
        sender: &str,
        params: MailParams,
    ) -> Result<Reply, UpstreamError> {
        let mut cmd = format!("MAIL FROM:<{sender}>");
        if params.body_8bitmime && self.capabilities & EXT_8BIT_MIME != 0 {
            cmd.push_str(" BODY=8BITMIME");
        }
        if params.smtputf8 && self.capabilities & EXT_SMTP_UTF8 != 0 {
            cmd.push_str(" SMTPUTF8");
        }
        if let Some(size) = params.size.filter(|_| self.capabilities & EXT_SIZE != 0) {
            cmd.push_str(&format!(" SIZE={size}"));
        }
        cmd.push_str("\r\n");
        // Open until told otherwise: after an error the connection is
        // dropped anyway.
        self.in_transaction = true;
        let reply = self.cmd(cmd).await?;
        self.in_transaction = reply.is_positive();
        Ok(reply)
    }

    pub async fn rcpt_to(&mut self, recipient: &str) -> Result<Reply, UpstreamError> {
        self.cmd(format!("RCPT TO:<{recipient}>\r\n")).await
    }

    pub async fn rset(&mut self) -> Result<(), UpstreamError> {
        let reply = self.cmd("RSET\r\n".into()).await?;
        if reply.code == 250 {
            self.in_transaction = false;
            Ok(())
        } else {
            Err(UpstreamError::Protocol(format!("RSET refused: {reply}")))
        }
    }

    /// The message (DATA and its content, or BDAT); a refusal at DATA or
    /// after the message is a reply to pass through, not an error. The
    /// bytes that arrive are `message` exactly, its last line ended with
    /// CRLF if it was not.
    pub async fn data(&mut self, message: Vec<u8>) -> Result<Reply, UpstreamError> {
        self.last_used = Instant::now();
        let chunking = self.capabilities & EXT_CHUNKING != 0;
        let peer = &self.peer;
        let result =
            on_client!(&mut self.client, c => send_message(c, message, chunking, peer).await);
        match result {
            Ok(Sent::Refused(response)) => Ok(Reply::from_upstream(&response)),
            Ok(Sent::Answered(response)) => {
                // The reply after the message ends the transaction, whatever
                // it says (RFC 5321 §4.1.1.4); after a refused BDAT, RFC 3030
                // §2 has the client RSET.
                let reply = Reply::from_upstream(&response);
                self.in_transaction = chunking && !reply.is_positive();
                Ok(reply)
            }
            Err(e) => Err(e),
        }
    }

    /// One command line and its reply (the write and the read together
    /// within the timeout).
    async fn cmd(&mut self, cmd: String) -> Result<Reply, UpstreamError> {
        self.last_used = Instant::now();
        let peer = &self.peer;
        let reply = on_client!(&mut self.client, c => peer.step(c.cmd(cmd.as_bytes())).await)?;
        Ok(Reply::from_upstream(&reply))
    }
}

/// How far the message got.
enum Sent {
    /// DATA was refused (no 354): the transaction is still open.
    Refused(Response<String>),
    /// The upstream's reply to the whole message.
    Answered(Response<String>),
}

/// Sends `message` in one write: `BDAT n LAST` and the bytes when the
/// upstream offers CHUNKING, else DATA, its 354, and the stuffed bytes
/// with the end mark.
///
/// The message's write and the final reply share one timeout, as
/// `upstream.timeout_seconds` documents; an upstream that stops reading
/// mid-message or drops the connection is an [`UpstreamError`].
async fn send_message<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    message: Vec<u8>,
    chunking: bool,
    peer: &Peer,
) -> Result<Sent, UpstreamError> {
    let wire = if chunking {
        data::bdat_last(message)
    } else {
        let reply = peer.step(client.cmd(b"DATA\r\n")).await?;
        if reply.code != 354 {
            return Ok(Sent::Refused(reply));
        }
        data::stuff(message)
    };
    peer.step(async {
        client.stream.write_all(&wire).await?;
        client.stream.flush().await?;
        client.read().await.map(Sent::Answered)
    })
    .await
}

/// STARTTLS as configured; a new EHLO after it (RFC 3207 §4.2).
async fn start_tls(
    plain: SmtpClient<TcpStream>,
    ehlo: EhloResponse<String>,
    host: &str,
    helo: &str,
    config: &UpstreamConfig,
    peer: &Peer,
) -> Result<(Client, EhloResponse<String>), UpstreamError> {
    let offered = ehlo.has_capability(EXT_START_TLS);
    match config.starttls {
        StartTls::Off => return Ok((Client::Plain(plain), ehlo)),
        StartTls::Opportunistic if !offered => return Ok((Client::Plain(plain), ehlo)),
        StartTls::Required if !offered => {
            return Err(UpstreamError::Tls("the upstream does not offer it".into()));
        }
        _ => {}
    }
    let connector = TlsConnector::from(if config.tls_verify {
        crate::tls::client()
    } else {
        crate::tls::client_without_verification()
    });
    let mut tls = match tokio::time::timeout(peer.timeout, plain.start_tls(&connector, host)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(UpstreamError::Tls(format!("{}: {e}", peer.target))),
        Err(_) => return Err(peer.timed_out()),
    };
    let ehlo = peer.step(tls.ehlo(helo)).await?;
    Ok((Client::Tls(Box::new(tls)), ehlo))
}

/// The upstream as the errors name it, and the bound on each step.
struct Peer {
    /// `host:port`.
    target: String,
    timeout: Duration,
}

impl Peer {
    /// Runs one read or write (or a command and its reply) within the
    /// timeout; a failure names the upstream.
    async fn step<T>(
        &self,
        io: impl Future<Output = mail_send::Result<T>>,
    ) -> Result<T, UpstreamError> {
        match tokio::time::timeout(self.timeout, io).await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> UpstreamError {
        UpstreamError::Timeout {
            target: self.target.clone(),
            after: self.timeout,
        }
    }

    fn error(&self, e: SendError) -> UpstreamError {
        let target = self.target.clone();
        match e {
            SendError::Timeout => self.timed_out(),
            SendError::Io(e) => UpstreamError::Io {
                target,
                why: e.to_string(),
            },
            // mail-send's reader says this for a connection closed
            // before the reply was whole, too.
            SendError::UnparseableReply => UpstreamError::Io {
                target,
                why: "closed or unreadable reply".into(),
            },
            SendError::UnexpectedReply(r) | SendError::AuthenticationFailed(r) => {
                UpstreamError::Protocol(format!("{target}: {}", Reply::from_upstream(&r)))
            }
            other => UpstreamError::Protocol(format!("{target}: {other}")),
        }
    }
}
