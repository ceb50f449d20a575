//! The command line as a user runs it: the built `trackrelay` binary.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn trackrelay(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("trackrelay.toml");
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn the_example_config_is_valid() {
    let out = trackrelay(&["check-config", "--config", "conf/trackrelay.toml"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 route, 1 key)"));
}

#[test]
fn check_config_lists_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[tracking]\nbase_url = \"ftp://x\"\ntoken_ttl_days = 0\n[[tracking.keys]]\nid = \"k1\"\nsecret = \"short\"\n\
         [[routes]]\nid = \"r\"\npixel_position = \"top\"\n",
    );
    let out = trackrelay(&["check-config", "--config", &cfg], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "tracking.base_url",
        "tracking.token_ttl_days",
        "tracking.keys[0].secret",
        "api.token",
        "routes[0].pixel_position",
    ] {
        assert!(
            err.contains(&format!("  {key}: ")),
            "{key} missing in:\n{err}"
        );
    }
    assert!(err.contains("5 problems"), "{err}");
}

#[test]
fn check_config_names_an_unknown_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[api]\ntoken = \"t\"\n\n[smtp]\nlisten = \"127.0.0.1:2525\"\nlistne = 1\n",
    );
    let out = trackrelay(&["check-config", "--config", &cfg], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("smtp.listne: unknown field `listne`"), "{err}");
    assert!(err.contains("(line 6)"), "{err}");
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = trackrelay(&["check-config", "--config", "/nonexistent/t.toml"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/t.toml: 1 problem"));
}

#[test]
fn rewrite_then_inspect_each_tracking_url() {
    let msg = b"From: a@example.com\nTo: bob@example.com\nSubject: s\nMIME-Version: 1.0\n\
                Content-Type: text/html\n\n<html><body><a href=\"https://example.com/?a=1&amp;b=2\">x</a></body></html>\n";
    let out = trackrelay(
        &[
            "rewrite",
            "--config",
            "conf/trackrelay.toml",
            "--route",
            "default",
            "--recipient",
            "bob@example.com",
            "--report",
        ],
        msg,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stderr).lines().last().unwrap()).unwrap();
    assert_eq!(report["links"][0], "https://example.com/?a=1&b=2");

    let click = format!(
        "http://127.0.0.1:8080/c/{}",
        extract(&text, "http://127.0.0.1:8080/c/")
    );
    let out = trackrelay(
        &[
            "token",
            "inspect",
            "--config",
            "conf/trackrelay.toml",
            &click,
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["kind"], "click");
    assert_eq!(claims["url"], "https://example.com/?a=1&b=2");
    assert_eq!(claims["link"], 0);
    assert_eq!(claims["key_id"], "k1");
    assert_eq!(claims["expired"], false);
    assert!(
        !claims.to_string().contains("bob"),
        "no readable recipient: {claims}"
    );

    let open = format!(
        "http://127.0.0.1:8080/o/{}",
        extract(&text, "http://127.0.0.1:8080/o/")
    );
    let out = trackrelay(
        &[
            "token",
            "inspect",
            "--config",
            "conf/trackrelay.toml",
            &open,
        ],
        b"",
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["kind"], "open");
    assert_eq!(claims["recipient_id"].as_str().unwrap().len(), 14);

    // One altered character: refused, never a redirect target.
    let mut forged = click.clone().into_bytes();
    let i = forged.len() - 5;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let out = trackrelay(
        &[
            "token",
            "inspect",
            "--config",
            "conf/trackrelay.toml",
            std::str::from_utf8(&forged).unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid token"));
}

#[test]
fn rewrite_with_an_unknown_route_says_which_exist() {
    let out = trackrelay(
        &[
            "rewrite",
            "--config",
            "conf/trackrelay.toml",
            "--route",
            "nope",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no route \"nope\"") && err.contains("routes: default"),
        "{err}"
    );
}

#[test]
fn expired_tokens_say_so() {
    let msg = b"Content-Type: text/html\n\n<a href=\"https://example.com/\">x</a>";
    let out = trackrelay(
        &[
            "rewrite",
            "--config",
            "conf/trackrelay.toml",
            "--route",
            "default",
            "--sent-at",
            "1000000000",
        ],
        msg,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let token = extract(&text, "/c/");
    let out = trackrelay(
        &[
            "token",
            "inspect",
            "--config",
            "conf/trackrelay.toml",
            token,
        ],
        b"",
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["expired"], true);
    assert_eq!(claims["expires_at"], "2001-10-09T01:46:40Z");
}

fn extract<'a>(text: &'a str, prefix: &str) -> &'a str {
    let start = text.find(prefix).unwrap() + prefix.len();
    let rest = &text[start..];
    &rest[..rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .unwrap_or(rest.len())]
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/trackrelay.service"),
    )
    .unwrap();
    for key in [
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=trackrelay",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(key), "{key} missing");
    }
    // systemd-analyze checks syntax and the commands; point them at our binary.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trackrelay.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/trackrelay",
            env!("CARGO_BIN_EXE_trackrelay"),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("trackrelay.service"))
        .collect();
    assert!(out.status.success() && problems.is_empty(), "{err}");
}
