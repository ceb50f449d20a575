//! A validated [`Email`] becomes RFC 5322 bytes with mail-builder: text
//! and html as multipart/alternative, inline images (`content_id`) beside
//! the html in multipart/related, attachments around it all in
//! multipart/mixed; non-ASCII header text as encoded words (RFC 2047),
//! Message-ID and Date set here. `settings` and `tag` become the
//! `X-LM-Override-Track-*` and `X-LM-Tag` fields an SMTP client would
//! write, so the relay's rewrite treats both paths the same way (and
//! removes those fields before relaying). No I/O.

use std::borrow::Cow;

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
use uuid::Uuid;

use super::request::{Attachment, Email, decode_content, split_address};

/// The built message and its envelope.
#[derive(Debug)]
pub struct Built {
    /// The `Message-ID` without angle brackets; `message_id` of the reply.
    pub message_id: String,
    /// Envelope sender: the from address.
    pub sender: String,
    /// Envelope recipients: to, cc and bcc, each once.
    pub recipients: Vec<String>,
    /// The whole message, CRLF line ends.
    pub bytes: Vec<u8>,
    /// The request's `metadata` (stored with each copy, never a header);
    /// `None` when it has none.
    pub metadata: Option<serde_json::Value>,
}

/// Builds `email` (already validated); `hostname` is Message-ID's right side.
pub fn build(email: &Email, hostname: &str) -> Built {
    let id = Uuid::now_v7();
    let message_id = email
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("message-id"))
        .map(|(_, v)| v.trim().trim_matches(['<', '>']).to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("{id}@{hostname}"));
    let from = email.from.as_deref().unwrap_or_default();
    let mut builder = MessageBuilder::new()
        .from(address(from))
        .to(list(email.to.as_deref().unwrap_or_default()))
        .subject(email.subject.clone().unwrap_or_default())
        .message_id(MessageId::new(message_id.clone()));
    if !email.cc.is_empty() {
        builder = builder.cc(list(&email.cc));
    }
    if !email.reply_to.is_empty() {
        builder = builder.reply_to(list(&email.reply_to));
    }
    builder = custom_headers(builder, email);
    let body = body(email);
    let bytes = builder.body(body).write_to_vec().unwrap_or_default();
    Built {
        message_id,
        sender: split_address(from).1.to_owned(),
        recipients: email.recipients(),
        bytes,
        metadata: (!email.metadata.is_empty()).then(|| serde_json::json!(email.metadata)),
    }
}

/// The request's `headers`, then the `X-LM-*` fields for settings and tags.
fn custom_headers<'a>(mut builder: MessageBuilder<'a>, email: &'a Email) -> MessageBuilder<'a> {
    let settings = &email.settings;
    for (name, value) in &email.headers {
        let lower = name.to_ascii_lowercase();
        // Message-ID is set above; settings beat a header saying otherwise.
        let replaced = lower == "message-id"
            || lower == "x-lm-preserve-message-id"
            || (lower == "x-lm-override-track-opens" && settings.track_opens.is_some())
            || (lower == "x-lm-override-track-clicks" && settings.track_clicks.is_some());
        if !replaced {
            builder = builder.header(name.as_str(), Text::new(one_line(value)));
        }
    }
    let overrides = [
        ("X-LM-Override-Track-Opens", settings.track_opens),
        ("X-LM-Override-Track-Clicks", settings.track_clicks),
    ];
    for (name, value) in overrides {
        if let Some(on) = value {
            builder = builder.header(name, Text::new(if on { "true" } else { "false" }));
        }
    }
    let tags = email.tag.iter().filter(|t| !t.is_empty()).cloned();
    let pairs = email.tags.iter().map(|t| format!("{}:{}", t.name, t.value));
    for tag in tags.chain(pairs) {
        builder = builder.header("X-LM-Tag", Text::new(tag));
    }
    builder
}

/// The MIME tree: (text | html+inline) alternative, inside mixed with the
/// attachments.
fn body(email: &Email) -> MimePart<'static> {
    let (inline, attached): (Vec<&Attachment>, Vec<&Attachment>) = email
        .attachments
        .iter()
        .partition(|a| a.content_id.is_some() && email.html.is_some());
    let html = email.html.clone().map(|h| {
        let part = MimePart::new("text/html", h);
        if inline.is_empty() {
            part
        } else {
            let mut parts = vec![part];
            parts.extend(inline.iter().map(|a| file_part(a).inline()));
            MimePart::new("multipart/related", parts)
        }
    });
    let text = email.text.clone().map(|t| MimePart::new("text/plain", t));
    let content = match (text, html) {
        (Some(t), Some(h)) => MimePart::new("multipart/alternative", vec![t, h]),
        (Some(t), None) => t,
        (None, Some(h)) => h,
        // Validation requires one of them.
        (None, None) => MimePart::new("text/plain", ""),
    };
    if attached.is_empty() {
        return content;
    }
    let mut parts = vec![content];
    parts.extend(
        attached
            .iter()
            .map(|a| file_part(a).attachment(a.filename.clone())),
    );
    MimePart::new("multipart/mixed", parts)
}

/// One attachment's part (base64 by mail-builder), with its Content-ID.
fn file_part(a: &Attachment) -> MimePart<'static> {
    let bytes = decode_content(&a.content).unwrap_or_default();
    let content_type = a
        .content_type
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| guess_type(&a.filename).to_owned());
    let part = MimePart::new(content_type, bytes);
    match &a.content_id {
        // The hosted API's rule: an id without `@` gets `@lm`.
        Some(cid) if cid.contains('@') => part.cid(cid.clone()),
        Some(cid) => part.cid(format!("{cid}@lm")),
        None => part,
    }
}

/// The type of a file by its extension, for attachments sent without one.
fn guess_type(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("csv") => "text/csv",
        Some("html" | "htm") => "text/html",
        Some("ics") => "text/calendar",
        Some("zip") => "application/zip",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn address(text: &str) -> Address<'static> {
    match split_address(text) {
        (Some(name), addr) => Address::new_address(Some(name.to_owned()), addr.to_owned()),
        (None, addr) => Address::new_address(None::<String>, addr.to_owned()),
    }
}

fn list(items: &[String]) -> Address<'static> {
    Address::new_list(items.iter().map(|a| address(a)).collect())
}

/// Line breaks and control characters become spaces (the hosted API
/// repairs them the same way): a value cannot add a header field.
fn one_line(value: &str) -> Cow<'_, str> {
    if value.chars().any(char::is_control) {
        Cow::Owned(
            value
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(json: serde_json::Value) -> Email {
        serde_json::from_value(json).expect("test email parses")
    }

    #[test]
    fn html_with_an_inline_image_and_a_file_is_mixed_related_alternative() {
        let e = email(serde_json::json!({
            "from": "Zoë <z@a.test>", "to": ["b@b.test"], "cc": ["c@c.test"], "bcc": ["d@d.test"],
            "subject": "Grüße", "text": "hello", "html": "<img src=\"cid:logo\">",
            "headers": {"X-Custom": "a\r\nBcc: evil@x.test"},
            "settings": {"track_opens": false}, "tag": "welcome",
            "attachments": [
                {"filename": "logo.png", "content": "iVBORw0=", "content_id": "logo"},
                {"filename": "a.pdf", "content": "JVBERi0="}
            ]
        }));
        let built = build(&e, "relay.test");
        let text = String::from_utf8(built.bytes).expect("ASCII message");
        assert!(text.contains("multipart/mixed"), "{text}");
        assert!(text.contains("multipart/related"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(text.contains("Content-ID: <logo@lm>"), "{text}");
        assert!(text.contains("=?utf-8?"), "{text}");
        assert!(text.contains("X-LM-Override-Track-Opens: false"), "{text}");
        assert!(text.contains("X-LM-Tag: welcome"), "{text}");
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(!text.contains("d@d.test"), "bcc is envelope only: {text}");
        assert_eq!(built.sender, "z@a.test");
        assert_eq!(built.recipients, ["b@b.test", "c@c.test", "d@d.test"]);
        assert!(built.message_id.ends_with("@relay.test"));
    }
}
