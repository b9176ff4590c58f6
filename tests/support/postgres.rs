//! A throwaway PostgreSQL server for integration tests.
//!
//! The server is started from the system's PostgreSQL binaries (`initdb`,
//! `pg_ctl`, `postgres`) in a temporary directory, listens on a free
//! loopback TCP port and trusts every local connection. It is tuned for
//! speed, not durability (`fsync=off` and friends).
//!
//! Two ways to use it:
//!
//! * [`TestPostgres::shared()`] (or the free function [`shared()`]): one
//!   server per test binary, started on first use. Each test then creates its
//!   own fresh database with [`TestPostgres::fresh_database`] or
//!   [`TestPostgres::create_database`].
//! * [`TestPostgres::start()`]: a private server, stopped and removed when the
//!   value is dropped.
//!
//! Statics are never dropped, so every server also gets a watchdog: a tiny
//! shell that blocks reading a pipe whose only writer is this test process.
//! When the process exits (normally, by panic, or killed) the pipe closes and
//! the watchdog stops the server and removes its directory.
//!
//! When the tests run as root, every PostgreSQL binary is run as the
//! `postgres` system user through `runuser`, because PostgreSQL refuses to
//! run as root.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

/// Environment variable that may name the directory holding `initdb`,
/// `pg_ctl` and `postgres`, overriding the search of `PATH` and
/// `/usr/lib/postgresql/*/bin`.
pub const PG_BIN_DIR_ENV: &str = "FRISTVAKT_TEST_PG_BIN_DIR";

const MISSING_BINARIES: &str =
    "PostgreSQL server binaries not found: install them with `apt-get install -y postgresql`";

/// How often starting is retried when the chosen port was taken meanwhile.
const START_ATTEMPTS: usize = 8;

/// Settings appended to `postgresql.conf` (the port is given on the command
/// line, the socket directory is added at run time).
const SERVER_SETTINGS: &str = "
# --- added by the fristvakt test harness ---
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 32MB
log_min_messages = warning
log_statement = 'none'
";

static DB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The process-wide shared server; see [`TestPostgres::shared`].
pub fn shared() -> &'static TestPostgres {
    TestPostgres::shared()
}

/// A running throwaway PostgreSQL server.
pub struct TestPostgres {
    port: u16,
    bin_dir: PathBuf,
    run_as_postgres: bool,
    data_dir: PathBuf,
    log_file: PathBuf,
    /// Removed (recursively) on drop, after the server was stopped.
    root: Option<tempfile::TempDir>,
    /// Watchdog process and the write end of its pipe; see the module docs.
    watchdog: Option<(Child, ChildStdin)>,
}

impl TestPostgres {
    /// One server per test process, started on first use and stopped by its
    /// watchdog when the process exits. Create a fresh database per test.
    pub fn shared() -> &'static TestPostgres {
        static SHARED: OnceLock<TestPostgres> = OnceLock::new();
        SHARED.get_or_init(TestPostgres::start)
    }

    /// Initialises and starts a new server. Panics with an explanation if
    /// anything goes wrong (missing binaries, initdb or start failure).
    pub fn start() -> TestPostgres {
        let bin_dir = find_bin_dir();
        let run_as_postgres = running_as_root();
        let owner = run_as_postgres.then(postgres_user_ids);

        // /tmp is traversable by the postgres user; $TMPDIR might not be.
        let base = if run_as_postgres { PathBuf::from("/tmp") } else { std::env::temp_dir() };
        let root = tempfile::Builder::new()
            .prefix("fristvakt-pg-")
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("cannot create a temporary directory in {base:?}: {e}"));
        let root_path = root.path().to_path_buf();
        let data_dir = root_path.join("data");
        let sock_dir = root_path.join("sock");
        let log_file = root_path.join("postgres.log");
        fs::create_dir(&sock_dir).unwrap_or_else(|e| panic!("cannot create socket directory {sock_dir:?}: {e}"));
        if let Some((uid, gid)) = owner {
            for dir in [&root_path, &sock_dir] {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("cannot chown {dir:?} to the postgres user ({uid}:{gid}): {e}"));
            }
        }

        let mut pg =
            TestPostgres { port: 0, bin_dir, run_as_postgres, data_dir, log_file, root: Some(root), watchdog: None };
        // From here on, a panic drops `pg`, which cleans up what exists.
        pg.watchdog = Some(pg.spawn_watchdog());
        pg.initdb(&sock_dir);
        pg.start_server();
        pg
    }

    /// TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, db)
    }

    /// Creates database `name` (letters, digits and `_` only) and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "invalid test database name {name:?}: use 1-63 ASCII letters, digits or '_'"
        );
        let admin_url = self.url("postgres");
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test PostgreSQL at {admin_url}: {e}"));
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
        let _ = conn.close().await;
        self.url(name)
    }

    /// Creates a database with a name unique within this process and returns its URL.
    pub async fn fresh_database(&self) -> String {
        let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("test_{}_{n}", std::process::id())).await
    }

    /// Stops the server at once (an outage; `-m immediate`, as a crash), keeping its data.
    pub fn stop(&self) {
        self.stop_server();
        assert!(!self.data_dir.join("postmaster.pid").exists(), "the test PostgreSQL did not stop");
    }

    /// Starts a stopped server again, on the same port, so that clients reconnect to it.
    pub fn restart(&self) {
        let status = self.pg_ctl_start(self.port, Stdio::null(), Stdio::null());
        assert!(status.success(), "pg_ctl start on port {} failed:\n{}", self.port, self.log());
        wait_for_tcp(self.port, Duration::from_secs(30), || self.log());
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log so far (handy in assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// A command running PostgreSQL binary `bin`, as the postgres user if we are root.
    fn pg_command(&self, bin: &str) -> Command {
        let exe = self.bin_dir.join(bin);
        let mut cmd = if self.run_as_postgres {
            let mut c = Command::new(runuser());
            c.arg("-u").arg("postgres").arg("--").arg(exe);
            c
        } else {
            Command::new(exe)
        };
        if let Some(root) = &self.root {
            // The postgres user must be able to access its working directory.
            cmd.current_dir(root.path());
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    fn initdb(&self, sock_dir: &Path) {
        let output = self
            .pg_command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        if !output.status.success() {
            panic!("initdb failed ({}):\n{}", output.status, show_output(&output));
        }
        let conf = self.data_dir.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| {
                f.write_all(SERVER_SETTINGS.as_bytes())?;
                writeln!(f, "unix_socket_directories = '{}'", sock_dir.display())
            })
            .unwrap_or_else(|e| panic!("cannot append settings to {conf:?}: {e}"));
    }

    /// `pg_ctl start`, waiting until the server accepts connections on `port`.
    fn pg_ctl_start(&self, port: u16, stdout: Stdio, stderr: Stdio) -> std::process::ExitStatus {
        self.pg_command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {port}"))
            .stdout(stdout)
            .stderr(stderr)
            .status()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl start: {e}"))
    }

    fn start_server(&mut self) {
        let root = self.root.as_ref().expect("temp dir").path().to_path_buf();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let log_len_before = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
            // Output goes to a file, never a pipe: a pipe inherited by the
            // daemonised postmaster could keep `output()` waiting forever.
            let out_path = root.join("pg_ctl.out");
            let out = File::create(&out_path).unwrap_or_else(|e| panic!("cannot create {out_path:?}: {e}"));
            let err = out.try_clone().expect("clone file handle");
            let status = self.pg_ctl_start(port, out.into(), err.into());
            if status.success() {
                self.port = port;
                wait_for_tcp(port, Duration::from_secs(30), || self.log());
                return;
            }
            let log = self.log();
            let new_log = log.get(log_len_before as usize..).unwrap_or(&log);
            let port_taken = new_log.contains("could not bind") || new_log.contains("already in use");
            if port_taken && attempt < START_ATTEMPTS {
                continue;
            }
            panic!(
                "pg_ctl start failed ({status}) on port {port}:\n{}\n--- server log ---\n{new_log}",
                fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
    }

    /// Starts the watchdog described in the module docs. It runs as the
    /// current user (so it can use `runuser` when root) in its own process
    /// group, so Ctrl-C or a test runner killing our group does not kill it.
    fn spawn_watchdog(&self) -> (Child, ChildStdin) {
        let root = self.root.as_ref().expect("temp dir").path();
        let mut stop = self.pg_command("pg_ctl");
        stop.arg("stop").arg("-D").arg(&self.data_dir).args(["-m", "immediate", "-w"]);
        let script = r#"trap '' HUP INT PIPE
read _ignored
data=$1; root=$2; shift 2
if [ -f "$data/postmaster.pid" ]; then "$@" >/dev/null 2>&1; fi
case "$root" in */fristvakt-pg-*) rm -rf "$root" ;; esac"#;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("fristvakt-pg-watchdog")
            .arg(&self.data_dir)
            .arg(root)
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn the PostgreSQL watchdog shell: {e}"));
        let stdin = child.stdin.take().expect("watchdog stdin");
        (child, stdin)
    }

    fn stop_server(&self) {
        if self.data_dir.join("postmaster.pid").exists() {
            let _ = self
                .pg_command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "immediate", "-w"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop_server();
        drop(self.root.take());
        if let Some((mut child, stdin)) = self.watchdog.take() {
            // Closing the pipe wakes the watchdog; it finds nothing left to do.
            drop(stdin);
            let _ = child.wait();
        }
    }
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// uid and gid of the `postgres` system user, from /etc/passwd.
fn postgres_user_ids() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 4 && fields[0] == "postgres" {
                Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
            } else {
                None
            }
        })
        .unwrap_or_else(|| {
            panic!(
                "tests run as root but there is no `postgres` system user to run PostgreSQL as \
                 (PostgreSQL refuses to run as root); {MISSING_BINARIES}"
            )
        })
}

fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`runuser` (util-linux) is needed to run PostgreSQL as the postgres user when tests run as root")
        })
}

/// Finds a directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bin_dir() -> PathBuf {
    let complete = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| dir.join(b).is_file());
    if let Some(dir) = std::env::var_os(PG_BIN_DIR_ENV) {
        let dir = PathBuf::from(dir);
        assert!(
            complete(&dir),
            "{PG_BIN_DIR_ENV}={dir:?} does not contain initdb, pg_ctl and postgres. {MISSING_BINARIES}"
        );
        return dir;
    }
    // `initdb` on PATH, following symlinks (Debian's /usr/local/bin links
    // point into /usr/lib/postgresql/NN/bin, where `postgres` lives too).
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if let Ok(initdb) = fs::canonicalize(dir.join("initdb")) {
                if let Some(real_dir) = initdb.parent() {
                    if complete(real_dir) {
                        return real_dir.to_path_buf();
                    }
                }
            }
        }
    }
    // Debian/Ubuntu layout; newest major version first.
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, dir)) => dir,
        None => panic!("{MISSING_BINARIES} (looked on PATH and in /usr/lib/postgresql/*/bin)"),
    }
}

/// A currently free loopback port (racy by nature; callers retry on conflict).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
}

fn wait_for_tcp(port: u16, timeout: Duration, log: impl Fn() -> String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        if Instant::now() > deadline {
            panic!("PostgreSQL started but does not accept TCP connections on {addr}:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn show_output(output: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
