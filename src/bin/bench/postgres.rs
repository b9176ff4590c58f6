//! A throwaway PostgreSQL server for the benchmark, and its demo register.
//!
//! Started from the system's binaries (`initdb`, `pg_ctl`; on Debian in
//! `/usr/lib/postgresql/*/bin`) in a directory of the benchmark's, listening on a free loopback
//! port and trusting local connections; as the `postgres` system user through `runuser` when the
//! benchmark runs as root (PostgreSQL refuses to run as root). The approach of the tests'
//! `tests/support/postgres.rs`, reduced to what the benchmark needs and returning errors instead
//! of panicking. [`Server`]'s `Drop` stops it (`pg_ctl stop -m immediate`) and removes its
//! directory, also on an error or a panic; a watchdog shell does the same when the benchmark
//! itself is interrupted or killed.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::{Context, Result};
use sqlx::{Connection, Executor, PgConnection};

use fristvakt::register::{RawRow, COLUMNS};

/// Settings appended to `postgresql.conf`. Commits do not wait for the disk
/// (`synchronous_commit = off`), as SQLite's `synchronous = NORMAL` in WAL mode does not; `fsync`
/// stays on, so checkpoints cost what they cost.
const SERVER_SETTINGS: &str = "
# --- added by fristvakt-bench ---
listen_addresses = '127.0.0.1'
synchronous_commit = off
shared_buffers = 256MB
max_connections = 50
log_min_messages = warning
";

/// How often starting is retried when the chosen port was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// A running throwaway PostgreSQL server; stopped and removed when dropped.
pub struct Server {
    bin_dir: PathBuf,
    as_postgres: bool,
    /// The server's own directory (data, socket, log), removed on drop.
    root: PathBuf,
    port: u16,
    /// The watchdog shell and the write end of its pipe: when this process ends, however, the
    /// pipe closes and the watchdog stops the server.
    watchdog: Option<(Child, ChildStdin)>,
}

/// The directory holding `initdb`, `pg_ctl`, `postgres` and `psql`: `initdb` on the PATH
/// (following its symlink), else the newest `/usr/lib/postgresql/*/bin`. `None` when there is none.
pub fn find_bin_dir() -> Option<PathBuf> {
    let complete = |dir: &Path| ["initdb", "pg_ctl", "postgres", "psql"].iter().all(|b| dir.join(b).is_file());
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    if let Some(dir) = on_path
        .filter_map(|dir| fs::canonicalize(dir.join("initdb")).ok()?.parent().map(Path::to_path_buf))
        .find(|dir| complete(dir))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

impl Server {
    /// Initialises and starts a server in `root` (created; its name must contain `fristvakt-`,
    /// the watchdog removes nothing else).
    pub fn start(bin_dir: &Path, root: &Path) -> Result<Server> {
        anyhow::ensure!(root.to_string_lossy().contains("fristvakt-"), "unexpected server directory {root:?}");
        let as_postgres = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        fs::create_dir_all(root.join("sock")).with_context(|| format!("creating {root:?}"))?;
        if as_postgres {
            let (uid, gid) = postgres_user_ids().context(
                "running as root, and there is no `postgres` system user to run PostgreSQL as (it refuses root)",
            )?;
            for dir in [root.to_path_buf(), root.join("sock")] {
                std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).with_context(|| format!("chown {dir:?}"))?;
            }
        }
        let mut server =
            Server { bin_dir: bin_dir.to_path_buf(), as_postgres, root: root.to_path_buf(), port: 0, watchdog: None };
        // From here on an error drops `server`, which cleans up what exists.
        server.watchdog = Some(server.spawn_watchdog()?);
        let data = server.data_dir();
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .context("running initdb")?;
        anyhow::ensure!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        let mut conf = OpenOptions::new().append(true).open(data.join("postgresql.conf"))?;
        conf.write_all(SERVER_SETTINGS.as_bytes())?;
        writeln!(conf, "unix_socket_directories = '{}'", root.join("sock").display())?;
        let log_file = root.join("postgres.log");
        for attempt in 1..=START_ATTEMPTS {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let log_before = fs::metadata(&log_file).map_or(0, |m| m.len() as usize);
            // Output to a file, never a pipe: the daemonised postmaster would inherit the pipe.
            let out = fs::File::create(root.join("pg_ctl.out"))?;
            let status = server
                .command("pg_ctl")
                .arg("start")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log_file)
                .args(["-w", "-t", "60", "-o"])
                .arg(format!("-p {port}"))
                .stdout(out.try_clone()?)
                .stderr(out)
                .status()
                .context("running pg_ctl start")?;
            if status.success() {
                server.port = port;
                return Ok(server);
            }
            let log = fs::read_to_string(&log_file).unwrap_or_default();
            let log = log.get(log_before..).unwrap_or(&log);
            let port_taken = log.contains("could not bind") || log.contains("already in use");
            anyhow::ensure!(port_taken && attempt < START_ATTEMPTS, "pg_ctl start failed ({status}):\n{log}");
        }
        anyhow::bail!("pg_ctl start: no free port after {START_ATTEMPTS} attempts")
    }

    /// `postgres://postgres@127.0.0.1:PORT/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database` (a plain identifier).
    pub async fn create_database(&self, database: &str) -> Result<()> {
        let mut conn = PgConnection::connect(&self.url("postgres")).await?;
        conn.execute(format!("CREATE DATABASE {database}").as_str()).await?;
        conn.close().await?;
        Ok(())
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

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// A server binary, run as the postgres user when this process is root.
    fn command(&self, bin: &str) -> Command {
        let exe = self.bin_dir.join(bin);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(exe);
            c
        } else {
            Command::new(exe)
        };
        command.current_dir(&self.root).stdin(Stdio::null());
        command
    }

    fn stop_command(&self) -> Command {
        let mut stop = self.command("pg_ctl");
        stop.arg("stop").arg("-D").arg(self.data_dir()).args(["-m", "immediate", "-w"]);
        stop
    }

    /// A shell that waits for this process to end (its pipe's only writer), then stops the server
    /// if it still runs and removes its directory. In a process group of its own, so that Ctrl-C
    /// does not end it first.
    fn spawn_watchdog(&self) -> Result<(Child, ChildStdin)> {
        let stop = self.stop_command();
        let script = r#"trap '' HUP INT PIPE
read _ignored
data=$1; root=$2; shift 2
if [ -f "$data/postmaster.pid" ]; then "$@" >/dev/null 2>&1; fi
case "$root" in */fristvakt-*) rm -rf "$root" ;; esac"#;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("fristvakt-bench-pg-watchdog")
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
            .context("starting the PostgreSQL watchdog shell")?;
        let stdin = child.stdin.take().context("the watchdog's stdin")?;
        Ok((child, stdin))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self.stop_command().stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
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
    let fields: Vec<&str> =
        passwd.lines().map(|line| line.split(':').collect()).find(|f: &Vec<&str>| f[0] == "postgres")?;
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

/// Rows sent per COPY message while loading the register.
const COPY_BATCH: usize = 10_000;

/// Writes `cases` to a PostgreSQL register at `url`: a table with the contract's types (`date`,
/// `timestamptz`, `text`; the optional columns included) loaded with COPY, indexed on `case_ref`,
/// `updated_at` and `child_key` as a register would be, vacuumed and analysed, and `view` over it.
pub async fn write_register(url: &str, view: &str, cases: impl Iterator<Item = RawRow>) -> Result<u64> {
    let mut conn = PgConnection::connect(url).await?;
    let table = format!("{view}_rows");
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{} {}{}", c.name, c.storage.postgres_type(), if c.nullable { "" } else { " NOT NULL" }))
        .collect();
    conn.execute(
        format!("CREATE TABLE {table} ({}); CREATE VIEW {view} AS SELECT * FROM {table}", columns.join(", ")).as_str(),
    )
    .await?;
    let mut copy = conn.copy_in_raw(&format!("COPY {table} FROM STDIN")).await?;
    let mut cases = cases.peekable();
    let mut buffer = Vec::new();
    while cases.peek().is_some() {
        buffer.clear();
        for case in cases.by_ref().take(COPY_BATCH) {
            copy_line(&mut buffer, &case);
        }
        copy.send(buffer.as_slice()).await?;
    }
    let written = copy.finish().await?;
    // Indexes after the load, as a bulk load does; VACUUM sets the visibility map and hint bits
    // that a register's rows have long had, so that no reader pays for writing them.
    conn.execute(
        format!(
            "ALTER TABLE {table} ADD PRIMARY KEY (case_ref); \
             CREATE INDEX {table}_updated_at ON {table} (updated_at); \
             CREATE INDEX {table}_child_key ON {table} (child_key)"
        )
        .as_str(),
    )
    .await?;
    conn.execute(format!("VACUUM ANALYZE {table}").as_str()).await?;
    conn.close().await?;
    Ok(written)
}

/// One case as a line of COPY's text format: tab-separated, `\N` for NULL, in table order.
fn copy_line(out: &mut Vec<u8>, case: &RawRow) {
    let values = case.values();
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match value {
            None => out.extend_from_slice(b"\\N"),
            Some(text) => {
                for byte in text.bytes() {
                    match byte {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        other => out.push(other),
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_line_escapes_and_marks_nulls() {
        let case = RawRow {
            case_ref: Some("2026-BU-1\t2".into()),
            unit: Some("BRO\\BU".into()),
            child_sex: Some("F".into()),
            received_on: Some("2026-01-02".into()),
            updated_at: Some("2026-01-02T08:00:00.000000Z".into()),
            follow_up_ended_on: Some("a\nb".into()),
            ..RawRow::default()
        };
        let mut out = Vec::new();
        copy_line(&mut out, &case);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-BU-1\\t2\tBRO\\\\BU\t\\N\tF\t2026-01-02\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t2026-01-02T08:00:00.000000Z\
             \t\\N\t\\N\ta\\nb\t\\N\t\\N\n"
        );
    }
}
