//! The `format = "lettermint"` endpoints (docs/webhooks.md): requests
//! that the official Lettermint SDKs' `Webhook.verify` (PyPI and npm
//! `lettermint`) accept, so a receiver written for the hosted service
//! takes trackrelay's events unchanged.
//!
//! - Body: `{id, event, timestamp, data}`: the Standard Webhooks body with
//!   `type` named `event`, and `message.relayed` named `message.sent`
//!   (Lettermint's word for "handed to the next server"); `data` is the
//!   same.
//! - Headers: `x-lettermint-signature: t=<unix s>,v1=<hex>` (one `v1` per
//!   secret, so either side of a rotation verifies) and
//!   `x-lettermint-delivery: <unix s>`, equal to `t` as the SDKs require.
//! - Signature: HMAC-SHA256 of `"<t>." + body`, keyed with the secret's
//!   text as written (`whsec_…` included), as the SDKs compute it.
//!
//! The event names in a webhook's `events` list stay trackrelay's; only
//! the body says `message.sent`.

use std::fmt::Write;

use hmac::Mac;
use serde_json::Value;

/// Lettermint's name for one of our event types.
pub fn event_name(event_type: &str) -> &str {
    match event_type {
        "message.relayed" => "message.sent",
        other => other,
    }
}

/// The body of a Standard Webhooks `body` value in Lettermint's shape.
pub fn body(mut standard: Value) -> String {
    if let Some(fields) = standard.as_object_mut()
        && let Some(Value::String(t)) = fields.remove("type")
    {
        let name = event_name(&t).to_owned();
        fields.insert("event".into(), Value::String(name));
    }
    standard.to_string()
}

/// The request headers of one try at `timestamp` (unix seconds).
pub fn headers(secrets: &[Vec<u8>], timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        (
            "x-lettermint-signature",
            signature(secrets, timestamp, body),
        ),
        ("x-lettermint-delivery", timestamp.to_string()),
    ]
}

/// `t=<timestamp>,v1=<hex>[,v1=<hex>…]`.
pub fn signature(secrets: &[Vec<u8>], timestamp: i64, body: &[u8]) -> String {
    let mut out = format!("t={timestamp}");
    for secret in secrets {
        let mut mac = crate::token::hmac_sha256(secret);
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        out.push_str(",v1=");
        for byte in mac.finalize().into_bytes() {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_names_the_event_as_lettermint_does() {
        let standard =
            json!({"id": "1", "type": "message.relayed", "timestamp": "t", "data": {"a": 1}});
        let got: Value = serde_json::from_str(&body(standard)).unwrap();
        assert_eq!(
            got,
            json!({"id": "1", "event": "message.sent", "timestamp": "t", "data": {"a": 1}})
        );
        let click = json!({"type": "message.clicked"});
        assert!(body(click).contains(r#""event":"message.clicked""#));
    }

    /// Computed independently: `printf '1700000000.{}' | openssl dgst
    /// -sha256 -hmac whsec_test`.
    #[test]
    fn signs_the_timestamp_and_body_with_the_secret_text() {
        let sig = signature(&[b"whsec_test".to_vec()], 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn one_v1_per_secret_and_the_delivery_header_is_t() {
        let h = headers(&[vec![1; 16], vec![2; 16]], 42, b"{}");
        assert!(h[0].1.starts_with("t=42,v1="), "{h:?}");
        assert_eq!(h[0].1.matches(",v1=").count(), 2);
        assert_eq!(h[1], ("x-lettermint-delivery", "42".to_owned()));
    }
}
