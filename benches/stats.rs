//! Latency of the route statistics (`GET /v1/routes/{id}/stats` and
//! `/links`, issue 7) and of the tag and message-as-sent statistics
//! (`GET /v1/stats?tag=` / `?message=`, issue 17) over a database of many
//! events.
//!
//! ```text
//! cargo bench --bench stats [-- --events N --runs R --baseline-runs B --write-doc]
//! ```
//!
//! The database is created through `Storage` (the product's schema and
//! migrations, its triggers keeping the rollups), then filled with raw
//! bulk SQL: N events (default 10,000,000) on the relayed copies they
//! belong to, over 90 days, on 20 routes of different sizes (the big one
//! has about 40% of everything). It is kept under
//! `target/bench-stats/` (by N and generator version) for the next runs;
//! an older schema there is migrated on open, as the server would.
//!
//! Measured, each `R` times warm (default 9) and 3 times cold (the file
//! dropped from the OS page cache with `dd iflag=nocache`, a new
//! `Storage`, so a new SQLite connection): the big route's 30-day daily
//! and hourly stats with and without machine activity, its links, the
//! same daily stats over a range not on whole hours, and a small route's
//! daily stats; a tag on 30% of all copies (across routes, and within the
//! big route), and one message as sent of the big route (its copies of
//! one hour share a Message-ID). The baseline is the queries as they were
//! before the rollups (a join of the events in the range with their
//! copies; for groups, the same join filtered on the copies' tags or
//! Message-ID), run
//! `B` times (default 3) on the same database. `--write-doc` replaces the
//! table in docs/benchmarks.md between its markers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use trackrelay::storage::{Group, GroupQuery, StatsQuery, Storage};

/// Bumped when the generated data changes shape.
const GENERATOR: u32 = 2;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// The generated history ends here (2026-11-01T00:00:00Z) …
const END: i64 = 1_793_491_200_000;
/// … and starts 90 days earlier.
const DAYS: i64 = 90;
const ROUTES: usize = 20;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn route_name(i: usize) -> String {
    if i == 0 {
        "big".into()
    } else {
        format!("route{i:02}")
    }
}

/// Route of the next copy: "big" 40%, then halving shares (route19 is
/// the smallest).
fn pick_route(rng: &mut Rng) -> usize {
    let mut r = rng.below(1 << 20);
    let mut share = 1u64 << 20;
    for i in 0..ROUTES - 1 {
        let cut = if i == 0 { share * 2 / 5 } else { share / 4 };
        if r < cut {
            return i;
        }
        r -= cut;
        share -= cut;
    }
    ROUTES - 1
}

/// The Message-ID of route `route`'s message as sent in hour `hour`.
fn send(route: usize, hour: i64) -> String {
    format!("<{}-{hour}@example.com>", route_name(route))
}

/// A UUIDv7-shaped id of time `ms` (sequence `n` in the random part).
fn id(ms: i64, n: u64) -> String {
    let v = ((ms as u128) << 80) | (0x7u128 << 76) | (0x8u128 << 60) | (n as u128);
    uuid::Uuid::from_u128(v).to_string()
}

fn generate(path: &Path, target: u64) {
    // The product's schema, triggers included.
    drop(Storage::open(path).expect("create the database"));
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA synchronous = OFF; PRAGMA cache_size = -4000000; PRAGMA temp_store = MEMORY;",
    )
    .unwrap();
    let started = Instant::now();
    let mut rng = Rng(7);
    let (mut events, mut copies, mut n) = (0u64, 0u64, 0u64);
    let start_ms = END - DAYS * DAY;
    let span = (DAYS * DAY) as u64;
    let bot_genuine = r#"{"classification":"genuine","counts_for_metrics":true,"machine":false,"reason":"browser headers"}"#;
    let bot_proxy = r#"{"classification":"image_proxy","counts_for_metrics":false,"machine":true,"reason":"proxy network"}"#;
    let bot_scanner = r#"{"classification":"security_scanner","counts_for_metrics":false,"machine":true,"reason":"fetched within seconds of delivery"}"#;
    while events < target {
        let tx = conn.transaction().unwrap();
        {
            let mut copy = tx
                .prepare_cached(
                    "INSERT INTO messages (id, route, sender, recipients, recipient_id,
                         message_id_header, tags, links, relayed_at_ms, upstream_reply, status)
                     VALUES (?1, ?2, 'news@example.com', ?3, ?4, ?5, ?9, ?6, ?7,
                             '250 2.0.0 Ok: queued', ?8)",
                )
                .unwrap();
            let mut recipient = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO message_recipients (address, message_id) VALUES (?1, ?2)",
                )
                .unwrap();
            let mut event = tx
                .prepare_cached(
                    "INSERT INTO events (id, message_id, recipient_id, kind, link, url, at_ms,
                         classification, counts, machine, first, bot, device_type, client_type,
                         client_name, route, firsts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                             ?16, ?17)",
                )
                .unwrap();
            for _ in 0..20_000 {
                if events >= target {
                    break;
                }
                let route = pick_route(&mut rng);
                let relayed = start_ms + rng.below(span) as i64;
                let user = rng.below(2_000_000);
                let address = format!("user{user}@example.org");
                let rid = format!("rid-{user:x}");
                let copy_id = id(relayed, n);
                n += 1;
                let nlinks = 2 + (route % 5);
                let links: Vec<String> = (0..nlinks)
                    .map(|l| format!("https://{}.example.com/offer/{l}", route_name(route)))
                    .collect();
                let failed = rng.chance(1);
                // A weekly campaign tag per route, "newsletter" on 30%;
                // one message as sent per route and hour.
                let week = (relayed - start_ms) / (7 * DAY);
                let mut tags = vec![format!("{}-w{week}", route_name(route))];
                if rng.chance(30) {
                    tags.push("newsletter".into());
                }
                copy.execute(params![
                    copy_id,
                    route_name(route),
                    format!("[\"{address}\"]"),
                    rid,
                    send(route, relayed / HOUR),
                    serde_json::to_string(&links).unwrap(),
                    relayed,
                    if failed { "failed" } else { "relayed" },
                    serde_json::to_string(&tags).unwrap(),
                ])
                .unwrap();
                recipient.execute(params![address, copy_id]).unwrap();
                copies += 1;
                if failed {
                    continue;
                }
                // 0 to 10 events, 2.3 on average: a scanner or proxy fetch
                // soon after delivery on some, human opens and clicks
                // over the following days on others.
                let mut hits: Vec<(i64, bool, Option<usize>, u8)> = Vec::new();
                if rng.chance(25) {
                    let kind = if rng.chance(30) { Some(0) } else { None };
                    hits.push((relayed + 1_000 + rng.below(60_000) as i64, false, kind, 2));
                }
                if rng.chance(10) {
                    hits.push((relayed + rng.below(HOUR as u64) as i64, false, None, 1));
                }
                if rng.chance(55) {
                    let opens = 1 + rng.below(4);
                    let mut t = relayed + rng.below(3 * DAY as u64) as i64;
                    for _ in 0..opens {
                        hits.push((t, true, None, 0));
                        if rng.chance(45) {
                            let link = rng.below(nlinks as u64) as usize;
                            hits.push((t + 5_000 + rng.below(120_000) as i64, true, Some(link), 0));
                        }
                        t += rng.below(2 * DAY as u64) as i64;
                    }
                }
                hits.sort_by_key(|h| h.0);
                // What the writer's insert works out: which uniques each
                // event is the first of.
                let mut seen: Vec<(bool, Option<usize>, bool)> = Vec::new();
                for (at, human, link, bot) in hits {
                    let kind_click = link.is_some();
                    let mut firsts = 0;
                    let has =
                        |s: &[(bool, Option<usize>, bool)], k: bool, l: Option<usize>, h: bool| {
                            s.iter().any(|&(sk, sl, sh)| {
                                sk == k && (l.is_none() || sl == l) && (!h || sh)
                            })
                        };
                    if human && !has(&seen, kind_click, None, true) {
                        firsts |= 1;
                    }
                    if !has(&seen, kind_click, None, false) {
                        firsts |= 2;
                    }
                    if kind_click {
                        if human && !has(&seen, true, link, true) {
                            firsts |= 4;
                        }
                        if !has(&seen, true, link, false) {
                            firsts |= 8;
                        }
                    }
                    seen.push((kind_click, link, human));
                    let (class, bot) = match bot {
                        0 => ("genuine", bot_genuine),
                        1 => ("image_proxy", bot_proxy),
                        _ => ("security_scanner", bot_scanner),
                    };
                    event
                        .execute(params![
                            id(at, n),
                            copy_id,
                            rid,
                            if kind_click { "click" } else { "open" },
                            link.map(|l| l as i64),
                            link.map(|l| links[l].clone()),
                            at,
                            class,
                            human,
                            !human,
                            human && firsts & 1 != 0,
                            bot,
                            human.then_some("desktop"),
                            human.then_some("webmail"),
                            human.then_some("Gmail"),
                            route_name(route),
                            firsts,
                        ])
                        .unwrap();
                    n += 1;
                    events += 1;
                }
            }
        }
        tx.commit().unwrap();
        let secs = started.elapsed().as_secs_f64();
        eprint!(
            "\rgenerating: {events} / {target} events, {copies} copies, {secs:.0} s ({:.0} events/s)   ",
            events as f64 / secs
        );
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")
        .unwrap();
    eprintln!("\ngenerated in {:.0} s", started.elapsed().as_secs_f64());
}

/// The queries as they were before the rollups (commit 322c3b4):
/// every event of the range joined to its copy.
fn baseline_stats(conn: &Connection, q: &StatsQuery) -> usize {
    let mut n = 0;
    let mut stmt = conn
        .prepare_cached(
            "SELECT (relayed_at_ms / ?4) * ?4 AS start, count(*) FROM messages
             WHERE route = ?1 AND relayed_at_ms >= ?2 AND relayed_at_ms < ?3 AND status != 'failed'
             GROUP BY start",
        )
        .unwrap();
    let mut rows = stmt
        .query(params![q.route, q.from_ms, q.to_ms, q.bucket_ms])
        .unwrap();
    while rows.next().unwrap().is_some() {
        n += 1;
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT (e.at_ms / ?4) * ?4 AS start, e.kind, count(*),
                count(DISTINCT e.message_id || '/' || coalesce(e.recipient_id, ''))
             FROM events e JOIN messages m ON m.id = e.message_id
             WHERE m.route = ?1 AND e.at_ms >= ?2 AND e.at_ms < ?3 AND (?5 OR e.counts = 1)
             GROUP BY start, e.kind",
        )
        .unwrap();
    let mut rows = stmt
        .query(params![
            q.route,
            q.from_ms,
            q.to_ms,
            q.bucket_ms,
            q.include_machine
        ])
        .unwrap();
    while rows.next().unwrap().is_some() {
        n += 1;
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT e.kind, count(*),
                count(DISTINCT e.message_id || '/' || coalesce(e.recipient_id, ''))
             FROM events e JOIN messages m ON m.id = e.message_id
             WHERE m.route = ?1 AND e.at_ms >= ?2 AND e.at_ms < ?3 AND (?4 OR e.counts = 1)
             GROUP BY e.kind",
        )
        .unwrap();
    let mut rows = stmt
        .query(params![q.route, q.from_ms, q.to_ms, q.include_machine])
        .unwrap();
    while rows.next().unwrap().is_some() {
        n += 1;
    }
    n
}

fn baseline_links(conn: &Connection, q: &StatsQuery) -> usize {
    let mut stmt = conn
        .prepare_cached(
            "SELECT e.url, count(*),
                count(DISTINCT e.message_id || '/' || coalesce(e.recipient_id, '')) AS uniq
             FROM events e JOIN messages m ON m.id = e.message_id
             WHERE m.route = ?1 AND e.kind = 'click' AND e.url IS NOT NULL
               AND e.at_ms >= ?2 AND e.at_ms < ?3 AND (?4 OR e.counts = 1)
             GROUP BY e.url ORDER BY count(*) DESC, e.url",
        )
        .unwrap();
    let mut rows = stmt
        .query(params![q.route, q.from_ms, q.to_ms, q.include_machine])
        .unwrap();
    let mut n = 0;
    while rows.next().unwrap().is_some() {
        n += 1;
    }
    n
}

struct Case {
    name: &'static str,
    links: bool,
    q: StatsQuery,
    /// A tag's or a message's query instead of the route's.
    group: Option<GroupQuery>,
}

/// The former way to count a group: the route baseline's join, on the
/// copies of the tag or Message-ID.
fn baseline_group(conn: &Connection, g: &GroupQuery, links: bool) -> usize {
    let copies = match g.group {
        Group::Tag => "EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?1)",
        Group::Message => "trim(m.message_id_header, ' <>') = ?1",
    };
    let key = g.key.trim_matches([' ', '<', '>']);
    let (what, group_by) = if links {
        ("e.url", "1")
    } else {
        ("(e.at_ms / ?6) * ?6, e.kind", "1, 2")
    };
    let sql = format!(
        "SELECT {what}, count(*),
            count(DISTINCT e.message_id || '/' || coalesce(e.recipient_id, ''))
         FROM events e JOIN messages m ON m.id = e.message_id
         WHERE {copies} AND (?2 IS NULL OR m.route = ?2) AND e.at_ms >= ?3 AND e.at_ms < ?4
           AND (?5 OR e.counts = 1) AND ?6 = ?6
         GROUP BY {group_by}"
    );
    let mut stmt = conn.prepare_cached(&sql).unwrap();
    let mut rows = stmt
        .query(params![
            key,
            g.route,
            g.from_ms,
            g.to_ms,
            g.include_machine,
            g.bucket_ms
        ])
        .unwrap();
    let mut n = 0;
    while rows.next().unwrap().is_some() {
        n += 1;
    }
    n
}

fn cases() -> Vec<Case> {
    let q = |route: &str, from_ms: i64, bucket_ms: i64, include_machine: bool| StatsQuery {
        route: route.into(),
        from_ms,
        to_ms: from_ms + 30 * DAY,
        bucket_ms,
        include_machine,
    };
    let from = END - 30 * DAY;
    let odd = from - 17 * 60_000 - 4_321;
    let group = |group, key: &str, route: Option<&str>, bucket_ms, include_machine| {
        Some(GroupQuery {
            group,
            key: key.into(),
            route: route.map(str::to_owned),
            from_ms: from,
            to_ms: from + 30 * DAY,
            bucket_ms,
            include_machine,
        })
    };
    // The big route's message of the hour 20 days before the end.
    let big_send = send(0, (END - 20 * DAY) / HOUR);
    let mut groups = vec![
        Case {
            name: "tag on 30% of copies, all routes, 30 days, daily",
            links: false,
            q: q("big", from, DAY, false),
            group: group(Group::Tag, "newsletter", None, DAY, false),
        },
        Case {
            name: "tag on 30% of copies, all routes, 30 days, hourly, include_machine",
            links: false,
            q: q("big", from, HOUR, true),
            group: group(Group::Tag, "newsletter", None, HOUR, true),
        },
        Case {
            name: "tag within the big route, 30 days, daily",
            links: false,
            q: q("big", from, DAY, false),
            group: group(Group::Tag, "newsletter", Some("big"), DAY, false),
        },
        Case {
            name: "tag on 30% of copies, all routes, 30 days, links",
            links: true,
            q: q("big", from, DAY, false),
            group: group(Group::Tag, "newsletter", None, DAY, false),
        },
        Case {
            name: "message as sent (big route), 30 days, hourly",
            links: false,
            q: q("big", from, HOUR, false),
            group: group(Group::Message, &big_send, None, HOUR, false),
        },
        Case {
            name: "message as sent (big route), 30 days, links",
            links: true,
            q: q("big", from, DAY, false),
            group: group(Group::Message, &big_send, None, DAY, false),
        },
    ];
    let mut routes = vec![
        Case {
            name: "big route, 30 days, daily",
            links: false,
            q: q("big", from, DAY, false),
            group: None,
        },
        Case {
            name: "big route, 30 days, daily, include_machine",
            links: false,
            q: q("big", from, DAY, true),
            group: None,
        },
        Case {
            name: "big route, 30 days, hourly",
            links: false,
            q: q("big", from, HOUR, false),
            group: None,
        },
        Case {
            name: "big route, 30 days, hourly, include_machine",
            links: false,
            q: q("big", from, HOUR, true),
            group: None,
        },
        Case {
            name: "big route, 30 days, links",
            links: true,
            q: q("big", from, DAY, false),
            group: None,
        },
        Case {
            name: "big route, 30 days not on whole hours, daily",
            links: false,
            q: q("big", odd, DAY, false),
            group: None,
        },
        Case {
            name: "small route (route19), 30 days, daily",
            links: false,
            q: q("route19", from, DAY, false),
            group: None,
        },
    ];
    routes.append(&mut groups);
    routes
}

/// (median, p95, max) in ms.
fn summary(mut d: Vec<Duration>) -> (f64, f64, f64) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    let p = |f: f64| ms(d[((d.len() as f64 * f).ceil() as usize).clamp(1, d.len()) - 1]);
    (p(0.5), p(0.95), ms(*d.last().unwrap()))
}

fn drop_cache(path: &Path) {
    for p in [path.to_owned(), path.with_extension("db-wal")] {
        if p.exists() {
            // GNU dd: advise the kernel to drop the whole file's cache.
            let _ = std::process::Command::new("dd")
                .arg(format!("if={}", p.display()))
                .args(["iflag=nocache", "count=0", "status=none"])
                .status();
        }
    }
}

async fn run(storage: &Storage, c: &Case) -> Duration {
    let t = Instant::now();
    if let Some(g) = &c.group {
        if c.links {
            let links = storage.group_links(g.clone()).await.unwrap();
            assert!(!links.is_empty(), "{}: no links", c.name);
        } else {
            let (_, totals) = storage.group_stats(g.clone()).await.unwrap();
            assert!(totals.relayed > 0, "{}: nothing", c.name);
        }
    } else if c.links {
        let links = storage.route_links(c.q.clone()).await.unwrap();
        assert!(!links.is_empty(), "{}: no links", c.name);
    } else {
        let (buckets, totals) = storage.route_stats(c.q.clone()).await.unwrap();
        assert!(
            totals.relayed > 0 && !buckets.is_empty(),
            "{}: nothing",
            c.name
        );
    }
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let target = arg("--events", 10_000_000);
    let runs = arg("--runs", 9).max(1) as usize;
    let baseline_runs = arg("--baseline-runs", 3) as usize;
    let write_doc = std::env::args().any(|a| a == "--write-doc");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-stats");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("stats-{target}-g{GENERATOR}.db"));
    if !path.exists() {
        let partial = path.with_extension("partial.db");
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(partial.with_extension("db-wal"));
        let _ = std::fs::remove_file(partial.with_extension("db-shm"));
        generate(&partial, target);
        std::fs::rename(&partial, &path).unwrap();
    }
    let storage = Storage::open(&path).unwrap();
    let conn =
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let (events, copies): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM messages)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let big: i64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE route = 'big' AND at_ms >= ?1 AND at_ms < ?2",
            params![END - 30 * DAY, END],
            |r| r.get(0),
        )
        .unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "{}: {events} events, {copies} copies, {:.1} GB; big route: {big} events in the 30 days",
        path.display(),
        size as f64 / 1e9
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut table = format!(
        "{events} events, {copies} copies, {:.1} GB database; the big route has {big} events in the 30 days. Load average at the start: {}.\n\n\
         | query | baseline (former SQL) median / max | warm median | warm p95 | warm max | cold median | cold max |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        size as f64 / 1e9,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Baselines first, all of them, while the file is in the OS cache
    // (the cold runs below drop it), on their own connection.
    let mut baselines = Vec::new();
    for c in cases() {
        let mut base = Vec::new();
        for _ in 0..baseline_runs {
            let t = Instant::now();
            let n = if let Some(g) = &c.group {
                baseline_group(&conn, g, c.links)
            } else if c.links {
                baseline_links(&conn, &c.q)
            } else {
                baseline_stats(&conn, &c.q)
            };
            assert!(n > 0);
            base.push(t.elapsed());
            eprintln!(
                "baseline, {}: {:.0} ms",
                c.name,
                base.last().unwrap().as_secs_f64() * 1e3
            );
        }
        baselines.push(base);
    }
    for (c, base) in cases().into_iter().zip(baselines) {
        let mut cold = Vec::new();
        for _ in 0..3 {
            drop_cache(&path);
            let fresh = Storage::open(&path).unwrap();
            cold.push(run(&fresh, &c).await);
        }
        let mut warm = Vec::new();
        run(&storage, &c).await;
        for _ in 0..runs {
            warm.push(run(&storage, &c).await);
        }
        let (wm, wp, wx) = summary(warm);
        let (cm, _, cx) = summary(cold);
        let base = if base.is_empty() {
            "—".to_owned()
        } else {
            let (bm, _, bx) = summary(base);
            format!("{bm:.0} / {bx:.0} ms")
        };
        let line = format!(
            "| {} | {base} | {wm:.2} ms | {wp:.2} ms | {wx:.2} ms | {cm:.2} ms | {cx:.2} ms |\n",
            c.name
        );
        eprint!("{line}");
        table.push_str(&line);
    }
    println!("{table}");
    if write_doc {
        let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md");
        let text = std::fs::read_to_string(&doc).unwrap();
        let (begin, end) = ("<!-- stats-bench:begin -->\n", "<!-- stats-bench:end -->");
        let (a, b) = (
            text.find(begin).expect("begin marker"),
            text.find(end).expect("end marker"),
        );
        let out = format!("{}{begin}{table}{}", &text[..a], &text[b..]);
        std::fs::write(&doc, out).unwrap();
        eprintln!("docs/benchmarks.md updated");
    }
}
