//! Password verification for AUTH, bounded in cost: at most
//! `auth_concurrency` Argon2 runs at once, each in a memory block that is
//! allocated once and reused, and an unknown user name costs what a known
//! one does.
//!
//! Why: `Argon2::verify_password` allocates its 19 MiB afresh on every try,
//! on whichever blocking thread runs it; with no bound, 20-40 connections
//! looping AUTH took the process from 17 MB to 2.4 GB (the freed blocks
//! stay in glibc's per-thread arenas), and the ~20 ms it takes for a known
//! user against 0.1 ms for an unknown one let names be enumerated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::config::User;
use crate::limits::AuthLimits;

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// No verification slot came free within `auth_wait_seconds`.
    Busy,
}

/// One user's hash, parsed once.
#[derive(Clone)]
struct Credential {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// The configured users and what bounds checking their passwords.
pub struct Passwords {
    users: HashMap<String, Credential>,
    /// Checked for unknown names, so that they take as long; never valid.
    dummy: Credential,
    slots: Semaphore,
    wait: Duration,
    /// Argon2 memory blocks not in use (at most one per slot exists).
    memory: Mutex<Vec<Vec<Block>>>,
    /// Blocks in each: enough for the largest configured hash.
    blocks: usize,
}

impl Passwords {
    pub fn new(users: &[User], limits: &AuthLimits) -> Result<Self, String> {
        let mut parsed = HashMap::new();
        for user in users {
            let credential =
                parse(&user.password_hash).map_err(|e| format!("user {:?}: {e}", user.name))?;
            parsed.insert(user.name.clone(), credential);
        }
        // The dummy costs what the first user's hash costs; its expected
        // output (zeros) is never compared as a success.
        let dummy = match users.first().and_then(|u| parsed.get(&u.name)) {
            Some(first) => Credential {
                salt: b"trackrelay-dummy-salt".to_vec(),
                hash: vec![0; first.hash.len()],
                ..first.clone()
            },
            None => Credential {
                algorithm: Algorithm::default(),
                version: Version::default(),
                params: Params::default(),
                salt: b"trackrelay-dummy-salt".to_vec(),
                hash: vec![0; Params::DEFAULT_OUTPUT_LEN],
            },
        };
        let blocks = parsed
            .values()
            .chain([&dummy])
            .map(|c| c.params.block_count())
            .max()
            .unwrap_or(0);
        Ok(Self {
            users: parsed,
            dummy,
            slots: Semaphore::new(limits.concurrency.max(1)),
            wait: limits.wait,
            memory: Mutex::new(Vec::new()),
            blocks,
        })
    }

    /// Checks `password` for `user` off the async threads, waiting at most
    /// `auth_wait_seconds` for a slot.
    pub async fn verify(self: &Arc<Self>, user: &str, password: &str) -> Verdict {
        let (credential, known) = match self.users.get(user) {
            Some(c) => (c.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let Ok(Ok(_permit)) = tokio::time::timeout(self.wait, self.slots.acquire()).await else {
            return Verdict::Busy;
        };
        let this = self.clone();
        let password = password.as_bytes().to_vec();
        let matched = tokio::task::spawn_blocking(move || this.compute(&credential, &password))
            .await
            .unwrap_or(false);
        if matched && known {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }

    /// Runs Argon2 in a pooled memory block; whether the output matches.
    fn compute(&self, credential: &Credential, password: &[u8]) -> bool {
        let mut memory = self
            .memory
            .lock()
            .map(|mut pool| pool.pop())
            .unwrap_or_default()
            .unwrap_or_else(|| vec![Block::new(); self.blocks]);
        let argon2 = Argon2::new(
            credential.algorithm,
            credential.version,
            credential.params.clone(),
        );
        let mut out = vec![0u8; credential.hash.len()];
        let ok = argon2
            .hash_password_into_with_memory(password, &credential.salt, &mut out, &mut memory[..])
            .is_ok();
        if let Ok(mut pool) = self.memory.lock() {
            pool.push(memory);
        }
        ok && bool::from(out.ct_eq(&credential.hash))
    }
}

/// A PHC string's algorithm, version, parameters, salt and hash.
fn parse(phc: &str) -> Result<Credential, String> {
    let hash = PasswordHash::new(phc).map_err(|e| e.to_string())?;
    let algorithm = Algorithm::try_from(hash.algorithm).map_err(|e| e.to_string())?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).map_err(|e| e.to_string())?,
        None => Version::default(),
    };
    let params = Params::try_from(&hash).map_err(|e| e.to_string())?;
    let salt = hash.salt.ok_or("no salt")?;
    let mut buf = [0u8; 64];
    let salt = salt
        .decode_b64(&mut buf)
        .map_err(|e| e.to_string())?
        .to_vec();
    let output = hash.hash.ok_or("no hash")?.as_bytes().to_vec();
    Ok(Credential {
        algorithm,
        version,
        params,
        salt,
        hash: output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    fn limits(concurrency: usize) -> AuthLimits {
        AuthLimits {
            failures_per_connection: 3,
            concurrency,
            wait: Duration::from_secs(5),
            delay_max: Duration::from_secs(1),
            failure_memory: Duration::from_secs(60),
        }
    }

    fn user(name: &str, password: &str) -> User {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        // Small parameters keep the test quick; the code path is the same.
        let argon2 = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        User {
            name: name.into(),
            password_hash: argon2
                .hash_password(password.as_bytes(), &salt)
                .unwrap()
                .to_string(),
        }
    }

    #[tokio::test]
    async fn right_password_only_for_a_known_user() {
        let p = Arc::new(Passwords::new(&[user("app", "s3cret")], &limits(2)).unwrap());
        assert_eq!(p.verify("app", "s3cret").await, Verdict::Valid);
        assert_eq!(p.verify("app", "wrong").await, Verdict::Invalid);
        assert_eq!(p.verify("nobody", "s3cret").await, Verdict::Invalid);
        // Several tries reuse the blocks: never more than one per slot.
        assert!(p.memory.lock().unwrap().len() <= 2);
    }

    #[tokio::test]
    async fn a_try_that_finds_no_slot_in_time_is_busy() {
        let mut l = limits(1);
        l.wait = Duration::from_millis(10);
        let p = Arc::new(Passwords::new(&[user("app", "x")], &l).unwrap());
        let _taken = p.slots.acquire().await.unwrap();
        assert_eq!(p.verify("app", "x").await, Verdict::Busy);
    }
}
