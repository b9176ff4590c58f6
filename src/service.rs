//! The daemon (`fristvakt run`): wiring of the register, state store, mailer, scheduled jobs,
//! HTTP and systemd notification, and the graceful shutdown on SIGTERM/SIGINT.
//!
//! `run` does every fallible start-up step first (state database, migrations, mailer, HTTP
//! listener, digest schedule) so that a broken set-up fails at once with a clear message; after
//! that a failing job logs and retries on its next tick, and the daemon never dies of one bad poll.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::app::{App, AppError, Moment};
use crate::config::Settings;
use crate::digest::DigestSchedule;
use crate::jobs;

/// How often the outbox is worked through between polls (retries, window openings).
const DISPATCH_EVERY: Duration = Duration::from_secs(30);
/// How long shutdown waits for the job in progress (mail in flight) before it gives up on it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(settings: Arc<Settings>) -> Result<(), AppError> {
    // Unique per process across hosts: it marks this replica's leases and outbox claims.
    let holder = format!("{}-{}-{:08x}", hostname(), std::process::id(), rand::random::<u32>());
    let _state_lock = crate::app::lock_sqlite_state(&settings)?;
    let app = Arc::new(App::start(settings.clone(), holder, Utc::now()).await?);
    let listener = tokio::net::TcpListener::bind(settings.http.listen)
        .await
        .map_err(|e| AppError::Runtime(format!("http.listen {}: cannot listen: {e}", settings.http.listen)))?;
    let token = app.shutdown.clone();
    let http = {
        let token = token.clone();
        let router = crate::http::router(app.clone());
        tokio::spawn(async move {
            let result = axum::serve(listener, router).with_graceful_shutdown(token.cancelled_owned()).await;
            if let Err(e) = result {
                tracing::error!("http server stopped: {e}");
            }
        })
    };
    tracing::info!(listen = %settings.http.listen, holder = %app.holder, "fristvakt started");
    spawn_signal_handler(token.clone());

    // READY=1 after migration and the first poll attempt, whatever its outcome: readiness then
    // tells operations whether polling works.
    let status = Status::default();
    let first = poll(&app).await;
    notify(&[sd_notify::NotifyState::Ready]);
    status.update(&settings, first.as_ref().err());

    let worker = {
        let app = app.clone();
        tokio::spawn(async move { worker(&app, status).await })
    };
    watchdog_until_stopped(&app).await;

    notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");
    let abort = worker.abort_handle();
    if tokio::time::timeout(SHUTDOWN_GRACE, worker).await.is_err() {
        // A mail cut off mid-send stays in the outbox; its claim is not released but lapses
        // (CLAIM_TTL), so that a mail the server may have accepted is not sent again at once.
        abort.abort();
        tracing::warn!(
            "the job in progress did not finish within the grace period; its mail stays in the outbox, \
             its claims lapse within {}s",
            crate::mail::dispatch::CLAIM_TTL.as_secs()
        );
    }
    app.close().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    tracing::info!("stopped");
    Ok(())
}

/// The poll job at the current time, logged.
async fn poll(app: &App) -> Result<(), String> {
    let at = Moment::at(Utc::now(), app.settings.timezone);
    match jobs::poll::scheduled(app, at).await {
        Ok(report) => {
            // Only the replica that polled counts: the others' gauges would show the same.
            if report.is_some_and(|r| jobs::gauges::due(app, at, r.sync.full)) {
                if let Err(e) = jobs::gauges::run_once(app, at).await {
                    tracing::warn!("could not count deadlines for the metrics: {e}");
                }
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!("poll failed, retrying at the next interval: {e}");
            Err(e.to_string())
        }
    }
}

/// The scheduled jobs, one after another: poll every `register.poll_interval`, dispatch every
/// 30 seconds and after each poll, digests at their cron times.
async fn worker(app: &App, status: Status) {
    let settings = app.settings.clone();
    let token = app.shutdown.clone();
    let poll_every = settings.register.poll_interval;
    let mut next_poll = tokio::time::Instant::now() + poll_every;
    let mut next_dispatch = tokio::time::Instant::now();
    // A digest owed today whose time has passed (the daemon was down at 07:00) goes out now.
    let mut digest_due_now = true;
    let mut next_digest = next_digest_instant(&app.schedule, &settings, Utc::now());
    loop {
        app.beat(Utc::now());
        let wake =
            next_poll.min(next_dispatch).min(if digest_due_now { tokio::time::Instant::now() } else { next_digest });
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now_instant = tokio::time::Instant::now();
        if now_instant >= next_poll {
            let result = poll(app).await;
            status.update(&settings, result.as_ref().err());
            next_poll = tokio::time::Instant::now() + poll_every;
            next_dispatch = tokio::time::Instant::now();
        }
        if digest_due_now || now_instant >= next_digest {
            digest_due_now = false;
            match jobs::digest::run_once(app, Moment::at(Utc::now(), settings.timezone)).await {
                Ok(Some(report)) if report.enqueued > 0 => {
                    tracing::info!(digests = report.enqueued, "daily digests written to the outbox");
                }
                Ok(_) => {}
                Err(e) => tracing::error!("digest job failed: {e}"),
            }
            next_digest = next_digest_instant(&app.schedule, &settings, Utc::now());
            next_dispatch = tokio::time::Instant::now();
        }
        if tokio::time::Instant::now() >= next_dispatch {
            app.beat(Utc::now());
            let more = match jobs::dispatch::run_once(app, Moment::at(Utc::now(), settings.timezone)).await {
                Ok(report) => report.more,
                Err(e) => {
                    tracing::error!("dispatch failed, retrying shortly: {e}");
                    false
                }
            };
            // A run bounded with mail left goes on at once (after a look at the other jobs).
            next_dispatch = tokio::time::Instant::now() + if more { Duration::ZERO } else { DISPATCH_EVERY };
        }
    }
}

fn next_digest_instant(schedule: &DigestSchedule, settings: &Settings, now: DateTime<Utc>) -> tokio::time::Instant {
    let wait = schedule
        .next_after(now, settings.timezone)
        .and_then(|t| (t - now).to_std().ok())
        .unwrap_or(Duration::from_secs(24 * 3600));
    tokio::time::Instant::now() + wait
}

/// Pings the systemd watchdog while the worker shows signs of life; a worker stuck for longer
/// than the stall limit stops the pings so that systemd restarts the service. Returns when the
/// token is cancelled.
async fn watchdog_until_stopped(app: &App) {
    let token = &app.shutdown;
    let mut usec = 0u64;
    let enabled = sd_notify::watchdog_enabled(false, &mut usec);
    let period = if enabled {
        Duration::from_micros(usec / 2).max(Duration::from_millis(100))
    } else {
        Duration::from_secs(3600)
    };
    // A full pass over a million cases may take minutes; a worker silent for longer is hung.
    let stall_limit = (app.settings.register.poll_interval * 3).max(Duration::from_secs(900));
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        if !enabled {
            continue;
        }
        let silent_for = Utc::now().timestamp() - app.last_beat();
        if silent_for <= stall_limit.as_secs() as i64 {
            notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!(silent_seconds = silent_for, "the job loop is stuck; withholding the watchdog ping");
        }
    }
}

/// The last STATUS= sent to systemd, so that only changes are sent.
#[derive(Default)]
struct Status(Mutex<String>);

impl Status {
    fn update(&self, settings: &Settings, error: Option<&String>) {
        let status = match error {
            None => format!(
                "polling {} every {}",
                settings.register.view,
                humantime::format_duration(settings.register.poll_interval)
            ),
            Some(e) => format!("last poll failed: {}", e.chars().take(120).collect::<String>()),
        };
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *last != status {
            notify(&[sd_notify::NotifyState::Status(&status)]);
            *last = status;
        }
    }
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

fn spawn_signal_handler(token: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
}

/// The host name from uname(2); /proc/sys is hidden by the unit's `ProcSubset=pid`.
fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "fristvakt".into())
}
