//! The tracking server over real sockets with a real HTTP client: pixel,
//! redirect, Host check, invalid and expired tokens, client addresses.

mod support;

use support::server::{HOST, TestServer, next_week, old_keys, token, token_with};
use trackrelay::token::{Key, KeyRing, Kind};

const PIXEL_LEN: usize = 43;

type Headers = &'static [(&'static str, &'static str)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pixel_is_the_43_byte_gif_with_no_cache_headers_and_the_open_is_recorded() {
    let server = TestServer::start("").await;
    let (id, tok) = token(Kind::Open, None, next_week());
    let resp = server
        .tracking(
            "GET",
            HOST,
            &format!("/o/{tok}"),
            &[("user-agent", "Mail/1.0")],
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), PIXEL_LEN);
    assert!(resp.body.starts_with(b"GIF89a"));
    assert_eq!(resp.header("content-type"), "image/gif");
    assert_eq!(
        resp.header("cache-control"),
        "no-store, no-cache, must-revalidate, private"
    );
    assert_eq!(resp.header("pragma"), "no-cache");
    assert_eq!(resp.header("expires"), "0");
    let stored = server.observations(id).await;
    assert_eq!(stored.len(), 1, "the response waited for the commit");
    let o = &stored[0];
    assert_eq!(o.kind, Kind::Open);
    assert_eq!(o.method, "GET");
    assert_eq!(o.ip, "127.0.0.1".parse().ok());
    assert_eq!(o.user_agent.as_deref(), Some("Mail/1.0"));
    assert_eq!(o.key_id, "k1");
    assert!(o.recipient_id.is_some());
    assert!(
        o.headers
            .iter()
            .any(|(k, v)| k == "user-agent" && v == "Mail/1.0"),
        "{:?}",
        o.headers
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_gets_the_headers_without_a_body_and_is_recorded_as_head() {
    let server = TestServer::start("").await;
    let (open_id, open) = token(Kind::Open, None, next_week());
    let resp = server.hit("HEAD", &format!("/o/{open}")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), "43");
    assert!(resp.body.is_empty());
    let (click_id, click) = token(Kind::Click, Some("https://example.com/x"), next_week());
    let resp = server.hit("HEAD", &format!("/c/{click}")).await;
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), "https://example.com/x");
    assert!(resp.body.is_empty());
    for id in [open_id, click_id] {
        let stored = server.observations(id).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].method, "HEAD");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_redirects_at_once_with_no_store_and_no_referrer() {
    let server = TestServer::start("").await;
    let url = "https://example.com/reset?a=1&b=2#top";
    let (id, tok) = token(Kind::Click, Some(url), next_week());
    let resp = server.hit("GET", &format!("/c/{tok}")).await;
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), url);
    assert_eq!(resp.header("cache-control"), "no-store");
    assert_eq!(resp.header("referrer-policy"), "no-referrer");
    let stored = server.observations(id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].url.as_deref(), Some(url));
    assert_eq!(stored[0].link, Some(0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_escapes_only_what_a_header_cannot_carry() {
    let server = TestServer::start("").await;
    for (url, expected) in [
        (
            "https://example.com/caf\u{e9} menu?q=\u{20ac}#\u{fc}",
            "https://example.com/caf%C3%A9%20menu?q=%E2%82%AC#%C3%BC",
        ),
        (
            "https://example.com/a%20b?x={y}|z&c=%E2%82%AC",
            "https://example.com/a%20b?x={y}|z&c=%E2%82%AC",
        ),
    ] {
        let (_, tok) = token(Kind::Click, Some(url), next_week());
        let resp = server.hit("GET", &format!("/c/{tok}")).await;
        assert_eq!(resp.status, 302);
        assert_eq!(resp.header("location"), expected);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_are_refused_and_route_domains_answered() {
    let server = TestServer::start("").await;
    let (id, tok) = token(Kind::Click, Some("https://example.com/"), next_week());
    let path = format!("/c/{tok}");
    for host in ["evil.example.net", "t.example.com:8443", "127.0.0.1"] {
        let resp = server.tracking("GET", host, &path, &[]).await;
        assert_eq!(resp.status, 421, "{host}");
        assert_eq!(resp.header("location"), "", "{host}");
    }
    assert!(server.observations(id).await.is_empty());
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"{kind="click",outcome="misdirected"} "#),
        "{metrics}"
    );
    for host in [
        "T.EXAMPLE.COM",
        "t.example.com:443",
        "links.news.example:8443",
    ] {
        let resp = server.tracking("GET", host, &path, &[]).await;
        assert_eq!(resp.status, 302, "{host}");
    }
    assert_eq!(server.observations(id).await.len(), 3);
    server.stop().await;
}

/// Tokens that must never redirect: a forged signature, a truncated token,
/// an altered destination, a key we do not have, the wrong kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_truncated_altered_and_foreign_tokens_never_redirect() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let server = TestServer::start("").await;
    let (id, good) = token(Kind::Click, Some("https://example.com/pay"), next_week());
    let mut raw = B64.decode(&good).unwrap();
    let url_at = raw
        .windows(4)
        .position(|w| w == b"pay")
        .unwrap_or(raw.len() - 20);
    raw[url_at] = b'P';
    let altered = B64.encode(&raw);
    let foreign = KeyRing::new(vec![Key::new("k1", vec![9u8; 32])]);
    let (_, forged) = token_with(
        &foreign,
        Kind::Click,
        Some("https://evil.example/"),
        next_week(),
    );
    let stranger = KeyRing::new(vec![Key::new("zz", vec![9u8; 32])]);
    let (_, other_key) = token_with(
        &stranger,
        Kind::Click,
        Some("https://evil.example/"),
        next_week(),
    );
    let (_, open) = token(Kind::Open, None, next_week());
    let bad = [
        forged,
        other_key,
        altered,
        good[..good.len() - 1].to_owned(),
        good[..good.len() / 2].to_owned(),
        format!("{good}A"),
        open,
        String::from("not-a-token"),
    ];
    for tok in &bad {
        let resp = server.hit("GET", &format!("/c/{tok}")).await;
        assert_eq!(resp.status, 404, "{tok}");
        assert_eq!(resp.header("location"), "", "{tok}");
        assert!(String::from_utf8_lossy(&resp.body).contains("not valid"));
    }
    assert!(server.observations(id).await.is_empty());
    // The untouched token still works.
    assert_eq!(server.hit("GET", &format!("/c/{good}")).await.status, 302);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_open_tokens_get_the_pixel_but_nothing_is_recorded() {
    let server = TestServer::start("").await;
    let (id, click) = token(Kind::Click, Some("https://example.com/"), next_week());
    for tok in [click.as_str(), "garbage", &click[..10]] {
        let resp = server.hit("GET", &format!("/o/{tok}")).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body.len(), PIXEL_LEN);
        assert_eq!(resp.header("pragma"), "no-cache");
    }
    assert!(server.observations(id).await.is_empty());
    let text = server.metrics().await;
    assert!(
        text.contains(r#"trackrelay_tracking_hits_total{kind="open",outcome="invalid"}"#),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_out_key_still_verifies() {
    let server = TestServer::start("").await;
    let (id, tok) = token_with(
        &old_keys(),
        Kind::Click,
        Some("https://example.com/old"),
        next_week(),
    );
    let resp = server.hit("GET", &format!("/c/{tok}")).await;
    assert_eq!(resp.status, 302);
    assert_eq!(server.observations(id).await[0].key_id, "k0");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_still_redirect_and_show_the_pixel_but_are_not_recorded() {
    let server = TestServer::start("").await;
    let yesterday = next_week() - 8 * 86_400;
    let (click_id, click) = token(Kind::Click, Some("https://example.com/old"), yesterday);
    let resp = server.hit("GET", &format!("/c/{click}")).await;
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), "https://example.com/old");
    let (open_id, open) = token(Kind::Open, None, yesterday);
    let resp = server.hit("GET", &format!("/o/{open}")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), PIXEL_LEN);
    assert!(
        server
            .app()
            .storage()
            .flush(std::time::Duration::from_secs(5))
            .await
    );
    assert!(server.observations(click_id).await.is_empty());
    assert!(server.observations(open_id).await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let trusting = TestServer::start(r#"trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]"#).await;
    let wary = TestServer::start(r#"trusted_proxies = ["10.0.0.0/8"]"#).await;
    // Request headers, address seen when 127.0.0.1 is trusted, when not.
    let cases: [(Headers, &str, &str); 4] = [
        (
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")],
            "198.51.100.7",
            "127.0.0.1",
        ),
        // Only X-Forwarded-For is read by default (tracking.client_ip_header):
        // a Forwarded header is the client's word, not the proxy's.
        (
            &[("forwarded", "for=\"[2001:db8::7]:443\"")],
            "127.0.0.1",
            "127.0.0.1",
        ),
        (&[("x-forwarded-for", "10.0.0.9")], "10.0.0.9", "127.0.0.1"),
        (&[], "127.0.0.1", "127.0.0.1"),
    ];
    for (headers, trusted_ip, wary_ip) in cases {
        for (server, expected) in [(&trusting, trusted_ip), (&wary, wary_ip)] {
            let (id, tok) = token(Kind::Open, None, next_week());
            server
                .tracking("GET", HOST, &format!("/o/{tok}"), headers)
                .await;
            let stored = server.observations(id).await;
            assert_eq!(stored[0].ip, expected.parse().ok(), "{headers:?}");
        }
    }
    trusting.stop().await;
    wary.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_other_paths() {
    let server = TestServer::start("").await;
    let health = server.tracking("GET", "anything", "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    let (_, tok) = token(Kind::Click, Some("https://example.com/"), next_week());
    assert_eq!(server.hit("POST", &format!("/c/{tok}")).await.status, 405);
    assert_eq!(server.hit("GET", "/x/abc").await.status, 404);
    server.hit("GET", &format!("/c/{tok}")).await;
    let text = server.metrics().await;
    for name in [
        r#"trackrelay_tracking_hits_total{kind="click",outcome="recorded"}"#,
        "trackrelay_storage_queue_depth",
        "trackrelay_storage_batch_size_bucket",
        "trackrelay_storage_commit_seconds_bucket",
        "trackrelay_storage_queue_overflow_total",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    server.stop().await;
}
