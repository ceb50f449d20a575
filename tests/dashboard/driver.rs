//! Headless Chromium through chromedriver (WebDriver, the fantoccini
//! crate), and what the checks read from its pages.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::server::free_port;
use crate::traffic::PATIENCE;

/// chromedriver on a free port, ended when dropped.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub async fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian: chromium-driver; .ci/packages installs it)");
        let driver = Driver { child, port };
        let http = crate::support::server::Http::default();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !http
            .send("GET", addr, "localhost", "/status", &[])
            .await
            .is_ok_and(|r| r.status == 200)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    /// A headless Chromium session.
    pub async fn session(&self, profile: &std::path::Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,2600", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `data-metric` → `data-value` of the elements under `scope` (CSS).
pub async fn metrics(browser: &Client, scope: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in browser
        .find_all(Locator::Css(&format!("{scope} [data-metric]")))
        .await
        .unwrap()
    {
        let name = e.attr("data-metric").await.unwrap().unwrap();
        let value = e.attr("data-value").await.unwrap().unwrap();
        assert!(
            out.insert(name.clone(), value).is_none(),
            "{name} twice in {scope}"
        );
    }
    out
}

pub async fn texts(b: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

/// No script element made it into the page, and no alert is open.
pub async fn no_script(b: &Client) {
    assert!(
        b.find_all(Locator::Css("script, img"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(b.get_alert_text().await.is_err(), "an alert is open");
}

/// Saves a screenshot of the window; its path.
pub async fn screenshot(b: &Client, name: &str) -> std::path::PathBuf {
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    path
}

/// Fills and sends the login form.
pub async fn login(b: &Client, token: &str) {
    let form = b
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("form.login"))
        .await
        .unwrap();
    form.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits until the browser is at `path`.
pub async fn wait_path(b: &Client, path: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let url = b.current_url().await.unwrap();
        if url.path() == path && b.find(Locator::Css("main")).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "at {url}, waiting for {path}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `browse` with a headless Chromium session in its own task, so that
/// a failed check still ends the session (and its processes) before the
/// test fails; then stops the server.
pub async fn in_chromium<F, Fut>(server: crate::support::server::TestServer, browse: F)
where
    F: FnOnce(std::sync::Arc<crate::support::server::TestServer>, Client) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.session(profile.path()).await;
    let server = std::sync::Arc::new(server);
    let outcome = tokio::spawn(browse(server.clone(), browser.clone())).await;
    let _ = browser.close().await;
    drop(driver);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
    let Ok(server) = std::sync::Arc::try_unwrap(server) else {
        panic!("the browsing task still holds the server");
    };
    server.stop().await;
}
