//! The digest job: each manager's daily digest, written to the outbox once a day.

use crate::app::{App, Moment};
use crate::digest::{self, DigestReport};
use crate::jobs::JobError;

/// When today's scheduled digest time has passed and today's digests are not yet recorded,
/// records them (also when the daemon was down at the scheduled time and comes back the same
/// day). `None` when nothing was due.
pub async fn run_once(app: &App, at: Moment) -> Result<Option<DigestReport>, JobError> {
    Ok(digest::run_due(&app.state, &app.settings, &app.schedule, at.now).await?)
}
