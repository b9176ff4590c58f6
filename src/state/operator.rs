//! What an operator sees of the outbox and may do with it (`outbox list`, `outbox retry`).
//! Listing reads only the bookkeeping columns, so a row whose payload this version cannot
//! decode is listed too: it is the one an operator most needs to see.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{column, query_error, with_pool, Delivery, DeliveryOutcome, OutboxState, StateError, StateStore};

/// One outbox row as `outbox list` shows it: no payload, no recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxListing {
    pub notice_key: String,
    pub category: String,
    pub state: OutboxState,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// What `outbox retry` did with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// It was dead and is pending again, with a fresh give-up clock.
    Requeued,
    /// It was not dead (already pending, sent…): left as it was.
    NotDead(OutboxState),
    /// No outbox row has this key.
    Unknown,
}

const LISTING_COLUMNS: &str = "notice_key, category, state, attempts, created_at, next_attempt_at, last_error";

impl StateStore {
    /// The newest `limit` outbox rows (of `state`, if given), newest first.
    pub async fn outbox_listing(
        &self,
        state: Option<OutboxState>,
        limit: i64,
    ) -> Result<Vec<OutboxListing>, StateError> {
        let sql = match state {
            Some(_) => format!("SELECT {LISTING_COLUMNS} FROM outbox WHERE state = $1 ORDER BY id DESC LIMIT $2"),
            None => format!("SELECT {LISTING_COLUMNS} FROM outbox ORDER BY id DESC LIMIT $1"),
        };
        with_pool!(&self.pool, p => {
            let query = match state {
                Some(s) => sqlx::query(&sql).bind(s.as_str()).bind(limit),
                None => sqlx::query(&sql).bind(limit),
            };
            let rows = query.fetch_all(p).await.map_err(query_error("listing the outbox"))?;
            rows.iter()
                .map(|row| {
                    Ok(OutboxListing {
                        notice_key: column(row, "notice_key")?,
                        category: column(row, "category")?,
                        state: super::parsed(row, "state", str::parse::<OutboxState>)?,
                        attempts: column(row, "attempts")?,
                        created_at: column(row, "created_at")?,
                        next_attempt_at: column(row, "next_attempt_at")?,
                        last_error: column(row, "last_error")?,
                    })
                })
                .collect()
        })
    }

    /// Puts the dead row of `key` back to pending, due at once, with its attempts and give-up
    /// clock started afresh at `now`, for the recipients who did not receive it. A row in any other state is left alone, so retrying twice
    /// sends nothing twice.
    pub async fn retry_dead(&self, key: &str, now: DateTime<Utc>) -> Result<RetryOutcome, StateError> {
        // The recipients who refused it are asked again; those who received it are not.
        let read = "SELECT deliveries FROM outbox WHERE notice_key = $1 AND state = 'dead'";
        let deliveries: Option<Option<Json<Vec<Delivery>>>> = with_pool!(&self.pool, p => {
            match sqlx::query(read).bind(key).fetch_optional(p).await.map_err(query_error("reading a dead mail"))? {
                Some(row) => Some(column(&row, "deliveries")?),
                None => None,
            }
        });
        let kept: Option<Json<Vec<Delivery>>> = deliveries.flatten().and_then(|Json(all)| {
            let delivered: Vec<Delivery> =
                all.into_iter().filter(|d| d.outcome == DeliveryOutcome::Delivered).collect();
            (!delivered.is_empty()).then_some(Json(delivered))
        });
        let update = "UPDATE outbox SET state = 'pending', attempts = 0, not_before = $1, next_attempt_at = $1, \
             claimed_by = NULL, claimed_until = NULL, deliveries = $3 WHERE notice_key = $2 AND state = 'dead'";
        let changed = with_pool!(&self.pool, p => {
            sqlx::query(update).bind(now).bind(key).bind(kept.clone()).execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(query_error("putting a dead mail back"))?;
        if changed > 0 {
            return Ok(RetryOutcome::Requeued);
        }
        let sql = "SELECT state FROM outbox WHERE notice_key = $1";
        let state = with_pool!(&self.pool, p => {
            match sqlx::query(sql).bind(key).fetch_optional(p).await.map_err(query_error("reading an outbox row"))? {
                Some(row) => Some(super::parsed(&row, "state", str::parse::<OutboxState>)?),
                None => None,
            }
        });
        Ok(state.map_or(RetryOutcome::Unknown, RetryOutcome::NotDead))
    }

    /// The keys of every dead row, oldest first.
    pub async fn dead_keys(&self) -> Result<Vec<String>, StateError> {
        let sql = "SELECT notice_key FROM outbox WHERE state = 'dead' ORDER BY id";
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(sql).fetch_all(p).await.map_err(query_error("listing dead mail"))?;
            rows.iter().map(|row| column(row, "notice_key")).collect()
        })
    }
}
