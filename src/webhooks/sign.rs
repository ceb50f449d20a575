//! Standard Webhooks signatures: `v1,` and the base64 HMAC-SHA256 of
//! `"{webhook-id}.{webhook-timestamp}.{body}"` under the secret's bytes,
//! one per active secret, separated by spaces (so a receiver holding
//! either the old or the new secret verifies during a rotation).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;

/// The request headers of one try at `timestamp` (unix seconds) of the
/// delivery `id`.
pub fn headers(
    secrets: &[Vec<u8>],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature(secrets, id, timestamp, body)),
    ]
}

/// The `webhook-signature` header value.
pub fn signature(secrets: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut out = String::new();
    for secret in secrets {
        let mut mac = crate::token::hmac_sha256(secret);
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("v1,");
        out.push_str(&STANDARD.encode(mac.finalize().into_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode_secret;

    /// The test vector of the Standard Webhooks reference libraries.
    #[test]
    fn matches_the_reference_vector() {
        let secret = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn one_signature_per_secret() {
        let sig = signature(&[vec![1; 32], vec![2; 32]], "id", 1, b"{}");
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }
}
