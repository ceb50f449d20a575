//! The `[milter]` section: where the milter listens, who may connect and
//! for how long, and what it answers when it cannot rewrite a message. No
//! section: no milter listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::Collector;
use super::raw::RawMilter;

/// The milter listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilterConfig {
    pub listen: MilterListen,
    pub on_error: OnError,
    /// Larger messages are answered per `on_error`, unread.
    pub max_message_bytes: u64,
    /// TCP peers that may connect (a unix socket is guarded by its file
    /// permissions instead).
    pub allowed_networks: Vec<IpNet>,
    /// Most MTA connections at once; more are closed on arrival.
    pub max_connections: usize,
    /// A packet, once begun, must arrive whole within this; each write of
    /// replies must finish within it too.
    pub packet_timeout: Duration,
    /// How long the MTA may stay silent between packets.
    pub idle_timeout: Duration,
}

/// A TCP address or a unix socket path (`unix:/run/trackrelay/milter.sock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilterListen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for MilterListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MilterListen::Tcp(a) => write!(f, "inet:{a}"),
            MilterListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What the MTA is told when a message cannot be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// SMFIR_ACCEPT: delivered unchanged.
    Accept,
    /// SMFIR_TEMPFAIL: the MTA answers 4xx; the client retries.
    Tempfail,
}

impl Collector {
    pub(super) fn milter(&mut self, raw: Option<&RawMilter>) -> Option<MilterConfig> {
        let raw = raw?;
        let listen = raw.listen.trim();
        let listen = if let Some(path) = listen.strip_prefix("unix:") {
            if path.is_empty() {
                self.push("milter.listen", "unix: needs a socket path");
            }
            MilterListen::Unix(PathBuf::from(path))
        } else {
            let addr = listen.strip_prefix("inet:").unwrap_or(listen);
            match addr.parse() {
                Ok(a) => MilterListen::Tcp(a),
                Err(_) => {
                    self.push(
                        "milter.listen",
                        format!(
                            "{listen:?} is neither address:port (127.0.0.1:8891) nor unix:PATH"
                        ),
                    );
                    MilterListen::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)))
                }
            }
        };
        let on_error = match raw.on_error.as_str() {
            "accept" => OnError::Accept,
            "tempfail" => OnError::Tempfail,
            other => {
                self.push(
                    "milter.on_error",
                    format!("{other:?} is neither \"accept\" nor \"tempfail\""),
                );
                OnError::Accept
            }
        };
        if raw.max_message_bytes == 0 {
            self.push("milter.max_message_bytes", "must be at least 1");
        }
        for (key, value) in [
            ("milter.max_connections", raw.max_connections),
            ("milter.packet_timeout_seconds", raw.packet_timeout_seconds),
            ("milter.idle_timeout_seconds", raw.idle_timeout_seconds),
        ] {
            if value == 0 {
                self.push(key, "must be at least 1");
            }
        }
        Some(MilterConfig {
            listen,
            on_error,
            max_message_bytes: raw.max_message_bytes,
            allowed_networks: self.nets("milter.allowed_networks", &raw.allowed_networks),
            max_connections: raw.max_connections as usize,
            packet_timeout: Duration::from_secs(raw.packet_timeout_seconds.into()),
            idle_timeout: Duration::from_secs(raw.idle_timeout_seconds.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::*;

    const MINIMAL: &str = "[api]\ntoken = \"Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU\"\n[[tracking.keys]]\nid = \"k1\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";

    #[test]
    fn absent_section_means_no_milter_and_defaults_apply() {
        assert_eq!(Config::parse(MINIMAL).unwrap().milter, None);
        let c = Config::parse(&format!("{MINIMAL}[milter]\n")).unwrap();
        assert_eq!(
            c.milter,
            Some(MilterConfig {
                listen: MilterListen::Tcp("127.0.0.1:8891".parse().unwrap()),
                on_error: OnError::Accept,
                max_message_bytes: 50 * 1024 * 1024,
                allowed_networks: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
                max_connections: 256,
                packet_timeout: Duration::from_secs(30),
                idle_timeout: Duration::from_secs(900),
            })
        );
        let c = Config::parse(&format!(
            "{MINIMAL}[milter]\nlisten = \"unix:/run/t/m.sock\"\non_error = \"tempfail\"\n"
        ))
        .unwrap();
        let m = c.milter.unwrap();
        assert_eq!(m.listen, MilterListen::Unix("/run/t/m.sock".into()));
        assert_eq!(m.on_error, OnError::Tempfail);
    }

    #[test]
    fn problems_are_named_with_their_key() {
        let keys = |extra: &str| -> Vec<String> {
            Config::parse(&format!("{MINIMAL}[milter]\n{extra}"))
                .unwrap_err()
                .into_iter()
                .map(|p| p.key)
                .collect()
        };
        assert_eq!(
            keys("listen = \"nowhere\"\non_error = \"reject\"\nmax_message_bytes = 0\n"),
            [
                "milter.listen",
                "milter.on_error",
                "milter.max_message_bytes"
            ]
        );
        assert_eq!(
            keys(
                "max_connections = 0\npacket_timeout_seconds = 0\nidle_timeout_seconds = 0\n\
                 allowed_networks = [\"10.0.0.0/8\", \"everyone\"]\n"
            ),
            [
                "milter.max_connections",
                "milter.packet_timeout_seconds",
                "milter.idle_timeout_seconds",
                "milter.allowed_networks[1]"
            ]
        );
        assert_eq!(keys("listn = \"x\"\n"), ["milter.listn"]);
    }
}
