//! One milter connection as a state machine over [`Command`]s, no I/O:
//! negotiation, macros, the envelope, the header fields one by one and the
//! body in chunks. At end of message it hands back a [`Finished`] message
//! for the async side to rewrite; every other command gets its reply here
//! (or none, where the negotiation said the MTA does not wait for one).

use std::collections::HashMap;
use std::net::IpAddr;

use super::codec::{Command, Response, VERSION, action, protocol, stage};

/// The actions we ask for: change the body, change and delete fields (add
/// only for a Content-Transfer-Encoding field the rewrite inserts).
const ACTIONS: u32 = action::ADDHDRS | action::CHGHDRS | action::CHGBODY;

/// Events we do not need, replies the MTA need not wait for, and exact
/// header values (leading space kept). Each only if the MTA offers it.
const PROTOCOL: u32 = protocol::NOHELO
    | protocol::NOUNKNOWN
    | protocol::NR_CONN
    | protocol::NR_HELO
    | protocol::NR_MAIL
    | protocol::NR_RCPT
    | protocol::NR_DATA
    | protocol::NR_UNKN
    | protocol::NR_HDR
    | protocol::NR_EOH
    | protocol::NR_BODY
    | protocol::HDR_LEADSPC;

/// The macros we ask for, by stage (the MTA sends them only if it offered
/// SETSYMLIST; Postfix's defaults already include most of them).
fn macro_lists() -> Vec<(u32, String)> {
    vec![
        (stage::CONNECT, "{client_addr} _".into()),
        (stage::ENVFROM, "i {auth_authen} {mail_addr}".into()),
        (stage::DATA, "i".into()),
        (stage::EOH, "i".into()),
        (stage::EOM, "i".into()),
    ]
}

/// What the session says after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these (possibly none: the MTA waits for nothing).
    Reply(Vec<Response>),
    /// The message is complete: rewrite it and answer.
    EndOfMessage(Box<Finished>),
    /// The MTA said goodbye.
    Close,
}

/// One header field as the MTA gave it: value with its leading space (when
/// negotiated) and CRLF between folded lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// A whole message and its envelope, at end of message.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished {
    pub sender: String,
    pub recipients: Vec<String>,
    pub auth_user: Option<String>,
    pub client_ip: Option<IpAddr>,
    /// The MTA's queue id (macro `i`), for logs.
    pub queue_id: String,
    pub fields: Vec<Field>,
    pub body: Vec<u8>,
    /// Why the message cannot be rewritten (too big, malformed packets).
    pub failure: Option<String>,
    /// Whether header values came with their leading space.
    pub leading_space: bool,
    /// The actions the MTA allows.
    pub actions: u32,
}

impl Finished {
    /// The message bytes as the MTA will deliver them: each field as
    /// `name:value` CRLF, an empty line, the body.
    pub fn message(&self) -> Vec<u8> {
        let size: usize = self
            .fields
            .iter()
            .map(|f| f.name.len() + f.value.len() + 4)
            .sum();
        let mut out = Vec::with_capacity(size + 2 + self.body.len());
        for f in &self.fields {
            out.extend_from_slice(&f.name);
            out.push(b':');
            if !self.leading_space && !f.value.is_empty() {
                // Without HDR_LEADSPC the MTA ate one space after the colon.
                out.push(b' ');
            }
            out.extend_from_slice(&f.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// The state of one milter connection.
#[derive(Debug)]
pub struct Session {
    /// Largest message (header fields and body) we take.
    max_message_bytes: usize,
    /// Negotiated protocol flags and actions.
    protocol: u32,
    actions: u32,
    macros: HashMap<String, String>,
    connect_ip: Option<IpAddr>,
    message: Message,
}

/// The message being collected.
#[derive(Debug, Default)]
struct Message {
    sender: String,
    recipients: Vec<String>,
    fields: Vec<Field>,
    body: Vec<u8>,
    size: usize,
    failure: Option<String>,
    /// Between MAIL and the end of the message.
    started: bool,
}

impl Session {
    pub fn new(max_message_bytes: u64) -> Self {
        Self {
            max_message_bytes: usize::try_from(max_message_bytes).unwrap_or(usize::MAX),
            protocol: 0,
            actions: 0,
            macros: HashMap::new(),
            connect_ip: None,
            message: Message::default(),
        }
    }

    /// Handles one command.
    pub fn handle(&mut self, command: Command) -> Step {
        match command {
            Command::Negotiate {
                version,
                actions,
                protocol,
            } => self.negotiate(version, actions, protocol),
            Command::Macros { pairs, .. } => {
                for (name, value) in pairs {
                    self.macros.insert(macro_name(&name).to_owned(), value);
                }
                Step::Reply(Vec::new())
            }
            Command::Connect {
                family, address, ..
            } => {
                // `4`/`6`: the SMTP client's address (`L`: a local socket).
                if matches!(family, b'4' | b'6') {
                    self.connect_ip = address.trim_start_matches("IPv6:").parse().ok();
                }
                self.reply(protocol::NR_CONN)
            }
            Command::Helo(_) => self.reply(protocol::NR_HELO),
            Command::Mail(args) => {
                // A new transaction starts (Postfix sends ABORT between
                // messages, but do not rely on it).
                self.message = Message {
                    sender: address(&args[0]),
                    started: true,
                    ..Message::default()
                };
                self.reply(protocol::NR_MAIL)
            }
            Command::Rcpt(args) => {
                self.message.recipients.push(address(&args[0]));
                self.reply(protocol::NR_RCPT)
            }
            Command::Data => self.reply(protocol::NR_DATA),
            Command::Unknown(_) => self.reply(protocol::NR_UNKN),
            Command::Header { name, value } => {
                self.header(name, value);
                self.reply(protocol::NR_HDR)
            }
            Command::EndOfHeaders => self.reply(protocol::NR_EOH),
            Command::Body(chunk) => {
                self.body(&chunk);
                self.reply(protocol::NR_BODY)
            }
            Command::EndOfMessage(chunk) => {
                self.body(&chunk);
                Step::EndOfMessage(Box::new(self.finish()))
            }
            Command::Abort => {
                self.message = Message::default();
                Step::Reply(Vec::new())
            }
            Command::QuitNewConnection => {
                self.message = Message::default();
                self.macros.clear();
                self.connect_ip = None;
                Step::Reply(Vec::new())
            }
            Command::Quit => Step::Close,
        }
    }

    /// A packet of the current message could not be read: the message will
    /// be answered per `on_error` at its end. Returns the reply the MTA
    /// waits for, if it waits for any (we cannot know which command it was:
    /// a continue keeps the dialogue going either way).
    pub fn malformed(&mut self, why: String) -> Step {
        self.message.failure.get_or_insert(why);
        Step::Reply(Vec::new())
    }

    /// Whether a message is under way (MAIL seen, not yet ended).
    pub fn in_message(&self) -> bool {
        self.message.started
    }

    /// The queue id known so far, for logs.
    pub fn queue_id(&self) -> &str {
        self.macros.get("i").map(String::as_str).unwrap_or("-")
    }

    fn negotiate(&mut self, version: u32, actions: u32, offered: u32) -> Step {
        self.actions = ACTIONS & actions;
        self.protocol = PROTOCOL & offered;
        let macros = if actions & action::SETSYMLIST != 0 {
            self.actions |= action::SETSYMLIST;
            macro_lists()
        } else {
            Vec::new()
        };
        Step::Reply(vec![Response::Negotiate {
            version: version.min(VERSION),
            actions: self.actions,
            protocol: self.protocol,
            macros,
        }])
    }

    /// Continue, unless the negotiated `no_reply` flag says the MTA does
    /// not wait for a reply to this command.
    fn reply(&self, no_reply: u32) -> Step {
        if self.protocol & no_reply != 0 {
            Step::Reply(Vec::new())
        } else {
            Step::Reply(vec![Response::Continue])
        }
    }

    fn header(&mut self, name: Vec<u8>, value: Vec<u8>) {
        if !self.grow(name.len() + value.len() + 3) {
            return;
        }
        self.message.fields.push(Field {
            name,
            value: crlf(&value),
        });
    }

    fn body(&mut self, chunk: &[u8]) {
        if self.grow(chunk.len()) {
            self.message.body.extend_from_slice(chunk);
        }
    }

    /// Counts `n` more bytes; false (and the message marked failed, its
    /// bytes dropped) past the limit.
    fn grow(&mut self, n: usize) -> bool {
        let m = &mut self.message;
        m.size = m.size.saturating_add(n);
        if m.size > self.max_message_bytes {
            if m.failure.is_none() {
                m.failure = Some(format!(
                    "message over milter.max_message_bytes ({} bytes)",
                    self.max_message_bytes
                ));
            }
            m.fields = Vec::new();
            m.body = Vec::new();
            return false;
        }
        true
    }

    fn finish(&mut self) -> Finished {
        let m = std::mem::take(&mut self.message);
        let client_ip = self
            .macros
            .get("client_addr")
            .and_then(|a| a.trim_start_matches("IPv6:").parse().ok())
            .or(self.connect_ip);
        Finished {
            sender: m.sender,
            recipients: m.recipients,
            auth_user: self
                .macros
                .get("auth_authen")
                .filter(|u| !u.is_empty())
                .cloned(),
            client_ip,
            queue_id: self.queue_id().to_owned(),
            fields: m.fields,
            body: m.body,
            failure: m.failure,
            leading_space: self.protocol & protocol::HDR_LEADSPC != 0,
            actions: self.actions,
        }
    }
}

/// `{auth_authen}` → `auth_authen`; `i` stays `i`.
fn macro_name(name: &str) -> &str {
    name.strip_prefix('{')
        .and_then(|n| n.strip_suffix('}'))
        .unwrap_or(name)
}

/// `<a@b>` → `a@b`; `<>` → the null sender.
fn address(arg: &str) -> String {
    arg.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

/// Folded header lines come joined by LF (Postfix) or CRLF: make them CRLF.
fn crlf(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 8);
    for (i, &b) in value.iter().enumerate() {
        if b == b'\n' && (i == 0 || value[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated() -> Session {
        let mut s = Session::new(1000);
        s.handle(Command::Negotiate {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        });
        s
    }

    fn header(name: &str, value: &str) -> Command {
        Command::Header {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn negotiation_asks_for_what_is_offered_and_needed() {
        let mut s = Session::new(1000);
        let Step::Reply(r) = s.handle(Command::Negotiate {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        }) else {
            panic!()
        };
        let Response::Negotiate {
            version,
            actions,
            protocol,
            macros,
        } = &r[0]
        else {
            panic!("{r:?}")
        };
        assert_eq!(*version, 6);
        assert_eq!(*actions, 0x113, "ADDHDRS|CHGHDRS|CHGBODY|SETSYMLIST");
        assert_eq!(*protocol, PROTOCOL);
        assert!(macros.iter().any(|(st, m)| *st == stage::EOM && m == "i"));

        // An MTA that offers less gets asked for less, and no macro list.
        let mut s = Session::new(1000);
        let Step::Reply(r) = s.handle(Command::Negotiate {
            version: 2,
            actions: 0x13,
            protocol: 0x7f,
        }) else {
            panic!()
        };
        assert_eq!(
            r,
            [Response::Negotiate {
                version: 2,
                actions: 0x13,
                protocol: protocol::NOHELO,
                macros: vec![]
            }]
        );
        // Without NR_* flags every event gets a continue.
        assert_eq!(
            s.handle(header("Subject", "x")),
            Step::Reply(vec![Response::Continue])
        );
    }

    #[test]
    fn a_message_is_rebuilt_exactly() {
        let mut s = negotiated();
        s.handle(Command::Macros {
            for_command: b'C',
            pairs: vec![("{client_addr}".into(), "192.0.2.7".into())],
        });
        s.handle(Command::Connect {
            hostname: "c".into(),
            family: b'4',
            port: 1,
            address: "127.0.0.1".into(),
        });
        s.handle(Command::Macros {
            for_command: b'M',
            pairs: vec![("{auth_authen}".into(), "app".into())],
        });
        s.handle(Command::Mail(vec!["<a@example.com>".into()]));
        s.handle(Command::Rcpt(vec!["<b@example.com>".into()]));
        s.handle(Command::Rcpt(vec!["<c@example.com>".into(), "X=1".into()]));
        assert_eq!(
            s.handle(header("Subject", " hi\n\tthere")),
            Step::Reply(vec![])
        );
        s.handle(header("X-LM-Tag", " t"));
        s.handle(Command::EndOfHeaders);
        s.handle(Command::Body(b"line 1\r\n".to_vec()));
        s.handle(Command::Macros {
            for_command: b'E',
            pairs: vec![("i".into(), "4ABC".into())],
        });
        let Step::EndOfMessage(f) = s.handle(Command::EndOfMessage(b"line 2\r\n".to_vec())) else {
            panic!()
        };
        assert_eq!(
            f.message(),
            b"Subject: hi\r\n\tthere\r\nX-LM-Tag: t\r\n\r\nline 1\r\nline 2\r\n"
        );
        assert_eq!(f.sender, "a@example.com");
        assert_eq!(f.recipients, ["b@example.com", "c@example.com"]);
        assert_eq!(f.auth_user.as_deref(), Some("app"));
        assert_eq!(
            f.client_ip,
            Some("192.0.2.7".parse().unwrap()),
            "macro wins"
        );
        assert_eq!(f.queue_id, "4ABC");
        assert_eq!(f.failure, None);
    }

    #[test]
    fn an_oversized_message_is_marked_and_not_kept() {
        let mut s = negotiated();
        s.handle(Command::Mail(vec!["<>".into()]));
        s.handle(header("Subject", " x"));
        s.handle(Command::Body(vec![b'a'; 600]));
        s.handle(Command::Body(vec![b'a'; 600]));
        let Step::EndOfMessage(f) = s.handle(Command::EndOfMessage(vec![])) else {
            panic!()
        };
        assert_eq!(f.sender, "");
        assert!(f.body.is_empty() && f.fields.is_empty());
        assert_eq!(
            f.failure.as_deref(),
            Some("message over milter.max_message_bytes (1000 bytes)")
        );
        // The next message starts clean.
        s.handle(Command::Mail(vec!["<a@b>".into()]));
        let Step::EndOfMessage(f) = s.handle(Command::EndOfMessage(b"x\r\n".to_vec())) else {
            panic!()
        };
        assert_eq!(f.failure, None);
        assert_eq!(f.body, b"x\r\n");
    }

    #[test]
    fn abort_forgets_the_message_and_quit_closes() {
        let mut s = negotiated();
        s.handle(Command::Mail(vec!["<a@b>".into()]));
        s.handle(Command::Body(b"old".to_vec()));
        s.malformed("bad packet".into());
        s.handle(Command::Abort);
        let Step::EndOfMessage(f) = s.handle(Command::EndOfMessage(vec![])) else {
            panic!()
        };
        assert!(f.body.is_empty() && f.failure.is_none() && f.sender.is_empty());
        assert_eq!(s.handle(Command::Quit), Step::Close);
    }
}
