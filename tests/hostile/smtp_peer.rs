//! The real `trackrelay serve` binary with an SMTP section written for one
//! test, and a raw SMTP client that sends exact bytes and reads replies
//! line by line (no client library would send what these tests send).

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::server::{free_port, spawn_serve};

/// How long a test waits for anything before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The binary, running until dropped.
pub struct Relay {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub smtp: SocketAddr,
}

impl Relay {
    /// Starts `trackrelay serve`; `smtp` goes into `[smtp]` (users last),
    /// `upstream` into `[upstream]` (a `dir:` outbox when empty).
    pub async fn start(smtp: &str, upstream: &str) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let upstream = if upstream.is_empty() {
            format!("url = \"dir:{}\"", dir.path().join("outbox").display())
        } else {
            upstream.to_owned()
        };
        let text = format!(
            r#"[smtp]
listen = "127.0.0.1:{port}"
hostname = "relay.test"
{smtp}
[upstream]
{upstream}
[tracking]
listen = "127.0.0.1:{tracking}"
base_url = "https://t.example.com"
[[tracking.keys]]
id = "k1"
secret = "hostile-tests-key-5d1f0c8a9e2b7f3a6c4d"
[api]
listen = "127.0.0.1:{api}"
token = "hostile-tests-api-token-7c2e9a4b1d6f"
[storage]
path = "{db}"
[[routes]]
id = "default"
track_opens = true
track_clicks = true
"#,
            tracking = free_port(),
            api = free_port(),
            db = dir.path().join("trackrelay.db").display(),
        );
        let config = dir.path().join("trackrelay.toml");
        std::fs::write(&config, text).unwrap();
        let child = spawn_serve(dir.path(), &config);
        let relay = Relay {
            child,
            dir,
            smtp: format!("127.0.0.1:{port}").parse().unwrap(),
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while TcpStream::connect(relay.smtp).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no SMTP listener: {}",
                relay.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        relay
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The highest resident set size the process reached (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib / 1024
    }

    /// SIGTERM and wait: the process flushes its records on the way out.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let _ = self.child.wait();
    }

    /// Copies written to the `dir:` outbox, as text.
    pub fn outbox(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("outbox")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Argon2 PHC string for `password` (the crate's default parameters,
/// as `trackrelay hash-password` makes them).
pub fn hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"hostile-salt-016").unwrap();
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// A raw SMTP client.
pub struct Raw {
    pub stream: BufReader<TcpStream>,
}

impl Raw {
    /// Connects and returns the client with the greeting's last line.
    pub async fn connect(addr: SocketAddr) -> (Raw, String) {
        let stream = TcpStream::connect(addr).await.unwrap();
        Self::over(stream).await
    }

    /// Connects with `connect` until the greeting is 220: a slot of
    /// `max_connections` is freed a moment after the connection that held
    /// it ends (421 4.3.2 until then). Panics after 10 s.
    pub async fn when_free<F, Fut>(connect: F) -> Raw
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = TcpStream>,
    {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (raw, greeting) = Self::over(connect().await).await;
            if greeting.starts_with("220") {
                return raw;
            }
            assert!(
                greeting.starts_with("421 4.3.2") && tokio::time::Instant::now() < deadline,
                "no free slot: {greeting}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn over(stream: TcpStream) -> (Raw, String) {
        let mut raw = Raw {
            stream: BufReader::new(stream),
        };
        let greeting = raw.reply().await;
        (raw, greeting)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
    }

    /// One reply's last line without CRLF; "" when the server closed.
    pub async fn reply(&mut self) -> String {
        loop {
            let mut line = Vec::new();
            let read = tokio::time::timeout(PATIENCE, self.stream.read_until(b'\n', &mut line))
                .await
                .expect("no reply in time");
            if read.unwrap_or(0) == 0 {
                return String::new();
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            if text.as_bytes().get(3) != Some(&b'-') {
                return text;
            }
        }
    }

    /// Sends one command line; its reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Everything the server sends until it closes.
    pub async fn rest(&mut self) -> String {
        let mut all = Vec::new();
        tokio::time::timeout(PATIENCE, self.stream.read_to_end(&mut all))
            .await
            .expect("the server did not close")
            .ok();
        String::from_utf8_lossy(&all).into_owned()
    }
}
