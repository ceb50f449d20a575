//! One email of `POST /v1/send` as the Lettermint SDKs send it (their
//! `SendMailRequest`, docs/send-api.md), and its validation. No I/O: the
//! JSON in, a checked [`Email`] or the field errors out, with the field
//! names and messages the SDKs show (`{"message", "errors"}` on 422).

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

/// Longest subject (RFC 5322 §2.1.1 line length), as the hosted API.
pub const SUBJECT_MAX: usize = 998;
/// Shortest html or text body, as the hosted API.
const BODY_MIN: usize = 3;
/// Idempotency keys of batch items: 1 to 255 characters (SDK docs).
const KEY_MAX: usize = 255;
/// Metadata entries of one email.
const METADATA_MAX: usize = 50;
/// Header names the API sets itself: a custom header may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// The request body of one email, as the SDKs serialise it. Fields the
/// hosted service has and trackrelay does not (`scheduled_at`,
/// `sandbox_result`, `settings.tls`) are refused by [`Email::validate`].
#[derive(Debug, Deserialize)]
pub struct Email {
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<Vec<String>>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    #[serde(default)]
    pub reply_to: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub tags: Vec<TagInput>,
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub scheduled_at: Option<serde_json::Value>,
    #[serde(default)]
    pub sandbox_result: Option<serde_json::Value>,
    /// Batch items only: this email's own idempotency key.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// `tags[]`: a name/value pair (stored as the tag `name:value`).
#[derive(Debug, Deserialize)]
pub struct TagInput {
    pub name: String,
    pub value: String,
}

/// `settings`: per-email tracking, exactly as the `X-LM-Override-Track-*`
/// headers (absent: the route's setting stands).
#[derive(Debug, Default, Deserialize)]
pub struct Settings {
    pub track_opens: Option<bool>,
    pub track_clicks: Option<bool>,
    #[serde(default)]
    pub tls: Option<serde_json::Value>,
}

/// `attachments[]`: base64 content; `content_id` makes it inline.
#[derive(Debug, Deserialize)]
pub struct Attachment {
    pub filename: String,
    pub content: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content_id: Option<String>,
}

/// What was wrong, by field (`to.1`, `attachments.0.content`), each with
/// its messages: the 422 body's `errors`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Limits the validation checks, from `[send]`.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_recipients: usize,
}

impl Email {
    /// Checks every field; `prefix` names the batch item (`0.to`).
    pub fn validate(&self, bounds: Bounds, prefix: &str) -> Result<(), FieldErrors> {
        let mut e = Errors {
            prefix,
            list: FieldErrors::new(),
        };
        self.check_addresses(&mut e, bounds);
        self.check_content(&mut e);
        self.check_extras(&mut e);
        if e.list.is_empty() {
            Ok(())
        } else {
            Err(e.list)
        }
    }

    /// Every envelope recipient once, in order: to, cc, bcc.
    pub fn recipients(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let listed = self.to.iter().flatten().chain(&self.cc).chain(&self.bcc);
        for r in listed.map(|r| split_address(r).1.to_owned()) {
            if !all.iter().any(|a| a.eq_ignore_ascii_case(&r)) {
                all.push(r);
            }
        }
        all
    }

    fn check_addresses(&self, e: &mut Errors<'_>, bounds: Bounds) {
        match self.from.as_deref() {
            None | Some("") => e.add("from", "The from field is required."),
            Some(f) if !is_address(f) => {
                e.add("from", "The from field must be a valid email address.")
            }
            _ => {}
        }
        let to = self.to.as_deref().unwrap_or_default();
        if to.is_empty() {
            e.add("to", "The to field is required.");
        }
        for (field, list) in [("to", to), ("cc", &self.cc), ("bcc", &self.bcc)] {
            for (i, a) in list.iter().enumerate() {
                if !is_address(a) {
                    e.add(
                        &format!("{field}.{i}"),
                        &format!("The {field}.{i} field must be a valid email address."),
                    );
                }
            }
        }
        for (i, a) in self.reply_to.iter().enumerate() {
            if !is_address(a) {
                e.add(
                    &format!("reply_to.{i}"),
                    &format!("The reply_to.{i} field must be a valid email address."),
                );
            }
        }
        let count = self.recipients().len();
        if count > bounds.max_recipients {
            e.add(
                "to",
                &format!(
                    "At most {} recipients (to, cc and bcc together) are allowed; this email has {count}.",
                    bounds.max_recipients
                ),
            );
        }
    }

    fn check_content(&self, e: &mut Errors<'_>) {
        match self.subject.as_deref() {
            None | Some("") => e.add("subject", "The subject field is required."),
            Some(s) if s.chars().count() > SUBJECT_MAX => e.add(
                "subject",
                &format!("The subject field must not be greater than {SUBJECT_MAX} characters."),
            ),
            _ => {}
        }
        let short = |b: &Option<String>| b.as_ref().is_none_or(|b| b.chars().count() < BODY_MIN);
        if short(&self.html) && short(&self.text) {
            e.add(
                "html",
                &format!(
                    "The html field is required when text is not present (at least {BODY_MIN} characters)."
                ),
            );
        }
        for (i, a) in self.attachments.iter().enumerate() {
            if a.filename.trim().is_empty() {
                e.add(
                    &format!("attachments.{i}.filename"),
                    &format!("The attachments.{i}.filename field is required."),
                );
            }
            if decode_content(&a.content).is_none() {
                e.add(
                    &format!("attachments.{i}.content"),
                    &format!("The attachments.{i}.content field must be valid base64."),
                );
            }
        }
    }

    fn check_extras(&self, e: &mut Errors<'_>) {
        for name in self.headers.keys() {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b':');
            if !ok {
                e.add(
                    &format!("headers.{name}"),
                    "Header names must be printable ASCII without a colon.",
                );
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                e.add(
                    &format!("headers.{name}"),
                    &format!("The {name} header is set from the request's own field."),
                );
            }
        }
        for (i, t) in self.tags.iter().enumerate() {
            if !is_tag_part(&t.name, 32) || !is_tag_part(&t.value, 64) {
                e.add(
                    &format!("tags.{i}"),
                    "Message tag names must match ^[A-Za-z0-9_-]{1,32}$ and values ^[A-Za-z0-9_-]{1,64}$.",
                );
            }
        }
        if let Some(tag) = &self.tag
            && (tag.chars().count() > 128 || tag.chars().any(char::is_control))
        {
            e.add(
                "tag",
                "The tag field must be at most 128 characters without control characters.",
            );
        }
        if self.metadata.len() > METADATA_MAX
            || self
                .metadata
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 1024)
        {
            e.add(
                "metadata",
                &format!("At most {METADATA_MAX} metadata entries, keys 1 to 64 and values up to 1024 bytes."),
            );
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.chars().count() > KEY_MAX)
        {
            e.add(
                "idempotency_key",
                "The idempotency_key field must be 1 to 255 characters.",
            );
        }
        let unsupported = [
            ("scheduled_at", self.scheduled_at.is_some()),
            ("sandbox_result", self.sandbox_result.is_some()),
            ("settings.tls", self.settings.tls.is_some()),
        ];
        for (field, present) in unsupported {
            if present {
                e.add(
                    field,
                    &format!("The {field} field is not supported by trackrelay."),
                );
            }
        }
    }
}

/// The attachment's bytes: standard base64, line breaks allowed.
pub fn decode_content(content: &str) -> Option<Vec<u8>> {
    let compact: String = content
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

/// `Name <addr>` → (`Some("Name")`, `addr`); a bare address → (`None`, it).
pub fn split_address(text: &str) -> (Option<&str>, &str) {
    let text = text.trim();
    match (text.rfind('<'), text.ends_with('>')) {
        (Some(open), true) => {
            let name = text[..open].trim().trim_matches('"').trim();
            let addr = text[open + 1..text.len() - 1].trim();
            ((!name.is_empty()).then_some(name), addr)
        }
        _ => (None, text),
    }
}

/// A plausible mailbox: one `@`, a local part and a domain, no spaces,
/// controls or brackets (the upstream judges the rest).
fn is_address(text: &str) -> bool {
    let addr = split_address(text).1;
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let clean = |s: &str| {
        !s.is_empty()
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>,;".contains(c))
    };
    clean(local) && clean(domain) && !domain.contains('@') && domain.contains('.')
        || (clean(local) && domain == "localhost")
}

fn is_tag_part(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Field errors under construction, with the batch item's prefix.
struct Errors<'a> {
    prefix: &'a str,
    list: FieldErrors,
}

impl Errors<'_> {
    fn add(&mut self, field: &str, message: &str) {
        let key = if self.prefix.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.prefix)
        };
        self.list.entry(key).or_default().push(message.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(json: serde_json::Value) -> Email {
        serde_json::from_value(json).expect("test email parses")
    }

    const BOUNDS: Bounds = Bounds { max_recipients: 3 };

    #[test]
    fn a_minimal_email_is_valid() {
        let e = email(serde_json::json!({
            "from": "Acme <hello@acme.test>", "to": ["a@b.test"], "subject": "Hi", "text": "Hello"
        }));
        assert_eq!(e.validate(BOUNDS, ""), Ok(()));
        assert_eq!(e.recipients(), vec!["a@b.test"]);
    }

    #[test]
    fn every_problem_is_named_by_field() {
        let e = email(serde_json::json!({
            "from": "nobody", "to": [], "subject": "x".repeat(999), "text": "hi",
            "attachments": [{"filename": "a.txt", "content": "***"}],
            "headers": {"Subject": "no", "Bad Name": "x"}, "scheduled_at": "tomorrow"
        }));
        let errors = e.validate(BOUNDS, "2").unwrap_err();
        let keys: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "2.attachments.0.content",
                "2.from",
                "2.headers.Bad Name",
                "2.headers.Subject",
                "2.html",
                "2.scheduled_at",
                "2.subject",
                "2.to"
            ]
        );
    }

    #[test]
    fn recipients_are_counted_once_across_to_cc_and_bcc() {
        let e = email(serde_json::json!({
            "from": "a@b.test", "to": ["x@y.test", "X <x@Y.test>"], "cc": ["c@y.test"],
            "bcc": ["d@y.test", "e@y.test"], "subject": "s", "html": "<p>hi</p>"
        }));
        assert_eq!(e.recipients().len(), 4);
        let errors = e.validate(BOUNDS, "").unwrap_err();
        assert!(errors["to"][0].contains("At most 3"), "{errors:?}");
    }

    #[test]
    fn display_names_are_split_off() {
        assert_eq!(
            split_address("\"Doe, J\" <j@d.test>"),
            (Some("Doe, J"), "j@d.test")
        );
        assert_eq!(split_address(" j@d.test "), (None, "j@d.test"));
    }
}
