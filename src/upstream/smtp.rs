//! The `smtp://host:port` upstream, on mail-send's client (which keeps the
//! upstream's exact replies): connect, EHLO, STARTTLS as configured, AUTH,
//! then one command at a time with a timeout on every step.
//!
//! The message itself is written here, not by mail-send: dot-stuffed
//! (`smtp::data::stuff`, in the copy's own buffer unless a line starts
//! with a dot) with its end mark and sent in one write, or as one
//! `BDAT n LAST` when the upstream offers CHUNKING (RFC 3030), which also
//! saves the round trip for DATA's 354.

use std::time::{Duration, Instant};

use mail_send::{Credentials, Error as SendError, SmtpClient};
use smtp_proto::{
    EXT_8BIT_MIME, EXT_CHUNKING, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse, Response,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
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
    timeout: Duration,
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
        let timeout = limits.upstream_timeout;
        let target = format!("{host}:{port}");
        let connect_err = |why: String| UpstreamError::Connect {
            target: target.clone(),
            why,
        };
        let addr = tokio::net::lookup_host(&target)
            .await
            .map_err(|e| connect_err(e.to_string()))?
            .next()
            .ok_or_else(|| connect_err("no address".into()))?;
        let mut plain = SmtpClient::connect(addr, timeout)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        // Commands are small writes answered one by one: without this,
        // Nagle's algorithm and delayed ACKs stall each one by ~40 ms.
        let _ = plain.stream.set_nodelay(true);
        let greeting = plain.read().await.map_err(|e| map_err(e, timeout))?;
        if greeting.code != 220 {
            return Err(connect_err(format!(
                "greeting {}",
                Reply::from_upstream(&greeting)
            )));
        }
        let ehlo = plain.ehlo(helo).await.map_err(|e| map_err(e, timeout))?;
        let (client, ehlo) = start_tls(plain, ehlo, &host, helo, config, timeout).await?;
        let mut conn = Self {
            client,
            capabilities: ehlo.capabilities,
            last_used: Instant::now(),
            timeout,
            in_transaction: false,
        };
        if let Some((user, password)) = &config.credentials {
            let credentials = Credentials::new(user.as_str(), password.as_str());
            on_client!(&mut conn.client, c => c.authenticate(&credentials, &ehlo).await.map(|_| ()))
                .map_err(|e| map_err(e, timeout))?;
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
        let result = on_client!(&mut self.client, c => send_message(c, message, chunking).await);
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
            Err(e) => Err(map_err(e, self.timeout)),
        }
    }

    async fn cmd(&mut self, cmd: String) -> Result<Reply, UpstreamError> {
        self.last_used = Instant::now();
        let timeout = self.timeout;
        let result = on_client!(&mut self.client, c => c.cmd(cmd.as_bytes()).await);
        result
            .map(|r| Reply::from_upstream(&r))
            .map_err(|e| map_err(e, timeout))
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
async fn send_message<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    message: Vec<u8>,
    chunking: bool,
) -> mail_send::Result<Sent> {
    let wire = if chunking {
        data::bdat_last(message)
    } else {
        let reply = client.cmd(b"DATA\r\n").await?;
        if reply.code != 354 {
            return Ok(Sent::Refused(reply));
        }
        data::stuff(message)
    };
    tokio::time::timeout(client.timeout, async {
        client.stream.write_all(&wire).await?;
        client.stream.flush().await?;
        client.read().await.map(Sent::Answered)
    })
    .await
    .map_err(|_| SendError::Timeout)?
}

/// STARTTLS as configured; a new EHLO after it (RFC 3207 §4.2).
async fn start_tls(
    plain: SmtpClient<TcpStream>,
    ehlo: EhloResponse<String>,
    host: &str,
    helo: &str,
    config: &UpstreamConfig,
    timeout: Duration,
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
    let connector = mail_send::smtp::tls::build_tls_connector(!config.tls_verify)
        .map_err(UpstreamError::Tls)?;
    let mut tls = plain
        .start_tls(&connector, host)
        .await
        .map_err(|e| UpstreamError::Tls(e.to_string()))?;
    let ehlo = tls.ehlo(helo).await.map_err(|e| map_err(e, timeout))?;
    Ok((Client::Tls(Box::new(tls)), ehlo))
}

fn map_err(e: SendError, timeout: Duration) -> UpstreamError {
    match e {
        SendError::Timeout => UpstreamError::Timeout(timeout),
        SendError::Io(e) => UpstreamError::Io(e.to_string()),
        SendError::UnexpectedReply(r) | SendError::AuthenticationFailed(r) => {
            UpstreamError::Protocol(Reply::from_upstream(&r).to_string())
        }
        other => UpstreamError::Protocol(other.to_string()),
    }
}
