//! Privacy and retention (issue 8, SPEC §9) on a database filled through
//! the real relay and tracking server: mail relayed over SMTP to a `dir:`
//! upstream, its pixel and link hit over HTTP (the client address from
//! X-Forwarded-For: loopback is a trusted proxy in test configs), verdicts
//! from the running pipeline. Then the real binary runs `prune --as-of`
//! and `forget`, beside the running server, as an operator would.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::server::{API_TOKEN, HOST, Http, Resp, config_text};
use trackrelay::app::App;
use trackrelay::config::Config;
use trackrelay::retention::IpHashKey;
use uuid::Uuid;

const IP_HASH_KEY: &str = "ip hash key of the privacy tests, 32+ bytes";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const DAY_MS: i64 = 86_400_000;

/// The in-process server, its config file and directory.
struct Setup {
    app: Option<App>,
    dir: tempfile::TempDir,
    config: PathBuf,
    http: Http,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let extra = format!(
            "\n[retention]\nip_hash_key = \"{IP_HASH_KEY}\"\n\
             [classifier]\nwait_seconds = 1\n"
        );
        let text = config_text(dir.path(), "127.0.0.1:0", "127.0.0.1:0", &extra);
        let config = dir.path().join("trackrelay.toml");
        std::fs::write(&config, &text).unwrap();
        let app = App::start(
            Config::parse(&text).unwrap(),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
        Setup {
            app: Some(app),
            dir,
            config,
            http: Http::default(),
        }
    }

    fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("trackrelay.db")
    }

    /// Relays one HTML message to `to` over SMTP; the copies' ids and
    /// their open and click tokens, by recipient.
    async fn relay(&self, to: &[&str]) -> Vec<(String, Uuid, String, String)> {
        let mut client = support::relay::Client::connect(self.app().smtp_addr()).await;
        let (rcpts, reply) = client
            .send("alice@example.com", to, &support::relay::html_message(""))
            .await;
        assert!(rcpts.iter().all(|r| r.starts_with("250")), "{rcpts:?}");
        assert!(reply.starts_with("250"), "{reply}");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.path().join("outbox")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            let id: Uuid = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            let envelope: serde_json::Value = serde_json::from_slice(
                &std::fs::read(path.with_extension("envelope.json")).unwrap(),
            )
            .unwrap();
            let rcpt = envelope["to"][0].as_str().unwrap().to_owned();
            if !to.contains(&rcpt.as_str()) || out.iter().any(|(_, i, _, _)| *i == id) {
                continue;
            }
            let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
            let open = support::tracking_tokens(&text, "o")[0].to_owned();
            let click = support::tracking_tokens(&text, "c")[0].to_owned();
            out.push((rcpt, id, open, click));
        }
        assert_eq!(out.len(), to.len(), "one copy per recipient");
        out
    }

    /// A hit from `ip` with `user_agent`.
    async fn hit(&self, path: &str, ip: &str, user_agent: &str) -> Resp {
        let headers = [
            ("x-forwarded-for", ip),
            ("user-agent", user_agent),
            ("accept", "text/html,image/avif,*/*"),
            ("accept-language", "en-GB,en;q=0.9"),
        ];
        self.http
            .send("GET", self.app().tracking_addr(), HOST, path, &headers)
            .await
            .unwrap()
    }

    async fn api(&self, path: &str) -> serde_json::Value {
        let addr = self.app().api_addr();
        let auth = format!("Bearer {API_TOKEN}");
        let resp = self
            .http
            .send(
                "GET",
                addr,
                &addr.to_string(),
                path,
                &[("authorization", &auth)],
            )
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{path}");
        resp.json()
    }

    /// Waits (bounded) until every stored observation has its event.
    async fn classified(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (obs, events) = counts(&self.db());
            if obs > 0 && obs == events {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{obs} observations, {events} events"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every figure the API gives about the copies: list and one by one
    /// (with their events), as JSON.
    async fn figures(&self, ids: &[Uuid]) -> Vec<serde_json::Value> {
        let mut out = vec![self.api("/v1/messages?limit=100").await];
        for id in ids {
            out.push(
                self.api(&format!("/v1/messages/{id}?include_machine=true"))
                    .await,
            );
        }
        out
    }

    /// Runs the real binary with this config.
    fn trackrelay(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Stops the server; the directory lives on with the returned handle.
    async fn stop(mut self) -> tempfile::TempDir {
        assert!(self.app.take().unwrap().stop().await);
        self.dir
    }
}

fn counts(db: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let n = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    (
        n("SELECT count(*) FROM observations"),
        n("SELECT count(*) FROM events"),
    )
}

/// Every observation: (ip, user_agent, headers, ip_hash).
fn observation_rows(db: &Path) -> Vec<(String, Option<String>, String, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT ip, user_agent, headers, ip_hash FROM observations ORDER BY at_ms, id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The API's figures without the `ip` and `user_agent` shown with events.
fn without_raw_signals(mut figures: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    for copy in &mut figures {
        if let Some(events) = copy.get_mut("events").and_then(|e| e.as_array_mut()) {
            for event in events {
                let event = event.as_object_mut().unwrap();
                assert!(event.remove("ip").is_some() && event.remove("user_agent").is_some());
            }
        }
    }
    figures
}

/// An RFC 3339 time `days` from now.
fn days_from_now(days: i64) -> String {
    jiff::Timestamp::from_millisecond(jiff::Timestamp::now().as_millisecond() + days * DAY_MS)
        .unwrap()
        .to_string()
}

/// The hits of the tests: two recipients, each opening and clicking; bob
/// twice from the same address.
async fn fill(setup: &Setup) -> Vec<(String, Uuid, String, String)> {
    let copies = setup.relay(&["bob@example.com", "carol@example.org"]).await;
    for (rcpt, _, open, click) in &copies {
        let (ip, ua) = if rcpt.starts_with("bob") {
            ("198.51.100.77", "BobMail/7.7 (bob-only-agent)")
        } else {
            ("203.0.113.99", CHROME)
        };
        assert_eq!(setup.hit(&format!("/o/{open}"), ip, ua).await.status, 200);
        assert_eq!(
            setup.hit(&format!("/c/{click}"), ip, CHROME).await.status,
            302
        );
        assert_eq!(setup.hit(&format!("/o/{open}"), ip, ua).await.status, 200);
    }
    setup.classified().await;
    copies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_observations_lose_ip_user_agent_and_headers_and_keep_a_keyed_hash() {
    let setup = Setup::start().await;
    let copies = fill(&setup).await;
    let ids: Vec<Uuid> = copies.iter().map(|c| c.1).collect();
    let before = setup.figures(&ids).await;
    let raw = observation_rows(&setup.db());
    assert_eq!(raw.len(), 6);
    assert!(raw.iter().all(|(ip, ua, headers, hash)| {
        !ip.is_empty() && ua.is_some() && headers.contains("user-agent") && hash.is_none()
    }));

    // Nothing is older than 28 days ten days from now.
    let out = setup.trackrelay(&["prune", "--as-of", &days_from_now(10)]);
    assert!(out.contains(" 0 observations were minimised"), "{out}");
    assert_eq!(observation_rows(&setup.db()), raw);

    // A dry run counts and changes nothing.
    let out = setup.trackrelay(&["prune", "--dry-run", "--as-of", &days_from_now(29)]);
    assert!(out.contains(" 6 observations would be minimised"), "{out}");
    assert_eq!(observation_rows(&setup.db()), raw);

    let out = setup.trackrelay(&["prune", "--as-of", &days_from_now(29)]);
    assert!(out.contains(" 6 observations were minimised"), "{out}");
    let key = IpHashKey::new(IP_HASH_KEY.as_bytes());
    let other = IpHashKey::new(b"another installation's key, 32+ bytes");
    let minimised = observation_rows(&setup.db());
    for ((ip, _, _, _), (now_ip, ua, headers, hash)) in raw.iter().zip(&minimised) {
        assert_eq!(now_ip, "", "exact IP kept");
        assert_eq!(ua, &None, "user agent kept");
        assert_eq!(headers, "[]", "headers kept");
        let hash = hash.as_deref().expect("an IP hash");
        assert_eq!(
            hash,
            key.hash(ip.parse().unwrap()),
            "hash of {ip} under the configured key"
        );
        assert_ne!(
            hash,
            other.hash(ip.parse().unwrap()),
            "another key gives another hash"
        );
    }
    // Same address, same hash: bob's three hits agree, and differ from carol's.
    let hashes: std::collections::HashSet<_> = minimised.iter().map(|r| r.3.clone()).collect();
    assert_eq!(hashes.len(), 2);

    // The API's figures (copies, status, events with every verdict) are
    // those of before, but for the raw signals shown with each event.
    let after = setup.figures(&ids).await;
    assert_eq!(
        without_raw_signals(after.clone()),
        without_raw_signals(before.clone())
    );
    assert_ne!(after, before, "the events showed the raw signals before");
    for copy in &after[1..] {
        for event in copy["events"].as_array().unwrap() {
            assert!(event["ip"].is_null(), "{event}");
            assert!(event["user_agent"].is_null(), "{event}");
        }
    }
    // A second pass finds nothing left to do.
    let out = setup.trackrelay(&["prune", "--as-of", &days_from_now(30)]);
    assert!(out.contains(" 0 observations were minimised"), "{out}");
    let obs = setup
        .api(&format!("/v1/messages/{}/observations", ids[0]))
        .await;
    assert!(!obs.to_string().contains("198.51.100.77"), "{obs}");
    // Not in the file's bytes either (secure_delete zeroes the old cells)
    // once the WAL, which keeps old page versions until it starts over, is
    // checkpointed and emptied (as the server's checkpoint cycle does).
    let db = setup.db();
    let _dir = setup.stop().await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 0);
    let bytes = file_bytes(&db);
    for t in [
        "198.51.100.77",
        "203.0.113.99",
        "bob-only-agent",
        "accept-language",
    ] {
        assert!(!contains(&bytes, t), "{t} still in the database file");
    }
    assert!(
        contains(&bytes, "carol@example.org"),
        "the search sees text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_days_deletes_old_copies_events_and_observations() {
    let setup = Setup::start().await;
    let copies = fill(&setup).await;
    // event_days is read from the file by the command; the server keeps
    // running with its own config.
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("[retention]\n", "[retention]\nevent_days = 90\n");
    std::fs::write(&setup.config, text).unwrap();

    let out = setup.trackrelay(&["prune", "--as-of", &days_from_now(89)]);
    assert!(
        out.contains("0 copies, 0 events, 0 observations were deleted"),
        "{out}"
    );
    let out = setup.trackrelay(&["prune", "--dry-run", "--as-of", &days_from_now(91)]);
    assert!(
        out.contains("2 copies, 6 events, 6 observations would be deleted"),
        "{out}"
    );
    assert_eq!(counts(&setup.db()), (6, 6));
    let out = setup.trackrelay(&["prune", "--as-of", &days_from_now(91)]);
    assert!(
        out.contains("2 copies, 6 events, 6 observations were deleted"),
        "{out}"
    );
    assert_eq!(counts(&setup.db()), (0, 0));
    let list = setup.api("/v1/messages?limit=100").await;
    assert_eq!(list["messages"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(copies.len(), 2);
    setup.stop().await;
}

/// Whether `needle` occurs in `bytes`, ASCII case ignored.
fn contains(bytes: &[u8], needle: &str) -> bool {
    let needle = needle.to_ascii_lowercase().into_bytes();
    bytes
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(&needle))
}

/// The database file and its WAL, as bytes.
fn file_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).unwrap();
    let wal = db.with_extension("db-wal");
    if let Ok(more) = std::fs::read(wal) {
        bytes.extend(more);
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_leaves_no_byte_of_the_recipient_in_the_database_file() {
    let setup = Setup::start().await;
    let copies = fill(&setup).await;
    let bob = copies.iter().find(|c| c.0 == "bob@example.com").unwrap();
    let carol = copies.iter().find(|c| c.0 == "carol@example.org").unwrap();
    let traces = ["bob@example.com", "198.51.100.77", "bob-only-agent"];
    // The search can fail: before, every trace is in the file.
    setup.trackrelay(&["prune", "--dry-run"]);
    let before = file_bytes(&setup.db());
    for t in traces {
        assert!(contains(&before, t), "{t} not stored in the first place");
    }

    let out = setup.trackrelay(&["forget", "--recipient", "Bob@Example.COM"]);
    assert!(out.contains("copies deleted: 1\n"), "{out}");
    assert!(out.contains("observations deleted: 3\n"), "{out}");
    assert!(out.contains("events deleted: 3\n"), "{out}");

    // Through the API: bob is gone, carol untouched.
    let bob_list = setup.api("/v1/messages?recipient=bob@example.com").await;
    assert_eq!(bob_list["messages"].as_array().unwrap().len(), 0);
    let carol_copy = setup
        .api(&format!("/v1/messages/{}?include_machine=true", carol.1))
        .await;
    assert_eq!(
        carol_copy["events"].as_array().unwrap().len(),
        3,
        "{carol_copy}"
    );
    let addr = setup.app().api_addr();
    let auth = format!("Bearer {API_TOKEN}");
    let gone = setup
        .http
        .send(
            "GET",
            addr,
            &addr.to_string(),
            &format!("/v1/messages/{}", bob.1),
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    assert_eq!(gone.status, 404);

    // The file bytes, main file and WAL, while the server still runs, and
    // again after it stopped (its last connection checkpoints).
    let after = file_bytes(&setup.db());
    for t in traces {
        assert!(!contains(&after, t), "{t} still in the database file");
    }
    assert!(
        contains(&after, "carol@example.org"),
        "the search sees addresses"
    );
    assert!(
        contains(&after, "203.0.113.99"),
        "the search sees addresses"
    );
    let db = setup.db();
    let dir = setup.stop().await;
    let after = file_bytes(&db);
    for t in traces {
        assert!(!contains(&after, t), "{t} in the database file after stop");
    }
    // The tracking hits of other recipients were not touched.
    assert_eq!(counts(&db), (3, 3));
    drop(dir);
}
