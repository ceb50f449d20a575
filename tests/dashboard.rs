//! The dashboard (issue 7) in a real browser: mail relayed over SMTP by
//! the in-process server, the pixel and links of the relayed copies hit
//! over HTTP with a browser's headers and with bots' (one user agent is a
//! script tag), the pipeline classifying them; then headless Chromium,
//! driven through chromedriver (WebDriver), logs in with the form, reads
//! the overview, a route page and a message timeline, and every figure,
//! chart bar and event on them is compared with the API's JSON for the
//! same parameters. A screenshot of the route page is saved and its path
//! printed. Needs Debian's `chromium` and `chromium-driver`
//! (`.ci/packages` installs them).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::server::{API_TOKEN, HOST, Resp, TestServer, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const SLACK: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
/// An attacker's user agent: must show as text, never run.
const XSS_AGENT: &str = "<script>alert(1)</script>";
/// An attacker's tag (X-LM-Tag), shown on the timeline.
const XSS_TAG: &str = "<img src=x onerror=alert(2)>";
/// The news route's tracking domain in test configs.
const NEWS_HOST: &str = "links.news.example:8443";
/// Generous bound for anything the test waits for (slow 2-core CI).
const PATIENCE: Duration = Duration::from_secs(60);

/// The classifier judges after a second; clicks right after relaying are
/// not taken for scanners here, so a person's click is told apart from a
/// preview bot's by its agent and headers alone.
const CLASSIFIER: &str = "\n[classifier]\nwait_seconds = 1\n\
                          scanner_click_seconds = 0\nearly_click_seconds = 0\n";

/// A two-link HTML message with a tag.
fn message(from: &str, to: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: dashboard\r\nMessage-ID: <{}@example.com>\r\n\
         X-LM-Tag: {XSS_TAG}\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <html><body><p>Hello</p><a href=\"https://example.com/first\">first</a>\r\n\
         <a href=\"https://example.com/second?x=1\">second</a></body></html>\r\n",
        Uuid::now_v7()
    )
    .into_bytes()
}

/// Tokens after `base/kind/` in `text`, in order.
fn tokens(text: &str, base: &str, kind: &str) -> Vec<String> {
    let prefix = format!("{base}/{kind}/");
    text.match_indices(&prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .collect()
}

/// One relayed copy as the upstream got it.
#[derive(Debug)]
struct Copy {
    id: Uuid,
    open: String,
    clicks: Vec<String>,
}

/// Relays one message from `from` to `to` and finds its copy in the outbox.
async fn relay(server: &TestServer, from: &str, to: &str, base: &str) -> Copy {
    let mut client = support::relay::Client::connect(server.app().smtp_addr()).await;
    let (rcpts, reply) = client.send(from, &[to], &message(from, to)).await;
    assert!(
        rcpts[0].starts_with("250") && reply.starts_with("250"),
        "{rcpts:?} {reply}"
    );
    for entry in std::fs::read_dir(server.dir.path().join("outbox")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let envelope: Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("envelope.json")).unwrap())
                .unwrap();
        if envelope["to"][0] != to {
            continue;
        }
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        return Copy {
            id: path.file_stem().unwrap().to_str().unwrap().parse().unwrap(),
            open: tokens(&text, base, "o").remove(0),
            clicks: tokens(&text, base, "c"),
        };
    }
    panic!("no copy for {to} in the outbox");
}

/// A hit on the tracking server from `ip` with `agent`; `browser` adds
/// the headers a browser sends with a navigation.
async fn hit(server: &TestServer, host: &str, path: &str, ip: &str, agent: &str, browser: bool) {
    let mut headers = vec![("x-forwarded-for", ip), ("user-agent", agent)];
    if browser {
        headers.extend([
            ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            ("accept-language", "en-GB,en;q=0.9"),
            ("accept-encoding", "gzip, deflate, br"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ]);
    }
    let resp = server.tracking("GET", host, path, &headers).await;
    assert!([200, 302].contains(&resp.status), "{path}: {}", resp.status);
}

/// `GET path` on the API with the token; the JSON.
async fn api(server: &TestServer, path: &str) -> Value {
    let resp = server.api(path, Some(API_TOKEN)).await;
    assert_eq!(
        resp.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    resp.json()
}

/// Waits until message `id` has `n` events and nothing unclassified.
async fn classified(server: &TestServer, id: Uuid, n: usize) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = api(server, &format!("/v1/messages/{id}")).await;
        if v["unclassified"] == 0 && v["events"].as_array().unwrap().len() == n {
            return v;
        }
        assert!(Instant::now() < deadline, "{n} events expected: {v:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mail and hits: on `default`, Bob opens and clicks as a person, Ann's
/// copy is opened by an agent that is a script tag and previewed by
/// Slack, Cy does nothing; on `news`, Dan opens and clicks.
/// Returns the copies' ids (Bob, Ann, Cy, Dan).
async fn traffic(server: &TestServer) -> [Uuid; 4] {
    let t = "https://t.example.com";
    let bob = relay(server, "alice@example.com", "bob@example.com", t).await;
    let ann = relay(server, "alice@example.com", "ann@example.com", t).await;
    let cy = relay(server, "alice@example.com", "cy@example.com", t).await;
    let dan = relay(
        server,
        "n@news.example.com",
        "dan@example.com",
        "https://links.news.example:8443",
    )
    .await;
    assert_eq!(bob.clicks.len(), 2, "{bob:?}");

    hit(
        server,
        HOST,
        &format!("/o/{}", bob.open),
        "198.51.100.20",
        CHROME,
        true,
    )
    .await;
    hit(
        server,
        HOST,
        &format!("/c/{}", bob.clicks[1]),
        "198.51.100.20",
        CHROME,
        true,
    )
    .await;
    hit(
        server,
        HOST,
        &format!("/o/{}", ann.open),
        "203.0.113.7",
        XSS_AGENT,
        false,
    )
    .await;
    hit(
        server,
        HOST,
        &format!("/c/{}", ann.clicks[0]),
        "203.0.113.8",
        SLACK,
        false,
    )
    .await;
    hit(
        server,
        NEWS_HOST,
        &format!("/o/{}", dan.open),
        "198.51.100.30",
        CHROME,
        true,
    )
    .await;
    hit(
        server,
        NEWS_HOST,
        &format!("/c/{}", dan.clicks[0]),
        "198.51.100.30",
        CHROME,
        true,
    )
    .await;

    let bob_v = classified(server, bob.id, 2).await;
    let ann_v = classified(server, ann.id, 2).await;
    classified(server, dan.id, 2).await;
    // The scene has both kinds, or the share says nothing.
    let counts = |v: &Value| -> Vec<bool> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["bot"]["counts_for_metrics"] == true)
            .collect()
    };
    assert_eq!(counts(&bob_v), [true, true], "{bob_v:#}");
    assert!(
        counts(&ann_v).contains(&false),
        "Slack's preview is a machine: {ann_v:#}"
    );
    [bob.id, ann.id, cy.id, dan.id]
}

/// chromedriver on a free port, ended when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian: chromium-driver; .ci/packages installs it)");
        let driver = Driver { child, port };
        let http = support::server::Http::default();
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
    async fn session(&self, profile: &std::path::Path) -> Client {
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
async fn metrics(browser: &Client, scope: &str) -> BTreeMap<String, String> {
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

/// Compares a dashboard figure with the API's number (rates: null → "").
fn same(shown: &BTreeMap<String, String>, name: &str, api: &Value) {
    let text = &shown[name];
    match api.as_f64() {
        Some(n) => {
            let v: f64 = text.parse().unwrap_or_else(|_| panic!("{name}: {text:?}"));
            assert!((v - n).abs() < 1e-9, "{name}: dashboard {v}, API {n}");
        }
        None => assert!(
            api.is_null() && text.is_empty(),
            "{name}: {text:?} vs {api}"
        ),
    }
}

/// Human and machine events of a route over `range`, from the API.
async fn split(server: &TestServer, route: &str, range: &str) -> (u64, u64) {
    let n = |v: &Value| {
        v["totals"]["opens"].as_u64().unwrap() + v["totals"]["clicks"].as_u64().unwrap()
    };
    let human = api(server, &format!("/v1/routes/{route}/stats?{range}")).await;
    let all = api(
        server,
        &format!("/v1/routes/{route}/stats?{range}&include_machine=true"),
    )
    .await;
    (n(&human), n(&all) - n(&human))
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_the_api_answers() {
    let server = TestServer::start(CLASSIFIER).await;
    let [bob, ann, _cy, _dan] = traffic(&server).await;
    let base = format!("http://{}", server.app().api_addr());
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.session(profile.path()).await;
    // Browsing runs in its own task so that a failed check still ends
    // the Chromium session (and its processes) before the test fails.
    let server = std::sync::Arc::new(server);
    let outcome = tokio::spawn({
        let (server, browser) = (server.clone(), browser.clone());
        async move { browse(&server, &browser, &base, bob, ann).await }
    })
    .await;
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

async fn browse(server: &TestServer, b: &Client, base: &str, bob: Uuid, ann: Uuid) {
    // Not signed in: the login form, whose wrong token is refused.
    b.goto(&format!("{base}/dashboard")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/dashboard/login");
    login(b, "not the token").await;
    let alert = b
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("p.error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(alert.contains("Wrong token"), "{alert}");
    login(b, API_TOKEN).await;
    wait_path(b, "/dashboard").await;
    let cookie = b.get_named_cookie("trackrelay_dashboard").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");

    overview(server, b).await;
    route_page(server, b, base).await;
    timeline(server, b, base, ann, bob).await;

    // Bad parameters and unknown routes: pages saying what is wrong.
    b.goto(&format!("{base}/dashboard/routes/default?interval=week"))
        .await
        .unwrap();
    let error = b
        .find(Locator::Css("[data-error]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(error.contains("interval must be hour or day"), "{error}");

    // Logging out ends the session.
    b.goto(&format!("{base}/dashboard")).await.unwrap();
    b.find(Locator::Css("form.logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/dashboard/login").await;
    b.goto(&format!("{base}/dashboard/routes/default"))
        .await
        .unwrap();
    wait_path(b, "/dashboard/login").await;
}

async fn login(b: &Client, token: &str) {
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
async fn wait_path(b: &Client, path: &str) {
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

/// Every route's row against `/v1/routes/{id}/stats` over the same range.
async fn overview(server: &TestServer, b: &Client) {
    let table = b.find(Locator::Css("table.overview")).await.unwrap();
    let from = table.attr("data-from").await.unwrap().unwrap();
    let to = table.attr("data-to").await.unwrap().unwrap();
    let range = format!("from={}&to={}", enc(&from), enc(&to));
    let routes = api(server, "/v1/routes").await;
    let ids: Vec<&str> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["news", "default"]);
    for id in ids {
        let shown = metrics(b, &format!("tr[data-route='{id}']")).await;
        let v = api(server, &format!("/v1/routes/{id}/stats?{range}")).await;
        for name in [
            "relayed",
            "unique_opens",
            "unique_clicks",
            "open_rate",
            "click_rate",
        ] {
            same(&shown, name, &v["totals"][name]);
        }
        let (human, machine) = split(server, id, &range).await;
        same(&shown, "human_events", &json!(human));
        same(&shown, "machine_events", &json!(machine));
    }
    // The figures of the scene itself, not only equal to the API's.
    let default = metrics(b, "tr[data-route='default']").await;
    assert_eq!(default["relayed"], "3");
    assert_ne!(default["unique_opens"], "0", "Bob opened");
    assert_ne!(default["machine_events"], "0", "Slack previewed");
}

/// The default route by hour with machine events, then without.
async fn route_page(server: &TestServer, b: &Client, base: &str) {
    let from = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(30);
    let to = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    for machine in [true, false] {
        let query = format!(
            "from={}&to={}&interval=hour&include_machine={machine}",
            enc(&from.to_string()),
            enc(&to.to_string())
        );
        b.goto(&format!("{base}/dashboard/routes/default?{query}"))
            .await
            .unwrap();
        let stats = api(server, &format!("/v1/routes/default/stats?{query}")).await;
        let shown = metrics(b, "dl.figures").await;
        for name in [
            "relayed",
            "opens",
            "unique_opens",
            "clicks",
            "unique_clicks",
            "open_rate",
            "click_rate",
        ] {
            same(&shown, name, &stats["totals"][name]);
        }
        for chart in ["opens", "clicks"] {
            let mut bars = BTreeMap::new();
            for rect in b
                .find_all(Locator::Css(&format!("svg[data-chart={chart}] rect")))
                .await
                .unwrap()
            {
                let start = rect.attr("data-bucket").await.unwrap().unwrap();
                let value: u64 = rect
                    .attr("data-value")
                    .await
                    .unwrap()
                    .unwrap()
                    .parse()
                    .unwrap();
                bars.insert(start, value);
            }
            let expected: BTreeMap<String, u64> = stats["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|bucket| bucket[chart].as_u64() > Some(0))
                .map(|bucket| {
                    (
                        bucket["start"].as_str().unwrap().to_owned(),
                        bucket[chart].as_u64().unwrap(),
                    )
                })
                .collect();
            assert!(!expected.is_empty(), "{chart}: {stats:#}");
            assert_eq!(bars, expected, "{chart} bars (machine {machine})");
        }
        let links_query = query.replace("&interval=hour", "");
        let links = api(server, &format!("/v1/routes/default/links?{links_query}")).await;
        let mut shown_links = Vec::new();
        for row in b
            .find_all(Locator::Css("table.links tbody tr"))
            .await
            .unwrap()
        {
            let url = row.attr("data-link").await.unwrap().unwrap();
            let m = metrics(b, &format!("tr[data-link='{url}']")).await;
            shown_links.push(
                json!({ "url": url, "clicks": m["clicks"].parse::<u64>().unwrap(),
                "unique_clicks": m["unique_clicks"].parse::<u64>().unwrap() }),
            );
        }
        assert_eq!(
            Value::Array(shown_links),
            links["links"],
            "top links (machine {machine})"
        );
        let range = format!(
            "from={}&to={}",
            enc(&from.to_string()),
            enc(&to.to_string())
        );
        let (human, machine_n) = split(server, "default", &range).await;
        let share = metrics(b, "section:has(svg[data-chart=share])").await;
        same(&share, "human_events", &json!(human));
        same(&share, "machine_events", &json!(machine_n));
        recent_events(server, b, machine).await;
        if machine {
            let path = screenshot(b, "dashboard-route.png").await;
            println!("screenshot of the route page: {}", path.display());
        }
    }
}

/// The recent events are the route's events (all of them, here) with
/// their classifications; the script-tag agent shows as text wherever
/// its event is listed (it may be judged human or machine).
async fn recent_events(server: &TestServer, b: &Client, machine: bool) {
    let mut expected = BTreeSet::new();
    let mut xss_listed = false;
    let copies = api(server, "/v1/messages?route=default").await;
    for m in copies["messages"].as_array().unwrap() {
        let v = api(
            server,
            &format!("/v1/messages/{}", m["id"].as_str().unwrap()),
        )
        .await;
        for e in v["events"].as_array().unwrap() {
            if machine || e["bot"]["counts_for_metrics"] == true {
                let id = e["id"].as_str().unwrap().to_owned();
                expected.insert((id, e["bot"]["classification"].as_str().unwrap().to_owned()));
                xss_listed |= e["user_agent"] == XSS_AGENT;
            }
        }
    }
    assert!(!expected.is_empty());
    let mut shown = BTreeSet::new();
    for row in b
        .find_all(Locator::Css("table.events tbody tr"))
        .await
        .unwrap()
    {
        let id = row.attr("data-event").await.unwrap().unwrap();
        let class = row.attr("data-classification").await.unwrap().unwrap();
        shown.insert((id, class));
    }
    assert_eq!(shown, expected, "recent events (machine {machine})");
    let agents = texts(b, "table.events td.ua").await;
    assert_eq!(
        agents.iter().any(|a| a == XSS_AGENT),
        xss_listed,
        "{agents:?}"
    );
    if machine {
        assert!(xss_listed, "every event is listed with machine events");
    }
    no_script(b).await;
}

/// One message's timeline against `/v1/messages/{id}`.
async fn timeline(server: &TestServer, b: &Client, base: &str, ann: Uuid, bob: Uuid) {
    for id in [ann, bob] {
        b.goto(&format!("{base}/dashboard/messages/{id}"))
            .await
            .unwrap();
        let v = api(server, &format!("/v1/messages/{id}")).await;
        let expected: Vec<(String, String, String)> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().into(),
                    e["kind"].as_str().unwrap().into(),
                    e["bot"]["classification"].as_str().unwrap().into(),
                )
            })
            .collect();
        let mut shown = Vec::new();
        for li in b
            .find_all(Locator::Css("ol.timeline li.hit"))
            .await
            .unwrap()
        {
            shown.push((
                li.attr("data-event").await.unwrap().unwrap(),
                li.attr("data-kind").await.unwrap().unwrap(),
                li.attr("data-classification").await.unwrap().unwrap(),
            ));
        }
        assert_eq!(shown, expected, "timeline of {id}");
        let status = b
            .find(Locator::Css("[data-status]"))
            .await
            .unwrap()
            .attr("data-status")
            .await
            .unwrap();
        assert_eq!(status.as_deref(), v["status"].as_str());
        let reasons = texts(b, "ol.timeline .reasons").await;
        for (r, e) in reasons.iter().zip(v["events"].as_array().unwrap()) {
            let first = e["bot"]["reason_codes"][0].as_str().unwrap();
            assert!(r.contains(first), "{r} lacks {first}");
        }
        let dd = texts(b, "dl.details dd").await;
        assert!(dd.iter().any(|t| t == XSS_TAG), "the tag as text: {dd:?}");
        no_script(b).await;
    }
    let agents = texts(b, "ol.timeline .ua").await;
    assert!(
        agents.iter().all(|a| a != XSS_AGENT),
        "Bob's page has no such agent"
    );
    b.goto(&format!("{base}/dashboard/messages/{ann}"))
        .await
        .unwrap();
    let agents = texts(b, "ol.timeline .ua").await;
    assert!(agents.iter().any(|a| a == XSS_AGENT), "{agents:?}");
}

async fn texts(b: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

/// No script element made it into the page, and no alert is open.
async fn no_script(b: &Client) {
    assert!(
        b.find_all(Locator::Css("script, img"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(b.get_alert_text().await.is_err(), "an alert is open");
}

/// Saves a screenshot of the window; its path.
async fn screenshot(b: &Client, name: &str) -> std::path::PathBuf {
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    path
}

/// The same pages without a browser: headers, redirects and statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_forbid_scripts() {
    let server = TestServer::start("").await;
    let addr = server.app().api_addr();
    let get = |path: &'static str, auth: Option<String>| {
        let server = &server;
        async move {
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            server
                .http
                .send("GET", addr, &addr.to_string(), path, &headers)
                .await
                .unwrap()
        }
    };
    let bearer = Some(format!("Bearer {API_TOKEN}"));
    let anonymous = get("/dashboard/routes/default", None).await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), "/dashboard/login");
    let page = get("/dashboard", bearer.clone()).await;
    assert_eq!(page.status, 200, "the bearer token opens the pages too");
    headers_are_strict(&page);
    assert_eq!(get("/dashboard/login", None).await.status, 200);
    assert_eq!(
        get("/dashboard/style.css", None)
            .await
            .header("content-type"),
        "text/css; charset=utf-8"
    );
    for (path, status, words) in [
        (
            "/dashboard/routes/default?interval=week",
            400,
            "interval must be hour or day",
        ),
        (
            "/dashboard/routes/default?from=2026-02-01&to=2026-01-01",
            400,
            "from must be before to",
        ),
        (
            "/dashboard/routes/default?colour=red",
            400,
            "unknown parameter",
        ),
        ("/dashboard/routes/nope", 404, "no route"),
        ("/dashboard/messages/not-a-uuid", 400, "not a message id"),
        (
            "/dashboard/messages/0193a000-0000-7000-8000-000000000000",
            404,
            "no message",
        ),
        ("/dashboard/elsewhere", 404, "no dashboard page"),
    ] {
        let r = get(path, bearer.clone()).await;
        assert_eq!(r.status, status, "{path}");
        headers_are_strict(&r);
        assert!(String::from_utf8_lossy(&r.body).contains(words), "{path}");
    }

    // The login form over plain HTTP: a wrong token is 401 with the form,
    // the right one a 303 with the session cookie, which opens the pages.
    let wrong = post(addr, "/dashboard/login", "token=nope").await;
    assert_eq!(wrong.status, 401);
    assert!(String::from_utf8_lossy(&wrong.body).contains("Wrong token"));
    let right = post(addr, "/dashboard/login", &format!("token={API_TOKEN}")).await;
    assert_eq!(right.status, 303);
    assert_eq!(right.header("location"), "/dashboard");
    let cookie = right.header("set-cookie").to_owned();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/dashboard",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = server
        .http
        .send(
            "GET",
            addr,
            &addr.to_string(),
            "/dashboard",
            &[("cookie", &pair)],
        )
        .await
        .unwrap();
    assert_eq!(with_cookie.status, 200);
    let forged = pair.replace("v1.", "v1.9");
    let r = server
        .http
        .send(
            "GET",
            addr,
            &addr.to_string(),
            "/dashboard",
            &[("cookie", &forged)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 303, "a forged cookie is no session");
    let big = format!("token={}", "x".repeat(10_000));
    assert_eq!(post(addr, "/dashboard/login", &big).await.status, 400);
    assert_eq!(
        post(addr, "/dashboard", "").await.status,
        303,
        "not signed in"
    );
    assert_eq!(post(addr, "/dashboard/style.css", "").await.status, 405);
    // The API itself still wants its token.
    assert_eq!(server.api("/v1/routes", None).await.status, 401);
    server.stop().await;
}

fn headers_are_strict(r: &Resp) {
    let csp = r.header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(r.header("x-frame-options"), "DENY");
    assert_eq!(r.header("cache-control"), "no-store");
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
}

/// A form POST over a plain socket (the test client sends no bodies).
async fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = hyper::HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.append(
                hyper::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
    }
    Resp {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// How long the pages take on a bigger database (not run by default):
/// `cargo test --test dashboard -- --ignored --nocapture`. 20,000 copies
/// over 30 days and 100,000 events (a third of them machine), stored
/// through the storage interface; each page asked for 10 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
async fn page_times_on_a_large_database() {
    use trackrelay::storage::{Event, RelayedCopy};
    const COPIES: usize = 20_000;
    const EVENTS_PER_COPY: usize = 5;
    let server = TestServer::start("").await;
    let storage = server.app().storage();
    let now = jiff::Timestamp::now().as_millisecond();
    let month_ms = 30 * 86_400_000_i64;
    let mut ids = Vec::new();
    let started = Instant::now();
    for i in 0..COPIES {
        let at = now - month_ms + (i as i64 * month_ms / COPIES as i64);
        let copy = RelayedCopy {
            id: Uuid::now_v7(),
            route: "default".into(),
            sender: "a@example.com".into(),
            recipients: vec![format!("r{i}@example.com")],
            recipient_id: Some(format!("rid{i}")),
            message_id_header: None,
            tags: vec!["bench".into()],
            links: (0..4).map(|l| format!("https://example.com/{l}")).collect(),
            relayed_at_ms: at,
            upstream_reply: "250 ok".into(),
            status: "relayed".into(),
        };
        let events: Vec<Event> = (0..EVENTS_PER_COPY)
            .map(|n| {
                let machine = n % 3 == 2;
                let click = n % 2 == 1;
                Event {
                    id: Uuid::now_v7(),
                    message_id: copy.id,
                    recipient_id: copy.recipient_id.clone(),
                    kind: if click {
                        trackrelay::token::Kind::Click
                    } else {
                        trackrelay::token::Kind::Open
                    },
                    link: click.then_some((n % 4) as u16),
                    url: click.then(|| copy.links[n % 4].clone()),
                    at_ms: at + 60_000 * (n as i64 + 1),
                    classification: if machine {
                        "security_scanner"
                    } else {
                        "genuine"
                    }
                    .into(),
                    counts_for_metrics: !machine,
                    machine,
                    first: n < 2,
                    bot: json!({ "reason_codes": ["browser"] }),
                    device_type: None,
                    client_type: None,
                    client_name: None,
                }
            })
            .collect();
        ids.push(copy.id);
        storage.record_relayed(copy).await.unwrap();
        storage.record_events(events).await.unwrap();
    }
    println!(
        "seeded {COPIES} copies, {} events in {:.1?}",
        COPIES * EVENTS_PER_COPY,
        started.elapsed()
    );
    let addr = server.app().api_addr();
    let auth = format!("Bearer {API_TOKEN}");
    let message = format!("/dashboard/messages/{}", ids[COPIES / 2]);
    for path in [
        "/v1/routes/default/stats",
        "/dashboard",
        "/dashboard/routes/default",
        "/dashboard/routes/default?interval=hour",
        "/dashboard/routes/default?include_machine=true",
        message.as_str(),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..10 {
            let t = Instant::now();
            let r = server
                .http
                .send(
                    "GET",
                    addr,
                    &addr.to_string(),
                    path,
                    &[("authorization", &auth)],
                )
                .await
                .unwrap();
            times.push(t.elapsed());
            assert_eq!(r.status, 200, "{path}");
            bytes = r.body.len();
        }
        times.sort();
        println!(
            "{path}: median {:.1?}, max {:.1?}, {bytes} bytes",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    server.stop().await;
}
