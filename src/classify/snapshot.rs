//! The built-in snapshot of published address ranges
//! (`conf/classify/ranges.txt`, compiled into the binary): Apple's relay
//! egress, Google's, the clouds and hosting providers, VPN exits, crawler
//! and preview networks, each merged into the fewest CIDRs by
//! `conf/classify/refresh-snapshot.py`. It makes classification right on
//! first start, before `trackrelay update-ranges` has fetched anything; a
//! `[[classifier.ranges]]` file of the same name replaces its list.
//!
//! Format: a block per list, `@ name class YYYY-MM-DD url` then one CIDR a
//! line; `#` comments.

use super::ListError;
use super::networks::NetworkClass;

/// Where the built-in snapshot comes from (for errors and logs).
pub const SOURCE: &str = "conf/classify/ranges.txt (built in)";

const TEXT: &str = include_str!("../../conf/classify/ranges.txt");

/// One list of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotList {
    pub name: &'static str,
    pub class: NetworkClass,
    /// The list's own date (YYYY-MM-DD).
    pub date: &'static str,
    /// Where it is published (`-`: no fixed address).
    pub url: &'static str,
    /// Its CIDRs, one a line.
    pub ranges: &'static str,
}

/// Every list of the built-in snapshot.
pub fn built_in() -> Result<Vec<SnapshotList>, ListError> {
    parse(SOURCE, TEXT)
}

/// Reads a snapshot text.
pub fn parse(source: &str, text: &'static str) -> Result<Vec<SnapshotList>, ListError> {
    let mut lists = Vec::new();
    // (header line number, header, byte offset where its ranges start)
    let mut current: Option<(usize, &'static str, usize)> = None;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if let Some(header) = line.strip_prefix("@ ") {
            if let Some(open) = current.take() {
                lists.push(list(source, open, &text[open.2..offset])?);
            }
            current = Some((i + 1, header.trim_end(), offset + line.len()));
        }
        offset += line.len();
    }
    if let Some(open) = current {
        lists.push(list(source, open, &text[open.2..])?);
    }
    Ok(lists)
}

/// One list from its header (`name class date url`) and ranges.
fn list(
    source: &str,
    (line, header, _): (usize, &'static str, usize),
    ranges: &'static str,
) -> Result<SnapshotList, ListError> {
    let [name, class, date, url] = header.split_whitespace().collect::<Vec<_>>()[..] else {
        return Err(ListError::new(
            source,
            line,
            "a list header is `@ name class date url`",
        ));
    };
    let class = NetworkClass::parse(class)
        .ok_or_else(|| ListError::new(source, line, format!("unknown class {class:?}")))?;
    crate::time::parse(date).map_err(|e| ListError::new(source, line, e))?;
    Ok(SnapshotList {
        name,
        class,
        date,
        url,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_snapshot_parses_and_every_list_has_ranges() {
        let lists = built_in().unwrap();
        assert!(lists.len() >= 20, "{}", lists.len());
        for l in &lists {
            let nets = super::super::networks::parse_ranges(l.name, l.ranges).unwrap();
            assert!(!nets.is_empty(), "{}", l.name);
        }
        assert!(lists.iter().any(|l| l.name == "apple"));
    }

    #[test]
    fn a_bad_header_names_its_line() {
        let e = parse(
            "s",
            "# c\n@ a vpn 2026-01-01 -\n1.0.0.0/8\n@ b nope 2026-01-01 -\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 4);
        let l = parse("s", "@ a vpn 2026-01-01 -\n1.0.0.0/8\n2.0.0.0/8\n").unwrap();
        assert_eq!(l[0].ranges, "1.0.0.0/8\n2.0.0.0/8\n");
    }
}
