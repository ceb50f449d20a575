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
use support::relay::{Client, config_text, html_message, logged_addr};
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
                tracking = logged_addr(&line);
            } else if line.contains("smtp listening") {
                smtp = logged_addr(&line);
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

    /// Waits until a log line contains `needle`.
    async fn wait_for(&self, needle: &str) {
        let start = std::time::Instant::now();
        while !self.log().iter().any(|l| l.contains(needle)) {
            assert!(start.elapsed() < HANG, "no {needle:?} in {:#?}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

/// A message sent through a relay whose upstream fails as `script` says:
/// the client hears 451 naming the upstream, and nothing was delivered.
async fn message_fault(script: Script, what: &str) {
    let fake = FakeUpstream::start(script).await;
    let served = Served::start(&smtp_upstream(fake.addr), "");
    let reply = send_reply(&served).await;
    assert_names_upstream(&reply, fake.addr, what);
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn an_upstream_that_never_answers_the_message_gets_a_451() {
    let script = Script {
        stall_on_data: Some(0),
        ..Script::default()
    };
    message_fault(script, "no reply to the message").await;
}

#[tokio::test]
async fn an_upstream_that_drops_the_connection_mid_data_gets_a_451() {
    let script = Script {
        drop_mid_data: Some(10),
        ..Script::default()
    };
    message_fault(script, "dropped mid-DATA").await;
}

/// Reads from `s` until `needle` shows up (or the peer closes); all read.
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = String::new();
    let mut buf = vec![0u8; 4096];
    while !got.contains(needle) {
        match tokio::time::timeout(HANG, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => panic!("no {needle:?} within {HANG:?}; got {got:?}"),
        }
    }
    got
}

#[tokio::test]
async fn sigterm_cuts_a_session_stuck_on_a_silent_upstream_at_the_deadline() {
    use support::server::{HOST, Http, next_week, stored_message_ids, token};
    // The upstream never greets, and the relay would wait 10 minutes for it.
    let (tx, mut connected) = tokio::sync::mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
            let _ = tx.send(());
        }
    });
    let upstream =
        format!("url = \"smtp://{silent}\"\nstarttls = \"off\"\ntimeout_seconds = 600\n");
    let mut served = Served::start(&upstream, "[shutdown]\ndeadline_seconds = 1\n");

    // A hit queued for storage must still be stored at exit.
    let (hit_id, open) = token(trackrelay::token::Kind::Open, None, next_week());
    let pixel = Http::default()
        .send("GET", served.tracking, HOST, &format!("/o/{open}"), &[])
        .await
        .unwrap();
    assert_eq!(pixel.status, 200);

    let mut s = TcpStream::connect(served.smtp).await.unwrap();
    read_until(&mut s, "220 ").await;
    s.write_all(b"EHLO client.test\r\n").await.unwrap();
    read_until(&mut s, "250 ").await;
    s.write_all(b"MAIL FROM:<a@example.com>\r\n").await.unwrap();
    // The relay is now waiting for the upstream's greeting.
    tokio::time::timeout(HANG, connected.recv()).await.unwrap();

    served.terminate();
    let said = read_until(&mut s, "\r\n").await;
    assert!(said.starts_with("421 4.3.2"), "told to come back: {said:?}");
    let status = served.exit_status().await;
    assert!(
        status.success(),
        "exit status {status}: {:#?}",
        served.log()
    );
    let log = served.log();
    let last = log.last().unwrap();
    assert!(
        last.contains("stopped") && last.contains("sessions_cut=1"),
        "the last line counts the sessions cut: {last}"
    );
    let db = served.dir.path().join("trackrelay.db");
    assert!(
        stored_message_ids(&db).contains(&hit_id),
        "the hit was flushed"
    );
}

/// One milter packet: length (command byte included), command, data.
fn packet(command: u8, data: &[u8]) -> Vec<u8> {
    let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(command);
    p.extend_from_slice(data);
    p
}

/// SMFIC_OPTNEG as Postfix sends it, asking for a reply to every event.
fn negotiate() -> Vec<u8> {
    let mut data = Vec::new();
    for n in [6u32, 0x1ff, 0] {
        data.extend_from_slice(&n.to_be_bytes());
    }
    packet(b'O', &data)
}

/// Connects to the milter from `source` (a loopback address), negotiates,
/// and returns the stream when the milter answered; `None` when it closed
/// the connection instead.
async fn milter_client(milter: SocketAddr, source: &str) -> Option<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(milter).await.unwrap();
    let _ = s.write_all(&negotiate()).await;
    let mut head = [0u8; 5];
    match tokio::time::timeout(HANG, s.read_exact(&mut head)).await {
        Ok(Ok(_)) => {
            assert_eq!(head[4], b'O', "the negotiation reply");
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let mut rest = vec![0u8; len - 1];
            s.read_exact(&mut rest).await.unwrap();
            Some(s)
        }
        Ok(Err(_)) => None,
        Err(_) => panic!("the milter neither answered nor closed"),
    }
}

/// Whether the peer closed `s` (reads until EOF or a reset; a hang fails).
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(HANG, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The binary with a milter on a free port: at most two connections,
/// packets within 1 s, only 127.0.0.1 allowed.
async fn served_with_milter() -> (Served, SocketAddr) {
    let port = support::server::free_port();
    let milter: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let extra = format!(
        "[milter]\nlisten = \"{milter}\"\nallowed_networks = [\"127.0.0.1/32\"]\n\
         max_connections = 2\npacket_timeout_seconds = 1\n"
    );
    let served = Served::start("", &extra);
    served.wait_for("milter listening").await;
    (served, milter)
}

#[tokio::test]
async fn the_milter_serves_only_allowed_networks_up_to_its_connection_cap() {
    let (served, milter) = served_with_milter().await;
    // 127.0.0.2 is loopback too, but not in milter.allowed_networks.
    assert!(milter_client(milter, "127.0.0.2").await.is_none());
    // The refusal is logged as the connection closes: wait for the line.
    served.wait_for("not in milter.allowed_networks").await;
    assert!(
        served
            .log()
            .iter()
            .any(|l| l.contains("not in milter.allowed_networks") && l.contains("127.0.0.2"))
    );

    let first = milter_client(milter, "127.0.0.1").await.expect("first");
    let _second = milter_client(milter, "127.0.0.1").await.expect("second");
    assert!(
        milter_client(milter, "127.0.0.1").await.is_none(),
        "a third is over max_connections = 2"
    );
    served.wait_for("milter.max_connections reached").await;
    // A slot comes free when a connection ends.
    drop(first);
    let mut third = None;
    for _ in 0..100 {
        third = milter_client(milter, "127.0.0.1").await;
        if third.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(third.is_some(), "served once a slot is free");
}

#[tokio::test]
async fn the_milter_drops_unfinished_and_oversized_packets() {
    let (served, milter) = served_with_milter().await;
    // Half a 1000-byte packet, then nothing: closed after the packet timeout.
    let mut s = milter_client(milter, "127.0.0.1").await.unwrap();
    let mut half = packet(b'H', &[b'x'; 999]);
    half.truncate(500);
    s.write_all(&half).await.unwrap();
    assert!(closed(&mut s).await, "an unfinished packet is not kept");
    // The line is written as the connection closes: wait for it.
    served.wait_for("packet not whole in time").await;

    // A length over the codec's bound (1 MiB): closed on the first bytes.
    let mut s = milter_client(milter, "127.0.0.1").await.unwrap();
    s.write_all(&(2u32 << 20).to_be_bytes()).await.unwrap();
    s.write_all(b"H").await.unwrap();
    assert!(
        closed(&mut s).await,
        "an oversized packet is refused at once"
    );
}

#[tokio::test]
async fn the_milter_closes_a_connection_that_never_reads_its_replies() {
    let (served, milter) = served_with_milter().await;
    // A small receive buffer so the replies back up soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(milter).await.unwrap();
    s.write_all(&negotiate()).await.unwrap();
    // HELO packets, each answered with SMFIR_CONTINUE, never read.
    let helo = packet(b'H', b"x\0");
    let chunk: Vec<u8> = helo
        .iter()
        .copied()
        .cycle()
        .take(helo.len() * 9000)
        .collect();
    let mut closed_by_milter = false;
    for _ in 0..5000 {
        match tokio::time::timeout(HANG, s.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                closed_by_milter = true;
                break;
            }
            Err(_) => panic!("the milter neither read on nor closed the connection"),
        }
    }
    assert!(closed_by_milter, "the milter closed the connection");
    served.wait_for("replies not read in time").await;
}

/// An HTML message of about `links` × 40 bytes, one link a line.
fn many_links(links: usize) -> Vec<u8> {
    let mut m = String::from(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n",
    );
    for i in 0..links {
        m.push_str(&format!(
            "<a href=\"https://example.com/p/{i}\">{i}</a>\r\n"
        ));
    }
    m.push_str("</body></html>\r\n");
    m.into_bytes()
}

#[tokio::test]
async fn big_rewrites_run_on_the_rewrite_pool_while_hits_are_answered() {
    use support::server::{HOST, Http, next_week, token};
    let served = Served::start("", support::relay::TRACKED);
    let message = Arc::new(many_links(20_000));
    let sends: Vec<_> = (0..2)
        .map(|_| {
            let (smtp, message) = (served.smtp, message.clone());
            tokio::spawn(async move {
                let mut c = Client::connect(smtp).await;
                c.send("a@example.com", &["b@example.com"], &message)
                    .await
                    .1
            })
        })
        .collect();
    // Pixel and /healthz requests until both messages are through.
    let http = Http::default();
    let (_, open) = token(trackrelay::token::Kind::Open, None, next_week());
    let mut answered = 0;
    while !sends.iter().all(|s| s.is_finished()) {
        for path in ["/healthz".to_string(), format!("/o/{open}")] {
            let r = tokio::time::timeout(HANG, http.send("GET", served.tracking, HOST, &path, &[]))
                .await
                .expect("a hit got no answer during the rewrites")
                .unwrap();
            assert_eq!(r.status, 200, "{path}");
            answered += 1;
        }
    }
    for send in sends {
        let reply = send.await.unwrap();
        assert!(reply.starts_with("250"), "{reply}");
    }
    assert!(answered > 0);
    let rewrites: Vec<String> = served
        .log()
        .into_iter()
        .filter(|l| l.contains("copy rewritten") && l.contains("links=20000"))
        .collect();
    assert_eq!(rewrites.len(), 2, "{:#?}", served.log());
    assert!(
        rewrites.iter().all(|l| l.contains("thread=rewrite-")),
        "rewritten on the pool, not an async worker: {rewrites:#?}"
    );
}
