//! The retry schedule: after the n-th failed try the next comes
//! `base · 2^(n-1)` later (at most `retry_max_delay`), plus a jitter of up
//! to a quarter of that, so deliveries that failed together do not all
//! come back together. The jitter is drawn from the delivery's id and n,
//! so the schedule of one delivery is fixed and can be checked. A
//! delivery keeps being retried until `retry_for` has passed since its
//! schedule started, then it fails.

use std::time::Duration;

use uuid::Uuid;

use crate::config::WebhookSettings;
use crate::storage::Next;

/// The wait after the `failures`-th failed try (1 for the first).
pub fn delay(settings: &WebhookSettings, failures: u32, id: Uuid) -> Duration {
    let step = failures.saturating_sub(1).min(40);
    let plain = settings
        .retry_base
        .saturating_mul(1u32 << step.min(31))
        .min(settings.retry_max_delay);
    // splitmix64 of the id and the step: a fraction in [0, 1).
    let mut z = (id.as_u128() as u64) ^ u64::from(failures).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let fraction = (z >> 11) as f64 / (1u64 << 53) as f64;
    plain + plain.mul_f64(fraction / 4.0)
}

/// What follows a failed try at `now_ms`: the `failures`-th since the
/// schedule started at `schedule_start_ms`.
pub fn after_failure(
    settings: &WebhookSettings,
    id: Uuid,
    failures: u32,
    schedule_start_ms: i64,
    now_ms: i64,
) -> Next {
    let retry_for = i64::try_from(settings.retry_for.as_millis()).unwrap_or(i64::MAX);
    if now_ms.saturating_sub(schedule_start_ms) >= retry_for {
        return Next::Failed;
    }
    let wait = i64::try_from(delay(settings, failures, id).as_millis()).unwrap_or(i64::MAX);
    Next::RetryAt(now_ms.saturating_add(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            allow_private_networks: false,
            retry_base: Duration::from_secs(5),
            retry_max_delay: Duration::from_secs(3600),
            retry_for: Duration::from_secs(86_400),
            timeout: Duration::from_secs(10),
            concurrency_per_endpoint: 4,
            claim_lease: Duration::from_secs(120),
        }
    }

    #[test]
    fn doubles_with_a_bounded_jitter_and_a_cap() {
        let s = settings();
        let id = Uuid::now_v7();
        for n in 1..=20u32 {
            let plain = (Duration::from_secs(5) * 2u32.pow(n.min(20) - 1)).min(s.retry_max_delay);
            let d = delay(&s, n, id);
            assert!(d >= plain && d < plain + plain / 4, "{n}: {d:?}");
            assert_eq!(d, delay(&s, n, id), "fixed per delivery");
        }
        let other = Uuid::now_v7();
        assert!((1..=10).any(|n| delay(&s, n, id) != delay(&s, n, other)));
    }

    #[test]
    fn retried_for_at_least_a_day_then_failed() {
        let s = settings();
        let id = Uuid::now_v7();
        let (mut now, mut failures) = (0i64, 0u32);
        loop {
            failures += 1;
            match after_failure(&s, id, failures, 0, now) {
                Next::RetryAt(at) => now = at,
                Next::Failed => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(now >= 86_400_000, "last try at {now} ms");
        assert!(now < 86_400_000 + 3_600_000 * 5 / 4 + 1);
        assert!((20..40).contains(&failures), "{failures} tries");
    }
}
