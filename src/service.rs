//! The daemon (`fristvakt run`): wiring of the register, state store, mailer, scheduled jobs,
//! HTTP and systemd notification, and the graceful shutdown on SIGTERM/SIGINT.
//!
//! `run` does every fallible start-up step first (state database, migrations, mailer, HTTP
//! listener, digest schedule) so that a broken set-up fails at once with a clear message; after
//! that a failing job logs and retries on its next tick, and the daemon never dies of one bad poll.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use crate::commands::{self, CommandError};
use crate::config::{Engine, Settings};
use crate::digest::{self, DigestSchedule};
use crate::mail::{self, Mailer};
use crate::metrics::Metrics;
use crate::poll;
use crate::register::Register;
use crate::rules::ladder::offset_label;
use crate::state::{OutboxCategory, StateStore};

/// How often the outbox is worked through between polls (retries, window openings).
const DISPATCH_EVERY: Duration = Duration::from_secs(30);
/// How long a probe of a database may take before readiness says no.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long shutdown waits for the job in progress (mail in flight) before it gives up on it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// What the HTTP handlers and the jobs share.
pub struct Shared {
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    pub state: StateStore,
    register: RwLock<Option<Arc<Register>>>,
    /// Unix seconds of the worker's last sign of life, for the watchdog.
    heartbeat: AtomicI64,
    /// The last STATUS= sent to systemd, so that only changes are sent.
    last_status: Mutex<String>,
}

impl Shared {
    fn beat(&self, now: DateTime<Utc>) {
        self.heartbeat.store(now.timestamp(), Ordering::Relaxed);
    }

    /// The register connection, opened on first use and after a failure.
    async fn register(&self) -> Result<Arc<Register>, String> {
        if let Some(r) = self.register.read().await.as_ref() {
            return Ok(r.clone());
        }
        let mut slot = self.register.write().await;
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let settings = &self.settings.register;
        let register = Register::connect(&settings.url, &settings.view).await.map_err(|e| e.to_string())?;
        let register = Arc::new(register);
        *slot = Some(register.clone());
        Ok(register)
    }

    async fn forget_register(&self) {
        if let Some(r) = self.register.write().await.take() {
            r.close().await;
        }
    }

    /// Contract §6: the register and state answer, and the last successful poll (by any replica,
    /// as recorded in the state store) is younger than two poll intervals.
    pub async fn readiness(&self, now: DateTime<Utc>) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.state.poll_state()).await {
            Ok(Ok(poll_state)) => {
                let limit = chrono::Duration::from_std(self.settings.register.poll_interval * 2)
                    .unwrap_or(chrono::Duration::minutes(10));
                match poll_state.last_success_at {
                    Some(t) if now - t <= limit => {}
                    Some(t) => return Err(format!("last successful poll was at {}", t.format("%Y-%m-%dT%H:%M:%SZ"))),
                    None => return Err("no successful poll yet".into()),
                }
            }
            Ok(Err(e)) => return Err(format!("state database: {e}")),
            Err(_) => return Err("state database does not answer".into()),
        }
        let url = &self.settings.register.url;
        if url.engine == Engine::Sqlite {
            // An open SQLite connection keeps reading a file that was removed or replaced.
            if let Some(path) = url.sqlite_path().filter(|p| !p.exists()) {
                return Err(format!("register file {} is missing", path.display()));
            }
        }
        let register = self.register().await.map_err(|e| format!("register: {e}"))?;
        match tokio::time::timeout(PROBE_TIMEOUT, register.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("register view {} does not answer", register.view())),
        }
    }

    /// Gauges read at scrape time: the outbox depth (small and indexed). Deadlines by status are
    /// counted after each poll instead: at a million deadlines the count takes seconds, longer
    /// than a scrape may.
    pub async fn refresh_gauges(&self) {
        if let Ok(Ok(depth)) = tokio::time::timeout(PROBE_TIMEOUT, self.state.outbox_depth()).await {
            self.metrics.set_outbox(&depth);
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(settings: Arc<Settings>) -> Result<(), CommandError> {
    // Unique per process across hosts: it marks this replica's leases and outbox claims.
    let holder = format!("{}-{}-{:08x}", hostname(), std::process::id(), rand::random::<u32>());
    let started = Utc::now();
    let schedule =
        DigestSchedule::from_settings(&settings).map_err(|e| CommandError::Config(format!("digest.cron: {e}")))?;
    let mailer = commands::build_mailer(&settings)?;
    mail::compose::check_templates(&settings).map_err(|e| CommandError::Config(e.to_string()))?;
    digest::check_templates(&settings).map_err(|e| CommandError::Config(e.to_string()))?;
    commands::seed_demo_register(&settings, commands::today_or(&settings, None, started)).await?;
    let state = commands::open_state(&settings).await?;
    let listener = tokio::net::TcpListener::bind(settings.http.listen)
        .await
        .map_err(|e| CommandError::Runtime(format!("http.listen {}: cannot listen: {e}", settings.http.listen)))?;
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        metrics: Metrics::new(),
        state,
        register: RwLock::new(None),
        heartbeat: AtomicI64::new(started.timestamp()),
        last_status: Mutex::new(String::new()),
    });
    let token = CancellationToken::new();
    let http = {
        let token = token.clone();
        let app = crate::http::router(shared.clone());
        tokio::spawn(async move {
            let result = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
            if let Err(e) = result {
                tracing::error!("http server stopped: {e}");
            }
        })
    };
    tracing::info!(listen = %settings.http.listen, holder = %holder, "fristvakt started");
    spawn_signal_handler(token.clone());

    // READY=1 after migration and the first poll attempt, whatever its outcome: readiness then
    // tells operations whether polling works.
    let first = poll_cycle(&shared, &holder, Utc::now()).await;
    notify(&[sd_notify::NotifyState::Ready]);
    notify_status(&shared, first.as_ref().err());

    let worker = {
        let shared = shared.clone();
        let token = token.clone();
        let holder = holder.clone();
        tokio::spawn(async move { worker(shared, mailer, schedule, token, holder).await })
    };
    watchdog_until_stopped(&shared, &token).await;

    notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");
    let abort = worker.abort_handle();
    if tokio::time::timeout(SHUTDOWN_GRACE, worker).await.is_err() {
        // Stop the worker before its claims are released, so that nothing it still sends
        // races with another sender; a mail cut off mid-send stays in the outbox.
        abort.abort();
        tracing::warn!("the job in progress did not finish within the grace period; its mail stays in the outbox");
    }
    if let Err(e) = shared.state.release_claims(&holder).await {
        tracing::warn!("could not release outbox claims: {e}");
    }
    let _ = shared.state.release_lease("poll", &holder).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    shared.forget_register().await;
    shared.state.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The scheduled jobs, one after another: poll every `register.poll_interval`, dispatch every
/// 30 seconds and after each poll, digests at their cron times.
async fn worker(
    shared: Arc<Shared>,
    mailer: Mailer,
    schedule: DigestSchedule,
    token: CancellationToken,
    holder: String,
) {
    let settings = shared.settings.clone();
    let poll_every = settings.register.poll_interval;
    let mut next_poll = tokio::time::Instant::now() + poll_every;
    let mut next_dispatch = tokio::time::Instant::now();
    // A digest owed today whose time has passed (the daemon was down at 07:00) goes out now.
    let mut digest_due_now = true;
    let mut next_digest = next_digest_instant(&schedule, &settings, Utc::now());
    loop {
        shared.beat(Utc::now());
        let wake =
            next_poll.min(next_dispatch).min(if digest_due_now { tokio::time::Instant::now() } else { next_digest });
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now_instant = tokio::time::Instant::now();
        let now = Utc::now();
        if now_instant >= next_poll {
            let result = poll_cycle(&shared, &holder, now).await;
            notify_status(&shared, result.as_ref().err());
            next_poll = tokio::time::Instant::now() + poll_every;
            next_dispatch = tokio::time::Instant::now();
        }
        if digest_due_now || now_instant >= next_digest {
            digest_due_now = false;
            match digest::run_due(&shared.state, &settings, &schedule, Utc::now()).await {
                Ok(Some(report)) if report.enqueued > 0 => {
                    tracing::info!(digests = report.enqueued, "daily digests written to the outbox");
                }
                Ok(_) => {}
                Err(e) => tracing::error!("digest job failed: {e}"),
            }
            next_digest = next_digest_instant(&schedule, &settings, Utc::now());
            next_dispatch = tokio::time::Instant::now();
        }
        if tokio::time::Instant::now() >= next_dispatch {
            shared.beat(Utc::now());
            dispatch(&shared, &mailer, &holder, &token).await;
            next_dispatch = tokio::time::Instant::now() + DISPATCH_EVERY;
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

/// One poll: synchronise the register, record reached ladder steps, update metrics. Several
/// replicas may run; the `poll` lease lets one of them poll at a time (re-processing would be
/// harmless, but doubles the load on the register).
async fn poll_cycle(shared: &Shared, holder: &str, now: DateTime<Utc>) -> Result<(), String> {
    let settings = &shared.settings;
    let local = now.with_timezone(&settings.timezone);
    let today = local.date_naive();
    let lease_for = chrono::Duration::from_std(settings.register.poll_interval * 2 + Duration::from_secs(600))
        .unwrap_or(chrono::Duration::minutes(30));
    match shared.state.acquire_lease("poll", holder, now, now + lease_for).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!("another replica holds the poll lease; not polling");
            return Ok(());
        }
        Err(e) => {
            tracing::error!("poll skipped: {e}");
            return Err(e.to_string());
        }
    }
    let started = std::time::Instant::now();
    let result = async {
        let register = shared.register().await?;
        let poll_state = shared.state.poll_state().await.map_err(|e| e.to_string())?;
        let full = poll::full_pass_due(
            poll_state.last_full_pass_on,
            today,
            Some(local.time()),
            settings.register.full_pass_at,
        );
        let sync = match poll::sync_register(&register, &shared.state, settings, today, now, full).await {
            Ok(sync) => sync,
            Err(e) => {
                shared.forget_register().await;
                return Err(e.to_string());
            }
        };
        shared.metrics.add_rows(sync.rows_read, &sync.rejected);
        if let Ok(Some(newest)) = register.newest_update().await {
            shared.metrics.set_register_staleness((now - newest).num_milliseconds().max(0) as f64 / 1000.0);
        }
        let ladder = poll::evaluate_ladders(&shared.state, settings, today, now).await.map_err(|e| e.to_string())?;
        for ((kind, step), n) in &ladder.enqueued {
            shared.metrics.add_notice(kind.as_str(), offset_label(*step), "enqueued", *n);
        }
        shared.metrics.add_caseworker_fallbacks(ladder.caseworker_fallbacks);
        shared.state.record_poll_success(now).await.map_err(|e| e.to_string())?;
        match shared.state.deadline_counts(today).await {
            Ok(counts) => shared.metrics.set_deadlines(counts),
            Err(e) => tracing::warn!("could not count deadlines for the metrics: {e}"),
        }
        Ok::<bool, String>(sync.full)
    }
    .await;
    let pass = if matches!(result, Ok(true)) { "full" } else { "incremental" };
    shared.metrics.observe_poll(pass, started.elapsed(), result.is_ok());
    match result {
        Ok(_) => {
            shared.metrics.set_last_successful_poll(now.timestamp() as f64);
            Ok(())
        }
        Err(e) => {
            tracing::error!("poll failed, retrying at the next interval: {e}");
            Err(e)
        }
    }
}

async fn dispatch(shared: &Shared, mailer: &Mailer, holder: &str, token: &CancellationToken) {
    let now = Utc::now();
    let today = now.with_timezone(&shared.settings.timezone).date_naive();
    match mail::dispatch::dispatch_until(&shared.state, mailer, &shared.settings, now, today, holder, Some(token)).await
    {
        Ok(report) => {
            for (outcome, map) in [
                ("sent", &report.sent),
                ("retrying", &report.retrying),
                ("dead", &report.dead),
                ("postponed", &report.postponed),
            ] {
                for (label, n) in map {
                    match (label.category, label.kind) {
                        (Some(OutboxCategory::Digest), _) if outcome == "sent" => shared.metrics.add_digests_sent(*n),
                        (_, Some(kind)) => shared.metrics.add_notice(
                            kind.as_str(),
                            label.step.map(offset_label).unwrap_or_default(),
                            outcome,
                            *n,
                        ),
                        _ => {}
                    }
                }
            }
            for (class, n) in &report.errors {
                shared.metrics.add_smtp_error(class, *n);
            }
        }
        Err(e) => tracing::error!("dispatch failed, retrying shortly: {e}"),
    }
}

/// Pings the systemd watchdog while the worker shows signs of life; a worker stuck for longer
/// than the stall limit stops the pings so that systemd restarts the service. Returns when the
/// token is cancelled.
async fn watchdog_until_stopped(shared: &Shared, token: &CancellationToken) {
    let mut usec = 0u64;
    let enabled = sd_notify::watchdog_enabled(false, &mut usec);
    let period = if enabled {
        Duration::from_micros(usec / 2).max(Duration::from_millis(100))
    } else {
        Duration::from_secs(3600)
    };
    // A full pass over a million cases may take minutes; a worker silent for longer is hung.
    let stall_limit = (shared.settings.register.poll_interval * 3).max(Duration::from_secs(900));
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        if !enabled {
            continue;
        }
        let silent_for = Utc::now().timestamp() - shared.heartbeat.load(Ordering::Relaxed);
        if silent_for <= stall_limit.as_secs() as i64 {
            notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!(silent_seconds = silent_for, "the job loop is stuck; withholding the watchdog ping");
        }
    }
}

fn notify_status(shared: &Shared, error: Option<&String>) {
    let status = match error {
        None => format!(
            "polling {} every {}",
            shared.settings.register.view,
            humantime::format_duration(shared.settings.register.poll_interval)
        ),
        Some(e) => format!("last poll failed: {}", e.chars().take(120).collect::<String>()),
    };
    let mut last = shared.last_status.lock().unwrap_or_else(|e| e.into_inner());
    if *last != status {
        notify(&[sd_notify::NotifyState::Status(&status)]);
        *last = status;
    }
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

fn spawn_signal_handler(token: CancellationToken) {
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
