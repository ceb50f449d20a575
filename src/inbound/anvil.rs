//! Failed AUTH tries per client address, and the growing delay they earn
//! (what Postfix's anvil and Stalwart's auth rate limits do): each recent
//! failure doubles the wait before the address's next try is checked, so
//! guessing from one address slows to one try per `auth_delay_max_seconds`
//! per connection, and costs no Argon2 run while it waits.
//!
//! IPv6 clients are counted per /64, the block one host usually holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limits::AuthLimits;

/// The delay after one failure; it doubles with each further one.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Addresses remembered before expired ones are swept out; past
/// `MAX_ADDRESSES` after a sweep the table starts afresh (bounded memory
/// under a spread-out attack; the per-connection limit still holds).
const SWEEP_AT: usize = 10_000;
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

/// Recent failures per client address.
pub struct Anvil {
    records: Mutex<HashMap<IpAddr, Record>>,
    delay_max: Duration,
    memory: Duration,
}

impl Anvil {
    pub fn new(limits: &AuthLimits) -> Self {
        Self {
            records: Mutex::new(HashMap::new()),
            delay_max: limits.delay_max,
            memory: limits.failure_memory,
        }
    }

    /// How long a try from `ip` waits before it is checked.
    pub fn delay(&self, ip: IpAddr) -> Duration {
        let failures = self.failures(ip, Instant::now());
        delay_for(failures, self.delay_max)
    }

    /// Records a failure from `ip`; its recent failures, this one included.
    pub fn failed(&self, ip: IpAddr) -> u32 {
        let now = Instant::now();
        let Ok(mut records) = self.records.lock() else {
            return 0;
        };
        if records.len() >= SWEEP_AT {
            records.retain(|_, r| now.duration_since(r.last) < self.memory);
            if records.len() >= MAX_ADDRESSES {
                records.clear();
            }
        }
        let record = records.entry(key(ip)).or_insert(Record {
            failures: 0,
            last: now,
        });
        if now.duration_since(record.last) >= self.memory {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last = now;
        record.failures
    }

    fn failures(&self, ip: IpAddr, now: Instant) -> u32 {
        let Ok(records) = self.records.lock() else {
            return 0;
        };
        records
            .get(&key(ip))
            .filter(|r| now.duration_since(r.last) < self.memory)
            .map_or(0, |r| r.failures)
    }
}

/// 0 for no failure, then 100 ms doubling per failure, at most `max`.
fn delay_for(failures: u32, max: Duration) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => FIRST_DELAY
            .checked_mul(1 << (n - 1).min(20))
            .map_or(max, |d| d.min(max)),
    }
}

/// The address failures are counted under: itself, or its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anvil() -> Anvil {
        Anvil::new(&AuthLimits {
            failures_per_connection: 3,
            concurrency: 1,
            wait: Duration::from_secs(1),
            delay_max: Duration::from_secs(30),
            failure_memory: Duration::from_secs(600),
        })
    }

    #[test]
    fn the_delay_doubles_per_failure_up_to_the_cap() {
        let max = Duration::from_secs(30);
        let delays: Vec<u64> = (0..6)
            .map(|n| delay_for(n, max).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1600]);
        assert_eq!(delay_for(12, max), max);
        assert_eq!(delay_for(u32::MAX, max), max);
    }

    #[test]
    fn failures_count_per_address_and_per_ipv6_64() {
        let a = anvil();
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(a.delay(v4), Duration::ZERO);
        assert_eq!(a.failed(v4), 1);
        assert_eq!(a.failed(v4), 2);
        assert_eq!(a.delay(v4), Duration::from_millis(200));
        assert_eq!(a.delay("192.0.2.2".parse().unwrap()), Duration::ZERO);
        a.failed("2001:db8::1".parse().unwrap());
        assert_eq!(a.failed("2001:db8::ffff:2".parse().unwrap()), 2);
        assert_eq!(a.delay("2001:db8:0:1::1".parse().unwrap()), Duration::ZERO);
        // An IPv4-mapped address is the IPv4 address.
        assert_eq!(a.failed("::ffff:192.0.2.1".parse().unwrap()), 3);
    }
}
