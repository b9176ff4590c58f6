//! The tests' one promtool runner (`apt-get install -y prometheus`; scripts/test installs it):
//! `promtool check metrics` on an exposition, and any other promtool command in a directory.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `promtool ARGS` in `dir` with `input` on its standard input; panics unless it succeeds.
/// Returns what it printed (standard output, then standard error).
pub fn run(dir: &Path, args: &[&str], input: &str) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool not found ({e}): install it with `apt-get install -y prometheus`"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

/// `promtool check metrics`: the exposition is well-formed and follows the naming conventions.
pub fn check_metrics(exposition: &str) {
    run(Path::new("."), &["check", "metrics"], exposition);
}
