//! DKIM keys and verdicts for the tests, from tools independent of
//! trackrelay: keys made by the `openssl` command, signatures made and
//! checked by dkimpy (PyPI, tests/support/dkimpy.py), whose DNS lookup is
//! answered from the TXT record built here (no network).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

const DKIMPY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dkimpy.py");

/// A key pair made by openssl, and its DNS TXT record.
pub struct TestKey {
    pub pem: PathBuf,
    pub txt: String,
}

pub fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn make_key(dir: &Path, name: &str, algorithm: &str) -> TestKey {
    let pem = dir.join(format!("{name}.pem"));
    let path = pem.to_str().unwrap();
    match algorithm {
        "rsa" => openssl(&["genrsa", "-traditional", "-out", path, "2048"]),
        _ => openssl(&["genpkey", "-algorithm", "ed25519", "-out", path]),
    };
    let spki = openssl(&["pkey", "-in", path, "-pubout", "-outform", "DER"]);
    // RFC 8463: an Ed25519 p= is the bare 32-byte key, not the SPKI.
    let public = if algorithm == "rsa" {
        &spki[..]
    } else {
        &spki[spki.len() - 32..]
    };
    let p = base64::engine::general_purpose::STANDARD.encode(public);
    TestKey {
        pem,
        txt: format!("v=DKIM1; k={algorithm}; p={p}"),
    }
}

fn python(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("python3")
        .arg(DKIMPY)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dkimpy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn dkimpy_sign(key: &TestKey, domain: &str, message: &[u8]) -> Vec<u8> {
    python(&["sign", key.pem.to_str().unwrap(), domain, "s1"], message)
}

/// dkimpy's verdict on each signature, "pass d=… s=…" or "fail …".
pub fn dkimpy_verify(key: &TestKey, domain: &str, selector: &str, message: &[u8]) -> Vec<String> {
    let out = python(&["verify", domain, selector, &key.txt], message);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn key_config(key: &TestKey, domain: &str, selector: &str) -> String {
    format!(
        "[[dkim.keys]]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nprivate_key = \"{}\"\n",
        key.pem.display()
    )
}

/// The `d=` domains of the message's signatures, in header order.
pub fn signature_domains(message: &str) -> Vec<String> {
    trackrelay::dkim::header::signature_domains(message.as_bytes())
}

/// The copy has a tracking pixel and a tracked link.
pub fn assert_tracked(copy: &str) {
    assert!(
        !super::tokens_after(copy, super::BASE, "o").is_empty(),
        "no pixel: {copy}"
    );
    assert!(
        !super::tokens_after(copy, super::BASE, "c").is_empty(),
        "no link: {copy}"
    );
}
