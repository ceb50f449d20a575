//! Validation of `[retention]` (SPEC §9): how long raw signals and events
//! are kept, how often the retention task runs, and the key of the IP hash,
//! into [`crate::retention::Policy`].

use std::time::Duration;

use super::{Collector, raw};
use crate::retention::{IpHashKey, Policy};
use crate::token::{KeyRing, MIN_SECRET_LEN};

impl Collector {
    /// `[retention]`; `keys` gives the derived IP hash key when none is set.
    pub(super) fn retention(&mut self, raw: &raw::RawRetention, keys: &KeyRing) -> Policy {
        let events = raw.event_days.map(|d| self.days("retention.event_days", d));
        let ip_hash_key = match &raw.ip_hash_key {
            Some(secret) => {
                if secret.len() < MIN_SECRET_LEN {
                    self.push(
                        "retention.ip_hash_key",
                        format!(
                            "is {} bytes; at least {MIN_SECRET_LEN} are required",
                            secret.len()
                        ),
                    );
                }
                IpHashKey::new(secret.as_bytes())
            }
            None => IpHashKey::derived_from(keys),
        };
        Policy {
            raw_signals: Duration::from_secs(u64::from(raw.raw_signal_days) * 86_400),
            events,
            interval: Duration::from_secs(
                self.at_least_one("retention.interval_minutes", raw.interval_minutes) as u64 * 60,
            ),
            ip_hash_key,
        }
    }
}
