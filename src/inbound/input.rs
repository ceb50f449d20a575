//! The session's input buffer: bytes read from the client and not consumed
//! yet. Reads go straight into its spare room, in large pieces while a
//! message comes (tens of kilobytes in a few reads, not one per 8 KiB), and
//! consuming moves an offset instead of shifting the bytes left.

/// Room for a read while commands come: lines of at most a few hundred
/// bytes, a pipelined group of them.
pub const COMMAND_ROOM: usize = 4 * 1024;
/// Room for a read while a message comes.
pub const DATA_ROOM: usize = 64 * 1024;

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

    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
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
    /// some were consumed), with at least `room` spare bytes after them.
    pub fn for_read(&mut self, room: usize) -> &mut Vec<u8> {
        if self.start > 0 {
            // Only a partial line or command is left: a short copy.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(room);
        &mut self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_moves_an_offset_and_reading_keeps_the_rest() {
        let mut input = Input::default();
        input
            .for_read(COMMAND_ROOM)
            .extend_from_slice(b"EHLO a\r\nMAIL");
        input.consume(8);
        assert_eq!(input.unread(), b"MAIL");
        input
            .for_read(COMMAND_ROOM)
            .extend_from_slice(b" FROM:<>\r\n");
        assert_eq!(input.unread(), b"MAIL FROM:<>\r\n");
        input.consume(14);
        assert!(input.is_empty());
        assert!(input.for_read(DATA_ROOM).capacity() >= DATA_ROOM);
    }
}
