//! The compliance report's aggregation: stored deadlines grouped in the database, never loaded
//! one by one. Two grouped statements serve every report, on both engines:
//!
//! - [`StateStore::compliance_cells`]: per group, the deadlines counted by the inputs of the
//!   status rule (closed, closed by the legal last day, closed by the nominal day, past due),
//!   with the longest overrun; `report` classifies each cell with `rules` so that met, missed and
//!   overdue keep their one definition (`Deadline::status`);
//! - [`StateStore::days_used_cells`]: per group, how many closed deadlines used each number of
//!   days, from which `report` takes the median and the 90th percentile. A deadline uses at most
//!   a few hundred days, so this is a few hundred rows per group, whatever the number of deadlines.
//!
//! - [`StateStore::chained_cells`]: per group, the investigation deadlines of the report that
//!   are the later half of a possible chain (JO 2565-2016): opened within `rules.chain_window`
//!   after another investigation of the same child closed. The child key is compared inside the
//!   statement (an indexed lookup per investigation) and never selected.
//!
//! Their rows are read as a stream, each made a cell as it comes: a report by unit, kind, sex and
//! month at a million cases has some 62 000 groups of days used, which SQLite's rows (a copy of
//! every value, each its own allocation) held at 37 MB more than the cells.
//!
//! The statements differ between the engines in two expressions only (the month of a date and
//! the days between two dates): [`SqlExpressions`].

use chrono::NaiveDate;
use futures_util::TryStreamExt;

use super::digest::UNITS;
use super::{column, query_error, with_pool, Get, StateError, StateStore};
use crate::config::Engine;
use crate::domain::named_enum;

named_enum! {
    /// What a report can be grouped by.
    pub enum Dimension as "report dimension" {
        Unit = "unit",
        Kind = "kind",
        /// `F`, `M`, or `unknown` when the register gave no sex.
        Sex = "sex",
        /// The month of the legal last day, `YYYY-MM`.
        Month = "month",
    }
}

impl Dimension {
    /// `unit,kind,sex,month` in any order and subset, each at most once; empty for none.
    pub fn parse_list(raw: &str) -> Result<Vec<Dimension>, String> {
        let mut out = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Ok(dim) = part.parse::<Dimension>() else {
                return Err(format!("{part:?} is not one of unit, kind, sex, month"));
            };
            if out.contains(&dim) {
                return Err(format!("{part:?} is given twice"));
            }
            out.push(dim);
        }
        Ok(out)
    }
}

/// Which deadlines a report counts: `due_on` within `from..=to` and closed or past due on `today`
/// (register contract §4); withdrawn deadlines never count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportScope {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub today: NaiveDate,
}

/// Deadlines of one group that share the inputs of the status rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeCell {
    /// The group's value of each asked dimension, in the order asked.
    pub key: Vec<String>,
    pub closed: bool,
    /// Closed on or before the legal last day (`due_on`).
    pub closed_in_time: bool,
    /// Closed on or before the nominal last day (`nominal_due_on`).
    pub closed_by_nominal: bool,
    /// `due_on` is before `today`.
    pub past_due: bool,
    pub deadlines: i64,
    /// The most days past `due_on`: closing day (or `today` while open) minus `due_on`, when
    /// positive.
    pub longest_overrun: Option<i64>,
}

/// Closed deadlines of one group that used the same number of days (closing day minus start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaysUsedCell {
    pub key: Vec<String>,
    pub days: i64,
    pub deadlines: i64,
}

/// Investigations of one group that follow another investigation of the same child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedCell {
    pub key: Vec<String>,
    pub investigations: i64,
}

impl StateStore {
    /// The deadlines in `scope`, grouped by `by` and by the inputs of the status rule.
    pub async fn compliance_cells(&self, scope: ReportScope, by: &[Dimension]) -> Result<Vec<OutcomeCell>, StateError> {
        let d = SqlExpressions(self.engine());
        let keys = key_columns(d, by);
        let n = by.len();
        let (with, deadlines) = deadlines_of(self.engine(), &scope);
        let sql = format!(
            "{with} SELECT {keys}(closed_on IS NOT NULL) AS closed, \
               (closed_on IS NOT NULL AND closed_on <= due_on) AS closed_in_time, \
               (closed_on IS NOT NULL AND closed_on <= nominal_due_on) AS closed_by_nominal, \
               (due_on < $3) AS past_due, COUNT(*) AS n, \
               MAX(CASE WHEN closed_on IS NOT NULL AND closed_on > due_on THEN {closed_over} \
                        WHEN closed_on IS NULL AND due_on < $3 THEN {open_over} END) AS longest_overrun \
             FROM {deadlines} GROUP BY {group}",
            closed_over = d.days_between("closed_on", "due_on"),
            open_over = d.days_between(&d.date_param(3), "due_on"),
            group = positions(n + 4),
        );
        with_pool!(&self.pool, p => {
            let mut rows = sqlx::query(&sql).bind(scope.from).bind(scope.to).bind(scope.today).fetch(p);
            let mut cells = Vec::new();
            while let Some(row) = rows.try_next().await.map_err(query_error("grouping deadlines for a report"))? {
                cells.push(OutcomeCell {
                    key: group_key(&row, n)?,
                    closed: column(&row, "closed")?,
                    closed_in_time: column(&row, "closed_in_time")?,
                    closed_by_nominal: column(&row, "closed_by_nominal")?,
                    past_due: column(&row, "past_due")?,
                    deadlines: column(&row, "n")?,
                    longest_overrun: column(&row, "longest_overrun")?,
                });
            }
            Ok(cells)
        })
    }

    /// The closed deadlines in `scope`, grouped by `by` and by the days they used.
    pub async fn days_used_cells(&self, scope: ReportScope, by: &[Dimension]) -> Result<Vec<DaysUsedCell>, StateError> {
        let d = SqlExpressions(self.engine());
        let keys = key_columns(d, by);
        let n = by.len();
        let (with, deadlines) = deadlines_of(self.engine(), &scope);
        let sql = format!(
            "{with} SELECT {keys}{days} AS days_used, COUNT(*) AS n \
             FROM {deadlines} AND closed_on IS NOT NULL GROUP BY {group}",
            days = d.days_between("closed_on", "start_on"),
            group = positions(n + 1),
        );
        with_pool!(&self.pool, p => {
            let mut rows = sqlx::query(&sql).bind(scope.from).bind(scope.to).bind(scope.today).fetch(p);
            let mut cells = Vec::new();
            while let Some(row) = rows.try_next().await.map_err(query_error("counting the days deadlines used"))? {
                cells.push(DaysUsedCell {
                    key: group_key(&row, n)?,
                    days: column(&row, "days_used")?,
                    deadlines: column(&row, "n")?,
                });
            }
            Ok(cells)
        })
    }

    /// The investigation deadlines in `scope`, grouped by `by`, that were opened within
    /// `window_days` (the day of the close and the day `window_days` after it included) after
    /// another investigation of the same child closed — in any unit; the count goes to the later
    /// investigation's group. Each investigation counts once, however many it follows. The
    /// same pairing as `rules::find_chains` (withdrawn deadlines hold no key and never pair).
    pub async fn chained_cells(
        &self,
        scope: ReportScope,
        by: &[Dimension],
        window_days: i64,
    ) -> Result<Vec<ChainedCell>, StateError> {
        let d = SqlExpressions(self.engine());
        let keys = key_columns(d, by);
        let n = by.len();
        let (with, deadlines) = deadlines_of(self.engine(), &scope);
        let group = if n == 0 { String::new() } else { format!(" GROUP BY {}", positions(n)) };
        let sql = format!(
            "{with} SELECT {keys}COUNT(*) AS n FROM {deadlines} AND kind = 'investigation' AND child_key IS NOT NULL AND EXISTS ( \
               SELECT 1 FROM deadlines e WHERE e.child_key = deadlines.child_key \
                 AND e.kind = 'investigation' AND e.withdrawn = FALSE \
                 AND e.case_ref <> deadlines.case_ref AND e.closed_on IS NOT NULL \
                 AND {gap} >= 0 AND {gap} <= $4){group}",
            gap = d.days_between("deadlines.start_on", "e.closed_on"),
        );
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(&sql)
                .bind(scope.from)
                .bind(scope.to)
                .bind(scope.today)
                .bind(window_days)
                .fetch_all(p)
                .await
                .map_err(query_error("counting chained investigations for a report"))?;
            rows.iter()
                .map(|row| Ok(ChainedCell { key: group_key(row, n)?, investigations: column(row, "n")? }))
                .filter(|cell| !matches!(cell, Ok(ChainedCell { investigations: 0, .. })))
                .collect()
        })
    }

    /// Whether any stored investigation carries a child key: without one (a register view
    /// without `child_key`) chains cannot be counted, which a report says instead of showing 0.
    pub async fn has_child_keys(&self) -> Result<bool, StateError> {
        let sql = "SELECT COUNT(*) AS n FROM (SELECT 1 FROM deadlines WHERE child_key IS NOT NULL LIMIT 1) AS k";
        with_pool!(&self.pool, p => {
            let row = sqlx::query(sql)
                .fetch_one(p)
                .await
                .map_err(query_error("looking for child keys"))?;
            let n: i64 = column(&row, "n")?;
            Ok(n > 0)
        })
    }
}

/// The deadlines of a report ($1 = from, $2 = to, $3 = today).
const WHERE: &str = "withdrawn = FALSE AND due_on >= $1 AND due_on <= $2 AND (closed_on IS NOT NULL OR due_on < $3)";

/// Periods longer than this many days (`to − from`) are read by a scan of `deadlines`, shorter
/// ones unit by unit through `deadlines_unit_due`. A planner knows little of how many rows a
/// range of days holds (SQLite nothing), and an index reads a row in about 1.3 µs where a scan
/// passes every row of 1 000 000 cases' state in 0.4 s (SQLite): at that size the two cost the
/// same for a month of the demo's deadlines (7 % of them), the index three times the scan for
/// six months (BENCHMARKS.md, "The index of the last day alone dropped"). The recent 30 days the
/// gauges and the digest count stay on the index, whose share of the rows is smaller in a
/// register of several years.
const SCAN_ABOVE_DAYS: i64 = 62;

/// The `WITH` clause and the `FROM … WHERE` of a report's statement over `scope`'s deadlines
/// (`$1` = from, `$2` = to, `$3` = today; a statement adds its own conditions with `AND`): a
/// long period as a scan (on SQLite told so: `NOT INDEXED`), a short one by unit after
/// [`UNITS`], so that the period is a range of `deadlines_unit_due` in each unit (migration 0014
/// on SQLite and 0015 on PostgreSQL dropped the index of the last day alone, which every new
/// deadline and every new cycle wrote).
fn deadlines_of(engine: Engine, scope: &ReportScope) -> (&'static str, String) {
    if (scope.to - scope.from).num_days() <= SCAN_ABOVE_DAYS {
        return (UNITS, format!("deadlines WHERE unit IN (SELECT unit FROM u WHERE unit IS NOT NULL) AND {WHERE}"));
    }
    match engine {
        Engine::Sqlite => ("", format!("deadlines NOT INDEXED WHERE {WHERE}")),
        Engine::Postgres => ("", format!("deadlines WHERE {WHERE}")),
    }
}

/// The expressions in which the engines differ.
#[derive(Debug, Clone, Copy)]
pub(super) struct SqlExpressions(pub(super) Engine);

impl SqlExpressions {
    /// Whole days from `b` to `a`, as a 64-bit integer.
    pub(super) fn days_between(self, a: &str, b: &str) -> String {
        match self.0 {
            // sqlx stores dates as `YYYY-MM-DD` text, which julianday reads.
            Engine::Sqlite => format!("CAST(julianday({a}) - julianday({b}) AS INTEGER)"),
            Engine::Postgres => format!("CAST({a} - {b} AS BIGINT)"),
        }
    }

    /// A bound date parameter in an expression.
    fn date_param(self, n: usize) -> String {
        match self.0 {
            Engine::Sqlite => format!("${n}"),
            Engine::Postgres => format!("CAST(${n} AS DATE)"),
        }
    }

    /// `YYYY-MM` of a date column.
    fn month(self, col: &str) -> String {
        match self.0 {
            Engine::Sqlite => format!("substr({col}, 1, 7)"),
            Engine::Postgres => format!("to_char({col}, 'YYYY-MM')"),
        }
    }
}

/// `expr AS g0, expr AS g1, ` for the asked dimensions (empty when none).
fn key_columns(d: SqlExpressions, by: &[Dimension]) -> String {
    by.iter()
        .enumerate()
        .map(|(i, dim)| {
            let expr = match dim {
                Dimension::Unit => "unit".to_string(),
                Dimension::Kind => "kind".to_string(),
                Dimension::Sex => "COALESCE(child_sex, 'unknown')".to_string(),
                Dimension::Month => d.month("due_on"),
            };
            format!("{expr} AS g{i}, ")
        })
        .collect()
}

/// `1, 2, …, n`: GROUP BY the selected expressions by position (both engines accept it).
fn positions(n: usize) -> String {
    (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

fn group_key(row: &impl Get, n: usize) -> Result<Vec<String>, StateError> {
    const NAMES: [&str; 4] = ["g0", "g1", "g2", "g3"];
    NAMES[..n].iter().map(|name| column(row, name)).collect()
}
