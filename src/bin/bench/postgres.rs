//! A throwaway PostgreSQL server for the benchmark, and its demo register.
//!
//! The server is the tests' launcher (`tests/support/pg_server.rs`, included by its path: one
//! launcher for the tests and the benchmark), with the benchmark's settings: commits do not wait
//! for the disk (`synchronous_commit = off`), as SQLite's `synchronous = NORMAL` in WAL mode does
//! not; `fsync` stays on, so checkpoints cost what they cost. It is stopped and removed when
//! dropped, also on an error or a panic, and by its watchdog when the benchmark is killed.

use std::path::PathBuf;

use anyhow::Result;
use sqlx::{Connection, Executor, PgConnection};

use fristvakt::register::placements::PLACEMENT_COLUMNS;
use fristvakt::register::{RawPlacement, RawRow, COLUMNS};

// The tests use more of it (an outage: `stop`, `restart`) than the benchmark does.
#[allow(dead_code)]
#[path = "../../../tests/support/pg_server.rs"]
mod pg_server;

pub use pg_server::PgServer as Server;

/// Settings appended to `postgresql.conf`.
const SERVER_SETTINGS: &str = "
# --- added by fristvakt-bench ---
synchronous_commit = off
shared_buffers = 256MB
max_connections = 50
log_min_messages = warning
";

/// The directory holding `initdb`, `pg_ctl`, `postgres` and `psql`, if there is one.
pub fn find_bin_dir() -> Option<PathBuf> {
    pg_server::find_bin_dir().ok().filter(|dir| dir.join("psql").is_file())
}

/// Starts a server from the binaries in `bin_dir`, in a directory of its own under /tmp.
pub fn start(bin_dir: &std::path::Path) -> Result<Server> {
    let root = pg_server::new_root().map_err(anyhow::Error::msg)?;
    Server::start(bin_dir, &root, SERVER_SETTINGS).map_err(anyhow::Error::msg)
}

/// Rows sent per COPY message while loading the register.
const COPY_BATCH: usize = 10_000;

/// Writes `cases` to a PostgreSQL register at `url`: a table with the contract's types (`date`,
/// `timestamptz`, `text`; the optional columns included) loaded with COPY, indexed on `case_ref`,
/// `updated_at` and `child_key` as a register would be, vacuumed and analysed, and `view` over it.
pub async fn write_register(url: &str, view: &str, cases: impl Iterator<Item = RawRow>) -> Result<u64> {
    let definitions: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{} {}{}", c.name, c.storage.postgres_type(), if c.nullable { "" } else { " NOT NULL" }))
        .collect();
    load_table(url, view, &definitions, cases, copy_line, "case_ref", &["updated_at", "child_key"]).await
}

/// Writes `rows` to a PostgreSQL register at `url` as its placements view `view` (register
/// contract §1b): a table with the contract's types loaded with COPY, keyed on `placement_ref`
/// and indexed on `updated_at`, `case_ref` and `child_key`, vacuumed and analysed, and the view.
pub async fn write_placements(url: &str, view: &str, rows: &[RawPlacement]) -> Result<u64> {
    let definitions: Vec<String> = PLACEMENT_COLUMNS
        .iter()
        .copied()
        .filter(|c| !c.is_empty())
        .map(|c| match c {
            "updated_at" => format!("{c} timestamptz NOT NULL"),
            "decided_on" => format!("{c} date NOT NULL"),
            c if c.ends_with("_on") || c.ends_with("_to") || c == "home_since" => format!("{c} date"),
            "unit" | "basis" => format!("{c} text NOT NULL"),
            c => format!("{c} text"),
        })
        .collect();
    let line = |out: &mut Vec<u8>, row: &&RawPlacement| copy_values(out, row.0.iter().map(|v| v.as_deref()));
    load_table(url, view, &definitions, rows.iter(), line, "placement_ref", &["updated_at", "case_ref", "child_key"])
        .await
}

/// Creates the table `{view}_rows` of `definitions` and `view` over it, loads `rows` with COPY
/// (`line` writes one row in COPY's text format), then keys it on `key` and indexes `indexed`.
/// Indexes come after the load, as a bulk load does; VACUUM sets the visibility map and hint bits
/// that a register's rows have long had, so that no reader pays for writing them.
async fn load_table<T>(
    url: &str,
    view: &str,
    definitions: &[String],
    rows: impl Iterator<Item = T>,
    line: impl Fn(&mut Vec<u8>, &T),
    key: &str,
    indexed: &[&str],
) -> Result<u64> {
    let mut conn = PgConnection::connect(url).await?;
    let table = format!("{view}_rows");
    conn.execute(
        format!("CREATE TABLE {table} ({}); CREATE VIEW {view} AS SELECT * FROM {table}", definitions.join(", "))
            .as_str(),
    )
    .await?;
    let mut copy = conn.copy_in_raw(&format!("COPY {table} FROM STDIN")).await?;
    let mut rows = rows.peekable();
    let mut buffer = Vec::new();
    while rows.peek().is_some() {
        buffer.clear();
        for row in rows.by_ref().take(COPY_BATCH) {
            line(&mut buffer, &row);
        }
        copy.send(buffer.as_slice()).await?;
    }
    let written = copy.finish().await?;
    let mut statements = vec![format!("ALTER TABLE {table} ADD PRIMARY KEY ({key})")];
    statements.extend(indexed.iter().map(|c| format!("CREATE INDEX {table}_{c} ON {table} ({c})")));
    conn.execute(statements.join("; ").as_str()).await?;
    // A statement of its own: several in one simple query run as one transaction block, which
    // VACUUM refuses.
    conn.execute(format!("VACUUM ANALYZE {table}").as_str()).await?;
    conn.close().await?;
    Ok(written)
}

/// One case as a line of COPY's text format: tab-separated, `\N` for NULL, in table order.
fn copy_line(out: &mut Vec<u8>, case: &RawRow) {
    copy_values(out, case.values().into_iter().map(|v| v.as_deref()));
}

/// Values as a line of COPY's text format.
fn copy_values<'a>(out: &mut Vec<u8>, values: impl IntoIterator<Item = Option<&'a str>>) {
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
