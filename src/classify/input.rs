//! The JSON lines `trackrelay classify` reads (SPEC §6): `kind`, `ip`,
//! `user_agent`, optional `method`, `headers` (an object or a list of
//! `[name, value]` pairs), `seconds_after_send`; and, to replay a message's
//! context, optional `at_ms`, `link`, `recipients_from_ip` and `hits` (the
//! message's other hits: `at_ms`, `kind`, `link`, `ip`). Unknown fields are
//! refused so a misspelt one is not silently ignored.

use std::net::IpAddr;

use serde::Deserialize;

use super::{Context, Hit, Observation};
use crate::token::Kind;

/// One input line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub kind: Kind,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub seconds_after_send: Option<f64>,
    #[serde(default)]
    pub at_ms: Option<i64>,
    #[serde(default)]
    pub link: Option<u16>,
    #[serde(default)]
    pub recipients_from_ip: Option<u32>,
    #[serde(default)]
    pub hits: Vec<LineHit>,
}

/// Request headers as an object or as name/value pairs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "HeadersForm")]
pub struct Headers(pub Vec<(String, String)>);

#[derive(Deserialize)]
#[serde(untagged)]
enum HeadersForm {
    Pairs(Vec<(String, String)>),
    Object(serde_json::Map<String, serde_json::Value>),
}

impl From<HeadersForm> for Headers {
    fn from(form: HeadersForm) -> Self {
        Headers(match form {
            HeadersForm::Pairs(p) => p,
            HeadersForm::Object(map) => map
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
        })
    }
}

/// Another hit of the message, in the input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineHit {
    pub at_ms: i64,
    pub kind: Kind,
    #[serde(default)]
    pub link: Option<u16>,
    #[serde(default)]
    pub ip: Option<String>,
}

/// A parsed line, owning what the observation and context borrow.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub line: Line,
    pub ip: Option<IpAddr>,
    pub hits: Vec<Hit>,
}

impl Parsed {
    pub fn observation(&self) -> Observation<'_> {
        Observation {
            kind: self.line.kind,
            at_ms: self.line.at_ms.unwrap_or(0),
            method: self.line.method.as_deref().unwrap_or("GET"),
            ip: self.ip,
            user_agent: self.line.user_agent.as_deref(),
            headers: &self.line.headers.0,
            link: self.line.link,
        }
    }

    pub fn context(&self) -> Context<'_> {
        Context {
            hits: &self.hits,
            seconds_after_send: self.line.seconds_after_send,
            recipients_from_ip: self.line.recipients_from_ip.unwrap_or(1),
        }
    }
}

/// Parses one line; the error says what is wrong with it.
pub fn parse_line(text: &str) -> Result<Parsed, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let ip = parse_ip("ip", line.ip.as_deref())?;
    let mut hits = Vec::with_capacity(line.hits.len());
    for (i, h) in line.hits.iter().enumerate() {
        hits.push(Hit {
            at_ms: h.at_ms,
            kind: h.kind,
            link: h.link,
            ip: parse_ip(&format!("hits[{i}].ip"), h.ip.as_deref())?,
        });
    }
    if let Some(s) = line.seconds_after_send
        && !s.is_finite()
    {
        return Err("seconds_after_send must be a finite number".into());
    }
    Ok(Parsed { line, ip, hits })
}

fn parse_ip(field: &str, ip: Option<&str>) -> Result<Option<IpAddr>, String> {
    match ip.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{field}: {s:?} is not an IP address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_header_forms() {
        let a = parse_line(
            r#"{"kind":"open","ip":"1.2.3.4","user_agent":"x","headers":{"Accept":"*/*"}}"#,
        )
        .unwrap();
        let b = parse_line(r#"{"kind":"open","headers":[["Accept","*/*"]]}"#).unwrap();
        assert_eq!(a.line.headers.0, b.line.headers.0);
        assert_eq!(a.ip, Some("1.2.3.4".parse().unwrap()));
        assert_eq!(a.observation().method, "GET");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(
            parse_line(r#"{"kind":"view"}"#)
                .unwrap_err()
                .contains("unknown variant")
        );
        assert!(
            parse_line(r#"{"kind":"open","ip":"999.1.1.1"}"#)
                .unwrap_err()
                .contains("ip:")
        );
        assert!(
            parse_line(r#"{"kind":"open","user_agnet":"x"}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(parse_line("not json").is_err());
    }
}
