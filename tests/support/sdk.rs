//! The official Lettermint SDKs as clients of trackrelay's sending API
//! (tests/sdk/: a Python and a Node script, each one call per run, JSON in
//! and out), and Python's `email` package as the independent parser of
//! what the upstream received.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// A sending token of the test configs (random-looking: placeholders are
/// refused like every other secret).
pub const SEND_TOKEN: &str = "lm_Qx7Vb2Nw9Lr4Kt8Zp3Hs6Jd1Fy5Cm0Ga";

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// Runs `program script` with `input` on stdin; its stdout as JSON.
async fn run_json(program: &str, script: PathBuf, input: &[u8]) -> Value {
    let mut child = tokio::process::Command::new(program)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (.ci/packages installs it): {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input).await.expect("write stdin");
    drop(stdin);
    let out = child.wait_with_output().await.expect("wait for the script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{} gave no JSON ({e}); is the SDK installed (.ci/packages)?\nstdout: {stdout}\nstderr: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// One call with the Python SDK (lettermint 3.2.0): `{"ok": ..}` or
/// `{"error": {"class", "status", "code", "errors", "retry_after", ..}}`.
pub async fn python(call: &Value) -> Value {
    run_json(
        "python3",
        sdk_dir().join("python/send.py"),
        call.to_string().as_bytes(),
    )
    .await
}

/// One call with the Node SDK (lettermint 2.7.0): `{"ok": ..}` or
/// `{"error": {"class", "status", "errorType", "body"}}`.
pub async fn node(call: &Value) -> Value {
    run_json(
        "node",
        sdk_dir().join("node/send.js"),
        call.to_string().as_bytes(),
    )
    .await
}

/// A delivered message as Python's `email` package sees it:
/// `{"headers": {name: [values]}, "parts": [...], "defects": n}`.
pub async fn parse(message: &[u8]) -> Value {
    run_json("python3", sdk_dir().join("python/parse.py"), message).await
}
