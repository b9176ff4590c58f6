//! The daemon as operations see it: the real binary under a fake systemd notify socket, its
//! HTTP endpoints, SIGTERM, a bad configuration, and the systemd unit itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::sqlite::SqlitePoolOptions;
use sqlx::Row;

use crate::helpers::{fristvakt, stderr};
use crate::support::app::{binary, TestApp};
use crate::support::process::{process_exists, ChildGuard};
use crate::support::promtool;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A minimal HTTP/1.1 GET: (status, body).
pub(crate) fn get(port: u16, path: &str) -> Option<(u16, String)> {
    get_within(port, path, Duration::from_secs(10))
}

/// [`get`], waiting up to `timeout` for the answer.
fn get_within(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

pub(crate) fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) struct Notify {
    socket: UnixDatagram,
    pub(crate) seen: Vec<String>,
}

impl Notify {
    pub(crate) fn bind(path: &Path) -> Notify {
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Notify { socket, seen: Vec::new() }
    }

    pub(crate) fn wait_for(&mut self, needle: &str, timeout: Duration) {
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

    /// Reads whatever is queued, without waiting.
    pub(crate) fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        self.socket.set_nonblocking(true).unwrap();
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket.set_nonblocking(false).unwrap();
    }

    pub(crate) fn count(&self, needle: &str) -> usize {
        self.seen.iter().flat_map(|m| m.lines()).filter(|l| l.starts_with(needle)).count()
    }
}

/// The daemon under a guard that kills and reaps it when the test ends, also on a panic.
fn spawn_daemon(config: &Path, notify: &Path) -> ChildGuard {
    spawn_watched_daemon(config, notify, "400000", "info", Stdio::piped())
}

/// The daemon as systemd runs it with `WatchdogSec` (`watchdog_usec`), its notifications to
/// `notify`, logging at `log` to `stderr`; under a guard that kills and reaps it.
pub(crate) fn spawn_watched_daemon(
    config: &Path,
    notify: &Path,
    watchdog_usec: &str,
    log: &str,
    stderr: Stdio,
) -> ChildGuard {
    // systemd names the watched process in WATCHDOG_PID; `exec` keeps the shell's pid.
    let child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" --config \"$1\" run")
        .arg(env!("CARGO_BIN_EXE_fristvakt"))
        .arg(config)
        .env_remove("FRISTVAKT_CONFIG")
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", watchdog_usec)
        .env("RUST_LOG", log)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    ChildGuard::new(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_notifies_systemd_serves_probes_and_metrics_and_stops_cleanly() {
    let ws = TestApp::sqlite();
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
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(metrics.contains(family), "{family} missing from /metrics:\n{metrics}");
    }
    // A person opening the address finds the endpoints.
    let (status, landing) = get(port, "/").unwrap();
    assert_eq!(status, 200);
    for link in ["href=\"/healthz\"", "href=\"/readyz\"", "href=\"/metrics\""] {
        assert!(landing.contains(link), "{link} missing from /:\n{landing}");
    }
    // SIGHUP (systemctl reload, a closed terminal) does not stop the daemon.
    let pid = child.child_mut().id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.wait_timeout(Duration::from_millis(10)).is_none(), "SIGHUP killed the daemon");
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    assert!(!metrics.contains("@kommun.example"), "no address in metrics");
    assert!(!metrics.contains("-BU-0"), "no case reference in metrics");
    promtool::check_metrics(&metrics);

    // The register file goes away: readiness turns 503 with a reason, and back when it returns.
    let register = ws.path("register.db");
    let moved = ws.path("register.db.away");
    std::fs::rename(&register, &moved).unwrap();
    wait_until("readyz 503", Duration::from_secs(20), || get(port, "/readyz").map(|r| r.0) == Some(503));
    let (_, reason) = get(port, "/readyz").unwrap();
    assert!(reason.contains("register"), "{reason}");
    std::fs::rename(&moved, &register).unwrap();
    wait_until("readyz 200 again", Duration::from_secs(20), || get(port, "/readyz").map(|r| r.0) == Some(200));

    child.terminate();
    // Read the notifications meanwhile, as systemd does: a full queue holds each message back
    // up to a second (and then drops it).
    let stop_by = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.wait_timeout(Duration::from_millis(50)) {
            break status;
        }
        assert!(Instant::now() < stop_by, "the daemon stops within 30 s of SIGTERM");
        notify.drain();
    };
    let mut log = String::new();
    child.child_mut().stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    notify.wait_for("STOPPING=1", Duration::from_secs(2));
    // Message-IDs carry the sender's domain; no other address may appear.
    assert!(log.contains("SIGHUP received and ignored"), "{log}");
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

/// A password in the register URL (`?password=`, `?sslpassword=`) reaches neither the log, nor
/// systemd's STATUS=, nor a /readyz reason, when the register cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_passwords_reach_no_log_status_or_readiness_reason() {
    let ws = TestApp::sqlite();
    // A successful poll on a SQLite register first, so that readiness goes on to probe the
    // register (it stops at "no successful poll yet" otherwise).
    let sqlite = ws.config("");
    let out = fristvakt(Some(&sqlite), &["demo-data", "--cases", "20"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fristvakt(Some(&sqlite), &["poll", "--once"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let closed = free_port();
    let port = free_port();
    let cfg = ws.path("postgres.toml");
    std::fs::write(
        &cfg,
        format!(
            "[register]\nurl = \"postgres://fristvakt@127.0.0.1:{closed}/register?password=SECRETPW&sslpassword=SECRETSSL&sslmode=disable\"\n\
             poll_interval = \"60s\"\n[state]\nurl = \"{}\"\n[mail]\nfile_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            ws.sqlite_url("state.db"),
            ws.path("outbox").display()
        ),
    )
    .unwrap();
    let mut notify = Notify::bind(&ws.path("notify.sock"));
    let mut child = spawn_daemon(&cfg, &ws.path("notify.sock"));
    notify.wait_for("READY=1", Duration::from_secs(60));
    // READY comes before the first poll, which waits for the pool's connect timeout (10 s).
    notify.wait_for("STATUS=last poll failed", Duration::from_secs(30));
    // The background check names the register's error once its connect timeout (10 s) passed.
    let mut answer = None;
    wait_until("/readyz naming the register's error", Duration::from_secs(60), || {
        answer = get_within(port, "/readyz", Duration::from_secs(1));
        answer.as_ref().is_some_and(|(_, reason)| reason.contains("cannot connect"))
    });
    let (status, reason) = answer.unwrap();
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("cannot connect") && reason.contains("[redacted]"), "{reason}");

    child.terminate();
    // Read the notifications meanwhile: a full socket queue would block the daemon's watchdog ping.
    let stop_by = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while child.wait_timeout(Duration::from_millis(50)).is_none() {
        assert!(Instant::now() < stop_by, "the daemon stops within 30 s of SIGTERM");
        if let Ok(n) = notify.socket.recv(&mut buf) {
            notify.seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let mut log = String::new();
    child.child_mut().stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("poll failed") && log.contains("[redacted]"), "{log}");
    let statuses: Vec<&str> = notify.seen.iter().flat_map(|m| m.lines()).filter(|l| l.starts_with("STATUS=")).collect();
    assert!(statuses.iter().any(|s| s.contains("[redacted]")), "{statuses:?}");
    for (what, text) in [("log", log.as_str()), ("readyz", reason.as_str()), ("STATUS=", &statuses.join("\n"))] {
        for secret in ["SECRETPW", "SECRETSSL"] {
            assert!(!text.contains(secret), "{secret} in the {what}:\n{text}");
        }
    }
}

/// The README's first command: `fristvakt --config config/demo.toml run` on a fresh checkout.
#[test]
fn the_readme_demo_daemon_creates_its_register_answers_and_writes_mail() {
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let listen = format!("127.0.0.1:{port}");
    let child = binary(Some(&demo), &["run"], &[("FRISTVAKT__HTTP__LISTEN", &listen)])
        .current_dir(cwd.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = ChildGuard::new(child);
    let started = Instant::now();
    wait_until("healthz 200", Duration::from_secs(60), || get(port, "/healthz").map(|r| r.0) == Some(200));
    let outbox = cwd.path().join("var/outbox");
    let count = || std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
    wait_until("demo mail in var/outbox", Duration::from_secs(60), || count() > 0);
    println!("demo daemon: /healthz and {} mail(s) in var/outbox after {:?}", count(), started.elapsed());
    assert!(cwd.path().join("var/register.db").exists(), "the demo register was created on first start");
    // Readiness is checked in the background every second: the first poll's success shows soon.
    wait_until("readyz 200", Duration::from_secs(10), || get(port, "/readyz").map(|r| r.0) == Some(200));
    daemon.terminate();
    let status = daemon.wait_timeout(Duration::from_secs(30)).expect("stops within 30 s of SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_daemon_started_by_a_test_that_panics_is_killed_and_reaped() {
    let ws = TestApp::sqlite();
    let port = free_port();
    let cfg = ws.config(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"));
    let mut pid = 0;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _daemon = spawn_daemon(&cfg, &ws.path("notify.sock"));
        pid = _daemon.id();
        wait_until("healthz 200", Duration::from_secs(60), || get(port, "/healthz").map(|r| r.0) == Some(200));
        panic!("a failing assertion while the daemon runs");
    }));
    assert!(outcome.is_err());
    assert!(pid != 0);
    assert!(!process_exists(pid), "the daemon {pid} outlived its panicking test");
    assert!(get(port, "/healthz").is_none(), "nothing answers on the daemon's port any more");
}

#[test]
fn the_alert_rules_pass_their_promtool_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    let run = |args: &[&str]| promtool::run(&dir, args, "");
    let checked = run(&["check", "rules", "fristvakt-rules.yml"]);
    assert!(checked.contains("7 rules found"), "{checked}");
    let tested = run(&["test", "rules", "fristvakt-rules.test.yml"]);
    println!("{tested}");
    // Every alert of the rules file has a test that sees it fire.
    let rules = std::fs::read_to_string(dir.join("fristvakt-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("fristvakt-rules.test.yml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts:\n          - ")),
            "no firing test for {alert}"
        );
    }
    // Every alert says what to do: a runbook line naming a command.
    let alerts = rules.split("- alert: ").skip(1);
    for alert in alerts {
        let name = alert.lines().next().unwrap_or_default();
        let runbook = alert.lines().find_map(|l| l.trim().strip_prefix("runbook: "));
        assert!(
            runbook.is_some_and(|r| r.contains("fristvakt") || r.contains("journalctl")),
            "{name} has no runbook annotation"
        );
    }
}

#[test]
fn a_bad_configuration_exits_78_before_anything_starts() {
    let ws = TestApp::sqlite();
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
    std::fs::write(&path, unit.replace("/usr/bin/fristvakt", env!("CARGO_BIN_EXE_fristvakt"))).unwrap();
    // The man page `Documentation=` names is installed by the package, not on a build machine.
    let verify = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output();
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

/// The Debian package (Cargo.toml's `[package.metadata.deb]`, built by `scripts/package`)
/// installs what the unit and the README count on: the binary where `ExecStart=` runs it, the
/// unit, the sysusers file, the configuration the unit names, readable by the service's group
/// (postinst), the documents `Documentation=` points at, the man pages and completions.
#[test]
fn the_package_installs_what_the_unit_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml")).unwrap().parse().unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets: Vec<(String, String, String)> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            (a[0].as_str().unwrap().into(), a[1].as_str().unwrap().into(), a[2].as_str().unwrap().into())
        })
        .collect();
    let installed =
        |dest: &str| assets.iter().find(|(_, d, _)| d == dest).unwrap_or_else(|| panic!("{dest} not installed"));
    let unit = std::fs::read_to_string(root.join("deploy/fristvakt.service")).unwrap();
    let value = |key: &str| unit.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("{key}"));

    assert_eq!(value("ExecStart="), "/usr/bin/fristvakt run");
    assert_eq!(installed("usr/bin/").0, "target/release/fristvakt");
    assert_eq!(installed("usr/lib/systemd/system/fristvakt.service").0, "deploy/fristvakt.service");
    assert_eq!(installed("usr/lib/sysusers.d/fristvakt.conf").0, "deploy/fristvakt.sysusers");
    let config = value("Environment=FRISTVAKT_CONFIG=/");
    let (source, _, mode) = installed(config);
    assert_eq!((source.as_str(), mode.as_str()), ("config/example.toml", "640"));
    for doc in value("Documentation=").split_whitespace() {
        match doc.strip_prefix("file:///") {
            Some(path) => assert!(installed(path).0.ends_with(".md"), "{doc}"),
            None => assert_eq!(doc, "man:fristvakt(1)"),
        }
    }
    for dest in ["usr/share/man/man1/", "usr/share/bash-completion/completions/fristvakt"] {
        installed(dest);
    }
    // The service runs as the sysusers user and reads its configuration through its group.
    let sysusers = std::fs::read_to_string(root.join("deploy/fristvakt.sysusers")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u fristvakt ")) && value("User=") == "fristvakt");
    let postinst = std::fs::read_to_string(root.join("deploy/debian/postinst")).unwrap();
    assert!(postinst.contains("systemd-sysusers"), "{postinst}");
    assert!(postinst.contains("chown root:fristvakt /etc/fristvakt /etc/fristvakt/fristvakt.toml"), "{postinst}");
    assert!(postinst.contains("chmod 0750 /etc/fristvakt") && postinst.contains("chmod 0640"), "{postinst}");
    // The port is off Prometheus' default allocations (9187 is postgres_exporter's).
    let settings = fristvakt::config::load_with_env(None, Vec::new()).unwrap();
    assert_ne!(settings.http.listen.port(), 9187);
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains(&format!("port {} by default", settings.http.listen.port())));
}

#[test]
fn a_second_daemon_on_the_same_sqlite_state_is_refused() {
    let ws = TestApp::sqlite();
    let port = free_port();
    let cfg = ws.config(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"));
    let _first = spawn_daemon(&cfg, &ws.path("notify.sock"));
    wait_until("healthz 200", Duration::from_secs(60), || get(port, "/healthz").map(|r| r.0) == Some(200));

    let other_port = free_port();
    let listen = format!("127.0.0.1:{other_port}");
    let mut second = ws.spawn(&cfg, &["run"], &[("FRISTVAKT__HTTP__LISTEN", &listen)], Stdio::piped());
    let status = second.wait_timeout(Duration::from_secs(30)).expect("the second daemon exits at once");
    let mut err = String::new();
    second.child_mut().stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("in use by another fristvakt daemon"), "{err}");
    assert!(get(other_port, "/healthz").is_none());
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200), "the first daemon runs on");
}
