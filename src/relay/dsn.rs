//! Delivery status notifications (RFC 3464) for copies the upstream
//! refused after the relay had already accepted the message, built with
//! mail-builder: a human-readable part, the machine-readable
//! message/delivery-status, and the original headers.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::{BodyPart, MimePart};

use crate::smtp::Reply;

/// The DSN message for `sender` about the `refused` recipients of `original`.
pub fn build(
    hostname: &str,
    sender: &str,
    refused: &[(String, Reply)],
    original: &[u8],
) -> Vec<u8> {
    let mut human = format!(
        "This is the mail relay at {hostname}.\r\n\r\n\
         Your message was delivered to some recipients, but could not be\r\n\
         delivered to the following, and will not be retried:\r\n\r\n"
    );
    let mut status = format!("Reporting-MTA: dns; {hostname}\r\n");
    for (recipient, reply) in refused {
        human.push_str(&format!("  <{recipient}>: {reply}\r\n"));
        let (a, b, c) = reply.enhanced.unwrap_or(if reply.is_transient() {
            (4, 0, 0)
        } else {
            (5, 0, 0)
        });
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {a}.{b}.{c}\r\n\
             Diagnostic-Code: smtp; {}\r\n",
            reply.to_string().replace(['\r', '\n'], " ")
        ));
    }
    let headers = original_headers(original);
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        BodyPart::Multipart(vec![
            MimePart::new("text/plain", human.as_str()),
            // Written as they are (RFC 3464 parts are 7bit text; headers may
            // carry 8-bit UTF-8), not base64, so anyone can read them.
            MimePart::new(
                "message/delivery-status",
                BodyPart::Binary(status.into_bytes().into()),
            )
            .transfer_encoding("7bit"),
            MimePart::new(
                "text/rfc822-headers",
                BodyPart::Binary(headers.to_vec().into()),
            )
            .transfer_encoding("8bit"),
        ]),
    );
    MessageBuilder::new()
        .from((
            "Mail Delivery System",
            format!("MAILER-DAEMON@{hostname}").as_str(),
        ))
        .to(sender)
        .subject("Undelivered Mail Returned to Sender")
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-replied"),
        )
        .body(report)
        .write_to_vec()
        .unwrap_or_default()
}

/// The header block of the original message (up to the empty line).
fn original_headers(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .unwrap_or(message.len());
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_names_each_refused_recipient_with_status() {
        let refused = vec![(
            "carol@example.org".to_string(),
            Reply::new(550, (5, 1, 1), "No such user"),
        )];
        let dsn = build(
            "relay.test",
            "alice@example.com",
            &refused,
            b"Subject: hi\r\nFrom: a@b\r\n\r\nbody",
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(&dsn[..])
            .unwrap();
        let ct = mail_parser::MimeHeaders::content_type(&parsed).unwrap();
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let text = String::from_utf8_lossy(&dsn);
        assert!(
            text.contains("Final-Recipient: rfc822; carol@example.org"),
            "{text}"
        );
        assert!(text.contains("Status: 5.1.1"));
        assert!(text.contains("Action: failed"));
        assert!(text.contains("Subject: hi"), "original headers included");
        assert!(!text.contains("body"), "not the original body");
    }
}
