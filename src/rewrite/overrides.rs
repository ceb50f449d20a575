//! The sender's per-message controls: `X-LM-*` headers (SPEC §2).
//!
//! `X-LM-Override-Track-Opens` / `-Clicks` (true or false, any case, any
//! surrounding whitespace) beat the route for one message; `X-LM-Tag` adds a
//! tag. Every `X-LM-*` field of the top-level header is ours and is removed
//! before relaying, whether it was understood or not.

use std::ops::Range;

use mail_parser::Message;

/// What the `X-LM-*` headers of a message say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Overrides {
    pub track_opens: Option<bool>,
    pub track_clicks: Option<bool>,
    pub tags: Vec<String>,
    /// Header fields to remove (byte ranges, with their line endings).
    pub remove: Vec<Range<usize>>,
    /// What was not understood, for the log (never fatal).
    pub ignored: Vec<String>,
}

const PREFIX: &str = "x-lm-";
const OPENS: &str = "x-lm-override-track-opens";
const CLICKS: &str = "x-lm-override-track-clicks";
const TAG: &str = "x-lm-tag";
/// Tags beyond these limits are ignored (and logged): they end up in every
/// event, webhook and report.
const MAX_TAGS: usize = 10;
const MAX_TAG_CHARS: usize = 128;

/// Reads the top-level `X-LM-*` fields of a parsed message.
pub fn read(message: &Message<'_>) -> Overrides {
    let mut o = Overrides::default();
    let Some(root) = message.parts.first() else {
        return o;
    };
    let mut opens = Vec::new();
    let mut clicks = Vec::new();
    for header in &root.headers {
        let name = header.name.as_str();
        if !name
            .get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
        {
            continue;
        }
        o.remove
            .push(header.offset_field as usize..header.offset_end as usize);
        let value = header.value.as_text().unwrap_or("").trim();
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            OPENS | CLICKS => match parse_bool(value) {
                Some(b) if name == OPENS => opens.push(b),
                Some(b) => clicks.push(b),
                None => o.ignored.push(format!(
                    "{name}: unrecognised value {value:?}, route setting stands"
                )),
            },
            TAG => add_tag(&mut o, value),
            _ => o
                .ignored
                .push(format!("{name}: unknown X-LM header, removed")),
        }
    }
    o.track_opens = combine(&opens);
    o.track_clicks = combine(&clicks);
    o
}

/// Several fields of one override: an opt-out wins, so a sender who said
/// `false` anywhere is never tracked by mistake.
fn combine(values: &[bool]) -> Option<bool> {
    (!values.is_empty()).then(|| values.iter().all(|&b| b))
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn add_tag(o: &mut Overrides, value: &str) {
    if value.is_empty()
        || value.chars().count() > MAX_TAG_CHARS
        || value.chars().any(char::is_control)
    {
        o.ignored.push(format!(
            "x-lm-tag: {value:?} is empty, too long or has control characters"
        ));
    } else if o.tags.len() >= MAX_TAGS {
        o.ignored.push(format!(
            "x-lm-tag: {value:?} ignored, at most {MAX_TAGS} tags"
        ));
    } else if !o.tags.iter().any(|t| t == value) {
        o.tags.push(value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_raw(raw: &str) -> Overrides {
        read(&crate::mime::parser().parse(raw.as_bytes()).unwrap())
    }

    #[test]
    fn case_whitespace_and_repeats() {
        let raw = "From: a@b.c\r\nx-lm-OVERRIDE-track-opens:   FALSE  \r\n\
                   X-LM-Override-Track-Clicks: true\r\nX-LM-Tag: spring\r\nX-LM-Tag: spring\r\n\
                   X-LM-Tag:\r\n =?utf-8?q?caf=C3=A9?=\r\nSubject: s\r\n\r\nbody";
        let o = read_raw(raw);
        assert_eq!(o.track_opens, Some(false));
        assert_eq!(o.track_clicks, Some(true));
        assert_eq!(o.tags, ["spring", "café"]);
        assert_eq!(o.remove.len(), 5);
        // The removed ranges are whole fields, folded lines included.
        let mut kept = raw.to_string();
        for r in o.remove.iter().rev() {
            kept.replace_range(r.clone(), "");
        }
        assert_eq!(kept, "From: a@b.c\r\nSubject: s\r\n\r\nbody");
    }

    #[test]
    fn conflicting_values_opt_out_and_garbage_is_ignored() {
        let o = read_raw(
            "X-LM-Override-Track-Clicks: true\nX-LM-Override-Track-Clicks: no\nX-LM-Override-Track-Opens: maybe\n\nb",
        );
        assert_eq!(o.track_clicks, Some(false));
        assert_eq!(o.track_opens, None);
        assert_eq!(o.ignored.len(), 1);
        assert!(o.ignored[0].contains("maybe"));
    }
}
