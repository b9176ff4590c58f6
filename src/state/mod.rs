//! fristvakt's own database: computed deadlines, the poll watermark, the outbox and leases.
//!
//! One [`StateStore`] serves SQLite and PostgreSQL, split by concern: [`deadlines`] (the
//! computed deadlines and their counts), [`outbox`] (notices and digests before and after they
//! are sent), [`poll`] (the watermark and the full-pass day) and [`leases`].
//!
//! Architecture invariants:
//! - this module and `register` are the only places that hold SQL;
//! - each engine has its typed sqlx pool ([`Pool`]); one statement text serves both, with
//!   `TRUE`/`FALSE` literals and parameters bound as Rust types (`NaiveDate`, `DateTime<Utc>`,
//!   `bool`, `Json`), so PostgreSQL stores `date`, `timestamptz`, `boolean` and `jsonb` and
//!   SQLite the TEXT/INTEGER encodings of sqlx, whose text order is time order;
//! - rows come back as domain types (`CaseRef`, `UnitCode`, `EmailAddress`, `Kind`, `Sex`, a full
//!   `DueReason`, a typed outbox payload). A stored value that does not decode is an error,
//!   never a row silently skipped: a deadline fails the read, an outbox row is handed to the
//!   dispatcher as [`UndecodableRow`], which gives it up visibly and counts it;
//! - no status is stored: it depends on the day and is computed by `rules` only.

pub mod deadlines;
pub mod digest;
pub mod leases;
pub mod operator;
pub mod outbox;
pub mod poll;
pub mod prints;
pub mod report;
pub mod retention;
pub mod show;
mod stored;

use sqlx::postgres::PgRow;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{ConnectOptions, Connection, Decode, Postgres, Row, Sqlite, Type};

use crate::config::{DatabaseUrl, Engine};
use crate::db::Waits;
pub(crate) use crate::db::{with_pool, Pool};

pub use deadlines::{DeadlineFilter, DeadlineRecord, StoredDeadline};
pub use leases::POLL_LEASE;
pub use operator::{OutboxListing, RetryOutcome};
pub use outbox::{
    Attempt, Delivery, DeliveryOutcome, DigestRun, Escalation, OutboxCategory, OutboxEntry, OutboxPayload, OutboxRow,
    OutboxState, Recorded, UndecodableRow,
};
pub use poll::PollState;
pub use prints::{PrintBook, Shelf, NO_PRINT};
pub use retention::Purged;
pub use show::ShowQuery;
pub use stored::Stored;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Rows per multi-row statement. Small on purpose: SQLite looks up every `$N` parameter by name
/// with a linear walk (`sqlite3_bind_parameter_name`), so binding costs grow with the square of
/// the parameters in one statement; 32 rows of 16 columns keeps that negligible while still
/// saving most round trips.
///
/// A statement whose text depends on how many rows it carries (the last, shorter batch; an IN
/// list of whatever a poll changed) is prepared without being cached (`persistent(false)`):
/// each cached text keeps its compiled program on every connection, and programs of thousands of
/// parameters in dozens of lengths took a first full pass past its memory goal (BENCHMARKS.md,
/// "Figures behind code comments").
pub(crate) const BATCH_ROWS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// `url` is redacted and `reason` scrubbed of the URL's secrets ([`StateError::connect`]).
    #[error("state database {url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("state database: migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("state database: {context}: {source}")]
    Query { context: &'static str, source: sqlx::Error },
    /// `value` describes the value without showing it (its length, a row number).
    #[error("state database holds an unreadable value in {column}: {value}")]
    Corrupt { column: &'static str, value: String },
    #[error("state database: cannot encode {what}: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
}

impl StateError {
    /// A failed connection, named by the redacted URL, with every secret of the URL scrubbed
    /// from the driver's message.
    pub(crate) fn connect(url: &DatabaseUrl, source: sqlx::Error) -> StateError {
        StateError::Connect { url: url.redacted(), reason: url.scrub(&source.to_string()) }
    }
}

pub(crate) fn query_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> StateError {
    move |source| StateError::Query { context, source }
}

/// A value both engines decode (dates, instants, text, integers, booleans, JSON).
pub(crate) trait Cell:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Cell for T where T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}

/// Reading a named column of a row of either engine.
pub(crate) trait Get {
    fn get<T: Cell>(&self, column: &str) -> Result<T, sqlx::Error>;
}

impl Get for SqliteRow {
    fn get<T: Cell>(&self, column: &str) -> Result<T, sqlx::Error> {
        self.try_get(column)
    }
}

impl Get for PgRow {
    fn get<T: Cell>(&self, column: &str) -> Result<T, sqlx::Error> {
        self.try_get(column)
    }
}

/// Reads a column, naming it in the error.
pub(crate) fn column<T: Cell>(row: &impl Get, name: &'static str) -> Result<T, StateError> {
    row.get(name).map_err(query_error(name))
}

/// A value a stored deadline's decoding reads, from a row through sqlx ([`Cell`]) or from a
/// SQLite state file read by rusqlite ([`FileRow`]), there decoded from SQLite's storage as
/// sqlx decodes what it wrote (dates `YYYY-MM-DD`, instants RFC 3339, booleans as integers,
/// JSON as text).
pub(crate) trait CellValue: Cell + Sized {
    /// The value, or `None` when the storage class or text does not decode.
    fn from_file(value: rusqlite::types::ValueRef<'_>) -> Option<Self>;
}

fn file_text(value: rusqlite::types::ValueRef<'_>) -> Option<&str> {
    match value {
        rusqlite::types::ValueRef::Text(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

impl CellValue for String {
    fn from_file(value: rusqlite::types::ValueRef<'_>) -> Option<Self> {
        file_text(value).map(str::to_string)
    }
}

impl CellValue for chrono::NaiveDate {
    fn from_file(value: rusqlite::types::ValueRef<'_>) -> Option<Self> {
        // As sqlx reads a SQLite date (`%F`, which is `%Y-%m-%d`), by hand in its common form.
        crate::domain::iso_day(file_text(value)?)
    }
}

impl CellValue for chrono::DateTime<chrono::Utc> {
    fn from_file(value: rusqlite::types::ValueRef<'_>) -> Option<Self> {
        chrono::DateTime::parse_from_rfc3339(file_text(value)?).ok().map(|t| t.with_timezone(&chrono::Utc))
    }
}

impl CellValue for bool {
    fn from_file(value: rusqlite::types::ValueRef<'_>) -> Option<Self> {
        match value {
            rusqlite::types::ValueRef::Integer(n) => Some(n != 0),
            _ => None,
        }
    }
}

impl CellValue for sqlx::types::Json<serde_json::Value> {
    fn from_file(value: rusqlite::types::ValueRef<'_>) -> Option<Self> {
        serde_json::from_str(file_text(value)?).ok().map(sqlx::types::Json)
    }
}

impl CellValue for i32 {
    fn from_file(value: rusqlite::types::ValueRef<'_>) -> Option<Self> {
        match value {
            rusqlite::types::ValueRef::Integer(n) => i32::try_from(n).ok(),
            _ => None,
        }
    }
}

impl CellValue for Vec<u8> {
    fn from_file(value: rusqlite::types::ValueRef<'_>) -> Option<Self> {
        match value {
            rusqlite::types::ValueRef::Blob(b) => Some(b.to_vec()),
            _ => None,
        }
    }
}

impl<T: CellValue> CellValue for Option<T>
where
    Option<T>: Cell,
{
    fn from_file(value: rusqlite::types::ValueRef<'_>) -> Option<Self> {
        match value {
            rusqlite::types::ValueRef::Null => Some(None),
            value => T::from_file(value).map(Some),
        }
    }
}

/// A day bound to a statement: on SQLite the text sqlx writes for a `NaiveDate` (`%F`), written by
/// hand ([`crate::domain::iso_day_text`]: a poll binds some seven days a deadline it writes, and
/// sqlx's chrono interprets a format string for each); on PostgreSQL a `date`, as sqlx binds
/// chrono's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Day(pub(crate) chrono::NaiveDate);

impl Type<Sqlite> for Day {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <chrono::NaiveDate as Type<Sqlite>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, Sqlite> for Day {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        sqlx::Encode::<Sqlite>::encode(crate::domain::iso_day_text(self.0), buf)
    }
}

impl Type<Postgres> for Day {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <chrono::NaiveDate as Type<Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, Postgres> for Day {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        sqlx::Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }

    fn size_hint(&self) -> usize {
        sqlx::Encode::<Postgres>::size_hint(&self.0)
    }
}

/// Reading a named column of a row, whether it came through sqlx or from a SQLite state file
/// by rusqlite ([`FileRow`]).
pub(crate) trait Cells {
    fn cell<T: CellValue>(&self, name: &'static str) -> Result<T, StateError>;
}

impl<R: Get> Cells for R {
    fn cell<T: CellValue>(&self, name: &'static str) -> Result<T, StateError> {
        column(self, name)
    }
}

/// A row of a SQLite state file read by rusqlite, with its statement's column names: looked up
/// by exact name (rusqlite's own lookup compares every name without regard to case, a cost
/// paid for every cell).
pub(crate) struct FileRow<'a, 'r> {
    pub(crate) row: &'a rusqlite::Row<'r>,
    pub(crate) names: &'a [String],
}

impl Cells for FileRow<'_, '_> {
    fn cell<T: CellValue>(&self, name: &'static str) -> Result<T, StateError> {
        let at = self.names.iter().position(|n| n == name);
        let value = match at {
            Some(i) => self.row.get_ref(i),
            None => self.row.get_ref(name),
        }
        .map_err(|e| file_error(name, e))?;
        T::from_file(value).ok_or(StateError::Corrupt { column: name, value: "(not shown)".to_string() })
    }
}

/// The rows of `select` followed by an `IN` list of each chunk of up to a thousand `binds`
/// (SQLite allows 32 766 parameters), read from the SQLite state file at `path` by rusqlite on a
/// blocking thread, on a read-only connection of its own, each handed to `take` with `into`.
///
/// sqlx hands each row across from its worker's thread: for the ~1 500 stored rows of 1 000
/// changed placements that took 25–40 ms (BENCHMARKS.md, "Prints for the placements"). The file
/// is in WAL mode and a poll's reads start after its earlier transactions committed (it stores
/// each chunk in a transaction of its own, and reads before it writes), so a read sees them, as
/// a connection of the pool would.
pub(crate) async fn read_file_rows<B, T>(
    path: std::path::PathBuf,
    context: &'static str,
    select: String,
    binds: Vec<B>,
    into: T,
    take: impl Fn(&mut T, &FileRow<'_, '_>) -> Result<(), StateError> + Send + 'static,
) -> Result<T, StateError>
where
    B: rusqlite::ToSql + Send + 'static,
    T: Send + 'static,
{
    let read = move || -> Result<T, StateError> {
        let mut into = into;
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&path, flags).map_err(|e| file_error(context, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| file_error(context, e))?;
        for chunk in binds.chunks(1000) {
            let sql = format!("{select} ({})", vec!["?"; chunk.len()].join(","));
            let mut statement = conn.prepare(&sql).map_err(|e| file_error(context, e))?;
            let names: Vec<String> = statement.column_names().into_iter().map(str::to_string).collect();
            let mut rows =
                statement.query(rusqlite::params_from_iter(chunk.iter())).map_err(|e| file_error(context, e))?;
            while let Some(row) = rows.next().map_err(|e| file_error(context, e))? {
                take(&mut into, &FileRow { row, names: &names })?;
            }
        }
        Ok(into)
    };
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| StateError::Query { context, source: sqlx::Error::Protocol(e.to_string()) })?
}

/// A rusqlite error reading the state file, in `context` (its message names no value).
pub(crate) fn file_error(context: &'static str, e: rusqlite::Error) -> StateError {
    StateError::Query { context, source: sqlx::Error::Protocol(e.to_string()) }
}

/// Reads a text column and parses it into a domain type; a value that does not parse is
/// [`StateError::Corrupt`].
pub(crate) fn parsed<T, E>(
    row: &impl Cells,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, StateError> {
    let raw: String = row.cell(name)?;
    parse(&raw).map_err(|_| StateError::Corrupt { column: name, value: not_shown(&raw) })
}

/// What an error may say of a stored value that does not decode: never the value (an address, a
/// reference), only its length.
fn not_shown(raw: &str) -> String {
    format!("(not shown, {} characters)", raw.chars().count())
}

/// Like [`parsed`] for a nullable column.
pub(crate) fn parsed_opt<T, E>(
    row: &impl Cells,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, StateError> {
    let raw: Option<String> = row.cell(name)?;
    raw.map(|raw| parse(&raw).map_err(|_| StateError::Corrupt { column: name, value: not_shown(&raw) })).transpose()
}

pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(",")
}

/// The turn to write of [`StateStore::write_turn`]: on SQLite the writers' own connection (when
/// the state is a file), held until the turn is dropped.
pub(crate) struct WriteTurn<'a> {
    guard: Option<tokio::sync::MutexGuard<'a, Option<SqliteConnection>>>,
}

impl WriteTurn<'_> {
    /// The writers' connection, when there is one (a SQLite file).
    pub(crate) fn connection(&mut self) -> Option<&mut SqliteConnection> {
        self.guard.as_mut().and_then(|guard| guard.as_mut())
    }
}

/// Runs `$body` with `$p` bound to where the writes of a turn to write (`$turn`, a
/// [`WriteTurn`]) go: the writers' own connection on a SQLite file, else the engine's pool. The
/// body is compiled for each, so the same statement text and binds serve all three.
macro_rules! with_writer {
    ($pool:expr, $turn:ident, $p:ident => $body:expr) => {
        match ($pool, $turn.connection()) {
            ($crate::db::Pool::Sqlite(_), Some($p)) => $body,
            ($crate::db::Pool::Sqlite($p), None) => $body,
            ($crate::db::Pool::Postgres($p), _) => $body,
        }
    };
}
pub(crate) use with_writer;

impl StateStore {
    /// On SQLite, the turn to write (see `writer`), with the writers' connection (opened on the
    /// first turn); nothing on PostgreSQL, which locks rows.
    pub(crate) async fn write_turn(&self) -> Result<WriteTurn<'_>, StateError> {
        let Pool::Sqlite(pool) = &self.pool else { return Ok(WriteTurn { guard: None }) };
        let mut guard = self.writer.lock().await;
        if guard.is_none() && self.own_writer {
            // No checkpoint inside the writers' commits (SQLite's default runs one, with its two
            // fsyncs, in the commit that takes the log past 1 000 pages, while every sender whose
            // record is in that group waits): [`StateStore::checkpoint_in_background`] does it
            // beside them, after every dispatch run and every poll; the pool's connections, which
            // the poll writes through, still checkpoint as they commit past the threshold (a
            // first full pass), so that the log stays bounded.
            let options = pool.connect_options().as_ref().clone().pragma("wal_autocheckpoint", "0");
            let connection = options.connect().await.map_err(query_error("opening the writers' connection"))?;
            *guard = Some(connection);
        }
        Ok(WriteTurn { guard: Some(guard) })
    }

    /// `n` parameter marks numbered from `first`, for a statement whose parameters each appear
    /// once, in the order they are bound: `$first, …` on PostgreSQL, `?, …` on SQLite. SQLite
    /// looks each numbered mark up by a walk of the statement's list of names, so binding `n`
    /// of them costs n² (a third of a full pass went there); anonymous marks cost nothing.
    pub(crate) fn marks(&self, first: usize, n: usize) -> String {
        match self.engine {
            Engine::Sqlite => vec!["?"; n].join(","),
            Engine::Postgres => placeholders(first, n),
        }
    }
}

/// Cheap to clone: a clone shares the pool and the turn to write (a dispatch run's senders,
/// each a task of its own, hold one each).
#[derive(Clone)]
pub struct StateStore {
    pool: Pool,
    engine: Engine,
    /// Opened to write (the daemon, `poll`, `migrate`), not read-only (the show commands).
    owned: bool,
    /// SQLite takes one writer at a time and makes the others sleep (1, 2, 5… ms) until it is
    /// free; the senders of a dispatch run queue here instead, woken the moment it is. The turn
    /// holds the writers' own connection to a SQLite file (`own_writer`): a statement through
    /// the pool costs three round trips to its connection's thread (sqlx pings a connection
    /// before it hands it out and when it is given back), and the pool's connections take turns,
    /// each reading again the pages the others wrote; the writers' connection is one round trip
    /// a statement, its pages at hand.
    writer: std::sync::Arc<tokio::sync::Mutex<Option<SqliteConnection>>>,
    /// A SQLite file written by this process: its writers have a connection of their own (an
    /// in-memory database is one connection, the pool's).
    own_writer: bool,
    /// The checkpoint under way beside the writers, if any (`checkpoint_in_background`).
    checkpoint: std::sync::Arc<std::sync::Mutex<Checkpoints>>,
    /// The SQLite file this process writes (WAL), read by rusqlite where many rows come back at
    /// once (`StateStore::stored_of`): sqlx hands each row across from its worker's thread.
    sqlite_file: Option<std::path::PathBuf>,
    /// The print logs this store's last incremental poll read, for its next
    /// ([`StateStore::open_print_log`]).
    kept_logs: prints::KeptLogs,
}

/// The checkpoints beside the writers ([`StateStore::checkpoint_in_background`]).
#[derive(Default)]
struct Checkpoints {
    /// The task that runs them, until `checkpoint_done` takes it.
    task: Option<tokio::task::JoinHandle<()>>,
    /// Whether that task is still running (it clears this under the lock as it ends).
    running: bool,
    /// Asked for while one ran: the task runs one more.
    again: bool,
}

impl StateStore {
    /// Connects, creating a SQLite file when missing.
    pub async fn connect(url: &DatabaseUrl) -> Result<StateStore, StateError> {
        StateStore::connect_waiting(url, Waits::STATE).await
    }

    /// [`StateStore::connect`], its statements and lock waits bounded by `waits`
    /// (`state.statement_timeout`, `state.lock_timeout`).
    pub async fn connect_waiting(url: &DatabaseUrl, waits: Waits) -> Result<StateStore, StateError> {
        let pool = Pool::open(url, true, 8, waits).await.map_err(|source| StateError::connect(url, source))?;
        let own_writer = url.engine == Engine::Sqlite && url.sqlite_path().is_some();
        Ok(StateStore {
            pool,
            engine: url.engine,
            owned: true,
            writer: Default::default(),
            own_writer,
            checkpoint: Default::default(),
            sqlite_file: url.sqlite_path().filter(|_| own_writer),
            kept_logs: Default::default(),
        })
    }

    /// Connects for reading only (the show commands): never creates, migrates or writes; a
    /// SQLite file is opened read-only.
    pub async fn connect_read_only(url: &DatabaseUrl) -> Result<StateStore, StateError> {
        let read_only = match url.engine {
            Engine::Sqlite => {
                let raw = url.expose();
                let raw = format!("{raw}{}mode=ro", if raw.contains('?') { "&" } else { "?" });
                DatabaseUrl::parse(&raw).map_err(|e| StateError::Corrupt { column: "state.url", value: e })?
            }
            Engine::Postgres => url.clone(),
        };
        let pool =
            Pool::open(&read_only, false, 2, Waits::STATE).await.map_err(|source| StateError::connect(url, source))?;
        Ok(StateStore {
            pool,
            engine: url.engine,
            owned: false,
            writer: Default::default(),
            own_writer: false,
            checkpoint: Default::default(),
            sqlite_file: None,
            kept_logs: Default::default(),
        })
    }

    /// Whether the schema exists (fristvakt migrated this database before).
    pub async fn has_schema(&self) -> bool {
        with_pool!(&self.pool, p => sqlx::query("SELECT id FROM poll_state").fetch_optional(p).await.is_ok())
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Applies the embedded migrations of the engine.
    pub async fn migrate(&self) -> Result<(), StateError> {
        match &self.pool {
            Pool::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Pool::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// Gathers the planner's statistics of the deadlines after a write of many of them (a first
    /// full pass, a bulk update), as a bulk load does. PostgreSQL's autovacuum would, within a
    /// minute or so; until then the planner took a table of a few rows for one of many (or the
    /// reverse), and retention read every deadline where its two partial indexes find the few it
    /// deletes (BENCHMARKS.md, "Figures behind code comments"). SQLite's plans here come from its
    /// indexes' shapes, not from statistics: nothing to do.
    pub async fn refresh_statistics(&self) -> Result<(), StateError> {
        if let Pool::Postgres(p) = &self.pool {
            sqlx::query("ANALYZE deadlines").execute(p).await.map_err(query_error("analyzing deadlines"))?;
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StateError> {
        with_pool!(&self.pool, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ())).map_err(query_error("ping"))
    }

    /// On a SQLite file with a writers' connection, a passive checkpoint of the write-ahead log
    /// through the pool, in a task of its own: the writers' connection never checkpoints (see
    /// `write_turn`), so that none happens inside a sender's commit, and the poll's commits
    /// rarely do. The dispatch calls this after every run (at most `RUN_ROWS` records) and the
    /// poll after every poll, so that the log stays bounded. A passive checkpoint neither waits
    /// for nor holds up the writers. Called while one is under way, it asks that task for one
    /// more when it ends: the first left behind what was committed after it began, and a log
    /// not wholly copied back is never started again from its beginning, so the pool's next
    /// commits would checkpoint inside themselves again. Must be called inside a tokio runtime.
    pub fn checkpoint_in_background(&self) {
        let (Pool::Sqlite(pool), true) = (&self.pool, self.own_writer) else { return };
        let mut checkpoints = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
        // A task cut off with its runtime never cleared `running`.
        let cut_off = checkpoints.task.as_ref().is_some_and(tokio::task::JoinHandle::is_finished);
        if checkpoints.running && !cut_off {
            checkpoints.again = true;
            return;
        }
        checkpoints.running = true;
        let (pool, shared) = (pool.clone(), self.checkpoint.clone());
        checkpoints.task = Some(tokio::spawn(async move {
            loop {
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                    tracing::debug!("state checkpoint beside the writers: {e}");
                }
                let mut checkpoints = shared.lock().unwrap_or_else(|e| e.into_inner());
                if !std::mem::take(&mut checkpoints.again) {
                    checkpoints.running = false;
                    return;
                }
            }
        }));
    }

    /// Waits for the checkpoint under way beside the writers, if any
    /// ([`StateStore::checkpoint_in_background`]).
    pub async fn checkpoint_done(&self) {
        let checkpoint = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner()).task.take();
        if let Some(checkpoint) = checkpoint {
            let _ = checkpoint.await;
        }
    }

    /// Closes the pool. A SQLite state fristvakt writes is checkpointed first, so that the file
    /// holds everything and its write-ahead log is empty: the last of several connections
    /// closing at once may otherwise leave the log behind (each sees the others still open).
    pub async fn close(&self) {
        self.checkpoint_done().await;
        // The writers' connection first, so that the pool's last connection finds the log free.
        if let Some(connection) = self.writer.lock().await.take() {
            if let Err(e) = connection.close().await {
                tracing::debug!("closing the writers' connection: {e}");
            }
        }
        if let (Pool::Sqlite(p), true) = (&self.pool, self.owned) {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await {
                tracing::debug!("state checkpoint at close: {e}");
            }
        }
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::StateStore;

    /// A migrated state on a SQLite file in a directory of its own (removed when dropped), and
    /// its URL (for another store on the same file).
    pub(crate) async fn file_state() -> (tempfile::TempDir, crate::config::DatabaseUrl, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let url =
            crate::config::DatabaseUrl::parse(&format!("sqlite://{}", dir.path().join("state.db").display())).unwrap();
        let state = StateStore::connect(&url).await.unwrap();
        state.migrate().await.unwrap();
        (dir, url, state)
    }
}
