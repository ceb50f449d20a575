//! DATA: read the message (dot-unstuffing and the end mark are
//! `smtp::data::DataReader`'s), enforce the size limit, hand it to the relay.

use super::session::{Pending, ReadEnd, Session, State};
use crate::smtp::Reply;
use crate::smtp::data::DataReader;

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
        let timeout = self.inbound.config.limits.data_timeout;
        let mut reader = DataReader::new();
        let trace_len = buffer.len();
        let mut message = buffer;
        let mut too_big = false;
        loop {
            if !self.input.is_empty() {
                let consumed = reader.ingest(self.input.unread(), &mut message);
                self.input.consume(consumed);
                if message.len() - trace_len > max {
                    too_big = true;
                    message.truncate(trace_len);
                }
                if reader.is_done() {
                    return Ok((!too_big).then_some(message));
                }
            }
            self.read_more(timeout, false).await?;
        }
    }
}
