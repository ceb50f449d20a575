//! The webhook receiver process (tests/support/webhook_receiver.py):
//! verifies every request's signatures with the `standardwebhooks` package
//! (or the Lettermint SDK), an implementation independent of ours, and logs
//! one JSON line per request. Needs python3 with standardwebhooks
//! (`.ci/packages` installs it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running receiver; killed on drop.
pub struct Receiver {
    child: Child,
    log: PathBuf,
}

impl Receiver {
    /// Starts it on `port` with each of `secrets` and the options `extra`
    /// (`--fail N`, `--format lettermint`, `--hold FILE`); its log is
    /// `dir/NAME.jsonl`. Returns once it listens.
    pub fn start(dir: &Path, name: &str, port: u16, secrets: &[&str], extra: &[&str]) -> Receiver {
        let log = dir.join(format!("{name}.jsonl"));
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/webhook_receiver.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log);
        for secret in secrets {
            cmd.args(["--secret", secret]);
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout is piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "receiver did not start (pip install standardwebhooks?)"
        );
        Receiver { child, log }
    }

    /// Every line logged so far: one per request (and, with `--hold`, one
    /// more with `"held": true` when a request starts waiting).
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits (up to `limit`) until `n` lines were logged.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Value> {
        self.wait_until(limit, |got| got.len() >= n).await
    }

    /// Waits (up to `limit`) until `done` holds for the lines logged.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.requests();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "never came: {got:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Per delivery id (`webhook-id`), how many requests were answered 2xx.
    pub fn answered_by_id(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.requests() {
            let ok = r["status"].as_u64().is_some_and(|s| (200..300).contains(&s));
            if let (true, Some(id)) = (ok, r["id"].as_str()) {
                *counts.entry(id.to_owned()).or_default() += 1;
            }
        }
        counts
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
