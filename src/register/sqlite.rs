//! The SQLite register: the column list of its SELECTs, and the reader that streams a register
//! file through rusqlite into [`RowChunk`]s.

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::columns::{Features, COLUMNS};
use super::{RowChunk, TextRow, STREAM_CHUNK};

/// The columns a SQLite read selects: each by name, an optional column the view lacks as NULL,
/// so that every row has the same shape.
pub(super) fn sqlite_columns(features: &Features) -> String {
    COLUMNS
        .iter()
        .map(|c| if features.reads(c) { c.name.to_string() } else { format!("NULL AS {}", c.name) })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of `sql` (bound to `binds`) from the SQLite file at `path`, read by rusqlite on a
/// blocking thread and handed over in chunks of [`STREAM_CHUNK`], at most two chunks ahead of
/// the reader. sqlx hands each SQLite row across a channel from its worker thread, which costs
/// five times the read itself; this reads the register at the speed of SQLite. The connection
/// is read-only (`SQLITE_OPEN_READ_ONLY`, `query_only`), as every register connection is. Values
/// of any storage class become text, as [`SqliteRow`]'s [`TextRow`] reads them.
pub(super) fn stream_sqlite_file(
    path: std::path::PathBuf,
    sql: String,
    binds: Vec<String>,
) -> BoxStream<'static, Result<RowChunk, sqlx::Error>> {
    stream_sqlite_file_ahead(path, sql, binds, 2)
}

/// [`stream_sqlite_file`], read up to `ahead` chunks ahead of its reader.
pub(super) fn stream_sqlite_file_ahead(
    path: std::path::PathBuf,
    sql: String,
    binds: Vec<String>,
    ahead: usize,
) -> BoxStream<'static, Result<RowChunk, sqlx::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RowChunk, sqlx::Error>>(ahead.max(1));
    tokio::task::spawn_blocking(move || {
        let read = || -> Result<(), rusqlite::Error> {
            let conn = open_read_only(&path)?;
            let mut statement = conn.prepare(&sql)?;
            let columns = statement.column_count();
            let mut rows = statement.query(rusqlite::params_from_iter(binds.iter()))?;
            let mut chunk = RowChunk::with_capacity(STREAM_CHUNK);
            while let Some(row) = rows.next()? {
                push_row(&mut chunk, row, columns)?;
                if chunk.len() == STREAM_CHUNK
                    && tx
                        .blocking_send(Ok(std::mem::replace(&mut chunk, RowChunk::with_capacity(STREAM_CHUNK))))
                        .is_err()
                {
                    // The reader stopped listening (its poll failed or ended): stop reading.
                    return Ok(());
                }
            }
            if !chunk.is_empty() {
                let _ = tx.blocking_send(Ok(chunk));
            }
            Ok(())
        };
        if let Err(e) = read() {
            let _ = tx.blocking_send(Err(sqlx::Error::Protocol(e.to_string())));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) }).boxed()
}

/// The rows of each of `statements` (a SELECT and its binds), in order, one chunk a statement,
/// read from the SQLite file at `path` on one rusqlite connection on a blocking thread: for
/// lookups of a few thousand rows in several statements, where a connection opened for each
/// (reading the file's schema again) and a blocking task each cost as much as the reads. Read
/// as [`stream_sqlite_file`] reads.
pub(super) async fn read_sqlite_file(
    path: std::path::PathBuf,
    statements: Vec<(String, Vec<String>)>,
) -> Result<Vec<RowChunk>, sqlx::Error> {
    let read = move || -> Result<Vec<RowChunk>, rusqlite::Error> {
        let conn = open_read_only(&path)?;
        let mut chunks = Vec::with_capacity(statements.len());
        for (sql, binds) in &statements {
            let mut statement = conn.prepare(sql)?;
            let columns = statement.column_count();
            let mut rows = statement.query(rusqlite::params_from_iter(binds.iter()))?;
            let mut chunk = RowChunk::default();
            while let Some(row) = rows.next()? {
                push_row(&mut chunk, row, columns)?;
            }
            chunks.push(chunk);
        }
        Ok(chunks)
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(read) => read.map_err(|e| sqlx::Error::Protocol(e.to_string())),
        Err(e) => Err(sqlx::Error::Protocol(format!("the register read stopped: {e}"))),
    }
}

/// A read-only connection to the register file at `path`, as every register connection is
/// (`SQLITE_OPEN_READ_ONLY`, `query_only`), waiting up to 10 s for a lock.
fn open_read_only(path: &std::path::Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// Appends the `columns` values of `row` to `chunk`, each of any storage class as text.
fn push_row(chunk: &mut RowChunk, row: &rusqlite::Row<'_>, columns: usize) -> Result<(), rusqlite::Error> {
    for i in 0..columns {
        use rusqlite::types::ValueRef;
        match row.get_ref(i)? {
            ValueRef::Null => chunk.push_value(None),
            ValueRef::Integer(n) => chunk.push_display(n),
            ValueRef::Real(x) => chunk.push_display(x),
            ValueRef::Text(b) | ValueRef::Blob(b) => chunk.push_value(Some(b)),
        }
    }
    chunk.end_row();
    Ok(())
}

/// A SQLite view may hand out an INTEGER, REAL or BLOB where the contract says TEXT; such a
/// value becomes its text form, so validation names the column instead of the whole poll failing.
impl TextRow for SqliteRow {
    fn text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        match self.try_get::<Option<String>, _>(i) {
            Ok(v) => Ok(v),
            Err(e) => {
                if let Ok(v) = self.try_get::<Option<i64>, _>(i) {
                    return Ok(v.map(|n| n.to_string()));
                }
                if let Ok(v) = self.try_get::<Option<f64>, _>(i) {
                    return Ok(v.map(|n| n.to_string()));
                }
                if let Ok(v) = self.try_get::<Option<Vec<u8>>, _>(i) {
                    return Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()));
                }
                Err(e)
            }
        }
    }
}
