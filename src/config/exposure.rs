//! Settings that are valid but expose the relay: said loudly by
//! `check-config` and logged as warnings when `serve` starts, never
//! refused (a lab or a firewalled host may want them).

use ipnet::IpNet;

use super::{Config, Problem};

/// A network wider than this (IPv4 /8, IPv6 /16) lets a good part of the
/// internet relay without AUTH.
const WIDEST_V4_PREFIX: u8 = 8;
const WIDEST_V6_PREFIX: u8 = 16;

impl Config {
    /// What is exposed, with the key that does it.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, net) in self.smtp.allowed_networks.iter().enumerate() {
            if let Some(message) = open_network(net) {
                out.push(Problem {
                    key: format!("smtp.allowed_networks[{i}]"),
                    message,
                });
            }
        }
        if !self.api.listen.ip().is_loopback() {
            out.push(Problem {
                key: "api.listen".into(),
                message: format!(
                    "{} is reachable beyond this host: only the API token guards the admin \
                     API, the dashboard and /metrics (prefer loopback or a firewall)",
                    self.api.listen
                ),
            });
        }
        out
    }
}

/// Why `net` in `smtp.allowed_networks` is too open, if it is.
fn open_network(net: &IpNet) -> Option<String> {
    let widest = match net {
        IpNet::V4(_) => WIDEST_V4_PREFIX,
        IpNet::V6(_) => WIDEST_V6_PREFIX,
    };
    if net.prefix_len() == 0 {
        Some(format!(
            "OPEN RELAY: {net} lets every address on the internet relay mail without AUTH"
        ))
    } else if net.prefix_len() < widest {
        Some(format!(
            "{net} lets a large part of the internet relay mail without AUTH"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_networks_are_named() {
        let open = |s: &str| open_network(&s.parse().unwrap());
        assert!(open("0.0.0.0/0").unwrap().starts_with("OPEN RELAY"));
        assert!(open("::/0").unwrap().starts_with("OPEN RELAY"));
        assert!(open("10.0.0.0/7").is_some());
        assert!(open("10.0.0.0/8").is_none());
        assert!(open("127.0.0.0/8").is_none());
        assert!(open("2001:db8::/32").is_none());
    }
}
