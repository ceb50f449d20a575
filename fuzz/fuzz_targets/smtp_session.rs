//! Arbitrary bytes as what an SMTP client sends: cut into command lines by
//! `smtp::line::Framer` as `src/inbound/session.rs` does, each whole line
//! checked and parsed by smtp-proto, and after a DATA line the bytes
//! through `smtp::data::DataReader` up to the end mark, then commands again.
//!
//! Checked: nothing panics; the framer always makes progress, a line it
//! passes on is at most the limit long and ends at its first line feed;
//! `size_param` never panics; and the address of every MAIL or RCPT, in
//! the wire form the relay sends upstream (`smtp::address::wire_form`),
//! holds no control character and parses back, in an upstream's RCPT
//! line, to the very same address with no parameter (issue 21, item 4).

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_proto::Request;
use smtp_proto::request::receiver::RequestReceiver;
use trackrelay::limits::MAX_COMMAND_LINE_BYTES;
use trackrelay::smtp::address::wire_form;
use trackrelay::smtp::data::DataReader;
use trackrelay::smtp::line::{Framed, Framer, has_control, size_param};

fuzz_target!(|data: &[u8]| {
    let mut framer = Framer::default();
    let mut rest = data;
    while !rest.is_empty() {
        let used = match framer.next(rest) {
            Framed::NeedMore => break,
            Framed::TooLong(n) | Framed::Skipped(n) => n,
            Framed::Line(n) => {
                let line = &rest[..n];
                assert!(n <= MAX_COMMAND_LINE_BYTES, "line of {n} bytes passed on");
                assert_eq!(memchr_lf(line), Some(n - 1), "a line ends at its first LF");
                if !has_control(line) && command(line) {
                    rest = &rest[n..];
                    rest = &rest[message(rest)..];
                    continue;
                }
                n
            }
        };
        assert!((1..=rest.len()).contains(&used), "used {used} of {}", rest.len());
        rest = &rest[used..];
    }
});

fn memchr_lf(line: &[u8]) -> Option<usize> {
    line.iter().position(|&b| b == b'\n')
}

/// Parses one line as the session does; true for DATA.
fn command(line: &[u8]) -> bool {
    let mut receiver = RequestReceiver::default();
    let parsed = receiver
        .ingest(&mut line.iter())
        .map(Request::into_owned);
    match parsed {
        Ok(Request::Mail { from }) => {
            let _ = size_param(line);
            check_address(&from.address);
        }
        Ok(Request::Rcpt { to }) => check_address(&to.address),
        Ok(Request::Data) => return true,
        _ => {}
    }
    false
}

/// What the upstream would read from the relay's RCPT line is exactly the
/// address the relay parsed, and nothing more.
fn check_address(parsed: &str) {
    let Ok(wire) = wire_form(parsed) else { return };
    assert!(
        !wire.chars().any(|c| c < ' ' || c == '\x7f'),
        "control character in {wire:?}"
    );
    let line = format!("RCPT TO:<{wire}>\r\n");
    let mut receiver = RequestReceiver::default();
    let reparsed = receiver
        .ingest(&mut line.as_bytes().iter())
        .map(Request::into_owned);
    match reparsed {
        Ok(Request::Rcpt { to }) => {
            assert_eq!(to.address, parsed, "wire form {wire:?} reads back differently");
            assert_eq!(to.flags, 0, "parameters in {wire:?}");
            assert!(to.orcpt.is_none(), "ORCPT in {wire:?}");
        }
        other => panic!("wire form {wire:?} does not parse: {other:?}"),
    }
}

/// The message after DATA; how many bytes it took (all when unfinished).
fn message(input: &[u8]) -> usize {
    let mut reader = DataReader::new();
    let mut out = Vec::new();
    let used = reader.ingest(input, &mut out);
    assert!(used <= input.len());
    assert!(reader.is_done() || used == input.len());
    assert!(out.len() <= used, "unstuffing only removes bytes");
    used
}
