//! The DATA transparency procedure (RFC 5321 §4.5.2), both ways, over
//! bytes: [`DataReader`] takes the client's stream apart (end mark,
//! dot-unstuffing) in whatever pieces it arrives, and [`stuff`] puts a
//! message on the wire for an upstream. No I/O.
//!
//! Both work in the message's own buffer and scan with memmem for the few
//! places that matter (a '.' at the start of a line), moving the bytes
//! between in one go, and only when a dot was dropped or added before
//! them: a message is tens of kilobytes and nearly none of its lines start
//! with a dot.

use memchr::memmem;

/// Where the reader is in the line structure; it only has to remember
/// what decides the next bytes' meaning, so a chunk may end anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside a line (the last byte was not CR).
    Text,
    /// Inside a line, the last byte was CR.
    Cr,
    /// At the start of a line: after CRLF, or at the very start of DATA.
    LineStart,
    /// A line started with '.', which was dropped.
    Dot,
    /// A line started with ".\r" (the CR not output yet).
    DotCr,
    /// The end mark was read.
    Done,
}

/// Reads a message after DATA's 354 up to the end mark `CRLF.CRLF`,
/// undoing dot-stuffing. The CRLF before the end mark belongs to the
/// message (it ends the last line) and is kept.
///
/// Only CRLF ends a line here, as RFC 5321 §2.3.8 says: a bare LF
/// followed by ".\r\n" is data, not the end (the "SMTP smuggling"
/// confusion). A line starting with '.' loses that dot whatever follows,
/// as servers have always done.
#[derive(Debug)]
pub struct DataReader {
    state: State,
    /// "\r\n." : every line start that matters begins with it.
    finder: memmem::Finder<'static>,
}

impl Default for DataReader {
    fn default() -> Self {
        Self::new()
    }
}

impl DataReader {
    pub fn new() -> Self {
        Self {
            state: State::LineStart,
            finder: memmem::Finder::new(b"\r\n."),
        }
    }

    /// Whether the end mark has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Appends the message bytes of `input` to `out`; returns how many
    /// bytes of `input` were consumed. Stops right after the end mark, so
    /// what follows it (pipelined commands) is left unconsumed; before the
    /// end mark every byte is consumed.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let from = out.len();
        out.extend_from_slice(input);
        input.len() - self.ingest_in_place(out, from).len()
    }

    /// [`DataReader::ingest`] for bytes read straight into the message:
    /// `buf[from..]` are raw bytes just read after the message so far
    /// (`buf[..from]`). They are unstuffed where they are (bytes move only
    /// once a dot has been dropped), and whatever follows the end mark is
    /// cut off and returned (pipelined commands).
    pub fn ingest_in_place(&mut self, buf: &mut Vec<u8>, from: usize) -> Vec<u8> {
        let mut end = buf.len();
        // Read and write positions; `w <= r`, as bytes are only dropped.
        let (mut r, mut w) = (from, from);
        while r < end {
            match self.state {
                State::Done => break,
                State::LineStart => {
                    if buf[r] == b'.' {
                        r += 1;
                        self.state = State::Dot;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Dot => {
                    if buf[r] == b'\r' {
                        r += 1;
                        self.state = State::DotCr;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::DotCr => {
                    if buf[r] == b'\n' {
                        r += 1;
                        self.state = State::Done;
                        break;
                    }
                    // ".\rX": the dot was stuffing, the CR is data. It was
                    // held back; when that was in an earlier read there is
                    // no room below the unread bytes, so it is inserted.
                    if w == r {
                        buf.insert(r, b'\r');
                        r += 1;
                        end += 1;
                    } else {
                        buf[w] = b'\r';
                    }
                    w += 1;
                    self.state = State::Cr;
                }
                State::Cr => {
                    if buf[r] == b'\n' {
                        buf[w] = b'\n';
                        w += 1;
                        r += 1;
                        self.state = State::LineStart;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Text => {
                    let (len, next) = match self.finder.find(&buf[r..end]) {
                        // Up to the CRLF; the dot after it is dropped.
                        Some(at) => (at + 2, State::Dot),
                        None => (end - r, ending(&buf[r..end])),
                    };
                    if w != r {
                        buf.copy_within(r..r + len, w);
                    }
                    w += len;
                    r += len;
                    if next == State::Dot {
                        r += 1;
                    }
                    self.state = next;
                }
            }
        }
        let rest = buf[r..end].to_vec();
        buf.truncate(w);
        rest
    }
}

/// The state after text that ends a read.
fn ending(text: &[u8]) -> State {
    if text.ends_with(b"\r\n") {
        State::LineStart
    } else if text.ends_with(b"\r") {
        State::Cr
    } else {
        State::Text
    }
}

/// The bytes to send after DATA's 354 for `message`: every line starting
/// with '.' gets another one, the last line is ended with CRLF (a
/// message ending in a bare LF has it made CRLF; one ending in neither
/// gets CRLF added), then the end mark `.\r\n`.
///
/// A line starts after CRLF, and also after a bare CR or LF: some servers
/// end lines there, and a dot left alone after one could end the data
/// early for them (RFC 5321 §4.5.2 says to stuff at every line start).
///
/// Done in `message`'s own buffer: the few line-start dots are found with
/// memmem, and the bytes after each are moved up, last first.
pub fn stuff(mut message: Vec<u8>) -> Vec<u8> {
    end_last_line(&mut message);
    let mut dots: Vec<usize> = memmem::find_iter(&message, b"\n.")
        .chain(memmem::find_iter(&message, b"\r."))
        .map(|at| at + 1)
        .collect();
    if message.first() == Some(&b'.') {
        dots.push(0);
    }
    if !dots.is_empty() {
        dots.sort_unstable();
        let old_len = message.len();
        message.resize(old_len + dots.len(), 0);
        // The bytes from the i-th dot on move up by i + 1, the added dot
        // just before them; last first, so nothing is overwritten unread.
        let mut upto = old_len;
        for (i, &at) in dots.iter().enumerate().rev() {
            message.copy_within(at..upto, at + i + 1);
            message[at + i] = b'.';
            upto = at;
        }
    }
    message.extend_from_slice(b".\r\n");
    message
}

/// `message` as one `BDAT n LAST` command and its chunk (RFC 3030), where
/// nothing is stuffed: the same message bytes [`stuff`] sends.
pub fn bdat_last(mut message: Vec<u8>) -> Vec<u8> {
    end_last_line(&mut message);
    let header = format!("BDAT {} LAST\r\n", message.len());
    let mut wire = Vec::with_capacity(header.len() + message.len());
    wire.extend_from_slice(header.as_bytes());
    wire.extend_from_slice(&message);
    wire
}

/// Ends the last line with CRLF: a bare LF at the end becomes CRLF, and a
/// message ending in anything else gets CRLF. An empty message stays so.
fn end_last_line(message: &mut Vec<u8>) {
    if message.is_empty() || message.ends_with(b"\r\n") {
        return;
    }
    if message.ends_with(b"\n") {
        message.pop();
    }
    message.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The message bytes of a BDAT chunk.
    fn chunk(message: &[u8]) -> Vec<u8> {
        let wire = bdat_last(message.to_vec());
        let header_end = wire.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let header = std::str::from_utf8(&wire[..header_end]).unwrap();
        let size = header["BDAT ".len()..].split(' ').next().unwrap();
        assert_eq!(size.parse::<usize>().unwrap(), wire.len() - header_end);
        wire[header_end..].to_vec()
    }

    /// The whole input at once.
    fn read_all(input: &[u8]) -> (Vec<u8>, usize, bool) {
        let mut reader = DataReader::new();
        let mut out = Vec::new();
        let n = reader.ingest(input, &mut out);
        (out, n, reader.is_done())
    }

    /// The input in the given pieces, as reads from a socket give it.
    fn read_split(input: &[u8], cuts: &[usize]) -> (Vec<u8>, usize, bool) {
        let mut reader = DataReader::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut start = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        for end in cuts {
            if end < start {
                continue;
            }
            let n = reader.ingest(&input[start..end], &mut out);
            consumed += n;
            if reader.is_done() {
                break;
            }
            assert_eq!(n, end - start, "everything before the end mark is consumed");
            start = end;
        }
        (out, consumed, reader.is_done())
    }

    /// The input read straight into the message buffer in the given pieces,
    /// as the session does; the bytes after the end mark are consumed too,
    /// so count what came back.
    fn read_in_place(input: &[u8], cuts: &[usize]) -> (Vec<u8>, usize, bool) {
        let mut reader = DataReader::new();
        const TRACE: &[u8] = b"Received: x\r\n";
        let mut buf = TRACE.to_vec();
        let mut start = 0;
        let mut rest = Vec::new();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        for end in cuts {
            if end < start || reader.is_done() {
                continue;
            }
            let from = buf.len();
            buf.extend_from_slice(&input[start..end]);
            rest = reader.ingest_in_place(&mut buf, from);
            assert!(rest.is_empty() || reader.is_done());
            start = end;
        }
        let consumed = start - rest.len();
        assert_eq!(&buf[..TRACE.len()], TRACE, "what was before stays");
        (buf[TRACE.len()..].to_vec(), consumed, reader.is_done())
    }

    /// The rule spelt out line by line, as the reference.
    fn reference(input: &[u8]) -> (Vec<u8>, usize, bool) {
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let line_end = input[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|p| at + p + 2);
            let Some(end) = line_end else {
                // An unfinished line; ".\r" may still become the end mark,
                // so its CR is not data yet.
                let line = &input[at..];
                match line.strip_prefix(b".") {
                    Some(b"\r") => {}
                    Some(rest) => out.extend_from_slice(rest),
                    None => out.extend_from_slice(line),
                }
                return (out, input.len(), false);
            };
            let line = &input[at..end];
            if line == b".\r\n" {
                return (out, end, true);
            }
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            at = end;
        }
        (out, input.len(), false)
    }

    #[test]
    fn end_mark_and_unstuffing() {
        let (out, n, done) = read_all(b"a\r\n..b\r\n.c\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"a\r\n.b\r\nc\r\n");
        assert_eq!(n, 15);
        assert!(done);
    }

    #[test]
    fn an_empty_message_ends_at_once() {
        assert_eq!(read_all(b".\r\nQUIT\r\n"), (Vec::new(), 3, true));
    }

    #[test]
    fn only_crlf_ends_a_line() {
        // Bare LF or CR before ".\r\n" is data: no early end, no unstuffing.
        let (out, _, done) = read_all(b"a\n.\r\nb\r.\r\nc\r\n.\r\n");
        assert_eq!(out, b"a\n.\r\nb\r.\r\nc\r\n");
        assert!(done);
    }

    #[test]
    fn dot_cr_not_followed_by_lf_is_data() {
        let (out, _, done) = read_all(b".\rx\r\n.\r\r\n.\r\n");
        assert_eq!(out, b"\rx\r\n\r\r\n");
        assert!(done);
    }

    #[test]
    fn end_mark_split_at_every_position() {
        let input = b"Subject: x\r\n\r\n..dot\r\nlast\r\n.\r\nMAIL";
        let whole = read_all(input);
        assert_eq!(whole.0, b"Subject: x\r\n\r\n.dot\r\nlast\r\n");
        for a in 0..=input.len() {
            for b in a..=input.len() {
                assert_eq!(read_split(input, &[a, b]), whole, "cut at {a} and {b}");
                assert_eq!(read_in_place(input, &[a, b]), whole, "cut at {a} and {b}");
            }
        }
    }

    #[test]
    fn stuffing_doubles_line_start_dots_and_ends_the_data() {
        assert_eq!(
            stuff(b".a\r\nb.\r\n.\r\n".to_vec()),
            b"..a\r\nb.\r\n..\r\n.\r\n"
        );
        assert_eq!(stuff(b"x\r\n".to_vec()), b"x\r\n.\r\n");
        assert_eq!(stuff(b"".to_vec()), b".\r\n");
    }

    #[test]
    fn stuffing_ends_the_last_line() {
        assert_eq!(stuff(b"no newline".to_vec()), b"no newline\r\n.\r\n");
        assert_eq!(stuff(b"bare lf\n".to_vec()), b"bare lf\r\n.\r\n");
        assert_eq!(
            stuff(b"last line is a dot\r\n.".to_vec()),
            b"last line is a dot\r\n..\r\n.\r\n"
        );
        assert_eq!(chunk(b"no newline"), b"no newline\r\n");
        assert_eq!(chunk(b".a\r\n"), b".a\r\n");
    }

    #[test]
    fn stuffing_after_bare_line_breaks() {
        assert_eq!(stuff(b"a\n.b\r.c\r\n".to_vec()), b"a\n..b\r..c\r\n.\r\n");
    }

    fn mail_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Few symbols, so that dots, line breaks and end marks are common.
        proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')],
            0..64,
        )
    }

    proptest! {
        #[test]
        fn reader_matches_the_reference_in_any_pieces(
            input in mail_bytes(),
            cuts in proptest::collection::vec(0usize..100, 0..6),
        ) {
            let expected = reference(&input);
            prop_assert_eq!(read_all(&input), expected.clone());
            prop_assert_eq!(read_split(&input, &cuts), expected.clone());
            prop_assert_eq!(read_in_place(&input, &cuts), expected);
        }

        #[test]
        fn what_is_stuffed_reads_back(message in mail_bytes()) {
            // Read back by the strict reader, the copy is the message with
            // its last line ended by CRLF, except that a dot after a bare
            // CR or LF keeps its stuffing (such a reader does not end a
            // line there; one that does removes it).
            let wire = stuff(message.clone());
            let (out, n, done) = read_all(&wire);
            prop_assert!(done);
            prop_assert_eq!(n, wire.len());
            let mut expected = Vec::new();
            for (p, &byte) in chunk(&message).iter().enumerate() {
                let after_bare_break = p > 0
                    && byte == b'.'
                    && match message[p - 1] {
                        b'\r' => true,
                        b'\n' => p < 2 || message[p - 2] != b'\r',
                        _ => false,
                    };
                if after_bare_break {
                    expected.push(b'.');
                }
                expected.push(byte);
            }
            prop_assert_eq!(out, expected);
        }
    }
}
