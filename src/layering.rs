//! The layers of ARCHITECTURE.md, checked on the source: which modules a module may import.
//! A line that names a module outside its allowance (`crate::name`, in a `use` or in a path)
//! fails the test with the file and line; comments are not read.

use std::path::{Path, PathBuf};

/// The `.rs` files under `path` (the file itself when it is one).
fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// The modules of the crate that `text` names as `crate::name`, outside comments, with their lines.
fn imports(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
        }
    }
    out
}

/// Every `crate::` module named in `paths` (relative to the crate) outside `allowed`.
fn violations(paths: &[&str], allowed: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for path in paths {
        let files = sources(&root.join(path));
        assert!(!files.is_empty(), "no sources under {path}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (line, name) in imports(&text) {
                if !allowed.contains(&name.as_str()) {
                    out.push(format!("{}:{line} imports crate::{name}", file.strip_prefix(root).unwrap().display()));
                }
            }
        }
    }
    out
}

#[test]
fn the_state_store_imports_no_logic_above_it() {
    // Not `digest`, `notice` or `report`: the payloads it keeps and the report's dimensions live
    // in `domain` and `state::report`.
    let found = violations(&["src/state"], &["config", "db", "domain", "rules", "state"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_domain_types_import_only_the_rules() {
    let found = violations(&["src/domain.rs", "src/domain"], &["domain", "rules"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_rules_import_nothing_but_themselves() {
    let found = violations(&["src/rules"], &["rules"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_check_sees_an_import() {
    let text =
        "use crate::rules::Kind;\n// crate::digest in a comment\nlet d = crate::digest::run_key(day); // crate::x\n";
    assert_eq!(imports(text), vec![(1, "rules".to_string()), (3, "digest".to_string())]);
}
