//! The webhook receiver process (webhook_receiver.py beside this file):
//! verifies every request with an implementation independent of ours and
//! logs one JSON line per request, which tests read back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A receiver process; its log has one JSON line per request.
pub struct Receiver {
    child: Child,
    log: PathBuf,
}

impl Receiver {
    /// Starts it on `port`, checking every request against each of
    /// `secrets`, with the script's `extra` options; its log is
    /// `dir/{name}.jsonl`.
    pub fn start(dir: &Path, name: &str, port: u16, secrets: &[&str], extra: &[&str]) -> Receiver {
        let log = dir.join(format!("{name}.jsonl"));
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/webhook_receiver.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log);
        for secret in secrets {
            command.args(["--secret", secret]);
        }
        let mut child = command
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "receiver did not start (pip install standardwebhooks?)"
        );
        Receiver { child, log }
    }

    /// Every request so far, as logged.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits (up to `limit`) until `n` requests came.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n} requests expected, got {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
