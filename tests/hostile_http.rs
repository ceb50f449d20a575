//! Hostile clients and weak settings against the real `trackrelay serve`
//! binary on 127.0.0.1 (issue 21, items 1 (dashboard login), 7, 10, 11):
//! raw TCP where a real client would refuse to send the bytes.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::server::{API_TOKEN, Binary, HOST, Http, free_port, next_week, token};
use trackrelay::token::Kind;
use uuid::Uuid;

/// Sends `request` as is on a new connection and reads the whole answer.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn login_form(token: &str) -> String {
    format!("token={token}")
}

async fn post_login(http: &Http, api: SocketAddr, token: &str) -> support::server::Resp {
    http.send_body(
        "POST",
        api,
        &api.to_string(),
        "/dashboard/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        login_form(token),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_login_guessing_is_limited_per_address_and_logged() {
    let server = Binary::start("").await;
    let http = Http::default();
    let (mut checked, mut throttled) = (0, 0);
    for i in 0..40 {
        let resp = post_login(&http, server.api, &format!("guess-{i}")).await;
        match resp.status {
            401 => checked += 1,
            429 => {
                throttled += 1;
                assert!(resp.header("retry-after").parse::<u64>().unwrap() >= 1);
            }
            other => panic!("status {other}"),
        }
    }
    // Whatever the timing, at most 10 guesses in 15 minutes are compared.
    assert!((3..=10).contains(&checked), "{checked} compared");
    assert_eq!(checked + throttled, 40);
    // The right token is refused too while the address is locked out.
    assert_eq!(post_login(&http, server.api, API_TOKEN).await.status, 429);
    let log = server.log();
    let failures = log
        .lines()
        .filter(|l| l.contains("dashboard login failed") && l.contains("client=127.0.0.1"))
        .count();
    assert_eq!(failures, checked, "one fail2ban line per failure:\n{log}");
    assert!(log.contains("dashboard login throttled client=127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_logout_is_refused_and_a_same_site_one_works() {
    let server = Binary::start("").await;
    let http = Http::default();
    let login = post_login(&http, server.api, API_TOKEN).await;
    assert_eq!(login.status, 303);
    let cookie = login
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let host = server.api.to_string();
    for forged in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "null"),
    ] {
        let resp = http
            .send(
                "POST",
                server.api,
                &host,
                "/dashboard/logout",
                &[("cookie", &cookie), forged],
            )
            .await
            .unwrap();
        assert_eq!(resp.status, 403, "{forged:?}");
        assert_eq!(resp.header("set-cookie"), "", "session kept");
    }
    let origin = format!("http://{host}");
    let resp = http
        .send(
            "POST",
            server.api,
            &host,
            "/dashboard/logout",
            &[("cookie", &cookie), ("origin", &origin)],
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 303);
    assert!(resp.header("set-cookie").contains("Max-Age=0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_on_the_admin_listener_behind_the_token_and_json_is_nosniff() {
    let server = Binary::start("").await;
    let http = Http::default();
    let public = http
        .send("GET", server.tracking, HOST, "/metrics", &[])
        .await
        .unwrap();
    assert_eq!(public.status, 404, "no metrics on the public port");
    let host = server.api.to_string();
    let anonymous = http
        .send("GET", server.api, &host, "/metrics", &[])
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("x-content-type-options"), "nosniff");
    let auth = format!("Bearer {API_TOKEN}");
    let resp = http
        .send(
            "GET",
            server.api,
            &host,
            "/metrics",
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{}",
        resp.header("content-type")
    );
    let text = String::from_utf8(resp.body.clone()).unwrap();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text");
    let routes = http
        .send(
            "GET",
            server.api,
            &host,
            "/v1/routes",
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    assert_eq!(routes.status, 200);
    assert_eq!(routes.header("x-content-type-options"), "nosniff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_get_400_on_both_listeners() {
    let server = Binary::start("").await;
    let (_, open) = token(Kind::Open, None, next_week());
    let tracking = format!(
        "GET /o/{open} HTTP/1.1\r\nHost: {HOST}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(server.tracking, tracking.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let api = "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n";
    let answer = raw(server.api, api.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let one = "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    assert!(raw(server.api, one.as_bytes()).starts_with("HTTP/1.1 200"));
}

/// The recorded address of the open of `message_id`, once stored.
fn recorded_ip(db: &Path, message_id: Uuid) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let conn = rusqlite::Connection::open(db).unwrap();
        let ip: Option<String> = conn
            .query_row(
                "SELECT ip FROM observations WHERE message_id = ?1",
                [message_id.to_string()],
                |r| r.get(0),
            )
            .ok();
        if let Some(ip) = ip {
            return ip;
        }
        assert!(Instant::now() < deadline, "observation never stored");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_read_from_one_family_and_malformed_means_the_peer() {
    // 127.0.0.1 is a trusted proxy in the test config (the default).
    let server = Binary::start("").await;
    let hit = |headers: &[u8]| {
        let (id, open) = token(Kind::Open, None, next_week());
        let mut req = format!("GET /o/{open} HTTP/1.1\r\nHost: {HOST}\r\n").into_bytes();
        req.extend_from_slice(headers);
        req.extend_from_slice(b"Connection: close\r\n\r\n");
        assert!(raw(server.tracking, &req).starts_with("HTTP/1.1 200"));
        id
    };
    // The reproduction: an invalid XFF entry plus a Forwarded.
    let forged = hit(b"X-Forwarded-For: \xff, 203.0.113.5\r\nForwarded: for=6.6.6.6\r\n");
    let proxied = hit(b"X-Forwarded-For: 203.0.113.5\r\nForwarded: for=6.6.6.6\r\n");
    let only_forwarded = hit(b"Forwarded: for=6.6.6.6\r\n");
    let db = server.db_path();
    assert_eq!(recorded_ip(&db, forged), "127.0.0.1");
    assert_eq!(recorded_ip(&db, proxied), "203.0.113.5");
    assert_eq!(recorded_ip(&db, only_forwarded), "127.0.0.1");
}

fn trackrelay(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn weak_secrets_are_refused_by_check_config_and_serve_with_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weak.toml");
    std::fs::write(
        &config,
        "[smtp]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"missing-cert.pem\"\ntls_key = \"missing-key.pem\"\n\
         [api]\nlisten = \"0.0.0.0:0\"\ntoken = \"change-me\"\n\
         [[tracking.keys]]\nid = \"k1\"\n\
         secret = \"replace this with 32+ random bytes, e.g. openssl rand -base64 48\"\n\
         [retention]\nip_hash_key = \"a long random secret, at least 32 bytes\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    for command in ["check-config", "serve"] {
        let out = trackrelay(&[command, "--config", config], dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {err}");
        for key in [
            "api.token",
            "tracking.keys[0].secret",
            "retention.ip_hash_key",
        ] {
            assert!(
                err.contains(&format!("  {key}: ")),
                "{command}: {key} in\n{err}"
            );
        }
    }
    // A token of one character is refused as well.
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace("\"change-me\"", "\"t\"");
    std::fs::write(config, text).unwrap();
    let out = trackrelay(&["check-config", "--config", config], dir.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("api.token: is 1 bytes"));
}

#[test]
fn check_config_loads_tls_files_and_warns_about_an_open_relay() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let body = "[smtp]\nallowed_networks = [\"0.0.0.0/0\"]\n";
    std::fs::write(&config, body).unwrap();
    let config = config.to_str().unwrap();
    let out = trackrelay(&["check-config", "--config", config], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("smtp.allowed_networks[0]: OPEN RELAY"),
        "{err}"
    );
    std::fs::write(
        config,
        format!("{body}tls_cert = \"missing.pem\"\ntls_key = \"missing.key\"\n"),
    )
    .unwrap();
    let out = trackrelay(&["check-config", "--config", config], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("smtp.tls_cert: ") && err.contains("missing.pem"),
        "{err}"
    );
}

#[test]
fn printing_into_a_closed_pipe_is_a_clean_exit() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/trackrelay.toml");
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["check-config", "--config", conf.to_str().unwrap()],
        vec!["token", "inspect", "--config", conf.to_str().unwrap(), "x"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.status.code().is_some(), "{args:?}: killed by a signal");
    }
}

/// The example config with its ports moved to free ones (several tests
/// and helpers share the machine); nothing else edited.
fn example_on_free_ports(dir: &Path) -> (SocketAddr, SocketAddr) {
    let (smtp, tracking, api) = (free_port(), free_port(), free_port());
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/trackrelay.toml"))
            .unwrap()
            .replace("127.0.0.1:2525", &format!("127.0.0.1:{smtp}"))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{tracking}"))
            .replace("127.0.0.1:8081", &format!("127.0.0.1:{api}"));
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/trackrelay.toml"), text).unwrap();
    (
        format!("127.0.0.1:{tracking}").parse().unwrap(),
        format!("127.0.0.1:{api}").parse().unwrap(),
    )
}

/// Starts `serve` on the example config in `dir`, waits for /healthz on
/// the API, returns the child and its log file.
async fn serve_example(
    dir: &Path,
    api: SocketAddr,
    run: u32,
) -> (std::process::Child, std::path::PathBuf) {
    let log = dir.join(format!("serve{run}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(["serve", "--config", "conf/trackrelay.toml"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let http = Http::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.send("GET", api, "a", "/healthz", &[]).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_config_starts_with_generated_secrets_kept_across_restarts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_tracking, api) = example_on_free_ports(dir.path());
    let (mut child, log) = serve_example(dir.path(), api, 1).await;
    let token_file = dir.path().join("var/secrets/api-token");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(dir.path().join("var/secrets/tracking-key")).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("api.token: not set; generated into var/secrets/api-token"),
        "{text}"
    );
    assert!(
        text.contains("tracking.keys: not set; generated into"),
        "{text}"
    );
    let auth = format!("Bearer {token}");
    let http = Http::default();
    let headers = [("authorization", auth.as_str())];
    let ok = http.send("GET", api, "a", "/v1/routes", &headers).await;
    assert_eq!(ok.unwrap().status, 200);
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, log) = serve_example(dir.path(), api, 2).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("generated into"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("var/secrets/tracking-key")).unwrap(),
        key
    );
    let ok = http.send("GET", api, "a", "/v1/routes", &headers).await;
    assert_eq!(ok.unwrap().status, 200, "the same token after a restart");
    child.kill().unwrap();
    child.wait().unwrap();
}
