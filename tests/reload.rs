//! A reload (SIGHUP) changes every derived piece of a route at once, and
//! never breaks a link already in a recipient's inbox (issue 15).
//!
//! - The real binary: a route moved to a new tracking domain by SIGHUP
//!   sends mail whose links answer 302 at once (and the hit is stored);
//!   the domain the reload took away still answers for the mail sent
//!   before; both still do after a restart on the new config.
//! - In process: after `App::reload`, the relay, webhooks, the tracking
//!   server's hosts, the API, the dashboard and the classifier's lists all
//!   follow the new file.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::relay::{Client, html_message};
use support::server::{API_TOKEN, Binary, Http, Resp, TestServer, free_port};
use trackrelay::config::Envelope;
use trackrelay::token::Kind;
use uuid::Uuid;

/// The ports of one test process: the config names them, so a restart
/// listens where the mail's links point.
struct Ports {
    smtp: u16,
    tracking: u16,
    api: u16,
}

impl Ports {
    fn free() -> Self {
        Self {
            smtp: free_port(),
            tracking: free_port(),
            api: free_port(),
        }
    }

    /// The tracking base URL of `host` (all names resolve nowhere: the
    /// client connects to 127.0.0.1 and sends this Host).
    fn domain(&self, host: &str) -> String {
        format!("http://{host}:{}", self.tracking)
    }
}

/// A config whose one route tracks everything on `domain`.
fn config(dir: &Path, ports: &Ports, domain: &str) -> String {
    format!(
        r#"[smtp]
listen = "127.0.0.1:{smtp}"
hostname = "relay.test"
[upstream]
url = "dir:{outbox}"
[tracking]
listen = "127.0.0.1:{tracking}"
base_url = "{base}"
[[tracking.keys]]
id = "k1"
secret = "0123456789abcdef0123456789abcdef"
[api]
listen = "127.0.0.1:{api}"
token = "{API_TOKEN}"
[storage]
path = "{db}"
[[routes]]
id = "default"
track_opens = true
track_clicks = true
tracking_domain = "{domain}"
"#,
        smtp = ports.smtp,
        tracking = ports.tracking,
        api = ports.api,
        base = ports.domain("base.localtest"),
        outbox = dir.join("outbox").display(),
        db = dir.join("trackrelay.db").display(),
    )
}

/// Relays one message through `smtp`; returns the copy's id and its text
/// as the upstream got it.
async fn relay_one(smtp: SocketAddr, outbox: &Path) -> (Uuid, String) {
    let before = copies(outbox);
    let mut c = Client::connect(smtp).await;
    let (_, reply) = c
        .send("a@example.com", &["b@example.com"], &html_message(""))
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let new: Vec<Uuid> = copies(outbox)
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "one new copy");
    let text = std::fs::read_to_string(outbox.join(format!("{}.eml", new[0]))).unwrap();
    (new[0], text)
}

/// The ids of the copies in the `dir:` upstream's outbox.
fn copies(outbox: &Path) -> Vec<Uuid> {
    let Ok(entries) = std::fs::read_dir(outbox) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Uuid::parse_str(name.strip_suffix(".eml")?).ok()
        })
        .collect()
}

/// The click token of the one link of `text`, under `base`.
fn click_token(text: &str, base: &str) -> String {
    let tokens = support::tokens_after(text, base, "c");
    assert_eq!(tokens.len(), 1, "one link under {base} in:\n{text}");
    tokens[0].to_owned()
}

/// GET of a click on the tracking listener at `addr` with `Host: host`.
async fn click(addr: SocketAddr, host: &str, token: &str) -> Resp {
    Http::default()
        .send("GET", addr, host, &format!("/c/{token}"), &[])
        .await
        .unwrap()
}

/// Waits until the API lists `count` hits on copy `id`; returns their
/// Host headers.
async fn stored_hosts(api: SocketAddr, id: Uuid, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let auth = format!("Bearer {API_TOKEN}");
    loop {
        let r = Http::default()
            .send(
                "GET",
                api,
                "localhost",
                &format!("/v1/messages/{id}/observations"),
                &[("authorization", &auth)],
            )
            .await
            .unwrap();
        if r.status == 200 {
            let hosts: Vec<String> = r.json()["observations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["host"].as_str().unwrap().to_owned())
                .collect();
            if hosts.len() >= count {
                return hosts;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{count} hits on {id} not stored: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const DESTINATION: &str = "https://example.com/?a=1&b=2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_tracking_domain_answers_at_once_and_the_removed_one_keeps_answering() {
    let ports = Ports::free();
    let dir = tempfile::tempdir().unwrap();
    let (t1, t2) = (ports.domain("t1.localtest"), ports.domain("t2.localtest"));
    let path = dir.path().join("trackrelay.toml");
    std::fs::write(&path, config(dir.path(), &ports, &t1)).unwrap();
    let tracking: SocketAddr = format!("127.0.0.1:{}", ports.tracking).parse().unwrap();
    let smtp: SocketAddr = format!("127.0.0.1:{}", ports.smtp).parse().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", ports.api).parse().unwrap();
    let mut bin = Binary::run(dir, tracking, api).await;
    let outbox = bin.dir.path().join("outbox");
    let (host1, host2) = (
        format!("t1.localtest:{}", ports.tracking),
        format!("t2.localtest:{}", ports.tracking),
    );

    // Mail sent before the reload carries t1.
    let (old_id, old_text) = relay_one(smtp, &outbox).await;
    let old_token = click_token(&old_text, &t1);

    // SIGHUP moves the route to t2.
    std::fs::write(&path, config(bin.dir.path(), &ports, &t2)).unwrap();
    bin.signal("HUP");
    bin.logged("config reloaded", 1).await;

    // A fresh message's link is on t2, and its click is a redirect, stored.
    let (new_id, new_text) = relay_one(smtp, &outbox).await;
    let new_token = click_token(&new_text, &t2);
    let r = click(tracking, &host2, &new_token).await;
    assert_eq!(r.status, 302, "{}", bin.log());
    assert_eq!(r.header("location"), DESTINATION);
    assert_eq!(
        stored_hosts(api, new_id, 1).await,
        std::slice::from_ref(&host2)
    );

    // The link sent before the reload, on the domain it took away.
    let r = click(tracking, &host1, &old_token).await;
    assert_eq!(r.status, 302, "t1 still answers for mail in inboxes");
    assert_eq!(r.header("location"), DESTINATION);
    assert_eq!(
        stored_hosts(api, old_id, 1).await,
        std::slice::from_ref(&host1)
    );

    // The Host check still stands for a name never configured.
    let stranger = format!("t3.localtest:{}", ports.tracking);
    assert_eq!(click(tracking, &stranger, &new_token).await.status, 421);

    // After a restart on the new config, both domains still answer.
    bin.restart().await;
    assert_eq!(click(tracking, &host1, &old_token).await.status, 302);
    assert_eq!(click(tracking, &host2, &new_token).await.status, 302);
    assert_eq!(stored_hosts(api, old_id, 2).await, [host1.clone(), host1]);
    assert_eq!(stored_hosts(api, new_id, 2).await, [host2.clone(), host2]);
    assert_eq!(click(tracking, &stranger, &new_token).await.status, 421);
}

/// [`support::server::config_text`] after a reload: route "news" on a
/// new domain with a webhook, a new route "later", other classifier rules.
fn reloaded_config(dir: &Path) -> String {
    support::server::config_text(dir, "127.0.0.1:0", "127.0.0.1:0", "")
        .replace(
            "https://Links.News.example:8443",
            "https://moved.news.example",
        )
        .replace(
            "[[routes]]\nid = \"default\"",
            "[[routes.webhooks]]\nurl = \"https://hooks.example.com/in\"\n\
             secret = \"whsec_Wohz8vFyz3th8zv63w2PNHNhoHtlmYWf\"\n\
             events = [\"message.relayed\"]\n\n\
             [[routes]]\nid = \"later\"\ntrack_clicks = true\n[routes.match]\n\
             senders = [\"later.example.com\"]\n\n[[routes]]\nid = \"default\"",
        )
        + "\n[classifier]\nburst_links = 5\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_derived_piece_follows_a_reload() {
    let server = TestServer::start("").await;
    let app = server.app();
    let path = server.dir.path().join("trackrelay.toml");
    std::fs::write(&path, reloaded_config(server.dir.path())).unwrap();
    let news_envelope = Envelope {
        auth_user: None,
        sender: "x@news.example.com",
        client_ip: "127.0.0.1".parse().unwrap(),
    };
    let before = app.relay().select_route(&news_envelope);
    assert_eq!(
        before.settings.tracking_domain.unwrap().as_str(),
        "https://links.news.example:8443/"
    );
    assert_eq!(app.pipeline().lists().rules().burst_links, 2);

    app.reload(&path).await.unwrap();

    // The relay chooses the reloaded routes.
    let news = app.relay().select_route(&news_envelope);
    let domain = news.settings.tracking_domain.as_ref().unwrap();
    assert_eq!(domain.as_str(), "https://moved.news.example/");
    let later = app.relay().select_route(&Envelope {
        sender: "x@later.example.com",
        ..news_envelope
    });
    assert_eq!(later.id, "later");

    // Webhooks: the new endpoint of "news" gets its events.
    let copy = support::rows::copy("news", "b@example.com", trackrelay::time::now_ms());
    let deliveries = app.webhooks().for_relayed(&copy);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].url, "https://hooks.example.com/in");

    // The tracking server answers the new domain, and the old one (mail
    // already sent carries it).
    let (_, token) = support::server::token(
        Kind::Click,
        Some("https://example.com/"),
        support::server::next_week(),
    );
    let path_c = format!("/c/{token}");
    for host in ["moved.news.example", "links.news.example:8443"] {
        let r = server.tracking("GET", host, &path_c, &[]).await;
        assert_eq!(r.status, 302, "{host}");
    }
    assert_eq!(
        server
            .tracking("GET", "other.example", &path_c, &[])
            .await
            .status,
        421
    );

    // The API and the dashboard show the reloaded routes.
    let v = server.api("/v1/routes/news", Some(API_TOKEN)).await.json();
    assert_eq!(v["tracking_domain"], "https://moved.news.example/");
    assert_eq!(v["webhooks"], 1);
    assert_eq!(
        server.api("/v1/routes/later", Some(API_TOKEN)).await.status,
        200
    );
    let page = server.api("/dashboard", Some(API_TOKEN)).await;
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("later"));

    // The classifier's lists were rebuilt from the new rules.
    assert_eq!(app.pipeline().lists().rules().burst_links, 5);

    // A broken file changes nothing.
    std::fs::write(&path, "[smtp\n").unwrap();
    assert!(app.reload(&path).await.is_err());
    assert_eq!(app.relay().select_route(&news_envelope).id, "news");
    assert_eq!(
        server.api("/v1/routes/later", Some(API_TOKEN)).await.status,
        200
    );
    server.stop().await;
}
