//! A labelled set of hits built at test time from the shared corpus: real
//! agents (isbot's fixtures, crawler-user-agents, device-detector, the
//! email-client TSV) and addresses taken from the published range lists
//! (`ua/ip-ranges/`). Each group pairs a kind of agent with a kind of
//! network and carries the label the product's rules give it
//! (docs/classify.md); rows are sampled evenly from the lists, never
//! picked one by one.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use trackrelay::classify::{Classification as C, ProxyType};
use trackrelay::token::Kind;

/// One labelled hit.
#[derive(Debug, Clone)]
pub struct Row {
    pub group: &'static str,
    pub kind: Kind,
    pub ip: IpAddr,
    pub ua: String,
    pub class: C,
    pub proxy: Option<ProxyType>,
}

/// Addresses in no published list (RFC 5737 / 3849 documentation space).
const HOME: [&str; 4] = ["198.51.100.20", "203.0.113.7", "192.0.2.44", "2001:db8::1"];

/// HEY's image proxy agent as its documentation gives it
/// (www.hey.com/image-proxy); the corpus has no HEY agent.
const HEY: &str = "hey.com/imageproxy Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36";
/// The older Gmail proxy agent (before "GoogleImageProxy" was added).
const OLD_GMAIL: &str = "Mozilla/5.0 (Windows; U; Windows NT 5.1; de; rv:1.9.0.7) Gecko/2009021910 Firefox/3.0.7 (via ggpht.com)";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `n` addresses spread evenly over a range file's networks (the second
/// address of each, or the only one).
pub fn addresses(ranges_dir: &Path, files: &[&str], n: usize) -> Vec<IpAddr> {
    let mut nets = Vec::new();
    for f in files {
        let text = read(&ranges_dir.join(f));
        nets.extend(trackrelay::classify::networks::parse_ranges(f, &text).unwrap());
    }
    let step = (nets.len() / n).max(1);
    nets.iter()
        .step_by(step)
        .take(n)
        .map(|net: &IpNet| {
            let hosts = net.hosts().nth(1).or_else(|| net.hosts().next());
            hosts.unwrap_or(net.addr())
        })
        .collect()
}

/// Every `k`-th item.
fn every<T: Clone>(v: &[T], k: usize) -> Vec<T> {
    v.iter().step_by(k.max(1)).cloned().collect()
}

/// The agents of the isbot browser fixture groups named.
fn browsers(groups: &[&str]) -> Vec<String> {
    super::yaml_items(&super::corpus::root().join("ua/bot-lists/isbot-fixtures-browsers.yml"))
        .into_iter()
        .filter(|(g, _)| groups.contains(&g.as_str()))
        .map(|(_, ua)| ua)
        .collect()
}

/// crawler-user-agents instances, split by what their description says.
fn crawlers() -> (Vec<String>, Vec<String>) {
    let json: serde_json::Value = serde_json::from_str(&read(
        &super::corpus::root().join("ua/bot-lists/crawler-user-agents.json"),
    ))
    .unwrap();
    let (mut preview, mut other) = (Vec::new(), Vec::new());
    for e in json.as_array().unwrap() {
        let desc = e["description"].as_str().unwrap_or("").to_ascii_lowercase();
        let target = if desc.contains("link preview") || desc.contains("url preview") {
            &mut preview
        } else if [
            "preview", "proxy", "scan", "secur", "image", "mail", "browser",
        ]
        .iter()
        .any(|w| desc.contains(w))
        {
            continue;
        } else {
            &mut other
        };
        for i in e["instances"].as_array().into_iter().flatten() {
            target.push(i.as_str().unwrap_or("").to_owned());
        }
    }
    (preview, other)
}

/// Agents of the email-client and proxy TSV whose category starts with
/// `category` and whose agent contains `token`.
fn tsv(category: &str, token: &str) -> Vec<String> {
    read(&super::corpus::root().join("ua/email-client-and-proxy-user-agents.tsv"))
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|c| c[0].starts_with(category) && (c[1].contains(token) || c[2].contains(token)))
        .map(|c| c[2].to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The labelled set.
pub fn rows() -> Vec<Row> {
    let dir = super::corpus::root().join("ua/ip-ranges");
    let ips = |files: &[&str], n| addresses(&dir, files, n);
    let home: Vec<IpAddr> = HOME.iter().map(|s| s.parse().unwrap()).collect();
    let apple = ips(
        &[
            "apple-private-relay-egress-ipv4.csv",
            "apple-private-relay-egress-ipv6.csv",
        ],
        40,
    );
    let desktop = browsers(&["Chrome", "Firefox", "Edge", "Opera"]);
    let safari = browsers(&["Safari"]);
    let apple_mail: Vec<String> = tsv("email_client", "Apple Mail")
        .into_iter()
        .chain(["Mozilla/5.0".to_owned()])
        .collect();
    let (previews, bots) = crawlers();
    let scanners: Vec<IpAddr> = read(&dir.join("mail-security-and-mailbox-provider-ranges.csv"))
        .lines()
        .filter(|l| l.contains(",security_scanner,"))
        .filter_map(|l| l.split(',').next()?.parse::<IpNet>().ok())
        .map(|n| n.hosts().nth(1).unwrap_or(n.addr()))
        .collect();
    let yahoo: Vec<IpAddr> = read(&dir.join("mail-security-and-mailbox-provider-ranges.csv"))
        .lines()
        .filter(|l| l.contains(",Yahoo,"))
        .filter_map(|l| l.split(',').next()?.parse::<IpNet>().ok())
        .map(|n| n.hosts().nth(1).unwrap_or(n.addr()))
        .collect();
    let datacenter = ips(
        &[
            "amazon-ipv4.csv",
            "digitalocean-ipv4.csv",
            "digitalocean-ipv6.csv",
            "linode-ipv4.csv",
            "vultr-ipv4.csv",
            "oracle-ipv4.csv",
        ],
        40,
    );
    let google_cloud = ips(&["google-cloud.json"], 10);
    let microsoft: Vec<IpAddr> = ips(&["microsoft-ipv4.csv", "microsoft-ipv6.csv"], 40)
        .into_iter()
        .filter(|ip| !scanners.contains(ip))
        .collect();
    let vpn = ips(&["protonvpn-ipv4.csv"], 30);
    let email_clients: Vec<String> = super::email_agents().into_iter().map(|(_, a)| a).collect();

    let mut out = Vec::new();
    let mut add = |group, kind, ips: &[IpAddr], agents: &[String], class, proxy| {
        for (i, ua) in agents.iter().enumerate() {
            out.push(Row {
                group,
                kind,
                ip: ips[i % ips.len()],
                ua: ua.clone(),
                class,
                proxy,
            });
        }
    };
    let open = Kind::Open;
    let click = Kind::Click;
    let apple_opens: Vec<String> = (0..60)
        .map(|i| apple_mail[i % apple_mail.len()].clone())
        .collect();
    add(
        "apple mpp opens",
        open,
        &apple,
        &apple_opens,
        C::PrivacyProxy,
        Some(ProxyType::AppleMpp),
    );
    add(
        "private relay safari clicks",
        click,
        &apple,
        &every(&safari, 1),
        C::Genuine,
        Some(ProxyType::ApplePrivateRelay),
    );
    add(
        "email client opens at home",
        open,
        &home,
        &email_clients,
        C::Genuine,
        None,
    );
    add(
        "browser clicks at home",
        click,
        &home,
        &every(&desktop, 2),
        C::Genuine,
        None,
    );
    let gmail: Vec<String> = tsv("proxy", "GoogleImageProxy")
        .into_iter()
        .chain([OLD_GMAIL.to_owned()])
        .collect();
    add(
        "gmail proxy opens",
        open,
        &ips(&["google-goog.json"], 10),
        &gmail,
        C::ImageProxy,
        Some(ProxyType::Gmail),
    );
    add(
        "yahoo proxy opens",
        open,
        &yahoo,
        &tsv("proxy", "YahooMailProxy"),
        C::ImageProxy,
        Some(ProxyType::Yahoo),
    );
    add(
        "outlook.com opens (microsoft space)",
        open,
        &microsoft,
        &every(&desktop, 6),
        C::ImageProxy,
        None,
    );
    add(
        "safe links clicks (microsoft space)",
        click,
        &microsoft,
        &every(&desktop, 6),
        C::SecurityScanner,
        None,
    );
    add(
        "scanner network clicks",
        click,
        &scanners,
        &every(&desktop, 4),
        C::SecurityScanner,
        None,
    );
    add(
        "google-safety",
        click,
        &ips(&["google-special-crawlers.json"], 10),
        &vec!["Google-Safety".to_owned(); 5],
        C::SecurityScanner,
        None,
    );
    add(
        "browser clicks from special crawlers",
        click,
        &ips(&["google-special-crawlers.json"], 10),
        &every(&desktop, 10),
        C::SecurityScanner,
        None,
    );
    add(
        "datacenter clicks",
        click,
        &datacenter,
        &every(&desktop, 2),
        C::Suspicious,
        None,
    );
    add(
        "google cloud clicks",
        click,
        &google_cloud,
        &every(&desktop, 8),
        C::Suspicious,
        None,
    );
    add(
        "vpn clicks",
        click,
        &vpn,
        &every(&desktop, 3),
        C::UnverifiedClick,
        None,
    );
    add(
        "vpn opens",
        open,
        &vpn,
        &every(&email_clients, 3),
        C::Genuine,
        None,
    );
    add(
        "proxy browser clicks",
        click,
        &home,
        &browsers(&["Opera Mini", "Puffin", "Silk"]),
        C::UnverifiedClick,
        None,
    );
    add(
        "link preview bots",
        click,
        &home,
        &previews,
        C::LinkPreviewBot,
        None,
    );
    add(
        "generic bots",
        open,
        &home,
        &every(&bots, 8),
        C::GenericBot,
        None,
    );
    add(
        "googlebot from googlebot space",
        click,
        &ips(&["google-googlebot.json"], 10),
        &every(&bots, 40),
        C::GenericBot,
        None,
    );
    let privacy: Vec<String> = [HEY.to_owned()]
        .into_iter()
        .chain(tsv("proxy", "Startpage"))
        .chain(tsv("proxy", "Prefetch Proxy"))
        .collect();
    add(
        "privacy proxies",
        open,
        &home,
        &privacy,
        C::PrivacyProxy,
        None,
    );
    let bare = ["".to_owned(), "Mozilla/5.0".to_owned()];
    add(
        "empty and bare agents opens",
        open,
        &home,
        &bare,
        C::Suspicious,
        None,
    );
    add(
        "empty and bare agents clicks",
        click,
        &home,
        &bare,
        C::Suspicious,
        None,
    );
    let spoofed: Vec<String> = tsv("proxy", "GoogleImageProxy")
        .into_iter()
        .chain(tsv("proxy", "YahooMailProxy"))
        .collect();
    add(
        "spoofed proxy agents",
        open,
        &home,
        &spoofed,
        C::Suspicious,
        None,
    );
    add(
        "spoofed proxy agents from clouds",
        open,
        &datacenter,
        &spoofed,
        C::Suspicious,
        None,
    );
    out
}
