//! The stored deadlines as `deadlines` lists them (as of the last poll): the filters in the
//! statement, the rows handed on one by one as they are read, never collected.

use chrono::{Days, NaiveDate};
use futures_util::TryStreamExt;

use super::deadlines::{decode_row, DEADLINE_COLUMNS};
use super::{query_error, with_pool, StateError, StateStore};
use crate::config::Engine;
use crate::domain::StoredDeadline;
use crate::rules::{Kind, Status};

/// Which stored deadlines to list: not withdrawn, of `unit` (as stored: upper case) and with
/// `status` on `today`.
#[derive(Debug, Clone)]
pub struct ShowQuery {
    pub unit: Option<String>,
    pub status: Option<Status>,
    pub today: NaiveDate,
}

/// A value bound to the statement.
enum Bind {
    Text(String),
    Date(NaiveDate),
}

impl StateStore {
    /// Hands `each` every deadline of `query`, ordered by case reference (byte order, on both
    /// engines) and kind, as the statement yields them; returns how many. The unit and what the
    /// status rule can be told apart by (closed or open, the legal last day against `today`,
    /// each kind's reminder window from the clock table) are conditions of the statement; each
    /// row is then classified by `Deadline::status` itself, so that the status keeps its one
    /// definition. A row that does not decode is logged and passed over.
    pub async fn each_deadline<E: From<StateError>>(
        &self,
        query: &ShowQuery,
        mut each: impl FnMut(StoredDeadline) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut binds = Vec::new();
        let mut sql = format!("SELECT {DEADLINE_COLUMNS} FROM deadlines WHERE withdrawn = FALSE");
        if let Some(unit) = &query.unit {
            binds.push(Bind::Text(unit.clone()));
            sql.push_str(&format!(" AND unit = ${}", binds.len()));
        }
        if let Some(status) = query.status {
            sql.push_str(" AND ");
            sql.push_str(&status_condition(status, query.today, &mut binds));
        }
        let open = matches!(query.status, Some(Status::Overdue | Status::DueToday | Status::DueSoon | Status::Pending));
        sql.push_str(match self.engine() {
            // An open status is found by the partial index of open deadlines and sorted; SQLite
            // would otherwise walk the whole table in its key's order to spare the sort (`+`
            // keeps the key out of the ORDER BY's reach).
            Engine::Sqlite if open => " ORDER BY +case_ref, +kind, +cycle_start",
            Engine::Sqlite => " ORDER BY case_ref, kind, cycle_start",
            // SQLite compares text by its bytes, as Rust does; PostgreSQL by the database's
            // collation unless told otherwise.
            Engine::Postgres => " ORDER BY case_ref COLLATE \"C\", kind COLLATE \"C\", cycle_start COLLATE \"C\"",
        });
        let mut shown = 0;
        with_pool!(&self.pool, p => {
            let mut q = sqlx::query(&sql);
            for bind in &binds {
                q = match bind {
                    Bind::Text(text) => q.bind(text.as_str()),
                    Bind::Date(day) => q.bind(*day),
                };
            }
            let mut rows = q.fetch(p);
            while let Some(row) = rows.try_next().await.map_err(query_error("listing deadlines")).map_err(E::from)? {
                let Ok(stored) = decode_row(&row) else { continue };
                if query.status.is_none_or(|s| stored.deadline.status(query.today) == s) {
                    shown += 1;
                    each(stored)?;
                }
            }
            Ok(shown)
        })
    }
}

/// The condition of the statement that selects the deadlines with `status` on `today`
/// (`Deadline::status`: the reminder window counts back from `COALESCE(extended_to,
/// nominal_due_on)`, the reminder base, which only an extension sets).
fn status_condition(status: Status, today: NaiveDate, binds: &mut Vec<Bind>) -> String {
    let mut date = |day: NaiveDate| {
        binds.push(Bind::Date(day));
        format!("${}", binds.len())
    };
    match status {
        Status::Met => "closed_on IS NOT NULL AND closed_on <= due_on".to_string(),
        Status::Missed => "closed_on IS NOT NULL AND closed_on > due_on".to_string(),
        Status::Overdue => format!("closed_on IS NULL AND due_on < {}", date(today)),
        Status::DueToday => format!("closed_on IS NULL AND due_on = {}", date(today)),
        Status::DueSoon | Status::Pending => {
            let after = date(today);
            // The kinds by reminder window: one date bound per window.
            let mut windows: Vec<(i64, Vec<&str>)> = Vec::new();
            for kind in Kind::ALL {
                let days = kind.reminder_window_days();
                match windows.iter_mut().find(|(d, _)| *d == days) {
                    Some((_, kinds)) => kinds.push(kind.as_str()),
                    None => windows.push((days, vec![kind.as_str()])),
                }
            }
            let inside: Vec<String> = windows
                .into_iter()
                .map(|(days, kinds)| {
                    let last = today.checked_add_days(Days::new(days.max(0) as u64)).unwrap_or(NaiveDate::MAX);
                    let kinds: Vec<String> = kinds.iter().map(|k| format!("'{k}'")).collect();
                    format!(
                        "(kind IN ({}) AND COALESCE(extended_to, nominal_due_on) <= {})",
                        kinds.join(", "),
                        date(last)
                    )
                })
                .collect();
            let window = inside.join(" OR ");
            match status {
                Status::DueSoon => format!("closed_on IS NULL AND due_on > {after} AND ({window})"),
                _ => format!("closed_on IS NULL AND due_on > {after} AND NOT ({window})"),
            }
        }
    }
}
