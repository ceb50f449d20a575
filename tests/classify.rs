//! The classifier on the real lists of the shared corpus (`ua/`): isbot's
//! crawler fixtures and crawler-user-agents' instances must be machine,
//! isbot's browser fixtures and the email-client agents must not; email
//! clients get the right name; the Gmail, Yahoo and Apple proxies the right
//! proxy_type. Then one scenario per signal (docs/classify.md).
//!
//! Lists are the committed `conf/classify/` files plus the corpus copies of
//! the downloaded ranges (Apple's egress, Google's, AWS as hosting).

#[path = "support/corpus.rs"]
mod corpus;
#[path = "classify/evaluation.rs"]
mod evaluation;
#[path = "classify/labelled.rs"]
mod labelled;

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use trackrelay::classify::networks::NetworkClass;
use trackrelay::classify::{
    self, Classification, ClientType, Context, DeviceType, Hit, Lists, Observation, ProxyType,
    Rules, Verdict,
};
use trackrelay::token::Kind;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lists() -> &'static Lists {
    static LISTS: OnceLock<Lists> = OnceLock::new();
    LISTS.get_or_init(|| {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/classify");
        let ranges = corpus::root().join("ua/ip-ranges");
        let r = |f: &str| read(&ranges.join(f));
        let (apple4, apple6) = (
            r("apple-private-relay-egress-ipv4.csv"),
            r("apple-private-relay-egress-ipv6.csv"),
        );
        let (google4, google6) = (r("google-ipv4.csv"), r("google-ipv6.csv"));
        let amazon = r("amazon-ipv4.csv");
        Lists::parse(
            &read(&conf.join("bot-patterns.txt")),
            &read(&conf.join("user-agents.tsv")),
            &read(&conf.join("networks.csv")),
            &[
                ("apple", NetworkClass::AppleRelay, &apple4),
                ("apple", NetworkClass::AppleRelay, &apple6),
                ("google", NetworkClass::ImageProxy, &google4),
                ("google", NetworkClass::ImageProxy, &google6),
                ("amazon", NetworkClass::Hosting, &amazon),
            ],
            Rules::default(),
        )
        .expect("lists load")
    })
}

const APPLE_IP: &str = "104.28.28.1"; // apple-private-relay-egress-ipv4.csv 104.28.28.0/26
const GOOGLE_IP: &str = "66.249.84.10"; // google-ipv4.csv 66.249.64.0/19
const YAHOO_IP: &str = "98.137.0.10"; // networks.csv 98.137.0.0/18, Yahoo
const PLAIN_IP: &str = "192.0.2.44"; // TEST-NET-1: in no list
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn obs<'a>(kind: Kind, ip: &str, ua: &'a str) -> Observation<'a> {
    Observation {
        kind,
        at_ms: 1_000_000,
        method: "GET",
        ip: ip.parse::<IpAddr>().ok(),
        user_agent: Some(ua),
        headers: &[],
        link: (kind == Kind::Click).then_some(0),
    }
}

fn judge(o: &Observation<'_>) -> Verdict {
    classify::classify(o, &Context::default(), lists())
}

/// The `  - agent` items of an isbot fixture file, by group.
fn yaml_items(path: &Path) -> Vec<(String, String)> {
    let mut group = String::new();
    let mut out = Vec::new();
    for line in read(path).lines() {
        if let Some(item) = line.strip_prefix("  - ") {
            out.push((group.clone(), unquote(item)));
        } else if !line.starts_with(' ') && line.ends_with(':') {
            group = unquote(line.trim_end_matches(':'));
        }
    }
    out
}

fn unquote(s: &str) -> String {
    if s.starts_with('"') {
        serde_json::from_str(s).unwrap_or_else(|_| s.trim_matches('"').to_owned())
    } else if let Some(inner) = s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else {
        s.to_owned()
    }
}

fn crawler_agents() -> Vec<(String, String)> {
    let dir = corpus::root().join("ua/bot-lists");
    let mut all = yaml_items(&dir.join("isbot-fixtures-crawlers.yml"));
    let json: serde_json::Value =
        serde_json::from_str(&read(&dir.join("crawler-user-agents.json"))).unwrap();
    for entry in json.as_array().unwrap() {
        let pattern = entry["pattern"].as_str().unwrap_or("").to_owned();
        for i in entry["instances"].as_array().into_iter().flatten() {
            all.push((pattern.clone(), i.as_str().unwrap().to_owned()));
        }
    }
    all
}

/// (corpus client name, agent) of every email-client agent: the rows of
/// email-client-and-proxy-user-agents.tsv and device-detector's PIM fixtures.
fn email_agents() -> Vec<(String, String)> {
    let ua = corpus::root().join("ua");
    let mut out = Vec::new();
    for line in read(&ua.join("email-client-and-proxy-user-agents.tsv"))
        .lines()
        .skip(1)
    {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols[0].starts_with("email_client") {
            out.push((cols[1].to_owned(), cols[2].to_owned()));
        }
    }
    let mut agent = None;
    for line in read(&ua.join("device-detector/fixtures-pim.yml")).lines() {
        if let Some(a) = line.strip_prefix("  user_agent: ") {
            agent = Some(unquote(a));
        } else if let Some(name) = line.strip_prefix("    name: ")
            && let Some(a) = agent.take()
        {
            out.push((unquote(name), a));
        }
    }
    out
}

/// Our client_name for the corpus's names of the same client.
fn our_name(corpus_name: &str) -> &str {
    match corpus_name {
        "Microsoft Outlook" | "Outlook Mail" => "Outlook",
        // Windows Live Mail sends Outlook Express's agent: they cannot be told apart.
        "Windows Live Mail" => "Outlook Express",
        "Yahoo! Mail" => "Yahoo Mail",
        "Apple Mail / iOS WebKit (no Safari token)" => "Apple Mail",
        other => other,
    }
}

/// Share of agents judged machine (as opens from an address in no list).
fn machine_share(agents: &[(String, String)], label: &str) -> (usize, Vec<String>) {
    let mut machine = 0;
    let mut wrong = Vec::new();
    for (group, ua) in agents {
        let v = judge(&obs(Kind::Open, PLAIN_IP, ua));
        if v.bot.machine {
            machine += 1;
        }
        let expected_machine = label == "crawler";
        if v.bot.machine != expected_machine {
            wrong.push(format!(
                "  [{group}] {ua} -> {}",
                v.bot.classification.as_str()
            ));
        }
    }
    (machine, wrong)
}

#[test]
fn corpus_agents_precision_and_recall() {
    let crawlers = crawler_agents();
    let browsers = yaml_items(&corpus::root().join("ua/bot-lists/isbot-fixtures-browsers.yml"));
    let emails = email_agents();
    assert!(crawlers.len() > 2000 && browsers.len() > 500 && emails.len() > 100);
    let (c_machine, c_wrong) = machine_share(&crawlers, "crawler");
    let (b_machine, b_wrong) = machine_share(&browsers, "browser");
    let (e_machine, e_wrong) = machine_share(&emails, "email");
    let pct = |n: usize, d: usize| 100.0 * n as f64 / d as f64;
    let human_total = browsers.len() + emails.len();
    let human_right = human_total - b_machine - e_machine;
    eprintln!("class     agents  machine");
    eprintln!(
        "crawlers  {:>6}  {:>6.2}%",
        crawlers.len(),
        pct(c_machine, crawlers.len())
    );
    eprintln!(
        "browsers  {:>6}  {:>6.2}%",
        browsers.len(),
        pct(b_machine, browsers.len())
    );
    eprintln!(
        "email     {:>6}  {:>6.2}%",
        emails.len(),
        pct(e_machine, emails.len())
    );
    eprintln!(
        "machine: precision {:.2}%, recall {:.2}%",
        pct(c_machine, c_machine + b_machine + e_machine),
        pct(c_machine, crawlers.len())
    );
    eprintln!(
        "human:   precision {:.2}%, recall {:.2}%",
        pct(human_right, human_right + crawlers.len() - c_machine),
        pct(human_right, human_total)
    );
    for w in c_wrong.iter().chain(&b_wrong).chain(&e_wrong).take(40) {
        eprintln!("{w}");
    }
    assert!(
        pct(c_machine, crawlers.len()) >= 98.0,
        "crawlers machine below 98%"
    );
    assert!(
        pct(b_machine, browsers.len()) <= 1.0,
        "browsers machine above 1%"
    );
    assert!(
        pct(e_machine, emails.len()) <= 1.0,
        "email clients machine above 1%"
    );
}

#[test]
fn email_clients_get_their_name() {
    let mut wrong = Vec::new();
    for (name, ua) in email_agents() {
        let v = judge(&obs(Kind::Open, PLAIN_IP, &ua));
        if v.client_name.as_deref() != Some(our_name(&name))
            || v.client_type != Some(ClientType::EmailClient)
        {
            wrong.push(format!(
                "{name}: {ua} -> {:?} {:?}",
                v.client_name, v.client_type
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn mailbox_proxies_get_their_proxy_type() {
    let gmail =
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
    let yahoo = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html";
    for (ua, ip, proxy) in [
        (gmail, GOOGLE_IP, ProxyType::Gmail),
        (yahoo, YAHOO_IP, ProxyType::Yahoo),
    ] {
        let v = judge(&obs(Kind::Open, ip, ua));
        assert_eq!(v.bot.classification, Classification::ImageProxy, "{ua}");
        assert_eq!(v.bot.proxy_type, Some(proxy));
        assert!(v.bot.counts_for_metrics && !v.bot.machine);
        assert_eq!(v.client_type, Some(ClientType::Proxy));
    }
}

#[test]
fn apple_mpp_open_is_a_privacy_proxy_and_does_not_count() {
    for ip in [APPLE_IP, "2a02:26f7:b00a:4000::1"] {
        let v = judge(&obs(Kind::Open, ip, "Mozilla/5.0"));
        assert_eq!(v.bot.classification, Classification::PrivacyProxy, "{ip}");
        assert_eq!(v.bot.proxy_type, Some(ProxyType::AppleMpp));
        assert!(v.bot.machine && !v.bot.counts_for_metrics && v.bot.detected);
    }
}

#[test]
fn private_relay_click_stays_genuine() {
    let v = judge(&obs(Kind::Click, APPLE_IP, SAFARI));
    assert_eq!(v.bot.classification, Classification::Genuine);
    assert_eq!(v.bot.proxy_type, Some(ProxyType::ApplePrivateRelay));
    assert!(v.bot.counts_for_metrics);
    assert_eq!(v.client_name.as_deref(), Some("Safari"));
    assert_eq!(v.device_type, Some(DeviceType::Mobile));
}

#[test]
fn gmail_proxy_agent_from_elsewhere_is_suspicious() {
    let ua =
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
    let v = judge(&obs(Kind::Open, PLAIN_IP, ua));
    assert_eq!(v.bot.classification, Classification::Suspicious);
    assert_eq!(v.bot.proxy_type, None);
    assert!(!v.bot.counts_for_metrics);
    assert!(
        v.bot
            .reason_codes
            .iter()
            .any(|r| r == "proxy_user_agent_from_other_network")
    );
}

#[test]
fn head_request_does_not_count() {
    let mut o = obs(Kind::Click, PLAIN_IP, CHROME);
    o.method = "HEAD";
    let v = judge(&o);
    assert_eq!(v.bot.classification, Classification::SecurityScanner);
    assert!(!v.bot.counts_for_metrics);
    assert!(v.bot.reason_codes.iter().any(|r| r == "head_request"));
}

#[test]
fn prefetch_does_not_count() {
    let headers = [("Sec-Purpose".to_owned(), "prefetch".to_owned())];
    let mut o = obs(Kind::Click, PLAIN_IP, CHROME);
    o.headers = &headers;
    let v = judge(&o);
    assert_eq!(v.bot.classification, Classification::PrivacyProxy);
    assert!(!v.bot.counts_for_metrics);
}

#[test]
fn links_clicked_within_two_seconds_are_a_scanner() {
    let o = obs(Kind::Click, PLAIN_IP, CHROME);
    let hits = [Hit {
        at_ms: o.at_ms + 400,
        kind: Kind::Click,
        ip: o.ip,
        link: Some(1),
    }];
    let ctx = Context {
        hits: &hits,
        ..Context::default()
    };
    let v = classify::classify(&o, &ctx, lists());
    assert_eq!(v.bot.classification, Classification::SecurityScanner);
    assert!(v.bot.reason_codes.iter().any(|r| r == "link_burst"));
    // The same two links a minute apart are a person.
    let later = [Hit {
        at_ms: o.at_ms + 60_000,
        ..hits[0]
    }];
    let ctx = Context {
        hits: &later,
        ..Context::default()
    };
    let v = classify::classify(&o, &ctx, lists());
    assert_eq!(v.bot.classification, Classification::Genuine);
}

#[test]
fn a_click_seconds_after_relaying_is_not_counted() {
    let o = obs(Kind::Click, PLAIN_IP, CHROME);
    let at = |s| Context {
        seconds_after_send: Some(s),
        ..Context::default()
    };
    let v = classify::classify(&o, &at(1.0), lists());
    assert_eq!(v.bot.classification, Classification::SecurityScanner);
    let v = classify::classify(&o, &at(6.0), lists());
    assert_eq!(v.bot.classification, Classification::Suspicious);
    let v = classify::classify(&o, &at(3_600.0), lists());
    assert_eq!(v.bot.classification, Classification::Genuine);
    assert!(v.bot.counts_for_metrics);
}

#[test]
fn slackbot_is_a_link_preview() {
    let v = judge(&obs(
        Kind::Click,
        PLAIN_IP,
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    ));
    assert_eq!(v.bot.classification, Classification::LinkPreviewBot);
    assert_eq!(v.client_name.as_deref(), Some("Slack"));
    assert!(v.bot.machine);
}

#[test]
fn many_recipients_from_one_address_is_suspicious() {
    let o = obs(Kind::Open, PLAIN_IP, CHROME);
    let ctx = Context {
        recipients_from_ip: 50,
        ..Context::default()
    };
    let v = classify::classify(&o, &ctx, lists());
    assert_eq!(v.bot.classification, Classification::Suspicious);
}

#[test]
fn scanner_networks_and_hosting() {
    // Microsoft Exchange Online Protection, networks.csv.
    let v = judge(&obs(Kind::Click, "104.47.1.1", CHROME));
    assert_eq!(v.bot.classification, Classification::SecurityScanner);
    // A browser agent from a cloud is not a person, with confidence.
    let v = judge(&obs(Kind::Click, "3.0.0.1", CHROME));
    assert_eq!(v.bot.classification, Classification::Suspicious);
    assert!(v.bot.reason_codes.iter().any(|r| r == "hosting_network"));
}

#[test]
fn tools_are_generic_bots_and_empty_or_bare_agents_suspicious() {
    for ua in ["curl/8.4.0", "python-requests/2.31.0"] {
        let v = judge(&obs(Kind::Open, PLAIN_IP, ua));
        assert_eq!(v.bot.classification, Classification::GenericBot, "{ua:?}");
    }
    for ua in ["", "Mozilla/5.0"] {
        for kind in [Kind::Open, Kind::Click] {
            let v = judge(&obs(kind, PLAIN_IP, ua));
            assert_eq!(v.bot.classification, Classification::Suspicious, "{ua:?}");
            assert!(v.bot.machine);
        }
    }
}

#[test]
fn an_unknown_agent_clicking_is_unverified_but_counts() {
    let v = judge(&obs(
        Kind::Click,
        PLAIN_IP,
        "Mozilla/5.0 (X11; Linux x86_64) SomeNewThing",
    ));
    assert_eq!(v.bot.classification, Classification::UnverifiedClick);
    assert!(v.bot.counts_for_metrics && !v.bot.detected);
}
