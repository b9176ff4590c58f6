//! Where a size's register and states live, and the raw scans that are the full pass's baseline.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use fristvakt::config::{DatabaseUrl, Engine};
use fristvakt::demo;
use fristvakt::register;

use crate::engine_name;
use crate::postgres;
use crate::table::Timing;

/// The databases of a size on PostgreSQL: the register, the state of the measurements in this
/// process, and the state of the `fristvakt` processes.
pub(crate) const REGISTER_DB: &str = "register";
pub(crate) const STATE_DB: &str = "state";
pub(crate) const FRESH_STATE_DB: &str = "fresh_state";
/// The state of the cases-only poller, the baseline of the placements' polls (issue 27 item 5).
pub(crate) const CASES_ONLY_STATE_DB: &str = "cases_only_state";

/// Where a size's register and states live, and the engine's shell that reads and changes the
/// register beside fristvakt: SQLite files in a directory (`sqlite3`), or databases of a
/// throwaway PostgreSQL server (`psql`).
pub(crate) enum Store<'a> {
    Sqlite(&'a Path),
    Postgres(&'a postgres::Server),
}

impl Store<'_> {
    pub(crate) fn engine(&self) -> &'static str {
        engine_name(match self {
            Store::Sqlite(_) => Engine::Sqlite,
            Store::Postgres(_) => Engine::Postgres,
        })
    }

    pub(crate) fn register_url(&self) -> String {
        match self {
            Store::Sqlite(dir) => format!("sqlite://{}", dir.join("register.db").display()),
            Store::Postgres(server) => server.url(REGISTER_DB),
        }
    }

    /// The URL of state `name` (`STATE_DB`, `FRESH_STATE_DB` or `CASES_ONLY_STATE_DB`).
    pub(crate) fn state_url(&self, name: &str) -> String {
        match self {
            Store::Sqlite(dir) => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
            Store::Postgres(server) => server.url(name),
        }
    }

    /// Writes the demo cases to the register's `view`: fristvakt's own demo register writer on
    /// SQLite; on PostgreSQL a table with the contract's types, loaded with COPY.
    pub(crate) async fn write_register(&self, view: &str, cases: impl Iterator<Item = register::RawRow>) -> Result<()> {
        match self {
            Store::Sqlite(_) => {
                let url = DatabaseUrl::parse(&self.register_url()).map_err(|e| anyhow::anyhow!(e))?;
                demo::write_demo_cases(&url, view, cases).await?;
            }
            Store::Postgres(_) => {
                postgres::write_register(&self.register_url(), view, cases).await?;
            }
        }
        Ok(())
    }

    /// What the raw scan of `views` views is, for the row that compares with it.
    pub(crate) fn scan_name(&self, views: usize) -> String {
        let of = if views > 1 { " of both views" } else { "" };
        match self {
            Store::Sqlite(_) => format!("a raw sqlite3 scan{of}"),
            Store::Postgres(_) => format!("a raw psql COPY scan{of}"),
        }
    }

    /// The raw scan: each of `views` (a view and its columns) read and printed by one run of the
    /// engine's shell.
    pub(crate) fn scan_command(&self, views: &[(String, String)]) -> Command {
        match self {
            Store::Sqlite(_) => {
                let sql: String =
                    views.iter().map(|(view, columns)| format!("SELECT {columns} FROM {view};")).collect();
                self.shell(&sql)
            }
            Store::Postgres(server) => {
                let mut command = server.psql(REGISTER_DB);
                for (view, columns) in views {
                    command.arg("-c").arg(format!("COPY (SELECT {columns} FROM {view}) TO STDOUT"));
                }
                command
            }
        }
    }

    /// The engine's shell running `sql` on the register.
    pub(crate) fn shell(&self, sql: &str) -> Command {
        match self {
            Store::Sqlite(dir) => {
                let mut command = Command::new("sqlite3");
                command.arg(dir.join("register.db")).arg(sql);
                command
            }
            Store::Postgres(server) => {
                let mut command = server.psql(REGISTER_DB);
                command.arg("-c").arg(sql);
                command
            }
        }
    }

    /// After the first full pass filled the state: on PostgreSQL, `VACUUM ANALYZE` of the state
    /// database, what autovacuum does to a daemon's tables within minutes of such a load. The
    /// polls measured right after the pass were planned with the statistics of empty tables:
    /// the read of the stored kinds of 1 000 cases took 3–8 ms in some polls and 61–82 ms in
    /// others (100 000 cases), 4–11 ms in every poll after the analysis.
    /// SQLite keeps no statistics unless told (`ANALYZE`), and fristvakt does not.
    pub(crate) fn settle_state(&self, name: &str) -> Result<()> {
        if let Store::Postgres(server) = self {
            let status = server.psql(name).arg("-c").arg("VACUUM ANALYZE").status().context("running psql")?;
            anyhow::ensure!(status.success(), "VACUUM ANALYZE of the state failed");
        }
        Ok(())
    }

    /// The number `sql` (a query of one count) gives on the register.
    pub(crate) fn count(&self, sql: &str) -> Result<u64> {
        let mut shell = self.shell(sql);
        if let Store::Postgres(_) = self {
            shell.arg("-At");
        }
        let output = shell.output().with_context(|| format!("running the shell of {}", self.engine()))?;
        anyhow::ensure!(output.status.success(), "{} failed: {sql}", self.engine());
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim().parse().with_context(|| format!("{sql} gave {text:?}, not a count"))
    }

    /// Runs `sql` (a change fristvakt should see) on the register.
    pub(crate) fn execute(&self, sql: &str) -> Result<()> {
        let status = self.shell(sql).status().with_context(|| format!("running the shell of {}", self.engine()))?;
        anyhow::ensure!(status.success(), "{} failed: {sql}", self.engine());
        Ok(())
    }
}

/// The register columns fristvakt reads of the demo register's cases view, for the raw scan:
/// every column of the view's table, the optional ones included (the demo register has them all).
pub(crate) fn register_columns() -> String {
    register::COLUMNS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// The columns of the placements view (register contract §1b), for the raw scan.
pub(crate) fn placement_columns() -> String {
    register::placements::PLACEMENT_COLUMNS.iter().filter(|c| !c.is_empty()).copied().collect::<Vec<_>>().join(", ")
}

/// Reads each of `views` (a view and its columns) with the engine's shell, `runs` times (after
/// one warm-up): the baseline of a full pass that reads them all.
pub(crate) fn raw_scan(store: &Store<'_>, views: &[(String, String)], runs: usize) -> Option<Timing> {
    let engine = store.engine();
    let once = || -> Option<Duration> {
        let t = Instant::now();
        let out =
            store.scan_command(views).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).output();
        match out {
            Ok(out) if out.status.success() => Some(t.elapsed()),
            Ok(out) => {
                eprintln!("raw scan: the {engine} shell failed: {}", String::from_utf8_lossy(&out.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("raw scan: cannot run the {engine} shell: {e}");
                None
            }
        }
    };
    // The warm-up, retried: the register was just written and may still be busy for a moment.
    let mut warm = once();
    for _ in 0..4 {
        if warm.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        warm = once();
    }
    warm?;
    let times: Option<Vec<Duration>> = (0..runs).map(|_| once()).collect();
    times.map(Timing)
}
