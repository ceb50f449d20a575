//! The module graph has no cycles between top-level modules (issue 15).
//!
//! A top-level module is `src/NAME.rs` with `src/NAME/`. Module A depends
//! on B when code of A (not its `#[cfg(test)] mod tests`, not comments)
//! names `crate::B`, in a `use` or inline. A cycle means neither module can
//! be read, tested or replaced without the other; the owner of a concern
//! defines its types and the modules that use it depend on it, one way.
//!
//! [`ALLOWED`] lists the dependencies a cycle may still go through, each
//! with its reason; it is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// `(from, to, why)`: an edge a cycle may go through. Add one only with a
/// reason that says why breaking it costs more than it is worth.
const ALLOWED: &[(&str, &str, &str)] = &[];

type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn no_import_cycles_between_top_level_modules() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        graph.len() > 10 && graph.get("config").is_some_and(|d| !d.is_empty()),
        "the source tree was not read: {:?}",
        graph.keys()
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|path| describe(&graph, &path))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph
            .entry(from.into())
            .or_default()
            .insert(to.into(), format!("src/{from}.rs:1"));
        graph.entry(to.into()).or_default();
    }
    let path = cycle_from(&graph, "a").expect("a → b → c → a is a cycle");
    assert_eq!(path, ["a", "b", "c", "a"]);
    assert_eq!(
        describe(&graph, &path),
        "a → b (src/a.rs:1) → c (src/b.rs:1) → a (src/c.rs:1)"
    );
    assert_eq!(cycle_from(&graph, "d"), None);
}

/// Every top-level module and, for each module it names, the first place
/// it does so (`file:line`).
fn module_graph(src: &Path) -> Graph {
    let modules: BTreeSet<String> = fs::read_dir(src)
        .expect("src/ is readable")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_stem()?.to_str()?.to_owned();
            let is_module = path.is_dir() || path.extension().is_some_and(|x| x == "rs");
            (is_module && name != "lib" && name != "main").then_some(name)
        })
        .collect();
    let mut graph = Graph::new();
    for module in &modules {
        let deps = graph.entry(module.clone()).or_default();
        for file in files_of(src, module) {
            let text = fs::read_to_string(&file).expect("source file is readable");
            for (line, target) in crate_paths(&text) {
                if target != *module && modules.contains(&target) {
                    let shown = file
                        .strip_prefix(src.parent().unwrap_or(src))
                        .unwrap_or(&file);
                    deps.entry(target)
                        .or_insert_with(|| format!("{}:{line}", shown.display()));
                }
            }
        }
    }
    graph
}

/// `src/NAME.rs` and every `.rs` file under `src/NAME/`.
fn files_of(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut files = vec![src.join(format!("{module}.rs"))];
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    files.retain(|f| f.is_file());
    files.sort();
    files
}

/// `(line number, module)` for each `crate::module` in code, up to the
/// file's unit tests.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let next = lines.get(i + 1).map_or("", |l| l.trim_start());
        if code == "#[cfg(test)]" && next.starts_with("mod tests") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            found.push((i + 1, rest[..end].to_owned()));
        }
    }
    found
}

/// A path `start → … → start` over edges not in [`ALLOWED`], if any.
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    walk(graph, start, &mut path, &mut seen).then_some(path)
}

fn walk(graph: &Graph, start: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
    let here = path.last().expect("the path starts at `start`").clone();
    for next in graph.get(&here).into_iter().flat_map(|d| d.keys()) {
        if ALLOWED.iter().any(|(a, b, _)| *a == here && b == next) {
            continue;
        }
        path.push(next.clone());
        if next == start || (seen.insert(next.clone()) && walk(graph, start, path, seen)) {
            return true;
        }
        path.pop();
    }
    false
}

/// `a → b (src/a.rs:12) → a (src/b.rs:3)`.
fn describe(graph: &Graph, path: &[String]) -> String {
    let mut text = path[0].clone();
    for pair in path.windows(2) {
        let at = &graph[&pair[0]][&pair[1]];
        text.push_str(&format!(" → {} ({at})", pair[1]));
    }
    text
}
