//! The computed deadlines: one row per (case, kind, cycle), upserted by every poll that reads the
//! case, with the day its next ladder step fires (`next_step_on`, indexed). A one-off clock's
//! cycle is '' (one row per case and kind); a recurring clock keeps one row per cycle, identified
//! by the cycle's first start day (contract §2 "Recurring clocks"), closed cycles included.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;
use sqlx::types::Json;

use super::prints::{write_buckets, PrintBook};
use super::stored::{Stored, Write};
use super::{
    column, parsed, parsed_opt, query_error, read_file_rows, with_pool, Cells, StateError, StateStore, BATCH_ROWS,
};
use crate::domain::{log_safe, CaseRef, ChildKey, EmailAddress, Sex, UnitCode};
use crate::rules::calendar::DayKind;
use crate::rules::{Deadline, DueReason, Kind, Status};

/// A deadline as computed by a poll, ready to be stored.
#[derive(Debug, Clone)]
pub struct DeadlineRecord {
    pub case_ref: CaseRef,
    pub unit: UnitCode,
    pub caseworker: Option<EmailAddress>,
    pub child_sex: Option<Sex>,
    pub deadline: Deadline,
    pub next_step_on: Option<NaiveDate>,
    /// The register row's `updated_at`. Stored with the deadline whenever one of its other
    /// values is written, and no reason to write by itself: a row whose `updated_at` alone
    /// changed (a review that closed another clock's cycle, a touch) leaves its unchanged
    /// deadlines alone. No statement reads it back.
    pub row_updated_at: DateTime<Utc>,
    /// The day of the poll that computed it: stored as `first_seen_on` when the deadline is new.
    pub seen_on: NaiveDate,
    /// The child's key, kept on investigation deadlines only (chains).
    pub child_key: Option<ChildKey>,
    /// A placement's case (its row's `case_ref`), for its notices' link; `None` for a case's own.
    pub case_of: Option<CaseRef>,
    /// The cycle of a recurring clock or the second cycle of `lvu_care_application` (its first
    /// start day, kept when the running cycle is recomputed in place); `None` for a one-off clock.
    pub cycle_start: Option<NaiveDate>,
}

/// The stored form of a deadline's cycle: '' for a one-off clock, else `YYYY-MM-DD`.
pub fn cycle_column(cycle_start: Option<NaiveDate>) -> String {
    cycle_start.map(crate::domain::iso_day_text).unwrap_or_default()
}

/// A stored cycle column read back; '' (a one-off clock) or an unreadable one is `None`.
pub fn cycle_of_column(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

pub use crate::domain::StoredDeadline;

impl DeadlineRecord {
    /// The deadline as the store holds it, not withdrawn, first stored on `first_seen_on` (the
    /// show commands' computation of the register, which stores nothing).
    pub fn into_stored(self, first_seen_on: Option<NaiveDate>) -> StoredDeadline {
        StoredDeadline {
            case_ref: self.case_ref,
            unit: self.unit,
            caseworker: self.caseworker,
            child_sex: self.child_sex,
            deadline: self.deadline,
            withdrawn: false,
            first_seen_on,
            child_key: self.child_key,
            case_of: self.case_of,
            cycle_start: self.cycle_start,
        }
    }
}

/// Which stored deadlines to list.
#[derive(Debug, Clone, Default)]
pub struct DeadlineFilter {
    pub unit: Option<String>,
    pub case_ref: Option<String>,
    pub include_withdrawn: bool,
    /// Only the deadlines of the placements view's clocks (contract §1b).
    pub placements_only: bool,
}

/// The days the holiday rule passed over, as stored in `moved_over`: `[["2026-12-24",
/// "christmas_eve"], …]`, the form `DueReason::Moved` has in JSON.
type MovedOver = Vec<(NaiveDate, DayKind)>;

/// Binds a deadline record's columns to `$q` in the table's order: case_ref, kind, unit,
/// caseworker, child_sex, start_on, nominal_due_on, due_on, closed_on, due_reason, extended_to,
/// moved_over, next_step_on, row_updated_at, [`$seen_on` — the upsert's `first_seen_on`, when
/// given,] child_key, case_of, cycle_start. One list for [`NARROW_UPDATE`] and the upsert, so that they cannot part.
macro_rules! bind_record {
    ($q:expr, $r:expr $(, $seen_on:expr)?) => {{
        let r = $r;
        let d = &r.deadline;
        let (reason, extended_to, moved_over) = due_reason_columns(&d.due_reason);
        $q.bind(r.case_ref.as_str())
            .bind(d.kind.as_str())
            .bind(r.unit.as_str())
            .bind(r.caseworker.as_ref().map(EmailAddress::as_str))
            .bind(r.child_sex.map(Sex::code))
            .bind($crate::state::Day(d.start_on))
            .bind($crate::state::Day(d.nominal_due_on))
            .bind($crate::state::Day(d.due_on))
            .bind(d.closed_on.map($crate::state::Day))
            .bind(reason)
            .bind(extended_to.map($crate::state::Day))
            .bind(moved_over)
            .bind(r.next_step_on.map($crate::state::Day))
            .bind(r.row_updated_at)
            $(.bind($crate::state::Day($seen_on)))?
            .bind(r.child_key.as_ref().map(ChildKey::as_str))
            .bind(r.case_of.as_ref().map(CaseRef::as_str))
            .bind(cycle_column(r.cycle_start))
    }};
}

/// Deadlines per upsert statement: 2 048 parameters. Larger than [`BATCH_ROWS`] because every
/// statement is a round trip to PostgreSQL and a preparation and execution on SQLite (whose
/// parameters are anonymous, so their number costs nothing more); a first full pass of 100 000
/// cases spends most of its time here.
const UPSERT_ROWS: usize = 128;

/// Parameters per deadline of [`NARROW_UPDATE`]'s values: column1 … column16 below.
const NARROW_COLUMNS: usize = 17;

/// The update of deadlines whose indexed columns (`unit`, `due_on`, `closed_on`, `child_key`,
/// `withdrawn`, `next_step_on`) stay: it sets only the others, so that no index is written.
/// Values: case_ref, kind, unit, caseworker, child_sex, start_on, nominal_due_on, due_on,
/// closed_on, due_reason, extended_to, moved_over, next_step_on, row_updated_at, child_key,
/// case_of, cycle_start (the
/// names SQLite and PostgreSQL both give the columns of a `VALUES` list). A deadline it matches
/// gets from the upsert of [`StateStore::store_deadlines`] just these columns: not withdrawn, the
/// same nominal and last day and closing day (so its ladder position stays), and a next step
/// that stays (a record without one clears the stored one).
const NARROW_UPDATE: &str = "UPDATE deadlines SET caseworker = v.column4, child_sex = v.column5, \
     start_on = v.column6, due_reason = v.column10, extended_to = v.column11, moved_over = v.column12, \
     row_updated_at = v.column14, case_of = v.column16 FROM (VALUES ";
const NARROW_WHERE: &str = ") AS v WHERE deadlines.case_ref = v.column1 AND deadlines.kind = v.column2 \
     AND deadlines.cycle_start = v.column17 AND deadlines.withdrawn = FALSE AND deadlines.unit = v.column3 \
     AND deadlines.nominal_due_on = v.column7 AND deadlines.due_on = v.column8 \
     AND deadlines.closed_on IS NOT DISTINCT FROM v.column9 \
     AND deadlines.child_key IS NOT DISTINCT FROM v.column15 \
     AND (v.column13 IS NOT NULL OR deadlines.next_step_on IS NULL) \
     AND (deadlines.caseworker IS DISTINCT FROM v.column4 OR deadlines.child_sex IS DISTINCT FROM v.column5 \
       OR deadlines.start_on <> v.column6 OR deadlines.due_reason <> v.column10 \
       OR deadlines.extended_to IS DISTINCT FROM v.column11 OR deadlines.moved_over IS DISTINCT FROM v.column12 \
       OR deadlines.case_of IS DISTINCT FROM v.column16)";

/// The update of a deadline whose closing day changed and whose other indexed columns (`unit`,
/// `due_on`, `child_key`, `withdrawn`) stay, as a cycle a later review closed: it sets what the
/// upsert of [`StateStore::store_deadlines`] would set for it (the ladder position from the
/// record, since the closing day changed), so that SQLite rewrites the two indexes of
/// `closed_on` and the one of `next_step_on`, not all seven, and tries no insert first. Values
/// as [`NARROW_UPDATE`]'s.
const CLOSE_UPDATE: &str = "UPDATE deadlines SET closed_on = v.column9, next_step_on = v.column13, \
     caseworker = v.column4, child_sex = v.column5, start_on = v.column6, due_reason = v.column10, \
     extended_to = v.column11, moved_over = v.column12, row_updated_at = v.column14, case_of = v.column16 \
     FROM (VALUES ";
const CLOSE_WHERE: &str = ") AS v WHERE deadlines.case_ref = v.column1 AND deadlines.kind = v.column2 \
     AND deadlines.cycle_start = v.column17 AND deadlines.withdrawn = FALSE AND deadlines.unit = v.column3 \
     AND deadlines.nominal_due_on = v.column7 AND deadlines.due_on = v.column8 \
     AND deadlines.closed_on IS DISTINCT FROM v.column9 \
     AND deadlines.child_key IS NOT DISTINCT FROM v.column15";

/// The columns the upsert inserts, in the order of [`bind_record!`] with its `first_seen_on`.
const UPSERT_COLUMNS: &str = "case_ref, kind, unit, caseworker, child_sex, start_on, nominal_due_on, due_on, \
     closed_on, due_reason, extended_to, moved_over, next_step_on, row_updated_at, first_seen_on, child_key, case_of, \
     cycle_start";

/// Parameters per deadline of the upsert's `VALUES` (SQLite): [`UPSERT_COLUMNS`].
const UPSERT_PARAMS: usize = 18;

/// The upsert's conflict clause: a stored deadline is rewritten only when a column differs
/// (`WHERE`); its ladder position (`next_step_on`) stays unless its dates changed, it was
/// withdrawn, or the record has no next step.
const UPSERT: &str = " ON CONFLICT (case_ref, kind, cycle_start) DO UPDATE SET unit = excluded.unit, \
     caseworker = excluded.caseworker, child_sex = excluded.child_sex, start_on = excluded.start_on, \
     next_step_on = CASE WHEN deadlines.withdrawn \
       OR deadlines.nominal_due_on <> excluded.nominal_due_on OR deadlines.due_on <> excluded.due_on \
       OR deadlines.closed_on IS DISTINCT FROM excluded.closed_on OR excluded.next_step_on IS NULL \
       THEN excluded.next_step_on ELSE deadlines.next_step_on END, \
     nominal_due_on = excluded.nominal_due_on, due_on = excluded.due_on, \
     closed_on = excluded.closed_on, due_reason = excluded.due_reason, \
     extended_to = excluded.extended_to, moved_over = excluded.moved_over, withdrawn = FALSE, \
     row_updated_at = excluded.row_updated_at, child_key = excluded.child_key, \
     case_of = excluded.case_of \
     WHERE deadlines.withdrawn OR deadlines.unit <> excluded.unit \
       OR deadlines.caseworker IS DISTINCT FROM excluded.caseworker \
       OR deadlines.child_sex IS DISTINCT FROM excluded.child_sex \
       OR deadlines.start_on <> excluded.start_on OR deadlines.nominal_due_on <> excluded.nominal_due_on \
       OR deadlines.due_on <> excluded.due_on OR deadlines.closed_on IS DISTINCT FROM excluded.closed_on \
       OR deadlines.due_reason <> excluded.due_reason \
       OR deadlines.extended_to IS DISTINCT FROM excluded.extended_to \
       OR deadlines.moved_over IS DISTINCT FROM excluded.moved_over \
       OR deadlines.child_key IS DISTINCT FROM excluded.child_key \
       OR deadlines.case_of IS DISTINCT FROM excluded.case_of \
       OR (excluded.next_step_on IS NULL AND deadlines.next_step_on IS NOT NULL)";

// After `bind_record!`, which the engines' statements use too.
mod statements;
use statements::StoreStatements;

/// `kinds` as an SQL list of string constants (machine names hold only `[a-z_]`).
fn kinds_list(kinds: impl Iterator<Item = Kind>) -> String {
    kinds.map(|k| format!("'{}'", k.as_str())).collect::<Vec<_>>().join(", ")
}

pub(super) const DEADLINE_COLUMNS: &str =
    "case_ref, kind, unit, caseworker, child_sex, start_on, nominal_due_on, due_on, \
     closed_on, due_reason, extended_to, moved_over, withdrawn, first_seen_on, child_key, case_of, cycle_start";

impl StateStore {
    /// Stores computed deadlines of a batch of cases, in one transaction, writing only what
    /// differs from what is stored: a deadline identical to its stored row (dates, reason,
    /// unit, caseworker, sex, the register row's `updated_at`, and a ladder position that stays)
    /// costs a lookup, not a write. Kinds of these cases that the batch no longer holds are
    /// withdrawn. A deadline whose dates changed (or that is new, or was withdrawn) gets its
    /// `next_step_on` from the record; otherwise the ladder position stays.
    ///
    /// `prints`, when given, holds the prints of the cases' rows: its changed buckets are written
    /// in the same transaction, so that a stored print always stands for the stored deadlines.
    ///
    /// Cases that left the register altogether are withdrawn at the end of a full pass
    /// ([`StateStore::withdraw_cases`]).
    ///
    /// The pending notices of the deadlines this closes or withdraws are cancelled in the same
    /// transaction, so that no notice of a finished deadline outlives a crash between the two
    /// (a claim on such a row is left to its sender, as
    /// [`StateStore::cancel_notices_of_finished_deadlines`] says). Looked at are the cases with
    /// a deadline withdrawn here, or closed and written by the upsert or the closing update of
    /// [`StateStore::store_deadlines_known`] (its closing day, or another indexed column,
    /// changed); a deadline the narrow update wrote, or none, kept its
    /// closing day: it closed, and its notices were cancelled, when a poll first stored it
    /// closed. Returns how many notices were cancelled.
    pub async fn store_deadlines(
        &self,
        case_refs: &[CaseRef],
        records: &[DeadlineRecord],
        prints: Option<&mut PrintBook>,
    ) -> Result<u64, StateError> {
        self.store(case_refs, records, None, prints).await
    }

    /// [`StateStore::store_deadlines`] for a caller that read the stored rows of these
    /// deadlines before it computed them (`stored`, of [`StateStore::stored_of`]): each record
    /// goes to the one statement it needs, none for a record identical to its row; on SQLite
    /// the narrow update for one whose indexed columns stay and the closing update for one whose
    /// closing day alone of them changed (a cycle a review closed); the upsert for a new one or
    /// one whose other indexed columns changed (the next cycle), and on PostgreSQL for every
    /// record that needs a write, in one statement (BENCHMARKS.md, "Prints for the placements").
    /// What is stored is what [`StateStore::store_deadlines`] stores: a chunk the narrow update
    /// did not wholly match (the row changed since the read) goes to the upsert too. The kinds
    /// withdrawn are those of `stored` that the records no longer hold, without a read.
    pub async fn store_deadlines_known(
        &self,
        case_refs: &[CaseRef],
        records: &[DeadlineRecord],
        stored: &Stored,
        prints: Option<&mut PrintBook>,
    ) -> Result<u64, StateError> {
        self.store(case_refs, records, Some(stored), prints).await
    }

    async fn store(
        &self,
        case_refs: &[CaseRef],
        records: &[DeadlineRecord],
        stored: Option<&Stored>,
        prints: Option<&mut PrintBook>,
    ) -> Result<u64, StateError> {
        // The chunks to write, each with the update it goes to first: `None`, when nothing is
        // known of the stored rows, the narrow update as the chunks before it found (see below).
        let mut batches: Vec<(Option<Write>, Vec<&DeadlineRecord>)> = Vec::new();
        // The records for the upsert after the loop below.
        let mut to_upsert: Vec<&DeadlineRecord> = Vec::new();
        match stored {
            None => batches.extend(records.chunks(UPSERT_ROWS).map(|c| (None, c.iter().collect()))),
            Some(stored) => {
                let (mut narrow, mut close, mut upsert) = (Vec::new(), Vec::new(), Vec::new());
                for r in records {
                    match stored.write_of(r) {
                        Write::Nothing => {}
                        // PostgreSQL: into the one upsert, not the narrow update's statements of
                        // 128. The upsert gives such a row just what the narrow update would
                        // (its indexed columns the values stored, its ladder position kept), and
                        // PostgreSQL keeps an update whose indexed values stay equal on its page
                        // (HOT) whichever columns it sets. Its closing day stays, so it is not
                        // among the finished below, as after the narrow update.
                        Write::Narrow if self.engine == crate::config::Engine::Postgres => to_upsert.push(r),
                        Write::Narrow => narrow.push(r),
                        // PostgreSQL writes a new row version with every index entry either way:
                        // its one upsert statement is fewer round trips.
                        Write::Close if self.engine == crate::config::Engine::Sqlite => close.push(r),
                        Write::Close | Write::Upsert => upsert.push(r),
                    }
                }
                batches.extend(narrow.chunks(UPSERT_ROWS).map(|c| (Some(Write::Narrow), c.to_vec())));
                batches.extend(close.chunks(UPSERT_ROWS).map(|c| (Some(Write::Close), c.to_vec())));
                batches.extend(upsert.chunks(UPSERT_ROWS).map(|c| (Some(Write::Upsert), c.to_vec())));
            }
        }
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            // A batch of new cases (a first full pass) finds none: after a chunk that found
            // nothing, the rest go to the upsert alone.
            let mut narrow = true;
            let mut finished: HashSet<&str> = HashSet::new();
            for (known, chunk) in &batches {
                // First the deadlines whose indexed columns stay (a new caseworker; a new
                // `updated_at` alone matches neither statement): a statement that sets only
                // unindexed columns leaves every index alone (SQLite rewrites each index whose
                // column an UPDATE sets, equal or not; PostgreSQL keeps such an update on its
                // page, HOT). When it found every deadline of the chunk, that is all; otherwise
                // the upsert after the loop writes the rest and passes over these, now identical.
                // A cycle closed: [`CLOSE_UPDATE`], and its notices cancelled below.
                let first = known.unwrap_or(if narrow { Write::Narrow } else { Write::Upsert });
                let update = match first {
                    Write::Narrow => Some((NARROW_UPDATE, NARROW_WHERE)),
                    Write::Close => Some((CLOSE_UPDATE, CLOSE_WHERE)),
                    Write::Nothing | Write::Upsert => None,
                };
                let narrowed = match update {
                    None => 0,
                    Some((update, filter)) => {
                        let values: Vec<String> = (0..chunk.len())
                            .map(|i| format!("({})", self.marks(i * NARROW_COLUMNS + 1, NARROW_COLUMNS)))
                            .collect();
                        let sql = format!("{update}{}{filter}", values.join(","));
                        let mut q = sqlx::query(&sql).persistent(chunk.len() == UPSERT_ROWS);
                        for r in chunk {
                            q = bind_record!(q, r);
                        }
                        q.execute(&mut *tx).await.map_err(query_error("storing deadlines"))?.rows_affected()
                    }
                };
                if known.is_none() {
                    narrow = narrowed > 0;
                }
                let all_updated = narrowed == chunk.len() as u64;
                // A closing update, or the upsert, may close deadlines: their notices go.
                if first == Write::Close || !all_updated {
                    finished.extend(chunk.iter().filter(|r| r.deadline.closed_on.is_some()).map(|r| r.case_ref.as_str()));
                }
                if !all_updated {
                    to_upsert.extend(chunk.iter().copied());
                }
            }
            // The rest: new, withdrawn, or an indexed column changed (see [`UPSERT`]).
            StoreStatements::upsert(&mut *tx, &to_upsert).await?;
            // The kinds of these cases that the law no longer gives them: every stored deadline
            // of a case in the batch whose kind the batch does not hold for it.
            let mut held: HashMap<&str, Vec<&'static str>> = HashMap::new();
            for r in records {
                held.entry(r.case_ref.as_str()).or_default().push(r.deadline.kind.as_str());
            }
            // Found by a read of the kinds stored for them that the batch does not hold (the
            // database passes over the held ones: a row back is a kind gone), and withdrawn by
            // pair only when there are any: most polls find none.
            // Known from the stored rows when they were read before (no statement then).
            let gone = match stored {
                Some(stored) => stored.kinds_gone(case_refs, &held),
                None => StoreStatements::kinds_gone(&mut *tx, case_refs, &held).await?,
            };
            finished.extend(gone.iter().map(|(case_ref, _)| case_ref.as_str()));
            for chunk in gone.chunks(BATCH_ROWS * 4) {
                let values: Vec<String> = (0..chunk.len()).map(|i| format!("({})", self.marks(2 * i + 1, 2))).collect();
                let sql = format!(
                    "UPDATE deadlines SET withdrawn = TRUE, next_step_on = NULL, child_key = NULL FROM (VALUES {}) AS v \
                     WHERE deadlines.case_ref = v.column1 AND deadlines.kind = v.column2 AND deadlines.withdrawn = FALSE",
                    values.join(",")
                );
                let mut q = sqlx::query(&sql).persistent(false);
                for (case_ref, kind) in chunk {
                    q = q.bind(case_ref.as_str()).bind(kind.as_str());
                }
                q.execute(&mut *tx).await.map_err(query_error("withdrawing deadlines"))?;
            }
            let finished: Vec<&str> = case_refs.iter().map(CaseRef::as_str).filter(|c| finished.contains(c)).collect();
            let cancelled = if finished.is_empty() { 0 } else { StoreStatements::cancel_notices(&mut *tx, &finished).await? };
            if let Some(book) = prints {
                write_buckets!(self, &mut *tx, book)?;
            }
            tx.commit().await.map_err(query_error("committing deadlines"))?;
            Ok(cancelled)
        })
    }

    /// Whether any case (of the cases view) has deadlines stored, not withdrawn.
    pub async fn has_case_deadlines(&self) -> Result<bool, StateError> {
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM deadlines WHERE withdrawn = FALSE AND kind IN ({}) LIMIT 1) AS d",
            kinds_list(Kind::of_cases())
        );
        let n: i64 = with_pool!(&self.pool, p => sqlx::query_scalar(&sql).fetch_one(p).await)
            .map_err(query_error("looking for stored deadlines"))?;
        Ok(n > 0)
    }

    /// The first full pass with case prints (none built yet): withdraws the deadlines of every
    /// case that `seen` says the pass did not read, by a walk of every stored case; returns how
    /// many deadlines. Once built, the prints list the stored cases and a full pass withdraws
    /// with [`StateStore::withdraw_cases`] alone.
    pub async fn withdraw_vanished_cases(&self, seen: impl Fn(&str) -> bool) -> Result<u64, StateError> {
        // Only the cases view's deadlines: a placement's are the placements view's to withdraw.
        let sql = format!(
            "SELECT DISTINCT case_ref FROM deadlines WHERE withdrawn = FALSE AND kind IN ({})",
            kinds_list(Kind::of_cases())
        );
        let sql = sql.as_str();
        let mut vanished: Vec<String> = Vec::new();
        with_pool!(&self.pool, p => {
            let mut rows = sqlx::query(sql).fetch(p);
            while let Some(row) = rows.try_next().await.map_err(query_error("listing stored cases"))? {
                let case_ref: String = column(&row, "case_ref")?;
                if !seen(&case_ref) {
                    vanished.push(case_ref);
                }
            }
            Ok::<_, StateError>(())
        })?;
        self.withdraw_cases(&vanished).await
    }

    /// The references of the placements with a deadline not withdrawn (contract §1b): a full
    /// pass withdraws those its read of the placements view did not find.
    pub async fn placement_refs(&self) -> Result<Vec<String>, StateError> {
        let sql = format!(
            "SELECT DISTINCT case_ref FROM deadlines WHERE withdrawn = FALSE AND kind IN ({})",
            kinds_list(Kind::of_placements())
        );
        with_pool!(&self.pool, p => sqlx::query_scalar(&sql).fetch_all(p).await)
            .map_err(query_error("listing stored placements"))
    }

    /// The stored cycles not withdrawn of the placements given (recurring clocks and the second
    /// cycle of `lvu_care_application`), for a poll to tell a later review from a change in place.
    pub async fn cycles_of(&self, refs: &[CaseRef]) -> Result<Vec<StoredDeadline>, StateError> {
        let mut out = Vec::new();
        for chunk in refs.chunks(BATCH_ROWS * 8) {
            let sql = format!(
                "SELECT {DEADLINE_COLUMNS} FROM deadlines WHERE withdrawn = FALSE AND cycle_start <> '' \
                 AND case_ref IN ({})",
                self.marks(1, chunk.len())
            );
            with_pool!(&self.pool, p => {
                let mut q = sqlx::query(&sql).persistent(chunk.len() == BATCH_ROWS * 8);
                for c in chunk {
                    q = q.bind(c.as_str());
                }
                let rows = q.fetch_all(p).await.map_err(query_error("reading stored cycles"))?;
                out.extend(decode_rows(&rows).0);
                Ok::<_, StateError>(())
            })?;
        }
        Ok(out)
    }

    /// Withdraws every deadline of the cases given (they left the register); returns how many.
    pub async fn withdraw_cases<S: AsRef<str>>(&self, case_refs: &[S]) -> Result<u64, StateError> {
        let mut withdrawn = 0;
        for chunk in case_refs.chunks(BATCH_ROWS * 8) {
            let sql = format!(
                "UPDATE deadlines SET withdrawn = TRUE, next_step_on = NULL, child_key = NULL \
                 WHERE withdrawn = FALSE AND case_ref IN ({})",
                self.marks(1, chunk.len())
            );
            withdrawn += with_pool!(&self.pool, p => {
                let mut q = sqlx::query(&sql).persistent(chunk.len() == BATCH_ROWS * 8);
                for c in chunk {
                    q = q.bind(c.as_ref());
                }
                q.execute(p).await.map(|r| r.rows_affected())
            })
            .map_err(query_error("withdrawing the deadlines of vanished cases"))?;
        }
        Ok(withdrawn)
    }

    /// The child keys stored with the deadlines of `case_refs` (their investigations'), for
    /// the rules across one child's cases: a case that changed its key, or left the register,
    /// changes the clocks of the child it belonged to. Withdrawn deadlines keep no key; a stored
    /// key that no longer parses links nothing (its cases are computed alone).
    pub async fn child_keys_of<S: AsRef<str>>(&self, case_refs: &[S]) -> Result<Vec<ChildKey>, StateError> {
        const CONTEXT: &str = "reading the child keys of cases";
        const SELECT: &str = "SELECT DISTINCT child_key FROM deadlines WHERE child_key IS NOT NULL AND case_ref";
        let keys = |rows: Vec<String>| rows.iter().filter_map(|k| ChildKey::parse(k).ok()).collect();
        if let crate::db::Pool::Postgres(p) = &self.pool {
            // The cases as one array: an `IN` list of a thousand parameters took 7–11 ms of a
            // poll of 1 000 changed rows (BENCHMARKS.md, "Figures behind code comments").
            let cases: Vec<&str> = case_refs.iter().map(AsRef::as_ref).collect();
            let rows: Vec<String> = sqlx::query_scalar(&format!("{SELECT} = ANY($1)"))
                .bind(cases)
                .fetch_all(p)
                .await
                .map_err(query_error(CONTEXT))?;
            return Ok(keys(rows));
        }
        if let Some(path) = &self.sqlite_file {
            // Read by rusqlite (see `read_file_rows`): up to a row a changed case; through sqlx
            // the read took 5.2–5.6 ms of a poll of 1 000 changed cases (BENCHMARKS.md, "The
            // cases' poll at 1 000 000 on SQLite").
            let refs: Vec<String> = case_refs.iter().map(|r| r.as_ref().to_string()).collect();
            let rows = read_file_rows(path.clone(), CONTEXT, format!("{SELECT} IN"), refs, Vec::new(), |rows, row| {
                rows.push(row.cell("child_key")?);
                Ok(())
            })
            .await?;
            return Ok(keys(rows));
        }
        let mut all = Vec::new();
        for chunk in case_refs.chunks(BATCH_ROWS * 8) {
            let sql = format!("{SELECT} IN ({})", self.marks(1, chunk.len()));
            let rows: Vec<String> = with_pool!(&self.pool, p => {
                let mut q = sqlx::query_scalar(&sql).persistent(chunk.len() == BATCH_ROWS * 8);
                for c in chunk {
                    q = q.bind(c.as_ref());
                }
                q.fetch_all(p).await
            })
            .map_err(query_error(CONTEXT))?;
            all.extend(rows);
        }
        Ok(keys(all))
    }

    /// The day each stored deadline of `case_refs` was first stored, by case and kind (`None`:
    /// stored before fristvakt kept it). For the show commands' computation of the register.
    pub async fn first_seen_of(
        &self,
        case_refs: &[CaseRef],
    ) -> Result<HashMap<(CaseRef, Kind), Option<NaiveDate>>, StateError> {
        let mut out = HashMap::new();
        for chunk in case_refs.chunks(BATCH_ROWS * 8) {
            let sql = format!(
                "SELECT case_ref, kind, first_seen_on FROM deadlines WHERE case_ref IN ({})",
                self.marks(1, chunk.len())
            );
            with_pool!(&self.pool, p => {
                let mut q = sqlx::query(&sql).persistent(chunk.len() == BATCH_ROWS * 8);
                for c in chunk {
                    q = q.bind(c.as_str());
                }
                for row in q.fetch_all(p).await.map_err(query_error("reading when deadlines were first seen"))? {
                    let case_ref = parsed(&row, "case_ref", CaseRef::parse)?;
                    let kind = parsed(&row, "kind", str::parse::<Kind>)?;
                    out.insert((case_ref, kind), column(&row, "first_seen_on")?);
                }
                Ok::<_, StateError>(())
            })?;
        }
        Ok(out)
    }

    /// Stored deadlines, ordered by case reference and kind.
    pub async fn deadlines(&self, filter: &DeadlineFilter) -> Result<Vec<StoredDeadline>, StateError> {
        let mut sql = format!("SELECT {DEADLINE_COLUMNS} FROM deadlines WHERE TRUE");
        let mut binds = Vec::new();
        if !filter.include_withdrawn {
            sql.push_str(" AND withdrawn = FALSE");
        }
        if let Some(unit) = &filter.unit {
            binds.push(unit.to_uppercase());
            sql.push_str(&format!(" AND UPPER(unit) = ${}", binds.len()));
        }
        if let Some(case_ref) = &filter.case_ref {
            binds.push(case_ref.clone());
            sql.push_str(&format!(" AND case_ref = ${}", binds.len()));
        }
        if filter.placements_only {
            let kinds: Vec<String> = Kind::of_placements().map(|k| format!("'{}'", k.as_str())).collect();
            sql.push_str(&format!(" AND kind IN ({})", kinds.join(", ")));
        }
        sql.push_str(" ORDER BY case_ref, kind, cycle_start");
        with_pool!(&self.pool, p => {
            let mut q = sqlx::query(&sql);
            for b in &binds {
                q = q.bind(b.as_str());
            }
            let rows = q.fetch_all(p).await.map_err(query_error("listing deadlines"))?;
            Ok(decode_rows(&rows).0)
        })
    }

    /// Deadlines by (unit, kind, status on `today`), for the metrics. The database groups the
    /// deadlines by the inputs of [`Deadline::status`], each date clamped to the span around
    /// `today` where the rule can tell days apart, and the rule itself classifies each group, so
    /// that the status has one definition and counting never loads every deadline into memory.
    pub async fn deadline_counts(&self, today: NaiveDate) -> Result<BTreeMap<(String, Kind, Status), i64>, StateError> {
        let day = |n: i64| today + chrono::Duration::days(n);
        // Beyond the longest reminder window, every nominal day counts alike.
        let widest = Kind::ALL.iter().map(|k| k.reminder_window_days()).max().unwrap_or(0);
        let sql = "SELECT unit, kind, \
               CASE WHEN due_on < $1 THEN $2 WHEN due_on > $1 THEN $3 ELSE due_on END AS due_bucket, \
               CASE WHEN nominal_due_on < $2 THEN $2 WHEN nominal_due_on > $4 THEN $4 ELSE nominal_due_on END \
                 AS nominal_bucket, \
               (closed_on IS NOT NULL) AS closed, \
               (closed_on IS NOT NULL AND closed_on <= due_on) AS closed_in_time, COUNT(*) AS n \
             FROM deadlines WHERE withdrawn = FALSE GROUP BY 1, 2, 3, 4, 5, 6";
        let mut out = BTreeMap::new();
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(sql)
                .bind(today)
                .bind(day(-1))
                .bind(day(1))
                .bind(day(widest + 1))
                .fetch_all(p)
                .await
                .map_err(query_error("counting deadlines"))?;
            for row in &rows {
                let unit: String = column(row, "unit")?;
                let kind: Kind = parsed(row, "kind", str::parse)?;
                let due_on: NaiveDate = column(row, "due_bucket")?;
                let closed: bool = column(row, "closed")?;
                let in_time: bool = column(row, "closed_in_time")?;
                let n: i64 = column(row, "n")?;
                // A representative deadline of the group: closed on its last day or the day after.
                let deadline = Deadline {
                    kind,
                    start_on: due_on,
                    nominal_due_on: column(row, "nominal_bucket")?,
                    due_on,
                    closed_on: closed.then(|| if in_time { due_on } else { due_on + chrono::Duration::days(1) }),
                    due_reason: DueReason::Nominal,
                };
                *out.entry((unit, kind, deadline.status(today))).or_insert(0) += n;
            }
            Ok::<_, StateError>(())
        })?;
        Ok(out)
    }

    /// Open deadlines whose next ladder step may fire on or before `today`, at most `limit`.
    /// A stored deadline that does not decode (a value an older release accepted, a row edited
    /// by hand) costs only itself: it is logged without its values, counted in the second value
    /// returned, and its `next_step_on` is cleared so that the ladder moves on past it; the next
    /// computation of its case writes it anew.
    pub async fn deadlines_due_for_steps(
        &self,
        today: NaiveDate,
        limit: i64,
    ) -> Result<(Vec<StoredDeadline>, u64), StateError> {
        let sql = format!(
            "SELECT {DEADLINE_COLUMNS} FROM deadlines \
             WHERE next_step_on IS NOT NULL AND next_step_on <= $1 AND withdrawn = FALSE \
             ORDER BY next_step_on, case_ref, kind LIMIT $2"
        );
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(&sql)
                .bind(today)
                .bind(limit)
                .fetch_all(p)
                .await
                .map_err(query_error("finding deadlines with due ladder steps"))?;
            let (deadlines, unreadable) = decode_rows(&rows);
            for (case_ref, kind) in &unreadable {
                sqlx::query("UPDATE deadlines SET next_step_on = NULL WHERE case_ref = $1 AND kind = $2")
                    .bind(case_ref)
                    .bind(kind)
                    .execute(p)
                    .await
                    .map_err(query_error("setting an unreadable deadline aside"))?;
            }
            Ok((deadlines, unreadable.len() as u64))
        })
    }
}

/// The stored form of a [`DueReason`]: its name, the extension's day, the days moved over.
pub(super) fn due_reason_columns(reason: &DueReason) -> (&'static str, Option<NaiveDate>, Option<Json<&MovedOver>>) {
    match reason {
        DueReason::Nominal => ("nominal", None, None),
        DueReason::NextDay => ("next_day", None, None),
        DueReason::Moved { skipped } => ("moved", None, Some(Json(skipped))),
        DueReason::Extended { to } => ("extended", Some(*to), None),
    }
}

/// The rows that decode, and the (case, kind) keys of those that do not, each logged with its
/// column (the reference sanitised, no value).
fn decode_rows<R: Cells>(rows: &[R]) -> (Vec<StoredDeadline>, Vec<(String, String)>) {
    let mut deadlines = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for row in rows {
        match decode_row(row) {
            Ok(deadline) => deadlines.push(deadline),
            Err(key) => unreadable.push(key),
        }
    }
    (deadlines, unreadable)
}

/// One row decoded, or its (case, kind) key when it does not decode, logged with its column
/// (the reference sanitised, no value).
pub(super) fn decode_row(row: &impl Cells) -> Result<StoredDeadline, (String, String)> {
    stored_deadline(row).map_err(|error| {
        let case_ref: String = row.cell("case_ref").unwrap_or_default();
        let kind: String = row.cell("kind").unwrap_or_default();
        tracing::warn!(case_ref = %log_safe(&case_ref), kind = %log_safe(&kind), "stored deadline skipped: {error}");
        (case_ref, kind)
    })
}

/// A deadline's due reason from its stored columns (`due_reason`, `extended_to`, `moved_over`),
/// the inverse of [`due_reason_columns`].
pub(super) fn due_reason_of(
    reason: &str,
    extended_to: Option<NaiveDate>,
    moved_over: Option<serde_json::Value>,
) -> Result<DueReason, StateError> {
    Ok(match (reason, extended_to, moved_over) {
        ("nominal", None, None) => DueReason::Nominal,
        ("next_day", None, None) => DueReason::NextDay,
        ("extended", Some(to), None) => DueReason::Extended { to },
        ("moved", None, Some(days)) => {
            let skipped: MovedOver = serde_json::from_value(days)
                .map_err(|_| StateError::Corrupt { column: "moved_over", value: "(not a list of days)".to_string() })?;
            DueReason::Moved { skipped }
        }
        _ => return Err(StateError::Corrupt { column: "due_reason", value: log_safe(reason) }),
    })
}

fn stored_deadline(row: &impl Cells) -> Result<StoredDeadline, StateError> {
    let reason: String = row.cell("due_reason")?;
    let moved_over: Option<Json<serde_json::Value>> = row.cell("moved_over")?;
    let due_reason = due_reason_of(&reason, row.cell("extended_to")?, moved_over.map(|days| days.0))?;
    Ok(StoredDeadline {
        case_ref: parsed(row, "case_ref", CaseRef::parse)?,
        unit: parsed(row, "unit", UnitCode::parse)?,
        caseworker: parsed_opt(row, "caseworker", EmailAddress::parse)?,
        child_sex: parsed_opt(row, "child_sex", Sex::from_code)?,
        deadline: Deadline {
            kind: parsed(row, "kind", str::parse)?,
            start_on: row.cell("start_on")?,
            nominal_due_on: row.cell("nominal_due_on")?,
            due_on: row.cell("due_on")?,
            closed_on: row.cell("closed_on")?,
            due_reason,
        },
        withdrawn: row.cell("withdrawn")?,
        first_seen_on: row.cell("first_seen_on")?,
        // A key that does not decode is an error like any corrupt value, but its value is never
        // put into the message.
        child_key: parsed_opt(row, "child_key", ChildKey::parse)
            .map_err(|_| StateError::Corrupt { column: "child_key", value: "(not shown)".to_string() })?,
        case_of: parsed_opt(row, "case_of", CaseRef::parse)?,
        cycle_start: cycle_of_column(&row.cell::<String>("cycle_start")?),
    })
}
