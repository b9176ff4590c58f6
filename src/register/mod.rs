//! Reading the municipality's case register: the read-only view of contract §1.
//!
//! Architecture invariants: fristvakt never writes to a register (this module holds no write
//! path: the demo register is written by `demo`); columns are always named explicitly, all taken
//! from the one table of [`columns`]; rows stream, so memory stays bounded however large the
//! register is; a broken row is skipped with a reason that names its `case_ref` and the column,
//! never another column's value.
//!
//! The register is read through the typed pool of its engine (`db::Pool`), every value as
//! text: PostgreSQL casts every column to text in the SELECT (polls stream it with `COPY … TO
//! STDOUT`, a single case is read by the same SELECT), and a SQLite value of
//! another storage class becomes its text form, so a bad value rejects only its row (through
//! [`validate`]) and never fails the whole poll.
//!
//! The module's parts: [`columns`] (the column table, [`RawRow`], [`Features`]), `chunk` (the
//! encoded rows a print is taken over), `validate` (contract §1's row rules), `sqlite` (the
//! rusqlite reader of a register file) and `postgres` (the COPY reader), and here the
//! [`Register`] that connects and chooses between them.

mod chunk;
pub mod columns;
pub mod placements;
mod postgres;
mod sqlite;
mod validate;

use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

pub use self::chunk::{EncodedRow, RowChunk};
pub use self::columns::{Column, Feature, Features, Presence, RawRow, Storage, COLUMNS, WIDTH};
pub use self::placements::{
    placement_cells, placement_chunk, validate_placement, validate_placement_cells, CaseFacts, PlacementCells,
    PlacementRow, RawPlacement, ScannedFacts,
};
use self::postgres::{pg_columns, pg_columns_copied_as_cast, pg_instant_text, stream_pg_copy, CopyShape};
use self::sqlite::{sqlite_columns, stream_sqlite_file};
pub use self::validate::{validate, validate_encoded, CaseRow, RejectReason, Rejection};
use crate::config::{DatabaseUrl, Engine};
use crate::db::{format_instant, with_pool, Pool, Waits};
use crate::domain::ChildKey;
pub use crate::domain::Sex;

/// Rows handed over per chunk by the readers.
const STREAM_CHUNK: usize = 1000;

/// Child keys looked up by one statement of [`Register::chunks_of_children`] on SQLite.
const CHILD_KEYS_PER_STATEMENT: usize = 1000;

/// The same on PostgreSQL: for a list of a thousand keys the planner of a register of 100 000
/// cases chose to read the whole view (a sequential scan: 20–38 ms), for a quarter of that the
/// index on `child_key` (1.6 ms a statement; BENCHMARKS.md, "Figures behind code comments").
const PG_CHILD_KEYS_PER_STATEMENT: usize = 250;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// `url` is redacted and `reason` scrubbed of the URL's secrets ([`RegisterError::connect`]).
    #[error("register {url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("register view {view}: missing column(s) {}", .columns.join(", "))]
    MissingColumns { view: String, columns: Vec<String> },
    #[error("register view {view}: {source}")]
    Query { view: String, source: sqlx::Error },
    #[error("register {url} is not SQLite: demo data is only written to a SQLite register")]
    NotSqlite { url: String },
}

impl RegisterError {
    /// A failed connection, named by the redacted URL, with every secret of the URL scrubbed
    /// from the driver's message.
    pub(crate) fn connect(url: &DatabaseUrl, source: sqlx::Error) -> RegisterError {
        RegisterError::Connect { url: url.redacted(), reason: url.scrub(&source.to_string()) }
    }
}

pub struct Register {
    pool: Pool,
    /// The file of a SQLite register, streamed by [`stream_sqlite_file`]; `None` for PostgreSQL
    /// and an in-memory database.
    sqlite_file: Option<std::path::PathBuf>,
    view: String,
    features: Features,
    select_all: String,
    /// The SELECT a PostgreSQL COPY streams (empty for SQLite): [`Register::select_all`]
    /// without the casts that change nothing (see [`pg_columns_copied_as_cast`]).
    copy_select: String,
    select_since: String,
    select_one: String,
    select_newest: String,
    select_by_case_ref: String,
    /// How long a streamed read (a pass's COPY) may wait for the server's next data: the
    /// statement timeout, which bounds every other statement, would cut a long pass short.
    stream_idle: std::time::Duration,
    /// The placements view (contract §1b) when the register has it with every column; `None`:
    /// the placement clocks are off.
    placements: Option<String>,
    /// The placements view's statements, set with `placements`.
    placements_sql: placements::Statements,
}

impl Register {
    /// Connects to the register, read-only ([`Pool::open_read_only`]): a SQLite register must
    /// already exist, is opened with `mode=ro` and `query_only`, and its journal mode is left as
    /// it is; a PostgreSQL session has `default_transaction_read_only = on`.
    pub async fn connect(url: &DatabaseUrl, view: &str) -> Result<Register, RegisterError> {
        Register::connect_waiting(url, view, Waits::REGISTER).await
    }

    /// [`Register::connect`], its statements and lock waits bounded by `waits`
    /// (`register.statement_timeout`, `register.lock_timeout`).
    pub async fn connect_waiting(url: &DatabaseUrl, view: &str, waits: Waits) -> Result<Register, RegisterError> {
        let pool = Pool::open_read_only(url, 4, waits).await.map_err(|source| RegisterError::connect(url, source))?;
        let features = match detect_features(&pool, view).await {
            Ok(features) => features,
            Err(source) => {
                pool.close().await;
                return Err(RegisterError::connect(url, source));
            }
        };
        tracing::info!(view, "register view: {}", features.describe());
        let copied_as_cast = match &pool {
            Pool::Postgres(p) => match pg_columns_copied_as_cast(p, view).await {
                Ok(columns) => columns,
                Err(source) => {
                    pool.close().await;
                    return Err(RegisterError::connect(url, source));
                }
            },
            Pool::Sqlite(_) => Vec::new(),
        };
        let mut register = Register::with_pool(pool, url, view, features, &copied_as_cast);
        register.stream_idle = waits.statement;
        Ok(register)
    }

    /// `copied_as_cast`: the PostgreSQL view's columns COPY may stream without their cast
    /// ([`pg_columns_copied_as_cast`]).
    fn with_pool(pool: Pool, url: &DatabaseUrl, view: &str, features: Features, copied_as_cast: &[String]) -> Register {
        // Every value is read as text so that one validator serves both engines and a bad value
        // rejects only its row. PostgreSQL casts in the SELECT (its `date` renders as
        // YYYY-MM-DD, `timestamptz` is rendered as RFC 3339 UTC with microseconds); SQLite hands
        // out what the view holds, of any storage class (see `SqliteRow::text`).
        let (columns, newest) = match url.engine {
            // Instants are compared as instants, not as text: a value with a space separator or an
            // offset (`2026-03-03 10:05:00+01:00`) sorts differently from the UTC `…T…Z` form.
            // An optional column the view lacks is read as NULL, so every row has the same shape.
            Engine::Sqlite => {
                (sqlite_columns(&features), "strftime('%Y-%m-%dT%H:%M:%fZ', MAX(julianday(updated_at)))".to_string())
            }
            // Every column is cast to text; the instant is rendered by the server in the
            // session's time zone (UTC, set by sqlx at connect) and put into RFC 3339 form by
            // `pg_instant`, as the COPY reader (`stream_pg_copy`) reads it too.
            Engine::Postgres => (pg_columns(&features, &[]), pg_instant_text("MAX(updated_at)")),
        };
        // `view` is validated as a plain identifier by the configuration, so it is safe here.
        Register {
            placements: None,
            placements_sql: Default::default(),
            stream_idle: Waits::REGISTER.statement,
            sqlite_file: url.sqlite_path().filter(|_| url.engine == Engine::Sqlite),
            pool,
            view: view.to_string(),
            features,
            select_all: format!("SELECT {columns} FROM {view}"),
            select_by_case_ref: format!("SELECT {columns} FROM {view} ORDER BY case_ref"),
            copy_select: match url.engine {
                Engine::Sqlite => String::new(),
                Engine::Postgres => format!("SELECT {} FROM {view}", pg_columns(&features, copied_as_cast)),
            },
            select_since: match url.engine {
                // The text bound ($1, the day before) keeps an index on updated_at usable: any
                // value whose instant is at or after `since` has a text date no earlier than the
                // day before, whatever its separator or offset. julianday() then compares the
                // instants exactly.
                Engine::Sqlite => {
                    format!("SELECT {columns} FROM {view} WHERE updated_at >= $1 AND julianday(updated_at) >= julianday($2)")
                }
                Engine::Postgres => format!("SELECT {columns} FROM {view} WHERE updated_at >= $1"),
            },
            select_one: format!("SELECT {columns} FROM {view} WHERE case_ref = $1"),
            select_newest: match url.engine {
                // MAX over julianday() reads every row; the text maximum comes from the index on
                // updated_at, and the latest instant is among the rows at most two days of text
                // below it, whatever their offsets. A text maximum that is not a date (a broken
                // value sorting last) falls back to reading every row.
                Engine::Sqlite => format!(
                    "SELECT {newest} FROM {view} WHERE updated_at >= \
                     COALESCE((SELECT date(substr(MAX(updated_at), 1, 10), '-2 days') FROM {view}), '0000')"
                ),
                Engine::Postgres => format!("SELECT {newest} FROM {view}"),
            },
        }
    }

    pub fn view(&self) -> &str {
        &self.view
    }

    /// Looks for the placements view `view` (contract §1b) and reads it from now on when it is
    /// there with every column. An absent view turns the placement clocks off (said once in the
    /// log); a view that lacks columns does too, and the log names them. Any other failure (a
    /// lock, a timeout) fails the connection, as the optional columns' probe does.
    pub async fn with_placements(mut self, view: &str) -> Result<Register, RegisterError> {
        match placements::detect(&self.pool, view).await {
            Ok(None) => {
                tracing::info!(
                    placements_view = view,
                    "register: no placements view; the placement and LVU clocks are off"
                );
            }
            Ok(Some(missing)) if missing.is_empty() => {
                tracing::info!(
                    placements_view = view,
                    "register: placements view found; the placement and LVU clocks are on"
                );
                let copied_as_cast = match &self.pool {
                    Pool::Postgres(p) => match pg_columns_copied_as_cast(p, view).await {
                        Ok(columns) => columns,
                        Err(source) => {
                            self.pool.close().await;
                            return Err(RegisterError::Query { view: view.to_string(), source });
                        }
                    },
                    Pool::Sqlite(_) => Vec::new(),
                };
                self.placements_sql = placements::statements(self.engine(), view, &copied_as_cast);
                self.placements = Some(view.to_string());
            }
            Ok(Some(missing)) => {
                tracing::error!(
                    placements_view = view,
                    missing = %missing.join(", "),
                    "register: the placements view lacks columns; the placement and LVU clocks are off"
                );
            }
            Err(source) => {
                self.pool.close().await;
                return Err(RegisterError::Query { view: view.to_string(), source });
            }
        }
        Ok(self)
    }

    /// A line for the log and `check-config`: whether the placement clocks are on.
    pub fn describe_placements(&self) -> String {
        match &self.placements {
            Some(view) => format!("placements view {view}: placement and LVU clocks on"),
            None => "no placements view: placement and LVU clocks off".to_string(),
        }
    }

    /// The optional features the view supports.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Whether the register answers and the view has every column.
    pub async fn check(&self) -> Result<(), RegisterError> {
        let required: Vec<&str> = COLUMNS.iter().filter(|c| c.is_required()).map(|c| c.name).collect();
        let probe = format!("SELECT {} FROM {} WHERE 1 = 0", required.join(", "), self.view);
        match with_pool!(&self.pool, p => sqlx::query(&probe).fetch_optional(p).await.map(|_| ())) {
            Ok(()) => Ok(()),
            Err(source) => Err(self.explain_error(source).await),
        }
    }

    /// Turns a failed query into an error that names missing columns when that is the cause.
    async fn explain_error(&self, source: sqlx::Error) -> RegisterError {
        // A failed statement that says a column or the view does not exist: from sqlx a database
        // error, from the rusqlite reader a protocol error carrying SQLite's message. Any other
        // failure (a lock or statement timeout on a locked view) is returned as it is, at once:
        // probing column after column would wait a lock timeout each.
        let absent = match &source {
            sqlx::Error::Database(e) => names_no_such_column(e.as_ref()),
            sqlx::Error::Protocol(message) => ["no such column", "no such table"].iter().any(|m| message.contains(m)),
            _ => false,
        };
        if absent {
            let mut missing = Vec::new();
            let required: Vec<&Column> = COLUMNS.iter().filter(|c| c.is_required()).collect();
            for column in &required {
                let probe = format!("SELECT {} FROM {} WHERE 1 = 0", column.name, self.view);
                if with_pool!(&self.pool, p => sqlx::query(&probe).fetch_optional(p).await.is_err()) {
                    missing.push(column.name.to_string());
                }
            }
            if !missing.is_empty() && missing.len() < required.len() {
                return RegisterError::MissingColumns { view: self.view.clone(), columns: missing };
            }
        }
        RegisterError::Query { view: self.view.clone(), source }
    }

    /// Streams rows changed at or after `since` (every row when `None`).
    pub fn rows_since(&self, since: Option<DateTime<Utc>>) -> BoxStream<'_, Result<RawRow, RegisterError>> {
        self.chunks_since(since)
            .flat_map(|chunk| {
                let rows: Vec<Result<RawRow, RegisterError>> = match chunk {
                    Ok(rows) => rows.rows().map(|row| Ok(row.to_raw())).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures_util::stream::iter(rows)
            })
            .boxed()
    }

    /// Streams rows changed at or after `since` (every row when `None`) in chunks of up to
    /// [`STREAM_CHUNK`] rows, each chunk one buffer ([`RowChunk`]): a million rows handed on one
    /// by one, or as fifteen strings each, cost more in copies and allocations than the read.
    pub fn chunks_since(&self, since: Option<DateTime<Utc>>) -> BoxStream<'_, Result<RowChunk, RegisterError>> {
        let view = self.view.clone();
        let error = move |source| RegisterError::Query { view: view.clone(), source };
        match &self.pool {
            Pool::Sqlite(_) if self.sqlite_file.is_some() => {
                let path = self.sqlite_file.clone().unwrap_or_default();
                let (sql, binds) = match since {
                    None => (self.select_all.clone(), Vec::new()),
                    Some(t) => (
                        self.select_since.clone(),
                        vec![(t - chrono::Duration::days(1)).format("%Y-%m-%d").to_string(), format_instant(t)],
                    ),
                };
                stream_sqlite_file(path, sql, binds).map(move |chunk| chunk.map_err(&error)).boxed()
            }
            Pool::Sqlite(p) => {
                let rows = match since {
                    None => sqlx::query(&self.select_all).fetch(p),
                    // The SQLite register holds RFC 3339 text (contract §1), compared as instants.
                    Some(t) => sqlx::query(&self.select_since)
                        .bind((t - chrono::Duration::days(1)).format("%Y-%m-%d").to_string())
                        .bind(format_instant(t))
                        .fetch(p),
                };
                chunked(rows.map(|row| row.and_then(|row| raw_row(&row))).boxed())
                    .map(move |c| c.map_err(&error))
                    .boxed()
            }
            Pool::Postgres(p) => {
                // COPY gives each column as its cast to text would (the casts that change nothing
                // are left out: `copy_select`), so that each way of reading gives the same row.
                // COPY takes no parameters: the bound is our own RFC 3339 text of an instant.
                let sql = match since {
                    None => format!("COPY ({}) TO STDOUT", self.copy_select),
                    Some(t) => format!(
                        "COPY ({} WHERE updated_at >= CAST('{}' AS timestamptz)) TO STDOUT",
                        self.copy_select,
                        format_instant(t)
                    ),
                };
                stream_pg_copy(p.clone(), sql, CopyShape::Cases, self.stream_idle)
                    .map(move |chunk| chunk.map_err(&error))
                    .boxed()
            }
        }
    }

    /// Every row in the byte order of `case_ref`, in chunks as [`Register::chunks_since`] gives
    /// them: for a reader that computes the rows as they come and prints them in that order
    /// (`deadlines --fresh`). The engine sorts, or walks the index on `case_ref` that
    /// docs/register-view.md asks for.
    pub fn chunks_by_case_ref(&self) -> BoxStream<'_, Result<RowChunk, RegisterError>> {
        let view = self.view.clone();
        let error = move |source| RegisterError::Query { view: view.clone(), source };
        match &self.pool {
            Pool::Sqlite(_) if self.sqlite_file.is_some() => {
                let path = self.sqlite_file.clone().unwrap_or_default();
                stream_sqlite_file(path, self.select_by_case_ref.clone(), Vec::new())
                    .map(move |chunk| chunk.map_err(&error))
                    .boxed()
            }
            Pool::Sqlite(p) => {
                let rows = sqlx::query(&self.select_by_case_ref).fetch(p);
                chunked(rows.map(|row| row.and_then(|row| raw_row(&row))).boxed())
                    .map(move |c| c.map_err(&error))
                    .boxed()
            }
            Pool::Postgres(p) => {
                let sql = format!("COPY ({} ORDER BY case_ref COLLATE \"C\") TO STDOUT", self.copy_select);
                stream_pg_copy(p.clone(), sql, CopyShape::Cases, self.stream_idle)
                    .map(move |chunk| chunk.map_err(&error))
                    .boxed()
            }
        }
    }

    /// Like [`Register::rows_since`], but a failure names missing columns.
    pub async fn explain(&self, error: RegisterError) -> RegisterError {
        match error {
            RegisterError::Query { source, .. } => self.explain_error(source).await,
            other => other,
        }
    }

    /// One case's row, if the register holds it.
    pub async fn row(&self, case_ref: &str) -> Result<Option<RawRow>, RegisterError> {
        let row = with_pool!(&self.pool, p => {
            match sqlx::query(&self.select_one).bind(case_ref).fetch_optional(p).await {
                Ok(Some(row)) => raw_row(&row).map(Some).map_err(|e| (false, e)),
                Ok(None) => Ok(None),
                Err(e) => Err((true, e)),
            }
        });
        match row {
            Ok(row) => Ok(row),
            Err((false, source)) => Err(RegisterError::Query { view: self.view.clone(), source }),
            Err((true, source)) => Err(self.explain_error(source).await),
        }
    }

    /// Every row of the children whose keys are `keys` (a key given twice counts once), in
    /// chunks of the same encoding as [`Register::chunks_since`]'s, so that a row's print is the
    /// same whichever read it; nothing when the view has no `child_key`. One statement reads the
    /// rows of up to [`CHILD_KEYS_PER_STATEMENT`] keys (on PostgreSQL a COPY, like a poll's, of
    /// up to [`PG_CHILD_KEYS_PER_STATEMENT`]).
    /// The rows come in no particular order. The keys go into no log line or error message.
    pub fn chunks_of_children(&self, keys: &[ChildKey]) -> BoxStream<'_, Result<RowChunk, RegisterError>> {
        if !self.features.chains || keys.is_empty() {
            return futures_util::stream::empty().boxed();
        }
        let mut keys: Vec<String> = keys.iter().map(|key| key.as_str().to_string()).collect();
        keys.sort_unstable();
        keys.dedup();
        let per_statement = match &self.pool {
            Pool::Postgres(_) => PG_CHILD_KEYS_PER_STATEMENT,
            Pool::Sqlite(_) => CHILD_KEYS_PER_STATEMENT,
        };
        let batches: Vec<Vec<String>> = keys.chunks(per_statement).map(<[String]>::to_vec).collect();
        futures_util::stream::iter(batches).flat_map(move |batch| self.chunks_of_child_batch(batch)).boxed()
    }

    /// The rows of the children with `keys` (at most a batch of [`Register::chunks_of_children`]), read by one
    /// statement.
    fn chunks_of_child_batch(&self, keys: Vec<String>) -> BoxStream<'static, Result<RowChunk, RegisterError>> {
        let view = self.view.clone();
        let error = move |source| RegisterError::Query { view: view.clone(), source };
        // Anonymous marks: SQLite resolves each numbered mark by walking the statement's names.
        let sqlite_sql = || format!("{} WHERE child_key IN ({})", self.select_all, vec!["?"; keys.len()].join(", "));
        let chunks = match &self.pool {
            Pool::Sqlite(_) if self.sqlite_file.is_some() => {
                let path = self.sqlite_file.clone().unwrap_or_default();
                stream_sqlite_file(path, sqlite_sql(), keys)
            }
            Pool::Sqlite(p) => {
                let (pool, sql) = (p.clone(), sqlite_sql());
                futures_util::stream::once(async move {
                    let mut query = sqlx::query(&sql);
                    for key in &keys {
                        query = query.bind(key.as_str());
                    }
                    let mut chunk = RowChunk::default();
                    for row in query.fetch_all(&pool).await? {
                        chunk.push_raw(&raw_row(&row)?);
                    }
                    Ok(chunk)
                })
                .boxed()
            }
            Pool::Postgres(p) => {
                // COPY takes no parameters: the keys are written into the statement as escaped
                // string constants (`E'…'`, backslash and quote escaped, read the same whatever
                // standard_conforming_strings is; a child key holds no control character). A
                // list of constants lets the planner count the keys and use an index on
                // child_key for a few and hash them for many; keys computed in the statement
                // (an array of decoded hex) were matched row by row against the whole view
                // (BENCHMARKS.md, "Figures behind code comments").
                let literals: Vec<String> = keys.iter().map(|key| pg_string_constant(key)).collect();
                let sql = format!("COPY ({} WHERE child_key IN ({})) TO STDOUT", self.copy_select, literals.join(","));
                stream_pg_copy(p.clone(), sql, CopyShape::Cases, self.stream_idle)
            }
        };
        chunks.map(move |chunk| chunk.map_err(&error)).boxed()
    }

    /// Every row of the child with `key` (for `explain`'s chains), read as
    /// [`Register::chunks_of_children`] reads them; none when the view has no `child_key`.
    pub async fn rows_of_child(&self, key: &ChildKey) -> Result<Vec<RawRow>, RegisterError> {
        use futures_util::TryStreamExt;
        let chunks: Vec<RowChunk> = self.chunks_of_children(std::slice::from_ref(key)).try_collect().await?;
        Ok(chunks.iter().flat_map(|chunk| chunk.rows().map(|row| row.to_raw())).collect())
    }

    /// The newest `updated_at` in the register (for the staleness gauge).
    pub async fn newest_update(&self) -> Result<Option<DateTime<Utc>>, RegisterError> {
        let raw = with_pool!(&self.pool, p => {
            match sqlx::query(&self.select_newest).fetch_one(p).await {
                Ok(row) => row.text(0),
                Err(e) => Err(e),
            }
        })
        .map_err(|source| RegisterError::Query { view: self.view.clone(), source })?;
        Ok(raw.and_then(|r| crate::db::parse_instant(&r)))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `text` as a PostgreSQL escape string constant, `E'…'`: a backslash and a quote are escaped
/// with a backslash, which an escape string reads the same whatever `standard_conforming_strings`
/// says. For text without NUL (a child key holds no control character).
fn pg_string_constant(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    out.push_str("E'");
    for c in text.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A register row's column as text.
trait TextRow {
    fn text(&self, i: usize) -> Result<Option<String>, sqlx::Error>;
}

fn raw_row(row: &impl TextRow) -> Result<RawRow, sqlx::Error> {
    let values = (0..WIDTH).map(|i| row.text(i)).collect::<Result<Vec<_>, _>>()?;
    Ok(RawRow::from_values(values))
}

/// Rows in chunks of what is ready, up to [`STREAM_CHUNK`].
fn chunked<'a>(
    rows: BoxStream<'a, Result<RawRow, sqlx::Error>>,
) -> impl futures_util::Stream<Item = Result<RowChunk, sqlx::Error>> + Send + 'a {
    rows.ready_chunks(STREAM_CHUNK).map(|rows| {
        let mut chunk = RowChunk::with_capacity(rows.len());
        for row in rows {
            chunk.push_raw(&row?);
        }
        Ok(chunk)
    })
}

/// Which optional columns the view has: each is probed on its own, and a column the database
/// says does not exist is a feature off (a view that does not exist has none: the check that
/// follows names it). Any other failure — the database not answering, a lock or statement
/// timeout on a view locked by a `TRUNCATE`, `ALTER` or `REFRESH MATERIALIZED VIEW` — is an
/// error, so that the connection fails at once (the poll fails, counted, and is tried again)
/// and a feature is never switched off by a passing outage or lock.
async fn detect_features(pool: &Pool, view: &str) -> Result<Features, sqlx::Error> {
    let mut present = Vec::new();
    for column in COLUMNS.iter().filter(|c| !c.is_required()) {
        let probe = format!("SELECT {} FROM {view} WHERE 1 = 0", column.name);
        match with_pool!(pool, p => sqlx::query(&probe).fetch_optional(p).await.map(|_| ())) {
            Ok(_) => present.push(column.name),
            Err(sqlx::Error::Database(e)) if names_no_such_column(e.as_ref()) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Features::of_columns(|column| present.contains(&column)))
}

/// Whether a failed probe says that the column (or the whole view) does not exist: PostgreSQL's
/// SQLSTATE 42703 (undefined_column) or 42P01 (undefined_table), SQLite's "no such column" or
/// "no such table". Nothing else means a feature is off.
fn names_no_such_column(e: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(e.code().as_deref(), Some("42703" | "42P01"))
        || ["no such column", "no such table"].iter().any(|m| e.message().contains(m))
}
