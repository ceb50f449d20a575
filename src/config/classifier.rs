//! `[classifier]`: the wait before judging, the behaviour thresholds, the
//! data files and the downloaded range lists (`[[classifier.ranges]]`).
//! Only the keys are checked here, into [`crate::classify::Settings`]; the
//! files are read by `classify::Lists::load` (check-config does both).

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::{Collector, raw};
use crate::classify::networks::{MAX_NETWORKS, NetworkClass};
use crate::classify::{RangeSource, Rules, Settings};

impl Collector {
    pub(super) fn classifier(&mut self, raw: &raw::RawClassifier) -> Settings {
        let k = "classifier";
        if raw.burst_links < 2 {
            self.push(
                format!("{k}.burst_links"),
                "must be at least 2 (links of one message)",
            );
        }
        if raw.burst_window_ms == 0 {
            self.push(format!("{k}.burst_window_ms"), "must be at least 1");
        }
        if raw.scanner_click_seconds > raw.early_click_seconds {
            self.push(
                format!("{k}.scanner_click_seconds"),
                "must not be greater than early_click_seconds",
            );
        }
        if raw.max_recipients_per_ip < 2 {
            self.push(format!("{k}.max_recipients_per_ip"), "must be at least 2");
        }
        for (key, value) in [
            ("bot_patterns", &raw.bot_patterns),
            ("user_agents", &raw.user_agents),
            ("networks", &raw.networks),
        ] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                self.push(format!("{k}.{key}"), "must name a file");
            }
        }
        Settings {
            wait: Duration::from_secs(raw.wait_seconds.into()),
            rules: Rules {
                burst_links: raw.burst_links as usize,
                burst_window: Duration::from_millis(raw.burst_window_ms.into()),
                scanner_click_seconds: raw.scanner_click_seconds.into(),
                early_click_seconds: raw.early_click_seconds.into(),
                max_recipients_per_ip: raw.max_recipients_per_ip,
            },
            bot_patterns: raw.bot_patterns.as_ref().map(PathBuf::from),
            user_agents: raw.user_agents.as_ref().map(PathBuf::from),
            networks: raw.networks.as_ref().map(PathBuf::from),
            max_list_age: Duration::from_secs(u64::from(raw.max_list_age_days) * 86_400),
            ranges: self.ranges(&raw.ranges),
        }
    }

    fn ranges(&mut self, raw: &[raw::RawRange]) -> Vec<RangeSource> {
        if raw.len() > MAX_NETWORKS / 2 {
            self.push(
                "classifier.ranges",
                format!("at most {} range lists", MAX_NETWORKS / 2),
            );
        }
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let key = format!("classifier.ranges[{i}]");
            if r.name.trim().is_empty() {
                self.push(format!("{key}.name"), "must not be empty");
            } else if raw[..i]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&r.name))
            {
                self.push(
                    format!("{key}.name"),
                    format!("{:?} is used by an earlier range list", r.name),
                );
            }
            let class = NetworkClass::parse(&r.class).unwrap_or_else(|| {
                self.push(
                    format!("{key}.class"),
                    format!(
                        "{:?} is not one of {}",
                        r.class,
                        NetworkClass::NAMES.join(", ")
                    ),
                );
                NetworkClass::Vpn
            });
            if r.file.trim().is_empty() {
                self.push(format!("{key}.file"), "must name a file");
            }
            let url = r.url.as_deref().and_then(|u| match Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                _ => {
                    self.push(format!("{key}.url"), format!("{u:?} is not an http(s) URL"));
                    None
                }
            });
            out.push(RangeSource {
                name: r.name.clone(),
                class,
                file: PathBuf::from(&r.file),
                url,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const MINIMAL: &str = "[api]\ntoken = \"Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU\"\n[[tracking.keys]]\nid = \"k1\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";

    #[test]
    fn defaults() {
        let c = Config::parse(MINIMAL).unwrap().classifier;
        assert_eq!(c.wait.as_secs(), 10);
        assert_eq!(c.rules.burst_links, 2);
        assert_eq!(c.bot_patterns, None, "the built-in copy");
        assert_eq!(c.max_list_age.as_secs(), 90 * 86_400);
        assert!(c.ranges.is_empty());
    }

    #[test]
    fn ranges_are_checked_with_their_key_paths() {
        let text = format!(
            "{MINIMAL}[classifier]\nburst_links = 1\n\
             [[classifier.ranges]]\nname = \"apple\"\nclass = \"apple_relay\"\nfile = \"a.csv\"\nurl = \"https://example.com/a.csv\"\n\
             [[classifier.ranges]]\nname = \"Apple\"\nclass = \"proxy\"\nfile = \"\"\nurl = \"ftp://x\"\n"
        );
        let keys: Vec<String> = Config::parse(&text)
            .unwrap_err()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            [
                "classifier.burst_links",
                "classifier.ranges[1].name",
                "classifier.ranges[1].class",
                "classifier.ranges[1].file",
                "classifier.ranges[1].url",
            ]
        );
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let text = format!(
            "{MINIMAL}[[classifier.ranges]]\nname = \"a\"\nclass = \"vpn\"\nfile = \"f\"\nkind = \"x\"\n"
        );
        let p = Config::parse(&text).unwrap_err();
        assert_eq!(p[0].key, "classifier.ranges[0].kind");
    }
}
