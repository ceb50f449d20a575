//! trackrelay: an SMTP relay that adds open and click tracking to mail in
//! flight, and the tracking server that turns hits into engagement.
//!
//! # Module map
//!
//! - [`config`]: the TOML file, parsed once into typed values; routes.
//! - [`rewrite`]: the policy for one message (route, `X-LM-*` overrides,
//!   DKIM rule) and the driver of the two content modules below.
//! - [`mime`]: which parts are HTML and may change; transfer encodings,
//!   charsets; splicing bytes back so every other byte is kept.
//! - [`html`]: the open pixel and click-tracked links inside one document.
//! - [`token`]: signed, self-contained tracking tokens and the key ring.
//! - [`cli`]: one file per subcommand; `main.rs` only dispatches.
//!
//! # One message's path
//!
//! ```text
//! bytes ─▶ rewrite::rewrite ─▶ overrides::read (X-LM-* headers)
//!                           ─▶ mime::html_parts (byte ranges of text/html)
//!                           ─▶ per part: transfer decode ─▶ html::rewrite
//!                                        (lol_html locates; token signs)
//!                                      ─▶ transfer encode (≤ 998 octets)
//!                           ─▶ mime::Splice::apply ─▶ bytes to relay
//! ```
//!
//! See `docs/flow.md` for the same walk with file names.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod html;
pub mod listener;
pub mod metrics;
pub mod mime;
pub mod rewrite;
pub mod storage;
pub mod token;
pub mod tracking;
