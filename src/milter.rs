//! Milter mode: the same rewriting offered to Postfix (or Sendmail) over
//! the milter protocol, for MTAs that would rather not add an SMTP hop.
//!
//! The MTA connects (TCP or a unix socket), hands over the envelope, the
//! header fields one by one and the body in chunks (`session`, a state
//! machine over the `codec`'s packets); at end of message the message is
//! rebuilt as the MTA will deliver it, rewritten by the relay's own
//! [`Relay::rewrite`] with the route the relay would choose, turned back
//! into edits (`edits`: delete the `X-LM-*` fields, replace the body) and
//! recorded like a relayed copy. This file only moves bytes.
//!
//! Mail is never lost here: a message that cannot be rewritten (too big,
//! malformed packets, an internal error) is answered per `milter.on_error`
//! (accept unchanged, or tempfail) with a log line; a broken connection
//! leaves the message to the MTA's `milter_default_action`.

pub mod codec;
pub mod edits;
pub mod session;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::{Envelope, MilterConfig, MilterListen, OnError};
use crate::maillog;
use crate::relay::{CopyRecord, Relay};
use codec::{Command, Response, action};
use session::{Finished, Session, Step};

/// Why the milter listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {listen} (milter.listen): {source}")]
pub struct BindError {
    listen: MilterListen,
    source: io::Error,
}

/// What every milter connection shares.
pub struct Milter {
    relay: Arc<Relay>,
    config: MilterConfig,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Binds `milter.listen` and serves milter connections in `set` until
/// `shutdown`; returns the bound TCP address (`None` for a unix socket).
pub async fn start(
    config: &MilterConfig,
    relay: Arc<Relay>,
    set: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> Result<Option<SocketAddr>, BindError> {
    let err = |source| BindError {
        listen: config.listen.clone(),
        source,
    };
    let (listener, bound) = match &config.listen {
        MilterListen::Tcp(addr) => {
            let l = TcpListener::bind(addr).await.map_err(err)?;
            let bound = l.local_addr().map_err(err)?;
            (Listener::Tcp(l), Some(bound))
        }
        MilterListen::Unix(path) => {
            // A socket left by an earlier run would make bind fail.
            if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
                std::fs::remove_file(path).map_err(err)?;
            }
            let l = UnixListener::bind(path).map_err(err)?;
            (Listener::Unix(l, path.clone()), None)
        }
    };
    tracing::info!(listen = %config.listen, on_error = ?config.on_error, "milter listening");
    let milter = Arc::new(Milter {
        relay,
        config: config.clone(),
    });
    set.spawn(serve(listener, milter, shutdown));
    Ok(bound)
}

/// Accepts MTA connections until `shutdown`, then waits for each to finish
/// the message it is in, and hands the last records to storage.
async fn serve(listener: Listener, milter: Arc<Milter>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok(stream) => {
                let (milter, shutdown) = (milter.clone(), shutdown.clone());
                connections.spawn(async move {
                    match stream {
                        Stream::Tcp(s) => connection(s, milter, shutdown).await,
                        Stream::Unix(s) => connection(s, milter, shutdown).await,
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "milter accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    connections.close();
    connections.wait().await;
    milter.relay.flush_records().await;
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> io::Result<Stream> {
    match listener {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok(Stream::Tcp(s))
        }
        Listener::Unix(l, _) => Ok(Stream::Unix(l.accept().await?.0)),
    }
}

/// One MTA connection: packets in, replies out, until the MTA quits or
/// goes away. At shutdown a connection between messages is closed (the MTA
/// reconnects elsewhere or applies its default); one inside a message is
/// served to the end of that message first.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    milter: Arc<Milter>,
    shutdown: CancellationToken,
) {
    let mut session = Session::new(milter.config.max_message_bytes);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut out = Vec::new();
    loop {
        // Every whole packet in the buffer, then one write of the replies.
        let mut used = 0;
        loop {
            let step = match Command::decode(&buf[used..]) {
                Ok(None) => break,
                Ok(Some((command, n))) => {
                    used += n;
                    session.handle(command)
                }
                Err(e) if e.recoverable() => {
                    // Whole packet present (decode parses only then): skip it.
                    let p = &buf[used..];
                    used += 4 + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
                    session.malformed(e.to_string())
                }
                Err(e) => {
                    maillog::milter_failed(session.queue_id(), &e.to_string(), "connection closed");
                    return;
                }
            };
            match step {
                Step::Reply(replies) => replies.iter().for_each(|r| r.encode(&mut out)),
                Step::EndOfMessage(finished) => {
                    for r in milter.finish(*finished) {
                        r.encode(&mut out);
                    }
                }
                Step::Close => {
                    let _ = stream.write_all(&out).await;
                    return;
                }
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        let read = tokio::select! {
            r = stream.read_buf(&mut buf) => r,
            _ = shutdown.cancelled(), if !session.in_message() => return,
        };
        match read {
            Ok(0) | Err(_) => {
                if session.in_message() {
                    // The MTA applies milter_default_action to this one.
                    maillog::milter_failed(
                        session.queue_id(),
                        "connection closed mid-message",
                        "left to the MTA",
                    );
                }
                return;
            }
            Ok(_) => {}
        }
    }
}

impl Milter {
    /// The replies at end of message: edits and continue, or the
    /// `on_error` answer. Never panics (a panic becomes `on_error`).
    fn finish(&self, f: Finished) -> Vec<Response> {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.rewrite(&f)));
        let why = match result {
            Ok(Ok(replies)) => return replies,
            Ok(Err(why)) => why,
            Err(_) => "internal error (panic)".to_owned(),
        };
        let (reply, said) = match self.config.on_error {
            OnError::Accept => (Response::Accept, "accepted unchanged"),
            OnError::Tempfail => (Response::Tempfail, "tempfail"),
        };
        maillog::milter_failed(&f.queue_id, &why, said);
        vec![reply]
    }

    fn rewrite(&self, f: &Finished) -> Result<Vec<Response>, String> {
        if let Some(why) = &f.failure {
            return Err(why.clone());
        }
        let needed = action::CHGBODY | action::CHGHDRS;
        if f.actions & needed != needed {
            return Err("the MTA does not allow body and header changes".into());
        }
        let route = self.relay.select_route(&Envelope {
            auth_user: f.auth_user.as_deref(),
            sender: &f.sender,
            // Unknown: an address no route's network holds.
            client_ip: f.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        });
        // One delivery for all recipients: per-recipient tokens only when
        // there is just one.
        let recipient = match f.recipients.as_slice() {
            [only] => Some(only.as_str()),
            _ => None,
        };
        let id = Uuid::now_v7();
        let outcome = self
            .relay
            .rewrite(&f.message(), &route.settings, id, recipient);
        let mut replies = edits::plan(&f.fields, &f.body, f.leading_space, &outcome.message)?;
        let adds = replies
            .iter()
            .any(|r| matches!(r, Response::AddHeader { .. }));
        if adds && f.actions & action::ADDHDRS == 0 {
            return Err("the MTA does not allow adding a header field".into());
        }
        let report = &outcome.report;
        maillog::milter_rewritten(id, &f.queue_id, &route.id, &f.sender, &f.recipients, report);
        let copy = CopyRecord {
            id,
            route: &route.id,
            sender: &f.sender,
            recipients: &f.recipients,
            report,
        };
        let reply = format!("accepted by milter (queue id {})", f.queue_id);
        self.relay.record_copy(copy, reply, true);
        replies.push(Response::Continue);
        Ok(replies)
    }
}
