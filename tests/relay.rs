//! The relay over real sockets: a real SMTP client in front, trackrelay
//! in the middle, and an upstream behind it — the `dir:` upstream, or a
//! scripted one that fails on cue. In every case the client's reply tells
//! the truth and nothing the client was told is accepted is missing.

mod support;

use support::fake_upstream::{FakeUpstream, Script};
use support::relay::{Client, TRACKED, html_message, start};

fn smtp_upstream(fake: &FakeUpstream, timeout: u32) -> String {
    format!(
        "url = \"smtp://{}\"\nstarttls = \"off\"\ntimeout_seconds = {timeout}",
        fake.addr
    )
}

fn script_rcpt(pairs: &[(&str, &str)]) -> Script {
    Script {
        rcpt: pairs
            .iter()
            .map(|(a, r)| (a.to_string(), r.to_string()))
            .collect(),
        ..Script::default()
    }
}

/// Sends the test message from alice to `to` through trackrelay in front
/// of a fake upstream playing `script` (upstream timeout in seconds);
/// returns the fake (to see what it accepted), the RCPT replies and the
/// final reply.
async fn through_fake(
    script: Script,
    timeout: u32,
    to: &[&str],
) -> (FakeUpstream, Vec<String>, String) {
    let fake = FakeUpstream::start(script).await;
    let relay = start("", &smtp_upstream(&fake, timeout), TRACKED).await;
    let mut c = Client::connect(relay.smtp).await;
    let (rcpts, reply) = c.send("alice@example.com", to, &html_message("")).await;
    drop(c);
    relay.stop().await;
    (fake, rcpts, reply)
}

fn data_final(replies: &[(usize, &str)]) -> Script {
    Script {
        data_final: replies.iter().map(|(n, r)| (*n, r.to_string())).collect(),
        ..Script::default()
    }
}

#[tokio::test]
async fn rcpt_refusals_are_mirrored_with_the_upstreams_words() {
    let script = script_rcpt(&[
        (
            "carol@example.org",
            "550 5.1.1 <carol@example.org>: No such user",
        ),
        ("dave@example.org", "452 4.2.2 Mailbox full"),
    ]);
    let to = ["bob@example.com", "carol@example.org", "dave@example.org"];
    let (fake, rcpts, reply) = through_fake(script, 10, &to).await;
    assert_eq!(rcpts[1], "550 5.1.1 <carol@example.org>: No such user");
    assert_eq!(rcpts[2], "452 4.2.2 Mailbox full");
    assert!(reply.starts_with("250"), "{reply}");
    let got = fake.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["bob@example.com"]);
}

#[tokio::test]
async fn refused_data_command_and_final_reply_pass_through() {
    let script = Script {
        data_command: Some("554 5.7.1 Not today".into()),
        ..Script::default()
    };
    let (fake, _, reply) = through_fake(script, 10, &["bob@example.com"]).await;
    assert_eq!(reply, "554 5.7.1 Not today");
    assert!(fake.accepted().is_empty());

    let script = data_final(&[(0, "552 5.3.4 Too big for us")]);
    let (_, _, reply) = through_fake(script, 10, &["bob@example.com"]).await;
    assert_eq!(reply, "552 5.3.4 Too big for us");
}

#[tokio::test]
async fn upstream_dropping_mid_data_gives_4xx_and_nothing_is_claimed() {
    let script = Script {
        drop_mid_data: Some(50),
        ..Script::default()
    };
    let (fake, _, reply) = through_fake(script, 10, &["bob@example.com"]).await;
    assert!(reply.starts_with("451 4.4.1"), "{reply}");
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn upstream_stalling_past_the_timeout_gives_4xx() {
    let script = Script {
        stall_on_data: Some(0),
        ..Script::default()
    };
    let (_, _, reply) = through_fake(script, 1, &["bob@example.com"]).await;
    assert!(reply.starts_with("451 4.4.1"), "{reply}");
}

#[tokio::test]
async fn upstream_down_gives_4xx_at_mail() {
    // A port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = start(
        "",
        &format!("url = \"smtp://{free}\"\nstarttls = \"off\""),
        TRACKED,
    )
    .await;
    let mut c = Client::connect(relay.smtp).await;
    c.cmd("EHLO client.test").await;
    let reply = c.cmd("MAIL FROM:<alice@example.com>").await;
    assert!(reply.starts_with("451 4.4.1"), "{reply}");
    relay.stop().await;
}

#[tokio::test]
async fn a_refused_second_copy_means_250_and_a_dsn_to_the_sender() {
    let script = data_final(&[(1, "550 5.7.1 Content rejected for carol")]);
    let (fake, _, reply) =
        through_fake(script, 10, &["bob@example.com", "carol@example.org"]).await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = fake.accepted();
    assert_eq!(got.len(), 2, "bob's copy and the DSN");
    assert_eq!(got[0].to, ["bob@example.com"]);
    let dsn = &got[1];
    assert_eq!(dsn.from, "", "DSNs have a null sender");
    assert_eq!(dsn.to, ["alice@example.com"]);
    let text = String::from_utf8_lossy(&dsn.data);
    assert!(text.contains("multipart/report"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; carol@example.org"),
        "{text}"
    );
    assert!(text.contains("550 5.7.1 Content rejected for carol"));
}

#[tokio::test]
async fn every_refused_copy_means_the_client_hears_the_refusal() {
    let script = data_final(&[(0, "451 4.3.0 Try later"), (1, "451 4.3.0 Try later")]);
    let (fake, _, reply) =
        through_fake(script, 10, &["bob@example.com", "carol@example.org"]).await;
    assert_eq!(reply, "451 4.3.0 Try later");
    assert!(
        fake.accepted().is_empty(),
        "no DSN when nothing was accepted"
    );
}

#[tokio::test]
async fn one_copy_per_recipient_each_with_its_own_tokens() {
    let relay = start("", "", TRACKED).await;
    let mut c = Client::connect(relay.smtp).await;
    let (_, reply) = c
        .send(
            "alice@example.com",
            &["bob@example.com", "carol@example.org"],
            &html_message("X-LM-Tag: welcome\r\n"),
        )
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let copies = relay.outbox();
    assert_eq!(copies.len(), 2);
    let keys = support::keys();
    let mut recipients = Vec::new();
    for (envelope, data) in &copies {
        let to = envelope["to"].as_array().unwrap();
        assert_eq!(to.len(), 1);
        let text = String::from_utf8_lossy(data);
        assert!(
            !text.to_ascii_lowercase().contains("x-lm-"),
            "override headers removed"
        );
        assert!(
            text.starts_with("Received: from client.test"),
            "trace field first"
        );
        let token = support::tracking_tokens(&text, "c")[0];
        let (claims, _) = keys.verify(token).unwrap();
        assert_eq!(claims.url.as_deref(), Some("https://example.com/?a=1&b=2"));
        assert_eq!(
            claims.recipient_id,
            Some(keys.recipient_id(to[0].as_str().unwrap()))
        );
        recipients.push(to[0].as_str().unwrap().to_string());
    }
    recipients.sort();
    assert_eq!(recipients, ["bob@example.com", "carol@example.org"]);
    relay.stop().await;
}

#[tokio::test]
async fn per_recipient_off_sends_one_copy_with_message_level_tokens() {
    let routes = "[[routes]]\nid = \"default\"\ntrack_opens = true\ntrack_clicks = true\nper_recipient = false\n";
    let relay = start("", "", routes).await;
    let mut c = Client::connect(relay.smtp).await;
    let (_, reply) = c
        .send(
            "alice@example.com",
            &["bob@example.com", "carol@example.org"],
            &html_message(""),
        )
        .await;
    assert!(reply.starts_with("250"));
    let copies = relay.outbox();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].0["to"].as_array().unwrap().len(), 2);
    let text = String::from_utf8_lossy(&copies[0].1);
    let (claims, _) = support::keys()
        .verify(support::tracking_tokens(&text, "o")[0])
        .unwrap();
    assert_eq!(claims.recipient_id, None);
    relay.stop().await;
}

#[tokio::test]
async fn untracked_mail_goes_through_unchanged_in_one_transaction() {
    let relay = start("", "", "").await; // implicit fallback: tracking off
    let mut c = Client::connect(relay.smtp).await;
    let message = html_message("X-LM-Tag: t\r\n");
    let (_, reply) = c
        .send(
            "alice@example.com",
            &["bob@example.com", "carol@example.org"],
            &message,
        )
        .await;
    assert!(reply.starts_with("250"));
    let copies = relay.outbox();
    assert_eq!(copies.len(), 1);
    let data = &copies[0].1;
    let body_start = data.windows(8).position(|w| w == b"\r\nFrom: ").unwrap() + 2;
    let expected = String::from_utf8_lossy(&message).replace("X-LM-Tag: t\r\n", "");
    assert_eq!(String::from_utf8_lossy(&data[body_start..]), expected);
    relay.stop().await;
}

#[tokio::test]
async fn strangers_cannot_relay() {
    // 127.0.0.1 is not an allowed network here and nobody authenticated.
    let relay = start("allowed_networks = [\"10.0.0.0/8\"]", "", TRACKED).await;
    let mut c = Client::connect(relay.smtp).await;
    c.cmd("EHLO stranger.test").await;
    assert!(
        c.cmd("MAIL FROM:<spammer@example.net>")
            .await
            .starts_with("250")
    );
    assert_eq!(
        c.cmd("RCPT TO:<victim@example.org>").await,
        "550 5.7.1 Relaying denied: authenticate or connect from an allowed network"
    );
    assert!(c.cmd("DATA").await.starts_with("554"));
    assert!(relay.outbox().is_empty());
    relay.stop().await;
}

#[tokio::test]
async fn command_order_and_size_limits() {
    let relay = start("max_message_bytes = 1000", "", TRACKED).await;
    let mut c = Client::connect(relay.smtp).await;
    assert!(
        c.cmd("MAIL FROM:<a@example.com>").await.starts_with("503"),
        "EHLO first"
    );
    c.cmd("EHLO client.test").await;
    assert!(c.cmd("RCPT TO:<b@example.com>").await.starts_with("503"));
    assert!(
        c.cmd("MAIL FROM:<a@example.com> SIZE=5000")
            .await
            .starts_with("552 5.3.4")
    );
    assert!(c.cmd("MAIL FROM:<a@example.com>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@example.com>").await.starts_with("250"));
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(3000));
    assert!(c.data(big.as_bytes()).await.starts_with("552 5.3.4"));
    // The session is still in step after the refusal.
    assert!(c.cmd("NOOP").await.starts_with("250"));
    relay.stop().await;
}

#[tokio::test]
async fn pipelined_commands_get_replies_in_order() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = start("", "", TRACKED).await;
    let mut s = tokio::net::TcpStream::connect(relay.smtp).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"220"));
    s.write_all(b"EHLO pipe.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    while !got.contains("354 ") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let codes: Vec<&str> = got
        .lines()
        .map(|l| &l[..4])
        .filter(|c| c.ends_with(' '))
        .collect();
    assert_eq!(codes, ["250 ", "250 ", "250 ", "250 ", "354 "], "{got}");
    s.write_all(b"Subject: p\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        .await
        .unwrap();
    let mut rest = String::new();
    while !rest.contains("221") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "{rest}");
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(rest.starts_with("250"), "{rest}");
    assert_eq!(
        relay.outbox().len(),
        1,
        "untracked (no HTML): one transaction"
    );
    relay.stop().await;
}

/// A raw client for byte-exact dialogues: writes what it is given as it
/// is, and reads one reply (up to its last line).
struct Raw {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> Raw {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        assert!(raw.reply().await.starts_with("220"));
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    async fn reply(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        loop {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            let mut at = 0;
            for line in text.split_inclusive("\r\n") {
                at += line.len();
                if line.ends_with("\r\n") && line.as_bytes().get(3) == Some(&b' ') {
                    self.buf.drain(..at);
                    return text[..at].trim_end().to_string();
                }
            }
            let mut chunk = [0u8; 1024];
            // A relay that missed the end of the data would wait forever.
            let n = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.stream.read(&mut chunk),
            )
            .await
            .expect("a reply within 10 s")
            .unwrap();
            assert!(n > 0, "connection closed after {text:?}");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// MAIL, RCPT and DATA, then `wire` (the message as the client puts it
    /// on the wire, end mark included) in two writes split at `cut`, a
    /// pause between them so the relay reads them apart.
    async fn transaction(&mut self, wire: &[u8], cut: usize) -> String {
        assert!(
            self.cmd("MAIL FROM:<alice@example.com>")
                .await
                .starts_with("250")
        );
        assert!(
            self.cmd("RCPT TO:<bob@example.com>")
                .await
                .starts_with("250")
        );
        assert!(self.cmd("DATA").await.starts_with("354"));
        self.send(&wire[..cut]).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        self.send(&wire[cut..]).await;
        self.reply().await
    }
}

/// Lines starting with dots, and a last line that is a lone dot: as the
/// client means it, and as it goes on the wire (stuffed, with the end mark).
const DOTTED: &[u8] = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\nmiddle . dot\r\n.\r\n";
const DOTTED_WIRE: &[u8] =
    b"Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\nmiddle . dot\r\n..\r\n.\r\n";

/// The Received field trackrelay put first, and the rest.
fn split_received(bytes: &[u8]) -> (&[u8], &[u8]) {
    assert!(bytes.starts_with(b"Received: from "), "{bytes:?}");
    let end = bytes.windows(9).position(|w| w == b"Subject: ").unwrap();
    bytes.split_at(end)
}

#[tokio::test]
async fn dots_and_split_end_marks_arrive_upstream_byte_for_byte() {
    // Every cut inside the stuffed first line and inside the end mark
    // "\r\n.\r\n", to an upstream taking DATA and to one taking BDAT.
    let first_dot = DOTTED_WIRE.windows(3).position(|w| w == b"\n..").unwrap();
    let end_mark = DOTTED_WIRE.len() - 5;
    let cuts: Vec<usize> = (first_dot..first_dot + 3)
        .chain(end_mark..DOTTED_WIRE.len())
        .collect();
    for chunking in [false, true] {
        let fake = FakeUpstream::start(Script {
            chunking,
            ..Script::default()
        })
        .await;
        let relay = start("", &smtp_upstream(&fake, 10), "").await; // untracked
        let mut c = Raw::connect(relay.smtp).await;
        assert!(c.cmd("EHLO client.test").await.starts_with("250"));
        for &cut in &cuts {
            let reply = c.transaction(DOTTED_WIRE, cut).await;
            assert!(reply.starts_with("250"), "cut at {cut}: {reply}");
        }
        assert!(c.cmd("QUIT").await.starts_with("221"));
        let accepted = fake.accepted();
        assert_eq!(accepted.len(), cuts.len());
        for copy in &accepted {
            let (received, message) = split_received(&copy.data);
            assert_eq!(
                message, DOTTED,
                "the message, unstuffed, as the client meant it"
            );
            let (wire_received, wire) = split_received(&copy.wire);
            assert_eq!(wire_received, received);
            let expected: &[u8] = if chunking { DOTTED } else { DOTTED_WIRE };
            assert_eq!(
                String::from_utf8_lossy(wire),
                String::from_utf8_lossy(expected),
                "on the wire (chunking {chunking})"
            );
        }
        relay.stop().await;
    }
}

#[tokio::test]
async fn an_empty_message_ends_at_the_first_dot_line() {
    let fake = FakeUpstream::start(Script::default()).await;
    let relay = start("", &smtp_upstream(&fake, 10), "").await;
    let mut c = Raw::connect(relay.smtp).await;
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    assert!(c.transaction(b".\r\n", 0).await.starts_with("250"));
    assert!(c.cmd("NOOP").await.starts_with("250"), "still in step");
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), 1);
    assert!(accepted[0].data.starts_with(b"Received: from "));
    assert!(accepted[0].data.ends_with(b"\r\n"));
    assert_eq!(accepted[0].wire, [&accepted[0].data[..], b".\r\n"].concat());
    relay.stop().await;
}

#[tokio::test]
async fn copies_not_ending_in_crlf_are_ended_upstream() {
    // The relay's own messages always end in CRLF; the upstream client
    // must still end any copy correctly, so it is driven directly here.
    use trackrelay::upstream::{MailParams, Upstream};
    let cases: [(&[u8], &[u8], &[u8]); 4] = [
        (
            b"no final newline",
            b"no final newline\r\n.\r\n",
            b"no final newline\r\n",
        ),
        (b"bare lf\n", b"bare lf\r\n.\r\n", b"bare lf\r\n"),
        (b"a\r\n.", b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
        (b"", b".\r\n", b""),
    ];
    for chunking in [false, true] {
        let fake = FakeUpstream::start(Script {
            chunking,
            ..Script::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let text = support::relay::config_text(dir.path(), "", &smtp_upstream(&fake, 10), "");
        let config = trackrelay::config::Config::parse(&text).unwrap();
        let upstream = Upstream::new(config.upstream, config.limits, "relay.test".into());
        for (message, _, _) in &cases {
            let (mut conn, reply) = upstream
                .begin("a@example.com", MailParams::default())
                .await
                .unwrap();
            assert!(reply.is_positive());
            assert!(conn.rcpt_to("b@example.com").await.unwrap().is_positive());
            let reply = conn
                .data(message.to_vec(), uuid::Uuid::now_v7())
                .await
                .unwrap();
            assert!(reply.is_positive(), "{reply}");
            upstream.release(conn).await;
        }
        let accepted = fake.accepted();
        assert_eq!(accepted.len(), cases.len());
        for ((message, data_wire, bdat_wire), copy) in cases.iter().zip(&accepted) {
            let expected = if chunking { bdat_wire } else { data_wire };
            assert_eq!(copy.wire, *expected, "{message:?}, chunking {chunking}");
        }
    }
}

/// What one connection of the fake was told, commands only.
fn verbs(fake: &FakeUpstream) -> Vec<(usize, String)> {
    fake.commands()
        .into_iter()
        .map(|(n, line)| (n, line.split([' ', ':']).next().unwrap().to_uppercase()))
        .collect()
}

#[tokio::test]
async fn a_pooled_connection_is_reused_without_rset_after_a_message() {
    let fake = FakeUpstream::start(Script::default()).await;
    let relay = start("", &smtp_upstream(&fake, 10), TRACKED).await;
    for _ in 0..2 {
        let mut c = Client::connect(relay.smtp).await;
        let (_, reply) = c
            .send("alice@example.com", &["bob@example.com"], &html_message(""))
            .await;
        assert!(reply.starts_with("250"), "{reply}");
    }
    // A transaction the client abandons is reset before the next one.
    let mut c = Client::connect(relay.smtp).await;
    c.cmd("EHLO client.test").await;
    c.cmd("MAIL FROM:<alice@example.com>").await;
    c.cmd("RSET").await;
    drop(c);
    relay.stop().await;
    let expected: Vec<(usize, String)> = [
        "EHLO", "MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA", "MAIL", "RSET",
    ]
    .iter()
    .map(|v| (0, v.to_string()))
    .collect();
    assert_eq!(verbs(&fake)[..expected.len()], expected);
    assert_eq!(fake.accepted().len(), 2);
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_unnoticed() {
    // The upstream hangs up after every message (silently, or with 421 at
    // the next command): the pooled connection is dead by the next MAIL,
    // which goes out again on a new one.
    for goodbye in [false, true] {
        pooled_connection_closed(Script {
            close_after_message: !goodbye,
            goodbye_after_message: goodbye,
            ..Script::default()
        })
        .await;
    }
}

async fn pooled_connection_closed(script: Script) {
    let fake = FakeUpstream::start(script).await;
    let relay = start("", &smtp_upstream(&fake, 10), TRACKED).await;
    for _ in 0..3 {
        let mut c = Client::connect(relay.smtp).await;
        let (_, reply) = c
            .send("alice@example.com", &["bob@example.com"], &html_message(""))
            .await;
        assert!(reply.starts_with("250"), "{reply}");
    }
    relay.stop().await;
    assert_eq!(fake.accepted().len(), 3);
    let connections: std::collections::BTreeSet<usize> = verbs(&fake)
        .into_iter()
        .filter(|(_, v)| v == "DATA")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(connections.len(), 3, "one new connection per message");
}

#[tokio::test]
async fn every_relayed_copy_is_recorded_even_right_before_shutdown() {
    // Records are handed to storage in batches a few ms apart; stopping at
    // once must still store the last ones.
    let fake = FakeUpstream::start(Script::default()).await;
    let relay = start("", &smtp_upstream(&fake, 10), TRACKED).await;
    let to = ["bob@example.com", "carol@example.org"];
    let mut c = Client::connect(relay.smtp).await;
    let (_, reply) = c.send("alice@example.com", &to, &html_message("")).await;
    assert!(reply.starts_with("250"), "{reply}");
    drop(c);
    let mut relay = relay;
    relay.shutdown.cancel();
    let app = relay.app.take().unwrap();
    assert!(app.wait().await, "every queued write stored");
    let conn = rusqlite::Connection::open(relay.dir.path().join("trackrelay.db")).unwrap();
    let mut rows: Vec<(String, String)> = conn
        .prepare("SELECT recipients, status FROM messages")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("[\"bob@example.com\"]".to_string(), "relayed".to_string()),
            ("[\"carol@example.org\"]".to_string(), "relayed".to_string()),
        ]
    );
    assert_eq!(fake.accepted().len(), 2);
}

#[tokio::test]
async fn a_message_sent_before_the_354_is_read_the_same() {
    // Not allowed (RFC 2920 §3.1), but seen: the message follows DATA in
    // the same write, and its end in a later one.
    let fake = FakeUpstream::start(Script::default()).await;
    let relay = start("", &smtp_upstream(&fake, 10), "").await;
    let mut c = Raw::connect(relay.smtp).await;
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    assert!(
        c.cmd("MAIL FROM:<alice@example.com>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<bob@example.com>").await.starts_with("250"));
    let cut = DOTTED_WIRE.len() - 4;
    c.send(&[b"DATA\r\n", &DOTTED_WIRE[..cut]].concat()).await;
    assert!(c.reply().await.starts_with("354"));
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    c.send(&[&DOTTED_WIRE[cut..], b"NOOP\r\n"].concat()).await;
    assert!(c.reply().await.starts_with("250"));
    assert!(
        c.reply().await.starts_with("250"),
        "NOOP after the end mark"
    );
    relay.stop().await;
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(split_received(&accepted[0].data).1, DOTTED);
}
