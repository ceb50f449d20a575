//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of this API
//! (docs/openapi.json), built into the binary. A test here keeps it and
//! the router's [`PATHS`](super::PATHS) the same; tests/openapi.rs checks
//! the running server against it with schemathesis.

use std::sync::OnceLock;

use serde_json::Value;

/// The document's text, as in the repository.
const TEXT: &str = include_str!("../../docs/openapi.json");

/// The document, parsed once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    // The unit test below parses the same built-in text.
    DOCUMENT.get_or_init(|| serde_json::from_str(TEXT).expect("docs/openapi.json is JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path the router knows is documented with exactly its
    /// methods, and the document has no other.
    #[test]
    fn the_document_has_every_path_of_the_router_and_no_other() {
        let paths = document()["paths"].as_object().unwrap();
        for (path, methods) in super::super::PATHS {
            let item = paths
                .get(*path)
                .unwrap_or_else(|| panic!("{path} is not in docs/openapi.json"));
            let mut documented: Vec<String> = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !matches!(k.as_str(), "parameters" | "summary" | "description"))
                .map(|m| m.to_uppercase())
                .collect();
            documented.sort();
            let mut served: Vec<&str> = methods.split(", ").collect();
            served.sort();
            assert_eq!(documented, served, "methods of {path}");
        }
        for path in paths.keys() {
            assert!(
                super::super::PATHS.iter().any(|(p, _)| p == path),
                "{path} is documented but the router has no such path"
            );
        }
    }

    /// Each `$ref` names a component that exists, and every operation
    /// says what a wrong token gets (all but /healthz).
    #[test]
    fn references_resolve_and_operations_document_401() {
        let doc = document();
        let mut refs = Vec::new();
        collect_refs(doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "{r} resolves to nothing");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let has_401 = op["responses"].get("401").is_some();
                assert_eq!(has_401, path != "/healthz", "{method} {path}");
            }
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match v {
                        Value::String(s) if k == "$ref" => out.push(s.clone()),
                        _ => collect_refs(v, out),
                    }
                }
            }
            Value::Array(list) => list.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
