//! The operator's day (issue 28): pipes, quiet show commands, unknown units, errors that name
//! the cause and the endpoint, priorities under journald, `poll --once --dry-run` and
//! `outbox show`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::helpers::{fristvakt, stderr, stdout};
use crate::service::free_port;
use crate::support::app::TestApp;
use crate::support::process::ChildGuard;

/// The binary with the environment an operator has: no `RUST_LOG`.
fn operator(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fristvakt"));
    cmd.arg("--config").arg(config).args(args).env_remove("FRISTVAKT_CONFIG").env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A workspace with `cases` demo cases polled once.
fn polled(cases: usize) -> (TestApp, std::path::PathBuf) {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let out = fristvakt(Some(&cfg), &["demo-data", "--cases", &cases.to_string()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fristvakt(Some(&cfg), &["poll", "--once"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    (ws, cfg)
}

/// Runs `deadlines` with the read end of standard output (and of standard error, when
/// `close_stderr`) closed before it writes: what `| head` does once it has its lines.
fn deadlines_into_closed_pipe(cfg: &Path, close_stderr: bool, log: Option<&str>) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fristvakt"));
    cmd.arg("--config").arg(cfg).arg("deadlines").env_remove("RUST_LOG").stdout(Stdio::piped());
    cmd.stderr(Stdio::piped());
    if let Some(log) = log {
        cmd.env("RUST_LOG", log);
    }
    let mut child = ChildGuard::new(cmd.spawn().unwrap());
    drop(child.child_mut().stdout.take());
    let mut err = String::new();
    if close_stderr {
        drop(child.child_mut().stderr.take());
    }
    // A hang is the failure this guards against: the bound only ends the test.
    let status = child.wait_timeout(Duration::from_secs(120)).expect("deadlines hung on a closed pipe");
    if let Some(mut e) = child.child_mut().stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    (status.code(), err)
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    // 600 cases list some 1 500 deadlines, far more than a pipe's buffer holds.
    let (_ws, cfg) = polled(600);
    let (code, err) = deadlines_into_closed_pipe(&cfg, false, None);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("Broken pipe") && !err.contains("panicked"), "{err}");
    // `deadlines 2>&1 | head -1`: both ends closed.
    let (code, _) = deadlines_into_closed_pipe(&cfg, true, None);
    assert_eq!(code, Some(0));
    // Debug logs into a closed standard error: neither a panic nor a hang.
    for _ in 0..3 {
        let (code, _) = deadlines_into_closed_pipe(&cfg, true, Some("debug"));
        assert_eq!(code, Some(0));
    }
}

#[test]
fn show_commands_log_no_info_and_create_nothing() {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let out = fristvakt(Some(&cfg), &["demo-data", "--cases", "50"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for args in [
        &["check-config"][..],
        &["deadlines"],
        &["deadlines", "--fresh"],
        &["digest", "--dry-run"],
        &["report", "compliance", "--from", "2026-01-01", "--to", "2026-06-30"],
        &["outbox", "list"],
        &["poll", "--once", "--dry-run"],
    ] {
        let out = operator(&cfg, args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("INFO"), "{args:?} logged at INFO:\n{}", stderr(&out));
        assert!(!ws.path("outbox").exists(), "{args:?} created the mail directory");
        assert!(!ws.path("state.db").exists(), "{args:?} created the state database");
    }
    // The daemon's own commands still log their lifecycle.
    let out = operator(&cfg, &["poll", "--once"], &[]);
    assert!(stderr(&out).contains("INFO"), "{}", stderr(&out));
}

#[test]
fn an_unknown_unit_is_named_and_case_matters() {
    let (_ws, cfg) = polled(200);
    let listed = stdout(&fristvakt(Some(&cfg), &["deadlines", "--format", "json"], &[]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let unit = rows[0]["unit"].as_str().unwrap().to_string();

    let out = fristvakt(Some(&cfg), &["deadlines", "--unit", &unit.to_lowercase()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("unknown unit") && err.contains("case-sensitive"), "{err}");
    assert!(err.contains(&format!("did you mean {unit}?")), "{err}");

    let out = fristvakt(Some(&cfg), &["deadlines", "--unit", "NOPE"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&unit), "the known units are listed: {}", stderr(&out));

    let out = fristvakt(Some(&cfg), &["deadlines", "--unit", &unit], &[]);
    assert!(out.status.success());
    assert!(stdout(&out).lines().count() > 1);
}

/// EACCES is "permission denied" with the user and the mode, never "no such file". Root reads
/// everything, so the binary runs as `nobody` (through setpriv).
#[test]
fn an_unreadable_configuration_says_permission_denied_with_user_and_mode() {
    if !Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0") {
        panic!("this test switches to the user nobody: run it as root (CI and scripts/test do)");
    }
    let ws = TestApp::sqlite();
    let etc = ws.path("etc");
    std::fs::create_dir(&etc).unwrap();
    let cfg = etc.join("fristvakt.toml");
    std::fs::write(&cfg, "timezone = \"Europe/Stockholm\"\n").unwrap();
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
    // The workspace itself is searchable by all, as /etc is.
    mode(ws.dir(), 0o755);
    mode(&etc, 0o750);
    mode(&cfg, 0o640);
    let run = || {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_fristvakt"))
            .arg("--config")
            .arg(&cfg)
            .arg("check-config")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("permission denied") && !err.contains("no such file"), "{err}");
    assert!(err.contains("running as user nobody"), "{err}");
    assert!(err.contains(&format!("{} is drwxr-x--- (0750) root:root", etc.display())), "{err}");
    // The directory opened, the file's own mode is named.
    mode(&etc, 0o755);
    let err = stderr(&run());
    assert!(err.contains(&format!("{} is -rw-r----- (0640) root:root", cfg.display())), "{err}");
    mode(&cfg, 0o644);
    assert!(run().status.success());
}

#[test]
fn unreachable_servers_are_named_with_the_cause() {
    let ws = TestApp::sqlite();
    let closed = free_port();
    let cfg = ws.path("pg.toml");
    std::fs::write(&cfg, format!("[state]\nurl = \"postgres://fristvakt@127.0.0.1:{closed}/fristvakt\"\n")).unwrap();
    let out = fristvakt(Some(&cfg), &["migrate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("PostgreSQL at 127.0.0.1:{closed}")), "{err}");
    assert!(err.to_lowercase().contains("connection refused") && !err.contains("pool timed out"), "{err}");

    let cfg = ws.path("smtp.toml");
    std::fs::write(
        &cfg,
        format!("[mail]\ntransport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {closed}\ntls = \"none\"\n"),
    )
    .unwrap();
    let out = fristvakt(Some(&cfg), &["send-test-mail", "--to", "drift@kommun.example"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("127.0.0.1:{closed}")) && err.contains("refused"), "{err}");
}

/// Under journald every log line starts with its syslog priority.
#[test]
fn log_lines_carry_syslog_priorities_under_journald() {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let out = fristvakt(Some(&cfg), &["demo-data", "--cases", "40", "--broken", "5"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = operator(&cfg, &["poll", "--once"], &[("JOURNAL_STREAM", "8:12345")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(["<3>", "<4>", "<6>", "<7>"].iter().any(|p| line.starts_with(p)), "no priority: {line}");
    }
    assert!(lines.iter().any(|l| l.starts_with("<6>")), "{err}");
    assert!(lines.iter().any(|l| l.starts_with("<4>") && l.contains("WARN")), "{err}");
    // Without journald, no prefix.
    let out = operator(&cfg, &["poll", "--once"], &[]);
    assert!(!stderr(&out).lines().any(|l| l.starts_with('<')), "{}", stderr(&out));
}

/// `poll --once --dry-run` prints what the poll would send, writes and sends nothing; the real
/// poll then sends exactly that many notices.
#[test]
fn a_dry_run_poll_foretells_the_first_poll() {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let out = fristvakt(Some(&cfg), &["demo-data", "--cases", "800"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fristvakt(Some(&cfg), &["poll", "--once", "--dry-run"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let preview = stdout(&out);
    assert!(!ws.path("state.db").exists() && !ws.path("outbox").exists(), "a dry run wrote:\n{preview}");
    let foretold: u64 = preview
        .lines()
        .find_map(|l| l.strip_prefix("a poll would send "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in:\n{preview}"));
    assert!(foretold > 0, "{preview}");
    let per_step: u64 = preview
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("KIND"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(per_step, foretold, "{preview}");

    let out = fristvakt(Some(&cfg), &["poll", "--once"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = std::fs::read_dir(ws.path("outbox"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert_eq!(names.len() as u64, foretold, "{}", stdout(&out));
    // The file names say what each mail is.
    assert!(names.iter().all(|n| n.starts_with("notice-") && n.ends_with(".eml")), "{names:?}");
    // Once polled, nothing more is due today.
    let again = stdout(&fristvakt(Some(&cfg), &["poll", "--once", "--dry-run"], &[]));
    assert!(again.contains("a poll would send 0 notice(s)"), "{again}");
}

#[test]
fn outbox_show_gives_recipients_answers_and_the_mail() {
    let (_ws, cfg) = polled(300);
    let listed = stdout(&fristvakt(Some(&cfg), &["outbox", "list", "--state", "sent"], &[]));
    let key = listed.lines().nth(1).and_then(|l| l.split_whitespace().next()).expect("a sent row").to_string();
    let out = fristvakt(Some(&cfg), &["outbox", "show", &key], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains(&format!("key:          {key}")), "{shown}");
    assert!(shown.contains("state:        sent"), "{shown}");
    assert!(shown.contains("): delivered at "), "{shown}");
    assert!(shown.contains("Subject: ") && shown.contains("Message-ID: "), "{shown}");

    let out = fristvakt(Some(&cfg), &["outbox", "show", "notice/nope"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

/// `explain` says why a step was not sent, in the language of its output; `outbox list` too.
#[test]
fn steps_not_sent_say_why_in_the_output_language() {
    let (_ws, cfg) = polled(600);
    let listed = stdout(&fristvakt(Some(&cfg), &["outbox", "list", "--state", "skipped", "--limit", "5"], &[]));
    let row = listed.lines().nth(1).unwrap_or_else(|| panic!("no skipped step in:\n{listed}"));
    assert!(row.contains("skipped: a later step was reached at once, or first seen past the horizon"), "{row}");
    let key = row.split_whitespace().next().unwrap();
    let case_ref = key.split('/').nth(2).unwrap();
    let text = stdout(&fristvakt(Some(&cfg), &["explain", case_ref], &[]));
    assert!(text.contains(": hoppades över: "), "{text}");
    for english in [": skipped", ": sent", ": pending", ": cancelled"] {
        assert!(!text.contains(english), "{english} in Swedish output:\n{text}");
    }
    let text = stdout(&fristvakt(Some(&cfg), &["explain", case_ref], &[("FRISTVAKT__MAIL__LANGUAGE", "en")]));
    assert!(text.contains(": skipped: "), "{text}");
}

/// The compliance report printed on A4 by headless Chromium (as a manager prints it for a
/// board): a few pages, the chart with the units' names on the first, every page numbered
/// under a running header, and the last page more than a legend.
#[test]
fn the_report_prints_on_a4_without_blank_pages() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium not found: install it with `apt-get install -y chromium poppler-utils` (scripts/test does)");
    let ws = TestApp::sqlite();
    let cfg = ws.path("fristvakt.toml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml"))
            .unwrap()
            .replace("var/", &format!("{}/", ws.dir().display())),
    )
    .unwrap();
    for args in [&["demo-data", "--cases", "2000"][..], &["poll", "--once", "--today", "2026-12-01"]] {
        let out = fristvakt(Some(&cfg), args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let html = ws.path("report.html");
    let args = ["report", "compliance", "--from", "2026-01-01", "--to", "2026-11-30", "--today", "2026-12-01"];
    let out =
        fristvakt(Some(&cfg), &[&args[..], &["--format", "html", "--output", html.to_str().unwrap()]].concat(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pdf = ws.path("report.pdf");
    let profile = ws.path("chromium-profile");
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--no-pdf-header-footer"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(pdf.exists(), "chromium printed nothing: {}", String::from_utf8_lossy(&out.stderr));
    let info = Command::new("pdfinfo").arg(&pdf).output().expect("pdfinfo (poppler-utils)");
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    let pages: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{info}"));
    assert!(info.contains("A4"), "{info}");
    // 14 units × 5 kinds: the chart, the table (70 rows) and the notes fit in three pages.
    assert!((2..=3).contains(&pages), "{pages} pages:\n{info}");
    let page_text = |n: usize| {
        let out = Command::new("pdftotext")
            .args(["-layout", "-f", &n.to_string(), "-l", &n.to_string()])
            .arg(&pdf)
            .arg("-")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = page_text(1);
    // The chart is on the first page, with the units' names, not pushed to the second.
    assert!(first.contains("Andel i tid per enhet och frist"), "{first}");
    assert!(first.contains("Bromma barn och unga") && first.contains("BRO-BU"), "{first}");
    for n in 1..=pages {
        let text = page_text(n);
        assert!(text.contains(&format!("Sida {n} av {pages}")), "page {n} unnumbered:\n{text}");
        assert!(text.contains("Fristuppföljning 2026-01-01 – 2026-11-30"), "page {n} has no running header");
    }
    // The last page holds table rows or the notes, not a legend alone.
    let last = page_text(pages);
    assert!(last.contains("Att läsa siffrorna") && last.contains("Totalt"), "{last}");
}
