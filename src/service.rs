//! The daemon (`fristvakt run`): wiring of the register, state store, mailer, scheduled jobs,
//! HTTP and systemd notification, and the graceful shutdown on SIGTERM/SIGINT.
//!
//! `run` does every fallible start-up step first (state database, migrations, mailer, HTTP
//! listener, digest schedule) so that a broken set-up fails at once with a clear message; after
//! that a failing job logs and retries on its next tick, and the daemon never dies of one bad poll.

use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::app::{App, AppError, Moment};
use crate::config::Settings;
use crate::digest::DigestSchedule;
use crate::jobs;

/// How often the outbox is worked through between polls (retries, window openings).
const DISPATCH_EVERY: Duration = Duration::from_secs(30);
/// How long shutdown waits for the dispatch run in progress before it gives up on it: the run's
/// own grace for a message in flight (`mail::dispatch::SHUTDOWN_GRACE`, after which it records the
/// message unconfirmed) and time to record it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(crate::mail::dispatch::SHUTDOWN_GRACE.as_secs() + 10);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(settings: Arc<Settings>) -> Result<(), AppError> {
    // Unique per process across hosts: it marks this replica's leases and outbox claims.
    let holder = format!("{}-{}-{:08x}", hostname(), std::process::id(), rand::random::<u32>());
    let _state_lock = crate::app::lock_sqlite_state(&settings)?;
    let app = Arc::new(App::start(settings.clone(), holder, Utc::now()).await?);
    app.watch_register_staleness();
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

    // READY=1 once the state is migrated and HTTP listens, before the first poll: a register
    // that blocks the poll must not hold the start (systemd would restart the daemon in a loop);
    // readiness and STATUS= tell operations whether polling works.
    notify(&[sd_notify::NotifyState::Ready]);

    // The jobs, each a task of its own with its own schedule and sign of life: a mail server
    // that does not answer never delays a poll, a blocked register never delays mail.
    // The daemon that holds a SQLite state's lock knows that no other daemon uses the state: a
    // poll lease left by its own crash is its own, taken over at once.
    if _state_lock.is_some() {
        app.sole_daemon.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = jobs::poll::seize_lease(&app, Moment::at(Utc::now(), settings.timezone)).await {
            tracing::warn!("could not take the poll lease at start: {e}");
        }
    }
    let dispatch_now = Arc::new(tokio::sync::Notify::new());
    let poll_now = Arc::new(tokio::sync::Notify::new());
    let leaser = tokio::spawn(lease_job(app.clone(), poll_now.clone()));
    let checker = tokio::spawn(readiness_job(app.clone()));
    let poller = tokio::spawn(poll_job(app.clone(), dispatch_now.clone(), poll_now));
    let digester = tokio::spawn(digest_job(app.clone(), dispatch_now.clone()));
    let dispatcher = tokio::spawn(dispatch_job(app.clone(), dispatch_now));
    watchdog_until_stopped(&app).await;

    notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");
    // The poll and the digest job stop at once (a transaction cut off is rolled back); a
    // dispatch run finishes the mail in flight within the grace.
    let _ = poller.await;
    let _ = digester.await;
    let _ = leaser.await;
    let _ = checker.await;
    let abort = dispatcher.abort_handle();
    if tokio::time::timeout(SHUTDOWN_GRACE, dispatcher).await.is_err() {
        // A mail cut off mid-send stays in the outbox; its claim is not released but lapses
        // (CLAIM_TTL), so that a mail the server may have accepted is not sent again at once.
        abort.abort();
        tracing::warn!(
            "the mail in flight did not finish within the grace period; it stays in the outbox, \
             its claims lapse within {}s",
            crate::mail::dispatch::CLAIM_TTL.as_secs()
        );
    }
    app.close().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    tracing::info!("stopped");
    Ok(())
}

/// The longest one poll may take before it is cut off (and counted failed): a full pass over a
/// million cases takes minutes; an incremental poll is bounded sooner by the statement timeouts.
fn poll_limit(settings: &Settings) -> Duration {
    (settings.register.poll_interval * 3).max(Duration::from_secs(900))
}

/// The longest one dispatch run may take: it claims for `RUN_TIME`, then finishes the mail in
/// hand, each SMTP phase bounded by `mail.smtp.timeout`, the reply to a message's end by
/// `mail.smtp.data_timeout`.
fn dispatch_limit(settings: &Settings) -> Duration {
    crate::mail::dispatch::RUN_TIME
        + settings.mail.smtp.timeout * 4
        + settings.mail.smtp.data_timeout
        + Duration::from_secs(60)
}

/// The longest one digest run may take (it reads the stored deadlines and writes one transaction).
const DIGEST_LIMIT: Duration = Duration::from_secs(600);
/// How soon a digest run that failed is tried again (the same day: `jobs::digest` writes only
/// today's digests, once).
const DIGEST_RETRY: Duration = Duration::from_secs(300);
/// How long a job may overrun its own bound before the watchdog takes it for hung (the bound is
/// a timeout of the job's own; only a job whose runtime is stuck overruns it).
const WATCHDOG_SLACK: Duration = Duration::from_secs(60);

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

/// The poll job: at once, then every `register.poll_interval` from the end of the last; each
/// run bounded by [`poll_limit`]. A poll that succeeds starts a dispatch run.
async fn poll_job(app: Arc<App>, dispatch_now: Arc<tokio::sync::Notify>, poll_now: Arc<tokio::sync::Notify>) {
    let settings = app.settings.clone();
    let token = app.shutdown.clone();
    let status = Status::default();
    let limit = poll_limit(&settings);
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            // This replica took the lease over: the previous holder's poll may be overdue.
            _ = poll_now.notified() => {}
        }
        app.progress.poll.begin(Utc::now());
        let result = tokio::select! {
            result = tokio::time::timeout(limit, poll(&app)) => result.unwrap_or_else(|_| {
                tracing::error!(limit_seconds = limit.as_secs(), "poll cut off: it took longer than its limit");
                Err(format!("the poll took longer than {}", humantime::format_duration(limit)))
            }),
            _ = token.cancelled() => return,
        };
        app.progress.poll.end(Utc::now());
        status.update(&settings, result.as_ref().err());
        if result.is_ok() {
            dispatch_now.notify_one();
        }
        next = tokio::time::Instant::now() + settings.register.poll_interval;
    }
}

/// The longest one attempt at the lease may take.
const LEASE_TRY_LIMIT: Duration = Duration::from_secs(5);

/// The poll lease, apart from the polls: renewed while this replica holds it (also while a long
/// poll runs), tried for every 10 s (`jobs::poll::lease_try_every`) while another holds it, so that within
/// `state.lease_ttl` of a holder's death another replica polls, whatever `poll_interval` is. A
/// replica whose polls keep failing (it gave the lease up) tries only every third time, so that
/// a healthy replica gets it first. Taking the lease over starts a poll at once.
async fn lease_job(app: Arc<App>, poll_now: Arc<tokio::sync::Notify>) {
    let token = app.shutdown.clone();
    let every = jobs::poll::lease_try_every(&app.settings);
    let mut tries: u64 = 0;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        tries += 1;
        let held = app.holds_poll_lease();
        let failing =
            app.poll_failures.load(std::sync::atomic::Ordering::Relaxed) >= jobs::poll::FAILURES_BEFORE_LEASE_RELEASE;
        if !held && failing && !tries.is_multiple_of(3) {
            continue;
        }
        let at = Moment::at(Utc::now(), app.settings.timezone);
        match tokio::time::timeout(LEASE_TRY_LIMIT, jobs::poll::take_lease(&app, at)).await {
            Ok(Ok(true)) if !held => {
                tracing::info!("took the poll lease over; polling now");
                poll_now.notify_one();
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("could not take or renew the poll lease: {e}"),
            Err(_) => tracing::warn!("could not take or renew the poll lease: the state database did not answer"),
        }
    }
}

/// How often readiness is checked in the background.
const READINESS_EVERY: Duration = Duration::from_secs(1);

/// Checks readiness every [`READINESS_EVERY`] (each check bounded), so that `/readyz` answers at
/// once from the last result.
async fn readiness_job(app: Arc<App>) {
    let token = app.shutdown.clone();
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = app.check_readiness(Utc::now()) => {}
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(READINESS_EVERY) => {}
        }
    }
}

/// The dispatch job: a run at start, every 30 seconds, after each poll and digest run, and at
/// once after a run bounded with mail left. Each run bounded by [`dispatch_limit`]; at shutdown
/// the run under way finishes its mail in flight and releases the rest.
async fn dispatch_job(app: Arc<App>, dispatch_now: Arc<tokio::sync::Notify>) {
    let settings = app.settings.clone();
    let token = app.shutdown.clone();
    let limit = dispatch_limit(&settings);
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            _ = dispatch_now.notified() => {}
        }
        app.progress.dispatch.begin(Utc::now());
        let run = jobs::dispatch::run_once(&app, Moment::at(Utc::now(), settings.timezone));
        let more = match tokio::time::timeout(limit, run).await {
            Ok(Ok(report)) => report.more,
            Ok(Err(e)) => {
                tracing::error!("dispatch failed, retrying shortly: {e}");
                false
            }
            Err(_) => {
                tracing::error!(limit_seconds = limit.as_secs(), "dispatch run cut off: it took longer than its limit");
                false
            }
        };
        app.progress.dispatch.end(Utc::now());
        // A run bounded with mail left goes on at once.
        next = tokio::time::Instant::now() + if more { Duration::ZERO } else { DISPATCH_EVERY };
    }
}

/// The digest job: at start (a digest owed today whose time has passed, the daemon down at
/// 07:00, goes out now), then at each cron time; a run that fails is tried again after
/// [`DIGEST_RETRY`], the same day.
async fn digest_job(app: Arc<App>, dispatch_now: Arc<tokio::sync::Notify>) {
    let settings = app.settings.clone();
    let token = app.shutdown.clone();
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        app.progress.digest.begin(Utc::now());
        let run =
            tokio::time::timeout(DIGEST_LIMIT, jobs::digest::run_once(&app, Moment::at(Utc::now(), settings.timezone)));
        let result = tokio::select! {
            result = run => result,
            _ = token.cancelled() => return,
        };
        app.progress.digest.end(Utc::now());
        let failed = match result {
            Ok(Ok(Some(report))) => {
                if report.enqueued > 0 {
                    tracing::info!(digests = report.enqueued, "daily digests written to the outbox");
                }
                dispatch_now.notify_one();
                false
            }
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                tracing::error!(retry_in_seconds = DIGEST_RETRY.as_secs(), "digest job failed: {e}");
                true
            }
            Err(_) => {
                tracing::error!(
                    retry_in_seconds = DIGEST_RETRY.as_secs(),
                    "digest job cut off: it took longer than its limit"
                );
                true
            }
        };
        next = if failed {
            tokio::time::Instant::now() + DIGEST_RETRY
        } else {
            next_digest_instant(&app.schedule, &settings, Utc::now())
        };
    }
}

fn next_digest_instant(schedule: &DigestSchedule, settings: &Settings, now: DateTime<Utc>) -> tokio::time::Instant {
    let wait = schedule
        .next_after(now, settings.timezone)
        .and_then(|t| (t - now).to_std().ok())
        .unwrap_or(Duration::from_secs(24 * 3600));
    tokio::time::Instant::now() + wait
}

/// The job the watchdog finds hung at `now`, if any: each job is judged by its own progress
/// only — a run under way silent for longer than its own bound allows, or a job whose next run
/// is overdue by more than that (its loop no longer turns). A job that waits within its bound
/// (a poll on a blocked register, a dispatch run on a silent mail server) is progress as planned.
pub(crate) fn stalled_job(app: &App, now: DateTime<Utc>) -> Option<(&'static str, i64)> {
    let settings = &app.settings;
    let secs = |d: Duration| (d + WATCHDOG_SLACK).as_secs() as i64;
    let jobs = [
        (
            "poll",
            &app.progress.poll,
            secs(poll_limit(settings)),
            Some(secs(poll_limit(settings) + settings.register.poll_interval)),
        ),
        (
            "dispatch",
            &app.progress.dispatch,
            secs(dispatch_limit(settings)),
            Some(secs(dispatch_limit(settings) + DISPATCH_EVERY)),
        ),
        // The digest job sleeps until its next cron time, days away at a weekend.
        ("digest", &app.progress.digest, secs(DIGEST_LIMIT), None),
    ];
    jobs.into_iter().find_map(|(name, clock, busy_limit, idle_limit)| {
        let silent = clock.silent_for(now);
        let limit = if clock.busy() { Some(busy_limit) } else { idle_limit };
        limit.filter(|limit| silent > *limit).map(|_| (name, silent))
    })
}

/// Pings the systemd watchdog while no job is hung ([`stalled_job`]); a job hung stops the pings
/// so that systemd restarts the service. Returns when the token is cancelled.
async fn watchdog_until_stopped(app: &App) {
    let token = &app.shutdown;
    let mut usec = 0u64;
    let enabled = sd_notify::watchdog_enabled(false, &mut usec);
    let period = if enabled {
        Duration::from_micros(usec / 2).max(Duration::from_millis(100))
    } else {
        Duration::from_secs(3600)
    };
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        if !enabled {
            continue;
        }
        match stalled_job(app, Utc::now()) {
            None => notify(&[sd_notify::NotifyState::Watchdog]),
            Some((job, silent)) => {
                tracing::error!(job, silent_seconds = silent, "a job is hung; withholding the watchdog ping")
            }
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

/// Sends `states` to the service manager's notification socket (`NOTIFY_SOCKET`), waiting at
/// most [`NOTIFY_LIMIT`]: a socket whose queue stays full (a manager that does not read it)
/// drops the message rather than block a thread of the runtime for good, which would keep the
/// daemon from stopping (`sd_notify::notify` waits for room without end).
const NOTIFY_LIMIT: Duration = Duration::from_secs(1);

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    let sent = (|| {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(NOTIFY_LIMIT))?;
        let path = path.as_encoded_bytes();
        match path.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &address)
            }
            None => socket.send_to(message.as_bytes(), std::ffi::OsStr::from_bytes(path)),
        }
    })();
    if let Err(e) = sent {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// SIGTERM and SIGINT stop the daemon; SIGHUP (sent by `systemctl reload`, or by a terminal
/// that closed) is logged and ignored — its default action would kill the daemon. The
/// configuration is read at start: a change needs a restart.
fn spawn_signal_handler(token: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (mut term, mut hup) = match (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
            (Ok(term), Ok(hup)) => (term, hup),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot listen for SIGTERM and SIGHUP: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM received");
                    break;
                }
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("SIGINT received");
                    break;
                }
                _ = hup.recv() => tracing::warn!(
                    "SIGHUP received and ignored: the configuration is read at start; restart the service to apply a change"
                ),
            }
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
