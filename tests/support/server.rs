//! A trackrelay server for tests: a temp config and database, the server
//! either in-process ([`TestServer`]) or as the real binary ([`Binary`]),
//! a plain HTTP client, and tokens signed with the test key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::HeaderMap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use trackrelay::app::App;
use trackrelay::config::Config;
use trackrelay::token::{Claims, Key, KeyRing, Kind};
use uuid::Uuid;

/// The Host of the default tracking domain in test configs.
pub const HOST: &str = "t.example.com";
/// The API's bearer token in test configs.
pub const API_TOKEN: &str = "api-token-for-tests-7Qm2Xv9LpR4sK8wZ";
/// A second, older key that still verifies (rotation).
pub const OLD_SECRET: &str = "an older key, still verifying tokens";

/// A test config: default tracking domain https://t.example.com, a route
/// "news" with its own domain, keys k1 (signs) and k0, the database in
/// `dir`. `tracking_extra` goes into `[tracking]` (e.g. `commit_wait_ms`).
pub fn config_text(dir: &Path, tracking: &str, api: &str, tracking_extra: &str) -> String {
    format!(
        r#"[smtp]
listen = "127.0.0.1:0"

[upstream]
url = "dir:{outbox}"

[tracking]
listen = "{tracking}"
base_url = "https://{HOST}"
{tracking_extra}

[[tracking.keys]]
id = "k1"
secret = "0123456789abcdef0123456789abcdef"

[[tracking.keys]]
id = "k0"
secret = "{OLD_SECRET}"

[api]
listen = "{api}"
token = "{API_TOKEN}"

[storage]
path = "{db}"

[[routes]]
id = "news"
track_opens = true
track_clicks = true
tracking_domain = "https://Links.News.example:8443"
[routes.match]
senders = ["news.example.com"]

[[routes]]
id = "default"
track_opens = true
track_clicks = true
"#,
        db = dir.join("trackrelay.db").display(),
        outbox = dir.join("outbox").display(),
    )
}

/// The `[storage]` section [`config_text`] writes for `dir`.
pub fn storage_section(dir: &Path) -> String {
    format!(
        "[storage]\npath = \"{}\"\n",
        dir.join("trackrelay.db").display()
    )
}

/// Signs a token of `kind` for a fresh message id with the test key.
pub fn token(kind: Kind, url: Option<&str>, expires_at: u32) -> (Uuid, String) {
    token_with(&super::keys(), kind, url, expires_at)
}

/// Signs a token with `keys`.
pub fn token_with(
    keys: &KeyRing,
    kind: Kind,
    url: Option<&str>,
    expires_at: u32,
) -> (Uuid, String) {
    let message_id = Uuid::now_v7();
    let claims = Claims {
        kind,
        message_id,
        recipient_id: Some(keys.recipient_id("bob@example.com")),
        expires_at,
        link: url.map(|_| 0),
        url: url.map(str::to_owned),
    };
    (message_id, keys.sign(&claims))
}

/// The old key of test configs, as its own key ring.
pub fn old_keys() -> KeyRing {
    KeyRing::new(vec![Key::new("k0", OLD_SECRET.as_bytes().to_vec())])
}

/// A week from now, seconds since the epoch.
pub fn next_week() -> u32 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 7 * 86_400) as u32
}

/// One HTTP response, body read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A plain HTTP/1.1 client (keep-alive, no redirects followed).
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Http {
    /// Sends `method path` to `addr` with `Host: host` and `headers`.
    pub async fn send(
        &self,
        method: &str,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        self.send_body(method, addr, host, path, headers, Vec::new())
            .await
    }

    /// [`Http::send`] with a request body.
    pub async fn send_body(
        &self,
        method: &str,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Resp, String> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }
}

/// The server running in this process on ports chosen by the OS.
pub struct TestServer {
    pub app: Option<App>,
    pub dir: tempfile::TempDir,
    pub http: Http,
}

impl TestServer {
    /// Starts a server; `tracking_extra` as in [`config_text`].
    pub async fn start(tracking_extra: &str) -> Self {
        Self::start_with(tracking_extra, |text, _| text).await
    }

    /// Starts a server with its records in `db` (either backend).
    pub async fn start_on(db: &super::db::Db, tracking_extra: &str) -> Self {
        Self::start_with(tracking_extra, |text, dir| {
            text.replace(&storage_section(dir), &db.config_section())
        })
        .await
    }

    /// Starts a server on the test config as `edit` changes it.
    async fn start_with(tracking_extra: &str, edit: impl FnOnce(String, &Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(dir.path(), "127.0.0.1:0", "127.0.0.1:0", tracking_extra);
        let text = edit(text, dir.path());
        let config = Config::parse(&text).unwrap();
        let app = App::start(config, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        Self {
            app: Some(app),
            dir,
            http: Http::default(),
        }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("trackrelay.db")
    }

    /// `method path` on the tracking listener with the default Host.
    pub async fn hit(&self, method: &str, path: &str) -> Resp {
        self.tracking(method, HOST, path, &[]).await
    }

    /// A request to the tracking listener.
    pub async fn tracking(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.http
            .send(method, self.app().tracking_addr(), host, path, headers)
            .await
            .unwrap()
    }

    /// `GET path` on the API, with `token` as bearer token if given.
    pub async fn api(&self, path: &str, token: Option<&str>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let addr = self.app().api_addr();
        self.http
            .send("GET", addr, &addr.to_string(), path, &headers)
            .await
            .unwrap()
    }

    /// `method path` on the API with the test token and a body of
    /// `content_type`.
    pub async fn api_send(&self, method: &str, path: &str, content_type: &str, body: &str) -> Resp {
        let addr = self.app().api_addr();
        let auth = format!("Bearer {API_TOKEN}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", content_type),
        ];
        self.http
            .send_body(
                method,
                addr,
                &addr.to_string(),
                path,
                &headers,
                body.to_owned(),
            )
            .await
            .unwrap()
    }

    /// The `/metrics` text (admin listener, test token).
    pub async fn metrics(&self) -> String {
        metrics_at(self.app().api_addr()).await
    }

    /// Stops the server and starts it again on the same config and
    /// database (new ports).
    pub async fn restart(mut self) -> Self {
        assert!(self.app.take().unwrap().stop().await, "flushed on stop");
        let text = config_text(self.dir.path(), "127.0.0.1:0", "127.0.0.1:0", "");
        let config = Config::parse(&text).unwrap();
        let app = App::start(config, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        self.app = Some(app);
        self
    }

    /// Every stored observation of one message.
    pub async fn observations(&self, message_id: Uuid) -> Vec<trackrelay::storage::Observation> {
        self.app().storage().observations(message_id).await.unwrap()
    }

    pub async fn stop(mut self) -> bool {
        self.app.take().unwrap().stop().await
    }
}

/// `GET /metrics` on the API listener at `api` with the test token.
pub async fn metrics_at(api: SocketAddr) -> String {
    let auth = format!("Bearer {API_TOKEN}");
    let resp = Http::default()
        .send(
            "GET",
            api,
            &api.to_string(),
            "/metrics",
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "/metrics");
    String::from_utf8(resp.body).unwrap()
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `trackrelay serve` binary with a temp config.
pub struct Binary {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub tracking: SocketAddr,
    pub api: SocketAddr,
}

impl Binary {
    /// Starts it on [`config_text`] and waits until `/healthz` answers on
    /// both listeners.
    pub async fn start(tracking_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tracking: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let text = config_text(
            dir.path(),
            &tracking.to_string(),
            &api.to_string(),
            tracking_extra,
        );
        std::fs::write(dir.path().join("trackrelay.toml"), text).unwrap();
        Self::run(dir, tracking, api).await
    }

    /// Starts it on `dir/trackrelay.toml` (written by the caller, its
    /// tracking listener on `tracking`, its API on `api`) and waits until
    /// `/healthz` answers on both.
    pub async fn run(dir: tempfile::TempDir, tracking: SocketAddr, api: SocketAddr) -> Self {
        let child = spawn(dir.path());
        let bin = Self {
            child,
            dir,
            tracking,
            api,
        };
        bin.wait_healthy().await;
        bin
    }

    async fn wait_healthy(&self) {
        let http = Http::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Both listeners: the API starts after the tracking server.
        while http
            .send("GET", self.tracking, HOST, "/healthz", &[])
            .await
            .is_err()
            || http
                .send("GET", self.api, "a", "/healthz", &[])
                .await
                .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("trackrelay.toml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("trackrelay.db")
    }

    /// The `/metrics` text (admin listener, test token).
    pub async fn metrics(&self) -> String {
        metrics_at(self.api).await
    }

    /// What the server logged (every run of it, in order).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Waits until the log holds `needle` at least `count` times.
    pub async fn logged(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {count} times:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends signal `name` (`"HUP"`, `"TERM"`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Stops it with SIGTERM (it must exit cleanly) and starts it again on
    /// the same config file and database.
    pub async fn restart(&mut self) {
        self.terminate();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit {status:?}: {}", self.log());
        self.child = spawn(self.dir.path());
        self.wait_healthy().await;
    }
}

/// `trackrelay serve` on `dir/trackrelay.toml`, its log appended to
/// `dir/stderr.log`.
fn spawn(dir: &Path) -> Child {
    spawn_serve(dir, &dir.join("trackrelay.toml"))
}

/// Starts `trackrelay serve --config CONFIG`, its stderr appended to
/// `dir/stderr.log` (one log across restarts).
pub fn spawn_serve(dir: &Path, config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(["serve", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Message ids of every stored observation, read straight from the file.
pub fn stored_message_ids(db: &Path) -> std::collections::HashSet<Uuid> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT message_id FROM observations").unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|id| Uuid::parse_str(&id.unwrap()).unwrap())
        .collect()
}
