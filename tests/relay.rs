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
