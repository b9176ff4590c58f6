//! The full pass: every row of the register read, deadlines of cases that left it withdrawn.

use crate::app::{App, Moment};
use crate::jobs::{poll, JobError, PollReport};
use crate::sync::full_pass_due;

/// A poll that reads every row (`poll --once --full`; the daemon runs one once a day at
/// `register.full_pass_at`, see [`is_due`]). `None` when another replica holds the poll lease.
pub async fn run_once(app: &App, at: Moment) -> Result<Option<PollReport>, JobError> {
    poll::cycle(app, at, true).await
}

/// Whether today's full pass is due: none yet today, and the local time (when known) is at or
/// past `register.full_pass_at`.
pub async fn is_due(app: &App, at: Moment) -> Result<bool, JobError> {
    let last = app.state.poll_state().await?.last_full_pass_on;
    Ok(full_pass_due(last, at.today, at.local_time, app.settings.register.full_pass_at))
}
