//! Hits under load for the fault tests: concurrent clients send opens and
//! clicks (real HTTP, each hit with a token of its own message id) to a
//! tracking listener until told to stop, and remember which hits got
//! their answer. A click's answer counts only if it redirects to the URL
//! its token carries.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use trackrelay::token::Kind;
use uuid::Uuid;

use super::server::{HOST, Http, next_week, token};

/// Which hits the clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Opens and clicks in turn.
    OpensAndClicks,
    /// Clicks only.
    Clicks,
}

/// Clients sending hits until [`Load::finish`] (or their first failure).
pub struct Load {
    answered: Arc<Mutex<Vec<Uuid>>>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

/// What a load run ended with.
#[derive(Debug)]
pub struct Outcome {
    /// Message ids of the hits whose answer came (200, or 302 to the
    /// token's URL).
    pub answered: Vec<Uuid>,
    /// Why clients stopped early (a refused connection, a wrong answer).
    pub failures: Vec<String>,
}

impl Outcome {
    /// The answered hits not in `stored`.
    pub fn missing(&self, stored: &HashSet<Uuid>) -> Vec<Uuid> {
        self.answered
            .iter()
            .filter(|id| !stored.contains(id))
            .copied()
            .collect()
    }

    /// Panics, naming how many and one, unless every answered hit is in
    /// `stored`.
    pub fn assert_all_stored(&self, stored: &HashSet<Uuid>) {
        let missing = self.missing(stored);
        assert!(
            missing.is_empty(),
            "{} of {} answered hits not stored, e.g. {}",
            missing.len(),
            self.answered.len(),
            missing[0]
        );
    }
}

impl Load {
    /// Starts `clients` clients sending `mix` to `addr`.
    pub fn start(addr: SocketAddr, clients: usize, mix: Mix) -> Load {
        let mut load = Load {
            answered: Arc::default(),
            failures: Arc::default(),
            stop: Arc::default(),
            tasks: JoinSet::new(),
        };
        for client in 0..clients {
            let (answered, failures, stop) = (
                load.answered.clone(),
                load.failures.clone(),
                load.stop.clone(),
            );
            load.tasks.spawn(async move {
                let http = Http::default();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let open = mix == Mix::OpensAndClicks && (client + n).is_multiple_of(2);
                    let url = format!("https://example.com/landing/{client}/{n}");
                    n += 1;
                    match one_hit(&http, addr, open, &url).await {
                        Ok(id) => lock(&answered).push(id),
                        Err(e) => {
                            lock(&failures).push(e);
                            return;
                        }
                    }
                }
            });
        }
        load
    }

    /// How many hits were answered so far.
    pub fn answered(&self) -> usize {
        lock(&self.answered).len()
    }

    /// Waits until `n` hits in all were answered (at most a minute).
    pub async fn wait_answered(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.answered() < n {
            let failures = lock(&self.failures).clone();
            assert!(
                Instant::now() < deadline,
                "{} of {n} hits answered; failures: {failures:?}",
                self.answered()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients and waits for them.
    pub async fn finish(mut self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(done) = self.tasks.join_next().await {
            done.unwrap();
        }
        Outcome {
            answered: std::mem::take(&mut *lock(&self.answered)),
            failures: std::mem::take(&mut *lock(&self.failures)),
        }
    }
}

/// One hit with a fresh token: its message id once answered as it must.
async fn one_hit(http: &Http, addr: SocketAddr, open: bool, url: &str) -> Result<Uuid, String> {
    let (id, path) = if open {
        let (id, t) = token(Kind::Open, None, next_week());
        (id, format!("/o/{t}"))
    } else {
        let (id, t) = token(Kind::Click, Some(url), next_week());
        (id, format!("/c/{t}"))
    };
    let resp = http.send("GET", addr, HOST, &path, &[]).await?;
    match (open, resp.status) {
        (true, 200) => Ok(id),
        (false, 302) if resp.header("location") == url => Ok(id),
        _ => Err(format!(
            "{path}: {} location {:?}",
            resp.status,
            resp.header("location")
        )),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoned only if a client panicked: its list is still right.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
