//! The retention job: closed deadlines and finished mail older than `state.retention` deleted.

use crate::app::{App, Moment};
use crate::jobs::JobError;
use crate::poll::retained_from;
use crate::state::Purged;

/// Deletes what is older than `state.retention` (the full pass runs it once a day).
pub async fn run_once(app: &App, at: Moment) -> Result<Purged, JobError> {
    let day = retained_from(&app.settings, at.now);
    let before = at.now - chrono::Duration::from_std(app.settings.state.retention).unwrap_or(chrono::TimeDelta::MAX);
    let purged = app.state.purge_expired(day, before).await?;
    if purged != Purged::default() {
        tracing::info!(
            deadlines = purged.deadlines,
            outbox_rows = purged.outbox_rows,
            kept_from = %day,
            "deleted what is older than state.retention"
        );
    }
    Ok(purged)
}
