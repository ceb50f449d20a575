//! Throughput of the classification pipeline (`trackrelay::events`): hits
//! stored in a real SQLite file, judged in passes as the server does, the
//! events committed through the storage writer. Counts everything a pass
//! does: the reads of the waiting hits and of each copy's context, the
//! classifier, and the event writes.
//!
//! ```text
//! cargo bench --bench pipeline [-- --hits N --per-copy K]
//! ```
//!
//! N hits (default 100,000) on N / K copies (default K = 10), an hour old,
//! with a browser's headers, addresses cycling through 251 documentation
//! and private addresses. Summary on stderr; one JSON line on stdout.

use std::time::{Duration, Instant};

use trackrelay::config::Config;
use trackrelay::events::{Pipeline, State};
use trackrelay::storage::{Observation, Storage};
use trackrelay::token::Kind;
use uuid::Uuid;

const CONFIG: &str = "[api]\ntoken = \"Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU\"\n[[tracking.keys]]\nid = \"k1\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let hits = arg("--hits", 100_000);
    let per_copy = arg("--per-copy", 10).max(1);
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("bench.db")).unwrap();
    let config = Config::parse(CONFIG).unwrap();
    let lists = trackrelay::app::load_lists(&config).unwrap();

    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    let headers: Vec<(String, String)> = [
        ("host", "t.example.com"),
        ("user-agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let copies: Vec<Uuid> = (0..hits.div_ceil(per_copy))
        .map(|_| Uuid::now_v7())
        .collect();
    let filling = Instant::now();
    for i in 0..hits {
        let click = i % 3 == 0;
        let obs = Observation {
            id: Uuid::now_v7(),
            message_id: copies[i / per_copy],
            kind: if click { Kind::Click } else { Kind::Open },
            recipient_id: Some("bob".into()),
            link: click.then_some((i % 5) as u16),
            url: click.then(|| "https://example.com/a".into()),
            at_ms: start_ms + (i as i64) * 7,
            method: "GET".into(),
            host: "t.example.com".into(),
            ip: Some(std::net::IpAddr::from([198, 51, 100, (i % 251) as u8])),
            user_agent: Some(headers[1].1.clone()),
            headers: headers.clone(),
            key_id: "k1".into(),
        };
        storage.record_observation(obs, Duration::ZERO).await;
    }
    assert!(storage.flush(Duration::from_secs(600)).await);
    eprintln!(
        "{hits} hits on {} copies stored in {:.1} s",
        copies.len(),
        filling.elapsed().as_secs_f64()
    );

    let pipeline = Pipeline::new(storage.clone(), lists, Duration::ZERO);
    let mut state = State::default();
    let started = Instant::now();
    let mut judged = 0;
    loop {
        let n = pipeline.pass(&mut state).await.unwrap();
        if n == 0 {
            break;
        }
        judged += n;
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(judged, hits, "every hit judged once");
    let rate = judged as f64 / secs;
    eprintln!(
        "pipeline: {judged} hits judged and stored as events in {secs:.2} s = {rate:.0} hits/s"
    );
    println!(
        "{{\"bench\":\"pipeline\",\"hits\":{judged},\"per_copy\":{per_copy},\"seconds\":{secs:.3},\"hits_per_second\":{rate:.0}}}"
    );
}
