//! Reading the TOML text into [`RawConfig`]: unknown keys become problems
//! with their key path and line, and reading goes on past them.

use super::raw::RawConfig;
use super::{Config, Problem};

/// Reads the TOML into the raw structs. A key the structs do not know is
/// a problem of its own (with its path and line), and reading goes on, so
/// one misspelt key does not hide the others; a value of the wrong type
/// stops it, naming its key.
pub(super) fn parse_raw(text: &str) -> Result<(RawConfig, Vec<Problem>), Problem> {
    let de = toml::Deserializer::parse(text).map_err(|e| Problem {
        key: "(syntax)".into(),
        message: one_line(&e.to_string()),
    })?;
    let mut unknown = Vec::new();
    let mut collect = |path: serde_ignored::Path| {
        let key = key_path(&path);
        let name = key.rsplit(['.', ']']).next().unwrap_or(&key).to_owned();
        let line = line_of_key(text, &name);
        let at = line.map(|n| format!(" (line {n})")).unwrap_or_default();
        let message = format!("unknown field `{name}`{at}");
        unknown.push((line, Problem { key, message }));
    };
    let raw = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(de, &mut collect))
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|s| format!(" (line {})", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_default();
            Problem {
                key: if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                message: format!("{}{line}", one_line(inner.message())),
            }
        })?;
    // The file's order (serde visits sub-tables in its own).
    unknown.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
    Ok((raw, unknown.into_iter().map(|(_, p)| p).collect()))
}

/// Unknown keys first (the file's own order), then what validation found.
pub(super) fn with_unknown(
    validated: Result<Config, Vec<Problem>>,
    mut unknown: Vec<Problem>,
) -> Result<Config, Vec<Problem>> {
    match validated {
        Ok(config) if unknown.is_empty() => Ok(config),
        Ok(_) => Err(unknown),
        Err(list) => {
            unknown.extend(list);
            Err(unknown)
        }
    }
}

/// `routes[0].track_open`: the path as `check-config` names keys.
fn key_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => match key_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

/// The line of `name = …` (or a `[table.name]` header) when the file has
/// exactly one such line; the path already says which table it is in.
fn line_of_key(text: &str, name: &str) -> Option<usize> {
    let mut found = text.lines().enumerate().filter(|(_, l)| {
        let l = l.trim_start().trim_start_matches('[');
        l.strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with(['=', ']']))
            || l.split('.')
                .next_back()
                .and_then(|t| t.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with(']'))
    });
    let (n, _) = found.next()?;
    found.next().is_none().then_some(n + 1)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const MINIMAL: &str = "[api]\ntoken = \"Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU\"\n[[tracking.keys]]\nid = \"k1\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let text = format!("{MINIMAL}\n[[routes]]\nid = \"a\"\ntrack_open = true\n");
        let problems = Config::parse(&text).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "routes[0].track_open");
        assert!(
            problems[0].message.contains("unknown field"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn an_unknown_key_does_not_hide_the_other_problems() {
        let text = format!(
            "{MINIMAL}\n[[routes]]\nid = \"a\"\ntrack_open = true\npixel_position = \"middle\"\n[routes.match]\nsendr = []\n"
        );
        let problems = Config::parse(&text).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "routes[0].track_open",
                "routes[0].match.sendr",
                "routes[0].pixel_position"
            ],
            "{problems:?}"
        );
        let line = text
            .lines()
            .position(|l| l.starts_with("track_open"))
            .unwrap()
            + 1;
        assert!(
            problems[0].message.ends_with(&format!("(line {line})")),
            "{}",
            problems[0].message
        );
    }
}
