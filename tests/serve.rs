//! The `trackrelay serve` process as an operator runs it: SIGHUP reloads the
//! routes without a restart (and keeps the settings changed through the
//! API over them), SIGTERM lets a message being sent finish.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use support::relay::{Client, config_text, html_message, logged_addr};

struct Served {
    child: Child,
    smtp: SocketAddr,
    api: SocketAddr,
    dir: tempfile::TempDir,
    /// The server's log lines, as they come.
    log: std::sync::mpsc::Receiver<String>,
}

impl Served {
    /// Sends SIGHUP and waits until the reload is logged as done or
    /// refused; returns that line.
    fn reload(&self) -> String {
        signal(&self.child, "HUP");
        loop {
            let line = self
                .log
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("the reload is logged");
            if line.contains("config reloaded") || line.contains("reload refused") {
                return line;
            }
        }
    }
}

const TRACKED: &str = "[[routes]]\nid = \"default\"\ntrack_opens = true\ntrack_clicks = true\n";
const UNTRACKED: &str = "[[routes]]\nid = \"default\"\n";

fn write_config(dir: &std::path::Path, routes: &str) -> std::path::PathBuf {
    let upstream = format!("url = \"dir:{}\"", dir.join("outbox").display());
    let path = dir.join("trackrelay.toml");
    std::fs::write(&path, config_text(dir, "", &upstream, routes)).unwrap();
    path
}

/// Starts the binary and reads its log until it says where SMTP listens.
fn serve(routes: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), routes);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut api, mut smtp) = (None, None);
    while smtp.is_none() {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("serve did not start");
        let addr = || logged_addr(&line);
        if line.contains("api listener started") {
            api = addr();
        } else if line.contains("smtp listening") {
            smtp = addr();
        }
    }
    Served {
        child,
        smtp: smtp.unwrap(),
        api: api.expect("the api address is logged before smtp's"),
        dir,
        log: rx,
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

fn outbox(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join("outbox"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn sighup_reloads_routes_without_a_restart() {
    let mut served = serve(UNTRACKED);
    let mut c = Client::connect(served.smtp).await;
    let (_, reply) = c
        .send("a@example.com", &["b@example.com"], &html_message(""))
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    assert!(
        !outbox(served.dir.path())[0].contains("t.example.com"),
        "untracked at first"
    );

    write_config(served.dir.path(), TRACKED);
    // Once the reload is logged, the same session sends again.
    let line = served.reload();
    assert!(line.contains("config reloaded"), "{line}");
    let (_, reply) = c
        .send("a@example.com", &["b@example.com"], &html_message(""))
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let tracked = outbox(served.dir.path())
        .into_iter()
        .filter(|m| m.contains("https://t.example.com/c/"))
        .count();
    assert_eq!(tracked, 1, "the second message is tracked after SIGHUP");

    // A broken config is refused and the running routes stay.
    std::fs::write(served.dir.path().join("trackrelay.toml"), "[smtp\n").unwrap();
    let line = served.reload();
    assert!(line.contains("reload refused"), "{line}");
    let (_, reply) = c
        .send("a@example.com", &["b@example.com"], &html_message(""))
        .await;
    assert!(reply.starts_with("250"));
    let tracked = outbox(served.dir.path())
        .into_iter()
        .filter(|m| m.contains("https://t.example.com/c/"))
        .count();
    assert_eq!(tracked, 2, "still tracked after a refused reload");
    served.child.kill().unwrap();
}

/// `PATCH /v1/routes/default` on the served API.
async fn patch_default(served: &Served, body: &str) -> serde_json::Value {
    let r = support::server::Http::default()
        .send_body(
            "PATCH",
            served.api,
            "localhost",
            "/v1/routes/default",
            &[
                ("authorization", "Bearer test-token-4Hn8Vq2Lx7Rk9Pw3Zs6Jd"),
                ("content-type", "application/json"),
            ],
            body.to_owned(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[tokio::test]
async fn api_settings_stay_over_a_reloaded_config_until_cleared() {
    let mut served = serve(UNTRACKED);
    let v = patch_default(&served, r#"{"track_opens": true, "track_clicks": true}"#).await;
    assert_eq!(
        (&v["track_opens"], &v["track_clicks"]),
        (&true.into(), &true.into())
    );

    // The config still says untracked; a reload does not undo the API's change.
    write_config(served.dir.path(), UNTRACKED);
    let line = served.reload();
    assert!(line.contains("config reloaded"), "{line}");
    let mut c = Client::connect(served.smtp).await;
    let (_, reply) = c
        .send("a@example.com", &["b@example.com"], &html_message(""))
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let tracked = |dir: &std::path::Path| {
        outbox(dir)
            .into_iter()
            .filter(|m| m.contains("https://t.example.com/c/"))
            .count()
    };
    assert_eq!(tracked(served.dir.path()), 1, "tracked after the reload");

    // Cleared through the API: the config's "untracked" stands again.
    let v = patch_default(&served, r#"{"track_opens": null, "track_clicks": null}"#).await;
    assert_eq!(v["track_clicks"], false);
    let (_, reply) = c
        .send("a@example.com", &["b@example.com"], &html_message(""))
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(outbox(served.dir.path()).len(), 2);
    assert_eq!(
        tracked(served.dir.path()),
        1,
        "the second copy is untracked"
    );

    // Another node sharing the database switches clicks on; a reload here
    // reads it back.
    let db = served.dir.path().join("trackrelay.db");
    let other = trackrelay::storage::Storage::open(&db).unwrap();
    other
        .set_route_override(trackrelay::storage::RouteOverride {
            route: "default".into(),
            track_opens: None,
            track_clicks: Some(true),
            updated_at_ms: 1,
        })
        .await
        .unwrap();
    let line = served.reload();
    assert!(line.contains("config reloaded"), "{line}");
    let (_, reply) = c
        .send("a@example.com", &["b@example.com"], &html_message(""))
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(
        tracked(served.dir.path()),
        2,
        "the third copy is tracked again"
    );
    served.child.kill().unwrap();
}

#[tokio::test]
async fn sigterm_lets_the_message_being_sent_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut served = serve(TRACKED);
    let mut s = tokio::net::TcpStream::connect(served.smtp).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"220"));
    s.write_all(b"EHLO t.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    while !got.contains("354 ") {
        let n = s.read(&mut buf).await.unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Half the message, then SIGTERM, then the rest.
    s.write_all(
        b"Subject: half\r\nContent-Type: text/html\r\n\r\n<a href=\"https://example.com/\">",
    )
    .await
    .unwrap();
    signal(&served.child, "TERM");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s.write_all(b"x</a>\r\n.\r\n").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(reply.starts_with("250"), "the message is finished: {reply}");
    // Then the idle session is told to go away, and the process exits.
    let n = s.read(&mut buf).await.unwrap_or(0);
    assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("421"));
    let status = tokio::task::spawn_blocking(move || served.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert_eq!(outbox(served.dir.path()).len(), 1);
}
