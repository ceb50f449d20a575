//! The route page's Track Opens / Track Clicks form (issue 17). In
//! headless Chromium (chromedriver, as tests/dashboard.rs): log in, switch
//! both off on the `default` route and save; a message relayed over SMTP
//! then leaves with neither pixel nor rewritten links; "back to the config
//! file's values" and the next message is tracked again. Over plain HTTP:
//! a POST without the form's token, with another session's, or with an
//! edited one is a 403 page and changes nothing.

#[path = "dashboard/driver.rs"]
#[allow(dead_code)]
mod driver;
mod support;
#[path = "dashboard/traffic.rs"]
#[allow(dead_code)]
mod traffic;

use std::time::Duration;

use driver::{in_chromium, login, no_script, wait_path};
use fantoccini::{Client, Locator};
use support::server::{API_TOKEN, HOST, Resp, TestServer};
use traffic::api;

/// Relays the two-link HTML message to `to`; the copy as relayed.
async fn send(server: &TestServer, to: &str) -> String {
    let mut client = support::relay::Client::connect(server.app().smtp_addr()).await;
    let from = "shop@example.org";
    let (rcpts, reply) = client.send(from, &[to], &traffic::message(from, to)).await;
    assert!(
        rcpts[0].starts_with("250") && reply.starts_with("250"),
        "{reply}"
    );
    traffic::outbox(server, to).1
}

/// Whether a relayed copy has the pixel and rewritten links.
fn tracked(copy: &str) -> (bool, bool) {
    let base = format!("https://{HOST}");
    (
        !support::tokens_after(copy, &base, "o").is_empty(),
        !support::tokens_after(copy, &base, "c").is_empty(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_page_switches_tracking_and_the_next_message_follows() {
    let server = TestServer::start("").await;
    assert_eq!(
        tracked(&send(&server, "before@example.com").await),
        (true, true)
    );
    let base = format!("http://{}", server.app().api_addr());
    in_chromium(server, move |server, browser| async move {
        browse(&server, &browser, &base).await
    })
    .await;
}

async fn browse(server: &TestServer, b: &Client, base: &str) {
    b.goto(&format!("{base}/dashboard/login")).await.unwrap();
    login(b, API_TOKEN).await;
    wait_path(b, "/dashboard").await;

    // Both switches off, saved.
    b.goto(&format!("{base}/dashboard/routes/default"))
        .await
        .unwrap();
    no_script(b).await;
    for name in ["track_opens", "track_clicks"] {
        let css = format!("form.tracking input[name={name}]");
        let switch = b.find(Locator::Css(&css)).await.unwrap();
        assert!(
            switch.prop("checked").await.unwrap().as_deref() == Some("true"),
            "{name}"
        );
        switch.click().await.unwrap();
    }
    submit(b, "save").await;
    wait_path(b, "/dashboard/routes/default").await;
    assert_eq!(setting(b, "track_opens").await, "false");
    assert_eq!(setting(b, "track_clicks").await, "false");
    assert_eq!(overridden(b).await, "true");
    let route = api(server, "/v1/routes/default").await;
    assert_eq!(route["overrides"]["track_opens"], false, "{route:#}");
    assert_eq!(route["overrides"]["track_clicks"], false);
    let copy = send(server, "off@example.com").await;
    assert_eq!(tracked(&copy), (false, false), "{copy}");
    assert!(
        copy.contains("href=\"https://example.com/first\""),
        "{copy}"
    );

    // Opens alone back on.
    b.find(Locator::Css("form.tracking input[name=track_opens]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    submit(b, "save").await;
    wait_path(b, "/dashboard/routes/default").await;
    assert_eq!(setting(b, "track_opens").await, "true");
    assert_eq!(
        tracked(&send(server, "opens@example.com").await),
        (true, false)
    );

    // Back to the config file's values: tracked again, no override.
    submit(b, "reset").await;
    wait_path(b, "/dashboard/routes/default").await;
    assert_eq!(setting(b, "track_opens").await, "true");
    assert_eq!(setting(b, "track_clicks").await, "true");
    assert_eq!(overridden(b).await, "false");
    let route = api(server, "/v1/routes/default").await;
    assert!(route["overrides"]["track_opens"].is_null(), "{route:#}");
    assert!(route["overrides"]["track_clicks"].is_null());
    assert_eq!(
        tracked(&send(server, "after@example.com").await),
        (true, true)
    );
}

/// Clicks the form's `action` button and waits until the page it was on is
/// gone (the POST answers with a redirect to the same path, so the path
/// alone cannot tell the old page from the new one).
async fn submit(b: &Client, action: &str) {
    let old_page = b.find(Locator::Css("html")).await.unwrap();
    let css = format!("form.tracking button[value={action}]");
    b.find(Locator::Css(&css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // A stale element (its page replaced) answers with an error.
    while old_page.tag_name().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the page did not change after {action}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn setting(b: &Client, name: &str) -> String {
    let css = format!("[data-setting={name}]");
    let e = b.find(Locator::Css(&css)).await.unwrap();
    e.attr("data-value").await.unwrap().unwrap()
}

async fn overridden(b: &Client) -> String {
    let e = b.find(Locator::Css("[data-overridden]")).await.unwrap();
    e.attr("data-overridden").await.unwrap().unwrap()
}

/// Logs in with the form over plain HTTP; the session cookie.
async fn session(server: &TestServer) -> String {
    let addr = server.app().api_addr();
    let body = format!("token={API_TOKEN}");
    let resp = server
        .http
        .send_body(
            "POST",
            addr,
            &addr.to_string(),
            "/dashboard/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            body,
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 303);
    resp.header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn get(server: &TestServer, path: &str, cookie: &str) -> Resp {
    let addr = server.app().api_addr();
    server
        .http
        .send("GET", addr, &addr.to_string(), path, &[("cookie", cookie)])
        .await
        .unwrap()
}

async fn post(server: &TestServer, cookie: &str, body: String) -> Resp {
    let addr = server.app().api_addr();
    let headers = [
        ("cookie", cookie),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    server
        .http
        .send_body(
            "POST",
            addr,
            &addr.to_string(),
            "/dashboard/routes/default/tracking",
            &headers,
            body,
        )
        .await
        .unwrap()
}

/// The form token on the route page of the session `cookie`.
async fn form_token(server: &TestServer, cookie: &str) -> String {
    let page = get(server, "/dashboard/routes/default", cookie).await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body).unwrap();
    let field = "name=\"csrf\" value=\"";
    let start = html.find(field).expect("the form's token") + field.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_this_sessions_token_is_refused() {
    let server = TestServer::start("").await;
    let mine = session(&server).await;
    // A second login: another session, another token (the cookie's
    // expiry is to the second, so wait for the next one).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let other = session(&server).await;
    assert_ne!(mine, other);
    let token = form_token(&server, &mine).await;
    let others = form_token(&server, &other).await;
    assert_ne!(token, others);
    let mut edited = token.clone().into_bytes();
    edited[0] = if edited[0] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(edited).unwrap();
    let save = "action=save&track_opens=on";
    for body in [
        save.to_owned(),
        format!("{save}&csrf="),
        format!("{save}&csrf={others}"),
        format!("{save}&csrf={edited}"),
    ] {
        let resp = post(&server, &mine, body.clone()).await;
        assert_eq!(resp.status, 403, "{body}");
        assert!(resp.header("content-type").starts_with("text/html"));
        let page = String::from_utf8(resp.body).unwrap();
        assert!(page.contains("security token"), "{page}");
    }
    let route = api(&server, "/v1/routes/default").await;
    assert!(
        route["overrides"]["updated_at"].is_null(),
        "nothing changed: {route:#}"
    );
    assert_eq!(route["track_clicks"], true);

    // Without a session at all: the login form, nothing changed.
    let resp = post(&server, "", format!("{save}&csrf={token}")).await;
    assert_eq!(resp.status, 303);
    assert_eq!(resp.header("location"), "/dashboard/login");

    // The right token: stored as PATCH stores it.
    let resp = post(&server, &mine, format!("{save}&csrf={token}")).await;
    assert_eq!(resp.status, 303, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.header("location"), "/dashboard/routes/default");
    let route = api(&server, "/v1/routes/default").await;
    assert_eq!(route["overrides"]["track_opens"], true);
    assert_eq!(route["overrides"]["track_clicks"], false);
    assert_eq!(route["track_clicks"], false);
    let resp = post(&server, &mine, format!("action=reboot&csrf={token}")).await;
    assert_eq!(resp.status, 400);
    let resp = get(&server, "/dashboard/routes/default/tracking", &mine).await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), "POST");
    server.stop().await;
}
