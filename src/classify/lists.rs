//! [`Lists`]: everything the classifier knows of the world, loaded once
//! from the data files the config names (and loaded again, whole, on
//! reload). Parsing is pure; [`Lists::load`] only adds reading the files.
//!
//! The committed files (`conf/classify/`) are built in; a config may name
//! its own copies. The published address ranges come from the built-in
//! snapshot ([`snapshot`]) unless a `[[classifier.ranges]]` file of the
//! same name exists (`trackrelay update-ranges` writes it): then that file
//! replaces the list. A range file that is missing is a warning only when
//! the snapshot has no list of its name. Every list's age is reported, with
//! a warning past `classifier.max_list_age_days`.

use std::path::Path;
use std::time::Duration;

use super::networks::{self, Hits, NetworkClass, Networks};
use super::snapshot;
use super::ua::{BotPatterns, Families};

/// A data file that cannot be used, with the line at fault (0: the whole
/// file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", if *line > 0 { format!(":{line}") } else { String::new() })]
pub struct ListError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl ListError {
    pub fn new(file: &str, line: usize, message: impl Into<String>) -> ListError {
        ListError {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

/// Thresholds of the behaviour rules (`[classifier]` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Clicks on this many distinct links of one message within
    /// `burst_window` make a burst (a scanner).
    pub burst_links: usize,
    pub burst_window: Duration,
    /// A click sooner than this after relaying is a scanner.
    pub scanner_click_seconds: f64,
    /// A click sooner than this after relaying is suspicious.
    pub early_click_seconds: f64,
    /// An address that hit this many recipients is suspicious.
    pub max_recipients_per_ip: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            burst_links: 2,
            burst_window: Duration::from_secs(2),
            scanner_click_seconds: 3.0,
            early_click_seconds: 10.0,
            max_recipients_per_ip: 20,
        }
    }
}

/// The compiled lists and rules.
#[derive(Debug)]
pub struct Lists {
    pub(super) bots: BotPatterns,
    pub(super) families: Families,
    /// For each family, the index of the network it must come from.
    pub(super) family_networks: Vec<Option<usize>>,
    pub(super) networks: Networks,
    pub(super) rules: Rules,
    /// For each [`NetworkClass`] (in `NAMES` order), its networks' bits.
    class_masks: [u64; NetworkClass::NAMES.len()],
}

/// Loaded lists and what was left out.
#[derive(Debug)]
pub struct Loaded {
    pub lists: Lists,
    /// One line per range file that could not be read (with its key
    /// path) and per list older than `classifier.max_list_age_days`.
    pub warnings: Vec<String>,
    /// Every address range list and when it was published or fetched.
    pub ages: Vec<ListAge>,
}

/// How old one range list is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAge {
    /// The network's name (lower case).
    pub name: String,
    /// The file it was read from, or "built in, URL".
    pub source: String,
    /// When it was published (built in) or written by update-ranges (the
    /// file's modification time), ms since the Unix epoch.
    pub updated_ms: i64,
}

impl ListAge {
    /// Whole seconds from `updated_ms` to `now_ms` (never negative).
    pub fn age_seconds(&self, now_ms: i64) -> i64 {
        (now_ms - self.updated_ms).max(0) / 1000
    }
}

/// A warning per list older than `max_age` (none when it is zero).
fn stale(ages: &[ListAge], max_age: Duration, now_ms: i64) -> Vec<String> {
    let max_s = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    if max_s == 0 {
        return Vec::new();
    }
    ages.iter()
        .filter(|a| a.age_seconds(now_ms) > max_s)
        .map(|a| {
            format!(
                "classifier list {:?} ({}) is {} days old, more than classifier.max_list_age_days = {}; run `trackrelay update-ranges`",
                a.name,
                a.source,
                a.age_seconds(now_ms) / 86_400,
                max_s / 86_400
            )
        })
        .collect()
}

/// A range file's text and modification time (ms since the epoch).
fn read_range_file(range: &super::RangeSource) -> Result<(String, i64), String> {
    let file = show(&range.file);
    let text = std::fs::read_to_string(&range.file).map_err(|e| format!("{file}: {e}"))?;
    let modified_ms = std::fs::metadata(&range.file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(crate::time::now_ms, |d| {
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        });
    Ok((text, modified_ms))
}

impl Lists {
    /// Puts compiled parts together.
    pub fn new(bots: BotPatterns, families: Families, networks: Networks, rules: Rules) -> Lists {
        let family_networks = families
            .rows()
            .iter()
            .map(|f| f.network.as_deref().and_then(|n| networks.index_of(n)))
            .collect();
        // Built here, not on the first hit's lookup.
        networks.seal();
        let mut class_masks = [0u64; NetworkClass::NAMES.len()];
        for (i, class) in networks.classes() {
            class_masks[class_index(class)] |= 1 << i;
        }
        Lists {
            bots,
            families,
            family_networks,
            networks,
            rules,
            class_masks,
        }
    }

    /// Lists from text (tests, benchmarks): bot patterns, families,
    /// networks.csv; extra ranges as (name, class, range file text).
    pub fn parse(
        bots: &str,
        families: &str,
        networks_csv: &str,
        ranges: &[(&str, NetworkClass, &str)],
        rules: Rules,
    ) -> Result<Lists, ListError> {
        let bots = BotPatterns::parse("bot-patterns", bots)?;
        let families = Families::parse("user-agents", families)?;
        let mut nets = Networks::default();
        add_networks_csv(&mut nets, "networks", networks_csv)?;
        for (name, class, text) in ranges {
            let list = networks::parse_ranges(name, text)?;
            nets.add(name, *class, list)
                .map_err(|e| ListError::new(name, 0, e))?;
        }
        Ok(Lists::new(bots, families, nets, rules))
    }

    /// Reads every file the config names, and the built-in snapshot for
    /// the range lists no file replaces.
    pub fn load(config: &super::Settings) -> Result<Loaded, ListError> {
        let (name, text) = data_file(config.bot_patterns.as_deref(), BUILT_IN_BOTS)?;
        let bots = BotPatterns::parse(&name, &text)?;
        let (name, text) = data_file(config.user_agents.as_deref(), BUILT_IN_USER_AGENTS)?;
        let families = Families::parse(&name, &text)?;
        let mut nets = Networks::default();
        let (name, text) = data_file(config.networks.as_deref(), BUILT_IN_NETWORKS)?;
        add_networks_csv(&mut nets, &name, &text)?;
        let snapshot = snapshot::built_in()?;
        let mut ages = Vec::new();
        let mut warnings = Vec::new();
        for (i, range) in config.ranges.iter().enumerate() {
            let built_in = snapshot
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(&range.name));
            match read_range_file(range) {
                Ok((text, modified_ms)) => {
                    let file = show(&range.file);
                    let list = networks::parse_ranges(&file, &text)?;
                    nets.add(&range.name, range.class, list)
                        .map_err(|e| ListError::new(&file, 0, e))?;
                    ages.push(ListAge {
                        name: range.name.to_ascii_lowercase(),
                        source: file,
                        updated_ms: modified_ms,
                    });
                }
                // Not fetched yet: the built-in copy serves.
                Err(_) if built_in.is_some() => {}
                Err(e) => warnings.push(format!(
                    "classifier.ranges[{i}].file: {e}; range {:?} left out until `trackrelay update-ranges` fetches it",
                    range.name
                )),
            }
        }
        for list in &snapshot {
            if nets.index_of(list.name).is_some() {
                continue;
            }
            let ranges = networks::parse_ranges(snapshot::SOURCE, list.ranges)?;
            nets.add(list.name, list.class, ranges)
                .map_err(|e| ListError::new(snapshot::SOURCE, 0, e))?;
            ages.push(ListAge {
                name: list.name.to_owned(),
                source: format!("built in, {}", list.url),
                updated_ms: crate::time::parse(list.date)
                    .map(|t| t.as_millisecond())
                    .map_err(|e| ListError::new(snapshot::SOURCE, 0, e))?,
            });
        }
        warnings.extend(stale(&ages, config.max_list_age, crate::time::now_ms()));
        let lists = Lists::new(bots, families, nets, config.rules.clone());
        Ok(Loaded {
            lists,
            warnings,
            ages,
        })
    }

    /// Whether the hits include a network of this class.
    pub(super) fn in_class(&self, hits: Hits, class: NetworkClass) -> bool {
        hits.intersects(self.class_masks[class_index(class)])
    }

    /// The address ranges (for reporting what was loaded).
    pub fn networks(&self) -> &Networks {
        &self.networks
    }

    /// How many bot patterns and families were loaded.
    pub fn pattern_counts(&self) -> (usize, usize) {
        (self.bots.len(), self.families.rows().len())
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }
}

fn class_index(class: NetworkClass) -> usize {
    NetworkClass::NAMES
        .iter()
        .position(|n| NetworkClass::parse(n) == Some(class))
        .unwrap_or(0)
}

fn add_networks_csv(nets: &mut Networks, source: &str, text: &str) -> Result<(), ListError> {
    for (name, class, net) in networks::parse_networks_csv(source, text)? {
        nets.add(&name, class, [net])
            .map_err(|e| ListError::new(source, 0, e))?;
    }
    Ok(())
}

/// The data files of `conf/classify` as they were at build time: the
/// lists a config that names no file of its own uses, so the binary runs
/// from any working directory (systemd's is the state directory).
const BUILT_IN_BOTS: (&str, &str) = (
    "conf/classify/bot-patterns.txt (built in)",
    include_str!("../../conf/classify/bot-patterns.txt"),
);
const BUILT_IN_USER_AGENTS: (&str, &str) = (
    "conf/classify/user-agents.tsv (built in)",
    include_str!("../../conf/classify/user-agents.tsv"),
);
const BUILT_IN_NETWORKS: (&str, &str) = (
    "conf/classify/networks.csv (built in)",
    include_str!("../../conf/classify/networks.csv"),
);

/// The name (for errors) and text of a data file: the configured file, or
/// the built-in copy.
fn data_file(
    path: Option<&Path>,
    built_in: (&'static str, &'static str),
) -> Result<(String, std::borrow::Cow<'static, str>), ListError> {
    match path {
        Some(path) => Ok((show(path), read(path)?.into())),
        None => Ok((built_in.0.to_owned(), built_in.1.into())),
    }
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

fn read(path: &Path) -> Result<String, ListError> {
    std::fs::read_to_string(path).map_err(|e| ListError::new(&show(path), 0, e.to_string()))
}
