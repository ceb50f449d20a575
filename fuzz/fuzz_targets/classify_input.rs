//! Arbitrary bytes as the JSON lines `trackrelay classify` reads: each line
//! through `classify::input::parse_line` (never panics; an error is a
//! message), and each line that parses through `classify::classify` with
//! the committed lists and a few ranges of each class. The verdict must
//! keep the invariants of SPEC §6: probability 0–100, `machine` is the
//! opposite of `counts_for_metrics`, a class that counts is never
//! `detected`, `apple_mpp` only on opens, and it serialises to JSON.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trackrelay::classify::networks::NetworkClass;
use trackrelay::classify::{self, Lists, ProxyType, Rules, input};
use trackrelay::token::Kind;

static LISTS: LazyLock<Lists> = LazyLock::new(|| {
    Lists::parse(
        include_str!("../../conf/classify/bot-patterns.txt"),
        include_str!("../../conf/classify/user-agents.tsv"),
        include_str!("../../conf/classify/networks.csv"),
        &[
            (
                "apple",
                NetworkClass::AppleRelay,
                "104.28.28.0/26\n2a02:26f7:b00a:4000::/64\n",
            ),
            (
                "google",
                NetworkClass::ImageProxy,
                "66.249.64.0/19\n2001:4860::/32\n",
            ),
            ("aws", NetworkClass::Hosting, "3.0.0.0/15\n"),
            ("bot", NetworkClass::Crawler, "157.55.39.0/24\n"),
            ("chat", NetworkClass::LinkPreview, "149.154.160.0/20\n"),
            ("vpn", NetworkClass::Vpn, "185.159.156.0/22\n"),
        ],
        Rules::default(),
    )
    .expect("committed lists load")
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let Ok(parsed) = input::parse_line(line) else {
            continue;
        };
        let obs = parsed.observation();
        let v = classify::classify(&obs, &parsed.context(), &LISTS);
        let bot = &v.bot;
        assert!(bot.probability <= 100);
        assert_eq!(bot.machine, !bot.counts_for_metrics);
        assert_eq!(
            bot.counts_for_metrics,
            bot.classification.counts_for_metrics()
        );
        assert!(!(bot.counts_for_metrics && bot.detected));
        if bot.proxy_type == Some(ProxyType::AppleMpp) {
            assert_eq!(obs.kind, Kind::Open);
        }
        if bot.proxy_type == Some(ProxyType::ApplePrivateRelay) {
            assert_eq!(obs.kind, Kind::Click);
        }
        serde_json::to_string(&v).expect("a verdict serialises");
    }
});
