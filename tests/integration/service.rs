//! The daemon as operations see it: the real binary under a fake systemd notify socket, its
//! HTTP endpoints, SIGTERM, a bad configuration, and the systemd unit itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::sqlite::SqlitePoolOptions;
use sqlx::Row;

use crate::helpers::{fristvakt, stderr, Workspace};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A minimal HTTP/1.1 GET: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Notify {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notify {
    fn bind(path: &Path) -> Notify {
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Notify { socket, seen: Vec::new() }
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            if self.seen.iter().any(|m| m.lines().any(|l| l.starts_with(needle))) {
                return;
            }
            assert!(start.elapsed() < timeout, "no {needle} from the daemon; got {:?}", self.seen);
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.seen.iter().flat_map(|m| m.lines()).filter(|l| l.starts_with(needle)).count()
    }
}

fn spawn_daemon(config: &Path, notify: &Path) -> Child {
    // systemd names the watched process in WATCHDOG_PID; `exec` keeps the shell's pid.
    Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" --config \"$1\" run")
        .arg(env!("CARGO_BIN_EXE_fristvakt"))
        .arg(config)
        .env_remove("FRISTVAKT_CONFIG")
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", "400000")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_notifies_systemd_serves_probes_and_metrics_and_stops_cleanly() {
    let ws = Workspace::new();
    let port = free_port();
    let cfg =
        ws.config_with("demo_cases = 300\npoll_interval = \"1s\"", &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"));
    let check = fristvakt(Some(&cfg), &["check-config"], &[]);
    assert!(check.status.success(), "{}", stderr(&check));

    let mut notify = Notify::bind(&ws.path("notify.sock"));
    let mut child = spawn_daemon(&cfg, &ws.path("notify.sock"));
    notify.wait_for("READY=1", Duration::from_secs(60));
    notify.wait_for("STATUS=", Duration::from_secs(5));
    notify.wait_for("WATCHDOG=1", Duration::from_secs(5));
    let pings = notify.count("WATCHDOG=1");
    notify.seen.retain(|m| !m.contains("WATCHDOG=1"));
    notify.wait_for("WATCHDOG=1", Duration::from_secs(5));
    assert!(pings >= 1);

    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    wait_until("readyz 200", Duration::from_secs(20), || get(port, "/readyz").map(|r| r.0) == Some(200));

    let (status, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    for family in [
        "fristvakt_poll_duration_seconds_bucket",
        "fristvakt_register_rows_read_total",
        "fristvakt_register_rows_rejected_total",
        "fristvakt_last_successful_poll_timestamp_seconds",
        "fristvakt_register_staleness_seconds",
        "fristvakt_deadlines{",
        "fristvakt_notices_total{",
        "fristvakt_outbox{",
        "fristvakt_smtp_errors_total",
        "fristvakt_digests_sent_total",
        "fristvakt_build_info{",
    ] {
        assert!(metrics.contains(family), "{family} missing from /metrics:\n{metrics}");
    }
    assert!(!metrics.contains("@kommun.example"), "no address in metrics");
    assert!(!metrics.contains("-BU-0"), "no case reference in metrics");
    promtool_check(&metrics);

    // The register file goes away: readiness turns 503 with a reason, and back when it returns.
    let register = ws.path("register.db");
    let moved = ws.path("register.db.away");
    std::fs::rename(&register, &moved).unwrap();
    wait_until("readyz 503", Duration::from_secs(20), || get(port, "/readyz").map(|r| r.0) == Some(503));
    let (_, reason) = get(port, "/readyz").unwrap();
    assert!(reason.contains("register"), "{reason}");
    std::fs::rename(&moved, &register).unwrap();
    wait_until("readyz 200 again", Duration::from_secs(20), || get(port, "/readyz").map(|r| r.0) == Some(200));

    sigterm(&child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    notify.wait_for("STOPPING=1", Duration::from_secs(2));
    // Message-IDs carry the sender's domain; no other address may appear.
    let without_message_ids = log.replace(".fristvakt@kommun.example>", ">");
    assert!(!without_message_ids.contains("@kommun.example"), "no address in the log:\n{log}");

    // Nothing is lost: every outbox row is sent, or waiting unclaimed for the next start.
    let pool = SqlitePoolOptions::new().connect(&ws.sqlite_url("state.db")).await.unwrap();
    let rows = sqlx::query("SELECT state, claimed_by FROM outbox").fetch_all(&pool).await.unwrap();
    assert!(!rows.is_empty(), "the demo register has overdue cases, so notices were written");
    for row in rows {
        let state: String = row.get(0);
        let claimed: Option<String> = row.get(1);
        assert!(matches!(state.as_str(), "sent" | "pending" | "skipped"), "{state}");
        assert_eq!(claimed, None);
    }
    let files = std::fs::read_dir(ws.path("outbox")).unwrap().count();
    assert!(files > 0, "mails were written as .eml files");
}

fn promtool_check(metrics: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => panic!("promtool not found: install it with `apt-get install -y prometheus`"),
    };
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_configuration_exits_78_before_anything_starts() {
    let ws = Workspace::new();
    let port = free_port();
    let cfg = ws.config(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n[digest]\ncron = \"not a cron\"\n"));
    let out = fristvakt(Some(&cfg), &["run"], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("digest.cron"));
    assert!(!ws.path("state.db").exists(), "nothing was started");
    assert!(get(port, "/healthz").is_none());
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/fristvakt.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart exists: point it at the binary under test.
    let path = dir.path().join("fristvakt.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/fristvakt", env!("CARGO_BIN_EXE_fristvakt"))).unwrap();
    let verify = Command::new("systemd-analyze").arg("verify").arg(&path).output();
    let Ok(verify) = verify else { panic!("systemd-analyze not found: install it with `apt-get install -y systemd`") };
    let text = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && !text.contains("fristvakt.service:"), "systemd-analyze verify:\n{text}");
    let security = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("fristvakt.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
    for key in ["Type=notify", "WatchdogSec=", "RestartPreventExitStatus=78", "LoadCredential=", "StateDirectory="] {
        assert!(unit.contains(key), "{key}");
    }
}
