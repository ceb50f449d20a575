//! Counters the relay reports to the metrics endpoint. Kept behind one
//! function so the relay does not depend on how metrics are exported.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

type Counts = Mutex<HashMap<(String, &'static str), u64>>;

fn counts() -> &'static Counts {
    static COUNTS: OnceLock<Counts> = OnceLock::new();
    COUNTS.get_or_init(Default::default)
}

/// One relayed copy on `route` whose upstream reply was of `class` (2xx…).
pub fn relayed(route: &str, class: &'static str) {
    let mut c = counts().lock().unwrap_or_else(|e| e.into_inner());
    *c.entry((route.to_owned(), class)).or_default() += 1;
}

/// Snapshot of the relayed counters: ((route, class), count).
pub fn relayed_counts() -> Vec<((String, &'static str), u64)> {
    let c = counts().lock().unwrap_or_else(|e| e.into_inner());
    c.iter().map(|(k, v)| (k.clone(), *v)).collect()
}
