//! Arbitrary bytes as what an MTA sends to the milter: packets through
//! `milter::codec::Command::decode` and `milter::session::Session`, as
//! `src/milter.rs` drives them (a malformed packet is skipped, a broken
//! length ends the connection).
//!
//! Checked: nothing panics; decode consumes a whole packet (at least the
//! 5-byte frame, never more than it was given); at each end of message the
//! rebuilt message ends with the body, and `edits::plan` on the message
//! unchanged never panics and asks for no edit when every field is plain
//! (a name of visible ASCII without a colon, a value without CR or LF).

#![no_main]

use libfuzzer_sys::fuzz_target;
use trackrelay::milter::codec::Command;
use trackrelay::milter::edits;
use trackrelay::milter::session::{Session, Step};

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new(64 * 1024);
    let mut rest = data;
    loop {
        let step = match Command::decode(rest) {
            Ok(None) => break,
            Ok(Some((command, used))) => {
                assert!(
                    (5..=rest.len()).contains(&used),
                    "used {used} of {}",
                    rest.len()
                );
                rest = &rest[used..];
                session.handle(command)
            }
            Err(e) if e.recoverable() => {
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                rest = &rest[4 + len..];
                session.malformed(e.to_string())
            }
            Err(_) => break,
        };
        match step {
            Step::Reply(_) => {}
            Step::Close => break,
            Step::EndOfMessage(f) => {
                let message = f.message();
                assert!(message.ends_with(&f.body));
                let plan = edits::plan(&f.fields, &f.body, f.leading_space, &message);
                let plain = f.fields.iter().all(|field| {
                    !field.name.is_empty()
                        && field
                            .name
                            .iter()
                            .all(|&b| b.is_ascii_graphic() && b != b':')
                        && !field
                            .value
                            .iter()
                            .any(|&b| b == b'\r' || b == b'\n' || b == 0)
                        && std::str::from_utf8(&field.value).is_ok()
                });
                if plain {
                    assert_eq!(plan, Ok(vec![]), "an unchanged message needs no edit");
                }
            }
        }
    }
});
