//! The outbox: every notice and digest, written before it is sent (insert-if-absent on a key
//! unique per case, kind and step, or per manager and day), then claimed, sent and marked.
//!
//! A row's `category` names the shape of its `payload` ([`OutboxPayload`], a serde enum tagged
//! by the category); `recipients` is the list of [`Recipient`]s; `deliveries` records each
//! recipient's outcome ([`Delivery`]) so that a retry goes only to those still owed the mail;
//! `replaces` names, for a notice sent one role up (key + `/up`), the recipients it stands in
//! for. A row that this version cannot decode is not skipped: a claim hands it over as
//! [`UndecodableRow`], and the dispatcher gives
//! it up visibly (dead, logged and counted).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::Connection as _;

use super::{column, query_error, with_pool, with_writer, Get, StateError, StateStore, WriteTurn, BATCH_ROWS};
use crate::config::Engine;
use crate::domain::{named_enum, CaseRef, Digest, EmailAddress, ErrorClass, NoticePayload, OutboxKey, Recipient};
use crate::rules::Kind;

named_enum! {
    /// What an outbox row is; stored as text in `category`.
    pub enum OutboxCategory as "outbox category" {
        /// A ladder step's notice about one deadline.
        Notice = "notice",
        /// A manager's daily digest.
        Digest = "digest",
        /// The record that a day's digests were decided (never sent).
        DigestRun = "digest_run",
    }
}

/// What a row's mail is rendered from, by category. Stored as the category (`category`) and
/// the variant's content (`payload`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "category", content = "payload", rename_all = "snake_case")]
pub enum OutboxPayload {
    /// A notice's facts; `None` for a step recorded as skipped (caught up past, never sent).
    Notice(Option<NoticePayload>),
    Digest(Box<Digest>),
    DigestRun(DigestRun),
}

impl OutboxPayload {
    pub fn category(&self) -> OutboxCategory {
        match self {
            OutboxPayload::Notice(_) => OutboxCategory::Notice,
            OutboxPayload::Digest(_) => OutboxCategory::Digest,
            OutboxPayload::DigestRun(_) => OutboxCategory::DigestRun,
        }
    }

    /// The legal last day of the deadline a notice is about (the outbox's urgency); `None` for
    /// digests.
    pub fn due_on(&self) -> Option<NaiveDate> {
        match self {
            OutboxPayload::Notice(Some(notice)) => Some(notice.due_on),
            _ => None,
        }
    }

    /// The content stored in `payload`.
    fn content(&self) -> Result<serde_json::Value, serde_json::Error> {
        let mut tagged = serde_json::to_value(self)?;
        Ok(tagged.get_mut("payload").map(serde_json::Value::take).unwrap_or(serde_json::Value::Null))
    }

    fn decode(category: OutboxCategory, content: serde_json::Value) -> Result<OutboxPayload, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "category": category.as_str(), "payload": content }))
    }
}

/// The record that the digests of a day were decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRun {
    pub date: NaiveDate,
    pub digests: usize,
}

/// One row to put into the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub notice_key: OutboxKey,
    pub case_ref: Option<CaseRef>,
    pub kind: Option<Kind>,
    pub step: Option<i32>,
    pub recipients: Vec<Recipient>,
    /// The facts the mail is rendered from; its category is the row's.
    pub payload: OutboxPayload,
    pub state: OutboxState,
    pub not_before: DateTime<Utc>,
    pub message_id: String,
}

named_enum! {
    /// Where an outbox row stands; stored as text in `state`.
    pub enum OutboxState as "outbox state" {
        Pending = "pending",
        Retrying = "retrying",
        Sent = "sent",
        Dead = "dead",
        Skipped = "skipped",
        Cancelled = "cancelled",
    }
}

/// What became of one recipient of a row (`deliveries`, in the order they were settled). A
/// recipient without an entry is still owed the mail; one with an entry is never sent it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub address: EmailAddress,
    pub outcome: DeliveryOutcome,
    pub at: DateTime<Utc>,
    /// The server's reply to a refused recipient, scrubbed of addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The server accepted the recipient and then the message.
    Delivered,
    /// The server refused the recipient permanently (a 5xx reply to `RCPT TO`).
    Refused,
}

/// The outcome of one attempt to send a claimed row, recorded in one statement (with the
/// escalation row, when there is one, in the same transaction).
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// `Sent`, `Retrying` or `Dead`.
    pub state: OutboxState,
    /// The next attempt (for `Retrying`).
    pub next: Option<DateTime<Utc>>,
    pub error: Option<&'a str>,
    /// Every recipient's outcome so far, this attempt's included.
    pub deliveries: &'a [Delivery],
    /// When the row is marked sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// The same notice one role up, inserted if its key is absent.
    pub escalation: Option<Escalation>,
}

/// A notice that no recipient of a row received, sent one role up as a row of its own.
#[derive(Debug, Clone)]
pub struct Escalation {
    pub notice_key: OutboxKey,
    pub recipients: Vec<Recipient>,
    /// The recipients it goes instead of (those who refused it).
    pub replaces: Vec<Recipient>,
    pub message_id: String,
    pub now: DateTime<Utc>,
}

/// An outbox row claimed for sending, or listed.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub notice_key: String,
    pub case_ref: Option<CaseRef>,
    pub kind: Option<Kind>,
    pub step: Option<i32>,
    pub recipients: Vec<Recipient>,
    pub payload: OutboxPayload,
    pub state: OutboxState,
    pub created_at: DateTime<Utc>,
    /// When the row was first allowed to go out (the sending window's opening).
    pub not_before: DateTime<Utc>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub message_id: String,
    /// The recipients' outcomes so far; see [`Delivery`].
    pub deliveries: Vec<Delivery>,
    /// For a notice sent one role up: the recipients it goes instead of.
    pub replaces: Vec<Recipient>,
}

impl OutboxRow {
    pub fn category(&self) -> OutboxCategory {
        self.payload.category()
    }
}

/// A claimed row whose category, payload, recipients or references this version cannot decode.
/// It holds only what is safe to log and to label metrics with.
#[derive(Debug, Clone)]
pub struct UndecodableRow {
    pub id: i64,
    pub notice_key: String,
    /// `None` when the category itself is unknown.
    pub category: Option<OutboxCategory>,
    pub kind: Option<Kind>,
    pub step: Option<i32>,
    pub attempts: i64,
    /// `unknown_category` or `bad_payload`.
    pub class: ErrorClass,
    /// What failed, without the stored value.
    pub error: String,
}

const OUTBOX_COLUMNS: &str = "id, notice_key, category, case_ref, kind, step, recipients, payload, state, \
     created_at, attempts, last_error, message_id, not_before, deliveries, replaces";

/// The statement that cancels the pending notices of closed or withdrawn deadlines, to which a
/// caller adds which cases (`by_case`), or none (every notice). By case, the outbox is walked by
/// the index of its open notices' cases (`outbox_open_notices`, migrations 0013/0014), which
/// holds only the rows this can cancel: the index of every row's case fetched each of the cases'
/// sent and skipped rows too, only to pass them over (BENCHMARKS.md, "The reviews' poll without
/// the prints of its fresh rows"). SQLite is told to (`INDEXED BY`): its planner would rather
/// walk every pending row by the state index, which costs as much whatever the cases.
pub(super) fn cancel_finished_sql(engine: Engine, by_case: bool) -> String {
    let indexed = if by_case && engine == Engine::Sqlite { " INDEXED BY outbox_open_notices" } else { "" };
    format!(
        "UPDATE outbox{indexed} SET state = 'cancelled' \
         WHERE category = '{}' AND state IN ('pending', 'retrying') AND EXISTS ( \
           SELECT 1 FROM deadlines d WHERE d.case_ref = outbox.case_ref AND d.kind = outbox.kind \
           AND {} AND (d.closed_on IS NOT NULL OR d.withdrawn))",
        OutboxCategory::Notice.as_str(),
        SAME_CYCLE
    )
}

/// Whether the outbox row (`outbox`) is a notice of the deadline `d`'s own cycle: its key begins
/// with the key [`crate::notice::notice_key`] gives the deadline's cycle and the row's step (a
/// key one role up adds `/up`). A one-off clock's cycle is '' and its key has no cycle.
pub(super) const SAME_CYCLE: &str =
    "substr(outbox.notice_key, 1, length('notice/' || d.kind || '/' || d.case_ref || '/' \
     || CASE WHEN d.cycle_start = '' THEN '' ELSE d.cycle_start || '/' END || CAST(outbox.step AS TEXT))) \
     = 'notice/' || d.kind || '/' || d.case_ref || '/' \
     || CASE WHEN d.cycle_start = '' THEN '' ELSE d.cycle_start || '/' END || CAST(outbox.step AS TEXT)";

impl StateStore {
    /// The ladder steps already recorded in the outbox (sent, pending, skipped…) per deadline
    /// and cycle (`None` for a one-off clock; contract §3).
    /// A step whose rows are all cancelled is not recorded, and neither is one whose notice
    /// reached nobody and whose notice one role up was cancelled (a dead original and its
    /// cancelled `/up` row: the case closed before anyone was told, then reopened): the step is
    /// decided again, and [`StateStore::record_steps`] revives the cancelled row.
    pub async fn recorded_steps(
        &self,
        case_refs: &[CaseRef],
    ) -> Result<HashMap<(CaseRef, Kind, Option<NaiveDate>), Vec<i32>>, StateError> {
        let mut out: HashMap<(CaseRef, Kind, Option<NaiveDate>), Vec<i32>> = HashMap::new();
        // The states of the rows of each step: the original notice and its rows one role up.
        let mut states: HashMap<(CaseRef, Kind, Option<NaiveDate>, i32), Vec<OutboxState>> = HashMap::new();
        for chunk in case_refs.chunks(BATCH_ROWS * 8) {
            let sql = format!(
                "SELECT case_ref, kind, step, state, notice_key FROM outbox WHERE category = '{}' AND case_ref IN ({})",
                OutboxCategory::Notice.as_str(),
                self.marks(1, chunk.len())
            );
            with_pool!(&self.pool, p => {
                let mut q = sqlx::query(&sql).persistent(chunk.len() == BATCH_ROWS * 8);
                for c in chunk {
                    q = q.bind(c.as_str());
                }
                for row in q.fetch_all(p).await.map_err(query_error("reading recorded steps"))? {
                    let case_ref = super::parsed(&row, "case_ref", CaseRef::parse)?;
                    let kind = super::parsed(&row, "kind", str::parse::<Kind>)?;
                    let step: i64 = column(&row, "step")?;
                    let state = super::parsed(&row, "state", str::parse::<OutboxState>)?;
                    let key: String = column(&row, "notice_key")?;
                    let cycle = crate::domain::cycle_of_key(&key, case_ref.as_str(), kind);
                    states.entry((case_ref, kind, cycle, step as i32)).or_default().push(state);
                }
                Ok::<_, StateError>(())
            })?;
        }
        for ((case_ref, kind, cycle, step), states) in states {
            if step_recorded(&states) {
                out.entry((case_ref, kind, cycle)).or_default().push(step);
            }
        }
        for steps in out.values_mut() {
            steps.sort_unstable();
        }
        Ok(out)
    }

    /// Writes ladder decisions: outbox rows (insert-if-absent on their key; a row cancelled
    /// because its deadline closed or left the register is revived when the step is reached
    /// again, keeping the outcomes of the recipients it already reached, so none gets it twice) and each deadline's next step day, in one transaction. Returns the keys written.
    pub async fn record_steps(
        &self,
        entries: &[OutboxEntry],
        next_steps: &[(CaseRef, Kind, Option<NaiveDate>, Option<NaiveDate>)],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StateError> {
        let payloads = entries
            .iter()
            .map(|e| e.payload.content())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StateError::Encode { what: "an outbox payload", source })?;
        let insert = "INSERT INTO outbox (notice_key, category, case_ref, kind, step, recipients, payload, state, \
                 created_at, not_before, next_attempt_at, message_id, due_on) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) \
                 ON CONFLICT (notice_key) DO UPDATE SET recipients = excluded.recipients, payload = excluded.payload, \
                   state = excluded.state, created_at = excluded.created_at, not_before = excluded.not_before, \
                   next_attempt_at = excluded.next_attempt_at, attempts = 0, last_error = NULL \
                 WHERE outbox.state = 'cancelled'";
        let revive_up = "UPDATE outbox SET state = 'pending', payload = $1, created_at = $2, not_before = $3, \
                 next_attempt_at = $3, attempts = 0, last_error = NULL \
                 WHERE notice_key IN ($4, $5) AND state = 'cancelled' \
                 AND EXISTS (SELECT 1 FROM outbox AS original WHERE original.notice_key = $6 AND original.state = 'dead')";
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            let mut inserted = Vec::new();
            for (e, payload) in entries.iter().zip(&payloads) {
                let result = sqlx::query(insert)
                    .bind(e.notice_key.to_string())
                    .bind(e.payload.category().as_str())
                    .bind(e.case_ref.as_ref().map(CaseRef::as_str))
                    .bind(e.kind.map(Kind::as_str))
                    .bind(e.step.map(i64::from))
                    .bind(Json(&e.recipients))
                    .bind(Json(payload))
                    .bind(e.state.as_str())
                    .bind(now)
                    .bind(e.not_before)
                    .bind(e.message_id.as_str())
                    .bind(e.payload.due_on())
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error("writing to the outbox"))?;
                if result.rows_affected() > 0 {
                    inserted.push(e.notice_key.to_string());
                    continue;
                }
                if e.state != OutboxState::Pending {
                    continue;
                }
                // The step's notice reached nobody (dead) and the row that carried it one role up
                // was cancelled (the case closed): that row is revived, with today's facts.
                let [up, up_up] = keys_up(&e.notice_key);
                let revived = sqlx::query(revive_up)
                    .bind(Json(payload))
                    .bind(now)
                    .bind(e.not_before)
                    .bind(up.as_str())
                    .bind(up_up.as_str())
                    .bind(e.notice_key.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error("reviving a notice one role up"))?;
                if revived.rows_affected() > 0 {
                    inserted.push(e.notice_key.to_string());
                }
            }
            for (case_ref, kind, cycle, next) in next_steps {
                sqlx::query(
                    "UPDATE deadlines SET next_step_on = $1 WHERE case_ref = $2 AND kind = $3 AND cycle_start = $4",
                )
                    .bind(*next)
                    .bind(case_ref.as_str())
                    .bind(kind.as_str())
                    .bind(super::deadlines::cycle_column(*cycle))
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error("recording the next ladder step"))?;
            }
            tx.commit().await.map_err(query_error("committing ladder steps"))?;
            Ok(inserted)
        })
    }

    /// Cancels every pending notice of a deadline that is closed or withdrawn (a full pass);
    /// returns how many. A claim on a cancelled row is left to its sender, which records what it
    /// did (a mail it had already handed over makes the row `sent`, anything else leaves it
    /// cancelled). A poll cancels the notices of the deadlines it closes or withdraws in the
    /// transaction that does ([`StateStore::store_deadlines`], by the index of the open notices'
    /// cases).
    pub async fn cancel_notices_of_finished_deadlines(&self) -> Result<u64, StateError> {
        let sql = cancel_finished_sql(self.engine(), false);
        with_pool!(&self.pool, p => sqlx::query(&sql).execute(p).await.map(|r| r.rows_affected()))
            .map_err(query_error("cancelling notices of closed deadlines"))
    }

    /// Outbox rows of one case, oldest first. A row that does not decode is an error.
    pub async fn outbox_for_case(&self, case_ref: &str) -> Result<Vec<OutboxRow>, StateError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE case_ref = $1 ORDER BY id");
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(&sql).bind(case_ref).fetch_all(p).await.map_err(query_error("reading the outbox"))?;
            rows.iter().map(|r| outbox_row(r)?.map_err(undecodable_error)).collect()
        })
    }

    /// The outbox row of `key`, if any (`outbox show`). A row that does not decode is an error.
    pub async fn outbox_row(&self, key: &str) -> Result<Option<OutboxRow>, StateError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE notice_key = $1");
        with_pool!(&self.pool, p => {
            let row = sqlx::query(&sql).bind(key).fetch_optional(p).await.map_err(query_error("reading the outbox"))?;
            row.map(|r| outbox_row(&r)?.map_err(undecodable_error)).transpose()
        })
    }

    /// Every outbox row, oldest first (for tests and small tools; the outbox of a city is
    /// small). A row that does not decode is an error.
    pub async fn outbox(&self) -> Result<Vec<OutboxRow>, StateError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id");
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(&sql).fetch_all(p).await.map_err(query_error("reading the outbox"))?;
            rows.iter().map(|r| outbox_row(r)?.map_err(undecodable_error)).collect()
        })
    }

    /// Whether an outbox row with this key exists, in any state (e.g. that today's digest run
    /// was recorded).
    pub async fn outbox_has_key(&self, key: &str) -> Result<bool, StateError> {
        let sql = "SELECT COUNT(*) AS n FROM outbox WHERE notice_key = $1";
        let n: i64 = with_pool!(&self.pool, p => {
            let row = sqlx::query(sql).bind(key).fetch_one(p).await.map_err(query_error("looking up an outbox key"))?;
            column(&row, "n")?
        });
        Ok(n > 0)
    }

    /// Outbox rows waiting to be sent and due by `now` (pending or retrying), claimed or not.
    pub async fn outbox_due(&self, now: DateTime<Utc>) -> Result<i64, StateError> {
        let sql = "SELECT COUNT(*) AS n FROM outbox WHERE state IN ('pending', 'retrying') AND next_attempt_at <= $1";
        with_pool!(&self.pool, p => {
            let row =
                sqlx::query(sql).bind(now).fetch_one(p).await.map_err(query_error("counting the outbox's due mail"))?;
            column(&row, "n")
        })
    }

    /// Outbox rows per state.
    pub async fn outbox_depth(&self) -> Result<HashMap<OutboxState, i64>, StateError> {
        let sql = "SELECT state, COUNT(*) AS n FROM outbox GROUP BY state";
        let mut out = HashMap::new();
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(sql).fetch_all(p).await.map_err(query_error("counting the outbox"))?;
            for row in &rows {
                let state = super::parsed(row, "state", str::parse::<OutboxState>)?;
                out.insert(state, column(row, "n")?);
            }
            Ok::<_, StateError>(())
        })?;
        Ok(out)
    }

    /// Claims up to `limit` rows due by `due_by` (a dispatch run's start) and not claimed by
    /// another sender at `now`, for `holder` until `until`, the most urgent first: the notices
    /// of the earliest legal last day (at the same day the higher ladder step), then digests. On
    /// PostgreSQL concurrent claimers skip each other's rows; a claim that expires (a crashed
    /// sender) makes its rows claimable again. A claimed row that does not decode comes back as
    /// an [`UndecodableRow`] for the caller to give up, so it is neither lost nor retried forever.
    pub async fn claim_outbox(
        &self,
        holder: &str,
        due_by: DateTime<Utc>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Result<OutboxRow, UndecodableRow>>, StateError> {
        let mut turn = self.write_turn().await?;
        // The rows are walked in the claim's order by its index (migration 0006), never all
        // read and sorted: SQLite is told the index, since without statistics it takes
        // `outbox_due` and sorts; PostgreSQL finds it for the ORDER BY and LIMIT.
        let (index, lock) = match &self.pool {
            super::Pool::Postgres(_) => ("", " FOR UPDATE SKIP LOCKED"),
            super::Pool::Sqlite(_) => (" INDEXED BY outbox_claim_order", ""),
        };
        let sql = format!(
            "UPDATE outbox SET claimed_by = $1, claimed_until = $2 WHERE id IN ( \
               SELECT id FROM outbox{index} WHERE state IN ('pending', 'retrying') AND next_attempt_at <= $5 \
               AND (claimed_until IS NULL OR claimed_until < $3) ORDER BY due_on IS NULL, due_on, step DESC, next_attempt_at, id LIMIT $4{lock}) \
             RETURNING {OUTBOX_COLUMNS}"
        );
        let mut out = with_writer!(&self.pool, turn, p => {
            let rows = sqlx::query(&sql)
                .bind(holder)
                .bind(until)
                .bind(now)
                .bind(limit)
                .bind(due_by)
                .fetch_all(p)
                .await
                .map_err(query_error("claiming outbox rows"))?;
            rows.iter().map(outbox_row).collect::<Result<Vec<_>, _>>()?
        });
        // RETURNING gives no order: the claim's order (most urgent first) is the id order
        // among rows due at the same time only, so sort by what the claim sorted by.
        out.sort_by_key(urgency);
        Ok(out)
    }

    /// Records a failed attempt: `retrying` with the next attempt time, or `dead` when `next` is
    /// None (a cancelled row stays cancelled). Fenced: false when `holder` no longer holds the
    /// claim, and nothing is written.
    pub async fn mark_failed(
        &self,
        id: i64,
        holder: &str,
        error: &str,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StateError> {
        let mut turn = self.write_turn().await?;
        let state = match next {
            Some(_) => OutboxState::Retrying,
            None => OutboxState::Dead,
        };
        let sql = format!(
            "UPDATE outbox SET state = {KEEP_CANCELLED}, next_attempt_at = COALESCE($2, next_attempt_at), \
             last_error = $3, attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL \
             WHERE id = $4 AND claimed_by = $5"
        );
        with_writer!(&self.pool, turn, p => {
            let result = sqlx::query(&sql).bind(state.as_str()).bind(next).bind(error).bind(id).bind(holder).execute(p).await;
            result.map(|r| r.rows_affected())
        })
        .map(|n| n == 1)
        .map_err(query_error("recording a failed mail"))
    }

    /// Records one attempt at a claimed row: its state (a cancelled row stays cancelled unless
    /// the mail went out), every recipient's outcome so far, and — in the same transaction,
    /// only if the claim was still held — the escalation row (insert-if-absent on its key; a
    /// cancelled one is revived, as ladder steps are). Fenced: nothing is written when `holder`
    /// no longer holds the claim.
    pub async fn record_attempt(
        &self,
        row: &OutboxRow,
        holder: &str,
        attempt: Attempt<'_>,
    ) -> Result<Recorded, StateError> {
        let recorded = self.record_attempts(holder, &[(row, attempt)]).await?;
        Ok(recorded[0])
    }

    /// Records the attempts of several claimed rows, each as [`StateStore::record_attempt`]
    /// does and fenced on its own, at once (one statement, or one transaction when a record
    /// writes a notice one role up): the group commit of the senders of a
    /// dispatch run, which pays one commit (one write-ahead log append, on PostgreSQL one flush)
    /// for the mail of every sender that finished while the previous commit was under way.
    /// Returns what was recorded of each, in the order given.
    pub async fn record_attempts(
        &self,
        holder: &str,
        attempts: &[(&OutboxRow, Attempt<'_>)],
    ) -> Result<Vec<Recorded>, StateError> {
        let update = format!(
            "UPDATE outbox SET state = {KEEP_CANCELLED}, next_attempt_at = COALESCE($2, next_attempt_at), \
             last_error = $3, deliveries = $4, sent_at = COALESCE($5, sent_at), attempts = attempts + 1, \
             claimed_by = NULL, claimed_until = NULL WHERE id = $6 AND claimed_by = $7 RETURNING state"
        );
        let insert = "INSERT INTO outbox (notice_key, category, case_ref, kind, step, recipients, payload, state, \
             created_at, not_before, next_attempt_at, message_id, replaces, due_on) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8, $8, $9, $10, $11) \
             ON CONFLICT (notice_key) DO UPDATE SET recipients = excluded.recipients, payload = excluded.payload, \
               state = excluded.state, created_at = excluded.created_at, not_before = excluded.not_before, \
               next_attempt_at = excluded.next_attempt_at, replaces = excluded.replaces, attempts = 0, \
               last_error = NULL \
             WHERE outbox.state = 'cancelled'";
        let payloads = attempts
            .iter()
            .map(|(row, attempt)| attempt.escalation.as_ref().map(|_| row.payload.content()).transpose())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StateError::Encode { what: "an outbox payload", source })?;
        // The fenced update of one row, the same statement in or out of a transaction: the
        // state it left the row in, `None` when the claim was no longer held.
        macro_rules! update {
            ($row:expr, $attempt:expr, $executor:expr) => {
                match sqlx::query(&update)
                    .bind($attempt.state.as_str())
                    .bind($attempt.next)
                    .bind($attempt.error)
                    .bind((!$attempt.deliveries.is_empty()).then_some(Json($attempt.deliveries)))
                    .bind($attempt.sent_at)
                    .bind($row.id)
                    .bind(holder)
                    .fetch_optional($executor)
                    .await
                    .map_err(query_error("recording a mail attempt"))?
                {
                    Some(written) => Some(column::<String>(&written, "state")?),
                    None => None,
                }
            };
        }
        let mut turn = self.write_turn().await?;
        // Records that write no notice one role up (every one but a mail refused by all its
        // recipients) are one statement, atomic and durable by itself: each row fenced on its
        // own, the rows still held returned. No transaction to open and commit around it: one
        // round trip to the database for the group, where a transaction took one a record and
        // two more.
        if !attempts.is_empty() && attempts.iter().all(|(_, attempt)| attempt.escalation.is_none()) {
            return self.record_group(&mut turn, holder, attempts).await;
        }
        with_writer!(&self.pool, turn, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            let mut recorded = Vec::with_capacity(attempts.len());
            for ((row, attempt), payload) in attempts.iter().zip(&payloads) {
                let written = update!(row, attempt, &mut *tx);
                let mut escalated = false;
                // Only a row given up goes one role up: one cancelled meanwhile (its deadline
                // closed or withdrawn) stays cancelled, and so does the notice about it.
                let given_up = written.as_deref() == Some(OutboxState::Dead.as_str());
                if let (Some(up), Some(payload), true) = (&attempt.escalation, payload, given_up) {
                    escalated = sqlx::query(insert)
                        .bind(up.notice_key.to_string())
                        .bind(row.category().as_str())
                        .bind(row.case_ref.as_ref().map(CaseRef::as_str))
                        .bind(row.kind.map(Kind::as_str))
                        .bind(row.step.map(i64::from))
                        .bind(Json(&up.recipients))
                        .bind(Json(payload))
                        .bind(up.now)
                        .bind(up.message_id.as_str())
                        .bind(Json(&up.replaces))
                        .bind(row.payload.due_on())
                        .execute(&mut *tx)
                        .await
                        .map_err(query_error("writing a notice one role up"))?
                        .rows_affected()
                        > 0;
                }
                recorded.push(Recorded { held: written.is_some(), escalated });
            }
            tx.commit().await.map_err(query_error("committing a mail attempt"))?;
            Ok(recorded)
        })
    }

    /// The attempts of [`StateStore::record_attempts`] without an escalation, in one statement
    /// (an `UPDATE … FROM (VALUES …)` fenced on each row): what was recorded of each, in order.
    /// The caller holds the turn to write.
    async fn record_group(
        &self,
        turn: &mut WriteTurn<'_>,
        holder: &str,
        attempts: &[(&OutboxRow, Attempt<'_>)],
    ) -> Result<Vec<Recorded>, StateError> {
        // One row of values an attempt: id, state, next attempt, error, deliveries, sent at.
        // PostgreSQL is told the types (a VALUES list has none of its own); SQLite takes the
        // values as bound (a CAST there would turn an instant's text into a number).
        let values = match self.engine {
            Engine::Sqlite => vec!["(?, ?, ?, ?, ?, ?)".to_string(); attempts.len()].join(", "),
            Engine::Postgres => (0..attempts.len())
                .map(|i| {
                    let n = 2 + i * 6;
                    format!(
                        "(${}::bigint, ${}::text, ${}::timestamptz, ${}::text, ${}::jsonb, ${}::timestamptz)",
                        n,
                        n + 1,
                        n + 2,
                        n + 3,
                        n + 4,
                        n + 5
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        // The holder is the first parameter on both engines (`?` on SQLite binds in order of
        // appearance, and it appears first).
        let holder_mark = match self.engine {
            Engine::Sqlite => "?",
            Engine::Postgres => "$1",
        };
        let sql = format!(
            "UPDATE outbox SET \
               state = CASE WHEN outbox.state = 'cancelled' AND v.column2 <> 'sent' THEN 'cancelled' ELSE v.column2 END, \
               next_attempt_at = COALESCE(v.column3, outbox.next_attempt_at), last_error = v.column4, \
               deliveries = v.column5, sent_at = COALESCE(v.column6, outbox.sent_at), attempts = outbox.attempts + 1, \
               claimed_by = NULL, claimed_until = NULL \
             FROM (SELECT {holder_mark} AS holder) AS h, (VALUES {values}) AS v \
             WHERE outbox.id = v.column1 AND outbox.claimed_by = h.holder \
             RETURNING outbox.id"
        );
        let held: Vec<i64> = with_writer!(&self.pool, turn, p => {
            // Group sizes are bounded by the senders of a run: a few statement texts.
            let mut q = sqlx::query(&sql).persistent(attempts.len() <= 8).bind(holder);
            for (row, attempt) in attempts {
                q = q
                    .bind(row.id)
                    .bind(attempt.state.as_str())
                    .bind(attempt.next)
                    .bind(attempt.error)
                    .bind((!attempt.deliveries.is_empty()).then_some(Json(attempt.deliveries)))
                    .bind(attempt.sent_at);
            }
            let rows = q.fetch_all(p).await.map_err(query_error("recording mail attempts"))?;
            rows.iter().map(|r| column::<i64>(r, "id")).collect::<Result<Vec<_>, _>>()?
        });
        Ok(attempts.iter().map(|(row, _)| Recorded { held: held.contains(&row.id), escalated: false }).collect())
    }

    /// Releases the claim of a row that was not attempted (dispatch paused or stopping),
    /// without counting an attempt: it stays due. `note` (why it was not sent, e.g. the mail
    /// server down) becomes its last error, for `outbox list`. Fenced: false when `holder` no
    /// longer holds the claim.
    pub async fn release_claim(&self, id: i64, holder: &str, note: Option<&str>) -> Result<bool, StateError> {
        let mut turn = self.write_turn().await?;
        let sql = "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL, last_error = COALESCE($3, last_error) \
             WHERE id = $1 AND claimed_by = $2";
        with_writer!(&self.pool, turn, p => sqlx::query(sql).bind(id).bind(holder).bind(note).execute(p).await.map(|r| r.rows_affected()))
            .map(|n| n == 1)
            .map_err(query_error("releasing a claim"))
    }

    /// Moves a claimed row's next attempt to `at` without counting an attempt (outside the
    /// sending window), and releases the claim. Fenced, as [`StateStore::release_claim`].
    pub async fn postpone(&self, id: i64, holder: &str, at: DateTime<Utc>) -> Result<bool, StateError> {
        let mut turn = self.write_turn().await?;
        let sql = "UPDATE outbox SET next_attempt_at = $1, claimed_by = NULL, claimed_until = NULL \
             WHERE id = $2 AND claimed_by = $3";
        with_writer!(&self.pool, turn, p => sqlx::query(sql).bind(at).bind(id).bind(holder).execute(p).await.map(|r| r.rows_affected()))
            .map(|n| n == 1)
            .map_err(query_error("postponing a mail"))
    }

    /// Renews every claim `holder` still has on an unsettled row until `until`, while it works
    /// on them; returns how many. A claim another sender took is not touched.
    pub async fn renew_claims(&self, holder: &str, until: DateTime<Utc>) -> Result<u64, StateError> {
        let mut turn = self.write_turn().await?;
        let sql = "UPDATE outbox SET claimed_until = $1 WHERE claimed_by = $2 AND state IN ('pending', 'retrying')";
        with_writer!(&self.pool, turn, p => sqlx::query(sql).bind(until).bind(holder).execute(p).await.map(|r| r.rows_affected()))
            .map_err(query_error("renewing outbox claims"))
    }
}

/// Whether a step whose outbox rows (the notice and its rows one role up) are in `states` is
/// recorded: some row is sent, pending, retrying or skipped, or every row is dead (given up,
/// the last resort). Not when every row is cancelled, nor when the notice reached nobody and
/// the row that carried it on was cancelled (dead and cancelled rows only).
fn step_recorded(states: &[OutboxState]) -> bool {
    let live = states.iter().any(|s| !matches!(s, OutboxState::Cancelled | OutboxState::Dead));
    live || !states.contains(&OutboxState::Cancelled)
}

/// The keys a notice is carried on under when it reached nobody: `{key}/up`, `{key}/up/up`
/// (caseworker → team lead → unit manager: at most two roles up).
fn keys_up(key: &OutboxKey) -> [String; 2] {
    [key.up().to_string(), key.up().up().to_string()]
}

/// The order of the claim: the earliest legal last day first (digests after notices), at the
/// same day the higher step; rows that do not decode last.
fn urgency(row: &Result<OutboxRow, UndecodableRow>) -> (bool, Option<NaiveDate>, std::cmp::Reverse<Option<i32>>, i64) {
    match row {
        Ok(row) => {
            let due_on = row.payload.due_on();
            (due_on.is_none(), due_on, std::cmp::Reverse(row.step), row.id)
        }
        Err(row) => (true, None, std::cmp::Reverse(None), row.id),
    }
}

/// The state an attempt writes (`$1`), except that a row cancelled while it was being sent
/// stays cancelled unless the mail went out.
const KEEP_CANCELLED: &str = "CASE WHEN outbox.state = 'cancelled' AND $1 <> 'sent' THEN 'cancelled' ELSE $1 END";

/// What recording an attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The sender still held the claim, so the attempt was written; false: another sender
    /// took the row (this one's claim had lapsed) and nothing was written.
    pub held: bool,
    /// A notice one role up was written.
    pub escalated: bool,
}

/// A nullable cell decoded by `decode`: `Ok(None)` when NULL, `Err(())` when the cell cannot be
/// read or decoded. Only the failure is kept: the decoders' messages (serde's among them) can
/// quote the stored value, an address.
fn optional_cell<S, T>(row: &impl Get, name: &str, decode: impl FnOnce(S) -> Option<T>) -> Result<Option<T>, ()>
where
    Option<S>: super::Cell,
{
    match row.get::<Option<S>>(name) {
        Ok(None) => Ok(None),
        Ok(Some(raw)) => decode(raw).map(Some).ok_or(()),
        Err(_) => Err(()),
    }
}

/// A JSON cell as `T`.
fn json<T: serde::de::DeserializeOwned>(Json(value): Json<serde_json::Value>) -> Option<T> {
    serde_json::from_value(value).ok()
}

fn undecodable_error(row: UndecodableRow) -> StateError {
    StateError::Corrupt {
        column: if row.class == ErrorClass::UnknownCategory { "outbox.category" } else { "outbox.payload" },
        value: format!("row {} ({}): {}", row.id, row.notice_key, row.error),
    }
}

/// Decodes an outbox row. The columns the store itself writes (id, key, state, instants,
/// attempts) must decode or the read fails; the content columns (category, references,
/// recipients, payload) that fail make an [`UndecodableRow`].
fn outbox_row(row: &impl Get) -> Result<Result<OutboxRow, UndecodableRow>, StateError> {
    let id: i64 = column(row, "id")?;
    let notice_key: String = column(row, "notice_key")?;
    let attempts: i64 = column(row, "attempts")?;
    let state = super::parsed(row, "state", str::parse::<OutboxState>)?;
    let created_at: DateTime<Utc> = column(row, "created_at")?;
    let not_before: DateTime<Utc> = column(row, "not_before")?;
    let last_error: Option<String> = column(row, "last_error")?;
    let message_id: String = column(row, "message_id")?;
    let category_raw: String = column(row, "category")?;
    let category = category_raw.parse::<OutboxCategory>().ok();
    let kind = row.get::<Option<String>>("kind").ok().flatten().and_then(|k| k.parse::<Kind>().ok());
    let step = row.get::<Option<i64>>("step").ok().flatten().map(|s| s as i32);
    let undecodable = |class: ErrorClass, error: String| UndecodableRow {
        id,
        notice_key: notice_key.clone(),
        category,
        kind,
        step,
        attempts,
        class,
        error,
    };
    let Some(category) = category else {
        return Ok(Err(undecodable(ErrorClass::UnknownCategory, "unknown category".into())));
    };
    let bad =
        |what: &str| Ok(Err(undecodable(ErrorClass::BadPayload, format!("unreadable {what} of a {category} row"))));
    let Ok(kind) = optional_cell(row, "kind", |k: String| k.parse::<Kind>().ok()) else { return bad("kind") };
    let Ok(case_ref) = optional_cell(row, "case_ref", |c: String| CaseRef::parse(&c).ok()) else {
        return bad("case_ref");
    };
    let Ok(step) = row.get::<Option<i64>>("step") else { return bad("step") };
    let Ok(Some(recipients)) = optional_cell(row, "recipients", json::<Vec<Recipient>>) else {
        return bad("recipients");
    };
    let Ok(Some(payload)) = optional_cell(row, "payload", |Json(value)| OutboxPayload::decode(category, value).ok())
    else {
        return bad("payload");
    };
    let Ok(deliveries) = optional_cell(row, "deliveries", json::<Vec<Delivery>>) else { return bad("deliveries") };
    let Ok(replaces) = optional_cell(row, "replaces", json::<Vec<Recipient>>) else { return bad("replaces") };
    let (deliveries, replaces) = (deliveries.unwrap_or_default(), replaces.unwrap_or_default());
    Ok(Ok(OutboxRow {
        id,
        notice_key,
        case_ref,
        kind,
        step: step.map(|s| s as i32),
        recipients,
        payload,
        state,
        created_at,
        not_before,
        attempts,
        last_error,
        message_id,
        deliveries,
        replaces,
    }))
}
