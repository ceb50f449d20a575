//! Milter mode: the same rewriting offered to Postfix (or Sendmail) over
//! the milter protocol, for MTAs that would rather not add an SMTP hop.
//!
//! The MTA connects (TCP or a unix socket), hands over the envelope, the
//! header fields one by one and the body in chunks (`session`, a state
//! machine over the `codec`'s packets); at end of message the message is
//! rebuilt as the MTA will deliver it, rewritten by the relay's own
//! [`Relay::rewrite`] with the route the relay would choose (from the
//! routes in force, [`crate::routes`]), turned back
//! into edits (`edits`: delete the `X-LM-*` fields, replace the body) and
//! recorded like a relayed copy. This file only moves bytes.
//!
//! Mail is never lost here: a message that cannot be rewritten (too big,
//! malformed packets, an internal error) is answered per `milter.on_error`
//! (accept unchanged, or tempfail) with a log line; a broken connection
//! leaves the message to the MTA's `milter_default_action`.
//!
//! Who may hold a connection, and for how long (issue 21): only TCP peers
//! in `milter.allowed_networks` (loopback by default), at most
//! `milter.max_connections` at once, each packet whole within
//! `milter.packet_timeout_seconds` of its first byte (the codec refuses a
//! length over `codec::MAX_PACKET` from the first four bytes), each write of
//! replies within that too, and silence between packets for at most
//! `milter.idle_timeout_seconds`. The rewrite runs on the relay's rewrite
//! pool, off the async workers.

pub mod codec;
pub mod edits;
pub mod session;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::{Envelope, MilterConfig, MilterListen, OnError};
use crate::maillog;
use crate::relay::{CopyRecord, Relay};
use crate::routes::Registry;
use crate::shutdown::Deadline;
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
    routes: Arc<Registry>,
    config: MilterConfig,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// The stop signal and the shutdown deadline.
type Stop = (CancellationToken, Deadline);

/// Binds `milter.listen` and serves milter connections in `set` until
/// `stop`, choosing routes from `routes`; returns the bound TCP address
/// (`None` for a unix socket).
pub async fn start(
    config: &MilterConfig,
    relay: Arc<Relay>,
    routes: Arc<Registry>,
    set: &mut JoinSet<()>,
    stop: Stop,
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
        routes,
        config: config.clone(),
    });
    set.spawn(serve(listener, milter, stop));
    Ok(bound)
}

/// Accepts MTA connections until `stop`, then waits for each to finish
/// the message it is in (until the shutdown deadline), and hands the last
/// records to storage.
async fn serve(listener: Listener, milter: Arc<Milter>, stop: Stop) {
    let connections = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(milter.config.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = stop.0.cancelled() => break,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Some(peer) = peer
                    && !milter.allowed(&peer)
                {
                    tracing::warn!(%peer, "milter connection refused: not in milter.allowed_networks");
                    continue;
                }
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(peer = ?peer, max = milter.config.max_connections,
                        "milter connection refused: milter.max_connections reached");
                    continue;
                };
                let (milter, stop) = (milter.clone(), stop.clone());
                connections.spawn(async move {
                    match stream {
                        Stream::Tcp(s) => connection(s, milter, stop).await,
                        Stream::Unix(s) => connection(s, milter, stop).await,
                    }
                    drop(permit);
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

/// The next connection, and its peer address when it came over TCP.
async fn accept(listener: &Listener) -> io::Result<(Stream, Option<SocketAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Stream::Tcp(s), Some(peer)))
        }
        Listener::Unix(l, _) => Ok((Stream::Unix(l.accept().await?.0), None)),
    }
}

/// One MTA connection, until it ends or the shutdown deadline cuts it
/// (the MTA then applies its `milter_default_action`).
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    milter: Arc<Milter>,
    (shutdown, deadline): Stop,
) {
    let mut session = Session::new(milter.config.max_message_bytes);
    tokio::select! {
        () = exchange(&mut stream, &milter, &mut session, &shutdown) => {}
        () = deadline.passed() => {
            deadline.count_cut();
            maillog::milter_failed(
                session.queue_id(),
                "cut at the shutdown deadline",
                "left to the MTA",
            );
        }
    }
}

/// Packets in, replies out, until the MTA quits or goes away, breaks a
/// time limit, or `shutdown` comes between messages (the MTA reconnects
/// elsewhere or applies its default); a message under way is served to
/// its end first.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    milter: &Arc<Milter>,
    session: &mut Session,
    shutdown: &CancellationToken,
) {
    let limits = &milter.config;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut out = Vec::new();
    // When the packet at the front of `buf` (not whole yet) began.
    let mut packet_began: Option<Instant> = None;
    loop {
        // Every whole packet in the buffer, then one write of the replies.
        let used = match answer(milter, session, &buf, &mut out).await {
            Answered::Used(n) => n,
            Answered::Quit => {
                let _ = tokio::time::timeout(limits.packet_timeout, stream.write_all(&out)).await;
                return;
            }
            Answered::Broken => return,
        };
        buf.drain(..used);
        packet_began = match (buf.is_empty(), used > 0) {
            (true, _) => None,
            // What is left began after the packets just used.
            (false, true) => Some(Instant::now()),
            (false, false) => packet_began.or_else(|| Some(Instant::now())),
        };
        if !out.is_empty() {
            match tokio::time::timeout(limits.packet_timeout, stream.write_all(&out)).await {
                Ok(Ok(())) => out.clear(),
                Ok(Err(_)) => return,
                Err(_) => {
                    return give_up(
                        session,
                        "replies not read in time (milter.packet_timeout_seconds)",
                    );
                }
            }
        }
        let until = match packet_began {
            Some(began) => began + limits.packet_timeout,
            None => Instant::now() + limits.idle_timeout,
        };
        let read = tokio::select! {
            r = tokio::time::timeout_at(until, stream.read_buf(&mut buf)) => r,
            _ = shutdown.cancelled(), if !session.in_message() => return,
        };
        match read {
            Ok(Ok(0) | Err(_)) => return give_up(session, "connection closed mid-message"),
            Ok(Ok(_)) => {}
            Err(_) if packet_began.is_some() => {
                return give_up(
                    session,
                    "packet not whole in time (milter.packet_timeout_seconds)",
                );
            }
            Err(_) => return give_up(session, "idle too long (milter.idle_timeout_seconds)"),
        }
    }
}

/// What became of the packets in the buffer.
enum Answered {
    /// This many bytes were whole packets, answered; wait for more.
    Used(usize),
    /// The MTA quit: write the replies and close.
    Quit,
    /// The stream is out of step (a bad length): close at once.
    Broken,
}

/// Answers every whole packet at the front of `buf`, the replies into
/// `out` (the end of a message is rewritten on the rewrite pool).
async fn answer(
    milter: &Arc<Milter>,
    session: &mut Session,
    buf: &[u8],
    out: &mut Vec<u8>,
) -> Answered {
    let mut used = 0;
    loop {
        let step = match Command::decode(&buf[used..]) {
            Ok(None) => return Answered::Used(used),
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
                return Answered::Broken;
            }
        };
        match step {
            Step::Reply(replies) => replies.iter().for_each(|r| r.encode(out)),
            Step::EndOfMessage(finished) => {
                for r in milter.clone().finish(*finished).await {
                    r.encode(out);
                }
            }
            Step::Close => return Answered::Quit,
        }
    }
}

/// The connection ends: logged when a message was under way (the MTA
/// applies `milter_default_action` to it) or a time limit was broken.
fn give_up(session: &Session, why: &str) {
    if session.in_message() {
        maillog::milter_failed(session.queue_id(), why, "left to the MTA");
    } else if !why.starts_with("connection closed") {
        tracing::info!(why, "milter connection closed");
    }
}

impl Milter {
    /// Whether a TCP peer may connect (`milter.allowed_networks`).
    fn allowed(&self, peer: &SocketAddr) -> bool {
        let ip = peer.ip().to_canonical();
        self.config.allowed_networks.iter().any(|n| n.contains(&ip))
    }

    /// The replies at end of message, worked out on the rewrite pool.
    async fn finish(self: Arc<Self>, f: Finished) -> Vec<Response> {
        crate::relay::pool::run(move || self.finish_now(f)).await
    }

    /// The replies at end of message: edits and continue, or the
    /// `on_error` answer. Never panics (a panic becomes `on_error`).
    fn finish_now(&self, f: Finished) -> Vec<Response> {
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
        let routes = self.routes.snapshot();
        let route = routes.select(&Envelope {
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
