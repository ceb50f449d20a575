//! The milter wire protocol (Sendmail 8 milter, version 6, as Postfix's
//! `milter8.c` speaks it), as plain functions over bytes: no I/O.
//!
//! Every packet is a 4-byte big-endian length (counting the command byte),
//! one command byte, then the command's data. [`Command::decode`] reads one
//! packet from the front of a buffer or says it needs more input;
//! [`Response::encode`] writes one reply packet.

use std::fmt;

/// The largest packet we read. Postfix sends body chunks of at most 64 KiB
/// and headers of at most `header_size_limit` (100 KiB by default).
pub const MAX_PACKET: usize = 1024 * 1024;

/// The largest SMFIR_REPLBODY chunk (libmilter's MILTER_CHUNK_SIZE).
pub const MAX_BODY_CHUNK: usize = 65_535;

/// The protocol version we speak.
pub const VERSION: u32 = 6;

/// Actions (SMFIF_*): what the milter may do at end of message.
pub mod action {
    pub const ADDHDRS: u32 = 0x01;
    pub const CHGBODY: u32 = 0x02;
    pub const CHGHDRS: u32 = 0x10;
    pub const SETSYMLIST: u32 = 0x100;
}

/// Protocol flags (SMFIP_*): events not to send, replies not to wait for.
pub mod protocol {
    pub const NOHELO: u32 = 0x02;
    pub const NR_HDR: u32 = 0x80;
    pub const NOUNKNOWN: u32 = 0x100;
    pub const NR_CONN: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_DATA: u32 = 0x1_0000;
    pub const NR_UNKN: u32 = 0x2_0000;
    pub const NR_EOH: u32 = 0x4_0000;
    pub const NR_BODY: u32 = 0x8_0000;
    /// Header values keep their leading space (exact bytes).
    pub const HDR_LEADSPC: u32 = 0x10_0000;
}

/// Macro stages (SMFIM_*), for the macro lists we ask for.
pub mod stage {
    pub const CONNECT: u32 = 0;
    pub const ENVFROM: u32 = 2;
    pub const DATA: u32 = 4;
    pub const EOM: u32 = 5;
    pub const EOH: u32 = 6;
}

/// A packet from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// SMFIC_OPTNEG `O`: the MTA's version, actions and protocol flags.
    Negotiate {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// SMFIC_MACRO `D`: macros for the command `for_command` that follows.
    Macros {
        for_command: u8,
        pairs: Vec<(String, String)>,
    },
    /// SMFIC_CONNECT `C`: client host name, family and address.
    Connect {
        hostname: String,
        /// `4`, `6`, `L` (unix socket) or `U` (unknown).
        family: u8,
        port: u16,
        address: String,
    },
    /// SMFIC_HELO `H`.
    Helo(String),
    /// SMFIC_MAIL `M`: `<sender>` then ESMTP parameters.
    Mail(Vec<String>),
    /// SMFIC_RCPT `R`: `<recipient>` then ESMTP parameters.
    Rcpt(Vec<String>),
    /// SMFIC_DATA `T`.
    Data,
    /// SMFIC_HEADER `L`: name and value (folded lines joined by LF).
    Header { name: Vec<u8>, value: Vec<u8> },
    /// SMFIC_EOH `N`.
    EndOfHeaders,
    /// SMFIC_BODY `B`: a chunk of the body, CRLF line ends.
    Body(Vec<u8>),
    /// SMFIC_BODYEOB `E`: end of message (may carry a last chunk).
    EndOfMessage(Vec<u8>),
    /// SMFIC_ABORT `A`: forget the current message.
    Abort,
    /// SMFIC_QUIT `Q`: close the connection.
    Quit,
    /// SMFIC_QUIT_NC `K`: a new SMTP connection on this milter connection.
    QuitNewConnection,
    /// SMFIC_UNKNOWN `U`: an SMTP command the MTA did not know.
    Unknown(Vec<u8>),
}

/// A reply to the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `O`: our version, actions and protocol flags, and the macros we
    /// want at each stage (only when the MTA offered SETSYMLIST).
    Negotiate {
        version: u32,
        actions: u32,
        protocol: u32,
        macros: Vec<(u32, String)>,
    },
    /// SMFIR_CONTINUE `c`.
    Continue,
    /// SMFIR_ACCEPT `a`: accept the message unchanged.
    Accept,
    /// SMFIR_TEMPFAIL `t`: the MTA answers 4xx.
    Tempfail,
    /// SMFIR_REPLBODY `b`: one chunk of the new body.
    ReplaceBody(Vec<u8>),
    /// SMFIR_ADDHEADER `h`: append a field.
    AddHeader { name: String, value: String },
    /// SMFIR_CHGHEADER `m`: change the `index`th (1-based) field of that
    /// name; an empty value deletes it.
    ChangeHeader {
        index: u32,
        name: String,
        value: String,
    },
}

/// A packet we cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The framing itself is broken: the connection cannot go on.
    #[error("packet length {0} out of range")]
    Length(usize),
    /// One packet is malformed; the stream is still in step.
    #[error("malformed {command:?} packet: {why}")]
    Malformed { command: char, why: &'static str },
}

impl CodecError {
    /// Whether the stream is still in step after this error.
    pub fn recoverable(&self) -> bool {
        matches!(self, CodecError::Malformed { .. })
    }
}

impl Command {
    /// Reads one packet from the front of `buf`: `Ok(None)` when more input
    /// is needed, else the command and how many bytes it used.
    pub fn decode(buf: &[u8]) -> Result<Option<(Command, usize)>, CodecError> {
        let Some(len) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len == 0 || len > MAX_PACKET {
            return Err(CodecError::Length(len));
        }
        let Some(packet) = buf.get(4..4 + len) else {
            return Ok(None);
        };
        let command = Self::parse(packet[0], &packet[1..])?;
        Ok(Some((command, 4 + len)))
    }

    fn parse(code: u8, data: &[u8]) -> Result<Command, CodecError> {
        let bad = |why| CodecError::Malformed {
            command: code as char,
            why,
        };
        Ok(match code {
            b'O' => {
                let n = |i: usize| data.get(i * 4..i * 4 + 4).map(be_u32);
                match (n(0), n(1), n(2)) {
                    (Some(version), Some(actions), Some(protocol)) => Command::Negotiate {
                        version,
                        actions,
                        protocol,
                    },
                    _ => return Err(bad("shorter than 12 bytes")),
                }
            }
            b'D' => {
                let (&for_command, rest) = data.split_first().ok_or(bad("empty"))?;
                let strings = strings(rest).ok_or(bad("unterminated string"))?;
                let mut pairs = Vec::new();
                for pair in strings.chunks(2) {
                    let value = pair.get(1).cloned().unwrap_or_default();
                    pairs.push((text(&pair[0]), text(&value)));
                }
                Command::Macros { for_command, pairs }
            }
            b'C' => Self::connect(data).ok_or(bad("bad connect data"))?,
            b'H' => Command::Helo(text(&one_string(data).ok_or(bad("unterminated"))?)),
            b'M' | b'R' => {
                let args = strings(data)
                    .ok_or(bad("unterminated string"))?
                    .iter()
                    .map(|a| text(a))
                    .collect::<Vec<_>>();
                if args.is_empty() {
                    return Err(bad("no address"));
                }
                if code == b'M' {
                    Command::Mail(args)
                } else {
                    Command::Rcpt(args)
                }
            }
            b'T' => Command::Data,
            b'L' => {
                let mut s = strings(data).ok_or(bad("unterminated string"))?;
                if s.len() != 2 {
                    return Err(bad("not a name and a value"));
                }
                let value = s.pop().unwrap_or_default();
                let name = s.pop().unwrap_or_default();
                Command::Header { name, value }
            }
            b'N' => Command::EndOfHeaders,
            b'B' => Command::Body(data.to_vec()),
            b'E' => Command::EndOfMessage(data.to_vec()),
            b'A' => Command::Abort,
            b'Q' => Command::Quit,
            b'K' => Command::QuitNewConnection,
            b'U' => Command::Unknown(data.to_vec()),
            _ => return Err(bad("unknown command")),
        })
    }

    /// `hostname\0 family [port(2) address\0]`.
    fn connect(data: &[u8]) -> Option<Command> {
        let nul = memchr::memchr(0, data)?;
        let hostname = text(&data[..nul]);
        let rest = &data[nul + 1..];
        let (&family, rest) = rest.split_first()?;
        let (port, address) = if family == b'U' {
            (0, String::new())
        } else {
            let port = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
            (port, text(&one_string(&rest[2..])?))
        };
        Some(Command::Connect {
            hostname,
            family,
            port,
            address,
        })
    }
}

impl Response {
    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Response::Negotiate {
                version,
                actions,
                protocol,
                macros,
            } => {
                out.push(b'O');
                for n in [version, actions, protocol] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                for (stage, names) in macros {
                    out.extend_from_slice(&stage.to_be_bytes());
                    push_string(out, names.as_bytes());
                }
            }
            Response::Continue => out.push(b'c'),
            Response::Accept => out.push(b'a'),
            Response::Tempfail => out.push(b't'),
            Response::ReplaceBody(chunk) => {
                out.push(b'b');
                out.extend_from_slice(chunk);
            }
            Response::AddHeader { name, value } => {
                out.push(b'h');
                push_string(out, name.as_bytes());
                push_string(out, value.as_bytes());
            }
            Response::ChangeHeader { index, name, value } => {
                out.push(b'm');
                out.extend_from_slice(&index.to_be_bytes());
                push_string(out, name.as_bytes());
                push_string(out, value.as_bytes());
            }
        }
        // A packet is at most a body chunk or a header: it fits in u32.
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Accept => f.write_str("accept"),
            Response::Tempfail => f.write_str("tempfail"),
            Response::Continue => f.write_str("continue"),
            other => write!(f, "{other:?}"),
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// NUL-terminated strings filling `data`; `None` when the last one is not
/// terminated.
fn strings(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    let body = data.strip_suffix(&[0])?;
    Some(body.split(|&b| b == 0).map(<[u8]>::to_vec).collect())
}

/// One NUL-terminated string at the start of `data`.
fn one_string(data: &[u8]) -> Option<Vec<u8>> {
    let nul = memchr::memchr(0, data)?;
    Some(data[..nul].to_vec())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u8, data: &[u8]) -> Vec<u8> {
        let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(code);
        p.extend_from_slice(data);
        p
    }

    fn decode_all(bytes: &[u8]) -> Command {
        let (cmd, used) = Command::decode(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        cmd
    }

    #[test]
    fn negotiation_as_postfix_sends_it() {
        // Postfix 3.7: version 6, actions 0x1ff, protocol 0x1fffff.
        let bytes = [
            0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff,
        ];
        assert_eq!(
            decode_all(&bytes),
            Command::Negotiate {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1f_ffff
            }
        );
    }

    #[test]
    fn short_input_needs_more() {
        let p = packet(b'B', b"hello");
        for cut in 0..p.len() {
            assert_eq!(Command::decode(&p[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = p.clone();
        two.extend_from_slice(&packet(b'N', b""));
        let (first, used) = Command::decode(&two).unwrap().unwrap();
        assert_eq!(first, Command::Body(b"hello".to_vec()));
        assert_eq!(used, p.len());
    }

    #[test]
    fn macros_connect_mail_rcpt_header() {
        assert_eq!(
            decode_all(&packet(b'D', b"Mi\0ABC123\0{auth_authen}\0bob\0")),
            Command::Macros {
                for_command: b'M',
                pairs: vec![
                    ("i".into(), "ABC123".into()),
                    ("{auth_authen}".into(), "bob".into())
                ]
            }
        );
        assert_eq!(
            decode_all(&packet(b'C', b"client.test\x004\x30\x39127.0.0.1\0")),
            Command::Connect {
                hostname: "client.test".into(),
                family: b'4',
                port: 12345,
                address: "127.0.0.1".into()
            }
        );
        assert_eq!(
            decode_all(&packet(b'C', b"unknown\0U")),
            Command::Connect {
                hostname: "unknown".into(),
                family: b'U',
                port: 0,
                address: String::new()
            }
        );
        assert_eq!(
            decode_all(&packet(b'M', b"<a@example.com>\0BODY=8BITMIME\0")),
            Command::Mail(vec!["<a@example.com>".into(), "BODY=8BITMIME".into()])
        );
        assert_eq!(
            decode_all(&packet(b'R', b"<b@example.com>\0")),
            Command::Rcpt(vec!["<b@example.com>".into()])
        );
        assert_eq!(
            decode_all(&packet(b'L', b"Subject\0 hi\n\tthere\0")),
            Command::Header {
                name: b"Subject".to_vec(),
                value: b" hi\n\tthere".to_vec()
            }
        );
    }

    #[test]
    fn malformed_packets_are_named_and_bad_lengths_are_fatal() {
        let e = Command::decode(&packet(b'L', b"Subject\0no nul")).unwrap_err();
        assert!(e.recoverable());
        assert_eq!(e.to_string(), "malformed 'L' packet: unterminated string");
        let e = Command::decode(&packet(b'z', b"")).unwrap_err();
        assert!(
            e.recoverable(),
            "an unknown command keeps the stream in step"
        );
        let e = Command::decode(&[0, 0, 0, 0]).unwrap_err();
        assert!(!e.recoverable());
        let e = Command::decode(&[0x7f, 0, 0, 0, b'B']).unwrap_err();
        assert_eq!(e, CodecError::Length(0x7f00_0000));
    }

    #[test]
    fn responses_encode_to_exact_bytes() {
        let mut out = Vec::new();
        Response::Continue.encode(&mut out);
        Response::Accept.encode(&mut out);
        Response::Tempfail.encode(&mut out);
        assert_eq!(out, b"\0\0\0\x01c\0\0\0\x01a\0\0\0\x01t");

        let mut out = Vec::new();
        Response::ChangeHeader {
            index: 2,
            name: "X-LM-Tag".into(),
            value: String::new(),
        }
        .encode(&mut out);
        assert_eq!(out, b"\0\0\0\x0fm\0\0\0\x02X-LM-Tag\0\0");

        let mut out = Vec::new();
        Response::ReplaceBody(b"ab\r\n".to_vec()).encode(&mut out);
        assert_eq!(out, b"\0\0\0\x05bab\r\n");

        let mut out = Vec::new();
        Response::AddHeader {
            name: "A".into(),
            value: " b".into(),
        }
        .encode(&mut out);
        assert_eq!(out, b"\0\0\0\x06hA\0 b\0");

        let mut out = Vec::new();
        Response::Negotiate {
            version: 6,
            actions: 0x113,
            protocol: 0x10_0002,
            macros: vec![(stage::EOM, "i".into())],
        }
        .encode(&mut out);
        assert_eq!(
            out,
            b"\0\0\0\x13O\0\0\0\x06\0\0\x01\x13\0\x10\0\x02\0\0\0\x05i\0"
        );
    }
}
