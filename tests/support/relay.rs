//! Starting trackrelay in-process on 127.0.0.1:0 with a config written for
//! the test, and a raw SMTP client that shows the exact replies.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use mail_send::SmtpClient;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use trackrelay::app::App;
use trackrelay::config::Config;

pub const KEY: &str = "0123456789abcdef0123456789abcdef";

/// A running relay and what it needs to stay alive.
pub struct Running {
    pub smtp: SocketAddr,
    pub dir: tempfile::TempDir,
    pub shutdown: CancellationToken,
    pub app: Option<App>,
}

impl Running {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(app) = self.app.take() {
            app.wait().await;
        }
    }

    /// Copies written by a `dir:` upstream: (envelope json, message bytes).
    pub fn outbox(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        let dir = self.dir.path().join("outbox");
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return out;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            if p.extension().is_some_and(|e| e == "eml") {
                let envelope = std::fs::read(p.with_extension("envelope.json")).unwrap();
                out.push((
                    serde_json::from_slice(&envelope).unwrap(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
        out
    }
}

/// Config text with sensible test defaults; `extra` is appended (sections
/// given there must not repeat the ones here: use `upstream` and `smtp`).
pub fn config_text(dir: &std::path::Path, smtp: &str, upstream: &str, routes: &str) -> String {
    format!(
        r#"
[smtp]
listen = "127.0.0.1:0"
hostname = "relay.test"
{smtp}
[upstream]
{upstream}
[tracking]
listen = "127.0.0.1:0"
base_url = "https://t.example.com"
[[tracking.keys]]
id = "k1"
secret = "{KEY}"
[api]
listen = "127.0.0.1:0"
token = "test-token-4Hn8Vq2Lx7Rk9Pw3Zs6Jd"
[storage]
path = "{db}"
{routes}
"#,
        db = dir.join("trackrelay.db").display()
    )
}

pub const TRACKED: &str = "[[routes]]\nid = \"default\"\ntrack_opens = true\ntrack_clicks = true\n";

pub async fn start(smtp: &str, upstream: &str, routes: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let upstream = if upstream.is_empty() {
        format!("url = \"dir:{}\"", dir.path().join("outbox").display())
    } else {
        upstream.to_string()
    };
    let text = config_text(dir.path(), smtp, &upstream, routes);
    let config = Config::parse(&text).unwrap_or_else(|p| panic!("test config: {p:?}"));
    let shutdown = CancellationToken::new();
    let app = App::start(config, shutdown.clone()).await.unwrap();
    Running {
        smtp: app.smtp_addr(),
        dir,
        shutdown,
        app: Some(app),
    }
}

/// A client that returns every reply as "CODE text" for exact checks.
pub struct Client(SmtpClient<TcpStream>);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let mut c = SmtpClient::connect(addr, Duration::from_secs(30))
            .await
            .unwrap();
        let greeting = c.read().await.unwrap();
        assert_eq!(greeting.code, 220);
        Client(c)
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        let r = self.0.cmd(format!("{line}\r\n")).await.unwrap();
        reply_text(&r)
    }

    /// DATA and the message; the final reply.
    pub async fn data(&mut self, message: &[u8]) -> String {
        let r = self.cmd("DATA").await;
        if !r.starts_with("354") {
            return r;
        }
        // write_message adds CRLF.CRLF; the message's own last CRLF is that.
        let message = message.strip_suffix(b"\r\n").unwrap_or(message);
        self.0.write_message(message).await.unwrap();
        reply_text(&self.0.read().await.unwrap())
    }

    /// EHLO, MAIL, every RCPT (their replies), DATA; the final reply.
    pub async fn send(&mut self, from: &str, to: &[&str], message: &[u8]) -> (Vec<String>, String) {
        self.cmd("EHLO client.test").await;
        let mail = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        assert!(mail.starts_with("250"), "MAIL: {mail}");
        let mut rcpts = Vec::new();
        for r in to {
            rcpts.push(self.cmd(&format!("RCPT TO:<{r}>")).await);
        }
        let reply = self.data(message).await;
        (rcpts, reply)
    }
}

pub fn reply_text(r: &smtp_proto::Response<String>) -> String {
    if r.esc[0] == 0 {
        format!("{} {}", r.code, r.message)
    } else {
        format!(
            "{} {}.{}.{} {}",
            r.code, r.esc[0], r.esc[1], r.esc[2], r.message
        )
    }
}

/// A small HTML message with CRLF line endings.
pub fn html_message(extra_headers: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: hello\r\n\
         Message-ID: <m1@example.com>\r\n{extra_headers}MIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n\
         <html><body><p>Hi</p><a href=\"https://example.com/?a=1&amp;b=2\">link</a></body></html>\r\n"
    )
    .into_bytes()
}

/// The address after `addr=` in a log line of `trackrelay serve`
/// (`smtp listening addr=127.0.0.1:41234 …`).
pub fn logged_addr(line: &str) -> Option<SocketAddr> {
    line.split("addr=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
