//! What is wrong with a config file ([`Problem`], [`Problems`]) and the
//! [`Collector`] every section converts its keys with: it records each
//! problem with its key path and goes on, so `check-config` lists them all.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

/// One thing wrong with a config, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `routes[1].pixel_position`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a config file.
#[derive(Debug, thiserror::Error)]
pub struct Problems {
    /// The file the problems are in.
    pub file: String,
    pub list: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.list.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.list {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Collects problems while each key is converted.
#[derive(Default)]
pub(super) struct Collector {
    pub(super) list: Vec<Problem>,
}

impl Collector {
    pub(super) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse().unwrap_or_else(|_| {
            self.push(
                key,
                format!("{value:?} is not an address:port such as 127.0.0.1:2525"),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    pub(super) fn nets(&mut self, key: &str, values: &[String]) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for (i, v) in values.iter().enumerate() {
            // A bare address means just that host.
            let parsed = v
                .parse::<IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => nets.push(n),
                Err(_) => self.push(
                    format!("{key}[{i}]"),
                    format!("{v:?} is not a network such as 10.0.0.0/8"),
                ),
            }
        }
        nets
    }

    pub(super) fn days(&mut self, key: &str, days: u32) -> Duration {
        if days == 0 {
            self.push(key, "must be at least 1");
        }
        Duration::from_secs(u64::from(days) * 86_400)
    }

    pub(super) fn base_url(&mut self, key: &str, value: &str) -> Url {
        // A bare host name means https.
        let text = if value.contains("://") {
            value.to_owned()
        } else {
            format!("https://{value}")
        };
        let fallback = || Url::parse("http://invalid.invalid").expect("static URL parses");
        let Ok(mut url) = Url::parse(&text) else {
            self.push(
                key,
                format!("{value:?} is not a URL such as https://t.example.com"),
            );
            return fallback();
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            self.push(
                key,
                format!("{value:?} must be an http or https URL with a host"),
            );
        } else if url.query().is_some() || url.fragment().is_some() || url.username() != "" {
            self.push(
                key,
                format!("{value:?} must not have a query, fragment or user"),
            );
        }
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
        url
    }

    /// A count that must not be zero.
    pub(super) fn at_least_one(&mut self, key: &str, value: u32) -> usize {
        if value == 0 {
            self.push(key, "must be at least 1");
        }
        value as usize
    }
}
