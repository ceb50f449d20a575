//! trackrelay: an SMTP relay that adds open and click tracking to mail in
//! flight, and the tracking server that turns hits into engagement.
//!
//! # Module map
//!
//! - [`config`]: the TOML file, parsed once into typed values; route
//!   matching.
//! - [`routes`]: the routes in force, one owner: config + API overrides +
//!   remembered tracking domains, as immutable snapshots that the relay,
//!   milter, webhooks, tracking server and API read.
//! - [`limits`]: every size, count and timeout of the SMTP side.
//! - [`smtp`]: the SMTP vocabulary (typed replies), DATA transparency
//!   both ways (`smtp::data`), command lines (`smtp::line`) and the wire
//!   form of addresses (`smtp::address`); command parsing is smtp-proto's.
//! - [`inbound`]: the SMTP server: sessions (one file per verb), STARTTLS,
//!   AUTH and its bounds (`password`, `anvil`), relay access, connection
//!   limit and deadlines.
//! - [`relay`]: one message end to end: route, rewriting, one copy per
//!   recipient, the upstream's reply, DSNs.
//! - [`upstream`]: `smtp://` (mail-send) and `dir:` upstreams, pooled.
//! - [`milter`]: milter mode: the same rewrite for Postfix over the milter
//!   protocol (codec and session without I/O, edits back to the MTA).
//! - [`maillog`]: the operator's log, one line per relayed copy.
//! - [`rewrite`]: the policy for one message (route, `X-LM-*` overrides,
//!   DKIM rule, what to track) over the content modules below and `token`.
//! - [`dkim`]: signing keys, which signed mail may be rewritten, signing
//!   each rewritten copy again after the rewrite (`mail-auth`).
//! - [`mime`]: parsing the message; which parts are HTML and may change;
//!   editing one part (transfer encodings, charsets, line endings); splicing
//!   bytes back so every other byte is kept. Knows nothing of tracking.
//! - [`html`]: the open pixel and click-tracked links inside one document.
//! - [`token`]: signed, self-contained tracking tokens and the key ring.
//! - [`tracking`]: the HTTP server for hits: pixel, click redirect, Host
//!   check (against the routes' domains), client address; `/healthz`,
//!   `/metrics`.
//! - [`classify`]: one observation and its context → the verdict of SPEC
//!   §6 (class, probability, reasons, device, client); pure, with the
//!   lists (`conf/classify/`, downloaded ranges) loaded once.
//! - [`events`]: the pipeline that judges stored hits after a short wait
//!   and stores them as events (first open/click, message status).
//! - [`storage`]: SQLite or PostgreSQL (several nodes, docs/scaling.md),
//!   the only module with SQL; one writer thread committing in batches,
//!   separate readers.
//! - [`retention`]: raw signals minimised after `raw_signal_days`, old
//!   data deleted, a recipient forgotten (SPEC §9).
//! - [`webhooks`]: per-route endpoints, signed deliveries from a durable
//!   outbox (written with each event), retries, 410 disables.
//! - [`send`]: the sending API on its own listener (`[send]`), as the
//!   Lettermint SDKs call it: JSON → mail-builder → the relay, like SMTP.
//! - [`report`]: statistics as users read them (a route, a tag, a message
//!   as sent): one typed query and result for the API, dashboard and CLI.
//! - [`api`]: the admin API (bearer token): relayed copies, observations;
//!   the dashboard at `/dashboard` (`api/dashboard`, HTML and SVG, no script).
//! - [`metrics`]: the Prometheus registry, one function per thing counted.
//! - [`listener`]: HTTP accept loop with graceful shutdown, for both servers.
//! - [`app`]: wires storage and listeners; the one reload (SIGHUP);
//!   shutdown flushes every write.
//! - [`shutdown`]: the deadline after which open sessions are cut.
//! - [`tls`]: every rustls configuration (STARTTLS, the tracking listener,
//!   the upstream and HTTP clients): one provider, versions, root store.
//! - [`cli`]: one file per subcommand; `main.rs` only dispatches.
//!
//! # One message's path
//!
//! ```text
//! SMTP ─▶ inbound (EHLO, MAIL: route from routes::Registry's snapshot;
//!                  MAIL/RCPT mirrored to upstream) ─▶ DATA
//!      ─▶ relay::Relay::deliver ─▶ rewrite (per copy) ─▶ upstream ─▶ reply
//!      ─▶ storage (the relayed copy, its links) ; maillog line
//!
//! bytes ─▶ rewrite::rewrite ─▶ mime::parse (tree with byte offsets)
//!                           ─▶ overrides::read (X-LM-* headers)
//!                           ─▶ mime::html_parts (byte ranges of text/html)
//!                           ─▶ per part: mime::edit_html_part: decode
//!                                ─▶ html::rewrite (token signs)
//!                                ─▶ encode (≤ 998 octets, same newline)
//!                           ─▶ mime::Splice::apply ─▶ bytes to relay
//! ```
//!
//! One hit's path:
//!
//! ```text
//! HTTP ─▶ listener ─▶ tracking (Host against the routes' domains,
//!                                token::KeyRing::verify, client_ip)
//!      ─▶ storage::Storage::record_observation ─▶ writer thread (batch)
//!      ─▶ response after the commit, or after tracking.commit_wait_ms
//!      (next: after classifier.wait_seconds, classify::classify with the
//!      copy's other hits ─▶ event, status, webhooks)
//! ```
//!
//! See `docs/flow.md` for the same walk with file names, and
//! `docs/tracking.md` for the tracking server.

#![forbid(unsafe_code)]
// Functions over clippy.toml's too-many-lines-threshold are flagged
// (STYLE.md §7); test code, scenario scripts, is left out.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod api;
pub mod app;
pub mod classify;
pub mod cli;
pub mod config;
pub mod dkim;
pub mod events;
pub mod html;
pub mod inbound;
pub mod limits;
pub mod listener;
pub mod maillog;
pub mod metrics;
pub mod milter;
pub mod mime;
pub mod relay;
pub mod report;
pub mod retention;
pub mod rewrite;
pub mod routes;
pub mod send;
pub mod shutdown;
pub mod smtp;
pub mod storage;
pub mod time;
pub mod tls;
pub mod token;
pub mod tracking;
pub mod upstream;
pub mod webhooks;
