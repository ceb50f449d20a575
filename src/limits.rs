//! Every size, count and timeout of the SMTP side, in one value built from
//! the config (STYLE.md §11), so sessions and tests share one source.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted (advertised as SIZE).
    pub max_message_bytes: u64,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Most client connections at once; more wait for a free slot.
    pub max_connections: usize,
    /// How long a client may stay silent between commands.
    pub command_timeout: Duration,
    /// How long a client may take to send the message after DATA.
    pub data_timeout: Duration,
    /// How long the upstream may take to answer any step (each read, each
    /// write, the message and its reply).
    pub upstream_timeout: Duration,
    /// After SIGTERM, how long open sessions may take to finish before they
    /// are cut (`shutdown`).
    pub shutdown_deadline: Duration,
}
