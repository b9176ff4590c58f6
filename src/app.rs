//! The application: everything fallible is built once, here, and every job runs against it.
//!
//! [`App::start`] does each start-up step that can fail (the digest schedule, the mail templates,
//! the mailer, the demo register, the state database and its migrations) before anything runs,
//! so that a broken set-up fails at once with a clear message. The jobs in [`crate::jobs`] take
//! an `&App` and a [`Moment`]; the daemon, the command line and the tests call the same ones.
//! [`App::open_for_reading`] builds the same value for the show commands without writing to the
//! state database.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use crate::config::{DatabaseUrl, Engine, Settings};
use crate::demo::{self, DemoOptions};
use crate::digest::DigestSchedule;
use crate::mail::{self, Mailer, MailerError};
use crate::metrics::{DeliveryMetrics, Metrics};
use crate::register::{Register, RegisterError};
use crate::state::{StateError, StateStore};

/// How long a probe of a database may take before readiness says no.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest one background readiness check may take.
/// (A register that cannot be reached takes the pool's connect timeout, 10 s, to say why.)
const READINESS_CHECK_LIMIT: Duration = Duration::from_secs(15);
/// A background readiness result older than this is not trusted.
const READINESS_STALE: Duration = Duration::from_secs(20);

/// Why the application could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A configuration problem found at start (exit 78); the message names the key.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error("{0}")]
    Runtime(String),
}

/// The moment a job runs for: the instant, and the local day it counts deadlines for.
///
/// In the daemon both come from the clock ([`Moment::at`]); a preview or a test fixes the day
/// ([`Moment::on`]), and then any time of day counts as past `register.full_pass_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub now: DateTime<Utc>,
    pub today: NaiveDate,
    /// The local time of day; `None` when the day was fixed by the caller.
    pub local_time: Option<NaiveTime>,
}

impl Moment {
    /// `now`, with the day and time of day in `tz`.
    pub fn at(now: DateTime<Utc>, tz: Tz) -> Moment {
        let local = now.with_timezone(&tz);
        Moment { now, today: local.date_naive(), local_time: Some(local.time()) }
    }

    /// A fixed day `today`, at the instant `now`.
    pub fn on(today: NaiveDate, now: DateTime<Utc>) -> Moment {
        Moment { now, today, local_time: None }
    }

    /// `today` if given (`--today`), else the day of `now` in `tz`.
    pub fn from_option(today: Option<NaiveDate>, now: DateTime<Utc>, tz: Tz) -> Moment {
        match today {
            Some(today) => Moment::on(today, now),
            None => Moment::at(now, tz),
        }
    }
}

/// Everything the jobs share: configuration, the state store, the register connection, the
/// mailer, the digest schedule and the metrics.
pub struct App {
    pub settings: Arc<Settings>,
    pub state: StateStore,
    pub mailer: Mailer,
    pub schedule: DigestSchedule,
    pub metrics: Metrics,
    /// Delivery per recipient: refusals, escalations, the dispatch pause.
    pub delivery_metrics: DeliveryMetrics,
    /// Unique per process across hosts: it marks this replica's leases and outbox claims.
    pub holder: String,
    /// Cancelled on shutdown: jobs stop taking new work.
    pub shutdown: CancellationToken,
    register: RwLock<Option<Arc<Register>>>,
    /// Each daemon job's own sign of life, judged by the watchdog one by one.
    pub progress: Progress,
    /// When this process built its application (`process_start_time_seconds`).
    pub started: DateTime<Utc>,
    /// Signs of life given so far by dispatch runs (one a mail).
    beats: AtomicU64,
    /// Polls failed in a row; after a few, the poll lease is given up for a healthy replica.
    pub(crate) poll_failures: AtomicU32,
    /// Set when this process holds a SQLite state's lock: no other daemon can use the state, so
    /// its poll lease is never given up for another.
    pub(crate) sole_daemon: AtomicBool,
    /// Whether this process held the poll lease at its last attempt to take it.
    pub(crate) holds_poll_lease: AtomicBool,
    /// Set when this process's last poll rejected every row it read (a view whose column types
    /// changed, say): readiness must not pass while nothing is understood.
    pub(crate) rejecting_every_row: std::sync::Mutex<Option<String>>,
    /// Which cases and children the placements' clocks read, from this process's last poll to
    /// its next (`sync::FactReadersSlot`).
    pub(crate) fact_readers: crate::sync::FactReadersSlot,
    /// When the gauges that count every stored deadline were last set (the day they counted
    /// for, and the instant): a poll that changed nothing refreshes them only when the day
    /// changed or they are older than `jobs::gauges::GAUGES_EVERY`.
    pub(crate) gauges_counted: std::sync::Mutex<Option<(chrono::NaiveDate, std::time::Instant)>>,
    /// The newest `updated_at` in the register as this process knows it (the staleness gauge):
    /// asked of the register by the first poll and by each full pass, and otherwise moved on by
    /// the rows a poll computed — every row changed since the last read is read by the next.
    pub(crate) register_newest: std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    /// Whether polls keep the staleness gauge ([`App::watch_register_staleness`]).
    pub(crate) watches_staleness: AtomicBool,
    /// The last readiness found by the daemon's background check, and when it was found:
    /// `/readyz` answers from it at once, whatever a database does meanwhile.
    checked_readiness: std::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl App {
    /// Builds the application for jobs that write: checks the schedule and the templates, builds
    /// the mailer, creates the demo register when configured, opens the state database and
    /// migrates it (when `state.migrate_on_start`).
    pub async fn start(
        settings: Arc<Settings>,
        holder: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Result<App, AppError> {
        let (schedule, mailer) = prepare(&settings, true)?;
        seed_demo_register(&settings, Moment::at(now, settings.timezone).today).await?;
        let state = StateStore::connect_waiting(&settings.state.url, settings.state.waits).await?;
        if settings.state.migrate_on_start {
            state.migrate().await?;
        }
        Ok(App::assemble(settings, state, mailer, schedule, holder.into(), now))
    }

    /// Builds the application for the show commands (`deadlines`, `explain`, `digest
    /// --dry-run`): nothing is written to the state database. A SQLite state file that does
    /// not exist yet is read as an empty state (in memory).
    pub async fn open_for_reading(settings: Arc<Settings>, now: DateTime<Utc>) -> Result<App, AppError> {
        let (schedule, mailer) = prepare(&settings, false)?;
        seed_demo_register(&settings, Moment::at(now, settings.timezone).today).await?;
        let url = &settings.state.url;
        let missing = url.engine == Engine::Sqlite && url.sqlite_path().is_some_and(|p| !p.exists());
        let stored = if missing { None } else { Some(StateStore::connect_read_only(url).await?) };
        let state = match stored {
            Some(state) if state.has_schema().await => state,
            other => {
                // Nothing polled yet: an empty state, in memory.
                if let Some(state) = other {
                    state.close().await;
                }
                let state = StateStore::connect(&DatabaseUrl::sqlite_in_memory()).await?;
                state.migrate().await?;
                state
            }
        };
        Ok(App::assemble(settings, state, mailer, schedule, format!("show-{}", std::process::id()), now))
    }

    fn assemble(
        settings: Arc<Settings>,
        state: StateStore,
        mailer: Mailer,
        schedule: DigestSchedule,
        holder: String,
        now: DateTime<Utc>,
    ) -> App {
        App {
            settings,
            state,
            mailer,
            schedule,
            metrics: Metrics::new(),
            delivery_metrics: DeliveryMetrics::new(),
            holder,
            shutdown: CancellationToken::new(),
            register: RwLock::new(None),
            progress: Progress::new(now),
            started: now,
            beats: AtomicU64::new(0),
            poll_failures: AtomicU32::new(0),
            sole_daemon: AtomicBool::new(false),
            holds_poll_lease: AtomicBool::new(false),
            rejecting_every_row: std::sync::Mutex::new(None),
            fact_readers: crate::sync::FactReadersSlot::default(),
            gauges_counted: std::sync::Mutex::new(None),
            register_newest: std::sync::Mutex::new(None),
            watches_staleness: AtomicBool::new(false),
            checked_readiness: std::sync::Mutex::new(None),
        }
    }

    /// Makes polls keep the register's staleness gauge: the daemon, whose `/metrics` shows it.
    /// Asking the register for its newest change reads every row stamped within two days of
    /// the newest (after a bulk update, every row), so a process that serves no metrics
    /// (`poll --once`) does not ask: its poll then costs what it reads.
    pub fn watch_register_staleness(&self) {
        self.watches_staleness.store(true, Ordering::Relaxed);
    }

    /// Records a sign of life of a dispatch run (after every mail).
    pub fn beat(&self, now: DateTime<Utc>) {
        self.progress.dispatch.sign(now);
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    /// How many signs of life dispatch runs have given (one after every mail).
    pub fn beats(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }

    /// Whether this process held the poll lease at its last attempt (shown by /readyz and
    /// `fristvakt_poll_lease_held`).
    pub fn holds_poll_lease(&self) -> bool {
        self.holds_poll_lease.load(Ordering::Relaxed)
    }

    /// The register connection, opened on first use and again after [`App::forget_register`].
    pub async fn register(&self) -> Result<Arc<Register>, RegisterError> {
        if let Some(r) = self.register.read().await.as_ref() {
            return Ok(r.clone());
        }
        let mut slot = self.register.write().await;
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let settings = &self.settings.register;
        let register = Register::connect_waiting(&settings.url, &settings.view, settings.waits).await?;
        let register = Arc::new(register.with_placements(&settings.placements_view).await?);
        *slot = Some(register.clone());
        Ok(register)
    }

    /// Closes the register connection after a failure; the next job opens a new one. The close
    /// (which waits for every connection to come back) is bounded: a connection still stuck in a
    /// statement is left to its statement timeout, and the job goes on.
    pub async fn forget_register(&self) {
        let taken = self.register.write().await.take();
        if let Some(r) = taken {
            if tokio::time::timeout(PROBE_TIMEOUT, r.close()).await.is_err() {
                tracing::warn!("the register connection did not close within 3 s; left to its statement timeout");
            }
        }
    }

    /// Checks readiness ([`App::readiness`], bounded by [`READINESS_CHECK_LIMIT`]) and keeps the
    /// result for [`App::checked_readiness`]. The daemon calls it in the background.
    pub async fn check_readiness(&self, now: DateTime<Utc>) {
        let result = tokio::time::timeout(READINESS_CHECK_LIMIT, self.readiness(now))
            .await
            .unwrap_or_else(|_| Err("the state and register checks did not finish within 15 s".into()));
        *self.checked_readiness.lock().unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), result));
    }

    /// Readiness as the background check last found it, at once: not ready before the first
    /// check, or when the last one is older than [`READINESS_STALE`] (the checks themselves hang).
    pub fn checked_readiness(&self) -> Result<(), String> {
        match &*self.checked_readiness.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Err("starting; readiness not checked yet".into()),
            Some((at, _)) if at.elapsed() > READINESS_STALE => {
                Err(format!("readiness last checked {} s ago", at.elapsed().as_secs()))
            }
            Some((_, result)) => result.clone(),
        }
    }

    /// Readiness: the register and state answer, and the last successful poll (by any
    /// replica, as recorded in the state store) is younger than two poll intervals plus
    /// `state.lease_ttl` (the longest a hand-over of the poll lease takes after its holder died),
    /// so that every healthy replica is ready whichever holds the lease.
    pub async fn readiness(&self, now: DateTime<Utc>) -> Result<(), String> {
        if let Some(reason) = self.rejecting_every_row.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(reason);
        }
        match tokio::time::timeout(PROBE_TIMEOUT, self.state.poll_state()).await {
            Ok(Ok(poll_state)) => {
                let limit = chrono::Duration::from_std(
                    self.settings.register.poll_interval * 2 + self.settings.state.lease_ttl,
                )
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

    /// Releases the poll lease and closes the pools. Outbox claims are not released here: a
    /// dispatch run that ends releases the rows it did not attempt itself, and the claims of a
    /// run cut off (shutdown's grace passed) lapse within `CLAIM_TTL`, so that a mail the server
    /// may already have accepted is never handed to another sender at once.
    pub async fn close(&self) {
        let _ = self.state.release_lease(crate::state::POLL_LEASE, &self.holder).await;
        self.close_connections().await;
    }

    /// Closes the register connection and the state pool, writing nothing (the show commands).
    pub async fn close_connections(&self) {
        self.forget_register().await;
        self.state.close().await;
    }
}

/// The daemon's jobs, each with its own sign of life: the watchdog judges each by its own
/// progress, never by another job's wait (`service`).
#[derive(Debug)]
pub struct Progress {
    pub poll: JobClock,
    pub dispatch: JobClock,
    pub digest: JobClock,
}

impl Progress {
    fn new(now: DateTime<Utc>) -> Progress {
        Progress { poll: JobClock::new(now), dispatch: JobClock::new(now), digest: JobClock::new(now) }
    }
}

/// One job's progress stamp: whether a run is under way (since when), and its last sign of
/// life (a run's start and end, and whatever the job counts as progress within a run).
#[derive(Debug)]
pub struct JobClock {
    /// Unix seconds when the run under way began; 0 between runs.
    busy_since: AtomicI64,
    /// Unix seconds of the last sign of life.
    last_sign: AtomicI64,
}

impl JobClock {
    fn new(now: DateTime<Utc>) -> JobClock {
        JobClock { busy_since: AtomicI64::new(0), last_sign: AtomicI64::new(now.timestamp()) }
    }

    /// A run begins.
    pub fn begin(&self, now: DateTime<Utc>) {
        self.busy_since.store(now.timestamp().max(1), Ordering::Relaxed);
        self.sign(now);
    }

    /// A sign of life within a run.
    pub fn sign(&self, now: DateTime<Utc>) {
        self.last_sign.store(now.timestamp(), Ordering::Relaxed);
    }

    /// The run ends, whatever its outcome.
    pub fn end(&self, now: DateTime<Utc>) {
        self.busy_since.store(0, Ordering::Relaxed);
        self.sign(now);
    }

    /// Whether a run is under way.
    pub fn busy(&self) -> bool {
        self.busy_since.load(Ordering::Relaxed) != 0
    }

    /// Seconds since the last sign of life at `now`.
    pub fn silent_for(&self, now: DateTime<Utc>) -> i64 {
        now.timestamp() - self.last_sign.load(Ordering::Relaxed)
    }
}

/// An exclusive lock on a SQLite state database, held by the daemon for its whole life: SQLite
/// state serves one daemon (several replicas share a PostgreSQL state). Released on drop and
/// by the operating system when the process ends, however it ends.
///
/// The lock is a file of its own, never the database file: closing any descriptor of the
/// database file in a process drops every POSIX lock the process holds on it, SQLite's own
/// included; another process closing its connections then takes itself for the last user and
/// deletes the write-ahead log under this one (SQLITE_IOERR_SHORT_READ on the next connection).
/// Nothing in a process that has the state open may open and close the database file itself.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

/// Takes the [`StateLock`] of a SQLite state database (`<state file>.lock`); `None` for
/// PostgreSQL or an in-memory database. A second daemon on the same file gets a clear error.
pub fn lock_sqlite_state(settings: &Settings) -> Result<Option<StateLock>, AppError> {
    let url = &settings.state.url;
    let Some(path) = url.sqlite_path().filter(|_| url.engine == Engine::Sqlite) else {
        return Ok(None);
    };
    let lock_path = std::path::PathBuf::from(format!("{}.lock", path.display()));
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| AppError::Runtime(format!("state.url: cannot create {}: {e}", dir.display())))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| AppError::Runtime(format!("state.url: cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(StateLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Err(AppError::Runtime(format!(
            "state database {} is in use by another fristvakt daemon (lock {}): a SQLite state serves one \
             daemon; run several replicas on a PostgreSQL state",
            path.display(),
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(AppError::Runtime(format!("state.url: cannot lock {}: {e}", lock_path.display())))
        }
    }
}

/// The start-up steps shared by every way of building the application. `writes` is false for
/// the show commands: they send nothing, so the file transport's directory is not created.
fn prepare(settings: &Settings, writes: bool) -> Result<(DigestSchedule, Mailer), AppError> {
    let schedule =
        DigestSchedule::from_settings(settings).map_err(|e| AppError::Config(format!("digest.cron: {e}")))?;
    mail::compose::check_templates(settings).map_err(|e| AppError::Config(e.to_string()))?;
    if !writes && settings.mail.transport == crate::config::Transport::File {
        return Ok((schedule, Mailer::File { dir: settings.mail.file_dir.clone() }));
    }
    let mailer = Mailer::from_settings(&settings.mail).map_err(|e| match e {
        MailerError::Tls { .. } => AppError::Config(e.to_string()),
        MailerError::FileDir { .. } => AppError::Runtime(e.to_string()),
    })?;
    Ok((schedule, mailer))
}

/// Creates demo cases in an empty SQLite register when `register.demo_cases` asks for them.
pub async fn seed_demo_register(settings: &Settings, today: NaiveDate) -> Result<Option<u64>, AppError> {
    let url = &settings.register.url;
    if settings.register.demo_cases == 0 || url.engine != Engine::Sqlite {
        return Ok(None);
    }
    if demo::sqlite_register_has_view(url, &settings.register.view).await? {
        return Ok(None);
    }
    let options = DemoOptions { cases: settings.register.demo_cases as usize, seed: 1, today, broken: 0 };
    let written = demo::write_demo_cases(url, &settings.register.view, demo::generate(&options)).await?;
    let placements =
        demo::write_demo_placements(url, &settings.register.placements_view, &demo::generate_placements(&options))
            .await?;
    tracing::info!(cases = written, placements, "created a demo register with synthetic cases and placements");
    Ok(Some(written))
}
