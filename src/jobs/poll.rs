//! The poll job: the register's changes in, deadlines and reached ladder steps out.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::app::{App, Moment};
use crate::config::Settings;
use crate::jobs::{ladder, JobError, PollReport, POLL_LEASE};
use crate::metrics::Pass;
use crate::sync;

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

/// Consecutive failed polls after which a replica gives up the poll lease, so that a healthy
/// replica (one that can reach the register) takes over at its next tick instead of waiting for
/// the lease to expire.
pub const FAILURES_BEFORE_LEASE_RELEASE: u32 = 2;

/// The poll, with every row read when `force_full`.
pub(crate) async fn cycle(app: &App, at: Moment, force_full: bool) -> Result<Option<PollReport>, JobError> {
    if !take_lease(app, at).await? {
        tracing::debug!("another replica holds the poll lease; not polling");
        return Ok(None);
    }
    let started = Instant::now();
    let result = poll(app, at, force_full).await;
    // The log the poll's commits went to is checkpointed beside what comes next, not inside the
    // next poll's commit that would take it past SQLite's threshold (BENCHMARKS.md, "Prints for
    // the placements").
    app.state.checkpoint_in_background();
    let pass = match &result {
        Ok(report) if report.sync.full => Pass::Full,
        _ => Pass::Incremental,
    };
    app.metrics.observe_poll(pass, started.elapsed(), result.is_ok());
    match result {
        Ok(report) => {
            app.poll_failures.store(0, Ordering::Relaxed);
            app.metrics.set_last_successful_poll(at.now.timestamp() as f64);
            Ok(Some(report))
        }
        Err(e) => {
            let failures = app.poll_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failures >= FAILURES_BEFORE_LEASE_RELEASE && !app.sole_daemon.load(Ordering::Relaxed) {
                tracing::warn!(failures, "polls keep failing; giving up the poll lease for a healthy replica");
                release_lease(app).await;
            }
            Err(e)
        }
    }
}

/// Gives up the poll lease if this process holds it.
pub(crate) async fn release_lease(app: &App) {
    match app.state.release_lease(POLL_LEASE, &app.holder).await {
        Ok(()) => {
            app.holds_poll_lease.store(false, Ordering::Relaxed);
            app.metrics.set_poll_lease_held(false);
        }
        Err(e) => tracing::warn!("could not give up the poll lease (it expires by itself): {e}"),
    }
}

async fn poll(app: &App, at: Moment, force_full: bool) -> Result<PollReport, JobError> {
    let settings = &app.settings;
    let register = app.register().await?;
    let sync =
        match sync::sync_register(&register, &app.state, settings, at.today, at.now, force_full, &app.fact_readers)
            .await
        {
            Ok(sync) => sync,
            Err(e) => {
                app.forget_register().await;
                return Err(e.into());
            }
        };
    app.metrics.add_rows(sync.rows_read, &sync.rejected);
    app.metrics.add_rows(sync.placement_rows_read, &sync.placement_rejected);
    app.metrics.add_withdrawals_held(sync.withdrawals_held);
    *app.rejecting_every_row.lock().unwrap_or_else(|e| e.into_inner()) = rejecting_every_row(&sync);
    // The register's newest change, for a process that shows the staleness gauge: asked of the
    // register at the first poll and with the full pass (a query that reads the recent rows, all
    // of them after a bulk update), otherwise the newest of what it was and what this poll
    // computed.
    let known = *app.register_newest.lock().unwrap_or_else(|e| e.into_inner());
    let newest = match known {
        _ if !app.watches_staleness.load(Ordering::Relaxed) => None,
        Some(known) if !sync.full => Some(sync.newest_computed.map_or(known, |n| n.max(known))),
        _ => register.newest_update().await.ok().flatten(),
    };
    if let Some(newest) = newest {
        *app.register_newest.lock().unwrap_or_else(|e| e.into_inner()) = Some(newest);
        app.metrics.set_register_staleness((at.now - newest).num_milliseconds().max(0) as f64 / 1000.0);
    }
    let ladder = ladder::evaluate(app, at).await?;
    if sync.full {
        // Once a day, with the full pass: what is older than `state.retention` goes.
        crate::jobs::retention::run_once(app, at).await?;
    }
    app.state.record_poll_success(at.now).await?;
    Ok(PollReport { sync, ladder })
}

/// Takes (or renews) the poll lease for this process, for `state.lease_ttl` from `at.now`.
pub async fn take_lease(app: &App, at: Moment) -> Result<bool, JobError> {
    let held = app.state.acquire_lease(POLL_LEASE, &app.holder, at.now, at.now + lease_ttl(app)).await?;
    app.holds_poll_lease.store(held, Ordering::Relaxed);
    app.metrics.set_poll_lease_held(held);
    Ok(held)
}

/// Takes the poll lease whoever holds it: for a process holding a SQLite state's lock, which
/// proves that no other daemon uses the state (a lease left by its own crash is no other's).
pub async fn seize_lease(app: &App, at: Moment) -> Result<(), JobError> {
    app.state.seize_lease(POLL_LEASE, &app.holder, at.now + lease_ttl(app)).await?;
    app.holds_poll_lease.store(true, Ordering::Relaxed);
    app.metrics.set_poll_lease_held(true);
    Ok(())
}

/// How often a standby replica tries to take the poll lease, and its holder renews it: every
/// 10 s, or every third of `state.lease_ttl` when that is shorter.
pub fn lease_try_every(settings: &Settings) -> Duration {
    Duration::from_secs(10).min(settings.state.lease_ttl / 3)
}

/// How long a taking or renewal of the lease holds it: `state.lease_ttl` less one try period
/// and 2 s for a slow renewal, so that after its holder dies the lease lapses, and a standby's
/// next try takes it, within `state.lease_ttl`.
fn lease_ttl(app: &App) -> chrono::Duration {
    let settings = &app.settings;
    let holds = settings.state.lease_ttl.saturating_sub(lease_try_every(settings) + Duration::from_secs(2));
    chrono::Duration::from_std(holds).unwrap_or(chrono::Duration::seconds(18))
}

/// Rows a poll must read before "every row rejected" means the view itself is broken rather than
/// a few changed rows being bad.
const EVERY_ROW_MIN: u64 = 10;

/// Why readiness fails when a poll understood none of the rows it read (at least
/// [`EVERY_ROW_MIN`], or a full pass): the reasons by count, never a value.
fn rejecting_every_row(sync: &sync::SyncReport) -> Option<String> {
    let all = sync.rows_read > 0 && sync.rows_rejected() == sync.rows_read;
    if !all || (sync.rows_read < EVERY_ROW_MIN && !sync.full) {
        return None;
    }
    let reasons: Vec<String> = sync.rejected.iter().map(|(r, n)| format!("{}={n}", r.as_str())).collect();
    Some(format!("the last poll rejected every one of the {} rows it read ({})", sync.rows_read, reasons.join(", ")))
}
