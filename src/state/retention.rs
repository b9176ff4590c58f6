//! Retention: what fristvakt keeps no longer than `state.retention`.

use chrono::{DateTime, NaiveDate, Utc};

use super::{query_error, with_pool, StateError, StateStore};

/// What one retention run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub deadlines: u64,
    pub outbox_rows: u64,
}

impl StateStore {
    /// Deletes deadlines closed before `day` (and withdrawn ones due before it), and sent,
    /// skipped or cancelled outbox rows written before `before` — but never the record of a step
    /// of a deadline still open, which would let that step fire again.
    pub async fn purge_expired(&self, day: NaiveDate, before: DateTime<Utc>) -> Result<Purged, StateError> {
        let outbox = "DELETE FROM outbox WHERE state IN ('sent', 'skipped', 'cancelled') AND created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM deadlines d WHERE d.case_ref = outbox.case_ref AND d.kind = outbox.kind \
             AND d.closed_on IS NULL AND d.withdrawn = FALSE)";
        let deadlines = "DELETE FROM deadlines WHERE (closed_on IS NOT NULL AND closed_on < $1) \
             OR (withdrawn = TRUE AND due_on < $1)";
        let outbox_rows = with_pool!(&self.pool, p => {
            sqlx::query(outbox).bind(before).execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(query_error("deleting expired outbox rows"))?;
        let deadlines = with_pool!(&self.pool, p => {
            sqlx::query(deadlines).bind(day).execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(query_error("deleting expired deadlines"))?;
        Ok(Purged { deadlines, outbox_rows })
    }
}
