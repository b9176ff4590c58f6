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

/// The files whose string literals may hold Swedish words: the catalogue's loader and tests,
/// and the demo data. Every other word a user reads is in `templates/`.
const SWEDISH_ALLOWED: &[&str] = &[
    "src/catalogue.rs",
    "src/demo.rs",
    "src/demo/",
    "src/layering.rs",
    // The paragraphs of each clock, as the rules' data (a user reads the catalogue's copy,
    // which a test holds equal).
    "src/rules/clock.rs",
];

/// The string literals of `text` with a Swedish letter, with their lines: code before the first
/// `#[cfg(test)]` module, outside comments.
fn swedish_literals(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_string = false;
    let mut literal = String::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let test_module = |next: &str| next.trim_start().starts_with("mod ") || next.contains(" mod ");
        if !in_string && line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|(_, next)| test_module(next)) {
            break;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if in_string {
                match c {
                    '\\' => {
                        literal.push(c);
                        if let Some(next) = chars.get(i + 1) {
                            literal.push(*next);
                        }
                        i += 1;
                    }
                    '"' => {
                        in_string = false;
                        if literal.chars().any(|c| "åäöÅÄÖ".contains(c)) {
                            out.push((n + 1, std::mem::take(&mut literal)));
                        }
                        literal.clear();
                    }
                    _ => literal.push(c),
                }
            } else if c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
                // A char literal such as '"'.
                i += 2;
            } else if c == '\'' && chars.get(i + 1) == Some(&'\\') && chars.get(i + 3) == Some(&'\'') {
                i += 3;
            } else if c == '"' {
                in_string = true;
            }
            i += 1;
        }
        if in_string {
            literal.push('\n');
        }
    }
    out
}

#[test]
fn no_swedish_word_is_written_in_rust() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for file in sources(&root.join("src")) {
        let name = file.strip_prefix(root).unwrap().display().to_string();
        if SWEDISH_ALLOWED.iter().any(|allowed| name.starts_with(allowed)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, literal) in swedish_literals(&text) {
            found.push(format!("{name}:{line} {literal:?}: words a user reads belong in templates/"));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_check_sees_a_swedish_literal() {
    let text = "let a = \"ok\"; // \"inte läst\"\nlet b = '\"'; let c = \"sista dagen närmar sig\";\n/// \"även\"\nlet d = \"flera\n rader å\";\n#[cfg(test)]\nmod tests {\n    \"tål\"\n}\n";
    assert_eq!(
        swedish_literals(text),
        vec![(2, "sista dagen närmar sig".to_string()), (5, "flera\n rader å".to_string())]
    );
}
