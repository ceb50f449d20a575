//! `Idempotency-Key` (docs/send-api.md): the first 2xx answer to a key is
//! stored in the database (`send_idempotency`) with a digest of the body;
//! the same key and body within `send.idempotency_hours` gets it again
//! without sending, another body is a 409, and a request still in flight
//! with the key is a 409 too (the SDKs' `ConflictError`). In-flight keys
//! are held in this process; finished ones in the database, so a retry
//! that reaches another node is answered from there.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::reply::SendError;
use crate::storage::{IdempotentResponse, Storage};

/// The keys in flight, per token digest.
#[derive(Debug, Default)]
pub struct InFlight {
    keys: Mutex<HashSet<([u8; 32], String)>>,
}

/// A key claimed for one request; released when dropped (also when the
/// request is cut by its deadline).
#[derive(Debug)]
pub struct Claim {
    set: Arc<InFlight>,
    entry: ([u8; 32], String),
    body_digest: [u8; 32],
}

/// What the stored state says about a key.
pub enum Lookup {
    /// First use (or expired): send, then [`Claim::store`].
    Fresh(Claim),
    /// Answered before: this status and JSON body.
    Replay(u16, Vec<u8>),
}

impl InFlight {
    /// Claims `key` for a request with `body`, or says what to answer.
    pub async fn claim(
        self: &Arc<Self>,
        storage: &Storage,
        token_digest: [u8; 32],
        key: &str,
        body: &[u8],
        window: Duration,
    ) -> Result<Lookup, SendError> {
        let entry = (token_digest, key.to_owned());
        if !self.lock().insert(entry.clone()) {
            return Err(SendError::Conflict(
                "A request with this Idempotency-Key is still being processed.".into(),
            ));
        }
        let claim = Claim {
            set: self.clone(),
            entry,
            body_digest: Sha256::digest(body).into(),
        };
        let stored = storage
            .idempotent(token_digest, key.to_owned())
            .await
            .map_err(|e| SendError::Internal(e.to_string()))?;
        let now = crate::time::now_ms();
        match stored {
            Some(s) if now - s.created_at_ms < window.as_millis() as i64 => {
                if s.body_digest == claim.body_digest {
                    Ok(Lookup::Replay(s.status, s.body))
                } else {
                    Err(SendError::Conflict(
                        "This Idempotency-Key was already used with a different request body."
                            .into(),
                    ))
                }
            }
            _ => Ok(Lookup::Fresh(claim)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<([u8; 32], String)>> {
        // A panic while holding the set leaves it usable.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Claim {
    /// Stores the answer (2xx only: a failure may be retried with the key).
    pub async fn store(&self, storage: &Storage, status: u16, body: &[u8], window: Duration) {
        if !(200..300).contains(&status) {
            return;
        }
        let row = IdempotentResponse {
            token_digest: self.entry.0,
            key: self.entry.1.clone(),
            body_digest: self.body_digest,
            status,
            body: body.to_vec(),
            created_at_ms: crate::time::now_ms(),
        };
        if let Err(e) = storage
            .store_idempotent(row, window.as_millis() as i64)
            .await
        {
            tracing::error!(error = %e, "cannot store the Idempotency-Key response");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.set.lock().remove(&self.entry);
    }
}
