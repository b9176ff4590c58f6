//! fristvakt's own database: computed deadlines, the poll watermark, the outbox and leases.
//!
//! Architecture invariant: this module and `register` are the only places that hold SQL. One
//! interface serves SQLite and PostgreSQL through sqlx's `Any` driver; both schemas store dates
//! as ISO text and instants as RFC 3339 UTC text so that the same statements run on both.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::config::{DatabaseUrl, Engine};
use crate::rules::{Deadline, DueReason, Kind, Status};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Rows per multi-row statement. Small on purpose: SQLite looks up every `$N` parameter by name
/// with a linear walk (`sqlite3_bind_parameter_name`), so binding costs grow with the square of
/// the parameters in one statement; 32 rows of 16 columns keeps that negligible while still
/// saving most round trips.
const BATCH_ROWS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {url}: cannot connect: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("state database: migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("state database: {context}: {source}")]
    Query { context: &'static str, source: sqlx::Error },
    #[error("state database holds an unreadable value in {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
}

fn query_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> StateError {
    move |source| StateError::Query { context, source }
}

/// Opens a pool on either engine; SQLite files and their directory are created when missing
/// only if `create` is set.
pub(crate) async fn open_pool(url: &DatabaseUrl, create: bool, max: u32) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let mut raw = url.expose().to_string();
    if url.engine == Engine::Sqlite {
        if let Some(path) = url.sqlite_path() {
            if create {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
                }
            } else if !path.exists() {
                return Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} does not exist", path.display()),
                )));
            }
        }
        if create && !raw.contains("mode=") && url.sqlite_path().is_some() {
            raw.push_str(if raw.contains('?') { "&mode=rwc" } else { "?mode=rwc" });
        }
    }
    let engine = url.engine;
    // Every connection to `sqlite::memory:` is a database of its own: keep exactly one, forever.
    let in_memory = engine == Engine::Sqlite && url.sqlite_path().is_none();
    AnyPoolOptions::new()
        .max_connections(if in_memory {
            1
        } else if engine == Engine::Sqlite {
            1.max(max.min(4))
        } else {
            max
        })
        .idle_timeout(if in_memory { None } else { Some(std::time::Duration::from_secs(600)) })
        .max_lifetime(if in_memory { None } else { Some(std::time::Duration::from_secs(1800)) })
        .acquire_timeout(std::time::Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if engine == Engine::Sqlite {
                    sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(&raw)
        .await
}

pub(crate) fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc))
}

fn format_date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn parse_date(column: &'static str, raw: &str) -> Result<NaiveDate, StateError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| StateError::Corrupt { column, value: raw.into() })
}

fn parse_optional_date(column: &'static str, raw: Option<String>) -> Result<Option<NaiveDate>, StateError> {
    raw.map(|r| parse_date(column, &r)).transpose()
}

/// A deadline as computed by a poll, ready to be stored.
#[derive(Debug, Clone)]
pub struct DeadlineRecord {
    pub case_ref: String,
    pub unit: String,
    pub caseworker: Option<String>,
    pub child_sex: Option<String>,
    pub deadline: Deadline,
    pub status: Status,
    pub evaluated_on: NaiveDate,
    pub next_step_on: Option<NaiveDate>,
    pub row_updated_at: String,
}

/// A deadline as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadline {
    pub case_ref: String,
    pub unit: String,
    pub caseworker: Option<String>,
    pub child_sex: Option<String>,
    pub deadline: Deadline,
    pub withdrawn: bool,
}

/// Where polling stands.
#[derive(Debug, Clone, Default)]
pub struct PollState {
    pub poll_seq: i64,
    pub watermark: Option<DateTime<Utc>>,
    pub last_full_pass_on: Option<NaiveDate>,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// Which stored deadlines to list.
#[derive(Debug, Clone, Default)]
pub struct DeadlineFilter {
    pub unit: Option<String>,
    pub case_ref: Option<String>,
    pub include_withdrawn: bool,
}

/// One row to put into the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub notice_key: String,
    pub category: &'static str,
    pub case_ref: Option<String>,
    pub kind: Option<Kind>,
    pub step: Option<i32>,
    /// JSON list of recipients.
    pub recipients: String,
    /// JSON facts the mail is rendered from.
    pub payload: String,
    pub state: OutboxState,
    pub not_before: DateTime<Utc>,
    pub message_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    Pending,
    Retrying,
    Sent,
    Dead,
    Skipped,
    Cancelled,
}

impl OutboxState {
    pub const ALL: [OutboxState; 6] = [
        OutboxState::Pending,
        OutboxState::Retrying,
        OutboxState::Sent,
        OutboxState::Dead,
        OutboxState::Skipped,
        OutboxState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Retrying => "retrying",
            OutboxState::Sent => "sent",
            OutboxState::Dead => "dead",
            OutboxState::Skipped => "skipped",
            OutboxState::Cancelled => "cancelled",
        }
    }
}

impl FromStr for OutboxState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutboxState::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| format!("unknown outbox state {s:?}"))
    }
}

/// An outbox row claimed for sending, or listed.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub notice_key: String,
    pub category: String,
    pub case_ref: Option<String>,
    pub kind: Option<Kind>,
    pub step: Option<i32>,
    pub recipients: String,
    pub payload: String,
    pub state: OutboxState,
    pub created_at: DateTime<Utc>,
    /// When the row was first allowed to go out (the sending window's opening).
    pub not_before: DateTime<Utc>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub message_id: String,
}

pub struct StateStore {
    pool: AnyPool,
    engine: Engine,
}

impl StateStore {
    /// Connects, creating a SQLite file when missing.
    pub async fn connect(url: &DatabaseUrl) -> Result<StateStore, StateError> {
        let pool =
            open_pool(url, true, 8).await.map_err(|source| StateError::Connect { url: url.redacted(), source })?;
        Ok(StateStore { pool, engine: url.engine })
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
        let pool = open_pool(&read_only, false, 2)
            .await
            .map_err(|source| StateError::Connect { url: url.redacted(), source })?;
        Ok(StateStore { pool, engine: url.engine })
    }

    /// Whether the schema exists (fristvakt migrated this database before).
    pub async fn has_schema(&self) -> bool {
        sqlx::query("SELECT id FROM poll_state").fetch_optional(&self.pool).await.is_ok()
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Applies the embedded migrations of the engine.
    pub async fn migrate(&self) -> Result<(), StateError> {
        match self.engine {
            Engine::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Engine::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StateError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(query_error("ping"))?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn poll_state(&self) -> Result<PollState, StateError> {
        let row =
            sqlx::query("SELECT poll_seq, watermark, last_full_pass_on, last_success_at FROM poll_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await
                .map_err(query_error("reading the poll state"))?;
        let instant = |column: &'static str, raw: Option<String>| -> Result<Option<DateTime<Utc>>, StateError> {
            raw.map(|r| parse_instant(&r).ok_or(StateError::Corrupt { column, value: r })).transpose()
        };
        Ok(PollState {
            poll_seq: row.try_get("poll_seq").map_err(query_error("reading poll_seq"))?,
            watermark: instant("watermark", row.try_get("watermark").map_err(query_error("reading watermark"))?)?,
            last_full_pass_on: parse_optional_date(
                "last_full_pass_on",
                row.try_get("last_full_pass_on").map_err(query_error("reading last_full_pass_on"))?,
            )?,
            last_success_at: instant(
                "last_success_at",
                row.try_get("last_success_at").map_err(query_error("reading last_success_at"))?,
            )?,
        })
    }

    /// Starts a poll: returns its sequence number, which stamps every deadline it sees.
    pub async fn begin_poll(&self) -> Result<i64, StateError> {
        let row = sqlx::query("UPDATE poll_state SET poll_seq = poll_seq + 1 WHERE id = 1 RETURNING poll_seq")
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("starting a poll"))?;
        row.try_get(0).map_err(query_error("reading poll_seq"))
    }

    /// Records a finished register read. After a full pass, deadlines not seen in it (the case
    /// left the register, or the deadline no longer exists) are withdrawn; returns how many.
    pub async fn finish_poll(
        &self,
        poll_seq: i64,
        watermark: Option<DateTime<Utc>>,
        full_pass_on: Option<NaiveDate>,
    ) -> Result<u64, StateError> {
        let mut tx = self.pool.begin().await.map_err(query_error("starting a transaction"))?;
        let mut withdrawn = 0;
        if let Some(day) = full_pass_on {
            withdrawn = sqlx::query(
                "UPDATE deadlines SET withdrawn = 1, next_step_on = NULL WHERE withdrawn = 0 AND seen_in_poll < $1",
            )
            .bind(poll_seq)
            .execute(&mut *tx)
            .await
            .map_err(query_error("withdrawing vanished deadlines"))?
            .rows_affected();
            sqlx::query("UPDATE poll_state SET last_full_pass_on = $1 WHERE id = 1")
                .bind(format_date(day))
                .execute(&mut *tx)
                .await
                .map_err(query_error("recording the full pass"))?;
        }
        // The watermark only moves forward: a poll that read nothing new keeps the old one.
        sqlx::query(
            "UPDATE poll_state SET \
             watermark = CASE WHEN watermark IS NULL OR watermark < $1 THEN $1 ELSE watermark END WHERE id = 1",
        )
        .bind(watermark.map(format_instant))
        .execute(&mut *tx)
        .await
        .map_err(query_error("recording the poll"))?;
        tx.commit().await.map_err(query_error("committing the poll"))?;
        Ok(withdrawn)
    }

    /// Records that a whole poll (register read and ladder steps recorded) succeeded at `now`;
    /// readiness of every replica reads it.
    pub async fn record_poll_success(&self, now: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query("UPDATE poll_state SET last_success_at = $1 WHERE id = 1")
            .bind(format_instant(now))
            .execute(&self.pool)
            .await
            .map_err(query_error("recording a successful poll"))?;
        Ok(())
    }

    /// Stores computed deadlines of a batch of cases, in one transaction. Kinds of these cases
    /// that the batch no longer holds are withdrawn. A deadline whose dates changed (or that
    /// is new) gets its `next_step_on` from the record; otherwise the ladder position stays.
    ///
    /// `kept_refs` are cases whose row was skipped as broken in this poll: their stored
    /// deadlines count as seen, so a full pass does not withdraw them (contract §1: a broken row
    /// is skipped, not deleted).
    pub async fn store_deadlines(
        &self,
        poll_seq: i64,
        case_refs: &[String],
        records: &[DeadlineRecord],
        kept_refs: &[String],
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(query_error("starting a transaction"))?;
        for chunk in records.chunks(BATCH_ROWS) {
            let mut sql = String::from(
                "INSERT INTO deadlines (case_ref, kind, unit, caseworker, child_sex, start_on, nominal_due_on, \
                 due_on, closed_on, due_reason, extended_to, status, evaluated_on, next_step_on, withdrawn, \
                 row_updated_at, seen_in_poll) VALUES ",
            );
            let per_row = 16;
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                let b = i * per_row;
                sql.push('(');
                for c in 1..=per_row {
                    if c == 15 {
                        sql.push_str("0,");
                    }
                    sql.push_str(&format!("${}", b + c));
                    if c < per_row {
                        sql.push(',');
                    }
                }
                sql.push(')');
            }
            sql.push_str(
                " ON CONFLICT (case_ref, kind) DO UPDATE SET unit = excluded.unit, caseworker = excluded.caseworker, \
                 child_sex = excluded.child_sex, start_on = excluded.start_on, \
                 next_step_on = CASE WHEN deadlines.withdrawn = 1 \
                   OR deadlines.nominal_due_on <> excluded.nominal_due_on OR deadlines.due_on <> excluded.due_on \
                   OR deadlines.closed_on IS DISTINCT FROM excluded.closed_on OR excluded.next_step_on IS NULL \
                   THEN excluded.next_step_on ELSE deadlines.next_step_on END, \
                 nominal_due_on = excluded.nominal_due_on, due_on = excluded.due_on, closed_on = excluded.closed_on, \
                 due_reason = excluded.due_reason, extended_to = excluded.extended_to, status = excluded.status, \
                 evaluated_on = excluded.evaluated_on, withdrawn = 0, row_updated_at = excluded.row_updated_at, \
                 seen_in_poll = CASE WHEN excluded.seen_in_poll > deadlines.seen_in_poll \
                   THEN excluded.seen_in_poll ELSE deadlines.seen_in_poll END",
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                let d = &r.deadline;
                let (reason, extended_to) = due_reason_columns(&d.due_reason);
                q = q
                    .bind(r.case_ref.clone())
                    .bind(d.kind.as_str())
                    .bind(r.unit.clone())
                    .bind(r.caseworker.clone())
                    .bind(r.child_sex.clone())
                    .bind(format_date(d.start_on))
                    .bind(format_date(d.nominal_due_on))
                    .bind(format_date(d.due_on))
                    .bind(d.closed_on.map(format_date))
                    .bind(reason)
                    .bind(extended_to.map(format_date))
                    .bind(r.status.as_str())
                    .bind(format_date(r.evaluated_on))
                    .bind(r.next_step_on.map(format_date))
                    .bind(r.row_updated_at.clone())
                    .bind(poll_seq);
            }
            q.execute(&mut *tx).await.map_err(query_error("storing deadlines"))?;
        }
        for chunk in case_refs.chunks(BATCH_ROWS * 8) {
            let sql = format!(
                "UPDATE deadlines SET withdrawn = 1, next_step_on = NULL \
                 WHERE withdrawn = 0 AND seen_in_poll < $1 AND case_ref IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(poll_seq);
            for c in chunk {
                q = q.bind(c.clone());
            }
            q.execute(&mut *tx).await.map_err(query_error("withdrawing deadlines"))?;
        }
        for chunk in kept_refs.chunks(BATCH_ROWS * 8) {
            let sql = format!(
                "UPDATE deadlines SET seen_in_poll = $1 WHERE seen_in_poll < $1 AND case_ref IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(poll_seq);
            for c in chunk {
                q = q.bind(c.clone());
            }
            q.execute(&mut *tx).await.map_err(query_error("keeping deadlines of skipped rows"))?;
        }
        tx.commit().await.map_err(query_error("committing deadlines"))?;
        Ok(())
    }

    /// Stored deadlines, ordered by case reference and kind.
    pub async fn deadlines(&self, filter: &DeadlineFilter) -> Result<Vec<StoredDeadline>, StateError> {
        let mut sql = String::from(
            "SELECT case_ref, kind, unit, caseworker, child_sex, start_on, nominal_due_on, due_on, closed_on, \
             due_reason, extended_to, withdrawn FROM deadlines WHERE 1 = 1",
        );
        let mut binds = Vec::new();
        if !filter.include_withdrawn {
            sql.push_str(" AND withdrawn = 0");
        }
        if let Some(unit) = &filter.unit {
            binds.push(unit.to_uppercase());
            sql.push_str(&format!(" AND UPPER(unit) = ${}", binds.len()));
        }
        if let Some(case_ref) = &filter.case_ref {
            binds.push(case_ref.clone());
            sql.push_str(&format!(" AND case_ref = ${}", binds.len()));
        }
        sql.push_str(" ORDER BY case_ref, kind");
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(query_error("listing deadlines"))?;
        rows.iter().map(stored_deadline).collect()
    }

    /// Deadlines by (unit, kind, status on `today`), computed in the database with the same rule
    /// as [`Deadline::status`] so that a scrape never loads every deadline into memory.
    pub async fn deadline_counts(
        &self,
        today: NaiveDate,
    ) -> Result<BTreeMap<(String, &'static str, &'static str), i64>, StateError> {
        let window = |kind: Kind| format_date(today + chrono::Duration::days(kind.reminder_window_days()));
        let rows = sqlx::query(
            "SELECT unit, kind, CASE \
               WHEN closed_on IS NOT NULL THEN CASE WHEN closed_on <= due_on THEN 'met' ELSE 'missed' END \
               WHEN due_on < $1 THEN 'overdue' WHEN due_on = $1 THEN 'due_today' \
               WHEN (kind = 'protection' AND nominal_due_on <= $2) OR (kind = 'assessment' AND nominal_due_on <= $3) \
                 OR (kind = 'investigation' AND nominal_due_on <= $4) THEN 'due_soon' \
               ELSE 'pending' END AS status, COUNT(*) \
             FROM deadlines WHERE withdrawn = 0 GROUP BY 1, 2, 3",
        )
        .bind(format_date(today))
        .bind(window(Kind::Protection))
        .bind(window(Kind::Assessment))
        .bind(window(Kind::Investigation))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("counting deadlines"))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let unit: String = row.try_get(0).map_err(query_error("reading unit"))?;
            let kind: String = row.try_get(1).map_err(query_error("reading kind"))?;
            let status: String = row.try_get(2).map_err(query_error("reading status"))?;
            let n: i64 = row.try_get(3).map_err(query_error("reading count"))?;
            let kind = kind.parse::<Kind>().map_err(|_| StateError::Corrupt { column: "kind", value: kind })?;
            let status =
                status.parse::<Status>().map_err(|_| StateError::Corrupt { column: "status", value: status })?;
            out.insert((unit, kind.as_str(), status.as_str()), n);
        }
        Ok(out)
    }

    /// Open deadlines whose next ladder step may fire on or before `today`, at most `limit`.
    pub async fn deadlines_due_for_steps(
        &self,
        today: NaiveDate,
        limit: i64,
    ) -> Result<Vec<StoredDeadline>, StateError> {
        let rows = sqlx::query(
            "SELECT case_ref, kind, unit, caseworker, child_sex, start_on, nominal_due_on, due_on, closed_on, \
             due_reason, extended_to, withdrawn FROM deadlines \
             WHERE next_step_on IS NOT NULL AND next_step_on <= $1 AND withdrawn = 0 \
             ORDER BY next_step_on, case_ref, kind LIMIT $2",
        )
        .bind(format_date(today))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("finding deadlines with due ladder steps"))?;
        rows.iter().map(stored_deadline).collect()
    }

    /// The ladder steps already recorded in the outbox (sent, pending, skipped…) per deadline.
    pub async fn recorded_steps(&self, case_refs: &[String]) -> Result<HashMap<(String, Kind), Vec<i32>>, StateError> {
        let mut out: HashMap<(String, Kind), Vec<i32>> = HashMap::new();
        for chunk in case_refs.chunks(BATCH_ROWS * 8) {
            let sql = format!(
                "SELECT case_ref, kind, step FROM outbox WHERE category = 'notice' AND state <> 'cancelled' \
                 AND case_ref IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for c in chunk {
                q = q.bind(c.clone());
            }
            for row in q.fetch_all(&self.pool).await.map_err(query_error("reading recorded steps"))? {
                let case_ref: String = row.try_get(0).map_err(query_error("reading case_ref"))?;
                let kind: String = row.try_get(1).map_err(query_error("reading kind"))?;
                let step: i64 = row.try_get(2).map_err(query_error("reading step"))?;
                let kind = kind.parse().map_err(|_| StateError::Corrupt { column: "outbox.kind", value: kind })?;
                out.entry((case_ref, kind)).or_default().push(step as i32);
            }
        }
        Ok(out)
    }

    /// Writes ladder decisions: outbox rows (insert-if-absent on their key; a row cancelled
    /// because its deadline closed or left the register is revived when the step is reached
    /// again) and each deadline's next step day, in one transaction. Returns the keys written.
    pub async fn record_steps(
        &self,
        entries: &[OutboxEntry],
        next_steps: &[(String, Kind, Option<NaiveDate>)],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StateError> {
        let mut tx = self.pool.begin().await.map_err(query_error("starting a transaction"))?;
        let mut inserted = Vec::new();
        for e in entries {
            let result = sqlx::query(
                "INSERT INTO outbox (notice_key, category, case_ref, kind, step, recipients, payload, state, \
                 created_at, not_before, next_attempt_at, message_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) \
                 ON CONFLICT (notice_key) DO UPDATE SET recipients = excluded.recipients, payload = excluded.payload, \
                   state = excluded.state, created_at = excluded.created_at, not_before = excluded.not_before, \
                   next_attempt_at = excluded.next_attempt_at, attempts = 0, last_error = NULL \
                 WHERE outbox.state = 'cancelled'",
            )
            .bind(e.notice_key.clone())
            .bind(e.category)
            .bind(e.case_ref.clone())
            .bind(e.kind.map(Kind::as_str))
            .bind(e.step.map(i64::from))
            .bind(e.recipients.clone())
            .bind(e.payload.clone())
            .bind(e.state.as_str())
            .bind(format_instant(now))
            .bind(format_instant(e.not_before))
            .bind(e.message_id.clone())
            .execute(&mut *tx)
            .await
            .map_err(query_error("writing to the outbox"))?;
            if result.rows_affected() > 0 {
                inserted.push(e.notice_key.clone());
            }
        }
        for (case_ref, kind, next) in next_steps {
            sqlx::query("UPDATE deadlines SET next_step_on = $1 WHERE case_ref = $2 AND kind = $3")
                .bind(next.map(format_date))
                .bind(case_ref.clone())
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await
                .map_err(query_error("recording the next ladder step"))?;
        }
        tx.commit().await.map_err(query_error("committing ladder steps"))?;
        Ok(inserted)
    }

    /// Cancels pending notices of deadlines that are closed or withdrawn; returns how many.
    pub async fn cancel_notices_of_finished_deadlines(&self) -> Result<u64, StateError> {
        let result = sqlx::query(
            "UPDATE outbox SET state = 'cancelled', claimed_by = NULL, claimed_until = NULL \
             WHERE category = 'notice' AND state IN ('pending', 'retrying') AND EXISTS ( \
               SELECT 1 FROM deadlines d WHERE d.case_ref = outbox.case_ref AND d.kind = outbox.kind \
               AND (d.closed_on IS NOT NULL OR d.withdrawn = 1))",
        )
        .execute(&self.pool)
        .await
        .map_err(query_error("cancelling notices of closed deadlines"))?;
        Ok(result.rows_affected())
    }

    /// Outbox rows of one case, oldest first.
    pub async fn outbox_for_case(&self, case_ref: &str) -> Result<Vec<OutboxRow>, StateError> {
        let rows = sqlx::query(&format!("{OUTBOX_COLUMNS} WHERE case_ref = $1 ORDER BY id"))
            .bind(case_ref.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("reading the outbox"))?;
        rows.iter().map(outbox_row).collect()
    }

    /// Every outbox row, oldest first (for tests and small tools; the outbox of a city is small).
    pub async fn outbox(&self) -> Result<Vec<OutboxRow>, StateError> {
        let rows = sqlx::query(&format!("{OUTBOX_COLUMNS} ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("reading the outbox"))?;
        rows.iter().map(outbox_row).collect()
    }

    /// Whether an outbox row with this key exists, in any state (e.g. that today's digest run
    /// was recorded).
    pub async fn outbox_has_key(&self, key: &str) -> Result<bool, StateError> {
        let row = sqlx::query("SELECT COUNT(*) FROM outbox WHERE notice_key = $1")
            .bind(key.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("looking up an outbox key"))?;
        let n: i64 = row.try_get(0).map_err(query_error("reading count"))?;
        Ok(n > 0)
    }

    /// Outbox rows per state.
    pub async fn outbox_depth(&self) -> Result<HashMap<OutboxState, i64>, StateError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("counting the outbox"))?;
        let mut out = HashMap::new();
        for row in rows {
            let state: String = row.try_get(0).map_err(query_error("reading state"))?;
            let n: i64 = row.try_get(1).map_err(query_error("reading count"))?;
            if let Ok(state) = state.parse() {
                out.insert(state, n);
            }
        }
        Ok(out)
    }

    /// Claims up to `limit` rows that may be sent at `now` for `holder` until `until`. On
    /// PostgreSQL concurrent claimers skip each other's rows; a claim that expires (a crashed
    /// sender) makes its rows claimable again.
    pub async fn claim_outbox(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StateError> {
        let lock = match self.engine {
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            Engine::Sqlite => "",
        };
        let sql = format!(
            "UPDATE outbox SET claimed_by = $1, claimed_until = $2 WHERE id IN ( \
               SELECT id FROM outbox WHERE state IN ('pending', 'retrying') AND next_attempt_at <= $3 \
               AND (claimed_until IS NULL OR claimed_until < $3) ORDER BY next_attempt_at, id LIMIT $4{lock}) \
             RETURNING id, notice_key, category, case_ref, kind, step, recipients, payload, state, created_at, \
               attempts, last_error, message_id, not_before"
        );
        let rows = sqlx::query(&sql)
            .bind(holder.to_string())
            .bind(format_instant(until))
            .bind(format_instant(now))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("claiming outbox rows"))?;
        let mut out: Vec<OutboxRow> = rows.iter().map(outbox_row).collect::<Result<_, _>>()?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// Marks a claimed row sent.
    pub async fn mark_sent(&self, id: i64, holder: &str, now: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE outbox SET state = 'sent', sent_at = $1, attempts = attempts + 1, claimed_by = NULL, \
             claimed_until = NULL WHERE id = $2 AND claimed_by = $3",
        )
        .bind(format_instant(now))
        .bind(id)
        .bind(holder.to_string())
        .execute(&self.pool)
        .await
        .map_err(query_error("marking a mail sent"))?;
        Ok(())
    }

    /// Records a failed attempt: `retrying` with the next attempt time, or `dead` when `next` is None.
    pub async fn mark_failed(
        &self,
        id: i64,
        holder: &str,
        error: &str,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), StateError> {
        let (state, next_at) = match next {
            Some(t) => ("retrying", Some(format_instant(t))),
            None => ("dead", None),
        };
        sqlx::query(
            "UPDATE outbox SET state = $1, next_attempt_at = COALESCE($2, next_attempt_at), last_error = $3, \
             attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL WHERE id = $4 AND claimed_by = $5",
        )
        .bind(state)
        .bind(next_at)
        .bind(error.to_string())
        .bind(id)
        .bind(holder.to_string())
        .execute(&self.pool)
        .await
        .map_err(query_error("recording a failed mail"))?;
        Ok(())
    }

    /// Moves a claimed row's next attempt to `at` without counting an attempt (outside the
    /// sending window), and releases the claim.
    pub async fn postpone(&self, id: i64, holder: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1, claimed_by = NULL, claimed_until = NULL \
             WHERE id = $2 AND claimed_by = $3",
        )
        .bind(format_instant(at))
        .bind(id)
        .bind(holder.to_string())
        .execute(&self.pool)
        .await
        .map_err(query_error("postponing a mail"))?;
        Ok(())
    }

    /// Releases every claim of `holder` (at shutdown), so another sender may take the rows.
    pub async fn release_claims(&self, holder: &str) -> Result<(), StateError> {
        sqlx::query("UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1")
            .bind(holder.to_string())
            .execute(&self.pool)
            .await
            .map_err(query_error("releasing claims"))?;
        Ok(())
    }

    /// Takes or renews the named lease for `holder` until `until`; false when another holder has it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        let result = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name.to_string())
        .bind(holder.to_string())
        .bind(format_instant(until))
        .bind(format_instant(now))
        .execute(&self.pool)
        .await
        .map_err(query_error("taking a lease"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Gives up a lease held by `holder`.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name.to_string())
            .bind(holder.to_string())
            .execute(&self.pool)
            .await
            .map_err(query_error("releasing a lease"))?;
        Ok(())
    }
}

const OUTBOX_COLUMNS: &str = "SELECT id, notice_key, category, case_ref, kind, step, recipients, payload, state, \
     created_at, attempts, last_error, message_id, not_before FROM outbox";

fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(",")
}

fn due_reason_columns(reason: &DueReason) -> (&'static str, Option<NaiveDate>) {
    match reason {
        DueReason::Nominal => ("nominal", None),
        DueReason::NextDay => ("next_day", None),
        DueReason::Moved { .. } => ("moved", None),
        DueReason::Extended { to } => ("extended", Some(*to)),
    }
}

fn stored_deadline(row: &AnyRow) -> Result<StoredDeadline, StateError> {
    let get = |i: usize, what: &'static str| -> Result<Option<String>, StateError> {
        row.try_get::<Option<String>, _>(i).map_err(query_error(what))
    };
    let required = |i: usize, column: &'static str| -> Result<String, StateError> {
        get(i, column)?.ok_or(StateError::Corrupt { column, value: "NULL".into() })
    };
    let kind_raw = required(1, "kind")?;
    let kind: Kind = kind_raw.parse().map_err(|_| StateError::Corrupt { column: "kind", value: kind_raw })?;
    let nominal_due_on = parse_date("nominal_due_on", &required(6, "nominal_due_on")?)?;
    let extended_to = parse_optional_date("extended_to", get(10, "extended_to")?)?;
    let due_reason = match (required(9, "due_reason")?.as_str(), extended_to) {
        ("extended", Some(to)) => DueReason::Extended { to },
        ("next_day", _) => DueReason::NextDay,
        ("moved", _) => DueReason::Moved { skipped: Vec::new() },
        _ => DueReason::Nominal,
    };
    let withdrawn: i64 = row.try_get(11).map_err(query_error("reading withdrawn"))?;
    Ok(StoredDeadline {
        case_ref: required(0, "case_ref")?,
        unit: required(2, "unit")?,
        caseworker: get(3, "caseworker")?,
        child_sex: get(4, "child_sex")?,
        deadline: Deadline {
            kind,
            start_on: parse_date("start_on", &required(5, "start_on")?)?,
            nominal_due_on,
            due_on: parse_date("due_on", &required(7, "due_on")?)?,
            closed_on: parse_optional_date("closed_on", get(8, "closed_on")?)?,
            due_reason,
        },
        withdrawn: withdrawn != 0,
    })
}

fn outbox_row(row: &AnyRow) -> Result<OutboxRow, StateError> {
    let text =
        |i: usize, what: &'static str| -> Result<String, StateError> { row.try_get(i).map_err(query_error(what)) };
    let opt = |i: usize, what: &'static str| -> Result<Option<String>, StateError> {
        row.try_get(i).map_err(query_error(what))
    };
    let kind = match opt(4, "outbox.kind")? {
        Some(k) => Some(k.parse().map_err(|_| StateError::Corrupt { column: "outbox.kind", value: k })?),
        None => None,
    };
    let state_raw = text(8, "outbox.state")?;
    let created_raw = text(9, "outbox.created_at")?;
    let not_before_raw = text(13, "outbox.not_before")?;
    Ok(OutboxRow {
        id: row.try_get(0).map_err(query_error("outbox.id"))?,
        notice_key: text(1, "outbox.notice_key")?,
        category: text(2, "outbox.category")?,
        case_ref: opt(3, "outbox.case_ref")?,
        kind,
        step: row.try_get::<Option<i64>, _>(5).map_err(query_error("outbox.step"))?.map(|s| s as i32),
        recipients: text(6, "outbox.recipients")?,
        payload: text(7, "outbox.payload")?,
        state: state_raw.parse().map_err(|_| StateError::Corrupt { column: "outbox.state", value: state_raw })?,
        created_at: parse_instant(&created_raw)
            .ok_or(StateError::Corrupt { column: "outbox.created_at", value: created_raw })?,
        not_before: parse_instant(&not_before_raw)
            .ok_or(StateError::Corrupt { column: "outbox.not_before", value: not_before_raw })?,
        attempts: row.try_get(10).map_err(query_error("outbox.attempts"))?,
        last_error: opt(11, "outbox.last_error")?,
        message_id: text(12, "outbox.message_id")?,
    })
}
