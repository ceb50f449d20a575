//! `trackrelay migrate-storage` (docs/scaling.md, "Moving a SQLite
//! database over"): a real `serve` on SQLite relays mail and records hits,
//! events, webhook deliveries and a route override; it is stopped, the
//! real binary copies its database into a private PostgreSQL cluster, and
//! a `serve` on PostgreSQL answers the API as the old node did, and keeps
//! tracking the mail already sent. And bad input, each named in the error.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::db::Cluster;
use support::server::{API_TOKEN, Binary, HOST, Http, config_text, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// A webhook endpoint that answers every request 200 and counts them:
/// a real HTTP peer on a real socket.
async fn receiver() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then as much body as Content-Length says.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if complete(&request) {
                        break;
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, count)
}

/// Whether `request` holds its headers and its whole body.
fn complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

/// The node's config: the test config with its SMTP listener on `smtp`,
/// hits judged at once, every event sent to `hook` (answers) and `dead`
/// (refuses; retried only after ten minutes), on `storage` (a
/// `[storage]` line replacing the SQLite path, or none).
fn node_config(dir: &Path, ports: &Ports, storage: Option<&str>) -> String {
    let text = config_text(dir, &ports.tracking.to_string(), &ports.api.to_string(), "").replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{}\"", ports.smtp),
    );
    let text = match storage {
        Some(line) => text.replace(
            &format!("path = \"{}\"", dir.join("trackrelay.db").display()),
            line,
        ),
        None => text,
    };
    let hook = |port: u16| {
        format!(
            "\n[[routes.webhooks]]\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             secret = \"whsec_Wohz8vFyz3th8zv63w2PNHNhoHtlmYWf\"\n\
             events = [\"message.relayed\", \"message.opened\", \"message.clicked\"]\n\
             include_machine = true\n"
        )
    };
    format!(
        "{text}{}{}\n[classifier]\nwait_seconds = 0\n\
         [webhooks]\nallow_private_networks = true\nretry_base_ms = 600000\n",
        hook(ports.hook),
        hook(ports.dead)
    )
}

struct Ports {
    smtp: u16,
    tracking: SocketAddr,
    api: SocketAddr,
    hook: u16,
    dead: u16,
}

impl Ports {
    fn new(hook: u16) -> Ports {
        let local = |p: u16| format!("127.0.0.1:{p}").parse().unwrap();
        Ports {
            smtp: free_port(),
            tracking: local(free_port()),
            api: local(free_port()),
            hook,
            dead: free_port(),
        }
    }
}

async fn start(ports: &Ports, storage: Option<&str>) -> Binary {
    let dir = tempfile::tempdir().unwrap();
    let text = node_config(dir.path(), ports, storage);
    std::fs::write(dir.path().join("trackrelay.toml"), text).unwrap();
    Binary::run(dir, ports.tracking, ports.api).await
}

async fn api(http: &Http, node: &Binary, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {API_TOKEN}");
    let r = http
        .send("GET", node.api, "api", path, &[("authorization", &auth)])
        .await
        .unwrap();
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// Waits until `done` holds for the node's answer to `path`.
async fn wait_for(
    http: &Http,
    node: &Binary,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = api(http, node, path).await;
        if done(&v) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never ready: {v}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `trackrelay migrate-storage ARGS`: success, stdout, stderr.
fn migrate_storage(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .arg("migrate-storage")
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

async fn hit(http: &Http, node: &Binary, path: &str) -> support::server::Resp {
    http.send("GET", node.tracking, HOST, path, &[("user-agent", BROWSER)])
        .await
        .unwrap()
}

/// What the API answers that a move must keep: the listing, the copy, its
/// hits, its route's statistics and clicks, the overridden route, the
/// webhook outbox.
async fn snapshot(http: &Http, node: &Binary, id: &str) -> Vec<(String, serde_json::Value)> {
    let now = jiff::Timestamp::now();
    let day = jiff::SignedDuration::from_hours(24);
    let range = format!(
        "from={}&to={}",
        (now - day).strftime("%Y-%m-%d"),
        (now + day + day).strftime("%Y-%m-%d")
    );
    let mut out = Vec::new();
    for path in [
        "/v1/messages?limit=10".to_owned(),
        format!("/v1/messages/{id}?include_machine=true"),
        format!("/v1/messages/{id}/observations"),
        format!("/v1/routes/default/stats?{range}&include_machine=true"),
        format!("/v1/routes/default/links?{range}&include_machine=true"),
        "/v1/routes/news".to_owned(),
        "/v1/webhooks/deliveries?limit=100".to_owned(),
    ] {
        let v = api(http, node, &path).await;
        out.push((path, v));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_node_moves_to_postgres_with_everything_it_had() {
    let (hook, received) = receiver().await;
    let ports = Ports::new(hook);
    let old = start(&ports, None).await;
    let http = Http::default();

    let html = "<html><body><p>Hi</p><a href=\"https://example.com/offer\">offer</a>\
                <a href=\"https://example.com/more\">more</a></body></html>";
    let out = support::smtplib_send(ports.smtp, "bob@example.com", html);
    assert!(out.status.success(), "{out:?}");
    let (open, click) = support::outbox_tokens(&old.dir.path().join("outbox"));
    assert_eq!(hit(&http, &old, &format!("/o/{open}")).await.status, 200);
    let redirect = hit(&http, &old, &format!("/c/{click}")).await;
    assert_eq!(redirect.status, 302);
    let auth = format!("Bearer {API_TOKEN}");
    let patched = http
        .send_body(
            "PATCH",
            old.api,
            "api",
            "/v1/routes/news",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            r#"{"track_clicks": false}"#,
        )
        .await
        .unwrap();
    assert_eq!(patched.status, 200, "{:?}", patched.body);

    // Both hits judged; the relayed event delivered to one endpoint and
    // pending (refused, retried later) for the other.
    let list = api(&http, &old, "/v1/messages?limit=10").await;
    let id = list["messages"][0]["id"].as_str().unwrap().to_owned();
    let events = format!("/v1/messages/{id}?include_machine=true");
    wait_for(&http, &old, &events, |v| {
        v["events"].as_array().is_some_and(|e| e.len() == 2)
    })
    .await;
    let outbox = "/v1/webhooks/deliveries?limit=100";
    wait_for(&http, &old, outbox, |v| {
        let list = v["deliveries"].as_array().cloned().unwrap_or_default();
        let status = |s: &str| list.iter().filter(|d| d["status"] == s).count();
        list.len() == 6
            && status("delivered") == 3
            && status("pending") == 3
            && list
                .iter()
                .all(|d| d["attempts"].as_array().is_some_and(|a| a.len() == 1))
    })
    .await;
    assert_eq!(received.load(Ordering::SeqCst), 3);
    let before = snapshot(&http, &old, &id).await;
    old.terminate();
    let mut old = old;
    assert!(old.child.wait().unwrap().success(), "{}", old.log());

    let cluster = Cluster::start();
    let from = format!("sqlite:{}", old.db_path().display());
    let (ok, stdout, stderr) =
        migrate_storage(&["--from", &from, "--to", &cluster.url(), "--batch-rows", "2"]);
    assert!(ok, "{stdout}\n{stderr}");
    for line in [
        "messages: 1 of 1 copied",
        "observations: 2 of 2 copied",
        "events: 2 of 2 copied",
        "webhook_deliveries: 6 of 6 copied",
        "webhook_attempts: 6 of 6 copied",
        "route_overrides: 1 of 1 copied",
    ] {
        assert!(stdout.contains(line), "{line:?} in\n{stdout}");
    }
    assert!(stderr.contains("migrate-storage: copied"), "{stderr}");

    let new = start(&ports, Some(&format!("url = \"{}\"", cluster.url()))).await;
    let after = snapshot(&http, &new, &id).await;
    for ((path, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{path} differs after the move");
    }
    assert_eq!(
        received.load(Ordering::SeqCst),
        3,
        "nothing delivered twice"
    );

    // A link of the mail sent before the move: redirected, and stored
    // against the same copy.
    let again = hit(&http, &new, &format!("/c/{click}")).await;
    assert_eq!(again.status, 302);
    assert_eq!(again.header("location"), redirect.header("location"));
    let hits = format!("/v1/messages/{id}/observations");
    wait_for(&http, &new, &hits, |v| {
        v["observations"].as_array().is_some_and(|o| o.len() == 3)
    })
    .await;

    // Again into the database now in use: refused, naming why.
    let (ok, stdout, stderr) = migrate_storage(&["--from", &from, "--to", &cluster.url()]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("already holds data (messages: 1 rows"),
        "{stderr}"
    );
    assert!(stderr.contains("--resume"), "{stderr}");
    // --resume keeps what is there and copies nothing twice.
    let (ok, stdout, stderr) =
        migrate_storage(&["--from", &from, "--to", &cluster.url(), "--resume"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("messages: 0 of 1 copied, 1 already there"),
        "{stdout}"
    );
    assert!(
        stdout.contains("events: 0 of 2 copied, 2 already there"),
        "{stdout}"
    );
    let list = api(&http, &new, "/v1/messages?limit=10").await;
    assert_eq!(list["messages"].as_array().unwrap().len(), 1);
}

/// A trackrelay SQLite database with nothing in it.
fn empty_database(dir: &Path) -> PathBuf {
    let path = dir.join("empty.db");
    drop(trackrelay::storage::Storage::open(&path).unwrap());
    path
}

#[test]
fn bad_input_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = |p: &Path| format!("sqlite:{}", p.display());
    let port = free_port();
    let unused = format!("postgresql://postgres:s3cret@127.0.0.1:{port}/postgres?sslmode=disable");

    let missing = dir.path().join("nothing-here.db");
    let (ok, _, stderr) = migrate_storage(&["--from", &sqlite(&missing), "--to", &unused]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{}: no such file", missing.display())),
        "{stderr}"
    );

    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    drop(conn);
    let (ok, _, stderr) = migrate_storage(&["--from", &sqlite(&other), "--to", &unused]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "{} is a SQLite database but not trackrelay's",
            other.display()
        )),
        "{stderr}"
    );

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, just some words\n".repeat(200),
    )
    .unwrap();
    let (ok, _, stderr) = migrate_storage(&["--from", &sqlite(&text), "--to", &unused]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{} is not a SQLite database", text.display())),
        "{stderr}"
    );

    let db = empty_database(dir.path());
    let (ok, _, stderr) = migrate_storage(&["--from", &sqlite(&db), "--to", &unused]);
    assert!(!ok);
    let shown = format!("cannot reach PostgreSQL at postgresql://postgres:***@127.0.0.1:{port}/");
    assert!(stderr.contains(&shown), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");

    let (ok, _, stderr) = migrate_storage(&["--from", &sqlite(&db), "--to", "mysql://x"]);
    assert!(!ok);
    assert!(stderr.contains("--to"), "{stderr}");
}

/// What a SQLite database holds beside copies and hits: a copy's sending
/// API metadata, an Idempotency-Key answer, an endpoint disabled by a 410,
/// minimised hits (their IP hash) and retention's watermark, tracking
/// domains, first counts; all of it on the SQLite side read back through
/// the storage API.
struct Seeded {
    copies: Vec<trackrelay::storage::RelayedCopy>,
    digest: [u8; 32],
    delivery: uuid::Uuid,
}

async fn seed(storage: &trackrelay::storage::Storage, path: &Path) -> Seeded {
    use trackrelay::storage::retention::{Cursor, Maintenance};
    use trackrelay::storage::{
        Attempt, DomainsSeen, IdempotentResponse, NewDelivery, Next, Observation, RouteOverride,
        WebhookWrite,
    };
    use trackrelay::token::Kind;
    let now = trackrelay::time::now_ms();
    let (a, b) = (
        support::rows::copy("default", "ann@example.com", now - 5_000),
        support::rows::copy("news", "ben@example.com", now - 4_000),
    );
    storage.record_relayed(a.clone()).await.unwrap();
    storage
        .record_metadata(b.id, serde_json::json!({"campaign": "spring"}))
        .unwrap();
    let delivery = uuid::Uuid::now_v7();
    let queued = NewDelivery {
        id: delivery,
        route: "news".into(),
        url: "http://127.0.0.1:9/gone".into(),
        event_type: "message.relayed".into(),
        event_id: b.id,
        payload: "{}".into(),
        created_at_ms: now - 4_000,
    };
    let write = WebhookWrite::Relayed(Box::new(b.clone()), vec![queued]);
    storage.write_webhook(write).await.unwrap();
    let gone = Attempt {
        delivery_id: delivery,
        number: 1,
        at_ms: now - 3_900,
        duration_ms: 3,
        status_code: Some(410),
        error: Some("HTTP 410".into()),
    };
    let write = WebhookWrite::Attempt(gone, Next::Disable);
    storage.write_webhook(write).await.unwrap();
    for (i, at_ms) in [now - 3_000, now - 2_000].into_iter().enumerate() {
        let hit = Observation {
            id: uuid::Uuid::now_v7(),
            message_id: a.id,
            kind: Kind::Open,
            recipient_id: a.recipient_id.clone(),
            link: None,
            url: None,
            at_ms,
            method: "GET".into(),
            host: HOST.into(),
            ip: Some(format!("192.0.2.{i}").parse().unwrap()),
            user_agent: Some(BROWSER.into()),
            headers: vec![("user-agent".into(), BROWSER.into())],
            key_id: "k1".into(),
        };
        let stored = storage
            .record_observation(hit, Duration::from_secs(10))
            .await;
        assert_eq!(stored, trackrelay::storage::Stored::Committed);
    }
    // Two human opens the pipeline both took for a first; a machine click.
    let open = |at_ms| trackrelay::storage::Event {
        first: true,
        ..support::rows::event(&a, Kind::Open, None, at_ms, true, "")
    };
    let click = support::rows::event(&a, Kind::Click, Some(0), now - 1_000, false, "generic_bot");
    storage
        .record_events(vec![open(now - 3_000), open(now - 2_000), click])
        .await
        .unwrap();
    let digest = [7u8; 32];
    let answer = IdempotentResponse {
        token_digest: digest,
        key: "order-1".into(),
        body_digest: [9u8; 32],
        status: 202,
        body: br#"{"status":"queued"}"#.to_vec(),
        created_at_ms: now - 1_000,
    };
    storage.store_idempotent(answer, 86_400_000).await.unwrap();
    let o = RouteOverride {
        route: "news".into(),
        track_opens: Some(false),
        track_clicks: None,
        updated_at_ms: now - 500,
    };
    storage.set_route_override(o).await.unwrap();
    let urls = vec![
        "https://t.example.com/".into(),
        "https://old.example.net/".into(),
    ];
    let seen = DomainsSeen {
        urls,
        at_ms: now - 100,
    };
    storage.tracking_domains_seen(seen).unwrap();
    assert!(storage.flush(Duration::from_secs(10)).await);
    // Retention minimised the hits: IP hash kept, raw signals gone.
    let mut m = Maintenance::open(path).unwrap();
    let start = Cursor {
        at_ms: i64::MIN,
        rowid: 0,
    };
    let rows = m.after(start, i64::MAX, 100).unwrap();
    let hashed: Vec<(i64, String)> = rows
        .iter()
        .map(|r| (r.rowid, format!("hash{}", r.rowid)))
        .collect();
    assert_eq!(m.minimise(&hashed).unwrap(), 2);
    m.set_watermark(now).unwrap();
    Seeded {
        copies: vec![a, b],
        digest,
        delivery,
    }
}

/// Everything the storage API reads about `s`, for comparing backends.
async fn read_back(storage: &trackrelay::storage::Storage, s: &Seeded) -> String {
    let mut out = Vec::new();
    for c in &s.copies {
        out.push(format!("{:?}", storage.message(c.id).await.unwrap()));
        out.push(format!("{:?}", storage.observations(c.id).await.unwrap()));
        out.push(format!("{:?}", storage.events(c.id).await.unwrap()));
    }
    let ids = s.copies.iter().map(|c| c.id).collect();
    out.push(format!("{:?}", storage.metadata(ids).await.unwrap()));
    let answer = storage
        .idempotent(s.digest, "order-1".into())
        .await
        .unwrap();
    out.push(format!("{answer:?}"));
    out.push(format!("{:?}", storage.deliveries(None, 10).await.unwrap()));
    out.push(format!(
        "{:?}",
        storage.delivery_attempts(s.delivery).await.unwrap()
    ));
    out.push(format!("{:?}", storage.disabled_endpoints().await.unwrap()));
    out.push(format!("{:?}", storage.route_overrides().await.unwrap()));
    out.push(format!("{:?}", storage.tracking_domains().await.unwrap()));
    out.join("\n")
}

/// The tables the end-to-end test leaves empty, with a node still running
/// on the file (it is read in one read-only snapshot); then a run that
/// stopped part way (rows missing from the target) is resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_is_copied_and_a_resumed_run_fills_what_is_missing() {
    use trackrelay::storage::{Location, PostgresSettings, Storage};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let sqlite = Storage::open(&path).unwrap();
    let seeded = seed(&sqlite, &path).await;
    let expected = read_back(&sqlite, &seeded).await;
    assert!(
        expected.contains("first: true") && expected.contains("first: false"),
        "{expected}"
    );

    let cluster = Cluster::start();
    let from = format!("sqlite:{}", path.display());
    let (ok, stdout, stderr) = migrate_storage(&["--from", &from, "--to", &cluster.url()]);
    assert!(ok, "{stdout}\n{stderr}");
    for line in [
        "copy_metadata: 1 of 1 copied",
        "webhook_endpoints: 1 of 1 copied",
        "send_idempotency: 1 of 1 copied",
        "tracking_domains: 2 of 2 copied",
        "retention_state: 1 of 1 copied",
    ] {
        assert!(stdout.contains(line), "{line:?} in\n{stdout}");
    }
    let location = Location::Postgres(Box::new(PostgresSettings::parse(&cluster.url()).unwrap()));
    let pg = Storage::connect(&location, 1000).await.unwrap();
    assert_eq!(read_back(&pg, &seeded).await, expected);
    let (client, connection) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let hashes: Vec<Option<String>> = client
        .query("SELECT ip_hash FROM observations ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        hashes.len() == 2
            && hashes
                .iter()
                .all(|h| h.as_deref().is_some_and(|h| h.starts_with("hash"))),
        "{hashes:?}"
    );

    // As if the run had stopped before the last events and hits.
    let a = seeded.copies[0].id;
    for sql in [
        "DELETE FROM event_firsts WHERE event_id IN (SELECT id FROM events WHERE message_id = $1 AND at_ms > (SELECT min(at_ms) FROM events WHERE message_id = $1))",
        "DELETE FROM events WHERE message_id = $1 AND at_ms > (SELECT min(at_ms) FROM events WHERE message_id = $1)",
        "DELETE FROM observations WHERE message_id = $1 AND at_ms > (SELECT min(at_ms) FROM observations WHERE message_id = $1)",
    ] {
        client.execute(sql, &[&a]).await.unwrap();
    }
    let (ok, _, stderr) = migrate_storage(&["--from", &from, "--to", &cluster.url()]);
    assert!(!ok && stderr.contains("already holds data"), "{stderr}");
    let (ok, stdout, stderr) = migrate_storage(&[
        "--from",
        &from,
        "--to",
        &cluster.url(),
        "--resume",
        "--batch-rows",
        "1",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("events: 2 of 3 copied, 1 already there"),
        "{stdout}"
    );
    assert!(
        stdout.contains("observations: 1 of 2 copied, 1 already there"),
        "{stdout}"
    );
    assert!(
        stdout.contains("messages: 0 of 2 copied, 2 already there"),
        "{stdout}"
    );
    assert_eq!(read_back(&pg, &seeded).await, expected);
    drop(sqlite);
}
