//! What the classifier is configured with: the wait before judging, the
//! thresholds ([`Rules`]), the data files and the range lists. The config
//! module reads and checks `[classifier]` into these; `classify` never
//! reads the config itself.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::Rules;
use super::networks::NetworkClass;

/// The classifier's settings (`[classifier]`), as the config file gives them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a hit waits before it is judged, so bursts are seen.
    pub wait: Duration,
    pub rules: Rules,
    /// Data files replacing the built-in copies of `conf/classify`.
    pub bot_patterns: Option<PathBuf>,
    pub user_agents: Option<PathBuf>,
    pub networks: Option<PathBuf>,
    /// A range list older than this is a warning (zero: never).
    pub max_list_age: Duration,
    pub ranges: Vec<RangeSource>,
}

/// A range list fetched by `trackrelay update-ranges` and read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSource {
    /// Network name, as user-agents.tsv refers to it (e.g. "google").
    pub name: String,
    /// What a hit from there means.
    pub class: NetworkClass,
    /// Where the list is kept (written atomically by update-ranges).
    pub file: PathBuf,
    /// Where update-ranges downloads it from; none: kept by hand.
    pub url: Option<Url>,
}
