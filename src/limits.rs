//! Every size, count and timeout of the SMTP side, in one value built from
//! the config (STYLE.md §11), so sessions and tests share one source.
//!
//! Timeouts here are deadlines: a client that trickles one byte at a time
//! gets no more time than one that sends nothing (RFC 5321 §4.5.3.2 gives
//! the defaults). docs/security.md lists them with the threat each meets.

use std::time::Duration;

/// The longest command line, CRLF included: smtp-proto's own limit, and
/// far above RFC 5321's 512 octets plus the extensions' parameters.
pub const MAX_COMMAND_LINE_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted (advertised as SIZE).
    pub max_message_bytes: u64,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Most client connections at once; more are told 421.
    pub max_connections: usize,
    /// Deadline for one whole command line, from when the server starts
    /// waiting for it (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub command_timeout: Duration,
    /// Deadline from the 354 to the first bytes of the message
    /// (§4.5.3.2: 3 minutes).
    pub data_start_timeout: Duration,
    /// Deadline for the whole message after the 354 (§4.5.3.2: 10 minutes).
    pub data_timeout: Duration,
    /// How long one write of replies may take (a client that does not read).
    pub write_timeout: Duration,
    /// How long the upstream may take to answer any step (each read, each
    /// write, the message and its reply).
    pub upstream_timeout: Duration,
    /// After SIGTERM, how long open sessions may take to finish before they
    /// are cut (`shutdown`).
    pub shutdown_deadline: Duration,
    /// Password guessing: see [`AuthLimits`].
    pub auth: AuthLimits,
}

/// What bounds SMTP AUTH: its cost (Argon2 takes ~20 ms and 19 MiB per
/// try) and guessing (per connection and per client address).
#[derive(Debug, Clone)]
pub struct AuthLimits {
    /// Failed AUTH tries on one connection before it is told 421 and closed.
    pub failures_per_connection: u32,
    /// Password verifications running at once (each holds one Argon2
    /// memory block, allocated once and reused); by default half the cores.
    pub concurrency: usize,
    /// How long a try waits for a verification slot before 454 4.7.0.
    pub wait: Duration,
    /// Longest delay before a try from an address with recent failures
    /// (the delay doubles from 100 ms with each failure).
    pub delay_max: Duration,
    /// How long an address's failures are remembered after its last one.
    pub failure_memory: Duration,
}
