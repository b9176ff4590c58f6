//! The statements of [`StateStore::store_deadlines`](super::StateStore::store_deadlines) whose
//! text and binds differ by engine: SQLite's `VALUES` lists and row values, PostgreSQL's arrays
//! (`unnest`). The rest of the store shares one text on both engines.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::types::Json;

use super::{cycle_column, due_reason_columns, DeadlineRecord, UPSERT, UPSERT_COLUMNS, UPSERT_PARAMS, UPSERT_ROWS};
use crate::config::Engine;
use crate::domain::{CaseRef, ChildKey, EmailAddress, Sex};
use crate::state::outbox::cancel_finished_sql;
use crate::state::{column, query_error, StateError, BATCH_ROWS};

/// The statements of [`StateStore::store_deadlines`] whose text and binds differ by engine.
pub(super) trait StoreStatements {
    /// The (case, kind) pairs stored, not withdrawn, for `case_refs` that `held` does not list.
    async fn kinds_gone(
        &mut self,
        case_refs: &[CaseRef],
        held: &HashMap<&str, Vec<&'static str>>,
    ) -> Result<Vec<(String, String)>, StateError>;

    /// Cancels the pending notices of these cases whose deadlines are closed or withdrawn;
    /// returns how many.
    async fn cancel_notices(&mut self, cases: &[&str]) -> Result<u64, StateError>;

    /// Inserts `records`, or rewrites their stored rows where a column differs ([`UPSERT`]).
    async fn upsert(&mut self, records: &[&DeadlineRecord]) -> Result<(), StateError>;
}

/// The pairs of `held` for these cases, in their order.
fn held_pairs<'a>(
    case_refs: &'a [CaseRef],
    held: &'a HashMap<&str, Vec<&'static str>>,
) -> Vec<(&'a str, &'static str)> {
    case_refs.iter().flat_map(|c| held.get(c.as_str()).into_iter().flatten().map(move |k| (c.as_str(), *k))).collect()
}

impl StoreStatements for sqlx::SqliteConnection {
    /// A statement a thousand cases, their held pairs as a row-value `NOT IN` list (SQLite
    /// makes it an ephemeral index): sqlx hands each result row across to its worker's thread,
    /// so rows that are only to be passed over cost more than the lookup.
    async fn kinds_gone(
        &mut self,
        case_refs: &[CaseRef],
        held: &HashMap<&str, Vec<&'static str>>,
    ) -> Result<Vec<(String, String)>, StateError> {
        let mut gone = Vec::new();
        for chunk in case_refs.chunks(BATCH_ROWS * 32) {
            let pairs = held_pairs(chunk, held);
            let mut sql = format!(
                "SELECT case_ref, kind FROM deadlines WHERE withdrawn = FALSE AND case_ref IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            if !pairs.is_empty() {
                sql.push_str(&format!(
                    " AND (case_ref, kind) NOT IN (VALUES {})",
                    vec!["(?,?)"; pairs.len()].join(",")
                ));
            }
            let mut q = sqlx::query(&sql).persistent(false);
            for c in chunk {
                q = q.bind(c.as_str());
            }
            for (c, k) in pairs {
                q = q.bind(c).bind(k);
            }
            for row in q.fetch_all(&mut *self).await.map_err(query_error("withdrawing deadlines"))? {
                gone.push((column(&row, "case_ref")?, column(&row, "kind")?));
            }
        }
        Ok(gone)
    }

    /// By the outbox's case index, the cases as `IN` lists.
    async fn cancel_notices(&mut self, cases: &[&str]) -> Result<u64, StateError> {
        let mut cancelled = 0;
        for chunk in cases.chunks(BATCH_ROWS * 8) {
            let sql = format!(
                "{} AND outbox.case_ref IN ({})",
                cancel_finished_sql(Engine::Sqlite, true),
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for c in chunk {
                q = q.bind(*c);
            }
            cancelled += q
                .execute(&mut *self)
                .await
                .map_err(query_error("cancelling notices of closed deadlines"))?
                .rows_affected();
        }
        Ok(cancelled)
    }

    /// [`UPSERT_ROWS`] deadlines a statement, as a `VALUES` list of anonymous parameters.
    async fn upsert(&mut self, records: &[&DeadlineRecord]) -> Result<(), StateError> {
        for chunk in records.chunks(UPSERT_ROWS) {
            let row = format!("({},FALSE)", vec!["?"; UPSERT_PARAMS].join(","));
            let sql = format!(
                "INSERT INTO deadlines ({UPSERT_COLUMNS}, withdrawn) VALUES {}{UPSERT}",
                vec![row.as_str(); chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql).persistent(chunk.len() == UPSERT_ROWS);
            for r in chunk {
                q = bind_record!(q, r, r.seen_on);
            }
            q.execute(&mut *self).await.map_err(query_error("storing deadlines"))?;
        }
        Ok(())
    }
}

impl StoreStatements for sqlx::PgConnection {
    /// One statement: the cases as one array, the held pairs as two arrays, an anti-join (the
    /// same read by an `IN` list of the cases, every stored kind sent back, was a large share of
    /// a poll: BENCHMARKS.md, "Figures behind code comments").
    async fn kinds_gone(
        &mut self,
        case_refs: &[CaseRef],
        held: &HashMap<&str, Vec<&'static str>>,
    ) -> Result<Vec<(String, String)>, StateError> {
        if case_refs.is_empty() {
            return Ok(Vec::new());
        }
        let pairs = held_pairs(case_refs, held);
        let cases: Vec<&str> = case_refs.iter().map(CaseRef::as_str).collect();
        let (held_cases, held_kinds): (Vec<&str>, Vec<&str>) = pairs.into_iter().unzip();
        let rows = sqlx::query(
            "SELECT case_ref, kind FROM deadlines WHERE withdrawn = FALSE AND case_ref = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[]) AS h(case_ref, kind) \
               WHERE h.case_ref = deadlines.case_ref AND h.kind = deadlines.kind)",
        )
        .bind(cases)
        .bind(held_cases)
        .bind(held_kinds)
        .fetch_all(&mut *self)
        .await
        .map_err(query_error("withdrawing deadlines"))?;
        rows.iter().map(|row| Ok((column(row, "case_ref")?, column(row, "kind")?))).collect()
    }

    /// One statement however many deadlines, each column an array (`unnest`): the `VALUES`
    /// lists of 128 deadlines (2 304 parameters) it replaces cost a round trip and a planning of
    /// their own each, 23 of them for a poll of 1 000 changed placements.
    async fn upsert(&mut self, records: &[&DeadlineRecord]) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        let n = records.len();
        let mut c = UpsertColumns::with_capacity(n);
        for r in records {
            let d = &r.deadline;
            let (reason, extended_to, moved_over) = due_reason_columns(&d.due_reason);
            c.case_ref.push(r.case_ref.as_str());
            c.kind.push(d.kind.as_str());
            c.unit.push(r.unit.as_str());
            c.caseworker.push(r.caseworker.as_ref().map(EmailAddress::as_str));
            c.child_sex.push(r.child_sex.map(Sex::code));
            c.start_on.push(d.start_on);
            c.nominal_due_on.push(d.nominal_due_on);
            c.due_on.push(d.due_on);
            c.closed_on.push(d.closed_on);
            c.due_reason.push(reason);
            c.extended_to.push(extended_to);
            c.moved_over.push(
                moved_over
                    .map(|Json(days)| serde_json::to_string(days))
                    .transpose()
                    .map_err(|source| StateError::Encode { what: "the days moved over", source })?,
            );
            c.next_step_on.push(r.next_step_on);
            c.row_updated_at.push(r.row_updated_at);
            c.first_seen_on.push(r.seen_on);
            c.child_key.push(r.child_key.as_ref().map(ChildKey::as_str));
            c.case_of.push(r.case_of.as_ref().map(CaseRef::as_str));
            c.cycle_start.push(cycle_column(r.cycle_start));
        }
        let sql = format!(
            "INSERT INTO deadlines ({UPSERT_COLUMNS}, withdrawn) \
             SELECT case_ref, kind, unit, caseworker, child_sex, start_on, nominal_due_on, due_on, closed_on, \
               due_reason, extended_to, moved_over::jsonb, next_step_on, row_updated_at, first_seen_on, child_key, \
               case_of, cycle_start, FALSE \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[], $7::date[], \
               $8::date[], $9::date[], $10::text[], $11::date[], $12::text[], $13::date[], $14::timestamptz[], \
               $15::date[], $16::text[], $17::text[], $18::text[]) AS v({UPSERT_COLUMNS}){UPSERT}"
        );
        sqlx::query(&sql)
            .bind(c.case_ref)
            .bind(c.kind)
            .bind(c.unit)
            .bind(c.caseworker)
            .bind(c.child_sex)
            .bind(c.start_on)
            .bind(c.nominal_due_on)
            .bind(c.due_on)
            .bind(c.closed_on)
            .bind(c.due_reason)
            .bind(c.extended_to)
            .bind(c.moved_over)
            .bind(c.next_step_on)
            .bind(c.row_updated_at)
            .bind(c.first_seen_on)
            .bind(c.child_key)
            .bind(c.case_of)
            .bind(c.cycle_start)
            .execute(&mut *self)
            .await
            .map_err(query_error("storing deadlines"))?;
        Ok(())
    }

    /// The cases as one array: with an `IN` list of hundreds of parameters the planner compared
    /// every pending notice with each of them.
    async fn cancel_notices(&mut self, cases: &[&str]) -> Result<u64, StateError> {
        let sql = format!("{} AND outbox.case_ref = ANY($1)", cancel_finished_sql(Engine::Postgres, true));
        let done = sqlx::query(&sql)
            .bind(cases)
            .execute(&mut *self)
            .await
            .map_err(query_error("cancelling notices of closed deadlines"))?;
        Ok(done.rows_affected())
    }
}

/// The upsert's deadlines column by column, for PostgreSQL's arrays ([`UPSERT_COLUMNS`]).
struct UpsertColumns<'a> {
    case_ref: Vec<&'a str>,
    kind: Vec<&'static str>,
    unit: Vec<&'a str>,
    caseworker: Vec<Option<&'a str>>,
    child_sex: Vec<Option<&'static str>>,
    start_on: Vec<NaiveDate>,
    nominal_due_on: Vec<NaiveDate>,
    due_on: Vec<NaiveDate>,
    closed_on: Vec<Option<NaiveDate>>,
    due_reason: Vec<&'static str>,
    extended_to: Vec<Option<NaiveDate>>,
    /// As JSON text, cast to `jsonb` by the statement.
    moved_over: Vec<Option<String>>,
    next_step_on: Vec<Option<NaiveDate>>,
    row_updated_at: Vec<DateTime<Utc>>,
    first_seen_on: Vec<NaiveDate>,
    child_key: Vec<Option<&'a str>>,
    case_of: Vec<Option<&'a str>>,
    cycle_start: Vec<String>,
}

impl UpsertColumns<'_> {
    fn with_capacity(n: usize) -> Self {
        UpsertColumns {
            case_ref: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            unit: Vec::with_capacity(n),
            caseworker: Vec::with_capacity(n),
            child_sex: Vec::with_capacity(n),
            start_on: Vec::with_capacity(n),
            nominal_due_on: Vec::with_capacity(n),
            due_on: Vec::with_capacity(n),
            closed_on: Vec::with_capacity(n),
            due_reason: Vec::with_capacity(n),
            extended_to: Vec::with_capacity(n),
            moved_over: Vec::with_capacity(n),
            next_step_on: Vec::with_capacity(n),
            row_updated_at: Vec::with_capacity(n),
            first_seen_on: Vec::with_capacity(n),
            child_key: Vec::with_capacity(n),
            case_of: Vec::with_capacity(n),
            cycle_start: Vec::with_capacity(n),
        }
    }
}
