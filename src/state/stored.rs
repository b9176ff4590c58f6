//! What a poll knows of the deadlines it is about to store again: their stored rows, read
//! before it computes them ([`StateStore::stored_of`]), and from them the one statement each
//! computed record needs ([`Write`]), for [`StateStore::store_deadlines_known`].

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;

use super::deadlines::{due_reason_columns, due_reason_of, DeadlineRecord, DEADLINE_COLUMNS};
use super::{parsed, query_error, read_file_rows, Cells, StateError, StateStore, BATCH_ROWS};
use crate::domain::{iso_day, CaseRef, ChildKey, EmailAddress, Sex};
use crate::rules::{Deadline, Kind};

/// The deadlines stored, not withdrawn, of some references, read before a poll computes them
/// again ([`StateStore::stored_of`]): each row as [`StateStore::store_deadlines_known`]
/// compares a record with it, to choose the one statement each record needs, and from the same
/// columns their cycles (for the computation to tell a later review from a change in place).
///
/// The knowledge holds only as long as nothing else writes these deadlines between the read and
/// the store: a poll reads and stores under the poll lease, and the ladder and retention run
/// after its store, not beside it.
#[derive(Debug, Default)]
pub struct Stored {
    /// By reference: the kind, cycle column and compared columns of each of its rows (a record
    /// finds its row without a key built for it).
    rows: HashMap<String, Vec<(Kind, String, StoredRow)>>,
    /// The (reference, kind) of each row read whose compared columns do not decode (its record
    /// goes to the upsert): with the keys of `rows`, every kind stored.
    undecoded: HashSet<(String, String)>,
}

impl Stored {
    /// The stored cycles (recurring clocks and the second cycle of `lvu_care_application`)
    /// whose dates and due reason decode: reference, cycle start day, and the deadline as
    /// stored. Built from the compared columns when asked (a poll asks once a chunk), not
    /// decoded in full as each row is read.
    pub fn cycles(&self) -> impl Iterator<Item = (CaseRef, NaiveDate, Deadline)> + '_ {
        let rows = self.rows.iter().flat_map(|(case_ref, rows)| rows.iter().map(move |row| (case_ref, row)));
        rows.filter_map(|(case_ref, (kind, cycle, row))| {
            let cycle = iso_day(cycle)?;
            let due_reason = due_reason_of(&row.due_reason, row.extended_to, row.moved_over.clone()).ok()?;
            let deadline = Deadline {
                kind: *kind,
                start_on: row.start_on,
                nominal_due_on: row.nominal_due_on,
                due_on: row.due_on,
                closed_on: row.closed_on,
                due_reason,
            };
            Some((CaseRef::parse(case_ref).ok()?, cycle, deadline))
        })
    }

    /// The (case, kind) pairs stored for `case_refs` that `held` does not list: what
    /// [`StoreStatements::kinds_gone`] reads.
    pub(super) fn kinds_gone(
        &self,
        case_refs: &[CaseRef],
        held: &HashMap<&str, Vec<&'static str>>,
    ) -> Vec<(String, String)> {
        let cases: HashSet<&str> = case_refs.iter().map(CaseRef::as_str).collect();
        let stored = self
            .rows
            .iter()
            .flat_map(|(case_ref, rows)| rows.iter().map(|(kind, _, _)| (case_ref.as_str(), kind.as_str())));
        let gone: BTreeSet<(&str, &str)> = stored
            .chain(self.undecoded.iter().map(|(case_ref, kind)| (case_ref.as_str(), kind.as_str())))
            .filter(|(case_ref, kind)| {
                cases.contains(case_ref) && !held.get(case_ref).is_some_and(|kinds| kinds.contains(kind))
            })
            .collect();
        gone.into_iter().map(|(case_ref, kind)| (case_ref.to_string(), kind.to_string())).collect()
    }

    /// Takes in what another read gave, of other references ([`StateStore::stored_of`] of
    /// references this one does not hold).
    pub fn absorb(&mut self, other: Stored) {
        for (case_ref, rows) in other.rows {
            self.rows.entry(case_ref).or_default().extend(rows);
        }
        self.undecoded.extend(other.undecoded);
    }

    /// Takes in one row of [`StateStore::stored_of`]'s read.
    fn take(&mut self, row: &impl Cells) -> Result<(), StateError> {
        match stored_row(row) {
            Ok(((case_ref, kind, cycle), compared)) => {
                self.rows.entry(case_ref).or_default().push((kind, cycle, compared));
            }
            Err(_) => {
                self.undecoded.insert((row.cell("case_ref")?, row.cell("kind")?));
            }
        }
        Ok(())
    }

    /// What `record` needs written, by its stored row.
    pub(super) fn write_of(&self, record: &DeadlineRecord) -> Write {
        let same_cycle = |cycle: &str| match record.cycle_start {
            None => cycle.is_empty(),
            Some(start) => cycle.len() == 10 && iso_day(cycle) == Some(start),
        };
        let stored = self.rows.get(record.case_ref.as_str()).and_then(|rows| {
            rows.iter()
                .find(|(kind, cycle, _)| *kind == record.deadline.kind && same_cycle(cycle))
                .map(|(_, _, row)| row)
        });
        write_of(record, stored)
    }
}

/// A deadline's columns as stored, those the statements of [`StateStore::store_deadlines`]
/// compare (the text columns as the engine gives them back, not parsed into domain values, so
/// that "equal" here is "equal" in SQL).
#[derive(Debug, Clone, PartialEq)]
struct StoredRow {
    unit: String,
    caseworker: Option<String>,
    child_sex: Option<String>,
    start_on: NaiveDate,
    nominal_due_on: NaiveDate,
    due_on: NaiveDate,
    closed_on: Option<NaiveDate>,
    due_reason: String,
    extended_to: Option<NaiveDate>,
    /// The days moved over, as JSON: compared as values, which is how PostgreSQL compares
    /// `jsonb`; on SQLite the stored text is what the same serialiser wrote, so equal values
    /// are equal text.
    moved_over: Option<serde_json::Value>,
    next_step_on: Option<NaiveDate>,
    child_key: Option<String>,
    case_of: Option<String>,
}

/// The statement a record needs, told from its stored row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Write {
    /// Identical to its stored row (the upsert would pass over it): nothing.
    Nothing,
    /// Only columns no index holds differ, and its ladder position stays: [`NARROW_UPDATE`] on
    /// SQLite, the upsert on PostgreSQL (which keeps such an update on its page either way).
    Narrow,
    /// Its closing day changed, and no other indexed column (a cycle a later review closed):
    /// [`CLOSE_UPDATE`] on SQLite, the upsert on PostgreSQL.
    Close,
    /// New, withdrawn, or an indexed column, a date or the ladder position changed: the upsert.
    Upsert,
}

/// What `record` needs written given its stored row (not withdrawn), by the comparisons of
/// [`NARROW_WHERE`] and of the upsert's `WHERE`: a record the narrow update would not match is
/// for the upsert; one the upsert would pass over needs nothing.
fn write_of(record: &DeadlineRecord, stored: Option<&StoredRow>) -> Write {
    let Some(s) = stored else { return Write::Upsert };
    let d = &record.deadline;
    let (reason, extended_to, moved_over) = due_reason_columns(&d.due_reason);
    let dates_stay = s.unit == record.unit.as_str()
        && s.nominal_due_on == d.nominal_due_on
        && s.due_on == d.due_on
        && s.child_key.as_deref() == record.child_key.as_ref().map(ChildKey::as_str);
    if !dates_stay {
        return Write::Upsert;
    }
    if s.closed_on != d.closed_on {
        return Write::Close;
    }
    if record.next_step_on.is_none() && s.next_step_on.is_some() {
        return Write::Upsert;
    }
    let same = s.caseworker.as_deref() == record.caseworker.as_ref().map(EmailAddress::as_str)
        && s.child_sex.as_deref() == record.child_sex.map(Sex::code)
        && s.start_on == d.start_on
        && s.due_reason == reason
        && s.extended_to == extended_to
        && s.moved_over == moved_over.and_then(|days| serde_json::to_value(days.0).ok())
        && s.case_of.as_deref() == record.case_of.as_ref().map(CaseRef::as_str);
    if same {
        Write::Nothing
    } else {
        Write::Narrow
    }
}

impl StateStore {
    /// The deadlines stored, not withdrawn, of the references given, each with the columns
    /// [`StateStore::store_deadlines_known`] compares (their cycles built from those columns,
    /// [`Stored::cycles`]): for a poll that computes these references again and stores them so.
    /// A row whose compared columns do not decode is left out (its record goes to the upsert),
    /// and so out of the cycles.
    pub async fn stored_of(&self, refs: &[CaseRef]) -> Result<Stored, StateError> {
        let columns = format!("{DEADLINE_COLUMNS}, next_step_on");
        let mut stored = Stored::default();
        match (&self.pool, &self.sqlite_file) {
            (crate::db::Pool::Postgres(p), _) => {
                // The references as one array: one statement however many.
                let sql = format!("SELECT {columns} FROM deadlines WHERE withdrawn = FALSE AND case_ref = ANY($1)");
                let refs: Vec<&str> = refs.iter().map(CaseRef::as_str).collect();
                let rows =
                    sqlx::query(&sql).bind(refs).fetch_all(p).await.map_err(query_error("reading stored deadlines"))?;
                for row in &rows {
                    stored.take(row)?;
                }
            }
            (crate::db::Pool::Sqlite(_), Some(path)) => {
                let select = format!("SELECT {columns} FROM deadlines WHERE withdrawn = FALSE AND case_ref IN");
                let refs: Vec<String> = refs.iter().map(|r| r.as_str().to_string()).collect();
                stored =
                    read_file_rows(path.clone(), "reading stored deadlines", select, refs, stored, |stored, row| {
                        stored.take(row)
                    })
                    .await?;
            }
            (crate::db::Pool::Sqlite(p), _) => {
                for chunk in refs.chunks(BATCH_ROWS * 8) {
                    let sql = format!(
                        "SELECT {columns} FROM deadlines WHERE withdrawn = FALSE AND case_ref IN ({})",
                        self.marks(1, chunk.len())
                    );
                    let mut q = sqlx::query(&sql).persistent(chunk.len() == BATCH_ROWS * 8);
                    for c in chunk {
                        q = q.bind(c.as_str());
                    }
                    let rows = q.fetch_all(p).await.map_err(query_error("reading stored deadlines"))?;
                    for row in &rows {
                        stored.take(row)?;
                    }
                }
            }
        }
        Ok(stored)
    }
}

/// A stored row's key (reference, kind, cycle column) and the columns [`write_of`] compares.
fn stored_row(row: &impl Cells) -> Result<((String, Kind, String), StoredRow), StateError> {
    let key = (row.cell("case_ref")?, parsed(row, "kind", str::parse::<Kind>)?, row.cell("cycle_start")?);
    Ok((
        key,
        StoredRow {
            unit: row.cell("unit")?,
            caseworker: row.cell("caseworker")?,
            child_sex: row.cell("child_sex")?,
            start_on: row.cell("start_on")?,
            nominal_due_on: row.cell("nominal_due_on")?,
            due_on: row.cell("due_on")?,
            closed_on: row.cell("closed_on")?,
            due_reason: row.cell("due_reason")?,
            extended_to: row.cell("extended_to")?,
            moved_over: row.cell::<Option<sqlx::types::Json<serde_json::Value>>>("moved_over")?.map(|days| days.0),
            next_step_on: row.cell("next_step_on")?,
            child_key: row.cell("child_key")?,
            case_of: row.cell("case_of")?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::UnitCode;
    use crate::rules::calendar::DayKind;
    use crate::rules::{Deadline, DueReason};
    use crate::state::tests::file_state;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn record() -> DeadlineRecord {
        DeadlineRecord {
            case_ref: CaseRef::parse("2026-PL-0100").unwrap(),
            unit: UnitCode::parse("BRO-BU").unwrap(),
            caseworker: Some(EmailAddress::parse("anna@kommun.example").unwrap()),
            child_sex: Some(Sex::Female),
            deadline: Deadline {
                kind: Kind::PlacementReview,
                start_on: day("2026-03-02"),
                nominal_due_on: day("2026-09-02"),
                due_on: day("2026-09-02"),
                closed_on: None,
                due_reason: DueReason::Nominal,
            },
            next_step_on: Some(day("2026-08-03")),
            row_updated_at: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
            seen_on: day("2026-03-02"),
            child_key: None,
            case_of: Some(CaseRef::parse("2026-BU-0001").unwrap()),
            cycle_start: Some(day("2026-03-02")),
        }
    }

    /// The row the upsert of [`record`] leaves.
    fn stored() -> StoredRow {
        StoredRow {
            unit: "BRO-BU".into(),
            caseworker: Some("anna@kommun.example".into()),
            child_sex: Some("F".into()),
            start_on: day("2026-03-02"),
            nominal_due_on: day("2026-09-02"),
            due_on: day("2026-09-02"),
            closed_on: None,
            due_reason: "nominal".into(),
            extended_to: None,
            moved_over: None,
            next_step_on: Some(day("2026-08-03")),
            child_key: None,
            case_of: Some("2026-BU-0001".into()),
        }
    }

    /// Each line: a change to the record or to its stored row, and the statement it needs.
    #[test]
    fn a_record_goes_to_the_statement_its_stored_row_calls_for() {
        type Change = fn(&mut DeadlineRecord, &mut StoredRow);
        let table: &[(&str, Change, Write)] = &[
            ("identical", |_, _| {}, Write::Nothing),
            (
                "a later next step, the ladder's position stays",
                |r, _| r.next_step_on = Some(day("2026-09-01")),
                Write::Nothing,
            ),
            (
                "a new updated_at alone: no statement reads it back",
                |r, _| r.row_updated_at = Utc.with_ymd_and_hms(2026, 8, 31, 10, 0, 0).unwrap(),
                Write::Nothing,
            ),
            (
                "a new updated_at with another caseworker",
                |r, _| (r.row_updated_at, r.caseworker) = (Utc.with_ymd_and_hms(2026, 8, 31, 10, 0, 0).unwrap(), None),
                Write::Narrow,
            ),
            ("another caseworker", |r, _| r.caseworker = None, Write::Narrow),
            ("another sex", |r, _| r.child_sex = Some(Sex::Male), Write::Narrow),
            ("another start", |r, _| r.deadline.start_on = day("2026-03-03"), Write::Narrow),
            ("another case", |r, _| r.case_of = None, Write::Narrow),
            (
                "the stored row has days moved over, the record none",
                |_, s| s.moved_over = Some(serde_json::json!([["2026-12-24", "christmas_eve"]])),
                Write::Narrow,
            ),
            (
                "the same days moved over",
                |r, s| {
                    r.deadline.due_reason =
                        DueReason::Moved { skipped: vec![(day("2026-12-24"), DayKind::ChristmasEve)] };
                    (s.due_reason, s.moved_over) =
                        ("moved".into(), Some(serde_json::json!([["2026-12-24", "christmas_eve"]])));
                },
                Write::Nothing,
            ),
            (
                "other days moved over",
                |r, s| {
                    r.deadline.due_reason =
                        DueReason::Moved { skipped: vec![(day("2026-12-31"), DayKind::NewYearsEve)] };
                    (s.due_reason, s.moved_over) =
                        ("moved".into(), Some(serde_json::json!([["2026-12-24", "christmas_eve"]])));
                },
                Write::Narrow,
            ),
            (
                "an extension",
                |r, _| r.deadline.due_reason = DueReason::Extended { to: day("2026-09-02") },
                Write::Narrow,
            ),
            ("a closed cycle", |r, _| r.deadline.closed_on = Some(day("2026-08-31")), Write::Close),
            (
                "a closed cycle without a next step",
                |r, _| (r.deadline.closed_on, r.next_step_on) = (Some(day("2026-08-31")), None),
                Write::Close,
            ),
            ("a cycle open again", |_, s| s.closed_on = Some(day("2026-08-31")), Write::Close),
            (
                "closed, and another last day",
                |r, _| (r.deadline.closed_on, r.deadline.due_on) = (Some(day("2026-08-31")), day("2026-09-03")),
                Write::Upsert,
            ),
            ("another last day", |r, _| r.deadline.due_on = day("2026-09-03"), Write::Upsert),
            ("another nominal day", |r, _| r.deadline.nominal_due_on = day("2026-09-01"), Write::Upsert),
            ("another unit", |r, _| r.unit = UnitCode::parse("BRO-VU").unwrap(), Write::Upsert),
            ("a stored unit in another case", |_, s| s.unit = "bro-bu".into(), Write::Upsert),
            ("a child key", |r, _| r.child_key = Some(ChildKey::parse("k1").unwrap()), Write::Upsert),
            ("no next step where one is stored", |r, _| r.next_step_on = None, Write::Upsert),
        ];
        for (what, change, expected) in table {
            let (mut r, mut s) = (record(), stored());
            change(&mut r, &mut s);
            assert_eq!(write_of(&r, Some(&s)), *expected, "{what}");
        }
        assert_eq!(write_of(&record(), None), Write::Upsert, "not stored, or withdrawn");
        let (mut r, mut s) = (record(), stored());
        (r.next_step_on, s.next_step_on) = (None, None);
        assert_eq!(write_of(&r, Some(&s)), Write::Nothing, "no next step, none stored");
    }

    /// Two reads of other references taken in together hold what one read of all gives: each
    /// record finds its own row, and the kinds gone are found for the cases of either.
    #[tokio::test]
    async fn reads_of_other_references_taken_in_together_are_one_read() {
        let (_dir, _, state) = file_state().await;
        let other = DeadlineRecord { case_ref: CaseRef::parse("2026-PL-0200").unwrap(), ..record() };
        let (one, two) = ([record().case_ref], [other.case_ref.clone()]);
        state.store_deadlines(&one, &[record()], None).await.unwrap();
        state.store_deadlines(&two, std::slice::from_ref(&other), None).await.unwrap();
        let both = [record().case_ref, other.case_ref.clone()];
        let whole = state.stored_of(&both).await.unwrap();
        let mut taken = state.stored_of(&one).await.unwrap();
        taken.absorb(state.stored_of(&two).await.unwrap());
        assert_eq!(taken.rows, whole.rows);
        assert_eq!(taken.cycles().count(), 2);
        assert_eq!(taken.write_of(&record()), Write::Nothing);
        assert_eq!(taken.write_of(&other), Write::Nothing);
        assert_eq!(taken.kinds_gone(&both, &HashMap::new()), whole.kinds_gone(&both, &HashMap::new()));
        assert_eq!(taken.kinds_gone(&both, &HashMap::new()).len(), 2);
        state.close().await;
    }

    /// The stored rows of a SQLite file, read by rusqlite, decode as sqlx decodes them (every
    /// compared column, the cycles), so that a record identical to its row needs no statement.
    #[tokio::test]
    async fn the_file_read_of_stored_rows_is_the_pools() {
        let (_dir, _, state) = file_state().await;
        assert!(state.sqlite_file.is_some());
        let moved = Deadline {
            kind: Kind::Investigation,
            due_reason: DueReason::Moved { skipped: vec![(day("2026-12-24"), DayKind::ChristmasEve)] },
            ..record().deadline
        };
        let extended = Deadline {
            kind: Kind::Assessment,
            closed_on: Some(day("2026-08-31")),
            due_reason: DueReason::Extended { to: day("2026-09-02") },
            ..record().deadline
        };
        let records = vec![
            record(),
            DeadlineRecord { deadline: moved, cycle_start: None, caseworker: None, child_sex: None, ..record() },
            DeadlineRecord {
                deadline: extended,
                cycle_start: None,
                next_step_on: None,
                child_key: Some(ChildKey::parse("k1").unwrap()),
                row_updated_at: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 1).unwrap()
                    + chrono::Duration::microseconds(250),
                ..record()
            },
        ];
        let refs = [record().case_ref];
        state.store_deadlines(&refs, &records, None).await.unwrap();
        let from_file = state.stored_of(&refs).await.unwrap();
        let through_pool = StateStore { sqlite_file: None, ..state.clone() }.stored_of(&refs).await.unwrap();
        assert_eq!(from_file.rows.values().map(Vec::len).sum::<usize>(), 3);
        assert_eq!(from_file.rows, through_pool.rows);
        let cycles = |stored: &Stored| {
            let mut cycles: Vec<_> = stored.cycles().collect();
            cycles.sort_by_key(|(case_ref, cycle, d)| (case_ref.clone(), *cycle, d.kind));
            cycles
        };
        assert_eq!(cycles(&from_file), cycles(&through_pool));
        assert_eq!(cycles(&from_file), [(record().case_ref, day("2026-03-02"), record().deadline)]);
        assert!(from_file.undecoded.is_empty() && through_pool.undecoded.is_empty());
        // Days moved over compared as values: the file's text reads back as what was written.
        let expected = [Write::Nothing, Write::Nothing, Write::Nothing];
        for (r, expected) in records.iter().zip(expected) {
            assert_eq!(from_file.write_of(r), expected, "{:?}", r.deadline.kind);
        }
        state.close().await;
    }
}
