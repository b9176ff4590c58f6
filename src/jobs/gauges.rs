//! The gauges that count every stored deadline: deadlines by unit, kind and status, and the
//! 30-day share met. At a million cases a count takes seconds, so the daemon runs this job after
//! a poll only when the figures are due ([`due`]): with the full pass, on a new day, or when they
//! are older than [`GAUGES_EVERY`] — never inside the poll, whose time then follows what changed,
//! and not for `poll --once`, which serves no metrics.

use std::time::{Duration, Instant};

use crate::app::{App, Moment};
use crate::jobs::JobError;

/// The longest the gauges go without a recount while polls succeed.
pub const GAUGES_EVERY: Duration = Duration::from_secs(600);

/// Whether the gauges are due after a poll (`full`: it was the full pass).
pub fn due(app: &App, at: Moment, full: bool) -> bool {
    let counted = *app.gauges_counted.lock().unwrap_or_else(|e| e.into_inner());
    full || !counted.is_some_and(|(day, when)| day == at.today && when.elapsed() < GAUGES_EVERY)
}

/// Counts the stored deadlines for the gauges, as the compliance report and the digest count.
pub async fn run_once(app: &App, at: Moment) -> Result<(), JobError> {
    let settings = &app.settings;
    *app.gauges_counted.lock().unwrap_or_else(|e| e.into_inner()) = Some((at.today, Instant::now()));
    // The unit label takes only the configured units; every other code counts as `other`.
    let counts = app.state.deadline_counts(at.today).await?;
    app.metrics.set_deadlines(counts, |unit| settings.units.is_configured(unit));
    // The 30-day share met, counted as the compliance report and the digest count it.
    let tallies = crate::report::recent_by_unit_and_kind(&app.state, at.today).await?;
    app.metrics.set_compliance(&tallies, |unit| settings.units.is_configured(unit));
    Ok(())
}
