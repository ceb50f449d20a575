//! Runs `mime_equiv.py` (Python's `email`, a parser independent of the
//! rewrite's) over pairs of input and rewritten message, all in one run.

use std::fs::File;
use std::path::Path;
use std::process::Command;

/// One message before and after the rewrite, named for the error message.
pub struct Pair {
    pub name: String,
    pub before: Vec<u8>,
    pub after: Vec<u8>,
}

/// What the checker said of a run that found no problem.
pub struct Checked {
    /// Pairs checked.
    pub checked: usize,
    /// Inputs Python itself cannot read through: (name, why).
    pub uncheckable: Vec<(String, String)>,
}

/// Checks every pair; `Err` lists each problem found (one per line).
pub fn check(pairs: &[Pair]) -> Result<Checked, String> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut list = String::new();
    for (i, pair) in pairs.iter().enumerate() {
        let before = dir.path().join(format!("{i}.in.eml"));
        let after = dir.path().join(format!("{i}.out.eml"));
        std::fs::write(&before, &pair.before).expect("write input");
        std::fs::write(&after, &pair.after).expect("write output");
        let name = pair.name.replace(['\t', '\n'], " ");
        list.push_str(&format!(
            "{name}\t{}\t{}\n",
            before.display(),
            after.display()
        ));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mime_equiv.py");
    let list_path = dir.path().join("pairs.tsv");
    std::fs::write(&list_path, list).expect("write the list of pairs");
    let out = Command::new("python3")
        .arg(&script)
        .stdin(File::open(&list_path).expect("the list of pairs"))
        .output()
        .expect("python3 is needed for the MIME equivalence check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if std::env::var_os("MIME_EQUIV_KEEP").is_some() {
            eprintln!("pairs kept in {}", dir.keep().display());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{stdout}{stderr}"));
    }
    let mut result = Checked {
        checked: 0,
        uncheckable: Vec::new(),
    };
    for line in stdout.lines() {
        if let Some(n) = line.strip_prefix("checked ") {
            result.checked = n.parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("uncheckable\t") {
            let (name, why) = rest.split_once('\t').unwrap_or((rest, ""));
            result.uncheckable.push((name.to_owned(), why.to_owned()));
        }
    }
    Ok(result)
}
