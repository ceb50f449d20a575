//! Throughput of `trackrelay::rewrite::rewrite` over the shared corpus.
//!
//! Plain `std::time::Instant` timing (no criterion): one untimed warm-up pass,
//! then N timed passes over every file of a workload; only the `rewrite`
//! calls are inside the timed region (messages are built beforehand).
//!
//! Workloads:
//! - `html`: every `html/**/*.html` wrapped in a single-part 8bit message
//!   (`corpus::wrap_html`, CRLF headers). `mb_per_s_html` counts the HTML
//!   bytes only, the same numerator as `benches/pytracking_baseline.py`
//!   (its `input_bytes`); `mb_per_s` counts the whole message.
//! - `mime`: every `mime/**/*.eml` as it is; `mb_per_s` over message bytes.
//!
//! Each workload is run twice in the same process: tracked (opens + clicks)
//! and a pass-through baseline with tracking off (`rewrite` still parses the
//! MIME structure and the `X-LM-*` headers, then copies the message).
//!
//! A failure is a message whose report has a part skipped as
//! `unparsable_html` or `undecodable` (or a message mail-parser could not
//! parse at all); other skips (signed, unknown transfer encoding) are listed
//! but are policy, not failures.
//!
//! ```text
//! cargo bench --bench rewrite [-- [--rounds N] [--workload html|mime] [--no-baseline]]
//! cargo bench --bench rewrite -- --message FILE   # 1,000 copies of one message
//! BENCH_ROUNDS=N cargo bench --bench rewrite
//! ```
//!
//! Human-readable table on stderr; one JSON line per workload on stdout.
//! MB = 1e6 bytes.

#[path = "../tests/support/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use trackrelay::config::RouteSettings;
use trackrelay::rewrite::{self, Report, Request};
use trackrelay::token::{Key, KeyRing};
use url::Url;
use uuid::Uuid;

/// `parts_skipped` reasons that count as failures.
const FAILURE_REASONS: &[&str] = &["unparsable_html", "undecodable"];

struct Args {
    rounds: u32,
    workloads: Vec<String>,
    baseline: bool,
    /// `--message FILE`: a workload of 1,000 copies of one message.
    message: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut rounds: u32 = std::env::var("BENCH_ROUNDS")
        .ok()
        .map(|v| v.parse().expect("BENCH_ROUNDS must be a positive integer"))
        .unwrap_or(5);
    let mut workloads = Vec::new();
    let mut baseline = true;
    let mut message = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds takes a positive integer");
            }
            a if a.starts_with("--rounds=") => {
                rounds = a["--rounds=".len()..]
                    .parse()
                    .expect("--rounds takes a positive integer");
            }
            "--workload" => workloads.push(it.next().expect("--workload takes html or mime")),
            "--no-baseline" => baseline = false,
            "--message" => {
                message = Some(PathBuf::from(it.next().expect("--message takes a file")))
            }
            // `cargo bench` passes `--bench` (and test-harness flags) to
            // harness = false targets; ignore them.
            a if a.starts_with("--") => {}
            // A bare word is a filter, like libtest's.
            a => workloads.push(a.to_owned()),
        }
    }
    assert!(rounds > 0, "rounds must be at least 1");
    Args {
        rounds,
        workloads,
        baseline,
        message,
    }
}

/// One message to rewrite.
struct Input {
    path: PathBuf,
    message: Vec<u8>,
    /// Bytes of the HTML file it was built from (html workload), else 0.
    html_len: usize,
}

/// Timing of one mode (tracked or off) over one workload.
struct Timing {
    seconds: f64,
    best_round: f64,
    worst_round: f64,
}

fn time_passes(inputs: &[Input], req: &Request<'_>, rounds: u32) -> Timing {
    // Warm-up (caches, lazily built parser, allocator).
    for input in inputs {
        black_box(rewrite::rewrite(black_box(&input.message), req));
    }
    let mut total = Duration::ZERO;
    let mut best = f64::INFINITY;
    let mut worst = 0f64;
    for _ in 0..rounds {
        let t0 = Instant::now();
        for input in inputs {
            black_box(rewrite::rewrite(black_box(&input.message), req));
        }
        let dt = t0.elapsed();
        total += dt;
        best = best.min(dt.as_secs_f64());
        worst = worst.max(dt.as_secs_f64());
    }
    Timing {
        seconds: total.as_secs_f64(),
        best_round: best,
        worst_round: worst,
    }
}

/// What the reports of one (untimed) tracked pass add up to.
#[derive(Default)]
struct Totals {
    links: usize,
    pixels: usize,
    parts_rewritten: usize,
    reencoded_parts: usize,
    parts_skipped: BTreeMap<&'static str, usize>,
    links_skipped: BTreeMap<&'static str, usize>,
    untracked: BTreeMap<&'static str, usize>,
    /// (file, reasons) of messages that count as failures.
    failures: Vec<(PathBuf, String)>,
    /// (file, reasons) of messages with other skipped parts.
    other_skips: Vec<(PathBuf, String)>,
    /// (seconds per call, file, bytes), slowest first.
    slowest: Vec<(f64, PathBuf, usize)>,
}

fn totals(inputs: &[Input], req: &Request<'_>) -> Totals {
    let mut t = Totals::default();
    for input in inputs {
        // Per-file time (3 calls, best), for the "slowest files" list only.
        let per_call = (0..3)
            .map(|_| {
                let t0 = Instant::now();
                black_box(rewrite::rewrite(black_box(&input.message), req));
                t0.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        t.slowest
            .push((per_call, input.path.clone(), input.message.len()));
        let report: Report = rewrite::rewrite(&input.message, req).report;
        t.links += report.links.len();
        t.pixels += report.pixels;
        t.parts_rewritten += report.parts_rewritten;
        t.reencoded_parts += report.reencoded_parts;
        for (k, v) in &report.parts_skipped {
            *t.parts_skipped.entry(k).or_default() += v;
        }
        for (k, v) in &report.links_skipped {
            *t.links_skipped.entry(k).or_default() += v;
        }
        if let Some(reason) = report.untracked_reason {
            *t.untracked.entry(reason).or_default() += 1;
        }
        let describe = |m: &BTreeMap<&str, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let failed = report
            .parts_skipped
            .keys()
            .any(|k| FAILURE_REASONS.contains(k))
            || report.untracked_reason == Some("unparsable_message");
        if failed {
            let mut why = describe(&report.parts_skipped);
            if report.untracked_reason == Some("unparsable_message") {
                why = "unparsable_message".into();
            }
            t.failures.push((input.path.clone(), why));
        } else if !report.parts_skipped.is_empty() {
            t.other_skips
                .push((input.path.clone(), describe(&report.parts_skipped)));
        }
    }
    t.slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    t.slowest.truncate(5);
    t
}

fn mb_per_s(bytes: usize, rounds: u32, seconds: f64) -> f64 {
    bytes as f64 * f64::from(rounds) / 1e6 / seconds
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn run_workload(
    name: &str,
    inputs: &[Input],
    tracked: &Request<'_>,
    off: Option<&Request<'_>>,
    rounds: u32,
) {
    let bytes: usize = inputs.iter().map(|i| i.message.len()).sum();
    let html_bytes: usize = inputs.iter().map(|i| i.html_len).sum();
    let is_html = name == "html";

    let on = time_passes(inputs, tracked, rounds);
    let base = off.map(|req| time_passes(inputs, req, rounds));
    let t = totals(inputs, tracked);

    let mbps = mb_per_s(bytes, rounds, on.seconds);
    let mbps_html = is_html.then(|| mb_per_s(html_bytes, rounds, on.seconds));

    // Table on stderr.
    let root = corpus::root();
    eprintln!();
    eprintln!(
        "== workload {name}: {} files, {:.3} MB messages{}, {rounds} rounds (+1 warm-up)",
        inputs.len(),
        bytes as f64 / 1e6,
        if is_html {
            format!(", {:.3} MB HTML", html_bytes as f64 / 1e6)
        } else {
            String::new()
        }
    );
    eprintln!(
        "  {:<22} {:>10} {:>12} {:>12} {:>14} {:>14}",
        "mode", "seconds", "MB/s msg", "MB/s html", "best round ms", "worst round ms"
    );
    let row = |mode: &str, tm: &Timing| {
        let html = if is_html {
            format!("{:.2}", mb_per_s(html_bytes, rounds, tm.seconds))
        } else {
            "-".into()
        };
        eprintln!(
            "  {:<22} {:>10.4} {:>12.2} {:>12} {:>14.2} {:>14.2}",
            mode,
            tm.seconds,
            mb_per_s(bytes, rounds, tm.seconds),
            html,
            tm.best_round * 1e3,
            tm.worst_round * 1e3
        );
    };
    row("tracked (opens+clicks)", &on);
    if let Some(b) = &base {
        row("off (pass-through)", b);
        eprintln!(
            "  tracking cost: {:.1} µs/message, tracked pass = {:.1}× the pass-through time",
            (on.seconds - b.seconds) / f64::from(rounds) / inputs.len() as f64 * 1e6,
            on.seconds / b.seconds
        );
    }
    eprintln!(
        "  links: {}  pixels: {}  parts rewritten: {}  re-encoded QP: {}",
        t.links, t.pixels, t.parts_rewritten, t.reencoded_parts
    );
    eprintln!("  links skipped: {:?}", t.links_skipped);
    eprintln!(
        "  parts skipped: {:?}  untracked messages: {:?}",
        t.parts_skipped, t.untracked
    );
    eprintln!("  failures (unparsable/undecodable): {}", t.failures.len());
    for (path, why) in &t.failures {
        eprintln!(
            "    FAIL {}: {why}",
            path.strip_prefix(&root).unwrap_or(path).display()
        );
    }
    for (path, why) in &t.other_skips {
        eprintln!(
            "    skip {}: {why}",
            path.strip_prefix(&root).unwrap_or(path).display()
        );
    }
    eprintln!("  slowest files (tracked, best of 3 calls):");
    for (secs, path, len) in &t.slowest {
        eprintln!(
            "    {:>9.1} µs {:>8.1} MB/s {:>9} B  {}",
            secs * 1e6,
            *len as f64 / 1e6 / secs,
            len,
            path.strip_prefix(&root).unwrap_or(path).display()
        );
    }

    // JSON line on stdout.
    let rel = |p: &PathBuf| p.strip_prefix(&root).unwrap_or(p).display().to_string();
    let mut json = serde_json::json!({
        "workload": name,
        "files": inputs.len(),
        "bytes": bytes,
        "html_bytes": if is_html { serde_json::json!(html_bytes) } else { serde_json::Value::Null },
        "rounds": rounds,
        "seconds": round6(on.seconds),
        "mb_per_s": round3(mbps),
        "mb_per_s_html": mbps_html.map(round3),
        "best_round_mb_per_s_html": is_html.then(|| round3(mb_per_s(html_bytes, 1, on.best_round))),
        "links": t.links,
        "pixels": t.pixels,
        "parts_skipped": t.parts_skipped,
        "failures": t.failures.len(),
        "failed_files": t.failures.iter().map(|(p, w)| serde_json::json!({"file": rel(p), "why": w})).collect::<Vec<_>>(),
        "untracked": t.untracked,
    });
    if let Some(b) = &base {
        json["off"] = serde_json::json!({
            "seconds": round6(b.seconds),
            "mb_per_s": round3(mb_per_s(bytes, rounds, b.seconds)),
            "mb_per_s_html": is_html.then(|| round3(mb_per_s(html_bytes, rounds, b.seconds))),
        });
    }
    println!("{json}");
}

fn main() {
    let args = parse_args();
    let want = |w: &str| {
        args.workloads.is_empty() || args.workloads.iter().any(|f| w.contains(f.as_str()))
    };

    let keys = KeyRing::new(vec![Key::new("bench", vec![0x5a; 32])]);
    let base_url = Url::parse("https://t.example.com").unwrap();
    let tracked_settings = RouteSettings {
        track_opens: true,
        track_clicks: true,
        ..Default::default()
    };
    let off_settings = RouteSettings::default();
    assert!(!off_settings.track_opens && !off_settings.track_clicks);
    let request = |settings| Request {
        settings,
        base_url: &base_url,
        keys: &keys,
        message_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
        recipient: Some("bob@example.com"),
        expires_at: 2_000_000_000,
    };
    let tracked = request(&tracked_settings);
    let off = request(&off_settings);
    let off = args.baseline.then_some(&off);

    eprintln!(
        "trackrelay rewrite bench ({} build), corpus {}",
        if cfg!(debug_assertions) {
            "DEBUG"
        } else {
            "release"
        },
        corpus::root().display()
    );

    if let Some(path) = &args.message {
        // One message, e.g. the relay benchmark's newsletter: time per copy.
        let message = std::fs::read(path).expect("--message file");
        let inputs: Vec<Input> = (0..1000)
            .map(|_| Input {
                message: message.clone(),
                html_len: 0,
                path: path.clone(),
            })
            .collect();
        run_workload("message", &inputs, &tracked, off, args.rounds);
        return;
    }
    if want("html") {
        let inputs: Vec<Input> = corpus::html_files()
            .into_iter()
            .map(|(path, charset)| {
                let html = std::fs::read(&path).unwrap();
                Input {
                    message: corpus::wrap_html(&html, charset.as_deref(), "\r\n"),
                    html_len: html.len(),
                    path,
                }
            })
            .collect();
        assert!(!inputs.is_empty(), "no HTML files in the corpus");
        run_workload("html", &inputs, &tracked, off, args.rounds);
    }
    if want("mime") {
        let inputs: Vec<Input> = corpus::mime_files()
            .into_iter()
            .map(|path| Input {
                message: std::fs::read(&path).unwrap(),
                html_len: 0,
                path,
            })
            .collect();
        assert!(!inputs.is_empty(), "no .eml files in the corpus");
        run_workload("mime", &inputs, &tracked, off, args.rounds);
    }
}
