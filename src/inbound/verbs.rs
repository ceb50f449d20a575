//! EHLO/HELO, MAIL, RCPT and STARTTLS: each checks command order first,
//! then does its work and returns the reply.

use smtp_proto::{MailFrom, RcptTo};

use super::session::{Pending, Session, State};
use crate::config::Envelope;
use crate::relay::{Trace, Transaction};
use crate::smtp::Reply;
use crate::smtp::address::{BadAddress, wire_form};

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

    /// MAIL; `size` is the SIZE parameter as the line gave it
    /// (`Some(None)`: a number too large for 64 bits).
    pub async fn mail(&mut self, from: MailFrom<String>, size: Option<Option<u64>>) -> Reply {
        match self.state {
            State::Connected => return Reply::bad_sequence("Say EHLO first"),
            State::Mail(_) => return Reply::bad_sequence("Nested MAIL command"),
            State::Ready => {}
        }
        let max = self.inbound.config.limits.max_message_bytes;
        let Some(size) = size.map_or(Some(None), |s| s.map(Some)) else {
            return too_big(max);
        };
        if size.is_some_and(|s| s > max) {
            return too_big(max);
        }
        let sender = match wire_form(&from.address) {
            Ok(sender) => sender,
            Err(e) => return bad_address(e, (5, 1, 7), "sender"),
        };
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
        let params = Self::mail_params(&from, size);
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
            helo: trace_helo(&self.helo),
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
            metadata: None,
        };
        self.state = State::Mail(Box::new(Pending::Relayed(Box::new(txn))));
        reply
    }

    pub async fn rcpt(&mut self, to: RcptTo<String>) -> Reply {
        let max = self.inbound.config.limits.max_recipients;
        let State::Mail(pending) = &mut self.state else {
            return Reply::bad_sequence("Need MAIL before RCPT");
        };
        // Mirrored and recorded in the one form the upstream gets.
        let recipient = match wire_form(&to.address) {
            Ok(r) => r,
            Err(e) => return bad_address(e, (5, 1, 3), "recipient"),
        };
        let txn = match pending.as_mut() {
            Pending::Denied { sender } => {
                crate::maillog::relay_denied(&self.peer.to_string(), sender, &recipient);
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
        match txn.upstream.rcpt_to(&recipient).await {
            Ok(reply) => {
                if reply.is_positive() {
                    txn.recipients.push(recipient);
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
        // The handshake gets the command deadline: a client that stalls
        // in it holds a connection slot like any other.
        let limit = self.inbound.config.limits.command_timeout;
        let handshake = match tokio::time::timeout(limit, acceptor.accept(io)).await {
            Ok(handshake) => handshake,
            Err(_) => {
                tracing::info!(peer = %self.peer, "TLS handshake timed out");
                self.quit = true;
                return None;
            }
        };
        match handshake {
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

fn too_big(max: u64) -> Reply {
    Reply::new(
        552,
        (5, 3, 4),
        format!("Message size exceeds the limit of {max} bytes"),
    )
}

fn bad_address(e: BadAddress, enhanced: (u8, u16, u16), what: &str) -> Reply {
    let why = match e {
        BadAddress::Control => "control characters",
        BadAddress::Domain => "the domain is not a host name",
    };
    Reply::new(501, enhanced, format!("Bad {what} address syntax: {why}"))
}

/// The HELO name as the Received field shows it: control characters are
/// refused before this, and anything but what host names and address
/// literals are made of becomes '?', so a client cannot shape the field
/// (RFC 5321 §4.4 `Extended-Domain`).
fn trace_helo(helo: &str) -> String {
    helo.chars()
        .take(255)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-.:[]_".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::trace_helo;

    #[test]
    fn helo_names_are_tamed_for_the_received_field() {
        assert_eq!(trace_helo("mail.example.com"), "mail.example.com");
        assert_eq!(trace_helo("[IPv6:2001:db8::1]"), "[IPv6:2001:db8::1]");
        assert_eq!(trace_helo("ev\0il (by x); y"), "ev?il??by?x???y");
        assert_eq!(trace_helo(&"a".repeat(300)).len(), 255);
    }
}
