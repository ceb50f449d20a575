//! Command lines: where one ends, what happens to one that is too long,
//! and the checks smtp-proto leaves to us. No I/O.
//!
//! smtp-proto's `RequestReceiver` gives up on a line at 4096 bytes and
//! starts parsing again right there, so the tail of an over-long line ran
//! as a command of its own (`"NOOP " + 4091×"A" + "RSET\r\n"` gave 500,
//! then 250). [`Framer`] cuts lines first: an over-long one is refused
//! once and discarded up to its line feed, and only whole lines reach the
//! parser.

use memchr::memchr;

use crate::limits::MAX_COMMAND_LINE_BYTES;

/// What the next bytes of input are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed {
    /// A whole line of this many bytes, line feed included.
    Line(usize),
    /// The start of a line over the limit: this many bytes are dropped;
    /// the client is told 500 5.5.2 once.
    TooLong(usize),
    /// More of a line already refused: this many bytes are dropped, silently.
    Skipped(usize),
    /// No whole line yet.
    NeedMore,
}

/// Splits the client's input into command lines of at most `max` bytes.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    /// Inside a line that was refused as too long.
    discarding: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(MAX_COMMAND_LINE_BYTES)
    }
}

impl Framer {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            discarding: false,
        }
    }

    /// What `input` (the unread bytes) starts with. The caller consumes
    /// the bytes a `Line`, `TooLong` or `Skipped` counts.
    pub fn next(&mut self, input: &[u8]) -> Framed {
        let line_feed = memchr(b'\n', input);
        if self.discarding {
            return match line_feed {
                Some(at) => {
                    self.discarding = false;
                    Framed::Skipped(at + 1)
                }
                None if input.is_empty() => Framed::NeedMore,
                None => Framed::Skipped(input.len()),
            };
        }
        match line_feed {
            Some(at) if at < self.max => Framed::Line(at + 1),
            Some(at) => Framed::TooLong(at + 1),
            None if input.len() >= self.max => {
                self.discarding = true;
                Framed::TooLong(input.len())
            }
            None => Framed::NeedMore,
        }
    }
}

/// Whether a command line (its ending CRLF or LF aside) holds a control
/// character: NUL, a bare CR or LF, ESC and the like have no place in a
/// command, and would otherwise reach a Received field or the upstream.
pub fn has_control(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// The SIZE parameter of a MAIL line (RFC 1870) as the client wrote it:
/// `None` without one, `Some(None)` when it is not a number that fits in
/// a u64. smtp-proto 0.2.5 reads a value past 20 digits modulo its last
/// digits (`SIZE=99999999999999999999999` came out as 999), so the
/// relay reads it itself.
pub fn size_param(line: &[u8]) -> Option<Option<u64>> {
    let text = std::str::from_utf8(line).ok()?;
    // Parameters follow the path; a quoted local part may hold spaces,
    // but a '>' ends the path only outside quotes.
    let params = &text[path_end(text)?..];
    params.split_ascii_whitespace().find_map(|word| {
        let (name, value) = word.split_once('=')?;
        name.eq_ignore_ascii_case("SIZE").then(|| {
            (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten()
        })
    })
}

/// Where the `<path>` of a MAIL or RCPT line ends (after its '>').
fn path_end(text: &str) -> Option<usize> {
    let start = text.find('<')?;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(start + i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_and_over_long_ones() {
        let mut f = Framer::new(8);
        assert_eq!(f.next(b"NOOP\r\nRS"), Framed::Line(6));
        assert_eq!(f.next(b"RS"), Framed::NeedMore);
        // Over the limit with its end in sight: refused and dropped at once.
        assert_eq!(f.next(b"NOOP AAAAAA\r\nRSET\r\n"), Framed::TooLong(13));
        // Without its end: refused, then dropped piece by piece.
        assert_eq!(f.next(b"NOOP AAAA"), Framed::TooLong(9));
        assert_eq!(f.next(b"AAAA"), Framed::Skipped(4));
        assert_eq!(f.next(b""), Framed::NeedMore);
        assert_eq!(f.next(b"RSET\r\nQUIT\r\n"), Framed::Skipped(6));
        assert_eq!(f.next(b"QUIT\r\n"), Framed::Line(6));
    }

    #[test]
    fn control_characters_but_not_the_line_end() {
        assert!(!has_control(b"EHLO a.test\r\n"));
        assert!(!has_control(b"EHLO a.test\n"));
        assert!(has_control(b"EHLO ev\0il\r\n"));
        assert!(has_control(b"EHLO a\rb\r\n"));
        assert!(has_control(b"EHLO a\x7f\r\n"));
    }

    #[test]
    fn size_parameter_read_exactly() {
        assert_eq!(
            size_param(b"MAIL FROM:<a@b> SIZE=1000\r\n"),
            Some(Some(1000))
        );
        assert_eq!(
            size_param(b"MAIL FROM:<a@b> size=7 BODY=8BITMIME\r\n"),
            Some(Some(7))
        );
        assert_eq!(
            size_param(b"MAIL FROM:<a@b> SIZE=99999999999999999999999\r\n"),
            Some(None)
        );
        assert_eq!(size_param(b"MAIL FROM:<a@b> SIZE=-1\r\n"), Some(None));
        assert_eq!(size_param(b"MAIL FROM:<a@b>\r\n"), None);
        // A SIZE= inside a quoted local part is not a parameter.
        assert_eq!(size_param(b"MAIL FROM:<\"x> SIZE=1\"@b>\r\n"), None);
    }
}
