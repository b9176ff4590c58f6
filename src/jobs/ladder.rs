//! The ladder job: the escalation steps reached by today, written to the outbox.

use crate::app::{App, Moment};
use crate::jobs::{poll, JobError};
use crate::sync::{self, LadderReport};
use crate::rules::ladder::offset_label;

/// Records the ladder steps reached by `at.today` (the poll job does this after every poll).
/// `None` when another replica holds the poll lease.
pub async fn run_once(app: &App, at: Moment) -> Result<Option<LadderReport>, JobError> {
    if !poll::take_lease(app, at).await? {
        return Ok(None);
    }
    evaluate(app, at).await.map(Some)
}

/// The ladder evaluation itself, for a caller that holds the poll lease.
pub(crate) async fn evaluate(app: &App, at: Moment) -> Result<LadderReport, JobError> {
    let report = sync::evaluate_ladders(&app.state, &app.settings, at.today, at.now).await?;
    for ((kind, step), n) in &report.enqueued {
        app.metrics.add_notice(kind.as_str(), offset_label(*step), "enqueued", *n);
    }
    app.metrics.add_caseworker_fallbacks(report.caseworker_fallbacks);
    Ok(report)
}
