//! The SMTP vocabulary shared by the server and the client side: replies
//! and the DATA transparency procedure. No I/O. Command parsing comes from
//! smtp-proto (Stalwart's parser); this module adds the typed [`Reply`]
//! every handler returns, `data`: reading a message after DATA and
//! stuffing one for an upstream, `line`: cutting the input into command
//! lines, and `address`: the wire form of a parsed address.

pub mod address;
pub mod data;
pub mod line;

use std::fmt;

/// One SMTP reply: code, enhanced status code (RFC 3463) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `(class, subject, detail)`, e.g. `(5, 7, 1)`.
    pub enhanced: Option<(u8, u16, u16)>,
    /// May hold several lines (separated by `\n`).
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: Some(enhanced),
            text: text.into(),
        }
    }

    /// A reply exactly as the upstream gave it, for passing through.
    pub fn from_upstream(r: &smtp_proto::Response<String>) -> Self {
        let enhanced =
            (r.esc[0] != 0).then(|| (r.esc[0], u16::from(r.esc[1]), u16::from(r.esc[2])));
        Self {
            code: r.code,
            enhanced,
            text: r.message.clone(),
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// "2xx", "4xx" or "5xx", for metrics and logs.
    pub fn class(&self) -> &'static str {
        match self.code / 100 {
            2 | 3 => "2xx",
            4 => "4xx",
            _ => "5xx",
        }
    }

    /// The reply on the wire, multi-line replies with `code-` continuations.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 16);
        self.write_to(&mut out);
        out
    }

    /// Appends the reply as [`Reply::to_wire`] gives it.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut lines = self.text.lines().peekable();
        if lines.peek().is_none() {
            return self.write_line(out, ' ', "");
        }
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_none() { ' ' } else { '-' };
            self.write_line(out, sep, line);
        }
    }

    fn write_line(&self, out: &mut Vec<u8>, sep: char, line: &str) {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = match self.enhanced {
            Some((a, b, c)) => write!(out, "{}{sep}{a}.{b}.{c} {line}\r\n", self.code),
            None => write!(out, "{}{sep}{line}\r\n", self.code),
        };
    }

    // The replies the server itself gives, in one place.

    pub fn ok(text: &str) -> Self {
        Self::new(250, (2, 0, 0), text)
    }

    pub fn bad_sequence(text: &str) -> Self {
        Self::new(503, (5, 5, 1), text)
    }

    pub fn syntax(text: &str) -> Self {
        Self::new(501, (5, 5, 4), text)
    }

    pub fn relay_denied() -> Self {
        Self::new(
            550,
            (5, 7, 1),
            "Relaying denied: authenticate or connect from an allowed network",
        )
    }

    /// The upstream could not be reached or failed mid-transaction: the
    /// client keeps the message and retries (nothing is lost here).
    pub fn upstream_unavailable(why: &str) -> Self {
        Self::new(
            451,
            (4, 4, 1),
            format!("Upstream unavailable, try again later: {why}"),
        )
    }

    pub fn internal(why: &str) -> Self {
        Self::new(
            451,
            (4, 3, 0),
            format!("Local error, try again later: {why}"),
        )
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.enhanced {
            Some((a, b, c)) => write!(
                f,
                "{} {a}.{b}.{c} {}",
                self.code,
                self.text.replace('\n', " / ")
            ),
            None => write!(f, "{} {}", self.code, self.text.replace('\n', " / ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_single_and_multi_line() {
        assert_eq!(Reply::ok("Ok").to_wire(), b"250 2.0.0 Ok\r\n");
        assert_eq!(Reply::ok("").to_wire(), b"250 2.0.0 \r\n");
        let multi = Reply {
            code: 250,
            enhanced: None,
            text: "relay.test\nPIPELINING\nSIZE 10".into(),
        };
        assert_eq!(
            multi.to_wire(),
            b"250-relay.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
    }

    #[test]
    fn upstream_replies_pass_through_exactly() {
        let r = smtp_proto::Response {
            code: 452,
            esc: [4, 2, 2],
            message: "Mailbox full".to_string(),
        };
        let reply = Reply::from_upstream(&r);
        assert_eq!(reply.to_wire(), b"452 4.2.2 Mailbox full\r\n");
        assert!(reply.is_transient());
    }
}
