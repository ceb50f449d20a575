//! `[log]`: how the process writes its log to stderr. Text for a terminal
//! (the default), JSON for a collector (journald, Loki, Elastic): one
//! object a line with the same fields. `--log-format` overrides it.
//!
//! Logging starts before the config is validated (so validation problems
//! can be logged), which is why [`peek_format`] reads just this one key.

use std::path::Path;

/// The log's line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Compact human-readable lines.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `fields` (with
    /// `message` and every structured field), `span`.
    Json,
}

impl LogFormat {
    /// The format named by a `[log] format` value.
    pub fn parse(name: &str) -> Option<LogFormat> {
        match name {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

impl super::Collector {
    /// `[log]`.
    pub(super) fn log_format(&mut self, raw: &super::raw::RawLog) -> LogFormat {
        LogFormat::parse(&raw.format).unwrap_or_else(|| {
            self.push(
                "log.format",
                format!("{:?} is neither \"text\" nor \"json\"", raw.format),
            );
            LogFormat::Text
        })
    }
}

/// `[log] format` of the config file at `path`, if it can be read and
/// names a format; anything wrong is reported by the full load later.
pub fn peek_format(path: &Path) -> Option<LogFormat> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = text.parse().ok()?;
    LogFormat::parse(table.get("log")?.get("format")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_only_the_log_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[smtp]\nunknown = 1\n[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(peek_format(&path), Some(LogFormat::Json));
        std::fs::write(&path, "[log]\nformat = \"xml\"\n").unwrap();
        assert_eq!(peek_format(&path), None);
        assert_eq!(peek_format(&dir.path().join("missing.toml")), None);
    }

    #[test]
    fn an_unknown_format_is_a_problem_with_its_key() {
        let err = crate::config::Config::parse("[log]\nformat = \"xml\"\n").unwrap_err();
        assert!(err.iter().any(|p| p.key == "log.format"), "{err:?}");
    }
}
