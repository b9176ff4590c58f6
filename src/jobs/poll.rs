//! The poll job: the register's changes in, deadlines and reached ladder steps out.

use std::time::{Duration, Instant};

use crate::app::{App, Moment};
use crate::jobs::{ladder, JobError, PollReport, POLL_LEASE};
use crate::poll as sync;

/// One incremental poll: the rows changed since the watermark (minus the overlap; every row on
/// the first poll), then the ladder steps reached by `at.today`. `None` when another replica
/// holds the poll lease (re-processing would be harmless, but doubles the load on the register).
pub async fn run_once(app: &App, at: Moment) -> Result<Option<PollReport>, JobError> {
    cycle(app, at, false).await
}

/// The daemon's poll tick (and `poll --once`): the [`full_pass`](crate::jobs::full_pass) when
/// today's is due, else an incremental poll.
pub async fn scheduled(app: &App, at: Moment) -> Result<Option<PollReport>, JobError> {
    let full = crate::jobs::full_pass::is_due(app, at).await?;
    cycle(app, at, full).await
}

/// The poll, with every row read when `force_full`.
pub(crate) async fn cycle(app: &App, at: Moment, force_full: bool) -> Result<Option<PollReport>, JobError> {
    if !take_lease(app, at).await? {
        tracing::debug!("another replica holds the poll lease; not polling");
        return Ok(None);
    }
    let started = Instant::now();
    let result = poll(app, at, force_full).await;
    let pass = match &result {
        Ok(report) if report.sync.full => "full",
        _ => "incremental",
    };
    app.metrics.observe_poll(pass, started.elapsed(), result.is_ok());
    match result {
        Ok(report) => {
            app.metrics.set_last_successful_poll(at.now.timestamp() as f64);
            Ok(Some(report))
        }
        Err(e) => Err(e),
    }
}

async fn poll(app: &App, at: Moment, force_full: bool) -> Result<PollReport, JobError> {
    let settings = &app.settings;
    let register = app.register().await?;
    let sync = match sync::sync_register(&register, &app.state, settings, at.today, at.now, force_full).await {
        Ok(sync) => sync,
        Err(e) => {
            app.forget_register().await;
            return Err(e.into());
        }
    };
    app.metrics.add_rows(sync.rows_read, &sync.rejected);
    if let Ok(Some(newest)) = register.newest_update().await {
        app.metrics.set_register_staleness((at.now - newest).num_milliseconds().max(0) as f64 / 1000.0);
    }
    let ladder = ladder::evaluate(app, at).await?;
    app.state.record_poll_success(at.now).await?;
    match app.state.deadline_counts(at.today).await {
        // The unit label takes only the configured units; every other code counts as `other`.
        Ok(counts) => app.metrics.set_deadlines(counts, |unit| settings.units.is_configured(unit)),
        Err(e) => tracing::warn!("could not count deadlines for the metrics: {e}"),
    }
    Ok(PollReport { sync, ladder })
}

/// Takes (or renews) the poll lease for this process.
pub(crate) async fn take_lease(app: &App, at: Moment) -> Result<bool, JobError> {
    let lease_for = chrono::Duration::from_std(app.settings.register.poll_interval * 2 + Duration::from_secs(600))
        .unwrap_or(chrono::Duration::minutes(30));
    Ok(app.state.acquire_lease(POLL_LEASE, &app.holder, at.now, at.now + lease_for).await?)
}
