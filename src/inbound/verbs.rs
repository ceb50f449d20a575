//! EHLO/HELO, MAIL, RCPT and STARTTLS: each checks command order first,
//! then does its work and returns the reply.

use smtp_proto::{MailFrom, RcptTo};

use super::session::{Pending, Session, State};
use crate::config::Envelope;
use crate::relay::{Trace, Transaction};
use crate::smtp::Reply;

impl Session {
    pub fn ehlo(&mut self, host: String, esmtp: bool) -> Reply {
        self.helo = host;
        self.esmtp = esmtp;
        // EHLO or HELO in the middle of a transaction resets it (RFC 5321
        // §4.1.4): a pending transaction is dropped with its state; the
        // upstream side is reset at the next MAIL or on release.
        self.state = State::Ready;
        let name = &self.inbound.config.smtp.hostname;
        if !esmtp {
            return Reply::new(250, (2, 0, 0), name.clone());
        }
        let mut lines = vec![
            name.clone(),
            "PIPELINING".into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            format!("SIZE {}", self.inbound.config.limits.max_message_bytes),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.inbound.tls.is_some() && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.auth_allowed() && self.auth_user.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        Reply {
            code: 250,
            enhanced: None,
            text: lines.join("\n"),
        }
    }

    pub async fn mail(&mut self, from: MailFrom<String>) -> Reply {
        match self.state {
            State::Connected => return Reply::bad_sequence("Say EHLO first"),
            State::Mail(_) => return Reply::bad_sequence("Nested MAIL command"),
            State::Ready => {}
        }
        let max = self.inbound.config.limits.max_message_bytes;
        if from.size as u64 > max {
            return Reply::new(
                552,
                (5, 3, 4),
                format!("Message size exceeds the limit of {max} bytes"),
            );
        }
        let sender = from.address.clone();
        if !self.may_relay() {
            self.state = State::Mail(Box::new(Pending::Denied { sender }));
            return Reply::ok("Ok");
        }
        let envelope = Envelope {
            auth_user: self.auth_user.as_deref(),
            sender: &sender,
            client_ip: self.peer.ip().to_canonical(),
        };
        let route = self.inbound.relay.select_route(&envelope);
        let params = Self::mail_params(&from);
        let (upstream, reply) = match self.inbound.relay.upstream.begin(&sender, params).await {
            Ok(started) => started,
            Err(e) => {
                tracing::warn!(route = %route.id, error = %e, "upstream MAIL failed");
                return Reply::upstream_unavailable(&e.to_string());
            }
        };
        if !reply.is_positive() {
            self.inbound.relay.upstream.release(upstream).await;
            return reply;
        }
        let trace = Trace {
            helo: self.helo.clone(),
            peer: self.peer.ip().to_canonical().to_string(),
            protocol: self.protocol(),
        };
        let txn = Transaction {
            sender,
            params,
            route,
            recipients: Vec::new(),
            upstream,
            trace,
        };
        self.state = State::Mail(Box::new(Pending::Relayed(Box::new(txn))));
        reply
    }

    pub async fn rcpt(&mut self, to: RcptTo<String>) -> Reply {
        let max = self.inbound.config.limits.max_recipients;
        let State::Mail(pending) = &mut self.state else {
            return Reply::bad_sequence("Need MAIL before RCPT");
        };
        let txn = match pending.as_mut() {
            Pending::Denied { sender } => {
                crate::maillog::relay_denied(&self.peer.to_string(), sender, &to.address);
                return Reply::relay_denied();
            }
            Pending::Relayed(txn) => txn,
        };
        if txn.recipients.len() >= max {
            return Reply::new(
                452,
                (4, 5, 3),
                format!("Too many recipients (at most {max})"),
            );
        }
        // Mirrored as it arrives: the client hears the upstream's answer.
        match txn.upstream.rcpt_to(&to.address).await {
            Ok(reply) => {
                if reply.is_positive() {
                    txn.recipients.push(to.address);
                }
                reply
            }
            Err(e) => {
                // The upstream connection is gone: so is the transaction.
                let reply = Reply::upstream_unavailable(&e.to_string());
                self.state = State::Ready;
                reply
            }
        }
    }

    /// STARTTLS; `None` when the reply was already sent (the handshake
    /// followed it) or the connection is to be closed.
    pub async fn starttls(&mut self) -> Option<Reply> {
        let Some(acceptor) = self.inbound.tls.clone() else {
            return Some(Reply::new(502, (5, 5, 1), "STARTTLS not available"));
        };
        if self.tls {
            return Some(Reply::bad_sequence("Already using TLS"));
        }
        // RFC 3207 §4.2: nothing sent before the handshake may be kept.
        self.input.clear();
        self.reply(Reply::new(220, (2, 0, 0), "Ready to start TLS"));
        if self.flush().await.is_err() {
            self.quit = true;
            return None;
        }
        let placeholder = Box::new(tokio::io::duplex(1).0);
        let io = std::mem::replace(&mut self.io, placeholder);
        match acceptor.accept(io).await {
            Ok(tls) => {
                self.io = Box::new(tls);
                self.tls = true;
                // Forget everything learnt before TLS.
                self.helo.clear();
                self.auth_user = None;
                self.state = State::Connected;
                None
            }
            Err(e) => {
                tracing::info!(error = %e, "TLS handshake failed");
                self.quit = true;
                None
            }
        }
    }

    /// The `with` word of the Received field (RFC 3848).
    fn protocol(&self) -> &'static str {
        match (self.tls, self.auth_user.is_some(), self.esmtp) {
            (true, true, _) => "ESMTPSA",
            (true, false, _) => "ESMTPS",
            (false, true, _) => "ESMTPA",
            (false, false, true) => "ESMTP",
            (false, false, false) => "SMTP",
        }
    }
}
