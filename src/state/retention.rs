//! Retention: what fristvakt keeps no longer than `state.retention`.

use chrono::{DateTime, NaiveDate, Utc};

use super::{query_error, with_pool, StateError, StateStore};

/// What one retention run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub deadlines: u64,
    pub outbox_rows: u64,
    /// Dead rows of deadlines still open whose addresses and server answers were removed.
    pub anonymised: u64,
}

impl StateStore {
    /// Deletes deadlines closed before `day` (and withdrawn ones due before it), and outbox rows
    /// written before `before` — sent, skipped, cancelled and dead ones, and pending or retrying
    /// ones no sender holds (a digest, or the notice of a deadline that is finished) — but never
    /// the record of a step of a deadline still open, which would let that step fire again. Of
    /// such a record, when dead, the addresses (recipients, their outcomes, the refused ones a
    /// notice one role up replaces) and the server's last answer are removed instead: nothing
    /// with an address outlives `state.retention`.
    pub async fn purge_expired(&self, day: NaiveDate, before: DateTime<Utc>) -> Result<Purged, StateError> {
        let open_step =
            "EXISTS (SELECT 1 FROM deadlines d WHERE d.case_ref = outbox.case_ref AND d.kind = outbox.kind \
             AND d.closed_on IS NULL AND d.withdrawn = FALSE)";
        let outbox = format!(
            "DELETE FROM outbox WHERE created_at < $1 \
             AND (state IN ('sent', 'skipped', 'cancelled', 'dead') OR claimed_by IS NULL) AND NOT {open_step}"
        );
        let anonymise = format!(
            "UPDATE outbox SET recipients = '[]', deliveries = NULL, replaces = NULL, \
             last_error = 'removed after state.retention' \
             WHERE state = 'dead' AND created_at < $1 AND {open_step} \
             AND (deliveries IS NOT NULL OR replaces IS NOT NULL OR last_error IS NULL \
                  OR last_error <> 'removed after state.retention')"
        );
        let deadlines = "DELETE FROM deadlines WHERE (closed_on IS NOT NULL AND closed_on < $1) \
             OR (withdrawn = TRUE AND due_on < $1)";
        let outbox_rows = with_pool!(&self.pool, p => {
            sqlx::query(&outbox).bind(before).execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(query_error("deleting expired outbox rows"))?;
        let anonymised = with_pool!(&self.pool, p => {
            sqlx::query(&anonymise).bind(before).execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(query_error("removing the addresses of expired dead rows"))?;
        let deadlines = with_pool!(&self.pool, p => {
            sqlx::query(deadlines).bind(day).execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(query_error("deleting expired deadlines"))?;
        Ok(Purged { deadlines, outbox_rows, anonymised })
    }
}
