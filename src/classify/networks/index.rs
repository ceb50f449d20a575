//! The lookup index of [`Networks`](super::Networks): every network's
//! merged intervals folded into one step function per address family, so
//! that the set of networks holding an address is one binary search.

use super::num;

/// The networks folded into step functions: (first address, networks
/// holding it and every address up to the next entry).
#[derive(Debug, Default)]
pub(super) struct Index {
    v4: Vec<(u32, u64)>,
    v6: Vec<(u128, u64)>,
}

type Ranges<'a> = (&'a [(u32, u32)], &'a [(u128, u128)]);

impl Index {
    /// From each network's IPv4 and IPv6 intervals, in network order.
    pub(super) fn new<'a>(nets: impl Iterator<Item = Ranges<'a>> + Clone) -> Index {
        Index {
            v4: steps(nets.clone().map(|n| n.0)),
            v6: steps(nets.map(|n| n.1)),
        }
    }

    /// The networks (bits) holding an IPv4 address.
    pub(super) fn v4(&self, a: u32) -> u64 {
        step_at(&self.v4, a)
    }

    /// The networks (bits) holding an IPv6 address.
    pub(super) fn v6(&self, a: u128) -> u64 {
        step_at(&self.v6, a)
    }
}

/// Folds each network's merged intervals (the `i`th network is bit `i`)
/// into one step function.
fn steps<'a, T: Copy + Ord + num::One + 'a>(
    nets: impl Iterator<Item = &'a [(T, T)]>,
) -> Vec<(T, u64)> {
    // (position, bits entering, bits leaving)
    let mut events: Vec<(T, u64, u64)> = Vec::new();
    for (i, ranges) in nets.enumerate() {
        let bit = 1u64 << i;
        for &(start, end) in ranges {
            events.push((start, bit, 0));
            let next = end.saturating_next();
            // The last address of the space leaves nothing after it.
            if next != end {
                events.push((next, 0, bit));
            }
        }
    }
    events.sort_unstable_by_key(|e| e.0);
    let mut out: Vec<(T, u64)> = Vec::with_capacity(events.len());
    let mut mask = 0u64;
    for (at, enter, leave) in events {
        mask = (mask & !leave) | enter;
        match out.last_mut() {
            Some(last) if last.0 == at => last.1 = mask,
            _ => out.push((at, mask)),
        }
    }
    out
}

/// The networks holding `a`, from a step function.
fn step_at<T: Copy + Ord>(steps: &[(T, u64)], a: T) -> u64 {
    let i = steps.partition_point(|s| s.0 <= a);
    if i == 0 { 0 } else { steps[i - 1].1 }
}
