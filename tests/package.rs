//! What is shipped: the third-party notices cover Cargo.lock, and the
//! Debian package installs, runs as its own user, and leaves the right
//! things behind on remove and purge.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// (name, version) of every `[[package]]` of Cargo.lock but ours.
fn locked_crates() -> Vec<(String, String)> {
    let lock = std::fs::read_to_string(Path::new(ROOT).join("Cargo.lock")).unwrap();
    let table: toml::Table = lock.parse().unwrap();
    table["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(name, _)| name != "trackrelay")
        .collect()
}

#[test]
fn the_notices_name_every_crate_of_the_lock_file() {
    let notices = std::fs::read_to_string(Path::new(ROOT).join("THIRD-PARTY-NOTICES.md")).unwrap();
    let crates = locked_crates();
    assert!(crates.len() > 100, "{}", crates.len());
    let missing: Vec<String> = crates
        .iter()
        .filter(|(name, version)| !notices.contains(&format!("| `{name}` | {version} |")))
        .map(|(n, v)| format!("{n} {v}"))
        .collect();
    assert!(
        missing.is_empty(),
        "THIRD-PARTY-NOTICES.md lacks {missing:?}: run packaging/notices.sh"
    );
    // MPL-2.0 crates (file-level copyleft) say where their source is.
    for name in ["cssparser", "selectors", "dtoa-short"] {
        let (_, version) = crates.iter().find(|(n, _)| n == name).unwrap();
        let line = format!(
            "- `{name}` {version} (MPL-2.0): https://crates.io/api/v1/crates/{name}/{version}/download"
        );
        assert!(notices.contains(&line), "{line}");
    }
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Build, install, verify, run as `trackrelay`, remove, purge.
#[test]
fn the_debian_package_installs_runs_and_purges() {
    if !is_root() {
        eprintln!("SKIPPED the_debian_package_installs_runs_and_purges: needs root (dpkg -i)");
        return;
    }
    let built = run(&format!("{ROOT}/packaging/build-deb.sh"), &[]);
    let stdout = String::from_utf8(built.stdout).unwrap();
    let deb = Path::new(ROOT).join(stdout.lines().last().unwrap());
    let contents =
        String::from_utf8(run("dpkg-deb", &["--contents", deb.to_str().unwrap()]).stdout).unwrap();
    for path in [
        "./usr/bin/trackrelay",
        "./usr/lib/systemd/system/trackrelay.service",
        "./etc/trackrelay/trackrelay.toml",
        "./usr/share/man/man1/trackrelay.1.gz",
        "./usr/share/bash-completion/completions/trackrelay",
        "./usr/share/zsh/vendor-completions/_trackrelay",
        "./usr/share/fish/vendor_completions.d/trackrelay.fish",
        "./usr/share/doc/trackrelay/LICENSE-MIT",
        "./usr/share/doc/trackrelay/LICENSE-APACHE",
        "./usr/share/doc/trackrelay/THIRD-PARTY-NOTICES.md",
        "./usr/share/doc/trackrelay/copyright",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package:\n{contents}"
        );
    }

    let _ = Command::new("dpkg").args(["-P", "trackrelay"]).output();
    run("dpkg", &["-i", deb.to_str().unwrap()]);
    installed_state();
    run(
        "systemd-analyze",
        &["verify", "/usr/lib/systemd/system/trackrelay.service"],
    );
    relay_and_pixel_as_the_user();

    run("dpkg", &["-r", "trackrelay"]);
    assert!(!Path::new("/usr/bin/trackrelay").exists());
    assert!(!Path::new("/usr/lib/systemd/system/trackrelay.service").exists());
    assert!(
        Path::new("/etc/trackrelay/trackrelay.toml").exists(),
        "remove took the config"
    );
    assert!(
        Path::new("/var/lib/trackrelay/trackrelay.db").exists(),
        "remove took the data"
    );
    assert!(
        Command::new("getent")
            .args(["passwd", "trackrelay"])
            .status()
            .unwrap()
            .success()
    );

    run("dpkg", &["-P", "trackrelay"]);
    assert!(
        !Path::new("/etc/trackrelay").exists(),
        "purge left /etc/trackrelay"
    );
    assert!(
        !Path::new("/var/lib/trackrelay").exists(),
        "purge left the data"
    );
    assert!(
        !Command::new("getent")
            .args(["passwd", "trackrelay"])
            .status()
            .unwrap()
            .success()
    );
}

/// The user, the directories and the conffile after `dpkg -i`.
fn installed_state() {
    use std::os::unix::fs::MetadataExt;
    let passwd = String::from_utf8(run("getent", &["passwd", "trackrelay"]).stdout).unwrap();
    let uid: u32 = passwd.split(':').nth(2).unwrap().parse().unwrap();
    assert!(uid < 1000, "not a system user: {passwd}");
    let data = std::fs::metadata("/var/lib/trackrelay").unwrap();
    assert_eq!(
        data.uid(),
        uid,
        "/var/lib/trackrelay not owned by trackrelay"
    );
    let config = std::fs::read_to_string("/etc/trackrelay/trackrelay.toml").unwrap();
    for line in config.lines() {
        let line = line.trim();
        assert!(
            !(line.starts_with("secret =") || line.starts_with("token =")),
            "a secret in the packaged config: {line}"
        );
    }
    assert!(
        config.contains("\"/var/lib/trackrelay/trackrelay.db\""),
        "{config}"
    );
    let file = run("file", &["-L", "/usr/bin/trackrelay"]);
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(
        file.contains("stripped") && !file.contains("not stripped"),
        "{file}"
    );
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/trackrelay.service").unwrap();
    assert!(
        unit.contains(
            "ExecStart=/usr/bin/trackrelay serve --config /etc/trackrelay/trackrelay.toml"
        )
    );
    assert!(
        unit.contains("User=trackrelay") && !unit.contains("DynamicUser"),
        "{unit}"
    );
    let man = run("man", &["--warnings=w", "trackrelay"]);
    assert!(String::from_utf8_lossy(&man.stdout).contains("update"));
}

/// The installed binary as `trackrelay`, with a config under /etc: one
/// message relayed to a dir: upstream, its pixel served.
fn relay_and_pixel_as_the_user() {
    let data = Path::new("/var/lib/trackrelay");
    let smtp = support::server::free_port();
    let tracking = support::server::free_port();
    let api = support::server::free_port();
    let text = support::server::config_text(
        data,
        &format!("127.0.0.1:{tracking}"),
        &format!("127.0.0.1:{api}"),
        "",
    )
    .replacen("127.0.0.1:0", &format!("127.0.0.1:{smtp}"), 1);
    let config = "/etc/trackrelay/test-relay.toml";
    std::fs::write(config, text).unwrap();
    run("chgrp", &["trackrelay", config]);
    run("chmod", &["0640", config]);
    let mut child = Command::new("runuser")
        .args([
            "-u",
            "trackrelay",
            "--",
            "/usr/bin/trackrelay",
            "serve",
            "--config",
            config,
        ])
        .current_dir(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sent = support::smtplib_send(
        smtp,
        "bob@example.net",
        r#"<html><body><p>Hello</p></body></html>"#,
    );
    let outbox = data.join("outbox");
    let deadline = Instant::now() + Duration::from_secs(10);
    let eml = loop {
        let found = std::fs::read_dir(&outbox)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .find(|e| e.path().extension().is_some_and(|x| x == "eml"));
        if let Some(e) = found {
            break e.path();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "nothing relayed: {}\n{}",
                String::from_utf8_lossy(&sent.stderr),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&eml).unwrap().uid();
    let passwd = String::from_utf8(run("getent", &["passwd", "trackrelay"]).stdout).unwrap();
    assert_eq!(owner.to_string(), passwd.split(':').nth(2).unwrap());
    let message = std::fs::read_to_string(&eml).unwrap();
    let token = support::tracking_tokens(&message, "o")[0].to_owned();
    let mut http = std::net::TcpStream::connect(("127.0.0.1", tracking)).unwrap();
    write!(
        http,
        "GET /o/{token} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        support::server::HOST
    )
    .unwrap();
    let mut answer = Vec::new();
    http.read_to_end(&mut answer).unwrap();
    let head = String::from_utf8_lossy(&answer);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{log}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: image/gif"),
        "{head}"
    );
    assert!(log.contains("relayed"), "{log}");
    std::fs::remove_file(config).unwrap();
}
