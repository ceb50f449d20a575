//! The shared corpus of real mail (`../shared/corpus`, or
//! `$TRACKRELAY_CORPUS`): listing its files and wrapping HTML bodies in
//! messages. Shared by the tests and the benchmarks (`#[path]`-included).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The corpus root; panics with a clear message when it is missing.
pub fn root() -> PathBuf {
    let root = std::env::var_os("TRACKRELAY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    assert!(
        root.join("mime").is_dir(),
        "corpus not found at {} (set TRACKRELAY_CORPUS)",
        root.display()
    );
    root
}

/// Every `.eml` under `mime/`, sorted.
pub fn mime_files() -> Vec<PathBuf> {
    files_with_extension(&root().join("mime"), "eml")
}

/// Every `.html` under `html/`, sorted, with its charset from FEATURES.tsv.
pub fn html_files() -> Vec<(PathBuf, Option<String>)> {
    let dir = root().join("html");
    let features = std::fs::read_to_string(dir.join("FEATURES.tsv")).unwrap_or_default();
    let charset_of = |rel: &str| {
        features
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&rel))
            .and_then(|cols| cols.get(3).map(|c| c.trim().to_string()))
            .filter(|c| !c.is_empty() && c != "charset")
    };
    files_with_extension(&dir, "html")
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
            let charset = charset_of(&rel);
            (p, charset)
        })
        .collect()
}

fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A single-part HTML message around `html`, sent as 8bit as a simple
/// application would, with the given newline.
pub fn wrap_html(html: &[u8], charset: Option<&str>, newline: &str) -> Vec<u8> {
    let charset = charset.unwrap_or("utf-8");
    let mut msg = format!(
        "From: Sender <sender@example.com>{newline}To: bob@example.com{newline}\
         Subject: corpus{newline}Message-ID: <corpus@example.com>{newline}MIME-Version: 1.0{newline}\
         Content-Type: text/html; charset=\"{charset}\"{newline}Content-Transfer-Encoding: 8bit{newline}{newline}"
    )
    .into_bytes();
    msg.extend_from_slice(html);
    msg
}
