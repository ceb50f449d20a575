//! Issue 21: what a hostile client, a slow peer or a weak setting could
//! do to the relay, each reproduced against the real binary on real
//! sockets. One module per listener.

mod support;

#[path = "hostile/smtp.rs"]
mod smtp;
#[path = "hostile/smtp_peer.rs"]
mod smtp_peer;
