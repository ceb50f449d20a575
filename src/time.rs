//! Time as stored data counts it: milliseconds since the Unix epoch, shown
//! as RFC 3339 UTC, read from RFC 3339 times or dates.
//!
//! The one place the wall clock is read: [`Clock`] is a value a component
//! can be given (a test sets and moves a manual one); [`now_ms`] and
//! [`now`] read the system clock for code that is not handed one. Nothing
//! else calls `SystemTime::now` or `jiff::Timestamp::now`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Where "now" comes from: the system clock, or a manual one that tests
/// set and move. Cheap to clone; clones of a manual clock move together.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads `ms` until it is set or advanced.
    pub fn manual(ms: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(ms))),
        }
    }

    /// Sets a manual clock; a system clock ignores it.
    pub fn set_ms(&self, ms: i64) {
        if let Some(at) = &self.manual {
            at.store(ms, Ordering::Release);
        }
    }

    /// Moves a manual clock on by `by`; a system clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Some(at) = &self.manual {
            let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
            at.fetch_add(ms, Ordering::AcqRel);
        }
    }

    /// Milliseconds since the Unix epoch, now.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(at) => at.load(Ordering::Acquire),
            None => jiff::Timestamp::now().as_millisecond(),
        }
    }

    /// Whole seconds since the Unix epoch, now (0 before the epoch).
    pub fn now_secs(&self) -> u64 {
        u64::try_from(self.now_ms().div_euclid(1000)).unwrap_or(0)
    }

    /// Now, as a timestamp.
    pub fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.now_ms()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

/// Milliseconds since the Unix epoch, now, by the system clock.
pub fn now_ms() -> i64 {
    Clock::system().now_ms()
}

/// Whole seconds since the Unix epoch, now, by the system clock.
pub fn now_secs() -> u64 {
    Clock::system().now_secs()
}

/// Now, by the system clock.
pub fn now() -> jiff::Timestamp {
    Clock::system().now()
}

/// `ms` as RFC 3339 UTC (`2026-01-02T03:04:05.678Z`; no fraction when it
/// is zero); empty when out of range.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// An RFC 3339 time, or a date meaning its midnight UTC.
pub fn parse(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    text.parse::<jiff::civil::Date>()
        .map_err(|e| format!("{text:?}: not an RFC 3339 time or a date: {e}"))?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_reads_what_it_was_set_to_and_its_clones_follow() {
        let clock = Clock::manual(1_000);
        let clone = clock.clone();
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clone.now_ms(), 2_500);
        assert_eq!(clone.now_secs(), 2);
        clone.set_ms(-1);
        assert_eq!(clock.now_secs(), 0);
        assert!(Clock::system().now_ms() > 1_700_000_000_000);
    }
}
