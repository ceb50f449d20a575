//! trackrelay between two real Postfix instances, as it is deployed:
//!
//! ```text
//! python smtplib ─▶ Postfix A (relayhost = trackrelay) ─▶ trackrelay
//!                ─▶ Postfix B (relayhost = smtp-sink) ─▶ smtp-sink ─▶ files
//! ```
//!
//! What arrives at the sink is checked byte for byte: one rewritten copy per
//! recipient with that recipient's tokens, the override headers gone, every
//! other byte as sent, and the Received chain of all four hops. A recipient
//! Postfix B refuses is refused to Postfix A at RCPT time with B's words, so
//! A bounces (5xx) or retries (4xx) exactly as if trackrelay were not there.
//!
//! Needs root and Debian's postfix package (`.ci/packages`).

mod support;

use support::postfix::{Dump, Postfix, Sink, free_addr, header_fields, send_with_smtplib};
use support::relay::{Running, TRACKED, start};

const BOUNDARY: &str = "=_alt_7f3a";
const TEXT_PART: &str = "Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
Hi there,\r\n\
\r\n\
Read the news at https://example.com/welcome?a=1&b=2\r\n\
.a line that starts with a dot (dot-stuffed on the wire)\r\n\
-- \r\n\
The Example team\r\n";
const HTML_PART: &str = "Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
<html><body>\r\n\
<p>Hi there,</p>\r\n\
<p>Read <a href=\"https://example.com/welcome?a=1&amp;b=2\">the news</a>\r\n\
or visit <a href=\"https://shop.example.org/sale\">the shop</a>.</p>\r\n\
<p><a href=\"mailto:help@example.com\">Write to us</a></p>\r\n\
</body></html>\r\n";
/// What the HTML links should redirect to, in document order.
const LINK_URLS: [&str; 2] = [
    "https://example.com/welcome?a=1&b=2",
    "https://shop.example.org/sale",
];

/// The header block as sent, without the X-LM-* fields.
fn kept_headers() -> String {
    format!(
        "From: Alice <alice@example.com>\r\n\
         To: bob@example.com, carol@example.org\r\n\
         Subject: Postfix on both sides\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <pf-e2e-1@example.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"{BOUNDARY}\"\r\n"
    )
}

/// A multipart/alternative message (CRLF) with a tag and an override that
/// switches open tracking off for this message only.
fn message() -> Vec<u8> {
    let headers = kept_headers().replacen(
        "MIME-Version",
        "X-LM-Tag: welcome\r\nX-LM-Override-Track-Opens: false\r\nMIME-Version",
        1,
    );
    format!(
        "{headers}\r\nThis is a MIME message.\r\n\r\n--{BOUNDARY}\r\n{TEXT_PART}\r\n\
         --{BOUNDARY}\r\n{HTML_PART}\r\n--{BOUNDARY}--\r\n"
    )
    .into_bytes()
}

/// The whole chain; every part stops when dropped, `stop` stops them in
/// order (senders first).
struct Chain {
    a: Postfix,
    b: Postfix,
    relay: Running,
    sink: Sink,
}

/// Starts the chain; Postfix B gets `b_main_cf` and `b_files` on top of
/// its defaults.
async fn chain(b_main_cf: &'static str, b_files: &'static [(&'static str, &'static str)]) -> Chain {
    let sink = Sink::start();
    let sink_addr = sink.addr;
    let b_addr = free_addr();
    let upstream = format!("url = \"smtp://{b_addr}\"\nstarttls = \"off\"\ntimeout_seconds = 30");
    let relay = start("", &upstream, TRACKED).await;
    let relay_addr = relay.smtp;
    // Each instance takes a few seconds to start: start both at once.
    let b = tokio::task::spawn_blocking(move || {
        Postfix::start("b", b_addr, sink_addr, b_main_cf, b_files)
    });
    let a =
        tokio::task::spawn_blocking(move || Postfix::start("a", free_addr(), relay_addr, "", &[]));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    Chain { a, b, relay, sink }
}

impl Chain {
    /// Every log tail, for a failed assertion.
    fn logs(&self) -> String {
        format!("{}\n{}", self.a.maillog_tail(20), self.b.maillog_tail(20))
    }

    async fn stop(self) {
        let Chain { a, b, relay, sink } = self;
        drop(a);
        relay.stop().await;
        drop((b, sink));
    }
}

/// Checks one copy at the sink against what the client sent; returns the
/// message id its tokens carry.
fn check_copy(dump: &Dump, recipient: &str, sent: &[u8]) -> uuid::Uuid {
    assert_eq!(dump.sender, "alice@example.com", "{}", dump.file.display());
    assert_eq!(dump.recipients, [recipient], "one copy per recipient");
    let text = String::from_utf8(dump.message.clone()).unwrap();
    let sent = String::from_utf8(sent.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let (_, sent_body) = sent.split_once("\r\n\r\n").unwrap();

    // Header fields: the sent ones in order, X-LM-* gone, plus the trace.
    let (received, others) = header_fields(&format!("{head}\r\n"));
    assert_eq!(others.concat(), kept_headers(), "header fields");
    check_received_chain(&received, recipient);

    // Body: every MIME segment as sent but the HTML one.
    let delimiter = format!("--{BOUNDARY}");
    let got: Vec<&str> = body.split(&delimiter).collect();
    let want: Vec<&str> = sent_body.split(&delimiter).collect();
    assert_eq!(got.len(), want.len(), "MIME structure kept:\n{body}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if i != 2 {
            assert_eq!(g, w, "segment {i} byte-identical");
        }
    }
    check_html(got[2], want[2], recipient)
}

/// Top to bottom: the sink's, Postfix B's, trackrelay's, Postfix A's.
fn check_received_chain(received: &[String], recipient: &str) {
    let hops = [
        ["from b.test", "by sink.test (smtp-sink)"],
        ["from relay.test", "by b.test (Postfix)"],
        ["from a.test", "by relay.test (trackrelay)"],
        ["from client.test", "by a.test (Postfix)"],
    ];
    assert_eq!(received.len(), hops.len(), "{received:#?}");
    for (field, hop) in received.iter().zip(hops) {
        for needle in hop {
            assert!(field.contains(needle), "{needle:?} not in {field}");
        }
    }
    // Postfix B names the single recipient of the copy it received.
    assert!(
        received[1].contains(&format!("for <{recipient}>")),
        "{}",
        received[1]
    );
}

/// The HTML segment: only the two http(s) hrefs changed, into click URLs
/// for this recipient; no pixel (the override said so); mailto: kept.
fn check_html(got: &str, sent: &str, recipient: &str) -> uuid::Uuid {
    let keys = support::keys();
    assert!(
        support::tracking_tokens(got, "o").is_empty(),
        "X-LM-Override-Track-Opens: false means no pixel:\n{got}"
    );
    let tokens = support::tracking_tokens(got, "c");
    assert_eq!(tokens.len(), LINK_URLS.len(), "{got}");
    let mut restored = got.to_owned();
    let mut message_ids = Vec::new();
    for (token, url) in tokens.iter().zip(LINK_URLS) {
        let (claims, _) = keys
            .verify(token)
            .unwrap_or_else(|e| panic!("{token}: {e:?}"));
        assert_eq!(claims.url.as_deref(), Some(url));
        assert_eq!(claims.recipient_id, Some(keys.recipient_id(recipient)));
        message_ids.push(claims.message_id);
        let tracking_url = format!("{}/c/{token}", support::BASE);
        restored = restored.replacen(&tracking_url, &url.replace('&', "&amp;"), 1);
    }
    assert_eq!(message_ids[0], message_ids[1], "one message id per copy");
    assert_eq!(restored, sent, "nothing but the hrefs changed");
    message_ids[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_to_trackrelay_to_postfix_one_rewritten_copy_per_recipient() {
    let chain = chain("", &[]).await;
    let sent = message();
    let to = ["bob@example.com", "carol@example.org"];
    send_with_smtplib(chain.a.addr, "alice@example.com", &to, &sent);
    // Postfix B logs "sent" once the sink has answered the final dot.
    chain.b.wait_for_log(&["status=sent"], 2);
    let mut dumps = chain.sink.dumps();
    assert_eq!(dumps.len(), 2, "two copies\n{}", chain.logs());
    dumps.sort_by(|x, y| x.recipients.cmp(&y.recipients));
    let ids: Vec<_> = dumps
        .iter()
        .zip(to)
        .map(|(d, r)| check_copy(d, r, &sent))
        .collect();
    assert_ne!(ids[0], ids[1], "each copy has its own message id");
    // Postfix A heard Postfix B's own reply, passed through by trackrelay.
    let a_sent = chain.a.wait_for_log(&["status=sent", "queued as "], 2);
    for line in &a_sent {
        let queue_id = line.split("queued as ").nth(1).unwrap();
        let queue_id = queue_id.trim_end_matches(')');
        assert!(
            !chain
                .b
                .log_lines(&[&format!("{queue_id}: from=<alice@example.com>")])
                .is_empty(),
            "{queue_id} is not a Postfix B queue id\n{}",
            chain.logs()
        );
    }
    chain.stop().await;
}

/// Recipients of `sender`'s messages still in `postfix`'s queue.
fn waiting_at(postfix: &Postfix, sender: &str) -> Vec<String> {
    postfix
        .queue()
        .iter()
        .filter(|m| m["sender"] == sender)
        .flat_map(|m| m["recipients"].as_array().unwrap().clone())
        .map(|r| r["address"].as_str().unwrap().to_owned())
        .collect()
}

/// Postfix B's recipient policy: carol is refused for good, dave for now.
const B_REFUSES: &str = "smtpd_recipient_restrictions = \
    check_recipient_access texthash:$config_directory/recipient_access, \
    permit_mynetworks, reject_unauth_destination";
const RECIPIENT_ACCESS: &[(&str, &str)] = &[(
    "recipient_access",
    "carol@example.org 550 5.1.1 carol is not here\n\
     dave@example.org 450 4.2.1 dave must wait\n",
)];

#[tokio::test(flavor = "multi_thread")]
async fn refusals_by_the_upstream_postfix_reach_the_sending_postfix() {
    let chain = chain(B_REFUSES, RECIPIENT_ACCESS).await;
    let sent = message();
    let to = ["bob@example.com", "carol@example.org", "dave@example.org"];
    send_with_smtplib(chain.a.addr, "alice@example.com", &to, &sent);

    // Postfix A heard B's refusals at RCPT time, with B's words.
    let carol = chain
        .a
        .wait_for_log(&["to=<carol@example.org>", "status=bounced"], 1);
    assert!(
        carol[0].contains("said: 550 5.1.1 <carol@example.org>: Recipient address rejected: carol is not here (in reply to RCPT TO command)"),
        "{}",
        carol[0]
    );
    let dave = chain
        .a
        .wait_for_log(&["to=<dave@example.org>", "status=deferred"], 1);
    assert!(
        dave[0].contains("said: 450 4.2.1 <dave@example.org>: Recipient address rejected: dave must wait (in reply to RCPT TO command)"),
        "{}",
        dave[0]
    );
    // Dave's copy stays queued at A, to be retried: nothing was lost. (Bob
    // leaves the queue a moment after his delivery is logged: poll.)
    chain
        .a
        .wait_for_log(&["to=<bob@example.com>", "status=sent"], 1);
    support::postfix::wait_for(
        "Postfix A's queue to hold only dave's copy",
        support::postfix::WAIT,
        || (waiting_at(&chain.a, "alice@example.com") == ["dave@example.org"]).then_some(()),
        || format!("{:?}\n{}", chain.a.queue(), chain.logs()),
    );

    // Bob's copy and A's bounce to alice both went through the chain.
    chain.b.wait_for_log(&["status=sent"], 2);
    let dumps = chain.sink.dumps();
    assert_eq!(dumps.len(), 2, "{dumps:#?}\n{}", chain.logs());
    let (copies, bounces): (Vec<&Dump>, Vec<&Dump>) =
        dumps.iter().partition(|d| d.sender == "alice@example.com");
    assert_eq!(copies.len(), 1);
    check_copy(copies[0], "bob@example.com", &sent);
    let bounce = bounces[0];
    assert_eq!(bounce.sender, "", "a bounce has a null sender");
    assert_eq!(bounce.recipients, ["alice@example.com"]);
    // Postfix folds long fields with CRLF and four spaces.
    let text = String::from_utf8_lossy(&bounce.message).replace("\r\n    ", " ");
    assert!(
        text.contains(
            "Diagnostic-Code: smtp; 550 5.1.1 <carol@example.org>: \
             Recipient address rejected: carol is not here"
        ),
        "{text}"
    );
    assert!(text.contains("Final-Recipient: rfc822; carol@example.org"));
    assert!(!text.contains("dave@example.org"), "dave is not bounced");
    // The returned message inside the bounce is not tracked.
    assert!(!text.contains(support::BASE), "{text}");
    chain.stop().await;
}
