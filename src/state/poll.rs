//! Where polling stands: the sequence number of polls, the register watermark, the day of the
//! last full pass and the last successful poll (a single row).

use chrono::{DateTime, NaiveDate, Utc};

use super::{column, query_error, with_pool, StateError, StateStore};

/// Where polling stands.
#[derive(Debug, Clone, Default)]
pub struct PollState {
    pub poll_seq: i64,
    pub watermark: Option<DateTime<Utc>>,
    pub last_full_pass_on: Option<NaiveDate>,
    pub last_success_at: Option<DateTime<Utc>>,
}

impl StateStore {
    pub async fn poll_state(&self) -> Result<PollState, StateError> {
        let sql = "SELECT poll_seq, watermark, last_full_pass_on, last_success_at FROM poll_state WHERE id = 1";
        with_pool!(&self.pool, p => {
            let row = sqlx::query(sql).fetch_one(p).await.map_err(query_error("reading the poll state"))?;
            Ok(PollState {
                poll_seq: column(&row, "poll_seq")?,
                watermark: column(&row, "watermark")?,
                last_full_pass_on: column(&row, "last_full_pass_on")?,
                last_success_at: column(&row, "last_success_at")?,
            })
        })
    }

    /// Starts a poll: returns its sequence number, which stamps every deadline it sees.
    pub async fn begin_poll(&self) -> Result<i64, StateError> {
        let sql = "UPDATE poll_state SET poll_seq = poll_seq + 1 WHERE id = 1 RETURNING poll_seq";
        with_pool!(&self.pool, p => {
            let row = sqlx::query(sql).fetch_one(p).await.map_err(query_error("starting a poll"))?;
            column(&row, "poll_seq")
        })
    }

    /// Records a finished register read. After a full pass, deadlines not seen in it (the case
    /// left the register, or the deadline no longer exists) are withdrawn; returns how many.
    pub async fn finish_poll(
        &self,
        poll_seq: i64,
        watermark: Option<DateTime<Utc>>,
        full_pass_on: Option<NaiveDate>,
    ) -> Result<u64, StateError> {
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            let mut withdrawn = 0;
            if let Some(day) = full_pass_on {
                withdrawn = sqlx::query(
                    "UPDATE deadlines SET withdrawn = TRUE, next_step_on = NULL, child_key = NULL \
                     WHERE withdrawn = FALSE AND seen_in_poll < $1",
                )
                .bind(poll_seq)
                .execute(&mut *tx)
                .await
                .map_err(query_error("withdrawing vanished deadlines"))?
                .rows_affected();
                sqlx::query("UPDATE poll_state SET last_full_pass_on = $1 WHERE id = 1")
                    .bind(day)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error("recording the full pass"))?;
            }
            // The watermark only moves forward: a poll that read nothing new keeps the old one.
            sqlx::query(
                "UPDATE poll_state SET \
                 watermark = CASE WHEN watermark IS NULL OR watermark < $1 THEN $1 ELSE watermark END WHERE id = 1",
            )
            .bind(watermark)
            .execute(&mut *tx)
            .await
            .map_err(query_error("recording the poll"))?;
            tx.commit().await.map_err(query_error("committing the poll"))?;
            Ok(withdrawn)
        })
    }

    /// Records that a whole poll (register read and ladder steps recorded) succeeded at `now`;
    /// readiness of every replica reads it.
    pub async fn record_poll_success(&self, now: DateTime<Utc>) -> Result<(), StateError> {
        with_pool!(&self.pool, p => {
            sqlx::query("UPDATE poll_state SET last_success_at = $1 WHERE id = 1").bind(now).execute(p).await.map(|_| ())
        })
        .map_err(query_error("recording a successful poll"))?;
        Ok(())
    }
}
