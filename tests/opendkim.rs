//! trackrelay and OpenDKIM (Debian `opendkim`) as two milters of one
//! private Postfix (issue 20, docs/dkim.md): with OpenDKIM after trackrelay
//! the delivered copy is tracked and OpenDKIM's signature verifies with
//! dkimpy; in the opposite order OpenDKIM signs the body before the rewrite,
//! so trackrelay either leaves the message untracked (a foreign signature,
//! the default) or tracks it and drops the signature it broke
//! (`rewrite_dkim_signed`, no key of ours to sign again): unsigned mail.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use support::dkim::{TestKey, assert_tracked, dkimpy_verify, make_key, signature_domains};
use support::postfix::{Postfix, Sink, WAIT, free_addr, try_smtplib, wait_for};
use support::relay::{html_message, start};

/// An OpenDKIM filter signing example.com with `key` (selector s1).
struct OpenDkim {
    child: Child,
    addr: SocketAddr,
}

impl OpenDkim {
    fn start(dir: &Path, key: &TestKey) -> OpenDkim {
        let addr = free_addr();
        let conf = dir.join("opendkim.conf");
        let text = format!(
            "Mode s\nSocket inet:{port}@127.0.0.1\nDomain example.com\nSelector s1\n\
             KeyFile {key}\nCanonicalization relaxed/relaxed\nSyslog no\nBackground no\n\
             RequireSafeKeys false\nPidFile {pid}\n",
            port = addr.port(),
            key = key.pem.display(),
            pid = dir.join("opendkim.pid").display(),
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("opendkim")
            .arg("-f")
            .arg("-x")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("opendkim runs (.ci/packages installs it)");
        wait_for(
            "opendkim to listen",
            WAIT,
            || TcpStream::connect(addr).ok().map(drop),
            String::new,
        );
        OpenDkim { child, addr }
    }
}

impl Drop for OpenDkim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Routes: envelope senders at careful.example keep the default rule for
/// signed mail; everything else is rewritten even when signed.
const ROUTES: &str = "[[routes]]\nid = \"careful\"\ntrack_opens = true\ntrack_clicks = true\n\
                      [routes.match]\nsenders = [\"careful.example\"]\n\n\
                      [[routes]]\nid = \"default\"\ntrack_opens = true\ntrack_clicks = true\n\
                      rewrite_dkim_signed = true\n";

/// Sends one message per envelope sender through a Postfix whose milters
/// are `order` ("trackrelay", "opendkim"); the delivered copies, in order.
async fn through_postfix(order: [&str; 2], senders: &[&str]) -> (TestKey, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let key = make_key(dir.path(), "opendkim", "rsa");
    let opendkim = OpenDkim::start(dir.path(), &key);
    let relay = start(
        "",
        "",
        &format!("[milter]\nlisten = \"127.0.0.1:0\"\n{ROUTES}"),
    )
    .await;
    let trackrelay = relay.app.as_ref().unwrap().milter_addr().unwrap();
    let milters: Vec<String> = order
        .iter()
        .map(|m| match *m {
            "trackrelay" => format!("inet:{trackrelay}"),
            _ => format!("inet:{}", opendkim.addr),
        })
        .collect();
    let main_cf = format!(
        "smtpd_milters = {}\nmilter_default_action = tempfail\nmilter_protocol = 6\n",
        milters.join(", ")
    );
    let sink = Sink::start();
    let sink_addr = sink.addr;
    let postfix = tokio::task::spawn_blocking(move || {
        Postfix::start("od", free_addr(), sink_addr, &main_cf, &[])
    })
    .await
    .unwrap();
    let mut copies = Vec::new();
    for (n, sender) in senders.iter().enumerate() {
        let sent = try_smtplib(
            postfix.addr,
            sender,
            &["bob@example.net"],
            &html_message(""),
        );
        assert!(sent.is_ok(), "{sent:?}\n{}", postfix.maillog_tail(30));
        postfix.wait_for_log(&["status=sent"], n + 1);
        let dumps = sink.dumps();
        assert_eq!(dumps.len(), n + 1, "{}", postfix.maillog_tail(30));
        // The sink's dumps are named by a queue id, not in arrival order:
        // this message's copy is the one not seen before.
        let copy = dumps
            .iter()
            .map(|d| String::from_utf8(d.message.clone()).unwrap())
            .find(|c| !copies.contains(c))
            .expect("a new copy");
        copies.push(copy);
    }
    drop(postfix);
    relay.stop().await;
    (key, copies)
}

fn verdict(key: &TestKey, copy: &str) -> Vec<String> {
    dkimpy_verify(key, "example.com", "s1", copy.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opendkim_after_trackrelay_signs_the_tracked_copy() {
    let (key, copies) = through_postfix(["trackrelay", "opendkim"], &["alice@example.com"]).await;
    let copy = &copies[0];
    assert_tracked(copy);
    assert_eq!(signature_domains(copy), ["example.com"], "{copy}");
    assert_eq!(verdict(&key, copy), ["pass d=example.com s=s1"], "{copy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opendkim_before_trackrelay_means_untracked_or_unsigned() {
    let (key, copies) = through_postfix(
        ["opendkim", "trackrelay"],
        &["alice@careful.example", "alice@example.com"],
    )
    .await;
    // Default rule: OpenDKIM's signature is foreign to trackrelay, so the
    // message passes untracked and the signature holds.
    let careful = &copies[0];
    assert!(
        support::tokens_after(careful, support::BASE, "c").is_empty(),
        "{careful}"
    );
    assert_eq!(
        verdict(&key, careful),
        ["pass d=example.com s=s1"],
        "{careful}"
    );
    // rewrite_dkim_signed: tracked, and OpenDKIM's signature (which
    // trackrelay sees: Postfix hands each milter the earlier ones' edits)
    // is dropped as broken, with no key of ours to sign again: unsigned.
    let rewritten = &copies[1];
    assert_tracked(rewritten);
    assert_eq!(
        signature_domains(rewritten),
        Vec::<String>::new(),
        "{rewritten}"
    );
    assert_eq!(verdict(&key, rewritten), Vec::<String>::new());
}
