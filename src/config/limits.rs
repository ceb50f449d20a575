//! The sizes, counts and timeouts of `[smtp]`, `[upstream]` and
//! `[shutdown]`, gathered into one [`Limits`].

use std::time::Duration;

use super::Collector;
use super::raw::RawConfig;
use crate::limits::{AuthLimits, Limits};

impl Collector {
    /// Every size, count and timeout, checked: none of them may be zero.
    pub(super) fn limits(&mut self, raw: &RawConfig) -> Limits {
        let smtp = &raw.smtp;
        for (key, value) in [
            ("smtp.max_recipients", smtp.max_recipients),
            ("smtp.max_connections", smtp.max_connections),
            ("smtp.command_timeout_seconds", smtp.command_timeout_seconds),
            ("smtp.data_timeout_seconds", smtp.data_timeout_seconds),
            (
                "smtp.data_start_timeout_seconds",
                smtp.data_start_timeout_seconds,
            ),
            ("smtp.write_timeout_seconds", smtp.write_timeout_seconds),
            ("shutdown.deadline_seconds", raw.shutdown.deadline_seconds),
            (
                "smtp.auth_failures_per_connection",
                smtp.auth_failures_per_connection,
            ),
            ("smtp.auth_wait_seconds", smtp.auth_wait_seconds),
        ] {
            if value == 0 {
                self.push(key, "must be at least 1");
            }
        }
        let seconds = |s: u32| Duration::from_secs(s.into());
        Limits {
            max_message_bytes: smtp.max_message_bytes,
            max_recipients: smtp.max_recipients as usize,
            max_connections: smtp.max_connections as usize,
            command_timeout: seconds(smtp.command_timeout_seconds),
            data_start_timeout: seconds(smtp.data_start_timeout_seconds),
            data_timeout: seconds(smtp.data_timeout_seconds),
            write_timeout: seconds(smtp.write_timeout_seconds),
            upstream_timeout: seconds(raw.upstream.timeout_seconds),
            shutdown_deadline: seconds(raw.shutdown.deadline_seconds),
            auth: AuthLimits {
                failures_per_connection: smtp.auth_failures_per_connection,
                // 0: half the CPU cores (at least one), so that a flood of
                // AUTH leaves the other half to the tracking server.
                concurrency: match smtp.auth_concurrency {
                    0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
                    n => n as usize,
                },
                wait: seconds(smtp.auth_wait_seconds),
                delay_max: seconds(smtp.auth_delay_max_seconds),
                failure_memory: seconds(smtp.auth_failure_memory_seconds),
            },
        }
    }
}
