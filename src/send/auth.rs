//! Who may send: the `x-lettermint-token` header (or `Authorization:
//! Bearer`, as the SDKs' team client sends its token) against
//! `[[send.tokens]]`, compared in constant time over SHA-256 digests (so
//! neither the content nor the length of a token leaks through timing);
//! and each token's rate, `send.rate_per_minute`, as a token bucket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::send::SendToken;

/// A configured token, by digest.
#[derive(Debug)]
pub struct Tokens {
    list: Vec<(SendToken, [u8; 32])>,
}

/// The token a request presented, once recognised.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub token: &'a SendToken,
    /// SHA-256 of the token: the rate bucket's and idempotency keys' name.
    pub digest: [u8; 32],
}

impl Tokens {
    pub fn new(tokens: &[SendToken]) -> Self {
        let list = tokens
            .iter()
            .map(|t| (t.clone(), Sha256::digest(t.token.as_bytes()).into()))
            .collect();
        Self { list }
    }

    /// The caller whose token `headers` carry, if any is configured.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller<'_>> {
        let presented = presented(headers)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Every entry is compared: the time does not say which matched.
        let mut found = None;
        for (token, d) in &self.list {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(Caller { token, digest });
            }
        }
        found
    }
}

/// The token of `x-lettermint-token`, else of `Authorization: Bearer`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-lettermint-token") {
        return v.to_str().ok().map(str::trim);
    }
    let auth = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Per-token token buckets: `per_minute` messages, refilled evenly.
#[derive(Debug)]
pub struct Rate {
    per_minute: f64,
    buckets: Mutex<HashMap<[u8; 32], (f64, Instant)>>,
}

impl Rate {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` messages from the caller's bucket, or says how long until
    /// they are there (more than a bucket holds: until it is full).
    pub fn take(&self, digest: [u8; 32], n: usize, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (level, at) = buckets.entry(digest).or_insert((self.per_minute, now));
        let per_second = self.per_minute / 60.0;
        *level = (*level + now.duration_since(*at).as_secs_f64() * per_second).min(self.per_minute);
        *at = now;
        let wanted = (n as f64).min(self.per_minute);
        if *level >= wanted {
            *level -= n as f64;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            ((wanted - *level) / per_second).ceil(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str) -> SendToken {
        SendToken {
            token: t.into(),
            routes: Vec::new(),
        }
    }

    #[test]
    fn either_header_carries_the_token() {
        let tokens = Tokens::new(&[token("first"), token("second")]);
        let mut h = HeaderMap::new();
        h.insert("x-lettermint-token", "second".parse().expect("ASCII"));
        assert_eq!(
            tokens.caller(&h).map(|c| c.token.token.as_str()),
            Some("second")
        );
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer first".parse().expect("ASCII"));
        assert_eq!(
            tokens.caller(&h).map(|c| c.token.token.as_str()),
            Some("first")
        );
        h.insert("authorization", "Bearer firs".parse().expect("ASCII"));
        assert!(tokens.caller(&h).is_none());
    }

    #[test]
    fn the_bucket_empties_and_refills() {
        let rate = Rate::new(60);
        let t0 = Instant::now();
        assert!(rate.take([1; 32], 60, t0).is_ok());
        assert_eq!(rate.take([1; 32], 1, t0), Err(Duration::from_secs(1)));
        assert!(rate.take([2; 32], 1, t0).is_ok(), "buckets are per token");
        assert!(rate.take([1; 32], 2, t0 + Duration::from_secs(2)).is_ok());
    }
}
