//! The dashboard without a browser: redirects, security headers, error
//! statuses and the session cookie, over plain HTTP.

use crate::support::server::{API_TOKEN, Resp, TestServer};

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
    let wrong = post(&server, "/dashboard/login", "token=nope").await;
    assert_eq!(wrong.status, 401);
    assert!(String::from_utf8_lossy(&wrong.body).contains("Wrong token"));
    let right = post(&server, "/dashboard/login", &format!("token={API_TOKEN}")).await;
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
    assert_eq!(post(&server, "/dashboard/login", &big).await.status, 400);
    assert_eq!(
        post(&server, "/dashboard", "").await.status,
        303,
        "not signed in"
    );
    assert_eq!(post(&server, "/dashboard/style.css", "").await.status, 405);
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

/// A form POST to the API listener.
async fn post(server: &TestServer, path: &str, body: &str) -> Resp {
    let addr = server.app().api_addr();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let body = body.to_owned();
    server
        .http
        .send_body("POST", addr, &addr.to_string(), path, &form, body)
        .await
        .unwrap()
}
