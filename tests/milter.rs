//! Milter mode with a real Postfix, as it is deployed:
//!
//! ```text
//! python smtplib ─▶ Postfix (smtpd_milters = trackrelay) ─▶ smtp-sink ─▶ files
//!                       ▲ milter protocol ▼
//!                     trackrelay (rewrite, record)
//! ```
//!
//! What arrives at the sink is checked byte for byte: the HTML part
//! rewritten (pixel and tracked links), the `X-LM-*` fields gone, every
//! other byte as sent; a link from the delivered message redirects through
//! trackrelay's tracking server and its hit is stored. Faults: trackrelay
//! not listening, the milter connection cut mid-message, and a message
//! trackrelay will not take: Postfix delivers unchanged or the client gets
//! a 4xx (and keeps the message), as configured.
//!
//! Needs root and Debian's postfix package (`.ci/packages`).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::postfix::{
    Dump, Postfix, Sink, free_addr, header_fields, send_with_smtplib, try_smtplib,
};
use support::relay::{Running, TRACKED, start};
use support::server::Http;
use trackrelay::html::pixel_markup;

const BOUNDARY: &str = "=_alt_m1";
const TEXT_PART: &str = "Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hi there, read https://example.com/welcome\r\n\
.a line that starts with a dot\r\n";
const HTML_PART: &str = "Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
<html><body>\r\n\
<p>Read <a href=\"https://example.com/welcome?a=1&amp;b=2\">the news</a>\r\n\
or <a href=\"https://shop.example.org/sale\">the shop</a>.</p>\r\n\
<p><a href=\"mailto:help@example.com\">Write to us</a></p>\r\n\
</body></html>\r\n";
const LINK_URLS: [&str; 2] = [
    "https://example.com/welcome?a=1&b=2",
    "https://shop.example.org/sale",
];

/// The header block as sent, without the X-LM-* fields (a folded Subject
/// to see folding kept).
fn kept_headers() -> String {
    format!(
        "From: Alice <alice@example.com>\r\n\
         To: bob@example.com\r\n\
         Subject: Milter\r\n  mode\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <milter-e2e-1@example.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"{BOUNDARY}\"\r\n"
    )
}

/// A multipart/alternative message with a tag and an override header.
fn message() -> Vec<u8> {
    let headers = kept_headers().replacen(
        "MIME-Version",
        "X-LM-Tag: welcome\r\nX-LM-Override-Track-Clicks: true\r\nx-lm-tag: second\r\nMIME-Version",
        1,
    );
    format!(
        "{headers}\r\nThis is a MIME message.\r\n\r\n--{BOUNDARY}\r\n{TEXT_PART}\r\n\
         --{BOUNDARY}\r\n{HTML_PART}\r\n--{BOUNDARY}--\r\n"
    )
    .into_bytes()
}

/// trackrelay with a milter listener, Postfix calling it, and the sink.
struct Setup {
    postfix: Postfix,
    relay: Running,
    sink: Sink,
}

/// `milter` goes into trackrelay's `[milter]` section; Postfix calls the
/// milter at `milter_at` (trackrelay's own address when `None`) with
/// `milter_default_action = default_action`.
async fn setup(milter: &str, milter_at: Option<SocketAddr>, default_action: &str) -> Setup {
    let sink = Sink::start();
    let routes = format!("[milter]\nlisten = \"127.0.0.1:0\"\n{milter}\n{TRACKED}");
    let relay = start("", "", &routes).await;
    let at = milter_at.unwrap_or_else(|| relay.app.as_ref().unwrap().milter_addr().unwrap());
    let main_cf = format!(
        "smtpd_milters = inet:{at}\n\
         milter_default_action = {default_action}\n\
         milter_protocol = 6\n"
    );
    let sink_addr = sink.addr;
    let postfix = tokio::task::spawn_blocking(move || {
        Postfix::start("pf", free_addr(), sink_addr, &main_cf, &[])
    })
    .await
    .unwrap();
    Setup {
        postfix,
        relay,
        sink,
    }
}

impl Setup {
    /// The one message the sink got, once Postfix says it was sent.
    fn delivered(&self) -> Dump {
        self.postfix.wait_for_log(&["status=sent"], 1);
        let mut dumps = self.sink.dumps();
        assert_eq!(dumps.len(), 1, "{}", self.postfix.maillog_tail(30));
        dumps.remove(0)
    }

    async fn stop(self) {
        let Setup {
            postfix,
            relay,
            sink,
        } = self;
        drop(postfix);
        relay.stop().await;
        drop(sink);
    }
}

/// Checks the delivered message against the sent one: the header fields
/// as sent minus X-LM-*, Postfix's Received on top, every MIME segment
/// but the HTML one byte-identical. Returns the HTML segment.
fn check_kept(dump: &Dump, sent: &[u8], headers: &str) -> String {
    let text = String::from_utf8(dump.message.clone()).unwrap();
    let sent = String::from_utf8(sent.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let (_, sent_body) = sent.split_once("\r\n\r\n").unwrap();
    let (received, others) = header_fields(&format!("{head}\r\n"));
    assert_eq!(others.concat(), headers, "header fields");
    assert!(
        received.iter().any(|r| r.contains("by pf.test (Postfix)")),
        "{received:?}"
    );
    let delimiter = format!("--{BOUNDARY}");
    let got: Vec<&str> = body.split(&delimiter).collect();
    let want: Vec<&str> = sent_body.split(&delimiter).collect();
    assert_eq!(got.len(), want.len(), "MIME structure kept:\n{body}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if i != 2 {
            assert_eq!(g, w, "segment {i} byte-identical");
        }
    }
    got[2].to_owned()
}

/// The HTML segment: a pixel and both http(s) links tracked, for
/// `recipient` (None: message-level tokens); nothing else changed.
/// Returns the message id in the tokens and the click tokens.
fn check_html(got: &str, recipient: Option<&str>) -> (uuid::Uuid, Vec<String>) {
    let keys = support::keys();
    let opens = support::tracking_tokens(got, "o");
    assert_eq!(opens.len(), 1, "one pixel:\n{got}");
    let clicks = support::tracking_tokens(got, "c");
    assert_eq!(clicks.len(), LINK_URLS.len(), "{got}");
    let (pixel, _) = keys.verify(opens[0]).unwrap();
    let mut restored = got.replacen(
        &pixel_markup(&format!("{}/o/{}", support::BASE, opens[0])),
        "",
        1,
    );
    for (token, url) in clicks.iter().zip(LINK_URLS) {
        let (claims, _) = keys.verify(token).unwrap();
        assert_eq!(claims.url.as_deref(), Some(url));
        assert_eq!(claims.message_id, pixel.message_id);
        assert_eq!(claims.recipient_id, recipient.map(|r| keys.recipient_id(r)));
        let tracking_url = format!("{}/c/{token}", support::BASE);
        restored = restored.replacen(&tracking_url, &url.replace('&', "&amp;"), 1);
    }
    let sent_html = format!("\r\n{HTML_PART}\r\n");
    assert_eq!(restored, sent_html, "nothing but the hrefs and the pixel");
    let clicks = clicks.iter().map(|t| t.to_string()).collect();
    (pixel.message_id, clicks)
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_delivers_the_rewritten_message_and_its_links_work() {
    let s = setup("", None, "tempfail").await;
    let sent = message();
    send_with_smtplib(
        s.postfix.addr,
        "alice@example.com",
        &["bob@example.com"],
        &sent,
    );
    let dump = s.delivered();
    assert_eq!(dump.sender, "alice@example.com");
    assert_eq!(dump.recipients, ["bob@example.com"]);
    let html = check_kept(&dump, &sent, &kept_headers());
    let (id, clicks) = check_html(&html, Some("bob@example.com"));

    // Recorded as a relayed copy, with Postfix's queue id in the reply.
    let app = s.relay.app.as_ref().unwrap();
    let mut copy = None;
    for _ in 0..100 {
        copy = app.storage().message(id).await.unwrap();
        if copy.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let copy = copy.expect("the message is recorded");
    assert_eq!(copy.route, "default");
    assert_eq!(copy.sender, "alice@example.com");
    assert_eq!(copy.recipients, ["bob@example.com"]);
    assert_eq!(
        copy.message_id_header.as_deref(),
        Some("<milter-e2e-1@example.com>")
    );
    assert_eq!(copy.tags, ["welcome", "second"]);
    assert_eq!(copy.links, LINK_URLS);
    let queued = s
        .postfix
        .wait_for_log(&["message-id=<milter-e2e-1@example.com>"], 1);
    let queue_id = queued[0].split(": ").nth(1).unwrap();
    assert_eq!(
        copy.upstream_reply,
        format!("accepted by milter (queue id {queue_id})")
    );

    // A link from the delivered message redirects, and the hit is stored.
    let resp = Http::default()
        .send(
            "GET",
            app.tracking_addr(),
            "t.example.com",
            &format!("/c/{}", clicks[1]),
            &[("user-agent", "Mozilla/5.0")],
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("location"), LINK_URLS[1]);
    let mut observations = Vec::new();
    for _ in 0..100 {
        observations = app.storage().observations(id).await.unwrap();
        if !observations.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(observations.len(), 1, "the click is stored");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn several_recipients_get_one_copy_with_message_level_tokens() {
    let s = setup("", None, "tempfail").await;
    let sent = message();
    let to = ["bob@example.com", "carol@example.org"];
    send_with_smtplib(s.postfix.addr, "alice@example.com", &to, &sent);
    s.postfix.wait_for_log(&["status=sent"], 2);
    let dumps = s.sink.dumps();
    // Postfix may deliver both recipients in one transaction or two; every
    // delivery carries the same rewritten bytes.
    let recipients: usize = dumps.iter().map(|d| d.recipients.len()).sum();
    assert_eq!(recipients, 2, "{dumps:?}");
    let html = check_kept(&dumps[0], &sent, &kept_headers());
    check_html(&html, None);
    for d in &dumps[1..] {
        assert_eq!(d.message, dumps[0].message);
    }
    s.stop().await;
}

/// The message as Postfix delivers it untouched: the X-LM-* fields kept,
/// no tracking URL.
fn check_unchanged(dump: &Dump, sent: &[u8]) {
    let text = String::from_utf8(dump.message.clone()).unwrap();
    let sent_text = String::from_utf8(sent.to_vec()).unwrap();
    assert!(!text.contains(support::BASE), "untracked:\n{text}");
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    let (sent_head, sent_body) = sent_text.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, sent_body);
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let (_, others) = header_fields(&format!("{head}\r\n"));
    assert_eq!(others.concat(), format!("{sent_head}\r\n"), "X-LM-* kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn milter_not_listening_with_default_accept_delivers_unchanged() {
    let s = setup("", Some(free_addr()), "accept").await;
    let sent = message();
    send_with_smtplib(
        s.postfix.addr,
        "alice@example.com",
        &["bob@example.com"],
        &sent,
    );
    check_unchanged(&s.delivered(), &sent);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn milter_not_listening_with_default_tempfail_gives_the_client_4xx() {
    let s = setup("", Some(free_addr()), "tempfail").await;
    let err = try_smtplib(
        s.postfix.addr,
        "alice@example.com",
        &["bob@example.com"],
        &message(),
    )
    .unwrap_err();
    assert!(err.contains("451"), "{err}");
    assert!(s.postfix.queue().is_empty(), "Postfix did not take it");
    assert!(s.sink.dumps().is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_trackrelay_will_not_take_follows_on_error() {
    // Over max_message_bytes: tempfail, the client keeps the message.
    let s = setup(
        "on_error = \"tempfail\"\nmax_message_bytes = 200",
        None,
        "accept",
    )
    .await;
    let err = try_smtplib(
        s.postfix.addr,
        "alice@example.com",
        &["bob@example.com"],
        &message(),
    )
    .unwrap_err();
    assert!(err.contains("451"), "{err}");
    assert!(s.postfix.queue().is_empty());
    s.stop().await;

    // The same with on_error = accept: delivered unchanged.
    let s = setup(
        "on_error = \"accept\"\nmax_message_bytes = 200",
        None,
        "tempfail",
    )
    .await;
    let sent = message();
    send_with_smtplib(
        s.postfix.addr,
        "alice@example.com",
        &["bob@example.com"],
        &sent,
    );
    check_unchanged(&s.delivered(), &sent);
    s.stop().await;
}

/// A TCP proxy between Postfix and trackrelay's milter that cuts both
/// connections when Postfix sends the end of the headers (mid-message).
async fn cutting_proxy(milter: SocketAddr) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut mta, _)) = listener.accept().await {
            let mut up = tokio::net::TcpStream::connect(milter).await.unwrap();
            tokio::spawn(async move {
                let (mut mta_r, mut mta_w) = mta.split();
                let (mut up_r, mut up_w) = up.split();
                let to_mta = tokio::io::copy(&mut up_r, &mut mta_w);
                let to_milter = async {
                    // Packet by packet: forward until the EOH command.
                    loop {
                        let mut len = [0u8; 4];
                        mta_r.read_exact(&mut len).await?;
                        let mut packet = vec![0u8; u32::from_be_bytes(len) as usize];
                        mta_r.read_exact(&mut packet).await?;
                        if packet[0] == b'N' {
                            return Ok::<(), std::io::Error>(());
                        }
                        up_w.write_all(&len).await?;
                        up_w.write_all(&packet).await?;
                    }
                };
                tokio::select! {
                    _ = to_mta => {}
                    _ = to_milter => {}
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_cut_mid_message_follows_milter_default_action() {
    for (action, delivered) in [("tempfail", false), ("accept", true)] {
        let sink = Sink::start();
        let routes = format!("[milter]\nlisten = \"127.0.0.1:0\"\n{TRACKED}");
        let relay = start("", "", &routes).await;
        let proxy = cutting_proxy(relay.app.as_ref().unwrap().milter_addr().unwrap()).await;
        let main_cf = format!("smtpd_milters = inet:{proxy}\nmilter_default_action = {action}\n");
        let sink_addr = sink.addr;
        let postfix = tokio::task::spawn_blocking(move || {
            Postfix::start("pf", free_addr(), sink_addr, &main_cf, &[])
        })
        .await
        .unwrap();
        let s = Setup {
            postfix,
            relay,
            sink,
        };
        let sent = message();
        let result = try_smtplib(
            s.postfix.addr,
            "alice@example.com",
            &["bob@example.com"],
            &sent,
        );
        if delivered {
            assert_eq!(result, Ok(()));
            check_unchanged(&s.delivered(), &sent);
        } else {
            let err = result.unwrap_err();
            assert!(err.contains("451"), "{err}");
            assert!(s.postfix.queue().is_empty());
            assert!(s.sink.dumps().is_empty());
        }
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_top_level_html_part_reencoded_gets_its_header_changed() {
    let s = setup("", None, "tempfail").await;
    // One 8bit line of links: under 998 octets as sent, over once every
    // href is a tracking URL, so the part becomes quoted-printable and its
    // Content-Transfer-Encoding field must change with it.
    let links: String = (0..12)
        .map(|i| format!("<a href=\"https://example.com/{i}\">l{i}</a> "))
        .collect();
    let sent = format!(
        "From: a@example.com\r\nTo: bob@example.com\r\nSubject: qp\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <qp@example.com>\r\n\
         X-LM-Tag: qp\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n<p>caf\u{e9} {links}</p>\r\n"
    )
    .into_bytes();
    assert!(sent.len() < 998);
    send_with_smtplib(s.postfix.addr, "a@example.com", &["bob@example.com"], &sent);
    let dump = s.delivered();
    let text = String::from_utf8(dump.message).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let (_, others) = header_fields(&format!("{head}\r\n"));
    assert_eq!(
        others.concat(),
        "From: a@example.com\r\nTo: bob@example.com\r\nSubject: qp\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <qp@example.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n"
    );
    assert!(body.lines().all(|l| l.len() <= 76), "{body}");
    let decoded = String::from_utf8(
        mail_parser::decoders::quoted_printable::quoted_printable_decode(body.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(decoded.starts_with("<p>caf\u{e9} <a href=\"https://t.example.com/c/"));
    assert_eq!(support::tracking_tokens(&decoded, "c").len(), 12);
    s.stop().await;
}

/// One milter packet: length, command, data.
fn packet(code: u8, data: &[u8]) -> Vec<u8> {
    let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(code);
    p.extend_from_slice(data);
    p
}

/// Reads one reply packet: (command, data).
async fn read_reply(stream: &mut tokio::net::UnixStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut p = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut p).await.unwrap();
    (p[0], p[1..].to_vec())
}

/// The MTA side of the protocol, by hand, over a unix socket: the exact
/// replies for a tracked message, then for a malformed one (on_error).
#[tokio::test(flavor = "multi_thread")]
async fn the_protocol_over_a_unix_socket() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("milter.sock");
    let routes = format!("[milter]\nlisten = \"unix:{}\"\n{TRACKED}", sock.display());
    let relay = start("", "", &routes).await;
    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();

    // Negotiation as Postfix 3.7 offers it.
    let mut offer = Vec::new();
    for n in [6u32, 0x1ff, 0x1f_ffff] {
        offer.extend_from_slice(&n.to_be_bytes());
    }
    s.write_all(&packet(b'O', &offer)).await.unwrap();
    let (code, data) = read_reply(&mut s).await;
    assert_eq!(code, b'O');
    assert_eq!(&data[..12], b"\0\0\0\x06\0\0\x01\x13\0\x1f\xf1\x82");

    // A message; with every no-reply flag, only end of message is answered.
    let mut msg = Vec::new();
    msg.extend(packet(b'C', b"client.test\x004\x30\x39127.0.0.1\0"));
    msg.extend(packet(b'D', b"Mi\0Q1\0"));
    msg.extend(packet(b'M', b"<alice@example.com>\0"));
    msg.extend(packet(b'R', b"<bob@example.com>\0"));
    msg.extend(packet(b'L', b"Subject\0 hi\0"));
    msg.extend(packet(b'L', b"X-LM-Tag\0 t1\0"));
    msg.extend(packet(b'L', b"Content-Type\0 text/html\0"));
    msg.extend(packet(b'N', b""));
    msg.extend(packet(b'B', b"<a href=\"https://example.com/\">x</a>\r\n"));
    msg.extend(packet(b'E', b""));
    s.write_all(&msg).await.unwrap();
    assert_eq!(
        read_reply(&mut s).await,
        (b'm', b"\0\0\0\x01X-LM-Tag\0\0".to_vec()),
        "delete the first X-LM-Tag field"
    );
    let (code, body) = read_reply(&mut s).await;
    assert_eq!(code, b'b');
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.starts_with("<a href=\"https://t.example.com/c/"),
        "{body}"
    );
    assert_eq!(support::tracking_tokens(&body, "o").len(), 1, "{body}");
    assert_eq!(read_reply(&mut s).await, (b'c', vec![]));

    // A header packet without its NUL: the message is accepted unchanged.
    let mut bad = Vec::new();
    bad.extend(packet(b'M', b"<alice@example.com>\0"));
    bad.extend(packet(b'R', b"<bob@example.com>\0"));
    bad.extend(packet(b'L', b"Subject\0 no nul"));
    bad.extend(packet(b'N', b""));
    bad.extend(packet(b'B', b"<a href=\"https://example.com/\">x</a>\r\n"));
    bad.extend(packet(b'E', b""));
    s.write_all(&bad).await.unwrap();
    assert_eq!(read_reply(&mut s).await, (b'a', vec![]));

    s.write_all(&packet(b'Q', b"")).await.unwrap();
    relay.stop().await;
    assert!(!sock.exists(), "the socket is removed at shutdown");
}

/// `trackrelay check-config` on `text`: (exit code, stdout + stderr).
fn check_config(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trackrelay.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trackrelay"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_config_names_milter_keys_and_the_example_section_is_valid() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/trackrelay.toml"))
            .unwrap();
    // The commented [milter] section, uncommented, is a valid config.
    let enabled = example
        .replace("# [milter]", "[milter]")
        .replace(
            "# listen = \"127.0.0.1:8891\"",
            "listen = \"127.0.0.1:8891\"",
        )
        .replace("# on_error = \"accept\"", "on_error = \"accept\"")
        .replace("# max_message_bytes = ", "max_message_bytes = ");
    assert!(enabled.contains("\n[milter]\n"), "conf layout changed");
    let (code, out) = check_config(&enabled);
    assert_eq!(code, Some(0), "{out}");

    let broken = enabled
        .replace(
            "listen = \"127.0.0.1:8891\"",
            "listen = \"8891\"\nmax_children = 3",
        )
        .replace("on_error = \"accept\"", "on_error = \"reject\"");
    let (code, out) = check_config(&broken);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("milter.max_children: unknown field"), "{out}");
    let broken = enabled.replace("on_error = \"accept\"", "on_error = \"reject\"");
    let (_, out) = check_config(&broken);
    assert!(
        out.contains("  milter.on_error: \"reject\" is neither \"accept\" nor \"tempfail\""),
        "{out}"
    );
}
