//! Address ranges: which known networks an address is in.
//!
//! Each network (Apple's relay egress, Google, Proofpoint, a cloud, …) keeps
//! its ranges as sorted, merged, non-overlapping intervals, one vector for
//! IPv4 (`u32`) and one for IPv6 (`u128`). Networks may overlap (Apple's
//! relay runs partly in Cloudflare's space), so for lookups all of them are
//! folded, once, into one step function per family: sorted boundaries, each
//! with the set of networks (bits of a `u64`) holding the addresses from it
//! to the next. A lookup is one binary search, however many lists are
//! loaded.
//!
//! Range files are read in the formats their publishers use: one CIDR a
//! line or CSV with the CIDR first (Apple's egress-ip-ranges.csv, the
//! geofeeds of DigitalOcean, Linode and Vultr; a header line allowed), or
//! JSON with `ipv4Prefix`/`ipv6Prefix` (Google, Bing), `ip_prefix`/
//! `ipv6_prefix` (AWS) or `cidr` (Oracle) anywhere inside.

use std::net::IpAddr;

use ipnet::IpNet;

use super::ListError;

mod index;

/// What a hit from a network says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkClass {
    /// Mail-security scanners (Microsoft EOP, Proofpoint, Mimecast, Barracuda).
    SecurityScanner,
    /// Where a mailbox image proxy lives (Google, Yahoo): verifies a proxy's agent.
    ImageProxy,
    /// Apple's relay egress: Mail Privacy Protection opens, Private Relay clicks.
    AppleRelay,
    /// Search and AI crawlers.
    Crawler,
    /// Cloud and hosting providers: no people browse from there.
    Hosting,
    /// Chat and social networks' preview fetchers.
    LinkPreview,
    /// VPN exits and privacy gateways: people whose clicks need more
    /// context (`unverified_click`).
    Vpn,
    /// A mailbox provider's cloud (Microsoft: Outlook.com, Safe Links): an
    /// open from there is its image fetch for a reader (counts), a click
    /// is its link scanning (PITFALLS P25).
    MailProvider,
}

impl NetworkClass {
    /// The names the config and networks.csv use.
    pub const NAMES: [&'static str; 8] = [
        "security_scanner",
        "image_proxy",
        "apple_relay",
        "crawler",
        "hosting",
        "link_preview",
        "vpn",
        "mail_provider",
    ];

    pub fn parse(s: &str) -> Option<NetworkClass> {
        Some(match s {
            "security_scanner" => Self::SecurityScanner,
            "image_proxy" => Self::ImageProxy,
            "apple_relay" => Self::AppleRelay,
            "crawler" => Self::Crawler,
            "hosting" => Self::Hosting,
            "link_preview" => Self::LinkPreview,
            "vpn" => Self::Vpn,
            "mail_provider" => Self::MailProvider,
            _ => return None,
        })
    }
}

/// One named network.
#[derive(Debug)]
struct Network {
    /// Lower case.
    name: Box<str>,
    class: NetworkClass,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// The set of networks an address is in, as bits of network indexes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hits(u64);

impl Hits {
    pub fn contains(self, index: usize) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether any of the networks in `mask` (bits of indexes) is hit.
    pub fn intersects(self, mask: u64) -> bool {
        self.0 & mask != 0
    }
}

/// Every known network.
#[derive(Debug, Default)]
pub struct Networks {
    list: Vec<Network>,
    /// Built on the first lookup after the last `add`.
    index: std::sync::OnceLock<index::Index>,
}

/// At most this many networks (a lookup answers with a `u64` of bits).
pub const MAX_NETWORKS: usize = 64;

impl Networks {
    /// Adds ranges to the network of this name (created if new).
    pub fn add(
        &mut self,
        name: &str,
        class: NetworkClass,
        nets: impl IntoIterator<Item = IpNet>,
    ) -> Result<(), String> {
        let name = name.to_ascii_lowercase();
        let i = match self.index_of(&name) {
            Some(i) => i,
            None if self.list.len() >= MAX_NETWORKS => {
                return Err(format!("more than {MAX_NETWORKS} networks"));
            }
            None => {
                self.list.push(Network {
                    name: name.into_boxed_str(),
                    class,
                    v4: Vec::new(),
                    v6: Vec::new(),
                });
                self.list.len() - 1
            }
        };
        let n = &mut self.list[i];
        for net in nets {
            match net {
                IpNet::V4(v4) => n.v4.push((v4.network().into(), v4.broadcast().into())),
                IpNet::V6(v6) => n.v6.push((v6.network().into(), v6.broadcast().into())),
            }
        }
        merge(&mut n.v4);
        merge(&mut n.v6);
        self.index = std::sync::OnceLock::new();
        Ok(())
    }

    /// The networks the address is in.
    pub fn lookup(&self, ip: IpAddr) -> Hits {
        let index = self.index.get_or_init(|| {
            index::Index::new(self.list.iter().map(|n| (n.v4.as_slice(), n.v6.as_slice())))
        });
        Hits(match ip.to_canonical() {
            IpAddr::V4(a) => index.v4(u32::from(a)),
            IpAddr::V6(a) => index.v6(u128::from(a)),
        })
    }

    /// Builds the lookup index now (else the first lookup does).
    pub fn seal(&self) {
        self.index.get_or_init(|| {
            index::Index::new(self.list.iter().map(|n| (n.v4.as_slice(), n.v6.as_slice())))
        });
    }

    /// Index of the network of this (case-insensitive) name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.list
            .iter()
            .position(|n| n.name.eq_ignore_ascii_case(name))
    }

    /// The networks (index order) with their class.
    pub fn classes(&self) -> impl Iterator<Item = (usize, NetworkClass)> + '_ {
        self.list.iter().enumerate().map(|(i, n)| (i, n.class))
    }

    /// Name and number of ranges of each network (for check-config).
    pub fn summary(&self) -> Vec<(String, usize)> {
        self.list
            .iter()
            .map(|n| (n.name.to_string(), n.v4.len() + n.v6.len()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Sorts and merges overlapping or adjacent intervals.
fn merge<T: Copy + Ord + num::One>(v: &mut Vec<(T, T)>) {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for &(s, e) in v.iter() {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_next() => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    *v = out;
}

/// The `x + 1` (saturating) of the two address integer types.
pub(super) mod num {
    pub trait One {
        fn saturating_next(self) -> Self;
    }
    impl One for u32 {
        fn saturating_next(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl One for u128 {
        fn saturating_next(self) -> Self {
            self.saturating_add(1)
        }
    }
}

/// Parses a CIDR or a bare address (a host route).
fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim().trim_matches('"');
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

/// Private, documentation and other special-purpose space (RFC 6890): no
/// client comes from there, and geofeeds carry placeholder rows of it
/// (Vultr's lists the documentation ranges).
const SPECIAL: [&str; 17] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/3",
    "::/8",
    "fc00::/7",
    "fe80::/10",
    "2001:db8::/32",
    "ff00::/8",
    "100.64.0.0/10",
];

fn is_special(net: &IpNet) -> bool {
    static NETS: std::sync::LazyLock<Vec<IpNet>> =
        std::sync::LazyLock::new(|| SPECIAL.iter().filter_map(|s| s.parse().ok()).collect());
    NETS.iter().any(|special| special.contains(net))
}

/// Reads a range file (see the module header for the formats); ranges in
/// special-purpose space are dropped.
pub fn parse_ranges(source: &str, text: &str) -> Result<Vec<IpNet>, ListError> {
    let mut nets = parse_all_ranges(source, text)?;
    nets.retain(|n| !is_special(n));
    Ok(nets)
}

fn parse_all_ranges(source: &str, text: &str) -> Result<Vec<IpNet>, ListError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let value: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|e| ListError::new(source, e.line(), e.to_string()))?;
        let mut nets = Vec::new();
        collect_json(&value, &mut nets);
        if nets.is_empty() {
            return Err(ListError::new(
                source,
                0,
                "no ipv4Prefix, ipv6Prefix, ip_prefix, ipv6_prefix or cidr in the JSON",
            ));
        }
        return Ok(nets);
    }
    let mut nets = Vec::new();
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let field = line.split([',', ' ', '\t', ';']).next().unwrap_or(line);
        match parse_net(field) {
            Some(n) => nets.push(n),
            // The first line may be a header ("cidr", "prefix,country,…").
            None if first => {}
            None => {
                return Err(ListError::new(
                    source,
                    i + 1,
                    format!("{field:?} is not an address range"),
                ));
            }
        }
        first = false;
    }
    Ok(nets)
}

fn collect_json(v: &serde_json::Value, out: &mut Vec<IpNet>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    (
                        "ipv4Prefix" | "ipv6Prefix" | "ip_prefix" | "ipv6_prefix" | "cidr",
                        Some(s),
                    ) => {
                        out.extend(parse_net(s));
                    }
                    _ => collect_json(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_json(i, out)),
        _ => {}
    }
}

/// Reads `networks.csv`: a header naming `cidr`, `organization` and
/// `category` columns, then one range a row; `#` comments.
pub fn parse_networks_csv(
    source: &str,
    text: &str,
) -> Result<Vec<(String, NetworkClass, IpNet)>, ListError> {
    let mut rows = Vec::new();
    let mut columns: Option<(usize, usize, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let Some((c, o, k)) = columns else {
            let find = |name: &str| {
                cols.iter().position(|c| *c == name).ok_or_else(|| {
                    ListError::new(source, n, format!("header has no {name:?} column"))
                })
            };
            columns = Some((find("cidr")?, find("organization")?, find("category")?));
            continue;
        };
        let get = |i: usize| cols.get(i).copied().unwrap_or("");
        let net = parse_net(get(c)).ok_or_else(|| {
            ListError::new(source, n, format!("{:?} is not an address range", get(c)))
        })?;
        let class = NetworkClass::parse(get(k)).ok_or_else(|| {
            ListError::new(
                source,
                n,
                format!(
                    "category {:?} is not one of {}",
                    get(k),
                    NetworkClass::NAMES.join(", ")
                ),
            )
        })?;
        rows.push((get(o).to_owned(), class, net));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lookup_finds_every_network_holding_the_address() {
        let mut n = Networks::default();
        let nets = |v: &[&str]| {
            v.iter()
                .map(|s| s.parse::<IpNet>().unwrap())
                .collect::<Vec<_>>()
        };
        n.add(
            "google",
            NetworkClass::ImageProxy,
            nets(&["66.249.80.0/20", "2001:4860::/32"]),
        )
        .unwrap();
        n.add(
            "cloud",
            NetworkClass::Hosting,
            nets(&["66.0.0.0/8", "10.0.0.0/24", "10.0.1.0/24"]),
        )
        .unwrap();
        let g = n.index_of("Google").unwrap();
        let c = n.index_of("cloud").unwrap();
        let h = n.lookup(ip("66.249.84.1"));
        assert!(h.contains(g) && h.contains(c));
        let h = n.lookup(ip("66.1.1.1"));
        assert!(!h.contains(g) && h.contains(c));
        assert!(n.lookup(ip("2001:4860:4860::8888")).contains(g));
        assert!(n.lookup(ip("::ffff:66.249.80.1")).contains(g), "v4-mapped");
        assert!(
            n.lookup(ip("10.0.1.255")).contains(c),
            "adjacent ranges merged"
        );
        assert!(n.lookup(ip("10.0.2.0")).is_empty());
        assert!(n.lookup(ip("65.255.255.255")).is_empty());
        assert!(n.lookup(ip("67.0.0.0")).is_empty(), "just past the cloud");
        assert!(n.lookup(ip("66.255.255.255")).contains(c));
        n.add(
            "top",
            NetworkClass::Vpn,
            nets(&["255.255.255.0/24", "::/0"]),
        )
        .unwrap();
        let t = n.index_of("top").unwrap();
        assert!(
            n.lookup(ip("255.255.255.255")).contains(t),
            "the last address"
        );
        assert!(
            n.lookup(ip("2001:4860:4860::8888")).contains(g),
            "index rebuilt after add"
        );
        assert!(n.lookup(ip("::1")).contains(t));
    }

    #[test]
    fn range_files_in_their_publishers_formats() {
        let csv = parse_ranges("a", "prefix,country,region,city\n172.224.226.0/27,GB,GB-EN,London\n2a02:26f7:b3c0:4000::/64,GB,,\n").unwrap();
        assert_eq!(csv.len(), 2);
        let json = parse_ranges(
            "g",
            r#"{"prefixes":[{"ipv4Prefix":"8.8.4.0/24"},{"ipv6Prefix":"2001:4860::/32"}]}"#,
        )
        .unwrap();
        assert_eq!(json.len(), 2);
        let oracle =
            r#"{"regions":[{"region":"x","cidrs":[{"cidr":"40.233.0.0/19","tags":["OCI"]}]}]}"#;
        assert_eq!(parse_ranges("o", oracle).unwrap().len(), 1);
        let geofeed = "# comment\n45.32.0.0/16,US,US-NJ,Piscataway,\n192.0.2.0/24,US,,,\n";
        assert_eq!(
            parse_ranges("v", geofeed).unwrap().len(),
            1,
            "documentation space dropped"
        );
        let e = parse_ranges("x", "cidr\n1.2.3.0/24\n<html>\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(parse_ranges("x", "{}").is_err());
    }

    #[test]
    fn networks_csv_needs_its_columns() {
        let rows = parse_networks_csv(
            "n",
            "# c\ncidr,organization,category\n104.47.0.0/17,Microsoft,security_scanner\n",
        )
        .unwrap();
        assert_eq!(rows[0].1, NetworkClass::SecurityScanner);
        let e =
            parse_networks_csv("n", "cidr,organization,category\n1.0.0.0/8,X,nope\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_networks_csv("n", "cidr,org\n").is_err());
    }
}
