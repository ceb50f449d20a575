//! Guessing the API token through the dashboard's login form, limited per
//! client address (the anvil idea of Postfix): the first few failures are
//! free (typos), then each failure makes the address wait twice as long
//! before its next try is even looked at, and after [`MAX_FAILURES`] within
//! [`FORGET_AFTER`] the address is locked out until that much time has
//! passed since its last failure. A try that comes too early is refused
//! without comparing anything (429 and `Retry-After`), so opening more
//! connections does not help. A success forgets the address.
//!
//! IPv6 clients are counted per /64: one host usually holds a whole /64.
//! The table is bounded ([`MAX_ADDRESSES`]); when full, forgotten entries
//! go first, then the one that failed longest ago.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// Failures an address may make before it has to wait.
pub const FREE_FAILURES: u32 = 3;
/// Failures within [`FORGET_AFTER`] after which the address is locked out.
pub const MAX_FAILURES: u32 = 10;
/// The wait after the first failure past [`FREE_FAILURES`]; it doubles with
/// each further failure, up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// An address's failures are forgotten this long after its last one; a
/// locked-out address waits this long.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Most addresses remembered at once.
const MAX_ADDRESSES: usize = 10_000;

/// What may happen with a login try from one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Compare the token.
    Check,
    /// Refuse without comparing: try again after this long.
    Wait(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
}

impl Record {
    /// When the next try from this address is looked at.
    fn next_try(&self) -> Instant {
        if self.failures >= MAX_FAILURES {
            return self.last_failure + FORGET_AFTER;
        }
        self.last_failure + delay_after(self.failures)
    }
}

/// The wait after `failures` failures.
fn delay_after(failures: u32) -> Duration {
    let Some(over) = failures.checked_sub(FREE_FAILURES + 1) else {
        return Duration::ZERO;
    };
    FIRST_DELAY
        .checked_mul(1 << over.min(16))
        .map_or(MAX_DELAY, |d| d.min(MAX_DELAY))
}

/// Failed logins per client address.
#[derive(Debug, Default)]
pub struct Throttle {
    records: Mutex<HashMap<IpNet, Record>>,
}

/// The address as counted: IPv4 as is, IPv6 by its /64.
fn bucket(ip: IpAddr) -> IpNet {
    let ip = ip.to_canonical();
    let prefix = if ip.is_ipv4() { 32 } else { 64 };
    // A prefix of 32 (v4) or 64 (v6) is always valid.
    IpNet::new(ip, prefix).expect("valid prefix").trunc()
}

impl Throttle {
    /// Whether a try from `ip` at `now` is looked at.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        let records = self.lock();
        match records.get(&bucket(ip)) {
            Some(r) if now.saturating_duration_since(r.last_failure) >= FORGET_AFTER => {
                Verdict::Check
            }
            Some(r) if r.next_try() > now => Verdict::Wait(r.next_try() - now),
            _ => Verdict::Check,
        }
    }

    /// Records a failure from `ip` at `now`; returns the address's failures.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> u32 {
        let mut records = self.lock();
        let key = bucket(ip);
        if !records.contains_key(&key) && records.len() >= MAX_ADDRESSES {
            make_room(&mut records, now);
        }
        let record = records.entry(key).or_insert(Record {
            failures: 0,
            last_failure: now,
        });
        if now.saturating_duration_since(record.last_failure) >= FORGET_AFTER {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        record.failures
    }

    /// A successful login from `ip`: its failures are forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        self.lock().remove(&bucket(ip));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpNet, Record>> {
        // A panic while holding the lock leaves a consistent map (every
        // update is one insert or field write), so a poisoned lock is used.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Drops forgotten records, or else the one that failed longest ago.
fn make_room(records: &mut HashMap<IpNet, Record>, now: Instant) {
    records.retain(|_, r| now.saturating_duration_since(r.last_failure) < FORGET_AFTER);
    if records.len() >= MAX_ADDRESSES {
        let oldest = records
            .iter()
            .min_by_key(|(_, r)| r.last_failure)
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            records.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn free_failures_then_a_doubling_wait_then_a_lockout() {
        let t = Throttle::default();
        let a = ip("192.0.2.1");
        let start = Instant::now();
        for n in 1..=FREE_FAILURES {
            assert_eq!(t.check(a, start), Verdict::Check);
            assert_eq!(t.failed(a, start), n);
        }
        assert_eq!(t.check(a, start), Verdict::Check);
        t.failed(a, start); // 4th: 1 s
        assert_eq!(t.check(a, start), Verdict::Wait(FIRST_DELAY));
        let mut now = start + FIRST_DELAY;
        assert_eq!(t.check(a, now), Verdict::Check);
        t.failed(a, now); // 5th: 2 s
        assert_eq!(t.check(a, now), Verdict::Wait(2 * FIRST_DELAY));
        for _ in 5..MAX_FAILURES {
            now += MAX_DELAY;
            assert_eq!(t.check(a, now), Verdict::Check);
            t.failed(a, now);
        }
        assert_eq!(
            t.check(a, now + MAX_DELAY),
            Verdict::Wait(FORGET_AFTER - MAX_DELAY)
        );
        assert_eq!(t.check(a, now + FORGET_AFTER), Verdict::Check);
        // Other addresses are not affected; v6 counts per /64.
        assert_eq!(t.check(ip("192.0.2.2"), now), Verdict::Check);
        let v6 = Throttle::default();
        for _ in 0..MAX_FAILURES {
            v6.failed(ip("2001:db8::1"), start);
        }
        assert!(matches!(
            v6.check(ip("2001:db8::ffff"), start),
            Verdict::Wait(_)
        ));
        assert_eq!(v6.check(ip("2001:db8:0:1::1"), start), Verdict::Check);
    }

    #[test]
    fn success_and_time_forget_failures() {
        let t = Throttle::default();
        let a = ip("192.0.2.1");
        let start = Instant::now();
        for _ in 0..6 {
            t.failed(a, start);
        }
        t.succeeded(a);
        assert_eq!(t.check(a, start), Verdict::Check);
        for _ in 0..6 {
            t.failed(a, start);
        }
        assert_eq!(t.failed(a, start + FORGET_AFTER), 1, "counting starts over");
    }

    #[test]
    fn the_table_is_bounded() {
        let t = Throttle::default();
        let start = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 5) {
            t.failed(
                IpAddr::from(i.to_be_bytes()),
                start + Duration::from_millis(i.into()),
            );
        }
        assert_eq!(t.lock().len(), MAX_ADDRESSES);
    }
}
