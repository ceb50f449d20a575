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
fn the_classifier_lists_are_built_in_whatever_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/trackrelay.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(["check-config", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let patterns: usize = stdout
        .split_once("classifier: ")
        .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(patterns > 100, "{stdout}");
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
        "routes[0].pixel_position",
    ] {
        assert!(
            err.contains(&format!("  {key}: ")),
            "{key} missing in:\n{err}"
        );
    }
    assert!(err.contains("4 problems"), "{err}");
}

#[test]
fn check_config_names_an_unknown_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[api]\ntoken = \"Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU\"\n\n[smtp]\nlisten = \"127.0.0.1:2525\"\nlistne = 1\n",
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
    // The example config ships no key: the one generated into var/secrets.
    assert_eq!(claims["key_id"], "auto");
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

/// A config whose `[classifier]` uses the committed lists (absolute paths)
/// plus `ranges` (TOML of `[[classifier.ranges]]` tables).
fn classifier_config(dir: &Path, ranges: &str) -> String {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/classify");
    write_config(
        dir,
        &format!(
            "[api]\ntoken = \"Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU\"\n[[tracking.keys]]\nid = \"k1\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n\
             [classifier]\nbot_patterns = {:?}\nuser_agents = {:?}\nnetworks = {:?}\n{ranges}",
            conf.join("bot-patterns.txt"),
            conf.join("user-agents.tsv"),
            conf.join("networks.csv"),
        ),
    )
}

#[test]
fn classify_writes_one_verdict_per_line_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = classifier_config(dir.path(), "");
    let input = br#"{"kind":"open","ip":"192.0.2.1","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:45.0) Gecko/20100101 Thunderbird/45.8.0"}
{"kind":"click","ip":"192.0.2.1","user_agent":"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"}
{"kind":"click","ip":"not an ip","user_agent":"x"}

{"kind":"click","ip":"192.0.2.1","method":"HEAD","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36","headers":{"Accept":"*/*"},"seconds_after_send":4000}
"#;
    let out = trackrelay(&["classify", "--config", &cfg], input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 3: ip: \"not an ip\" is not an IP address"),
        "{stderr}"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["bot"]["classification"], "genuine");
    assert_eq!(lines[0]["client_name"], "Thunderbird");
    assert_eq!(lines[0]["client_type"], "email_client");
    assert_eq!(lines[0]["device_type"], "desktop");
    assert_eq!(lines[0]["bot"]["counts_for_metrics"], true);
    assert_eq!(lines[1]["bot"]["classification"], "link_preview_bot");
    assert_eq!(lines[1]["bot"]["machine"], true);
    assert_eq!(lines[2]["line"], 3);
    assert_eq!(lines[3]["bot"]["classification"], "security_scanner");
    assert!(
        lines[3]["bot"]["reason_codes"]
            .as_array()
            .unwrap()
            .contains(&"head_request".into())
    );
    for key in ["detected", "probability", "proxy_type", "reason_codes"] {
        assert!(lines[0]["bot"].get(key).is_some(), "{key} missing");
    }
}

/// Serves files over HTTP/1.1 on 127.0.0.1 for `requests` requests:
/// `/redirect/NAME` answers 302 to `/NAME`, a missing file 404.
fn serve_files(dir: std::path::PathBuf, requests: usize) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap() > 2 {
                header.clear();
            }
            let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
            let response = if let Some(name) = path.strip_prefix("/redirect/") {
                format!("HTTP/1.1 302 Found\r\nLocation: /{name}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
            } else if let Ok(body) = std::fs::read(dir.join(path.trim_start_matches('/'))) {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend(body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            stream.write_all(&response).unwrap();
        }
    });
    (port, handle)
}

#[test]
fn update_ranges_downloads_the_lists_and_classify_uses_them() {
    let dir = tempfile::tempdir().unwrap();
    let ranges_dir = support::corpus::root().join("ua/ip-ranges");
    let (port, server) = serve_files(ranges_dir, 4);
    let out_dir = dir.path().join("ranges");
    let ranges = format!(
        "[[classifier.ranges]]\nname = \"apple\"\nclass = \"apple_relay\"\n\
         url = \"http://127.0.0.1:{port}/apple-private-relay-egress-ipv4.csv\"\nfile = {:?}\n\
         [[classifier.ranges]]\nname = \"google\"\nclass = \"image_proxy\"\n\
         url = \"http://127.0.0.1:{port}/redirect/google-goog.json\"\nfile = {:?}\n\
         [[classifier.ranges]]\nname = \"gone\"\nclass = \"hosting\"\n\
         url = \"http://127.0.0.1:{port}/no-such-list.csv\"\nfile = {:?}\n",
        out_dir.join("apple.csv"),
        out_dir.join("goog.json"),
        out_dir.join("gone.csv"),
    );
    let cfg = classifier_config(dir.path(), &ranges);

    // Before the download: the built-in snapshot serves "apple" and
    // "google"; "gone" has no built-in copy, a warning, not a failure.
    let out = trackrelay(&["check-config", "--config", &cfg], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("classifier.ranges[2].file"), "{stderr}");
    assert!(!stderr.contains("classifier.ranges[0].file"), "{stderr}");

    let out = trackrelay(&["update-ranges", "--config", &cfg], b"");
    server.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("apple: ") && stdout.contains("google: "),
        "{stdout}"
    );
    assert!(
        stderr.contains("classifier.ranges[2] (gone)") && stderr.contains("404"),
        "{stderr}"
    );
    let expected =
        std::fs::read(support::corpus::root().join("ua/ip-ranges/google-goog.json")).unwrap();
    assert_eq!(std::fs::read(out_dir.join("goog.json")).unwrap(), expected);
    assert!(!out_dir.join("gone.csv").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());

    // The downloaded lists take effect: an open from Apple's relay is MPP,
    // Gmail's proxy agent from Google's network is Gmail's proxy.
    let input = br#"{"kind":"open","ip":"104.28.28.1","user_agent":"Mozilla/5.0"}
{"kind":"open","ip":"8.8.8.8","user_agent":"Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"}
{"kind":"open","ip":"192.0.2.9","user_agent":"Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"}
"#;
    let out = trackrelay(&["classify", "--config", &cfg], input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["bot"]["proxy_type"], "apple_mpp");
    assert_eq!(lines[1]["bot"]["classification"], "image_proxy");
    assert_eq!(lines[1]["bot"]["proxy_type"], "gmail");
    assert_eq!(lines[2]["bot"]["classification"], "suspicious");
}

/// Every subcommand (nested ones too) and every long flag of `cmd`.
fn names_and_flags(help_of: &[&str]) -> (Vec<String>, Vec<String>) {
    // Walk `--help` of each command: the same clap definitions the man page
    // and completions are generated from, read the way a user reads them.
    let out = trackrelay(&[help_of, &["--help"]].concat(), b"");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut subs = Vec::new();
    let mut flags = Vec::new();
    let mut in_commands = false;
    for line in text.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_commands = false;
        }
        // A command's name is indented by two; its wrapped help by more.
        let word = line.split_whitespace().next().unwrap_or("");
        let entry = line.starts_with("  ") && !line.starts_with("   ");
        if in_commands && entry && word != "help" {
            subs.push(word.to_owned());
        }
        for w in line.split_whitespace() {
            let w = w.trim_end_matches(',');
            if w.starts_with("--") && w.len() > 2 && !w.contains('[') {
                let flag = w.split(['=', '<']).next().unwrap().to_owned();
                if !flags.contains(&flag) {
                    flags.push(flag);
                }
            }
        }
    }
    (subs, flags)
}

#[test]
fn the_man_page_and_bash_completion_name_every_command_and_flag() {
    let man = trackrelay(&["man"], b"");
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    let bash = trackrelay(&["completions", "bash"], b"");
    assert!(bash.status.success());
    let bash = String::from_utf8(bash.stdout).unwrap();
    // roff escapes '-' as '\-'.
    let roff_text = page.replace("\\-", "-");

    let mut queue = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let (subs, flags) = names_and_flags(&args);
        let title = ["trackrelay"]
            .into_iter()
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        if !path.is_empty() {
            assert!(roff_text.contains(&title), "man page lacks {title:?}");
            let last = path.last().unwrap();
            assert!(bash.contains(last.as_str()), "bash completion lacks {last}");
        }
        for flag in flags {
            assert!(
                roff_text.contains(&flag),
                "man page lacks {flag} of {title}"
            );
            assert!(
                bash.contains(&flag),
                "bash completion lacks {flag} of {title}"
            );
            seen += 1;
        }
        for sub in subs {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
    }
    assert!(seen > 20, "only {seen} flags found");
    for word in [
        "serve",
        "update-ranges",
        "--log-format",
        "--config",
        "inspect",
        "retry",
    ] {
        assert!(roff_text.contains(word), "{word}");
    }
}

#[test]
fn man_renders_the_page_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("trackrelay.1");
    std::fs::write(&page, trackrelay(&["man"], b"").stdout).unwrap();
    // man-db's man (Debian), with all of groff's warnings on (-ww).
    let out = Command::new("man")
        .args(["--warnings=w", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("man-db's man is installed (.ci/packages)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Bold and underline come as overstrikes (c BS c): keep the last char.
    let mut stdout = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            stdout.pop();
        } else {
            stdout.push(c);
        }
    }
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "man warned: {stderr}");
    assert!(
        stdout.contains("COMMANDS") && stdout.contains("update-ranges"),
        "{stdout}"
    );
}

#[test]
fn bash_sources_the_completion_and_completes_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = trackrelay(&["completions", shell], b"");
        assert!(out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("check-config"),
            "{shell}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("trackrelay.bash");
    std::fs::write(&script, trackrelay(&["completions", "bash"], b"").stdout).unwrap();
    // Source it and ask it what follows (bash calls the function with the
    // command, the word being completed and the one before it) "trackrelay upd" and "trackrelay serve --".
    let probe = format!(
        "set -e; source {}; \
         COMP_WORDS=(trackrelay upd); COMP_CWORD=1; _trackrelay trackrelay upd trackrelay; echo \"1:${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(trackrelay serve --); COMP_CWORD=2; _trackrelay trackrelay -- serve; echo \"2:${{COMPREPLY[*]}}\"",
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1:update-ranges"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("2:") && l.contains("--config")),
        "{stdout}"
    );
}

#[test]
fn json_logs_are_one_object_a_line_with_the_maillog_fields() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = support::server::free_port();
    let tracking = format!("127.0.0.1:{}", support::server::free_port());
    let api = format!("127.0.0.1:{}", support::server::free_port());
    let text = support::server::config_text(dir.path(), &tracking, &api, "").replacen(
        "127.0.0.1:0",
        &format!("127.0.0.1:{smtp}"),
        1,
    ) + "\n[log]\nformat = \"json\"\n";
    let cfg = write_config(dir.path(), &text);
    let stderr_path = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(["serve", "--config", &cfg])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // Python's smtplib relays one message (retrying while the server starts).
    let out = support::smtplib_send(
        smtp,
        "b@example.net",
        r#"<p><a href="https://example.com/x">x</a></p>"#,
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        out.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(exit.success(), "{log}");

    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let relayed = lines
        .iter()
        .find(|l| l["target"] == "maillog" && l["fields"]["message"] == "relayed")
        .unwrap_or_else(|| panic!("no relayed line: {log}"));
    let f = &relayed["fields"];
    assert_eq!(f["route"], "default", "{relayed}");
    assert_eq!(f["from"], "a@example.org");
    assert_eq!(f["to"], "b@example.net");
    assert!(f["reply"].as_str().unwrap().starts_with("250"), "{relayed}");
    assert!(
        uuid::Uuid::parse_str(f["id"].as_str().unwrap()).is_ok(),
        "{relayed}"
    );
    assert_eq!(f["links"], 1, "{relayed}");
}
