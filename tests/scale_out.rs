//! Several nodes on one PostgreSQL (issue 16, docs/scaling.md): two real
//! `trackrelay serve` processes share a private cluster; mail relayed
//! through one is tracked through the other, and both APIs answer the
//! same. And the CLI's database commands on both backends.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::db::{Cluster, Db};
use support::node::{self, Node, api_get};
use support::server::{API_TOKEN, HOST, Http, config_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_relayed_through_one_node_is_tracked_through_the_other() {
    let cluster = Cluster::start();
    let Node {
        bin: a,
        smtp: smtp_a,
    } = node::start(&cluster).await;
    let Node { bin: b, .. } = node::start(&cluster).await;

    let out = support::smtplib_send(
        smtp_a,
        "bob@example.com",
        "<html><body><p>Hi</p><a href=\"https://example.com/offer\">offer</a></body></html>",
    );
    assert!(out.status.success(), "{out:?}");
    let (open, click) = support::outbox_tokens(&a.dir.path().join("outbox"));

    // The hits go to B.
    let http = Http::default();
    let pixel = http
        .send(
            "GET",
            b.tracking,
            HOST,
            &format!("/o/{open}"),
            &[(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            )],
        )
        .await
        .unwrap();
    assert_eq!(pixel.status, 200);
    let redirect = http
        .send(
            "GET",
            b.tracking,
            HOST,
            &format!("/c/{click}"),
            &[(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            )],
        )
        .await
        .unwrap();
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("location"), "https://example.com/offer");

    // Both nodes list the copy as engaged once its hits are judged (by
    // either node; a click this soon after relaying may be judged a
    // scanner's, so opened or clicked).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (list_a, list_b) = loop {
        let (sa, la) = api_get(&http, &a, "/v1/messages?limit=10").await;
        let (sb, lb) = api_get(&http, &b, "/v1/messages?limit=10").await;
        assert_eq!((sa, sb), (200, 200), "{la}\n{lb}");
        let engaged = |l: &str| l.contains("\"opened\"") || l.contains("\"clicked\"");
        if engaged(&la) && engaged(&lb) {
            break (la, lb);
        }
        assert!(
            Instant::now() < deadline,
            "never clicked on both:\nA {la}\nB {lb}\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(list_a, list_b);
    let list: serde_json::Value = serde_json::from_str(&list_a).unwrap();
    let id = list["messages"][0]["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/v1/messages/{id}"),
        format!("/v1/messages/{id}/observations"),
        "/v1/routes/default/stats".to_owned(),
        "/v1/routes/default/links".to_owned(),
    ] {
        let (sa, ba) = api_get(&http, &a, &path).await;
        let (sb, bb) = api_get(&http, &b, &path).await;
        assert_eq!((sa, sb), (200, 200), "{path}: {ba}\n{bb}");
        assert_eq!(ba, bb, "{path}");
    }
    // A route setting changed through A applies on B.
    let auth = format!("Bearer {API_TOKEN}");
    let patched = http
        .send_body(
            "PATCH",
            a.api,
            "api",
            "/v1/routes/default",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            r#"{"track_clicks": false}"#,
        )
        .await
        .unwrap();
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, route) = api_get(&http, &b, "/v1/routes/default").await;
        if route.contains("\"track_clicks\":false") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never took A's change: {route}\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.logged("route settings changed by another node taken", 1)
        .await;

    let (_, stats) = api_get(&http, &a, "/v1/routes/default/stats").await;
    assert!(stats.contains("\"unique_opens\":1"), "{stats}");
    assert!(stats.contains("\"relayed\":1"), "{stats}");
}

fn trackrelay(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

crate::on_both_backends!(database_commands_work_on_both_backends);

/// `migrate`, `stats`, `webhooks list`, `prune` and `forget` on a database
/// with one copy and its hits.
async fn database_commands_work_on_both_backends(db: Db) {
    let storage = db.open().await;
    let copy = support::rows::copy("default", "carol@example.com", trackrelay::time::now_ms());
    storage.record_relayed(copy.clone()).await.unwrap();
    drop(storage);
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "127.0.0.1:0", "127.0.0.1:0", "");
    let path_line = format!(
        "[storage]\npath = \"{}\"\n",
        dir.path().join("trackrelay.db").display()
    );
    assert!(text.contains(&path_line));
    let text = text.replace(&path_line, &db.config_section());
    let config = dir.path().join("t.toml");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();

    let (ok, out) = trackrelay(&["migrate", "--config", config]);
    assert!(ok && out.contains("schema up to date"), "{out}");
    let (ok, out) = trackrelay(&["stats", "--config", config, "--route", "default", "--json"]);
    assert!(ok && out.contains("\"relayed\":1"), "{out}");
    let (ok, out) = trackrelay(&["webhooks", "--config", config, "list"]);
    assert!(ok, "{out}");
    let (ok, out) = trackrelay(&["prune", "--config", config, "--dry-run"]);
    assert!(
        ok && out.contains("observations would be minimised"),
        "{out}"
    );
    let (ok, out) = trackrelay(&[
        "forget",
        "--config",
        config,
        "--recipient",
        "Carol@example.com",
    ]);
    assert!(ok && out.contains("copies deleted: 1"), "{out}");

    let storage = db.open().await;
    assert_eq!(storage.message(copy.id).await.unwrap(), None);
}

/// Two nodes (two `Storage` handles on one database) looking for due
/// webhook deliveries at once get disjoint sets: each delivery is claimed
/// by one node; a claim lasts its lease, after which another node (the
/// first one died mid-try) takes the delivery over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_are_claimed_by_one_node_at_a_time() {
    use trackrelay::storage::{NewDelivery, WebhookWrite};
    let db = Db::new(support::db::Kind::Postgres);
    let (a, b) = (db.open().await, db.open().await);
    let now = trackrelay::time::now_ms();
    let copy = support::rows::copy("default", "dave@example.com", now);
    let deliveries: Vec<NewDelivery> = (0..40)
        .map(|i| NewDelivery {
            id: uuid::Uuid::now_v7(),
            route: "default".into(),
            url: format!("http://127.0.0.1:9/hook{i}"),
            event_type: "message.relayed".into(),
            event_id: copy.id,
            payload: "{}".into(),
            created_at_ms: now - 1,
        })
        .collect();
    a.write_webhook(WebhookWrite::Relayed(Box::new(copy), deliveries.clone()))
        .await
        .unwrap();
    let lease = Duration::from_secs(120);
    let (x, y) = tokio::join!(
        a.due_deliveries(now, 25, lease),
        b.due_deliveries(now, 25, lease)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut ids: Vec<_> = x.iter().chain(&y).map(|d| d.id).collect();
    assert_eq!(ids.len(), 40, "{} + {}", x.len(), y.len());
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "a delivery claimed by both nodes");
    // Claimed: not due for anyone until the lease ends, then due again.
    let later = |ms: i64| b.due_deliveries(now + ms, 100, lease);
    assert!(later(1_000).await.unwrap().is_empty());
    assert!(later(119_999).await.unwrap().is_empty());
    assert_eq!(later(120_000).await.unwrap().len(), 40);
}

/// Redirects never wait for the database: a click while PostgreSQL is
/// stopped still gets its 302, and the hit, queued, is stored once the
/// database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_while_postgres_is_down_is_redirected_and_stored_later() {
    let cluster = Cluster::start();
    let node = node::start(&cluster).await.bin;
    let (id, token) = support::server::token(
        trackrelay::token::Kind::Click,
        Some("https://example.com/later"),
        support::server::next_week(),
    );
    cluster.pg_ctl("stop");
    let http = Http::default();
    let r = http
        .send("GET", node.tracking, HOST, &format!("/c/{token}"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), "https://example.com/later");
    cluster.pg_ctl("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) =
            api_get(&http, &node, &format!("/v1/messages/{id}/observations")).await;
        if status == 200 && body.contains("https://example.com/later") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hit never stored: {status} {body}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.logged("database writable again", 1).await;
}
