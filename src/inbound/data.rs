//! DATA: read the message (dot-unstuffing and the end mark are
//! `smtp::data::DataReader`'s), enforce the size limit, hand it to the relay.

use super::session::{Pending, ReadEnd, Session, State};
use crate::smtp::Reply;
use crate::smtp::data::DataReader;

/// Room for each read of a message, straight into its buffer: a message
/// of tens of kilobytes comes in a few reads.
const READ_ROOM: usize = 64 * 1024;
/// Less spare room than this, and the buffer grows before a read.
const MIN_ROOM: usize = 16 * 1024;

impl Session {
    pub async fn data(&mut self) -> Reply {
        let State::Mail(pending) = &self.state else {
            return Reply::bad_sequence("Need MAIL and RCPT before DATA");
        };
        let buffer = match pending.as_ref() {
            Pending::Denied { .. } => return Reply::new(554, (5, 5, 1), "No valid recipients"),
            Pending::Relayed(txn) if txn.recipients.is_empty() => {
                return Reply::new(554, (5, 5, 1), "No valid recipients");
            }
            Pending::Relayed(txn) => self.inbound.relay.message_buffer(txn),
        };
        self.reply(Reply::new(
            354,
            (2, 0, 0),
            "End data with <CR><LF>.<CR><LF>",
        ));
        let message = match self.read_message(buffer).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.abort_transaction().await;
                let max = self.inbound.config.limits.max_message_bytes;
                return Reply::new(
                    552,
                    (5, 3, 4),
                    format!("Message size exceeds the limit of {max} bytes"),
                );
            }
            Err(end) => {
                // The client went away or stalled: nothing was accepted.
                self.abort_transaction().await;
                self.quit = true;
                return match end {
                    ReadEnd::Timeout => {
                        Reply::new(421, (4, 4, 2), "Timeout while reading the message")
                    }
                    _ => Reply::new(421, (4, 4, 0), "Connection lost"),
                };
            }
        };
        let state = std::mem::replace(&mut self.state, State::Ready);
        let State::Mail(pending) = state else {
            return Reply::internal("transaction lost");
        };
        let Pending::Relayed(txn) = *pending else {
            return Reply::internal("transaction lost");
        };
        self.inbound.relay.deliver(*txn, message).await
    }

    /// The message, appended to `buffer` (which holds the trace field);
    /// `None` when it is larger than allowed (it is read to its end anyway,
    /// so the dialogue stays in step).
    async fn read_message(&mut self, buffer: Vec<u8>) -> Result<Option<Vec<u8>>, ReadEnd> {
        let max =
            usize::try_from(self.inbound.config.limits.max_message_bytes).unwrap_or(usize::MAX);
        // Deadlines, not idle timeouts: the first bytes by
        // `data_start_timeout`, the whole message by `data_timeout`.
        let limits = &self.inbound.config.limits;
        let whole = tokio::time::Instant::now() + limits.data_timeout;
        let first = (tokio::time::Instant::now() + limits.data_start_timeout).min(whole);
        let mut reader = DataReader::new();
        let trace_len = buffer.len();
        let mut message = buffer;
        let mut too_big = false;
        // Bytes that came with the command (a client that did not wait for
        // the 354) are copied; the rest is read into the message itself
        // and unstuffed where it lies.
        let consumed = reader.ingest(self.input.unread(), &mut message);
        self.input.consume(consumed);
        let mut deadline = if consumed > 0 { whole } else { first };
        loop {
            if message.len() - trace_len > max {
                too_big = true;
                message.truncate(trace_len);
            }
            if reader.is_done() {
                return Ok((!too_big).then_some(message));
            }
            if message.capacity() - message.len() < MIN_ROOM {
                message.reserve(READ_ROOM);
            }
            let from = message.len();
            self.read_message_bytes(&mut message, deadline).await?;
            deadline = whole;
            // What follows the end mark (pipelined commands) is input.
            let rest = reader.ingest_in_place(&mut message, from);
            self.input.extend(&rest);
        }
    }
}
