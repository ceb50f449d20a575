//! DKIM through the relay (issue 20): a message signed by dkimpy (PyPI, an
//! independent implementation) with a key we hold goes through a real SMTP
//! session, is tracked, and the delivered copy verifies with dkimpy against
//! the public key (RSA-2048 and Ed25519); a foreign signature stays
//! untouched unless the route says `rewrite_dkim_signed`.
//!
//! Keys come from the `openssl` command; dkimpy's DNS lookup is answered
//! from the TXT record the test builds (no network).

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use support::dkim::{
    TestKey, assert_tracked, dkimpy_sign, dkimpy_verify, key_config, make_key, openssl,
    signature_domains,
};
use support::relay::{Client, html_message, start};

fn route(extra: &str) -> String {
    format!("[[routes]]\nid = \"default\"\ntrack_opens = true\ntrack_clicks = true\n{extra}\n")
}

/// Sends `message` through a relay with `config` (routes and keys); the
/// one delivered copy.
async fn relay(config: &str, message: &[u8]) -> String {
    let relay = start("", "", config).await;
    let mut client = Client::connect(relay.smtp).await;
    let (_, reply) = client
        .send("alice@example.com", &["bob@example.net"], message)
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let outbox = relay.outbox();
    relay.stop().await;
    assert_eq!(outbox.len(), 1);
    String::from_utf8(outbox[0].1.clone()).unwrap()
}

async fn resigned_by_us(algorithm: &str) {
    let dir = tempfile::tempdir().unwrap();
    let key = make_key(dir.path(), "example", algorithm);
    let signed = dkimpy_sign(&key, "example.com", &html_message(""));
    assert_eq!(
        dkimpy_verify(&key, "example.com", "s1", &signed),
        ["pass d=example.com s=s1"]
    );

    let copy = relay(
        &(route("") + &key_config(&key, "example.com", "s1")),
        &signed,
    )
    .await;

    assert_tracked(&copy);
    // dkimpy's signature (broken by the rewrite) is replaced by ours.
    assert_eq!(signature_domains(&copy), ["example.com"]);
    assert_eq!(
        dkimpy_verify(&key, "example.com", "s1", copy.as_bytes()),
        ["pass d=example.com s=s1"],
        "{copy}"
    );
}

#[tokio::test]
async fn rsa_signed_message_is_tracked_and_signed_again() {
    resigned_by_us("rsa").await;
}

#[tokio::test]
async fn ed25519_signed_message_is_tracked_and_signed_again() {
    resigned_by_us("ed25519").await;
}

#[tokio::test]
async fn foreign_signature_stays_untouched_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let ours = make_key(dir.path(), "ours", "ed25519");
    let foreign = make_key(dir.path(), "foreign", "rsa");
    let signed = dkimpy_sign(&foreign, "esp.example", &html_message(""));

    let copy = relay(
        &(route("") + &key_config(&ours, "example.com", "s1")),
        &signed,
    )
    .await;

    assert!(
        support::tokens_after(&copy, support::BASE, "c").is_empty(),
        "{copy}"
    );
    assert_eq!(signature_domains(&copy), ["esp.example"]);
    assert_eq!(
        dkimpy_verify(&foreign, "esp.example", "s1", copy.as_bytes()),
        ["pass d=esp.example s=s1"]
    );
}

#[tokio::test]
async fn rewrite_dkim_signed_tracks_and_replaces_a_foreign_signature() {
    let dir = tempfile::tempdir().unwrap();
    let ours = make_key(dir.path(), "ours", "ed25519");
    let foreign = make_key(dir.path(), "foreign", "rsa");
    let signed = dkimpy_sign(&foreign, "esp.example", &html_message(""));
    let config = route("rewrite_dkim_signed = true") + &key_config(&ours, "example.com", "k2");

    let copy = relay(&config, &signed).await;

    assert_tracked(&copy);
    // The broken foreign signature is dropped, ours verifies.
    assert_eq!(signature_domains(&copy), ["example.com"]);
    assert_eq!(
        dkimpy_verify(&ours, "example.com", "k2", copy.as_bytes()),
        ["pass d=example.com s=k2"]
    );
}

#[tokio::test]
async fn dkim_sign_route_signs_an_untracked_message() {
    let dir = tempfile::tempdir().unwrap();
    let key = make_key(dir.path(), "sub", "rsa");
    let config = "[[routes]]\nid = \"default\"\ndkim_sign = true\n".to_owned()
        + &key_config(&key, "example.com", "s1");
    let message = String::from_utf8(html_message(""))
        .unwrap()
        .replace("alice@example.com", "alice@news.example.com");

    let copy = relay(&config, message.as_bytes()).await;

    // Signed with the parent domain's key: d=example.com aligns with From.
    assert!(support::tokens_after(&copy, support::BASE, "c").is_empty());
    assert_eq!(
        dkimpy_verify(&key, "example.com", "s1", copy.as_bytes()),
        ["pass d=example.com s=s1"]
    );
}

/// No key for the From domain (docs/dkim.md): the Sender domain's key
/// signs, else the Return-Path's; the From domain's wins when held.
#[tokio::test]
async fn without_a_from_key_the_sender_then_the_return_path_domain_signs() {
    let dir = tempfile::tempdir().unwrap();
    let lists = make_key(dir.path(), "lists", "ed25519");
    let bounces = make_key(dir.path(), "bounces", "rsa");
    let config = route("")
        + &key_config(&lists, "lists.example.org", "s1")
        + &key_config(&bounces, "bounces.example.net", "s2");
    let both =
        html_message("Sender: lists@lists.example.org\r\nReturn-Path: <b@bounces.example.net>\r\n");
    let copy = relay(&config, &both).await;
    assert_tracked(&copy);
    assert_eq!(signature_domains(&copy), ["lists.example.org"]);
    assert_eq!(
        dkimpy_verify(&lists, "lists.example.org", "s1", copy.as_bytes()),
        ["pass d=lists.example.org s=s1"]
    );

    let copy = relay(
        &config,
        &html_message("Return-Path: <b@bounces.example.net>\r\n"),
    )
    .await;
    assert_eq!(
        dkimpy_verify(&bounces, "bounces.example.net", "s2", copy.as_bytes()),
        ["pass d=bounces.example.net s=s2"]
    );

    let from_key = make_key(dir.path(), "from", "ed25519");
    let config = config + &key_config(&from_key, "example.com", "s3");
    let copy = relay(&config, &both).await;
    assert_eq!(signature_domains(&copy), ["example.com"]);
}

#[test]
fn bad_keys_are_named_by_check_config_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let weak = dir.path().join("weak.pem");
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        weak.to_str().unwrap(),
        "1024",
    ]);
    let ec = dir.path().join("ec.pem");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        ec.to_str().unwrap(),
    ]);
    let missing = dir.path().join("missing.pem");
    let mut keys = String::new();
    for (domain, path) in [
        ("a.example", &weak),
        ("b.example", &ec),
        ("c.example", &missing),
    ] {
        keys += &format!(
            "[[dkim.keys]]\ndomain = \"{domain}\"\nselector = \"s\"\nprivate_key = \"{}\"\n",
            path.display()
        );
    }
    let text = support::relay::config_text(dir.path(), "", "url = \"dir:/tmp/x\"", &keys);
    let problems = trackrelay::config::Config::parse(&text).unwrap_err();
    let shown: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[0].starts_with("dkim.keys[0].private_key: ") && shown[0].contains("weak.pem"));
    assert!(shown[0].contains("at least 2048 bits"), "{shown:?}");
    assert!(
        shown[1].starts_with("dkim.keys[1].private_key: ") && shown[1].contains("wrong key type")
    );
    assert!(shown[2].contains("missing.pem: cannot read"), "{shown:?}");
}

fn trackrelay(args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// keygen's key and TXT record: the relay signs with the key, and dkimpy
/// accepts the record when verifying; `dkim verify` agrees, and says fail
/// once the body is changed.
async fn keygen_round_trip(algorithm: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("key.pem");
    let out = trackrelay(
        &[
            "dkim",
            "keygen",
            "--domain",
            "example.com",
            "--selector",
            "k1",
        ]
        .into_iter()
        .chain(["--algorithm", algorithm, "--out", pem.to_str().unwrap()])
        .collect::<Vec<_>>(),
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let prefix = "k1._domainkey.example.com IN TXT \"";
    assert!(line.starts_with(prefix), "{line}");
    let txt = line
        .trim()
        .trim_start_matches(prefix)
        .trim_end_matches('"')
        .to_owned();
    assert!(
        txt.starts_with(&format!("v=DKIM1; k={algorithm}; p=")),
        "{txt}"
    );
    let mode = std::fs::metadata(&pem).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = TestKey { pem, txt };

    let copy = relay(
        &(route("") + &key_config(&key, "example.com", "k1")),
        &html_message(""),
    )
    .await;

    assert_tracked(&copy);
    assert_eq!(
        dkimpy_verify(&key, "example.com", "k1", copy.as_bytes()),
        ["pass d=example.com s=k1"]
    );
    let record = dir.path().join("record.txt");
    std::fs::write(&record, &line).unwrap();
    let verify = ["dkim", "verify", "--public-key", record.to_str().unwrap()];
    let verify: Vec<&str> = verify
        .into_iter()
        .chain(["--domain", "example.com", "--selector", "k1"])
        .collect();
    let ok = trackrelay(&verify, copy.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "d=example.com s=k1: pass\n"
    );
    assert!(ok.status.success());
    let tampered = copy.replace("<p>Hi</p>", "<p>Hi!</p>");
    let bad = trackrelay(&verify, tampered.as_bytes());
    assert!(
        String::from_utf8_lossy(&bad.stdout).starts_with("d=example.com s=k1: neutral"),
        "{:?}",
        bad
    );
    assert!(!bad.status.success());
}

#[tokio::test]
async fn keygen_rsa_key_signs_and_its_record_verifies() {
    keygen_round_trip("rsa").await;
}

#[tokio::test]
async fn keygen_ed25519_key_signs_and_its_record_verifies() {
    keygen_round_trip("ed25519").await;
}

#[test]
fn verify_without_a_key_source_says_so() {
    let out = trackrelay(&["dkim", "verify"], &html_message(""));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no key source: give --public-key FILE --domain D --selector S, or --dns"),
        "{err}"
    );
}

#[test]
fn verify_names_a_signature_it_has_no_key_for() {
    let dir = tempfile::tempdir().unwrap();
    let key = make_key(dir.path(), "k", "ed25519");
    let signed = dkimpy_sign(&key, "esp.example", &html_message(""));
    let record = dir.path().join("record.txt");
    std::fs::write(&record, &key.txt).unwrap();
    let args = [
        "dkim",
        "verify",
        "--public-key",
        record.to_str().unwrap(),
        "--domain",
        "other.example",
        "--selector",
        "s1",
    ];
    let out = trackrelay(&args, &signed);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "d=esp.example s=s1: permerror (no key given for this selector and domain)\n"
    );
    assert!(!out.status.success());
}

/// Milter mode in a real Postfix (as tests/milter.rs): a message signed
/// with our key gets its signature replaced in place, an unsigned one gets
/// ours added; both arrive tracked, and dkimpy verifies both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_in_postfix_signs_the_rewritten_messages() {
    use support::postfix::{Postfix, Sink, free_addr, try_smtplib};
    let dir = tempfile::tempdir().unwrap();
    let key = make_key(dir.path(), "milter", "rsa");
    let sink = Sink::start();
    let config = format!("[milter]\nlisten = \"127.0.0.1:0\"\n{}", route(""))
        + &key_config(&key, "example.com", "s1");
    let relay = start("", "", &config).await;
    let at = relay.app.as_ref().unwrap().milter_addr().unwrap();
    let main_cf = format!(
        "smtpd_milters = inet:{at}\nmilter_default_action = tempfail\nmilter_protocol = 6\n"
    );
    let sink_addr = sink.addr;
    let postfix = tokio::task::spawn_blocking(move || {
        Postfix::start("pf", free_addr(), sink_addr, &main_cf, &[])
    })
    .await
    .unwrap();

    let signed = dkimpy_sign(&key, "example.com", &html_message(""));
    for message in [signed, html_message("")] {
        let sent = try_smtplib(
            postfix.addr,
            "alice@example.com",
            &["bob@example.net"],
            &message,
        );
        assert!(sent.is_ok(), "{sent:?}\n{}", postfix.maillog_tail(30));
    }
    postfix.wait_for_log(&["status=sent"], 2);
    let dumps = sink.dumps();
    assert_eq!(dumps.len(), 2, "{}", postfix.maillog_tail(30));
    for dump in dumps {
        let copy = String::from_utf8(dump.message).unwrap();
        assert_tracked(&copy);
        assert_eq!(signature_domains(&copy), ["example.com"], "{copy}");
        assert_eq!(
            dkimpy_verify(&key, "example.com", "s1", copy.as_bytes()),
            ["pass d=example.com s=s1"],
            "{copy}"
        );
    }
    drop(postfix);
    relay.stop().await;
    drop(sink);
}
