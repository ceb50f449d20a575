//! One client connection: the read loop, pipelining, deadlines, shutdown,
//! and dispatch of each command to its handler (`verbs`, `data`, `auth`).
//!
//! Replies are buffered and written when the session is about to wait for
//! input, which is what PIPELINING (RFC 2920) asks of a server. Each
//! write has `write_timeout`, and each command line a deadline from when
//! the server starts waiting for it: a client that trickles bytes or never
//! reads its replies is dropped, and its connection slot comes back.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::input::Input;
use super::{Inbound, Io};
use crate::relay::Transaction;
use crate::smtp::Reply;
use crate::smtp::line::{self, Framed, Framer};
use crate::upstream::MailParams;

/// Where the dialogue is.
pub enum State {
    /// Waiting for EHLO/HELO.
    Connected,
    /// Greeted, no transaction.
    Ready,
    /// MAIL accepted; RCPTs are mirrored as they come.
    Mail(Box<Pending>),
}

/// A transaction in progress.
pub enum Pending {
    /// Mirrored to the upstream.
    Relayed(Box<Transaction>),
    /// The client may not relay: MAIL is accepted locally so that every
    /// RCPT can be refused with 5.7.1, and nothing reaches the upstream.
    Denied { sender: String },
}

pub struct Session {
    pub inbound: Arc<Inbound>,
    pub peer: SocketAddr,
    pub io: Box<dyn Io>,
    pub state: State,
    pub helo: String,
    pub esmtp: bool,
    pub tls: bool,
    pub auth_user: Option<String>,
    /// Failed AUTH tries on this connection.
    pub auth_failures: u32,
    /// Bytes read but not consumed yet.
    pub input: Input,
    /// Replies not written yet.
    pub out: Vec<u8>,
    pub shutdown: CancellationToken,
    pub quit: bool,
}

/// How a read ended when it did not return bytes.
pub enum ReadEnd {
    Closed,
    Timeout,
    Shutdown,
}

/// How long a session cut at the shutdown deadline may take to write its
/// 421 and close.
const CUT_WRITE_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn run(
    io: Box<dyn Io>,
    peer: SocketAddr,
    inbound: Arc<Inbound>,
    shutdown: CancellationToken,
    deadline: crate::shutdown::Deadline,
) {
    let mut session = Session {
        inbound,
        peer,
        io,
        state: State::Connected,
        helo: String::new(),
        esmtp: false,
        tls: false,
        auth_user: None,
        auth_failures: 0,
        input: Input::default(),
        out: Vec::with_capacity(1024),
        shutdown,
        quit: false,
    };
    let span = tracing::debug_span!("smtp", peer = %peer);
    async move {
        let greeting = format!("{} ESMTP trackrelay", session.inbound.config.smtp.hostname);
        session.reply(Reply::new(220, (2, 0, 0), greeting));
        let finished = tokio::select! {
            () = async {
                session.serve().await;
                session.abort_transaction().await;
            } => true,
            () = deadline.passed() => false,
        };
        if finished {
            let _ = session.flush().await;
            let limit = session.inbound.config.limits.write_timeout;
            let _ = tokio::time::timeout(limit, session.io.shutdown()).await;
        } else {
            // Past the shutdown deadline: the transaction (and its upstream
            // connection, maybe the peer that does not answer) is dropped
            // unanswered; the client keeps the message and retries.
            deadline.count_cut();
            tracing::info!(%peer, "session cut at the shutdown deadline");
            session.out.clear();
            session.reply(Reply::new(
                421,
                (4, 3, 2),
                "Shutdown deadline reached, closing connection",
            ));
            let _ = tokio::time::timeout(CUT_WRITE_LIMIT, session.flush()).await;
            let _ = tokio::time::timeout(CUT_WRITE_LIMIT, session.io.shutdown()).await;
        }
    }
    .instrument(span)
    .await;
}

impl Session {
    async fn serve(&mut self) {
        let mut framer = Framer::default();
        let mut deadline = self.command_deadline();
        while !self.quit {
            let framed = framer.next(self.input.unread());
            match framed {
                Framed::NeedMore => {
                    if let Err(end) = self.read_more(deadline).await {
                        self.end(end);
                        return;
                    }
                    continue;
                }
                // The rest of a refused line: the deadline runs on.
                Framed::Skipped(n) => {
                    self.input.consume(n);
                    continue;
                }
                Framed::TooLong(n) => {
                    self.input.consume(n);
                    self.reply(Reply::new(500, (5, 5, 2), "Line too long"));
                }
                Framed::Line(n) => {
                    let line = self.input.unread()[..n].to_vec();
                    self.input.consume(n);
                    self.command(&line).await;
                }
            }
            deadline = self.command_deadline();
        }
    }

    /// When the next command line must be complete.
    pub fn command_deadline(&self) -> Instant {
        Instant::now() + self.inbound.config.limits.command_timeout
    }

    /// One whole command line: checked, parsed, dispatched.
    async fn command(&mut self, line: &[u8]) {
        if line::has_control(line) {
            let enhanced = match line.get(..4).map(|v| v.to_ascii_uppercase()).as_deref() {
                Some(b"MAIL") => (5, 1, 7),
                Some(b"RCPT") => (5, 1, 3),
                _ => (5, 5, 2),
            };
            self.reply(Reply::new(
                501,
                enhanced,
                "Control characters are not allowed",
            ));
            return;
        }
        let mut receiver = RequestReceiver::default();
        let mut iter = line.iter();
        match receiver.ingest(&mut iter).map(Request::into_owned) {
            Ok(request) => self.dispatch(request, line).await,
            // A whole line the parser still wants more of: not a command.
            Err(ParseError::NeedsMoreData { .. }) => {
                self.reply(Reply::syntax("Syntax error"));
            }
            Err(e) => self.reply(parse_error_reply(&e)),
        }
    }

    async fn dispatch(&mut self, request: Request<String>, line: &[u8]) {
        let reply = match request {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::Mail { from } => self.mail(from, line::size_param(line)).await,
            Request::Rcpt { to } => self.rcpt(to).await,
            Request::Data => self.data().await,
            Request::Rset => {
                self.abort_transaction().await;
                Reply::ok("Ok")
            }
            Request::Noop { .. } => Reply::ok("Ok"),
            Request::Quit => {
                self.quit = true;
                Reply::new(221, (2, 0, 0), "Bye")
            }
            Request::StartTls => match self.starttls().await {
                Some(reply) => reply,
                None => return,
            },
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await,
            Request::Vrfy { .. } => Reply::new(252, (2, 5, 2), "Cannot verify, but will relay"),
            Request::Help { .. } => Reply::new(214, (2, 0, 0), "See RFC 5321"),
            other => Reply::new(502, (5, 5, 1), format!("{} not implemented", other.name())),
        };
        self.reply(reply);
    }

    /// Queues a reply; it is written before the next wait for input.
    pub fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    /// Writes the pending replies, within `write_timeout`: a client that
    /// does not read them is dropped.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let limit = self.inbound.config.limits.write_timeout;
        let write = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(result) => result?,
            Err(_) => {
                tracing::info!(peer = %self.peer, "client does not read its replies; dropped");
                return Err(std::io::ErrorKind::TimedOut.into());
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Writes pending replies, then waits for more input until `deadline`:
    /// a command (or a line of AUTH). Shutdown interrupts the wait (the
    /// client hears 421 and retries).
    pub async fn read_more(&mut self, deadline: Instant) -> Result<(), ReadEnd> {
        if self.flush().await.is_err() {
            return Err(ReadEnd::Closed);
        }
        let buf = self.input.for_read();
        let read = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(ReadEnd::Shutdown),
            r = tokio::time::timeout_at(deadline, self.io.read_buf(buf)) => r,
        };
        read_result(read)
    }

    /// Writes pending replies, then reads message bytes straight into the
    /// spare room of `message`, until `deadline`. Shutdown does not
    /// interrupt it: a message being read is finished first.
    pub async fn read_message_bytes(
        &mut self,
        message: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<(), ReadEnd> {
        if self.flush().await.is_err() {
            return Err(ReadEnd::Closed);
        }
        read_result(tokio::time::timeout_at(deadline, self.io.read_buf(message)).await)
    }

    fn end(&mut self, end: ReadEnd) {
        match end {
            ReadEnd::Closed => {}
            ReadEnd::Timeout => {
                self.reply(Reply::new(421, (4, 4, 2), "Timeout, closing connection"))
            }
            ReadEnd::Shutdown => {
                self.reply(Reply::new(421, (4, 3, 0), "Shutting down, try again later"))
            }
        }
    }

    /// Drops the transaction; the mirrored upstream one is reset and the
    /// connection returned to the pool.
    pub async fn abort_transaction(&mut self) {
        let state = std::mem::replace(
            &mut self.state,
            if self.helo.is_empty() {
                State::Connected
            } else {
                State::Ready
            },
        );
        if let State::Mail(pending) = state
            && let Pending::Relayed(txn) = *pending
        {
            self.inbound.relay.upstream.release(txn.upstream).await;
        }
    }

    /// Whether this client may relay: authenticated or from an allowed network.
    pub fn may_relay(&self) -> bool {
        self.auth_user.is_some() || self.inbound.allowed_network(&self.peer)
    }

    /// Parameters to mirror upstream from the client's MAIL FROM; `size`
    /// as read from the line (`line::size_param`), not smtp-proto's.
    pub fn mail_params(from: &smtp_proto::MailFrom<String>, size: Option<u64>) -> MailParams {
        MailParams {
            body_8bitmime: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            smtputf8: from.flags & smtp_proto::MAIL_SMTPUTF8 != 0,
            size: size.filter(|&s| s > 0),
        }
    }
}

fn read_result(
    read: Result<std::io::Result<usize>, tokio::time::error::Elapsed>,
) -> Result<(), ReadEnd> {
    match read {
        Err(_) => Err(ReadEnd::Timeout),
        Ok(Ok(0)) | Ok(Err(_)) => Err(ReadEnd::Closed),
        Ok(Ok(_)) => Ok(()),
    }
}

fn parse_error_reply(e: &ParseError) -> Reply {
    match e {
        ParseError::UnknownCommand => Reply::new(500, (5, 5, 2), "Command not recognized"),
        ParseError::InvalidSenderAddress => Reply::new(501, (5, 1, 7), "Bad sender address syntax"),
        ParseError::InvalidRecipientAddress => {
            Reply::new(501, (5, 1, 3), "Bad recipient address syntax")
        }
        ParseError::SyntaxError { syntax } => Reply::syntax(&format!("Syntax: {syntax}")),
        ParseError::InvalidParameter { param } => {
            Reply::new(501, (5, 5, 4), format!("Invalid parameter {param}"))
        }
        ParseError::UnsupportedParameter { param } => {
            Reply::new(504, (5, 5, 4), format!("Unsupported parameter {param}"))
        }
        ParseError::ResponseTooLong => Reply::new(500, (5, 5, 6), "Line too long"),
        _ => Reply::syntax("Syntax error"),
    }
}
