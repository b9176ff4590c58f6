//! What the daily digest reads (`jobs::digest::read_facts`): the units, the open deadlines due
//! by a day and the open chains, each by a statement of its own that returns only what a digest
//! shows; the 30-day share is counted by `state::report`.

use chrono::NaiveDate;
use futures_util::TryStreamExt;

use super::deadlines::{decode_row, DEADLINE_COLUMNS};
use super::report::SqlExpressions;
use super::{parsed, query_error, with_pool, StateError, StateStore};
use crate::domain::{CaseRef, StoredDeadline, UnitCode};

/// A possible chain (JO 2565-2016) whose later investigation is open: the later one's unit, the
/// earlier and the later case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenChain {
    pub unit: UnitCode,
    pub earlier: CaseRef,
    pub later: CaseRef,
}

/// The units holding a deadline not withdrawn, as the table `u(unit)` of a `WITH` clause (its
/// last row NULL): a walk of `deadlines_unit_due`, one lookup a unit, so that finding the units
/// reads no deadline beyond the first of each. A report's read of a short period
/// (`state::report`) goes through it too: `unit IN (SELECT unit FROM u)` lets it use the same
/// index for its range of days, where no index on the last day alone is kept.
pub(super) const UNITS: &str = "WITH RECURSIVE u(unit) AS ( \
       SELECT (SELECT unit FROM deadlines WHERE withdrawn = FALSE ORDER BY unit LIMIT 1) \
       UNION ALL \
       SELECT (SELECT d.unit FROM deadlines d WHERE d.unit > u.unit AND d.withdrawn = FALSE \
               ORDER BY d.unit LIMIT 1) FROM u WHERE u.unit IS NOT NULL)";

impl StateStore {
    /// The units holding a deadline not withdrawn, in order: a walk of the unit index, one
    /// lookup a unit (a recursive statement, so that the deadlines are not read to find them).
    pub async fn units_with_deadlines(&self) -> Result<Vec<UnitCode>, StateError> {
        let sql = format!("{UNITS} SELECT unit FROM u WHERE unit IS NOT NULL");
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(&sql).fetch_all(p).await.map_err(query_error("listing the units"))?;
            rows.iter().map(|row| parsed(row, "unit", UnitCode::parse)).collect()
        })
    }

    /// Hands `each` every open deadline, not withdrawn, whose legal last day is on or before
    /// `until` (by the partial index of open deadlines), in no particular order. A row that does
    /// not decode is logged and passed over.
    pub async fn each_open_deadline_due_by<E: From<StateError>>(
        &self,
        until: NaiveDate,
        mut each: impl FnMut(StoredDeadline) -> Result<(), E>,
    ) -> Result<(), E> {
        let sql = format!(
            "SELECT {DEADLINE_COLUMNS} FROM deadlines WHERE closed_on IS NULL AND withdrawn = FALSE AND due_on <= $1"
        );
        with_pool!(&self.pool, p => {
            let mut rows = sqlx::query(&sql).bind(until).fetch(p);
            while let Some(row) = rows.try_next().await.map_err(query_error("reading open deadlines")).map_err(E::from)? {
                if let Ok(stored) = decode_row(&row) {
                    each(stored)?;
                }
            }
            Ok(())
        })
    }

    /// The possible chains whose later investigation is open: an investigation opened within
    /// `window_days` (both ends included) after another investigation of the same child closed,
    /// as `rules::find_chains` pairs them (withdrawn deadlines hold no key and never pair). The
    /// child key is compared inside the statement and never selected.
    pub async fn open_chains(&self, window_days: i64) -> Result<Vec<OpenChain>, StateError> {
        let d = SqlExpressions(self.engine());
        let gap = d.days_between("l.start_on", "e.closed_on");
        let sql = format!(
            "SELECT l.unit AS unit, e.case_ref AS earlier, l.case_ref AS later \
             FROM deadlines l JOIN deadlines e ON e.child_key = l.child_key \
             WHERE l.kind = 'investigation' AND l.closed_on IS NULL AND l.withdrawn = FALSE \
               AND l.child_key IS NOT NULL \
               AND e.kind = 'investigation' AND e.withdrawn = FALSE AND e.case_ref <> l.case_ref \
               AND e.closed_on IS NOT NULL AND {gap} >= 0 AND {gap} <= $1"
        );
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(&sql)
                .bind(window_days)
                .fetch_all(p)
                .await
                .map_err(query_error("finding open chains"))?;
            rows.iter()
                .map(|row| {
                    Ok(OpenChain {
                        unit: parsed(row, "unit", UnitCode::parse)?,
                        earlier: parsed(row, "earlier", CaseRef::parse)?,
                        later: parsed(row, "later", CaseRef::parse)?,
                    })
                })
                .collect()
        })
    }
}
