//! The labelled set (labelled.rs) judged with two sets of lists: out of
//! the box (the example config, no range file fetched: the built-in
//! snapshot) and after `update-ranges` (the example config's range files
//! written from the corpus copies of the published lists). Prints per-class
//! precision and recall, human/machine agreement, exact class, proxy type
//! and humans judged machine, and asserts the targets of issue 22.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use trackrelay::classify::{self, Classification as C, Context, Lists, Observation};
use trackrelay::config::Config;

use super::labelled::{self, Row};

/// Lists as the example config loads them, its range files in `dir`
/// (`None`: no file there, as on a fresh install).
fn example_lists(files: Option<&Path>) -> Lists {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config::load(&root.join("conf/trackrelay.toml"))
        .expect("example config")
        .classifier;
    let tmp = tempfile::tempdir().unwrap();
    for range in &mut config.ranges {
        let name = range.file.file_name().unwrap().to_owned();
        range.file = files.map_or_else(|| tmp.path().join(&name), |d| d.join(&name));
    }
    Lists::load(&config).expect("lists").lists
}

/// The corpus copy of each list the example config fetches, written to
/// `dir` under the config's file name (v4 and v6 in one file, as the
/// publishers serve them).
fn write_range_files(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join("conf/trackrelay.toml"))
        .unwrap()
        .classifier;
    let corpus = super::corpus::root().join("ua/ip-ranges");
    for range in &config.ranges {
        let sources: &[&str] = match range.name.as_str() {
            "apple" => &[
                "apple-private-relay-egress-ipv4.csv",
                "apple-private-relay-egress-ipv6.csv",
            ],
            "google" => &["google-goog.json"],
            "googlebot" => &["google-googlebot.json"],
            "google-cloud" => &["google-cloud.json"],
            "aws" => &["amazon-ipv4.csv", "amazon-ipv6.csv"],
            "google-special-crawlers" => &["google-special-crawlers.json"],
            "google-user-triggered-fetchers" => &["google-user-triggered-fetchers.json"],
            "digitalocean" => &["digitalocean-ipv4.csv", "digitalocean-ipv6.csv"],
            "linode" => &["linode-ipv4.csv", "linode-ipv6.csv"],
            "vultr" => &["vultr-ipv4.csv", "vultr-ipv6.csv"],
            "oracle" => &["oracle-ipv4.csv"],
            "bing" => &["bing-ipv4.csv"],
            other => panic!("no corpus copy for range list {other}"),
        };
        let text: String = if sources[0].ends_with(".json") {
            std::fs::read_to_string(corpus.join(sources[0])).unwrap()
        } else {
            // One header line, then the v4 and v6 rows.
            let mut text = String::from("cidr\n");
            for f in sources {
                let body = std::fs::read_to_string(corpus.join(f)).unwrap();
                text.extend(body.lines().skip(1).map(|l| format!("{l}\n")));
            }
            text
        };
        let file: PathBuf = dir.join(range.file.file_name().unwrap());
        std::fs::write(file, text).unwrap();
    }
}

/// What one configuration scored.
pub struct Score {
    pub rows: usize,
    pub human_machine: f64,
    pub exact: f64,
    pub proxy: f64,
    pub humans_judged_machine: Vec<String>,
    /// class → (precision, recall, support)
    pub per_class: BTreeMap<&'static str, (f64, f64, usize)>,
    pub misses: Vec<String>,
}

fn score(rows: &[Row], lists: &Lists) -> Score {
    let pct = |n: usize, d: usize| {
        if d == 0 {
            100.0
        } else {
            100.0 * n as f64 / d as f64
        }
    };
    let (mut hm, mut exact, mut proxy) = (0, 0, 0);
    let mut humans_judged_machine = Vec::new();
    let mut misses = Vec::new();
    // class → (true positives, predicted, actual)
    let mut counts: BTreeMap<&'static str, (usize, usize, usize)> = BTreeMap::new();
    for row in rows {
        let o = Observation {
            kind: row.kind,
            at_ms: 1_000_000,
            method: "GET",
            ip: Some(row.ip),
            user_agent: Some(&row.ua),
            headers: &[],
            link: (row.kind == trackrelay::token::Kind::Click).then_some(0),
        };
        let ctx = Context {
            seconds_after_send: Some(3_600.0),
            recipients_from_ip: 1,
            ..Context::default()
        };
        let v = classify::classify(&o, &ctx, lists);
        let got = v.bot.classification;
        let expect_machine = !row.class.counts_for_metrics();
        hm += usize::from(v.bot.machine == expect_machine);
        exact += usize::from(got == row.class);
        proxy += usize::from(v.bot.proxy_type == row.proxy);
        if !expect_machine && v.bot.machine {
            humans_judged_machine.push(format!(
                "[{}] {} {} -> {}",
                row.group,
                row.ip,
                row.ua,
                got.as_str()
            ));
        }
        if got != row.class || v.bot.proxy_type != row.proxy {
            misses.push(format!(
                "[{}] {:?} {} {:?} -> {} {:?} ({})",
                row.group,
                row.kind,
                row.ip,
                row.ua,
                got.as_str(),
                v.bot.proxy_type,
                v.bot.reason_codes.iter().collect::<Vec<_>>().join(",")
            ));
        }
        counts.entry(row.class.as_str()).or_default().2 += 1;
        let e = counts.entry(got.as_str()).or_default();
        e.1 += 1;
        if got == row.class {
            e.0 += 1;
        }
    }
    let per_class = counts
        .into_iter()
        .map(|(c, (tp, predicted, actual))| (c, (pct(tp, predicted), pct(tp, actual), actual)))
        .collect();
    Score {
        rows: rows.len(),
        human_machine: pct(hm, rows.len()),
        exact: pct(exact, rows.len()),
        proxy: pct(proxy, rows.len()),
        humans_judged_machine,
        per_class,
        misses,
    }
}

fn print(label: &str, s: &Score) {
    eprintln!("\n{label}: {} hits", s.rows);
    eprintln!(
        "human/machine {:.1}%  exact class {:.1}%  proxy type {:.1}%  humans judged machine {}",
        s.human_machine,
        s.exact,
        s.proxy,
        s.humans_judged_machine.len()
    );
    eprintln!("| class | precision | recall | hits |");
    for (c, (p, r, n)) in &s.per_class {
        eprintln!("| {c} | {p:.1}% | {r:.1}% | {n} |");
    }
    for m in s.misses.iter().take(60) {
        eprintln!("  miss {m}");
    }
}

#[test]
fn labelled_set_out_of_the_box_and_after_update_ranges() {
    let rows = labelled::rows();
    let classes: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.class.as_str()).collect();
    for c in [
        C::Genuine,
        C::ImageProxy,
        C::PrivacyProxy,
        C::SecurityScanner,
        C::LinkPreviewBot,
        C::GenericBot,
        C::Suspicious,
        C::UnverifiedClick,
    ] {
        assert!(classes.contains(c.as_str()), "no {} row", c.as_str());
    }
    let out_of_the_box = score(&rows, &example_lists(None));
    print(
        "out of the box (example config, built-in lists)",
        &out_of_the_box,
    );
    let dir = tempfile::tempdir().unwrap();
    write_range_files(dir.path());
    let updated = score(&rows, &example_lists(Some(dir.path())));
    print(
        "after update-ranges (range files of the example config)",
        &updated,
    );
    for (label, s) in [
        ("out of the box", &out_of_the_box),
        ("after update-ranges", &updated),
    ] {
        assert!(
            s.human_machine >= 97.0,
            "{label}: human/machine {:.1}%",
            s.human_machine
        );
        assert!(s.exact >= 90.0, "{label}: exact class {:.1}%", s.exact);
        assert!(s.proxy >= 98.0, "{label}: proxy type {:.1}%", s.proxy);
        assert!(
            s.humans_judged_machine.is_empty(),
            "{label}: humans judged machine:\n{}",
            s.humans_judged_machine.join("\n")
        );
    }
}

fn judge(lists: &Lists, kind: trackrelay::token::Kind, ip: &str, ua: &str) -> classify::Verdict {
    let o = Observation {
        kind,
        at_ms: 1_000_000,
        method: "GET",
        ip: ip.parse().ok(),
        user_agent: Some(ua),
        headers: &[],
        link: (kind == trackrelay::token::Kind::Click).then_some(0),
    };
    classify::classify(&o, &Context::default(), lists)
}

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const APPLE_MAIL: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)";

/// Issue 22's acceptance: a fresh install with no network recognises an
/// Apple MPP open and does not count a Chrome click from a VPS.
#[test]
fn fresh_install_knows_apple_mpp_and_vps_clicks() {
    use trackrelay::classify::ProxyType;
    use trackrelay::token::Kind;
    let lists = example_lists(None);
    // 17.0.0.0/8 is Apple's own; 104.28.28.0/26 is in Apple's egress list.
    let v = judge(&lists, Kind::Open, "104.28.28.10", APPLE_MAIL);
    assert_eq!(v.bot.classification, C::PrivacyProxy);
    assert_eq!(v.bot.proxy_type, Some(ProxyType::AppleMpp));
    assert!(!v.bot.counts_for_metrics);
    // DigitalOcean (digitalocean-ipv4.csv 64.227.0.0/17), Vultr, Linode, Oracle.
    for ip in ["64.227.0.10", "45.32.0.10", "23.92.16.10", "40.233.0.10"] {
        let v = judge(&lists, Kind::Click, ip, CHROME);
        assert_eq!(v.bot.classification, C::Suspicious, "{ip}");
        assert!(!v.bot.counts_for_metrics, "{ip}");
        assert!(
            v.bot.reason_codes.iter().any(|r| r == "hosting_network"),
            "{ip}"
        );
    }
}

/// Opens and clicks from each kind of network: a mailbox provider's cloud
/// counts opens and scans clicks; mailbox image proxies count opens only
/// from their own network; scanners and hosting never count; a VPN click
/// counts as unverified.
#[test]
fn per_kind_and_network() {
    use trackrelay::token::Kind::{Click, Open};
    let lists = example_lists(None);
    let gmail =
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
    let yahoo = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html";
    let cases = [
        // Microsoft space (microsoft-ipv4.csv 4.128.0.0/9): Outlook.com / Safe Links.
        (Open, "4.128.0.10", CHROME, C::ImageProxy),
        (Click, "4.128.0.10", CHROME, C::SecurityScanner),
        // Exchange Online Protection: a scanner either way.
        (Open, "104.47.1.1", CHROME, C::SecurityScanner),
        (Click, "104.47.1.1", CHROME, C::SecurityScanner),
        // Gmail's proxy on Google's network (goog.json 66.249.80.0/20).
        (Open, "66.249.84.10", gmail, C::ImageProxy),
        (Click, "66.249.84.10", gmail, C::GenericBot),
        (Open, "64.227.0.10", gmail, C::Suspicious),
        // Yahoo's proxy on Yahoo's network.
        (Open, "98.137.0.10", yahoo, C::ImageProxy),
        (Open, "3.0.0.10", yahoo, C::Suspicious),
        // Hosting (AWS): opens and clicks with a browser's agent.
        (Open, "3.0.0.10", CHROME, C::Suspicious),
        (Click, "3.0.0.10", CHROME, C::Suspicious),
        // An email client's open from Microsoft space is a person.
        (
            Open,
            "4.128.0.10",
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.6326; Pro)",
            C::Genuine,
        ),
        // ProtonVPN exits (protonvpn-ipv4.csv 5.157.13.2/32).
        (Click, "5.157.13.2", CHROME, C::UnverifiedClick),
        (Open, "5.157.13.2", APPLE_MAIL, C::Genuine),
        // Google's special crawlers (Google-Safety).
        (Click, "198.51.100.20", "Google-Safety", C::SecurityScanner),
        // HEY's image proxy prefetches.
        (
            Open,
            "198.51.100.20",
            "hey.com/imageproxy Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36",
            C::PrivacyProxy,
        ),
        // Opera Mini fetches through Opera's servers.
        (
            Click,
            "198.51.100.20",
            "Opera/9.80 (Android; Opera Mini/12.0.1987/37.7327; U; pl) Presto/2.12.423 Version/12.16",
            C::UnverifiedClick,
        ),
        (
            Click,
            "198.51.100.20",
            "Snap URL Preview Service; bot; snapchat; https://developers.snap.com/robots",
            C::LinkPreviewBot,
        ),
        (
            Click,
            "198.51.100.20",
            "mozilla/5.0 applewebkit/537.36 (khtml, like gecko; compatible; bluesky cardyb/1.1; +mailto:support@bsky.app) chrome/w.x.y.z safari/537.36",
            C::LinkPreviewBot,
        ),
        (
            Click,
            "198.51.100.20",
            "Zoom Marketplace/1.0a",
            C::LinkPreviewBot,
        ),
    ];
    let mut wrong = Vec::new();
    for (kind, ip, ua, want) in cases {
        let v = judge(&lists, kind, ip, ua);
        if v.bot.classification != want {
            wrong.push(format!(
                "{kind:?} {ip} {ua}: {} not {}",
                v.bot.classification.as_str(),
                want.as_str()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Samsung Email, and every email-client agent the corpus publishes, is a
/// person wherever it opens from outside clouds and scanners.
#[test]
fn samsung_email_and_every_published_email_client_is_human() {
    use trackrelay::token::Kind::{Click, Open};
    let lists = example_lists(None);
    let samsung = [
        "Mozilla/5.0 (Linux; Android 13; SM-S911B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 SamsungEmail/6.1.90.16",
        "SamsungEmail/6.1.90.16",
        "com.samsung.android.email.provider/6.1.90.16 (Linux; U; Android 13; SM-S911B)",
    ];
    let agents: Vec<String> = samsung
        .iter()
        .map(|s| s.to_string())
        .chain(super::email_agents().into_iter().map(|(_, a)| a))
        .collect();
    for ua in &agents {
        for kind in [Open, Click] {
            let v = judge(&lists, kind, "198.51.100.20", ua);
            assert!(
                !v.bot.machine,
                "{ua} ({kind:?}) -> {}",
                v.bot.classification.as_str()
            );
        }
    }
    let v = judge(&lists, Open, "198.51.100.20", samsung[1]);
    assert_eq!(v.client_name.as_deref(), Some("Samsung Email"));
}
