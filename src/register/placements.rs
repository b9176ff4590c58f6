//! The optional placements view (register contract §1b): one row per placement or LVU decision,
//! read as text like the cases view and checked by the same row rules ([`validate_placement`]).
//!
//! The view is small beside the cases view (a few percent of children are placed). A poll reads
//! the rows changed since a watermark, or every row (a full pass), as the cases view is read: by
//! rusqlite from a SQLite file, by `COPY … TO STDOUT` from PostgreSQL; the rows of given cases or
//! children (a changed case changes their clocks), and one placement, by lookups
//! (`Register::select_in`: on a SQLite file all of a call's statements on one rusqlite
//! connection, else through the register's sqlx pool). What the clocks
//! need from the cases view — the investigation close of the case a row names, the investigations
//! opened in the child's cases, and whether a placement reference is also a case reference — is
//! read by [`Register::case_facts`].

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::Row;

use super::postgres::{stream_pg_copy, stream_pg_copy_ahead, CopyShape};
use super::sqlite::{read_sqlite_file, stream_sqlite_file, stream_sqlite_file_ahead};
use super::validate::parse_day;
use super::{
    names_no_such_column, pg_instant_text, Register, RegisterError, RejectReason, Rejection, RowChunk, TextRow,
};
use crate::config::Engine;
use crate::db::{format_instant, with_pool, Pool};
use crate::domain::{CaseRef, ChildKey, EmailAddress, Sex, UnitCode};
use crate::rules::{Basis, Home, PlacementDates};

/// A hash map keyed by register values: foldhash, several times faster than the standard
/// library's SipHash for keys of a few dozen bytes (a full pass looks every cases row's
/// reference and child key up in one). Its seed is random per process, as SipHash's is.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The columns of the placements view, in contract §1b's order.
pub const PLACEMENT_COLUMNS: [&str; 27] = [
    "placement_ref",
    "case_ref",
    "unit",
    "caseworker",
    "child_key",
    "child_sex",
    "basis",
    "home",
    "home_since",
    "decided_on",
    "executed_on",
    "legal_force_on",
    "submitted_to_court_on",
    "care_applied_on",
    "application_extension_requested_on",
    "application_extended_to",
    "last_reviewed_on",
    "restriction_decided_on",
    "restriction_last_reviewed_on",
    "restriction_ended_on",
    "custody_considered_on",
    "emergency_home_extended_to",
    "ended_on",
    "follow_up_decided_on",
    "follow_up_ended_on",
    "updated_at",
    // Not a column: the row's index in a read, so that columns are found by name below.
    "",
];

/// References looked up by one statement.
const REFS_PER_STATEMENT: usize = 500;

/// References looked up by one statement on a SQLite file read by rusqlite, well within
/// SQLite's 32 766 parameters a statement: the lookups of a poll's 1 000 changed placements are
/// one statement a column.
const FILE_REFS_PER_STATEMENT: usize = 10_000;

/// Statements of [`Register::select_in`] a PostgreSQL register runs at once: fewer than the
/// pool's four connections, one of which a poll's read of the view may hold.
const STATEMENTS_IN_FLIGHT: usize = 3;

/// The values in a row of the view.
const WIDTH: usize = PLACEMENT_COLUMNS.len() - 1;

/// Chunks of the placements view a full pass reads ahead ([`Register::every_placement_ahead`]):
/// 16 000 rows, about 6 MB of text.
const PASS_AHEAD: usize = 16;

/// The columns a full pass reads first ([`Register::wanted_facts`]).
const KEY_COLUMNS: [&str; 3] = ["placement_ref", "case_ref", "child_key"];

/// One placements row as read: every column as text, in [`PLACEMENT_COLUMNS`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPlacement(pub Vec<Option<String>>);

impl RawPlacement {
    /// Its values, borrowed.
    pub fn cells(&self) -> PlacementCells<'_> {
        std::array::from_fn(|at| self.0.get(at).and_then(|v| v.as_deref()).map(Cow::Borrowed))
    }
}

/// One placements row's values as text, in [`PLACEMENT_COLUMNS`] order, borrowed from where
/// they were read: a full pass validates and prints a chunk's rows without a `String` a value
/// (what [`RawPlacement`] holds cost about as much as validating the row).
pub type PlacementCells<'a> = [Option<Cow<'a, str>>; WIDTH];

/// The rows of a chunk of the placements view as text, each value as [`RawPlacement`] holds it
/// (invalid UTF-8 replaced, which is the only value copied).
pub fn placement_cells(chunk: &RowChunk) -> Vec<PlacementCells<'_>> {
    chunk
        .rows()
        .map(|row| {
            let mut values = row.values();
            std::array::from_fn(|_| values.next().flatten().map(String::from_utf8_lossy))
        })
        .collect()
}

/// Placements rows read as text (through sqlx, or made up by a test) as a chunk of the view.
pub fn placement_chunk(raws: &[RawPlacement]) -> RowChunk {
    let mut chunk = RowChunk::default();
    for raw in raws {
        chunk.push_texts(raw.0.iter().map(Option::as_deref));
    }
    chunk
}

/// The value at `at`, trimmed; `None` for NULL or blank.
fn present<'c>(cells: &'c PlacementCells<'_>, at: usize) -> Option<&'c str> {
    cells.get(at).and_then(|v| v.as_deref()).map(str::trim).filter(|s| !s.is_empty())
}

/// The place of the column `name` in [`PLACEMENT_COLUMNS`]; a name not in the list fails the
/// build where a constant is made of it.
const fn placement_position(name: &str) -> usize {
    let mut i = 0;
    while i < WIDTH {
        if super::columns::same_name(PLACEMENT_COLUMNS[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("no such placements column")
}

/// A validated placements row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRow {
    /// The placement's reference: its deadlines' `case_ref` in the state and in every output.
    pub placement_ref: CaseRef,
    /// The case it belongs to, if the register names one.
    pub case_ref: Option<CaseRef>,
    pub unit: UnitCode,
    pub caseworker: Option<EmailAddress>,
    pub caseworker_invalid: bool,
    pub child_key: Option<ChildKey>,
    pub child_sex: Option<Sex>,
    pub dates: PlacementDates,
    pub updated_at: DateTime<Utc>,
}

/// What the placements' clocks need from the cases view.
#[derive(Debug, Clone, Default)]
pub struct CaseFacts {
    /// Every case reference asked for that the cases view holds, with its
    /// `investigation_closed_on` (a placement row naming it is joined; a placement reference
    /// found here is a `ref_collision`).
    pub cases: FastMap<String, Option<NaiveDate>>,
    /// The `investigation_opened_on` of every case of each child asked for.
    pub opened_by_child: FastMap<String, Vec<NaiveDate>>,
}

/// The case facts a full pass gathers from the cases view's own scan, for the case references
/// and child keys its placements name (`wanted`): what [`Register::case_facts`] would read for
/// them, without a statement of its own. A row counts whatever the cases pass makes of it
/// (valid or not), and matches a wanted value only on its bytes as the engine gave them, as the
/// lookups' `IN` lists match; a value the scan was not asked for is left to the lookups.
#[derive(Debug, Default)]
pub struct ScannedFacts {
    /// Each case reference asked for (every placements row's `placement_ref` and `case_ref`,
    /// trimmed), with its case's `investigation_closed_on` once the scan has read the case.
    refs: FastMap<Box<[u8]>, Option<Option<NaiveDate>>>,
    /// Each child key asked for, with the `investigation_opened_on` of the child's cases read.
    keys: FastMap<Box<[u8]>, Vec<NaiveDate>>,
    chains: bool,
}

impl ScannedFacts {
    /// Gathers nothing yet; the investigations opened by child only when `chains` (the cases
    /// view has `child_key`, as the lookups read them).
    pub fn new(chains: bool) -> ScannedFacts {
        ScannedFacts { chains, ..ScannedFacts::default() }
    }

    /// Asks for the facts of a chunk of the placements view's [`KEY_COLUMNS`] as the engine
    /// gave them, unvalidated: each value is kept trimmed, the form a valid row's
    /// `CaseRef::parse(..).as_str()` and `ChildKey::as_str` take, so that every valid row's are
    /// among them (a broken row's are asked for too, which costs only their cases' facts).
    fn want(&mut self, chunk: &RowChunk) {
        for row in chunk.rows() {
            for (at, value) in row.values().enumerate() {
                let Some(value) = value else { continue };
                let text = String::from_utf8_lossy(value);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                if at < 2 {
                    self.refs.entry(text.as_bytes().into()).or_insert(None);
                } else {
                    self.keys.entry(text.as_bytes().into()).or_default();
                }
            }
        }
    }

    /// Records the facts of a chunk of the cases view's rows.
    pub fn record(&mut self, chunk: &super::RowChunk) {
        const CASE_REF: usize = super::columns::position("case_ref");
        const CLOSED: usize = super::columns::position("investigation_closed_on");
        const OPENED: usize = super::columns::position("investigation_opened_on");
        const CHILD_KEY: usize = super::columns::position("child_key");
        const LAST: usize = max(max(CASE_REF, CLOSED), max(OPENED, CHILD_KEY));
        const fn max(a: usize, b: usize) -> usize {
            if a > b {
                a
            } else {
                b
            }
        }
        fn day(value: Option<&[u8]>) -> Option<NaiveDate> {
            value.and_then(|b| std::str::from_utf8(b).ok()).and_then(parse_day)
        }
        for row in chunk.rows() {
            // One walk over the row's values up to the last one needed.
            let (mut case_ref, mut closed, mut opened, mut key) = (None, None, None, None);
            for (at, value) in row.values().enumerate().take(LAST + 1) {
                match at {
                    CASE_REF => case_ref = value,
                    CLOSED => closed = value,
                    OPENED => opened = value,
                    CHILD_KEY => key = value,
                    _ => {}
                }
            }
            if let Some(slot) = case_ref.and_then(|r| self.refs.get_mut(r)) {
                *slot = Some(day(closed));
            }
            if !self.chains {
                continue;
            }
            if let Some(days) = key.and_then(|k| self.keys.get_mut(k)) {
                days.extend(day(opened));
            }
        }
    }

    /// The investigation close of the case `case_ref` as the scan read it: `None` when the scan
    /// was not asked for it (it is then looked up), `Some(None)` when the cases view does not
    /// hold it.
    pub fn closed_of(&self, case_ref: &str) -> Option<Option<Option<NaiveDate>>> {
        self.refs.get(case_ref.as_bytes()).copied()
    }

    /// The investigations opened in the child `key`'s cases as the scan read them, in no
    /// particular order; `None` when the scan was not asked for the child.
    pub fn opened_of(&self, key: &str) -> Option<&[NaiveDate]> {
        self.keys.get(key.as_bytes()).map(Vec::as_slice)
    }
}

/// Checks a placements row against contract §1b.
pub fn validate_placement(raw: &RawPlacement, max_cell_bytes: usize) -> Result<PlacementRow, Rejection> {
    validate_placement_cells(&raw.cells(), max_cell_bytes)
}

/// Checks a placements row's values against contract §1b.
pub fn validate_placement_cells(raw: &PlacementCells<'_>, max_cell_bytes: usize) -> Result<PlacementRow, Rejection> {
    // A column's value, trimmed, found by its place (known when the crate is built).
    macro_rules! present {
        ($column:literal) => {
            present(raw, {
                const AT: usize = placement_position($column);
                AT
            })
        };
    }
    let placement_text = present!("placement_ref");
    let reject =
        |reason, column: &'static str| Rejection { reason, column, case_ref: placement_text.map(str::to_string) };
    for (column, value) in PLACEMENT_COLUMNS.iter().zip(raw) {
        if value.as_ref().is_some_and(|v| v.len() > max_cell_bytes) {
            return Err(reject(RejectReason::CellTooLarge, column));
        }
    }
    let placement_ref = placement_text
        .and_then(|c| CaseRef::parse(c).ok())
        .ok_or_else(|| reject(RejectReason::MissingCaseRef, "placement_ref"))?;
    let case_ref = match present!("case_ref") {
        None => None,
        Some(text) => Some(CaseRef::parse(text).map_err(|_| reject(RejectReason::MissingCaseRef, "case_ref"))?),
    };
    let unit = present!("unit")
        .and_then(|u| UnitCode::parse(u).ok())
        .ok_or_else(|| reject(RejectReason::MissingUnit, "unit"))?;
    let child_sex = match present!("child_sex") {
        None => None,
        Some("F") | Some("f") => Some(Sex::Female),
        Some("M") | Some("m") => Some(Sex::Male),
        Some(_) => return Err(reject(RejectReason::UnknownSex, "child_sex")),
    };
    let child_key = match present!("child_key") {
        None => None,
        Some(text) => Some(ChildKey::parse(text).map_err(|_| reject(RejectReason::BadChildKey, "child_key"))?),
    };
    let basis: Basis =
        present!("basis").and_then(|b| b.parse().ok()).ok_or_else(|| reject(RejectReason::UnknownCode, "basis"))?;
    let home: Option<Home> = match present!("home") {
        None => None,
        Some(text) => Some(text.parse().map_err(|_| reject(RejectReason::UnknownCode, "home"))?),
    };
    let date = |value: Option<&str>, column: &'static str| -> Result<Option<NaiveDate>, Rejection> {
        match value {
            None => Ok(None),
            Some(text) => parse_day(text).map(Some).ok_or_else(|| reject(RejectReason::BadDate, column)),
        }
    };
    macro_rules! date {
        ($column:literal) => {
            date(present!($column), $column)
        };
    }
    let decided_on = date!("decided_on")?.ok_or_else(|| reject(RejectReason::BadDate, "decided_on"))?;
    let mut dates = PlacementDates::new(basis, decided_on);
    dates.home = home;
    dates.home_since = date!("home_since")?;
    dates.executed_on = date!("executed_on")?;
    dates.legal_force_on = date!("legal_force_on")?;
    dates.submitted_to_court_on = date!("submitted_to_court_on")?;
    dates.care_applied_on = date!("care_applied_on")?;
    dates.application_extension_requested_on = date!("application_extension_requested_on")?;
    dates.application_extended_to = date!("application_extended_to")?;
    dates.last_reviewed_on = date!("last_reviewed_on")?;
    dates.restriction_decided_on = date!("restriction_decided_on")?;
    dates.restriction_last_reviewed_on = date!("restriction_last_reviewed_on")?;
    dates.restriction_ended_on = date!("restriction_ended_on")?;
    dates.custody_considered_on = date!("custody_considered_on")?;
    dates.emergency_home_extended_to = date!("emergency_home_extended_to")?;
    dates.ended_on = date!("ended_on")?;
    dates.follow_up_decided_on = date!("follow_up_decided_on")?;
    dates.follow_up_ended_on = date!("follow_up_ended_on")?;
    // Contract §1b: only these pairs are broken rows; any other close before its start is valid
    // and closes its clock, met.
    let before = |later: Option<NaiveDate>, start: Option<NaiveDate>, column: &'static str| match (later, start) {
        (Some(l), Some(s)) if l < s => Err(reject(RejectReason::CloseBeforeStart, column)),
        _ => Ok(()),
    };
    before(dates.executed_on, Some(decided_on), "executed_on")?;
    before(dates.submitted_to_court_on, Some(decided_on), "submitted_to_court_on")?;
    before(dates.ended_on, Some(decided_on), "ended_on")?;
    before(dates.restriction_last_reviewed_on, dates.restriction_decided_on, "restriction_last_reviewed_on")?;
    before(dates.restriction_ended_on, dates.restriction_decided_on, "restriction_ended_on")?;
    before(dates.follow_up_ended_on, dates.ended_on, "follow_up_ended_on")?;
    let updated_at = present!("updated_at")
        .and_then(crate::db::parse_instant)
        .ok_or_else(|| reject(RejectReason::BadTimestamp, "updated_at"))?;
    let caseworker_text = present!("caseworker");
    let caseworker = caseworker_text.and_then(|c| EmailAddress::parse(c).ok());
    Ok(PlacementRow {
        placement_ref,
        case_ref,
        unit,
        caseworker_invalid: caseworker_text.is_some() && caseworker.is_none(),
        caseworker,
        child_key,
        child_sex,
        dates,
        updated_at,
    })
}

/// Whether the register holds the placements view `view`: `Ok(false)` when the database says it
/// does not exist (the feature is off); any other failure is an error, so that a locked view
/// never switches the feature off.
pub(super) async fn detect(pool: &Pool, view: &str) -> Result<Option<Vec<&'static str>>, sqlx::Error> {
    let probe = format!("SELECT placement_ref FROM {view} WHERE 1 = 0");
    match with_pool!(pool, p => sqlx::query(&probe).fetch_optional(p).await.map(|_| ())) {
        Ok(()) => {}
        Err(sqlx::Error::Database(e)) if names_no_such_column(e.as_ref()) => return Ok(None),
        Err(e) => return Err(e),
    }
    // The view exists: every column it lacks is named (the feature stays off without them).
    let mut missing = Vec::new();
    for column in PLACEMENT_COLUMNS.iter().filter(|c| !c.is_empty()) {
        let probe = format!("SELECT {column} FROM {view} WHERE 1 = 0");
        match with_pool!(pool, p => sqlx::query(&probe).fetch_optional(p).await.map(|_| ())) {
            Ok(()) => {}
            Err(sqlx::Error::Database(e)) if names_no_such_column(e.as_ref()) => missing.push(*column),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(missing))
}

/// The SELECT list of the placements view on `engine`: every column as text, the instant in RFC
/// 3339 UTC form on PostgreSQL. A COPY leaves out the casts of the columns `copied_as_cast`
/// names (COPY's text of them is their cast's, see `pg_columns_copied_as_cast`); a SELECT read
/// by sqlx passes none.
pub(super) fn select_list(engine: Engine, copied_as_cast: &[String]) -> String {
    let columns = PLACEMENT_COLUMNS.iter().filter(|c| !c.is_empty());
    columns.map(|c| column_text(engine, c, copied_as_cast)).collect::<Vec<_>>().join(", ")
}

/// One column of [`select_list`].
fn column_text(engine: Engine, column: &str, copied_as_cast: &[String]) -> String {
    match (engine, column) {
        (Engine::Sqlite, c) => c.to_string(),
        (Engine::Postgres, "updated_at") => format!("{} AS updated_at", pg_instant_text("updated_at")),
        (Engine::Postgres, c) if copied_as_cast.iter().any(|p| p == c) => c.to_string(),
        (Engine::Postgres, c) => format!("CAST({c} AS TEXT) AS {c}"),
    }
}

impl Register {
    /// Whether the placements view is there (contract §1b); its name when it is.
    pub fn placements_view(&self) -> Option<&str> {
        self.placements.as_deref()
    }

    /// The placements rows changed at or after `since` (every row when `None`), in chunks.
    /// Nothing when the view is absent.
    pub fn placements_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> BoxStream<'_, Result<Vec<RawPlacement>, RegisterError>> {
        let raws =
            |chunk: RowChunk| -> Vec<RawPlacement> { chunk.rows().map(|row| RawPlacement(row.texts())).collect() };
        self.placement_chunks_since(since).map_ok(raws).boxed()
    }

    /// [`Register::placements_since`] as read, a [`RowChunk`] of the view's values a chunk
    /// (see [`placement_cells`]).
    pub fn placement_chunks_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> BoxStream<'_, Result<RowChunk, RegisterError>> {
        self.placements_read(since, 2)
    }

    /// Every placements row, as [`Register::placement_chunks_since`] gives them, read from the
    /// call on by a task of its own up to [`PASS_AHEAD`] chunks ahead of the caller: a full pass
    /// opens it as its scan of the cases view begins, so that the engine sends the placements
    /// while the cases are computed (on a connection of its own), not after them.
    pub fn every_placement_ahead(&self) -> BoxStream<'_, Result<RowChunk, RegisterError>> {
        self.placements_read(None, PASS_AHEAD)
    }

    /// The placements rows changed at or after `since`, read up to `ahead` chunks ahead.
    fn placements_read(
        &self,
        since: Option<DateTime<Utc>>,
        ahead: usize,
    ) -> BoxStream<'_, Result<RowChunk, RegisterError>> {
        let Some(view) = self.placements.clone() else { return futures_util::stream::empty().boxed() };
        let error = {
            let view = view.clone();
            move |source| RegisterError::Query { view: view.clone(), source }
        };
        // Streamed: a view of 100 000 placements fetched whole held every row twice. A SQLite
        // file is read by rusqlite, a chunk at a time (sqlx hands each row across a channel from
        // its worker thread, which cost more than the read); PostgreSQL by COPY, as the cases
        // view is (sqlx's decoding of each row cost about as much as validating it).
        let Statements { all, since: changed, .. } = &self.placements_sql;
        let rows: BoxStream<'_, Result<RawPlacement, sqlx::Error>> = match (&self.pool, since) {
            (Pool::Sqlite(_), _) if self.sqlite_file.is_some() => {
                let path = self.sqlite_file.clone().unwrap_or_default();
                let (sql, binds) = match since {
                    None => (all.clone(), Vec::new()),
                    Some(t) => (
                        changed.clone(),
                        vec![(t - chrono::Duration::days(1)).format("%Y-%m-%d").to_string(), format_instant(t)],
                    ),
                };
                return stream_sqlite_file_ahead(path, sql, binds, ahead).map_err(error).boxed();
            }
            (Pool::Postgres(p), since) => {
                // COPY takes no parameters: the bound is our own RFC 3339 text of an instant, as
                // in `Register::chunks_since`.
                let sql = match since {
                    None => format!("COPY ({all}) TO STDOUT"),
                    Some(t) => format!(
                        "COPY ({all} WHERE updated_at >= CAST('{}' AS timestamptz)) TO STDOUT",
                        format_instant(t)
                    ),
                };
                return stream_pg_copy_ahead(p.clone(), sql, CopyShape::Plain(WIDTH), self.stream_idle, ahead)
                    .map_err(error)
                    .boxed();
            }
            (Pool::Sqlite(p), None) => sqlx::query(all).fetch(p).map(|r| r.and_then(|r| raw(&r))).boxed(),
            (Pool::Sqlite(p), Some(t)) => sqlx::query(changed)
                .bind((t - chrono::Duration::days(1)).format("%Y-%m-%d").to_string())
                .bind(format_instant(t))
                .fetch(p)
                .map(|r| r.and_then(|r| raw(&r)))
                .boxed(),
        };
        rows.map_err(error)
            .try_chunks(super::STREAM_CHUNK)
            .map_err(|e| e.1)
            .map_ok(|raws| placement_chunk(&raws))
            .boxed()
    }

    /// What a full pass asks of the cases view's scan for its placements ([`ScannedFacts`]):
    /// the placement references, case references and child keys of every placements row,
    /// read alone and unvalidated (a narrow read, a fraction of the whole view's), before the
    /// cases come, so that the pass gathers their facts from its own scan of the cases (only
    /// theirs: about a tenth of the cases) instead of looking each up after it. A broken row's
    /// values are asked for too, which is harmless; a placement read later with another case or
    /// child (the view changed in between) has its facts looked up. Nothing is asked when the
    /// view is absent.
    pub async fn wanted_facts(&self) -> Result<ScannedFacts, RegisterError> {
        let mut scanned = ScannedFacts::new(self.features().chains);
        let Some(view) = self.placements.clone() else { return Ok(scanned) };
        let error = move |source| RegisterError::Query { view: view.clone(), source };
        let keys = &self.placements_sql.keys;
        let mut chunks: BoxStream<'_, Result<RowChunk, sqlx::Error>> = match &self.pool {
            Pool::Sqlite(_) if self.sqlite_file.is_some() => {
                stream_sqlite_file(self.sqlite_file.clone().unwrap_or_default(), keys.clone(), Vec::new())
            }
            Pool::Postgres(p) => stream_pg_copy(
                p.clone(),
                format!("COPY ({keys}) TO STDOUT"),
                CopyShape::Plain(KEY_COLUMNS.len()),
                self.stream_idle,
            ),
            Pool::Sqlite(p) => sqlx::query(keys)
                .fetch(p)
                .map(|row| {
                    row.and_then(|row| (0..KEY_COLUMNS.len()).map(|i| row.text(i)).collect::<Result<Vec<_>, _>>())
                })
                .try_chunks(super::STREAM_CHUNK)
                .map_err(|e| e.1)
                .map_ok(|rows| {
                    let mut chunk = RowChunk::default();
                    for row in rows {
                        chunk.push_texts(row.iter().map(Option::as_deref));
                    }
                    chunk
                })
                .boxed(),
        };
        while let Some(chunk) = chunks.try_next().await.map_err(&error)? {
            scanned.want(&chunk);
        }
        Ok(scanned)
    }

    /// The placements rows that name one of `case_refs` or one of the children `keys`: their
    /// clocks depend on those cases.
    pub async fn placements_of(
        &self,
        case_refs: &[String],
        keys: &[String],
    ) -> Result<Vec<RawPlacement>, RegisterError> {
        let Some(view) = self.placements.clone() else { return Ok(Vec::new()) };
        let columns = select_list(self.engine(), &[]);
        let lookups = [
            Lookup { columns: &columns, column: "case_ref", values: case_refs },
            Lookup { columns: &columns, column: "child_key", values: keys },
        ];
        let rows = self.select_in(&view, &lookups).await?;
        let raws = rows.iter().flatten().map(raw).collect::<Result<Vec<_>, _>>();
        raws.map_err(|source| RegisterError::Query { view, source })
    }

    /// The row of one placement, if the view holds it.
    pub async fn placement(&self, placement_ref: &str) -> Result<Option<RawPlacement>, RegisterError> {
        let Some(view) = self.placements.clone() else { return Ok(None) };
        let columns = select_list(self.engine(), &[]);
        let values = [placement_ref.to_string()];
        let rows =
            self.select_in(&view, &[Lookup { columns: &columns, column: "placement_ref", values: &values }]).await?;
        let raws = rows.iter().flatten().map(raw).collect::<Result<Vec<_>, _>>();
        Ok(raws.map_err(|source| RegisterError::Query { view, source })?.into_iter().next())
    }

    /// The facts of the cases view the placements need: for `case_refs`, whether each is a case
    /// and its investigation close; for `keys`, the investigations opened in the child's cases.
    pub async fn case_facts(&self, case_refs: &[String], keys: &[String]) -> Result<CaseFacts, RegisterError> {
        let mut facts = CaseFacts::default();
        let view = self.view.clone();
        let error = |source| RegisterError::Query { view: view.clone(), source };
        let text = |column: &str| match self.engine() {
            Engine::Sqlite => column.to_string(),
            Engine::Postgres => format!("CAST({column} AS TEXT) AS {column}"),
        };
        let mut unique: Vec<String> = case_refs.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let mut keys = if self.features().chains { keys.to_vec() } else { Vec::new() };
        keys.sort_unstable();
        keys.dedup();
        let (closed, opened) = (
            format!("{}, {}", text("case_ref"), text("investigation_closed_on")),
            format!("{}, {}", text("child_key"), text("investigation_opened_on")),
        );
        let lookups = [
            Lookup { columns: &closed, column: "case_ref", values: &unique },
            Lookup { columns: &opened, column: "child_key", values: &keys },
        ];
        let [cases, children] = self.select_in(&view, &lookups).await?;
        for row in cases {
            let case_ref = row.text(0).map_err(error)?.unwrap_or_default();
            let closed = row.text(1).map_err(error)?.as_deref().and_then(parse_day);
            facts.cases.insert(case_ref.trim().to_string(), closed);
        }
        for row in children {
            let key = row.text(0).map_err(error)?.unwrap_or_default();
            if let Some(opened) = row.text(1).map_err(error)?.as_deref().and_then(parse_day) {
                facts.opened_by_child.entry(key.trim().to_string()).or_default().push(opened);
            }
        }
        Ok(facts)
    }

    /// The rows of each lookup (`SELECT columns FROM view WHERE column IN (values)`), readable
    /// as text, in order: a lookup of no values reads nothing. A SQLite file is read on one
    /// rusqlite connection, [`FILE_REFS_PER_STATEMENT`] values a statement (a connection and a
    /// blocking task for each of six statements of 500 took as long as the lookups themselves,
    /// BENCHMARKS.md "Prints for the placements"); otherwise [`REFS_PER_STATEMENT`] a statement.
    async fn select_in<const N: usize>(
        &self,
        view: &str,
        lookups: &[Lookup<'_>; N],
    ) -> Result<[Vec<AnyTextRow>; N], RegisterError> {
        let error = |source| RegisterError::Query { view: view.to_string(), source };
        let mut out: [Vec<AnyTextRow>; N] = std::array::from_fn(|_| Vec::new());
        let select = |lookup: &Lookup<'_>, n: usize| {
            format!("SELECT {} FROM {view} WHERE {} IN ({})", lookup.columns, lookup.column, vec!["?"; n].join(", "))
        };
        match &self.pool {
            // A SQLite file is read by rusqlite, as the views are (no row crosses sqlx's channel).
            Pool::Sqlite(_) if self.sqlite_file.is_some() => {
                let path = self.sqlite_file.clone().unwrap_or_default();
                let mut statements = Vec::new();
                let mut of_lookup = Vec::new();
                for (at, lookup) in lookups.iter().enumerate() {
                    for batch in lookup.values.chunks(FILE_REFS_PER_STATEMENT) {
                        statements.push((select(lookup, batch.len()), batch.to_vec()));
                        of_lookup.push(at);
                    }
                }
                if statements.is_empty() {
                    return Ok(out);
                }
                let chunks = read_sqlite_file(path, statements).await.map_err(error)?;
                for (chunk, at) in chunks.iter().zip(of_lookup) {
                    out[at].extend(chunk.rows().map(|row| AnyTextRow::Values(row.texts())));
                }
            }
            Pool::Sqlite(p) => {
                for (lookup, out) in lookups.iter().zip(out.iter_mut()) {
                    for batch in lookup.values.chunks(REFS_PER_STATEMENT) {
                        let sql = select(lookup, batch.len());
                        let mut q = sqlx::query(&sql);
                        for v in batch {
                            q = q.bind(v.as_str());
                        }
                        out.extend(q.fetch_all(p).await.map_err(error)?.into_iter().map(AnyTextRow::Sqlite));
                    }
                }
            }
            // PostgreSQL runs the statements side by side on the pool's connections: one after
            // another, the six of 1 000 changed placements waited on a round trip and the server
            // each (BENCHMARKS.md, "Prints for the placements").
            Pool::Postgres(p) => {
                // Collected first: a stream mapped by a closure here made the poll's future not `Send`.
                let reads: Vec<_> = lookups
                    .iter()
                    .enumerate()
                    .flat_map(|(at, lookup)| {
                        lookup.values.chunks(REFS_PER_STATEMENT).map(move |batch| (at, lookup, batch))
                    })
                    .map(|(at, lookup, batch)| {
                        let sql = format!("SELECT {} FROM {view} WHERE {} = ANY($1)", lookup.columns, lookup.column);
                        async move { Ok::<_, sqlx::Error>((at, sqlx::query(&sql).bind(batch).fetch_all(p).await?)) }
                    })
                    .collect();
                let mut read = futures_util::stream::iter(reads).buffered(STATEMENTS_IN_FLIGHT);
                while let Some((at, rows)) = read.try_next().await.map_err(error)? {
                    out[at].extend(rows.into_iter().map(AnyTextRow::Postgres));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn engine(&self) -> Engine {
        match self.pool {
            Pool::Sqlite(_) => Engine::Sqlite,
            Pool::Postgres(_) => Engine::Postgres,
        }
    }
}

/// One lookup of [`Register::select_in`]: `SELECT columns FROM view WHERE column IN (values)`.
struct Lookup<'a> {
    columns: &'a str,
    column: &'a str,
    values: &'a [String],
}

/// A row of either engine, read column by column as text.
enum AnyTextRow {
    Sqlite(sqlx::sqlite::SqliteRow),
    Postgres(sqlx::postgres::PgRow),
    /// Read by rusqlite from a SQLite file, every value as text already.
    Values(Vec<Option<String>>),
}

impl AnyTextRow {
    fn text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        match self {
            AnyTextRow::Sqlite(r) => r.text(i),
            AnyTextRow::Postgres(r) => r.try_get(i),
            AnyTextRow::Values(values) => Ok(values.get(i).cloned().flatten()),
        }
    }
}

fn raw(row: &(impl TextOf + ?Sized)) -> Result<RawPlacement, sqlx::Error> {
    (0..WIDTH).map(|i| row.text_of(i)).collect::<Result<Vec<_>, _>>().map(RawPlacement)
}

/// Text of a column, whichever engine's row.
trait TextOf {
    fn text_of(&self, i: usize) -> Result<Option<String>, sqlx::Error>;
}

impl TextOf for sqlx::sqlite::SqliteRow {
    fn text_of(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        self.text(i)
    }
}

impl TextOf for sqlx::postgres::PgRow {
    fn text_of(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(i)
    }
}

impl TextOf for AnyTextRow {
    fn text_of(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        self.text(i)
    }
}

/// The placements view's statements on one engine.
#[derive(Debug, Clone, Default)]
pub(super) struct Statements {
    /// Every row: read by sqlx or rusqlite (SQLite), or the SELECT a COPY streams (PostgreSQL,
    /// which adds a bound on `updated_at` for the rows changed since).
    all: String,
    /// SQLite: the rows changed since `$1` (the day before, as text) and `$2` (the instant), as
    /// the cases view's reads bind them. Not used on PostgreSQL.
    since: String,
    /// [`KEY_COLUMNS`] of every row (on PostgreSQL the SELECT a COPY streams).
    keys: String,
}

/// The placements view's statements on `engine`; `copied_as_cast` as for [`select_list`].
pub(super) fn statements(engine: Engine, view: &str, copied_as_cast: &[String]) -> Statements {
    let all = format!("SELECT {} FROM {view}", select_list(engine, copied_as_cast));
    let since = match engine {
        Engine::Sqlite => format!("{all} WHERE updated_at >= $1 AND julianday(updated_at) >= julianday($2)"),
        Engine::Postgres => String::new(),
    };
    let keys = KEY_COLUMNS.iter().map(|c| column_text(engine, c, copied_as_cast)).collect::<Vec<_>>().join(", ");
    Statements { all, since, keys: format!("SELECT {keys} FROM {view}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_of(pairs: &[(&str, &str)]) -> RawPlacement {
        let mut values = vec![None; PLACEMENT_COLUMNS.len() - 1];
        for (column, value) in pairs {
            let at = PLACEMENT_COLUMNS.iter().position(|c| c == column).unwrap();
            values[at] = Some(value.to_string());
        }
        RawPlacement(values)
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("placement_ref", "P-1"),
            ("unit", "BRO-BU"),
            ("basis", "lvu_6"),
            ("decided_on", "2026-11-21"),
            ("updated_at", "2026-11-21T10:00:00Z"),
        ]
    }

    #[test]
    fn rows_follow_contract_1b() {
        let check = |extra: &[(&'static str, &'static str)], expected: Result<(), (RejectReason, &str)>| {
            let mut pairs = base();
            pairs.retain(|(c, _)| !extra.iter().any(|(e, _)| e == c));
            pairs.extend_from_slice(extra);
            let got = validate_placement(&raw_of(&pairs), 65536).map(|_| ()).map_err(|r| (r.reason, r.column));
            assert_eq!(got, expected, "{extra:?}");
        };
        check(&[], Ok(()));
        check(&[("basis", "lvu_9")], Err((RejectReason::UnknownCode, "basis")));
        check(&[("home", "castle")], Err((RejectReason::UnknownCode, "home")));
        check(&[("decided_on", "")], Err((RejectReason::BadDate, "decided_on")));
        check(&[("unit", " ")], Err((RejectReason::MissingUnit, "unit")));
        check(&[("placement_ref", "")], Err((RejectReason::MissingCaseRef, "placement_ref")));
        check(&[("executed_on", "2026-11-20")], Err((RejectReason::CloseBeforeStart, "executed_on")));
        check(
            &[("submitted_to_court_on", "2026-11-20")],
            Err((RejectReason::CloseBeforeStart, "submitted_to_court_on")),
        );
        check(&[("ended_on", "2026-11-20")], Err((RejectReason::CloseBeforeStart, "ended_on")));
        check(
            &[("restriction_decided_on", "2026-12-01"), ("restriction_ended_on", "2026-11-30")],
            Err((RejectReason::CloseBeforeStart, "restriction_ended_on")),
        );
        check(
            &[("restriction_decided_on", "2026-12-01"), ("restriction_last_reviewed_on", "2026-11-30")],
            Err((RejectReason::CloseBeforeStart, "restriction_last_reviewed_on")),
        );
        check(
            &[("ended_on", "2026-12-01"), ("follow_up_ended_on", "2026-11-30")],
            Err((RejectReason::CloseBeforeStart, "follow_up_ended_on")),
        );
        // Valid closes before their clock's start: care begun before legal force, an application
        // before the execution.
        check(&[("basis", "lvu_2"), ("legal_force_on", "2026-12-20"), ("executed_on", "2026-11-22")], Ok(()));
        check(&[("executed_on", "2026-11-23"), ("care_applied_on", "2026-11-22")], Ok(()));
        check(&[("updated_at", "yesterday")], Err((RejectReason::BadTimestamp, "updated_at")));
        check(&[("child_sex", "X")], Err((RejectReason::UnknownSex, "child_sex")));
        check(&[("home_since", "2026-02-30")], Err((RejectReason::BadDate, "home_since")));
    }

    #[test]
    fn a_rejection_names_the_placement_and_the_column_only() {
        let mut pairs = base();
        pairs.push(("child_key", "secret-child-key"));
        pairs.push(("executed_on", "2026-11-01"));
        let rejection = validate_placement(&raw_of(&pairs), 65536).unwrap_err();
        let text = rejection.to_string();
        assert!(text.contains("P-1") && text.contains("executed_on"), "{text}");
        assert!(!text.contains("secret") && !text.contains("2026-11-01"), "{text}");
    }
}
