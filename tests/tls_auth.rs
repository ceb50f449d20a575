//! STARTTLS and AUTH with a real client, swaks (Debian package; `.ci/packages`
//! installs it): only an authenticated client may relay from outside the
//! allowed networks, and AUTH needs TLS unless loopback plain text is allowed.

mod support;

use std::process::Command;

use support::relay::{TRACKED, start};

fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(args)
        .output()
        .expect("swaks is not installed: run .ci/packages (apt-get install swaks)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// smtp config: TLS files, one user, no relaying by network, no plain AUTH.
fn smtp_section(dir: &std::path::Path) -> String {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.key_pair.serialize_pem()).unwrap();
    format!(
        "allowed_networks = [\"10.0.0.0/8\"]\nauth_plaintext_on_loopback = false\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n[[smtp.users]]\nname = \"app\"\npassword_hash = \"{}\"\n",
        cert_path.display(),
        key_path.display(),
        hash("s3cret pass")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_then_auth_plain_and_login_may_relay() {
    let certs = tempfile::tempdir().unwrap();
    let relay = start(&smtp_section(certs.path()), "", TRACKED).await;
    let server = relay.smtp.to_string();
    for mechanism in ["PLAIN", "LOGIN"] {
        let (ok, log) = tokio::task::spawn_blocking({
            let server = server.clone();
            move || {
                swaks(&[
                    "--server",
                    &server,
                    "--tls",
                    "--auth",
                    mechanism,
                    "--auth-user",
                    "app",
                    "--auth-password",
                    "s3cret pass",
                    "--from",
                    "alice@example.com",
                    "--to",
                    "bob@example.com",
                    "--header",
                    "Content-Type: text/html",
                    "--body",
                    "<a href=\"https://example.com/x\">x</a>",
                ])
            }
        })
        .await
        .unwrap();
        assert!(ok, "{mechanism}: {log}");
        assert!(log.contains("235 2.7.0 Authentication successful"), "{log}");
        assert!(log.contains("TLS started"), "{log}");
    }
    let copies = relay.outbox();
    assert_eq!(copies.len(), 2);
    let text = String::from_utf8_lossy(&copies[0].1);
    assert!(
        text.contains("with ESMTPSA"),
        "authenticated over TLS: {text}"
    );
    assert!(text.contains("https://t.example.com/c/"), "tracked: {text}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_auth_without_tls_wrong_password_refused_strangers_refused() {
    let certs = tempfile::tempdir().unwrap();
    let relay = start(&smtp_section(certs.path()), "", TRACKED).await;
    let server = relay.smtp.to_string();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            swaks(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let base = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "--server",
            &server,
            "--from",
            "a@example.com",
            "--to",
            "b@example.org",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // AUTH over plain text: not offered, and refused with 538 if tried.
    let mut c = support::relay::Client::connect(relay.smtp).await;
    let ehlo = c.cmd("EHLO plain.test").await;
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN AGFwcABzM2NyZXQgcGFzcw==").await,
        "538 5.7.11 Encryption required for requested authentication mechanism"
    );
    drop(c);
    // Wrong password over TLS: 535.
    let (ok, log) = run(base(&[
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "app",
        "--auth-password",
        "wrong",
    ]))
    .await
    .unwrap();
    assert!(!ok);
    assert!(log.contains("535 5.7.8"), "{log}");
    // No AUTH at all from outside the allowed networks: 5.7.1 at RCPT.
    let (ok, log) = run(base(&["--tls"])).await.unwrap();
    assert!(!ok);
    assert!(log.contains("550 5.7.1 Relaying denied"), "{log}");
    assert!(relay.outbox().is_empty());
    relay.stop().await;
}

/// `[smtp]` with a self-signed certificate for STARTTLS and nothing else:
/// loopback clients may relay.
fn starttls_only(dir: &std::path::Path) -> String {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.key_pair.serialize_pem()).unwrap();
    format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert_path.display(),
        key_path.display()
    )
}

/// The upstream client speaks STARTTLS (the `tls` module's client config):
/// to a trackrelay whose certificate is self-signed, with `tls_verify =
/// false` the copy goes over TLS; with verification on, the certificate is
/// refused, the sender gets a 4xx and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_starttls_verifies_the_certificate_unless_told_not_to() {
    use support::relay::{Client, html_message};
    let certs = tempfile::tempdir().unwrap();
    let upstream = start(&starttls_only(certs.path()), "", "").await;
    let url = format!(
        "url = \"smtp://{}\"\nstarttls = \"required\"\n",
        upstream.smtp
    );

    let trusting = start("", &format!("{url}tls_verify = false\n"), "").await;
    let mut c = Client::connect(trusting.smtp).await;
    let (rcpts, reply) = c
        .send("alice@example.com", &["bob@example.com"], &html_message(""))
        .await;
    assert!(
        rcpts[0].starts_with("250") && reply.starts_with("250"),
        "{rcpts:?} {reply}"
    );
    let copies = upstream.outbox();
    assert_eq!(copies.len(), 1);
    let text = String::from_utf8_lossy(&copies[0].1);
    assert!(text.contains("with ESMTPS"), "relayed over TLS: {text}");
    trusting.stop().await;

    let verifying = start("", &url, "").await;
    let mut c = Client::connect(verifying.smtp).await;
    c.cmd("EHLO client.test").await;
    let mut replies = vec![c.cmd("MAIL FROM:<alice@example.com>").await];
    if replies[0].starts_with("250") {
        replies.push(c.cmd("RCPT TO:<bob@example.com>").await);
    }
    if replies.iter().all(|r| r.starts_with("250")) {
        replies.push(c.data(&html_message("")).await);
    }
    let last = replies.last().unwrap();
    assert!(
        last.starts_with('4'),
        "an unverified upstream is a 4xx: {replies:?}"
    );
    assert_eq!(
        upstream.outbox().len(),
        1,
        "nothing more reached the upstream"
    );
    verifying.stop().await;
    upstream.stop().await;
}
