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

#[path = "dashboard/driver.rs"]
mod driver;
#[path = "dashboard/http.rs"]
mod http;
mod support;
#[path = "dashboard/timing.rs"]
mod timing;
#[path = "dashboard/traffic.rs"]
mod traffic;

use std::collections::{BTreeMap, BTreeSet};

use driver::{in_chromium, login, metrics, no_script, screenshot, texts, wait_path};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use support::server::{API_TOKEN, TestServer};
use traffic::{CLASSIFIER, PATIENCE, XSS_AGENT, XSS_TAG, api, traffic};
use uuid::Uuid;

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
    in_chromium(server, move |server, browser| async move {
        browse(&server, &browser, &base, bob, ann).await
    })
    .await;
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
    // A run-time change through the API shows on the next page view.
    let patched = server
        .api_send(
            "PATCH",
            "/v1/routes/news",
            "application/json",
            r#"{"track_clicks": false}"#,
        )
        .await;
    assert_eq!(
        patched.status,
        200,
        "{}",
        String::from_utf8_lossy(&patched.body)
    );
    b.refresh().await.unwrap();
    let css = "tr[data-route='news'] [data-setting=track_clicks]";
    let shown = b.find(Locator::Css(css)).await.unwrap();
    assert_eq!(
        shown.attr("data-value").await.unwrap().as_deref(),
        Some("false")
    );
    assert_eq!(shown.text().await.unwrap(), "off");
    overview(server, b).await;
    println!(
        "overview: {}",
        screenshot(b, "dashboard-overview.png").await.display()
    );
    route_page(server, b, base).await;
    timeline(server, b, base, ann, bob).await;
    println!(
        "timeline: {}",
        screenshot(b, "dashboard-message.png").await.display()
    );

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
        for setting in ["track_opens", "track_clicks"] {
            let css = format!("tr[data-route='{id}'] [data-setting={setting}]");
            let shown = b
                .find(Locator::Css(&css))
                .await
                .unwrap()
                .attr("data-value")
                .await
                .unwrap();
            let route = routes["routes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == id)
                .unwrap();
            assert_eq!(
                shown.as_deref(),
                Some(route[setting].to_string().as_str()),
                "{id} {setting}"
            );
        }
        for chart in ["opens", "clicks"] {
            let scope = format!("section[data-route-charts='{id}']");
            let shown = bars(b, &scope, chart).await;
            assert_eq!(shown, expected_bars(&v, chart), "{id} {chart}");
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
            let expected = expected_bars(&stats, chart);
            assert!(!expected.is_empty(), "{chart}: {stats:#}");
            assert_eq!(
                bars(b, "section.charts", chart).await,
                expected,
                "{chart} (machine {machine})"
            );
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

/// The bars of chart `chart` under `scope`: bucket start → value.
async fn bars(b: &Client, scope: &str, chart: &str) -> BTreeMap<String, u64> {
    let mut bars = BTreeMap::new();
    let css = format!("{scope} svg[data-chart={chart}] rect");
    for rect in b.find_all(Locator::Css(&css)).await.unwrap() {
        let start = rect.attr("data-bucket").await.unwrap().unwrap();
        let value = rect.attr("data-value").await.unwrap().unwrap();
        bars.insert(start, value.parse().unwrap());
    }
    bars
}

/// The API's buckets with anything for `chart` (`opens` or `clicks`).
fn expected_bars(stats: &Value, chart: &str) -> BTreeMap<String, u64> {
    stats["buckets"]
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
        .collect()
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
            &format!(
                "/v1/messages/{}?include_machine=true",
                m["id"].as_str().unwrap()
            ),
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
    // Machine events only when asked for, on the page as in the API.
    let modes = ["", "?include_machine=true"];
    for (id, mode) in [ann, bob].into_iter().flat_map(|id| modes.map(|m| (id, m))) {
        b.goto(&format!("{base}/dashboard/messages/{id}{mode}"))
            .await
            .unwrap();
        let v = api(server, &format!("/v1/messages/{id}{mode}")).await;
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
        assert_eq!(shown, expected, "timeline of {id}{mode}");
        if mode.is_empty() {
            let hidden = b
                .find(Locator::Css("[data-machine-events-hidden]"))
                .await
                .unwrap()
                .attr("data-machine-events-hidden")
                .await
                .unwrap();
            assert_eq!(
                hidden,
                v["machine_events_hidden"].as_u64().map(|n| n.to_string())
            );
        }
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
    b.goto(&format!(
        "{base}/dashboard/messages/{ann}?include_machine=true"
    ))
    .await
    .unwrap();
    let agents = texts(b, "ol.timeline .ua").await;
    assert!(agents.iter().any(|a| a == XSS_AGENT), "{agents:?}");
}
