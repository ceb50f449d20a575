//! The config's secrets: weak ones refused, missing ones generated.
//!
//! Refused, with the key: a secret shorter than [`MIN_SECRET_LEN`] bytes,
//! one that is a placeholder (`change-me`, the example config's and the
//! docs' texts, `openssl rand` instructions...), and one with fewer than
//! [`MIN_DISTINCT_BYTES`] different bytes (`aaaa…`). This covers the token
//! signing keys (whoever knows one mints redirects to anywhere), the API
//! token (it also keys the dashboard's sessions and the listings' cursors),
//! the IP hash key and webhook secrets.
//!
//! The example config ships no secret. The API token and the signing key
//! it leaves out are generated on first use into `secrets/` beside the
//! database (`api-token`, `tracking-key`; mode 0600 in a 0700 directory),
//! and read back on every later start, so links in mail already sent keep
//! working across restarts. `check-config` only says they will be.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::Problem;
use super::raw::{RawConfig, RawKey};
use crate::token::MIN_SECRET_LEN;

/// Fewer different bytes than this is no random secret.
pub const MIN_DISTINCT_BYTES: usize = 8;
/// The id of a generated signing key (visible in every token).
pub const GENERATED_KEY_ID: &str = "auto";
/// Random bytes of a generated secret (base64url: 43 characters).
const GENERATED_BYTES: usize = 32;

/// Texts that mark a placeholder, compared case-insensitively as parts of
/// the secret: the example config's and the docs' placeholders, and the
/// usual stand-ins.
const PLACEHOLDERS: &[&str] = &[
    "change-me",
    "changeme",
    "change me",
    "replace this",
    "replace-me",
    "random bytes",
    "openssl rand",
    "placeholder",
    "your-secret",
    "your secret",
    "example",
    "at least 32 bytes",
    "…",
    // The Standard Webhooks documentation's example secret (docs/webhooks.md).
    "mfkq9r8gkyqrtwjupd8ilpzio2lalasw",
];

/// What to do about secrets the config leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Read them from the data directory, generating them there first if
    /// absent (`serve` and every command that uses them).
    Generate,
    /// Read them if present; otherwise use throwaway values and say that
    /// `serve` will generate them (`check-config`: writes nothing).
    Preview,
}

/// Why a secret is weak, if it is.
pub fn weakness(secret: &str) -> Option<String> {
    if secret.len() < MIN_SECRET_LEN {
        return Some(format!(
            "is {} bytes; at least {MIN_SECRET_LEN} random bytes are required \
             (openssl rand -base64 32)",
            secret.len()
        ));
    }
    let lower = secret.to_lowercase();
    if let Some(p) = PLACEHOLDERS.iter().find(|p| lower.contains(*p)) {
        return Some(format!(
            "is a placeholder (contains {p:?}); set a random one (openssl rand -base64 32) \
             or remove it to have one generated"
        ));
    }
    let mut seen = [false; 256];
    secret.bytes().for_each(|b| seen[usize::from(b)] = true);
    if seen.iter().filter(|s| **s).count() < MIN_DISTINCT_BYTES {
        return Some(format!(
            "has fewer than {MIN_DISTINCT_BYTES} different characters; set a random one"
        ));
    }
    None
}

/// Every weak secret of `raw`, with its key. Empty API token and missing
/// keys are not checked here (they are generated or reported elsewhere).
pub fn weak(raw: &RawConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut check = |key: String, secret: &str| {
        if let Some(message) = weakness(secret) {
            out.push(Problem { key, message });
        }
    };
    if !raw.api.token.is_empty() {
        check("api.token".into(), &raw.api.token);
    }
    for (i, k) in raw.tracking.keys.iter().enumerate() {
        // A short key is already reported by the key ring's own check.
        if k.secret.len() >= MIN_SECRET_LEN {
            check(format!("tracking.keys[{i}].secret"), &k.secret);
        }
    }
    if let Some(key) = raw.retention.ip_hash_key.as_deref()
        && key.len() >= MIN_SECRET_LEN
    {
        check("retention.ip_hash_key".into(), key);
    }
    for (i, route) in raw.routes.iter().enumerate() {
        for (j, w) in route.webhooks.iter().enumerate() {
            let key = format!("routes[{i}].webhooks[{j}]");
            let named = std::iter::once(("secret".to_owned(), &w.secret)).chain(
                w.secrets
                    .iter()
                    .enumerate()
                    .map(|(n, s)| (format!("secrets[{n}]"), s)),
            );
            for (field, secret) in named.filter(|(_, s)| !s.is_empty()) {
                // Length is the whsec_ decoder's check; placeholders are ours.
                let lower = secret.to_lowercase();
                if let Some(p) = PLACEHOLDERS.iter().find(|p| lower.contains(*p)) {
                    out.push(Problem {
                        key: format!("{key}.{field}"),
                        message: format!("is a placeholder (contains {p:?}); set a random one"),
                    });
                }
            }
        }
    }
    out
}

/// The directory generated secrets live in: `secrets/` beside the database.
pub fn dir(storage_path: &str) -> PathBuf {
    Path::new(storage_path)
        .parent()
        .unwrap_or(Path::new(""))
        .join("secrets")
}

/// A secret the config left out, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filled {
    /// The config key it stands for.
    pub key: &'static str,
    pub path: PathBuf,
    /// Made now (or, with [`Missing::Preview`], to be made by `serve`).
    pub generated: bool,
    pub mode: Missing,
}

impl std::fmt::Display for Filled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match (self.generated, self.mode) {
            (true, Missing::Preview) => {
                write!(f, "{}: not set; serve generates one into {path}", self.key)
            }
            (true, Missing::Generate) => write!(f, "{}: not set; generated into {path}", self.key),
            (false, _) => write!(
                f,
                "{}: not set; the one generated in {path} is used",
                self.key
            ),
        }
    }
}

/// Fills the API token and the signing key when the config leaves them out
/// (see [`Missing`]); says where each came from.
pub fn fill_missing(raw: &mut RawConfig, mode: Missing) -> Result<Vec<Filled>, Problem> {
    let dir = dir(&raw.storage.path);
    let mut notes = Vec::new();
    if raw.api.token.trim().is_empty() {
        let (token, note) = obtain(&dir, "api-token", "api.token", mode)?;
        raw.api.token = token;
        notes.push(note);
    }
    if raw.tracking.keys.is_empty() {
        let (secret, note) = obtain(&dir, "tracking-key", "tracking.keys", mode)?;
        raw.tracking.keys.push(RawKey {
            id: GENERATED_KEY_ID.into(),
            secret,
        });
        notes.push(note);
    }
    Ok(notes)
}

/// The secret in `dir/name`, generated there first when absent.
fn obtain(
    dir: &Path,
    name: &str,
    key: &'static str,
    mode: Missing,
) -> Result<(String, Filled), Problem> {
    let path = dir.join(name);
    let filled = |generated| Filled {
        key,
        path: path.clone(),
        generated,
        mode,
    };
    let problem = |what: &str, e: std::io::Error| Problem {
        key: key.into(),
        message: format!("not set, and {what} {}: {e}", path.display()),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim().to_owned();
            if let Some(why) = weakness(&secret) {
                return Err(Problem {
                    key: key.into(),
                    message: format!("not set, and the generated one in {} {why}", path.display()),
                });
            }
            return Ok((secret, filled(false)));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(problem("cannot read", e));
        }
        Err(_) => {}
    }
    let secret = random_secret().map_err(|e| problem("no random bytes for", e))?;
    if mode == Missing::Preview {
        return Ok((secret, filled(true)));
    }
    match write_new(dir, &path, &secret) {
        Ok(true) => Ok((secret, filled(true))),
        // Another process generated it first: use that one.
        Ok(false) => obtain(dir, name, key, mode),
        Err(e) => Err(problem("cannot write", e)),
    }
}

fn random_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; GENERATED_BYTES];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Writes `secret` to `path` (mode 0600, its directory 0700) unless it
/// exists; false when another process made it first. Written to a
/// temporary file and linked into place, so nobody reads it half written.
fn write_new(dir: &Path, path: &Path, secret: &str) -> std::io::Result<bool> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_secrets_are_named() {
        for weak in [
            "t",
            "change-me",
            "replace this with 32+ random bytes, e.g. openssl rand -base64 48",
            "a long random secret, at least 32 bytes",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababababababab",
        ] {
            assert!(weakness(weak).is_some(), "{weak}");
        }
        assert_eq!(weakness("Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU"), None);
    }

    #[test]
    fn missing_secrets_are_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = RawConfig::default();
        raw.storage.path = dir.path().join("db.sqlite").display().to_string();
        let mut preview = RawConfig::default();
        preview.storage.path = raw.storage.path.clone();
        let notes = fill_missing(&mut preview, Missing::Preview).unwrap();
        assert!(
            notes[0].to_string().contains("serve generates one"),
            "{notes:?}"
        );
        assert!(
            !dir.path().join("secrets").exists(),
            "preview writes nothing"
        );

        let notes = fill_missing(&mut raw, Missing::Generate).unwrap();
        assert!(notes.iter().all(|n| n.generated), "{notes:?}");
        assert_eq!(weakness(&raw.api.token), None);
        assert_eq!(raw.tracking.keys[0].id, GENERATED_KEY_ID);
        use std::os::unix::fs::PermissionsExt;
        let file = dir.path().join("secrets/api-token");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let mut again = RawConfig::default();
        again.storage.path = raw.storage.path.clone();
        let notes = fill_missing(&mut again, Missing::Generate).unwrap();
        assert!(!notes[0].generated, "{notes:?}");
        assert_eq!(again.api.token, raw.api.token);
        assert_eq!(again.tracking.keys[0].secret, raw.tracking.keys[0].secret);
    }
}
