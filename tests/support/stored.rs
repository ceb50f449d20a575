//! The copies and events as stored, read straight from either backend's
//! tables (SQLite's file, or the PostgreSQL cluster over its socket), and
//! statistics recounted from them in plain Rust: the independent answer
//! that `Storage::route_stats`, `group_stats` and their links are
//! compared with. Uniques go by order of storing: events are read in id
//! order, and the tests create their ids (UUIDv7, increasing) in the
//! order they store them.

use std::collections::{BTreeMap, HashMap, HashSet};

use trackrelay::storage::{Counts, LinkClicks};
use uuid::Uuid;

use super::db::{Db, Kind};

/// A stored copy, as the statistics see it.
#[derive(Debug, Clone)]
pub struct Copy {
    pub id: Uuid,
    pub route: String,
    pub tags: Vec<String>,
    pub message_id_header: Option<String>,
    pub relayed_at_ms: i64,
    pub failed: bool,
}

/// A stored event, as the statistics see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub message_id: Uuid,
    pub recipient_id: Option<String>,
    pub kind: String,
    pub url: Option<String>,
    pub at_ms: i64,
    pub counts: bool,
}

/// Everything stored, events in the order stored.
pub struct Stored {
    pub copies: Vec<Copy>,
    pub events: Vec<Event>,
}

const COPIES: &str =
    "SELECT id, route, tags, message_id_header, relayed_at_ms, status FROM messages";
const EVENTS: &str =
    "SELECT id, message_id, recipient_id, kind, url, at_ms, counts FROM events ORDER BY id";

/// Reads every copy and event of `db`.
pub async fn load(db: &Db) -> Stored {
    match db.kind {
        Kind::Sqlite => load_sqlite(&db.dir.path().join("t.db")),
        Kind::Postgres => load_postgres(db).await,
    }
}

/// Reads every copy and event of the SQLite file at `path`.
pub fn load_sqlite(path: &std::path::Path) -> Stored {
    let conn = rusqlite::Connection::open(path).unwrap();
    let uuid = |s: String| Uuid::parse_str(&s).unwrap();
    let copies = conn
        .prepare(COPIES)
        .unwrap()
        .query_map([], |r| {
            let tags: String = r.get(2)?;
            Ok(Copy {
                id: uuid(r.get(0)?),
                route: r.get(1)?,
                tags: serde_json::from_str(&tags).unwrap(),
                message_id_header: r.get(3)?,
                relayed_at_ms: r.get(4)?,
                failed: r.get::<_, String>(5)? == "failed",
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let events = conn
        .prepare(EVENTS)
        .unwrap()
        .query_map([], |r| {
            Ok(Event {
                id: uuid(r.get(0)?),
                message_id: uuid(r.get(1)?),
                recipient_id: r.get(2)?,
                kind: r.get(3)?,
                url: r.get(4)?,
                at_ms: r.get(5)?,
                counts: r.get::<_, i64>(6)? == 1,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    Stored { copies, events }
}

/// A plain connection to the test cluster of `db`.
pub async fn pg_client(db: &Db) -> tokio_postgres::Client {
    let cluster = db.cluster().expect("a PostgreSQL database");
    let (client, connection) = tokio_postgres::Config::new()
        .host_path(cluster.socket_dir())
        .user("postgres")
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn load_postgres(db: &Db) -> Stored {
    let client = pg_client(db).await;
    let copies = client
        .query(COPIES, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| Copy {
            id: r.get(0),
            route: r.get(1),
            tags: r.get(2),
            message_id_header: r.get(3),
            relayed_at_ms: r.get(4),
            failed: r.get::<_, String>(5) == "failed",
        })
        .collect();
    let events = client
        .query(EVENTS, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| Event {
            id: r.get(0),
            message_id: r.get(1),
            recipient_id: r.get(2),
            kind: r.get(3),
            url: r.get(4),
            at_ms: r.get(5),
            counts: r.get(6),
        })
        .collect();
    Stored { copies, events }
}

/// What to recount.
pub struct Recount<'a> {
    /// Which copies count.
    pub copies: &'a dyn Fn(&Copy) -> bool,
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
    pub include_machine: bool,
}

/// An event with its copy and which uniques it is the first of:
/// (counting of its kind, any of its kind, counting on its URL, any on
/// its URL), per copy and recipient, in the order stored.
struct Judged<'a> {
    event: &'a Event,
    copy: &'a Copy,
    firsts: [bool; 4],
}

impl Stored {
    /// The copy with `id`, if stored.
    pub fn copy(&self, id: Uuid) -> Option<&Copy> {
        self.copies.iter().find(|c| c.id == id)
    }

    /// Events whose copy is stored, with their firsts.
    fn judged(&self) -> Vec<Judged<'_>> {
        let copies: HashMap<Uuid, &Copy> = self.copies.iter().map(|c| (c.id, c)).collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for e in &self.events {
            let Some(copy) = copies.get(&e.message_id) else {
                continue;
            };
            let who = (e.message_id, e.recipient_id.clone(), e.kind.clone());
            let url = e.url.clone().filter(|_| e.kind == "click");
            let mut first = |scope: u8, url: Option<String>| seen.insert((who.clone(), scope, url));
            let firsts = [
                e.counts && first(0, None),
                first(1, None),
                e.counts && url.is_some() && first(2, url.clone()),
                url.is_some() && first(3, url),
            ];
            out.push(Judged {
                event: e,
                copy,
                firsts,
            });
        }
        out
    }

    /// The buckets that have anything, oldest first, and the totals.
    pub fn counts(&self, q: &Recount<'_>) -> (Vec<(i64, Counts)>, Counts) {
        let mut buckets: BTreeMap<i64, Counts> = BTreeMap::new();
        let start = |at: i64| at / q.bucket_ms * q.bucket_ms;
        let within = |at: i64| at >= q.from_ms && at < q.to_ms;
        for c in &self.copies {
            if !c.failed && within(c.relayed_at_ms) && (q.copies)(c) {
                buckets.entry(start(c.relayed_at_ms)).or_default().relayed += 1;
            }
        }
        for j in self.judged() {
            let e = j.event;
            if !within(e.at_ms) || !(q.copies)(j.copy) || !(q.include_machine || e.counts) {
                continue;
            }
            let first = u64::from(if q.include_machine {
                j.firsts[1]
            } else {
                j.firsts[0]
            });
            let b = buckets.entry(start(e.at_ms)).or_default();
            if e.kind == "open" {
                b.opens += 1;
                b.unique_opens += first;
            } else {
                b.clicks += 1;
                b.unique_clicks += first;
            }
        }
        buckets.retain(|_, c| *c != Counts::default());
        let mut totals = Counts::default();
        for c in buckets.values() {
            totals.relayed += c.relayed;
            totals.opens += c.opens;
            totals.unique_opens += c.unique_opens;
            totals.clicks += c.clicks;
            totals.unique_clicks += c.unique_clicks;
        }
        (buckets.into_iter().collect(), totals)
    }

    /// Clicks per destination, most clicked first (ties by URL).
    pub fn links(&self, q: &Recount<'_>) -> Vec<LinkClicks> {
        let mut by_url: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for j in self.judged() {
            let e = j.event;
            let Some(url) = e.url.clone().filter(|_| e.kind == "click") else {
                continue;
            };
            let within = e.at_ms >= q.from_ms && e.at_ms < q.to_ms;
            if !within || !(q.copies)(j.copy) || !(q.include_machine || e.counts) {
                continue;
            }
            let first = if q.include_machine {
                j.firsts[3]
            } else {
                j.firsts[2]
            };
            let entry = by_url.entry(url).or_default();
            entry.0 += 1;
            entry.1 += u64::from(first);
        }
        let mut out: Vec<LinkClicks> = by_url
            .into_iter()
            .map(|(url, (clicks, unique_clicks))| LinkClicks {
                url,
                clicks,
                unique_clicks,
            })
            .collect();
        out.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.url.cmp(&b.url)));
        out
    }
}

/// The Message-ID as the statistics compare it: without surrounding
/// spaces and angle brackets.
pub fn bare(message_id: &str) -> &str {
    message_id.trim_matches([' ', '<', '>'])
}
