//! Throughput of `trackrelay::classify::classify` on one core.
//!
//! Plain `std::time::Instant` timing (no criterion), as `benches/rewrite.rs`:
//! the observations are built beforehand from the shared corpus's agents
//! (isbot's crawler and browser fixtures, crawler-user-agents' instances,
//! the email-client and proxy agents), each as an open and as a click, with
//! addresses cycling through Apple's relay, Google, AWS, DigitalOcean,
//! Microsoft, ProtonVPN, a scanner network and addresses in no list, and a
//! browser's headers on every other one; a click every fourth has an
//! earlier hit on the message in its context. The lists are the built-in
//! ones of a fresh install: `conf/classify/` and the snapshot of every
//! published range list (26 networks, about 15,000 merged ranges).
//!
//! One untimed warm-up pass, then N timed passes; only the `classify` calls
//! are timed. Single-threaded.
//!
//! ```text
//! cargo bench --bench classify [-- --rounds N]
//! ```
//!
//! Human-readable summary on stderr; one JSON line on stdout.

#[path = "../tests/support/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use trackrelay::classify::{self, Context, Hit, Lists, Observation};
use trackrelay::token::Kind;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lists a fresh install runs with: the example config, its range
/// files not fetched, so the built-in snapshot of every published list.
fn lists() -> Lists {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = trackrelay::config::Config::load(&root.join("conf/trackrelay.toml"))
        .expect("example config")
        .classifier;
    for range in &mut config.ranges {
        let name = range.file.file_name().unwrap().to_owned();
        range.file = root.join("target/no-range-files").join(name);
    }
    Lists::load(&config).expect("lists load").lists
}

/// Every agent of the corpus lists.
fn agents() -> Vec<String> {
    let ua = corpus::root().join("ua");
    let mut out = Vec::new();
    for f in ["isbot-fixtures-crawlers.yml", "isbot-fixtures-browsers.yml"] {
        for line in read(&ua.join("bot-lists").join(f)).lines() {
            if let Some(item) = line.strip_prefix("  - ") {
                out.push(item.trim_matches('"').to_owned());
            }
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&read(&ua.join("bot-lists/crawler-user-agents.json"))).unwrap();
    for entry in json.as_array().unwrap() {
        for i in entry["instances"].as_array().into_iter().flatten() {
            out.push(i.as_str().unwrap().to_owned());
        }
    }
    for line in read(&ua.join("email-client-and-proxy-user-agents.tsv"))
        .lines()
        .skip(1)
    {
        out.push(line.split('\t').nth(2).unwrap_or("").to_owned());
    }
    out
}

fn parse_rounds() -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(20, |n| n.parse().expect("--rounds N"))
}

fn main() {
    let rounds = parse_rounds();
    let lists = lists();
    let agents = agents();
    let ips: Vec<IpAddr> = [
        "192.0.2.44",
        "104.28.28.1",
        "66.249.84.10",
        "3.0.0.1",
        "104.47.1.1",
        "64.227.0.10",
        "4.128.0.10",
        "5.157.13.2",
        "2a02:26f7:b00a:4000::1",
        "2001:db8::1",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let headers = vec![
        ("Accept".to_owned(), "text/html,*/*;q=0.8".to_owned()),
        ("Accept-Language".to_owned(), "en-GB,en;q=0.9".to_owned()),
        ("Accept-Encoding".to_owned(), "gzip, br".to_owned()),
    ];
    let earlier = [Hit {
        at_ms: 999_000,
        kind: Kind::Open,
        ip: None,
        link: None,
    }];
    let mut cases = Vec::new();
    for (i, ua) in agents.iter().enumerate() {
        for kind in [Kind::Open, Kind::Click] {
            let obs = Observation {
                kind,
                at_ms: 1_000_000,
                method: "GET",
                ip: Some(ips[i % ips.len()]),
                user_agent: Some(ua.as_str()),
                headers: if i % 2 == 0 { &headers } else { &[] },
                link: (kind == Kind::Click).then_some(0),
            };
            let ctx = Context {
                hits: if i % 4 == 0 { &earlier } else { &[] },
                seconds_after_send: Some(3_600.0),
                recipients_from_ip: 1,
            };
            cases.push((obs, ctx));
        }
    }
    let mut machine = 0usize;
    for (o, c) in &cases {
        machine += usize::from(classify::classify(o, c, &lists).bot.machine);
    }
    let start = Instant::now();
    for _ in 0..rounds {
        for (o, c) in &cases {
            black_box(classify::classify(black_box(o), black_box(c), &lists));
        }
    }
    let elapsed = start.elapsed();
    let n = cases.len() as f64 * f64::from(rounds);
    let per_s = n / elapsed.as_secs_f64();
    eprintln!(
        "classify: {} observations x {rounds} rounds in {:.3} s = {:.0} observations/s on one core ({:.2} us each; {:.1}% machine)",
        cases.len(),
        elapsed.as_secs_f64(),
        per_s,
        1e6 / per_s,
        100.0 * machine as f64 / cases.len() as f64
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "classify",
            "observations": cases.len(),
            "rounds": rounds,
            "seconds": elapsed.as_secs_f64(),
            "observations_per_s": per_s.round(),
        })
    );
}
