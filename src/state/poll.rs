//! Where polling stands: the register watermark, the day of the last full pass, the last
//! successful poll and the size of the case prints (a single row).

use chrono::{DateTime, NaiveDate, Utc};

use super::{column, query_error, with_pool, StateError, StateStore};

/// Where polling stands.
#[derive(Debug, Clone, Default)]
pub struct PollState {
    pub watermark: Option<DateTime<Utc>>,
    pub last_full_pass_on: Option<NaiveDate>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// The bits of the case prints' buckets; `None` until a full pass built them
    /// ([`crate::state::prints`]).
    pub print_bits: Option<u32>,
    /// The same for the placements' prints (`Shelf::Placements`).
    pub placement_print_bits: Option<u32>,
    /// When a full pass held back withdrawals that were too many at once
    /// (`register.max_withdraw_share`); `None` when none are held.
    pub withdrawals_held_at: Option<DateTime<Utc>>,
    /// How many polls have finished on this state ([`StateStore::finish_poll`]).
    pub polls_finished: i64,
}

impl StateStore {
    pub async fn poll_state(&self) -> Result<PollState, StateError> {
        let sql = "SELECT watermark, last_full_pass_on, last_success_at, print_bits, placement_print_bits, withdrawals_held_at, polls_finished FROM poll_state WHERE id = 1";
        with_pool!(&self.pool, p => {
            let row = sqlx::query(sql).fetch_one(p).await.map_err(query_error("reading the poll state"))?;
            Ok(PollState {
                watermark: column(&row, "watermark")?,
                last_full_pass_on: column(&row, "last_full_pass_on")?,
                last_success_at: column(&row, "last_success_at")?,
                print_bits: column::<Option<i32>>(&row, "print_bits")?.map(|b| b as u32),
                placement_print_bits: column::<Option<i32>>(&row, "placement_print_bits")?.map(|b| b as u32),
                withdrawals_held_at: column(&row, "withdrawals_held_at")?,
                polls_finished: column(&row, "polls_finished")?,
            })
        })
    }

    /// Records a finished register read: the watermark, and the day of a full pass (whose
    /// withdrawals [`StateStore::withdraw_vanished_cases`] made before); counts it, and returns
    /// how many polls have finished with it and the watermark it left.
    pub async fn finish_poll(
        &self,
        watermark: Option<DateTime<Utc>>,
        full_pass_on: Option<NaiveDate>,
    ) -> Result<(i64, Option<DateTime<Utc>>), StateError> {
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            if let Some(day) = full_pass_on {
                sqlx::query("UPDATE poll_state SET last_full_pass_on = $1 WHERE id = 1")
                    .bind(day)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error("recording the full pass"))?;
            }
            // The watermark only moves forward: a poll that read nothing new keeps the old one.
            let row = sqlx::query(
                "UPDATE poll_state SET polls_finished = polls_finished + 1, \
                 watermark = CASE WHEN watermark IS NULL OR watermark < $1 THEN $1 ELSE watermark END WHERE id = 1 \
                 RETURNING polls_finished, watermark",
            )
            .bind(watermark)
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error("recording the poll"))?;
            let finished = (column(&row, "polls_finished")?, column(&row, "watermark")?);
            tx.commit().await.map_err(query_error("committing the poll"))?;
            Ok(finished)
        })
    }

    /// Records when a full pass held its withdrawals back (`Some`; the day's full pass is then
    /// due again, so the daemon runs the next at its next tick), or that none are held.
    pub async fn hold_withdrawals(&self, at: Option<DateTime<Utc>>) -> Result<(), StateError> {
        let sql = match at {
            Some(_) => "UPDATE poll_state SET withdrawals_held_at = $1, last_full_pass_on = NULL WHERE id = 1",
            None => "UPDATE poll_state SET withdrawals_held_at = $1 WHERE id = 1",
        };
        with_pool!(&self.pool, p => {
            sqlx::query(sql).bind(at).execute(p).await.map(|_| ())
        })
        .map_err(query_error("recording held withdrawals"))
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
