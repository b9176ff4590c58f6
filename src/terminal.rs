//! Writing to standard output and standard error as Unix tools do: a reader that closed its end
//! of the pipe (`fristvakt deadlines | head`) ends the output quietly, never with a panic or an
//! error message. `println!` and `eprintln!` panic on a closed pipe; the command line uses these.

use std::io::Write;

/// Writes `text` to standard output and flushes it. `Err` only for a failure other than a
/// closed pipe, which [`is_closed_pipe`] tells the caller to treat as the end of the output.
pub fn print_text(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes one line to standard output; a closed or failing standard output is ignored (the
/// line is a status line, and the work it reports goes on).
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Writes one line to standard error; a closed or failing standard error is ignored.
pub fn eprint_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Whether an output error means that the reader went away (EPIPE): the output ends, exit 0.
pub fn is_closed_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// `say!("…", args)`: [`say`] with `format!` arguments.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::terminal::say(&format!($($arg)*)) };
}

/// `warn_user!("…", args)`: [`eprint_line`] with `format!` arguments.
#[macro_export]
macro_rules! warn_user {
    ($($arg:tt)*) => { $crate::terminal::eprint_line(&format!($($arg)*)) };
}
