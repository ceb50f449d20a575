//! The session's input buffer: bytes read from the client and not consumed
//! yet, while commands come (a message is read straight into its own
//! buffer, `inbound::data`). Reads go into its spare room, and consuming
//! moves an offset instead of shifting the bytes left.

/// Room for a read: command lines are at most a few hundred bytes, and a
/// pipelined group of them fits.
const READ_ROOM: usize = 4 * 1024;

#[derive(Debug, Default)]
pub struct Input {
    buf: Vec<u8>,
    /// `buf[..start]` is consumed.
    start: usize,
}

impl Input {
    /// Bytes not consumed yet.
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Marks the first `n` unread bytes consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.clear();
        }
    }

    /// Forgets everything unread (STARTTLS: nothing sent before the
    /// handshake may be kept).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// The buffer to read into: unread bytes first (moved to the front if
    /// some were consumed), with room for a read after them.
    pub fn for_read(&mut self) -> &mut Vec<u8> {
        if self.start > 0 {
            // Only a partial line or command is left: a short copy.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(READ_ROOM);
        &mut self.buf
    }

    /// Adds bytes read elsewhere (what followed a message) after the
    /// unread ones.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_moves_an_offset_and_reading_keeps_the_rest() {
        let mut input = Input::default();
        input.for_read().extend_from_slice(b"EHLO a\r\nMAIL");
        input.consume(8);
        assert_eq!(input.unread(), b"MAIL");
        input.for_read().extend_from_slice(b" FROM:<>");
        input.extend(b"\r\n");
        assert_eq!(input.unread(), b"MAIL FROM:<>\r\n");
        input.consume(14);
        assert!(input.unread().is_empty());
        assert!(input.for_read().capacity() >= READ_ROOM);
    }
}
