//! A throwaway PostgreSQL server, for the tests (`tests/support/postgres.rs`) and the benchmark
//! (`src/bin/bench/postgres.rs`, which includes this file by its path): one launcher for both.
//!
//! Started from the system's binaries (`initdb`, `pg_ctl`, `postgres`; on Debian in
//! `/usr/lib/postgresql/*/bin`) in a directory of the caller's, listening on a free loopback port
//! and trusting local connections; as the `postgres` system user through `runuser` when run as
//! root (PostgreSQL refuses to run as root). [`PgServer`]'s `Drop` stops it (`pg_ctl stop -m
//! immediate`) and removes its directory, also on an error or a panic; a watchdog shell does the
//! same when the process itself is interrupted or killed (statics are never dropped): it blocks
//! reading a pipe whose only writer is this process.
//!
//! Errors are `String`s naming what failed, so that each caller turns them into its own kind (a
//! test panics, the benchmark returns an error).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

/// Environment variable that may name the directory holding `initdb`, `pg_ctl` and `postgres`,
/// overriding the search of `PATH` and `/usr/lib/postgresql/*/bin`.
pub const PG_BIN_DIR_ENV: &str = "FRISTVAKT_TEST_PG_BIN_DIR";

pub const MISSING_BINARIES: &str =
    "PostgreSQL server binaries not found: install them with `apt-get install -y postgresql`";

/// How often starting is retried when the chosen port was taken meanwhile.
const START_ATTEMPTS: usize = 8;

/// A running throwaway PostgreSQL server; stopped and removed when dropped.
pub struct PgServer {
    bin_dir: PathBuf,
    as_postgres: bool,
    /// The server's own directory (data, socket, log), removed on drop.
    root: PathBuf,
    port: u16,
    /// The watchdog shell and the write end of its pipe.
    watchdog: Option<(Child, ChildStdin)>,
}

/// The directory holding `initdb`, `pg_ctl`, `postgres` and `psql`: [`PG_BIN_DIR_ENV`] when
/// set, else `initdb` on the PATH (following its symlink: Debian's links point into
/// `/usr/lib/postgresql/NN/bin`), else the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Result<PathBuf, String> {
    let complete = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| dir.join(b).is_file());
    if let Some(dir) = std::env::var_os(PG_BIN_DIR_ENV) {
        let dir = PathBuf::from(dir);
        return if complete(&dir) {
            Ok(dir)
        } else {
            Err(format!("{PG_BIN_DIR_ENV}={dir:?} does not contain initdb, pg_ctl and postgres. {MISSING_BINARIES}"))
        };
    }
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    if let Some(dir) = on_path
        .filter_map(|dir| fs::canonicalize(dir.join("initdb")).ok()?.parent().map(Path::to_path_buf))
        .find(|dir| complete(dir))
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .ok_or_else(|| format!("{MISSING_BINARIES} (looked on PATH and in /usr/lib/postgresql/*/bin)"))
}

/// A new directory for a server under `/tmp` (which the postgres user can traverse, where
/// `$TMPDIR` might not be), named `fristvakt-pg-…`: the watchdog removes nothing else.
pub fn new_root() -> Result<PathBuf, String> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let root = PathBuf::from(format!("/tmp/fristvakt-pg-{}-{n}-{nanos}", std::process::id()));
    fs::create_dir(&root).map_err(|e| format!("cannot create {root:?}: {e}"))?;
    Ok(root)
}

impl PgServer {
    /// Initialises and starts a server in `root` (an empty directory whose name contains
    /// `fristvakt-pg-`, see [`new_root`]; removed with the server), with `settings` appended to
    /// its `postgresql.conf`.
    pub fn start(bin_dir: &Path, root: &Path, settings: &str) -> Result<PgServer, String> {
        if !root.to_string_lossy().contains("fristvakt-pg-") {
            return Err(format!("unexpected server directory {root:?}"));
        }
        let as_postgres = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let sock = root.join("sock");
        fs::create_dir_all(&sock).map_err(|e| format!("cannot create {sock:?}: {e}"))?;
        let mut server =
            PgServer { bin_dir: bin_dir.to_path_buf(), as_postgres, root: root.to_path_buf(), port: 0, watchdog: None };
        // From here on an error drops `server`, which cleans up what exists.
        if as_postgres {
            let (uid, gid) = postgres_user_ids().ok_or_else(|| {
                format!(
                    "running as root, and there is no `postgres` system user to run PostgreSQL as (it refuses \
                     root); {MISSING_BINARIES}"
                )
            })?;
            for dir in [root, sock.as_path()] {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                    .map_err(|e| format!("cannot chown {dir:?} to the postgres user: {e}"))?;
            }
        }
        server.watchdog = Some(server.spawn_watchdog()?);
        let data = server.data_dir();
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
        }
        let conf = data.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| {
                f.write_all(settings.as_bytes())?;
                writeln!(f, "\nlisten_addresses = '127.0.0.1'")?;
                writeln!(f, "unix_socket_directories = '{}'", sock.display())
            })
            .map_err(|e| format!("cannot append settings to {conf:?}: {e}"))?;
        for attempt in 1..=START_ATTEMPTS {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("cannot bind a loopback port: {e}"))?
                .port();
            let log_before = fs::metadata(server.log_file()).map_or(0, |m| m.len() as usize);
            if server.pg_ctl_start(port)? {
                server.port = port;
                server.wait_for_tcp()?;
                return Ok(server);
            }
            let log = server.log();
            let log = log.get(log_before..).unwrap_or(&log);
            let port_taken = log.contains("could not bind") || log.contains("already in use");
            if !(port_taken && attempt < START_ATTEMPTS) {
                return Err(format!("pg_ctl start failed on port {port}:\n{log}"));
            }
        }
        Err(format!("pg_ctl start: no free port after {START_ATTEMPTS} attempts"))
    }

    /// TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database` (1–63 ASCII letters, digits or `_`) and returns its URL.
    pub async fn create_database(&self, database: &str) -> Result<String, String> {
        if database.is_empty()
            || database.len() > 63
            || !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!("invalid database name {database:?}: use 1-63 ASCII letters, digits or '_'"));
        }
        let admin = self.url("postgres");
        let mut conn =
            PgConnection::connect(&admin).await.map_err(|e| format!("cannot connect to PostgreSQL at {admin}: {e}"))?;
        conn.execute(format!("CREATE DATABASE \"{database}\"").as_str())
            .await
            .map_err(|e| format!("CREATE DATABASE {database} failed: {e}"))?;
        let _ = conn.close().await;
        Ok(self.url(database))
    }

    /// `psql` on `database`, quiet, stopping at the first error (a client: it runs as anyone).
    pub fn psql(&self, database: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join("psql"));
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database)
            .stdin(Stdio::null());
        command
    }

    /// Stops the server at once (an outage; `-m immediate`, as a crash), keeping its data.
    pub fn stop(&self) -> Result<(), String> {
        self.stop_quietly();
        match self.data_dir().join("postmaster.pid").exists() {
            true => Err("the PostgreSQL server did not stop".to_string()),
            false => Ok(()),
        }
    }

    /// Starts a stopped server again, on the same port, so that clients reconnect to it.
    pub fn restart(&self) -> Result<(), String> {
        if !self.pg_ctl_start(self.port)? {
            return Err(format!("pg_ctl start on port {} failed:\n{}", self.port, self.log()));
        }
        self.wait_for_tcp()
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// A server binary, run as the postgres user when this process is root.
    fn command(&self, bin: &str) -> Command {
        let exe = self.bin_dir.join(bin);
        let mut command = if self.as_postgres {
            let mut c = Command::new(runuser());
            c.arg("-u").arg("postgres").arg("--").arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // The postgres user must be able to enter its working directory.
        command.current_dir(&self.root).stdin(Stdio::null());
        command
    }

    /// `pg_ctl start` on `port`, waiting until the server runs; whether it started. Its output
    /// goes to a file, never a pipe: the daemonised postmaster would inherit the pipe.
    fn pg_ctl_start(&self, port: u16) -> Result<bool, String> {
        let out_path = self.root.join("pg_ctl.out");
        let out = File::create(&out_path).map_err(|e| format!("cannot create {out_path:?}: {e}"))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let status = self
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {port}"))
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| format!("cannot run pg_ctl start: {e}"))?;
        Ok(status.success())
    }

    fn wait_for_tcp(&self) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("PostgreSQL started but does not accept connections on {addr}:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn stop_command(&self) -> Command {
        let mut stop = self.command("pg_ctl");
        stop.arg("stop").arg("-D").arg(self.data_dir()).args(["-m", "immediate", "-w"]);
        stop
    }

    fn stop_quietly(&self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self.stop_command().stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }

    /// A shell that waits for this process to end (its pipe's only writer), then stops the server
    /// if it still runs and removes its directory. In a process group of its own, so that Ctrl-C
    /// or a test runner ending the group does not end it first.
    fn spawn_watchdog(&self) -> Result<(Child, ChildStdin), String> {
        let stop = self.stop_command();
        let script = r#"trap '' HUP INT PIPE
read _ignored
data=$1; root=$2; shift 2
if [ -f "$data/postmaster.pid" ]; then "$@" >/dev/null 2>&1; fi
case "$root" in */fristvakt-pg-*) rm -rf "$root" ;; esac"#;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("fristvakt-pg-watchdog")
            .arg(self.data_dir())
            .arg(&self.root)
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the PostgreSQL watchdog shell: {e}"))?;
        let stdin = child.stdin.take().ok_or("the watchdog's stdin")?;
        Ok((child, stdin))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop_quietly();
        let _ = fs::remove_dir_all(&self.root);
        if let Some((mut child, stdin)) = self.watchdog.take() {
            // Closing the pipe wakes the watchdog; it finds nothing left to do.
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// uid and gid of the `postgres` system user, from /etc/passwd.
fn postgres_user_ids() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let fields: Vec<&str> = passwd
        .lines()
        .map(|line| line.split(':').collect())
        .find(|f: &Vec<&str>| f.len() >= 4 && f[0] == "postgres")?;
    Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
}

fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}
