//! The SMTP listener under hostile clients (issue 21, items 1, 2, 4, 5
//! and 6): password guessing and its cost, clients that trickle or never
//! read, parameters smuggled in a quoted local part, over-long lines and
//! overflowing SIZE, control characters bound for the Received field.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::smtp_peer::{PATIENCE, Raw, Relay, hash};
use crate::support::fake_upstream::{FakeUpstream, Script};

/// AUTH in clear text from loopback (the config allows it), relaying
/// only after AUTH; `extra` adds keys.
fn auth_config(extra: &str) -> String {
    format!(
        "allowed_networks = [\"10.0.0.0/8\"]\nauth_plaintext_on_loopback = true\n{extra}\n\
         [[smtp.users]]\nname = \"app\"\npassword_hash = \"{}\"\n",
        hash("s3cret pass")
    )
}

fn plain(user: &str, password: &str) -> String {
    format!(
        "AUTH PLAIN {}",
        STANDARD.encode(format!("\0{user}\0{password}"))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_failures_close_the_connection_and_log_the_client() {
    let relay = Relay::start(&auth_config(""), "").await;
    let (mut c, _) = Raw::connect(relay.smtp).await;
    assert!(c.cmd("EHLO guesser.test").await.starts_with("250"));
    assert_eq!(
        c.cmd(&plain("app", "guess1")).await,
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(
        c.cmd(&plain("nobody", "guess2")).await,
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(
        c.cmd(&plain("app", "guess3")).await,
        "421 4.7.0 Too many failed authentications, closing connection"
    );
    assert_eq!(c.rest().await, "", "closed after the third failure");
    let log = relay.log();
    // The fail2ban line (docs/security.md), for known and unknown names.
    assert!(
        log.contains("smtp auth failed client=127.0.0.1 user=\"app\""),
        "{log}"
    );
    assert!(
        log.contains("smtp auth failed client=127.0.0.1 user=\"nobody\""),
        "{log}"
    );
    assert!(!log.contains("guess"), "no password in the log: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auth_flood_keeps_memory_flat_and_the_right_password_still_works() {
    // No per-address delay here, so that the flood really runs Argon2 as
    // fast as it is let: what is bounded is how many run at once.
    let relay = Relay::start(&auth_config("auth_delay_max_seconds = 0"), "").await;
    let smtp = relay.smtp;
    let flood: Vec<_> = (0..24)
        .map(|i| {
            tokio::spawn(async move {
                for round in 0..2 {
                    let (mut c, _) = Raw::connect(smtp).await;
                    c.cmd("EHLO flood.test").await;
                    for n in 0..3 {
                        let reply = c.cmd(&plain("app", &format!("guess{i}-{round}-{n}"))).await;
                        assert!(
                            reply.starts_with("535")
                                || reply.starts_with("421")
                                || reply.starts_with("454"),
                            "{reply}"
                        );
                    }
                }
            })
        })
        .collect();
    for task in flood {
        task.await.unwrap();
    }
    let peak = relay.peak_rss_mib();
    assert!(
        peak < 150,
        "peak RSS {peak} MiB under 24 concurrent AUTH loops"
    );
    let (mut c, _) = Raw::connect(smtp).await;
    c.cmd("EHLO app.test").await;
    assert_eq!(
        c.cmd(&plain("app", "s3cret pass")).await,
        "235 2.7.0 Authentication successful"
    );
}

/// Connects (once a slot is free), sends `bytes` one at a time, `gap`
/// apart, ignoring a closed socket; then everything the server said.
async fn trickle(smtp: std::net::SocketAddr, bytes: &'static [u8], gap: Duration) -> String {
    let mut c = Raw::when_free(|| async move { TcpStream::connect(smtp).await.unwrap() }).await;
    for b in bytes {
        if c.stream.get_mut().write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(gap).await;
    }
    c.rest().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickling_client_meets_the_command_deadline_and_frees_its_slot() {
    let relay = Relay::start("max_connections = 2\ncommand_timeout_seconds = 3", "").await;
    let gap = Duration::from_millis(1500);
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let smtp = relay.smtp;
            tokio::spawn(async move { trickle(smtp, b"NOOP\r\nNOOP\r\n", gap).await })
        })
        .collect();
    for client in clients {
        let said = client.await.unwrap();
        // 6 bytes 1.5 s apart take 7.5 s: past the 3 s deadline.
        assert!(said.starts_with("421 4.4.2"), "{said:?}");
        assert!(
            !said.contains("250"),
            "the trickled NOOP never ran: {said:?}"
        );
    }
    // The slots come back (a 220 within 10 s).
    let smtp = relay.smtp;
    Raw::when_free(|| async move { TcpStream::connect(smtp).await.unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_is_dropped_and_its_slot_comes_back() {
    let relay = Relay::start("max_connections = 1\nwrite_timeout_seconds = 2", "").await;
    let smtp = relay.smtp;
    // The greeting is read (the slot is ours), then nothing more.
    let mut stream = Raw::when_free(|| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(1024).unwrap();
        socket.connect(smtp).await.unwrap()
    })
    .await
    .stream
    .into_inner();
    let flood = b"NOOP\r\n".repeat(4096);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let dropped = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dropped: {}",
            relay.log()
        );
        match tokio::time::timeout(Duration::from_secs(1), stream.write_all(&flood)).await {
            Ok(Ok(())) | Err(_) => continue,
            Ok(Err(e)) => break e,
        }
    };
    assert!(
        matches!(
            dropped.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{dropped}"
    );
    // The slot comes back (a 220 within 10 s).
    Raw::when_free(|| async move { TcpStream::connect(smtp).await.unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_over_long_line_is_refused_once_and_discarded_to_its_end() {
    let relay = Relay::start("", "").await;
    let (mut c, _) = Raw::connect(relay.smtp).await;
    assert!(c.cmd("EHLO long.test").await.starts_with("250"));
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'A', 4091));
    line.extend_from_slice(b"RSET\r\nQUIT\r\n");
    c.send(&line).await;
    let said = c.rest().await;
    let codes: Vec<&str> = said.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["500", "221"], "{said}");
    assert!(said.starts_with("500 5.5.2"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overflowing_size_is_refused_not_wrapped() {
    let upstream = FakeUpstream::start(Script::default()).await;
    let relay = Relay::start("", &format!("url = \"smtp://{}\"", upstream.addr)).await;
    let (mut c, _) = Raw::connect(relay.smtp).await;
    c.cmd("EHLO size.test").await;
    let reply = c
        .cmd("MAIL FROM:<a@example.com> SIZE=99999999999999999999999")
        .await;
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    let reply = c.cmd("MAIL FROM:<a@example.com> SIZE=1000").await;
    assert!(reply.starts_with("250"), "{reply}");
    let commands = upstream.commands.lock().unwrap().clone();
    let mails: Vec<_> = commands
        .iter()
        .filter(|(_, l)| l.starts_with("MAIL"))
        .collect();
    assert_eq!(mails.len(), 1, "{commands:?}");
    assert!(mails[0].1.contains("SIZE=1000"), "{commands:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn quoted_and_utf8_addresses_are_mirrored_exactly_and_recorded_as_delivered() {
    let upstream = FakeUpstream::start(Script::default()).await;
    let mut relay = Relay::start("", &format!("url = \"smtp://{}\"", upstream.addr)).await;
    let (mut c, _) = Raw::connect(relay.smtp).await;
    c.cmd("EHLO quote.test").await;
    assert!(
        c.cmd("MAIL FROM:<a@example.com> SMTPUTF8")
            .await
            .starts_with("250")
    );
    let injected = r#""victim@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;"q@example.net"#;
    let recipients = [
        injected,
        r#""john doe"@example.com"#,
        r#""a\"b"@example.com"#,
        "josé@exämple.test",
        "o'brien+tag@example.com",
    ];
    for r in recipients {
        let reply = c.cmd(&format!("RCPT TO:<{r}>")).await;
        assert!(reply.starts_with("250"), "{r}: {reply}");
    }
    // A control character, even quoted, is refused.
    assert!(
        c.cmd("RCPT TO:<\"a\x01b\"@example.com>")
            .await
            .starts_with("501 5.1.3")
    );
    let reply = c.cmd("DATA").await;
    assert!(reply.starts_with("354"), "{reply}");
    c.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    c.cmd("QUIT").await;
    relay.stop();

    let commands = upstream.commands.lock().unwrap().clone();
    let rcpts: Vec<String> = commands
        .iter()
        .filter_map(|(_, l)| l.strip_prefix("RCPT TO:"))
        .map(str::to_owned)
        .collect();
    assert!(!rcpts.is_empty(), "{commands:?}");
    let mut delivered = std::collections::BTreeSet::new();
    for rcpt in &rcpts {
        // What the upstream parses: one address, no parameters.
        let line = format!("RCPT TO:{rcpt}\r\n");
        let parsed = smtp_proto::request::receiver::RequestReceiver::default()
            .ingest(&mut line.as_bytes().iter())
            .map(smtp_proto::Request::into_owned);
        let Ok(smtp_proto::Request::Rcpt { to }) = parsed else {
            panic!("upstream got {rcpt:?}: {parsed:?}");
        };
        assert_eq!(
            (to.flags, to.orcpt.as_deref()),
            (0, None),
            "parameters injected: {rcpt}"
        );
        delivered.insert(
            rcpt.trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned(),
        );
    }
    assert!(
        delivered
            .contains(r#""victim@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;q"@example.net"#),
        "{delivered:?}"
    );
    assert!(
        delivered.contains(r#""john doe"@example.com"#),
        "{delivered:?}"
    );
    assert!(delivered.contains(r#""a\"b"@example.com"#), "{delivered:?}");
    assert!(delivered.contains("josé@exämple.test"), "{delivered:?}");
    // The recorded recipients are the delivered ones (so `forget` finds them).
    let db = rusqlite::Connection::open(relay.dir.path().join("trackrelay.db")).unwrap();
    let mut recorded = std::collections::BTreeSet::new();
    let mut stmt = db.prepare("SELECT recipients FROM messages").unwrap();
    for row in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        let list: Vec<String> = serde_json::from_str(&row.unwrap()).unwrap();
        recorded.extend(list);
    }
    assert_eq!(recorded, delivered);
}

#[tokio::test(flavor = "multi_thread")]
async fn control_characters_in_ehlo_never_reach_the_received_field() {
    let relay = Relay::start("", "").await;
    let (mut c, _) = Raw::connect(relay.smtp).await;
    let reply = c.cmd("EHLO ev\0il").await;
    assert!(reply.starts_with("501"), "{reply}");
    assert!(c.cmd("HELO ev\x1bil").await.starts_with("501"));
    // Still in the state before: MAIL wants a greeting first.
    assert!(c.cmd("MAIL FROM:<a@example.com>").await.starts_with("503"));
    assert!(c.cmd("EHLO fine.test").await.starts_with("250"));
    c.cmd("MAIL FROM:<a@example.com>").await;
    c.cmd("RCPT TO:<b@example.com>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    let copies = relay.outbox();
    assert_eq!(copies.len(), 1);
    assert!(
        copies[0].starts_with("Received: from fine.test ("),
        "{}",
        copies[0]
    );
    assert!(!copies[0].contains("ev\0il") && !copies[0].contains('\x1b'));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_auth_line_ends_the_connection_without_running_its_tail() {
    let relay = Relay::start(&auth_config(""), "").await;
    let (mut c, _) = Raw::connect(relay.smtp).await;
    c.cmd("EHLO long.test").await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "334");
    let mut line = vec![b'A'; 13 * 1024];
    line.extend_from_slice(b"RSET\r\nNOOP\r\n");
    c.send(&line).await;
    let said = c.rest().await;
    assert!(said.starts_with("501 5.5.2"), "{said}");
    assert!(!said.contains("250"), "nothing after it ran: {said}");
}
