//! The dispatcher: claims due outbox rows, renders and sends them, and records the outcome.
//!
//! Architecture invariant: no database transaction is held across an SMTP call. A row is
//! claimed (a short statement that stamps holder and expiry), then sent, then marked — each its
//! own statement. Claims are short ([`CLAIM_TTL`]) and renewed while the sender works, so a
//! sender that dies leaves claims that lapse within seconds, after which another sender takes
//! the rows. Every write after the claim is fenced (it names the holder and reports whether
//! the claim was still held). A sender whose renewals fail (state store unreachable) abandons
//! a mail before its claim can lapse rather than race the sender that takes it over; only a
//! mail the server accepted in the instant before a sender died can go out twice, with the same
//! Message-ID, so that a recipient's mail program recognises it.
//!
//! Delivery is per recipient: each recipient's reply is recorded with the row (`deliveries`),
//! a retry goes only to the recipients still owed the mail, a row is `sent` once every
//! recipient is settled and at least one received it, and a notice that every recipient
//! refused goes one role up as a new row (key + `/up`). A refusal of fristvakt itself by the
//! server (TLS, AUTH, `MAIL FROM`) is no fault of the mail: the row stays `retrying`, never
//! dies of it, and the run stops (paused) without trying the rest of the outbox.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, Transport};
use crate::domain::{log_safe, EmailAddress};
use crate::mail::compose::{compose_digest, compose_notice_instead_of, usable_address, ComposeError};
use crate::mail::transport::{scrub, Connection, DeliverError, Mailer, RecipientResult, SendError};
use crate::notice::{message_id, Recipient};
use crate::rules::Kind;
use crate::state::{
    Attempt, Delivery, DeliveryOutcome, Escalation, OutboxCategory, OutboxPayload, OutboxRow, OutboxState, Recorded,
    StateError, StateStore, UndecodableRow,
};

/// How long a claim lasts unless renewed: a replica that dies holds its rows no longer.
pub const CLAIM_TTL: Duration = Duration::from_secs(30);
/// How often a working sender renews its claims.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// A sender starts no mail, and abandons the one in hand, when its claim has less than this
/// left (clocks of replicas may differ by a little).
const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// How long, once the daemon stops, a message whose end went out waits for the server's reply;
/// then it is left unconfirmed (recorded to be tried again after `mail.smtp.data_timeout`),
/// its claim never released for another sender to send it at once.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// The longest one renewal may take before it counts as failed.
const RENEW_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// What one dispatch did, per outbox category, kind and step; for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchReport {
    pub sent: BTreeMap<MailLabel, u64>,
    /// Failed transiently; a later dispatch tries again.
    pub retrying: BTreeMap<MailLabel, u64>,
    /// Failed permanently, or transiently for longer than `mail.give_up_after`.
    pub dead: BTreeMap<MailLabel, u64>,
    /// The sending window was closed; moved to its next opening.
    pub postponed: BTreeMap<MailLabel, u64>,
    /// Failures per bounded class (connect, timeout, tls, transient_4xx, permanent_5xx, io,
    /// other, compose, bad_payload, unknown_category). A recipient refused with 5xx counts
    /// once under `permanent_5xx`, also when the row's other recipients received it.
    pub errors: BTreeMap<&'static str, u64>,
    /// Recipients refused permanently, per row label (the row may still be sent to others).
    pub refused_recipients: BTreeMap<MailLabel, u64>,
    /// Notices written one role up because they reached none of their recipients.
    pub escalated: BTreeMap<MailLabel, u64>,
    /// Dead letters by cause (`refused`, `gave_up`, `unreadable`): rows given up that reached
    /// nobody and went to no role up — the last resort, for an operator to act on.
    pub dead_letters: BTreeMap<&'static str, u64>,
    /// Refusals of fristvakt by the server (tls, auth, sender, greeting): each stopped the run.
    pub server_refusals: BTreeMap<&'static str, u64>,
    /// The mail server could not be reached or would not talk (connect, timeout, transient):
    /// the run stopped, the rows kept their place.
    pub unavailable: Option<&'static str>,
    /// Rows whose claim another sender had taken when this one recorded (after a lapse), or
    /// that this sender abandoned because it could not renew its claim.
    pub claims_lost: u64,
    /// Mails whose final `.` went out without a reply (no reply within `mail.smtp.data_timeout`,
    /// the connection lost, or the shutdown grace over): the server may have them; each is tried
    /// again only once the data timeout has passed.
    pub unconfirmed: u64,
    /// The run stopped at its bound (rows or time) with rows possibly left: the next run is due
    /// at once.
    pub more: bool,
}

/// The bounded labels of an outbox row: never a case reference or an address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MailLabel {
    /// `None` for a row whose stored category this version does not know.
    pub category: Option<OutboxCategory>,
    pub kind: Option<Kind>,
    pub step: Option<i32>,
}

impl DispatchReport {
    pub fn total_sent(&self) -> u64 {
        self.sent.values().sum()
    }

    pub fn total_retrying(&self) -> u64 {
        self.retrying.values().sum()
    }

    pub fn total_dead(&self) -> u64 {
        self.dead.values().sum()
    }

    pub fn total_postponed(&self) -> u64 {
        self.postponed.values().sum()
    }

    pub fn total_refused_recipients(&self) -> u64 {
        self.refused_recipients.values().sum()
    }

    pub fn total_escalated(&self) -> u64 {
        self.escalated.values().sum()
    }

    pub fn total_dead_letters(&self) -> u64 {
        self.dead_letters.values().sum()
    }

    /// Adds the counts of a later run to these; `more` is the later run's.
    pub fn absorb(&mut self, other: DispatchReport) {
        fn add<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
            for (k, n) in from {
                *into.entry(k).or_default() += n;
            }
        }
        add(&mut self.sent, other.sent);
        add(&mut self.retrying, other.retrying);
        add(&mut self.dead, other.dead);
        add(&mut self.postponed, other.postponed);
        add(&mut self.errors, other.errors);
        add(&mut self.refused_recipients, other.refused_recipients);
        add(&mut self.escalated, other.escalated);
        add(&mut self.dead_letters, other.dead_letters);
        add(&mut self.server_refusals, other.server_refusals);
        self.unavailable = self.unavailable.or(other.unavailable);
        self.claims_lost += other.claims_lost;
        self.unconfirmed += other.unconfirmed;
        self.more = other.more;
    }

    /// Whether the run stopped because the server refused fristvakt itself or could not be
    /// reached.
    pub fn paused(&self) -> bool {
        !self.server_refusals.is_empty() || self.unavailable.is_some()
    }
}

/// How a dispatch run is steered from outside: `stop` (the daemon's shutdown) ends it: the
/// mail in flight is finished and recorded, the rows not started are released; `beat` is called
/// after every row, as the watchdog's sign of life.
#[derive(Clone, Copy)]
pub struct RunControl<'a> {
    pub stop: Option<&'a CancellationToken>,
    pub beat: &'a (dyn Fn() + Sync),
}

/// The most rows one dispatch run attempts; the rest wait for the next run (30 s later).
const RUN_ROWS: usize = 500;
/// The longest a dispatch run claims new rows; rows in hand are finished.
pub const RUN_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Sends every outbox row due at `now` (the days in the mail counted from `today`), batch by
/// batch, until none is left, or until `stop` is cancelled (the daemon's shutdown: the mail in
/// flight is finished, the rest released); `beat` is called after every row (the watchdog's sign
/// of life). A run takes only rows due at `now` and at most `RUN_ROWS` rows or `RUN_TIME`, so it
/// always ends. While it works, its claims are renewed every [`RENEW_EVERY`]. The dispatch job
/// (`jobs::dispatch`) is its one caller.
pub async fn dispatch_until(
    state: &StateStore,
    mailer: &Mailer,
    settings: &Arc<Settings>,
    now: DateTime<Utc>,
    today: NaiveDate,
    holder: &str,
    control: RunControl<'_>,
) -> Result<DispatchReport, DispatchError> {
    let started = std::time::Instant::now();
    // Owned by the run and shared with its senders, each a task of its own (so that they use
    // every core: rendering, message encoding and the SMTP conversation, not one thread).
    let ctx = Arc::new(Context {
        state: state.clone(),
        mailer: mailer.clone(),
        settings: Arc::clone(settings),
        start: now,
        started,
        today,
        holder: holder.to_string(),
        window_open: settings.mail.send_window.is_open(now, settings.timezone),
        stop: control.stop.cloned(),
        paused: Mutex::new(None),
        valid_until: Mutex::new(now),
        records: GroupCommit::default(),
        lanes: Lanes::new(concurrency(settings)),
    });
    // The renewal runs beside the work, in the same task, and ends with it.
    let report = tokio::select! {
        biased;
        report = run(&ctx, control.beat) => report,
        never = renew(&ctx) => match never {},
    };
    // The log the run's records went to is checkpointed beside the next run (none inside them).
    ctx.state.checkpoint_in_background();
    // The senders' connections end with the run (a run cut off drops them, closing their sockets).
    for lane in lock(&ctx.lanes.free).drain(..) {
        if let Some(connection) = lane.connection {
            connection.close();
        }
    }
    let report = report?;
    if report != DispatchReport::default() {
        tracing::info!(
            sent = report.total_sent(),
            retrying = report.total_retrying(),
            dead = report.total_dead(),
            postponed = report.total_postponed(),
            refused_recipients = report.total_refused_recipients(),
            escalated = report.total_escalated(),
            dead_letters = report.total_dead_letters(),
            claims_lost = report.claims_lost,
            paused = report.paused(),
            "outbox dispatched"
        );
    }
    Ok(report)
}

async fn run(ctx: &Arc<Context>, beat: &(dyn Fn() + Sync)) -> Result<DispatchReport, DispatchError> {
    let concurrency = concurrency(&ctx.settings);
    let batch = (concurrency * 4).min(50) as i64;
    let ttl = chrono::Duration::from_std(CLAIM_TTL).unwrap_or(chrono::Duration::seconds(30));
    let mut report = DispatchReport::default();
    let mut attempted = 0usize;
    // The claimed rows not yet started, most urgent first, and the senders at work: a sender
    // that finishes takes the next row at once, and the next rows are claimed while the
    // senders work, so that no connection waits for the slowest mail of a batch or for a claim.
    let mut waiting: VecDeque<Result<OutboxRow, UndecodableRow>> = VecDeque::new();
    // Each sender is a task of its own; the set aborts them if the run is dropped (cut off), as
    // dropping the run's future did when they ran inside it.
    let mut senders: JoinSet<Result<(MailLabel, Handled), StateError>> = JoinSet::new();
    // Nothing more is claimed in this run: nothing left due, a bound reached, paused or stopping,
    // or the state store failed.
    let mut claims_done = false;
    // The last claim found nothing due while senders were at work: the next waits until one
    // finishes, since a sender may add a row due in this run (the notice one role up).
    let mut found_none = false;
    // The first failure of the state store: the senders at work finish (a mail in flight is
    // recorded if it can be), nothing more starts, and the run returns it. The rows claimed and
    // not started are left to lapse, as a run cut off leaves them.
    let mut failed: Option<StateError> = None;
    loop {
        // Each row is claimed, so concurrent handling cannot send one twice; `concurrency`
        // bounds how many SMTP connections are open at once (the lanes), and twice as many
        // senders are at work, so that while a sender's record commits, another renders its
        // mail and sends the envelope on the same connection (`Lanes`).
        while senders.len() < 2 * concurrency && failed.is_none() {
            let Some(row) = waiting.pop_front() else { break };
            let ctx = Arc::clone(ctx);
            senders.spawn(async move { handle_claimed(&ctx, &row).await });
        }
        // Rows already claimed are still started when paused or stopping: each releases its
        // claim (`handle`).
        if !claims_done && (ctx.stopping() || ctx.paused() || failed.is_some()) {
            claims_done = true;
        }
        // A run ends: it takes only rows due when it started (a row that fails in this run is
        // due again later, in a later run), and at most RUN_ROWS rows or RUN_TIME, so that a
        // slow or silent mail server never holds the job loop.
        if !claims_done && (attempted >= RUN_ROWS || ctx.started.elapsed() >= RUN_TIME) {
            tracing::debug!(attempted, "dispatch run bounded; the rest goes out in the next run");
            report.more = true;
            claims_done = true;
        }
        if !claims_done && !found_none && waiting.len() < concurrency {
            // Each claim lasts CLAIM_TTL from when it is taken; the renewal extends it while the
            // rows are worked on. The senders go on while it is taken.
            let claimed_at = ctx.now();
            let claim = ctx.state.claim_outbox(&ctx.holder, ctx.start, claimed_at, claimed_at + ttl, batch);
            tokio::pin!(claim);
            let mut finished_meanwhile = false;
            let rows = loop {
                tokio::select! {
                    rows = &mut claim => break rows,
                    Some(outcome) = senders.join_next(), if !senders.is_empty() => {
                        beat();
                        tally(&mut report, &mut failed, joined(outcome));
                        finished_meanwhile = true;
                    }
                }
            };
            match rows {
                Err(e) => {
                    failed.get_or_insert(e);
                }
                // A sender that finished meanwhile may have added a row after the claim looked.
                Ok(rows) if rows.is_empty() && finished_meanwhile => {}
                Ok(rows) if rows.is_empty() && senders.is_empty() && waiting.is_empty() => claims_done = true,
                Ok(rows) if rows.is_empty() => found_none = true,
                Ok(rows) => {
                    // Claims in hand hold until the earliest of their expiries: rows claimed before
                    // these lapse sooner unless renewed (a renewal extends every claim in hand).
                    let mut valid_until = lock(&ctx.valid_until);
                    let until = claimed_at + ttl;
                    *valid_until =
                        if senders.is_empty() && waiting.is_empty() { until } else { until.min(*valid_until) };
                    attempted += rows.len();
                    waiting.extend(rows);
                }
            }
            continue;
        }
        // Nothing waits unstarted while a sender is free, so an empty set means nothing is left.
        match senders.join_next().await {
            Some(outcome) => {
                beat();
                tally(&mut report, &mut failed, joined(outcome));
                found_none = false;
            }
            None => break,
        }
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    if let Some(class) = *lock(&ctx.paused) {
        tracing::error!(
            class,
            "the mail server refuses fristvakt or cannot be reached; dispatch paused until the next run, the outbox kept"
        );
    }
    Ok(report)
}

/// What a sender's task came to: a sender that panicked passes its panic on, as it did when
/// the senders ran inside the run's future. `None` for a task cancelled (the runtime shutting
/// down): nothing is known of it, and its claim lapses.
fn joined(
    outcome: Result<Result<(MailLabel, Handled), StateError>, JoinError>,
) -> Option<Result<(MailLabel, Handled), StateError>> {
    match outcome {
        Ok(outcome) => Some(outcome),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => {
            tracing::warn!("a sender was cancelled; its claim lapses");
            None
        }
    }
}

/// Counts what handling one row came to, or keeps the first failure of the state store.
fn tally(
    report: &mut DispatchReport,
    failed: &mut Option<StateError>,
    outcome: Option<Result<(MailLabel, Handled), StateError>>,
) {
    let (label, handled) = match outcome {
        Some(Ok(handled)) => handled,
        Some(Err(e)) => {
            failed.get_or_insert(e);
            return;
        }
        None => return,
    };
    if handled.refused > 0 {
        *report.errors.entry("permanent_5xx").or_default() += handled.refused;
        *report.refused_recipients.entry(label.clone()).or_default() += handled.refused;
    }
    if handled.escalated {
        *report.escalated.entry(label.clone()).or_default() += 1;
    }
    if handled.unconfirmed {
        report.unconfirmed += 1;
    }
    if let Some(cause) = handled.dead_letter {
        *report.dead_letters.entry(cause).or_default() += 1;
    }
    let map = match handled.outcome {
        Outcome::Released => return,
        Outcome::ClaimLost => {
            report.claims_lost += 1;
            return;
        }
        Outcome::Unavailable(class) => {
            *report.errors.entry(class).or_default() += 1;
            report.unavailable.get_or_insert(class);
            return;
        }
        Outcome::Sent => &mut report.sent,
        Outcome::Postponed => &mut report.postponed,
        Outcome::Retrying(class) => {
            *report.errors.entry(class).or_default() += 1;
            &mut report.retrying
        }
        Outcome::ServerRefused(class) => {
            *report.server_refusals.entry(class).or_default() += 1;
            *report.errors.entry(if class == "tls" { "tls" } else { "permanent_5xx" }).or_default() += 1;
            &mut report.retrying
        }
        Outcome::Dead(class) => {
            // Recipients refused one by one were counted above.
            if handled.refused == 0 {
                *report.errors.entry(class).or_default() += 1;
            }
            &mut report.dead
        }
    };
    *map.entry(label).or_default() += 1;
}

/// Renews this sender's claims every [`RENEW_EVERY`] for as long as the run works; never ends
/// on its own. A renewal that fails leaves `valid_until` where it was, so that the sender stops
/// before its claims lapse.
async fn renew(ctx: &Context) -> std::convert::Infallible {
    let ttl = chrono::Duration::from_std(CLAIM_TTL).unwrap_or(chrono::Duration::seconds(30));
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let at = ctx.now();
        match tokio::time::timeout(RENEW_TIMEOUT, ctx.state.renew_claims(&ctx.holder, at + ttl)).await {
            Ok(Ok(_)) => *lock(&ctx.valid_until) = at + ttl,
            Ok(Err(e)) => tracing::warn!("could not renew outbox claims: {e}"),
            Err(_) => tracing::warn!("could not renew outbox claims: the state database did not answer"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The delay before attempt number `attempts + 1`: `retry_initial · 2^attempts`, capped at
/// `retry_max`, times `jitter` (0.8–1.2 in use) so that mails failed together do not retry in
/// lockstep.
pub fn retry_delay(settings: &Settings, attempts: i64, jitter: f64) -> chrono::Duration {
    let initial = settings.mail.retry_initial.as_secs_f64();
    let max = settings.mail.retry_max.as_secs_f64();
    let base = (initial * 2f64.powi(attempts.clamp(0, 40) as i32)).min(max);
    chrono::Duration::milliseconds((base * jitter * 1000.0).round() as i64)
}

fn concurrency(settings: &Settings) -> usize {
    match settings.mail.transport {
        Transport::Smtp => settings.mail.smtp.pool_size.max(1) as usize,
        Transport::File => 4,
    }
}

struct Context {
    state: StateStore,
    mailer: Mailer,
    settings: Arc<Settings>,
    /// The run's start; [`Context::now`] adds the time the run has taken.
    start: DateTime<Utc>,
    started: std::time::Instant,
    today: NaiveDate,
    holder: String,
    window_open: bool,
    stop: Option<CancellationToken>,
    /// Set by the first refusal of fristvakt by the server, or its first failure to answer:
    /// rows not yet attempted are released.
    paused: Mutex<Option<&'static str>>,
    /// Until when this sender's claims are known to hold: the last claim or renewal's expiry.
    valid_until: Mutex<DateTime<Utc>>,
    /// The group commit of the senders' records.
    records: GroupCommit,
    /// The senders' SMTP connections, each with the commit of the last mail sent on it.
    lanes: Lanes,
}

/// The lanes of a run, `concurrency` of them: each an SMTP connection (open, or to be opened)
/// and the commit of the last mail the server took on it. A sender holds a lane for the SMTP
/// transaction of its mail only: it sends the envelope (`MAIL FROM`, `RCPT TO`, `DATA`) at once,
/// but the message — whose final `.` is where the server accepts the mail — only once the
/// lane's previous mail is recorded; then it hands the lane on and waits for its own record.
/// So the next mail's rendering and envelope overlap the previous mail's commit, while the
/// server never accepts a mail on a lane before the previous one there is committed: a sender
/// that dies leaves at most one mail per lane accepted and unrecorded. A commit that fails
/// leaves its lane failed for the rest of the run: the mail waiting on it is not sent (its
/// connection closed mid-`DATA`, so that the server takes nothing) and its claim released.
struct Lanes {
    /// One permit a lane: a sender waits here for a free one.
    permits: tokio::sync::Semaphore,
    /// The free lanes, the longest free first (its previous commit the likeliest done).
    free: Mutex<VecDeque<Lane>>,
}

impl Lanes {
    fn new(lanes: usize) -> Lanes {
        Lanes {
            permits: tokio::sync::Semaphore::new(lanes),
            free: Mutex::new((0..lanes).map(|_| Lane::default()).collect()),
        }
    }
}

#[derive(Default)]
struct Lane {
    connection: Option<Connection>,
    previous: Previous,
}

/// The commit of the last mail sent on a lane.
#[derive(Default)]
enum Previous {
    /// Committed (or no mail yet).
    #[default]
    Committed,
    /// Being recorded: its sender sends on the channel once the outcome is committed, and drops
    /// it (the lane failed) if it is not.
    Pending(tokio::sync::oneshot::Receiver<()>),
    /// Its record failed, or its sender was dropped before it committed.
    Failed,
}

impl Previous {
    /// Waits for the previous mail's commit; whether it committed.
    async fn committed(&mut self) -> bool {
        if let Previous::Pending(receiver) = self {
            *self = match receiver.await {
                Ok(()) => Previous::Committed,
                Err(_) => Previous::Failed,
            };
        }
        matches!(self, Previous::Committed)
    }
}

/// The senders' records committed in groups: a sender whose mail the server took queues its
/// record and waits for the commit that holds it; the sender that gets the turn commits every
/// record queued by then at once (`StateStore::record_attempts`: one statement, or one
/// transaction when a record writes a notice one role up), while the records
/// queued meanwhile wait for the next. So no record waits longer than the commit under way and
/// its own, and no sender starts another mail before its record is committed: at most one mail
/// per sender is ever taken by the server and not yet recorded (the kill test's bound).
#[derive(Default)]
struct GroupCommit {
    queue: Mutex<Vec<Queued>>,
    turn: tokio::sync::Mutex<()>,
}

/// A record waiting for its commit, owned (the sender that commits it may be another), and the
/// way its outcome goes back: `None` when the group's transaction failed and nothing of it was
/// written, so that the sender records alone and gets its own answer.
struct Queued {
    row: OutboxRow,
    attempt: OwnedAttempt,
    done: tokio::sync::oneshot::Sender<Option<Recorded>>,
}

/// An [`Attempt`] that owns what it says.
struct OwnedAttempt {
    state: OutboxState,
    next: Option<DateTime<Utc>>,
    error: Option<String>,
    deliveries: Vec<Delivery>,
    sent_at: Option<DateTime<Utc>>,
    escalation: Option<Escalation>,
}

impl OwnedAttempt {
    fn of(attempt: &Attempt<'_>) -> OwnedAttempt {
        OwnedAttempt {
            state: attempt.state,
            next: attempt.next,
            error: attempt.error.map(str::to_string),
            deliveries: attempt.deliveries.to_vec(),
            sent_at: attempt.sent_at,
            escalation: attempt.escalation.clone(),
        }
    }

    fn attempt(&self) -> Attempt<'_> {
        Attempt {
            state: self.state,
            next: self.next,
            error: self.error.as_deref(),
            deliveries: &self.deliveries,
            sent_at: self.sent_at,
            escalation: self.escalation.clone(),
        }
    }
}

impl Context {
    /// Records an attempt at a claimed row (fenced, as `StateStore::record_attempt`) in the
    /// next group commit, and returns once it is committed.
    async fn record(&self, row: &OutboxRow, attempt: Attempt<'_>) -> Result<Recorded, StateError> {
        let (done, mut outcome) = tokio::sync::oneshot::channel();
        lock(&self.records.queue).push(Queued { row: row.clone(), attempt: OwnedAttempt::of(&attempt), done });
        let recorded = {
            let _turn = self.records.turn.lock().await;
            match outcome.try_recv() {
                // Committed with the group of a sender before this one (`None`: that group's
                // transaction failed, or its sender was dropped before it answered).
                Ok(recorded) => recorded,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => None,
                // This sender commits the group: every record queued by now, its own among them.
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    let group = std::mem::take(&mut *lock(&self.records.queue));
                    let attempts: Vec<_> = group.iter().map(|q| (&q.row, q.attempt.attempt())).collect();
                    let recorded = match self.state.record_attempts(&self.holder, &attempts).await {
                        Ok(recorded) => Some(recorded),
                        Err(e) => {
                            tracing::warn!(
                                records = group.len(),
                                "recording a group of mail attempts failed; each is recorded alone: {e}"
                            );
                            None
                        }
                    };
                    drop(attempts);
                    for (i, queued) in group.into_iter().enumerate() {
                        let _ = queued.done.send(recorded.as_ref().map(|r| r[i]));
                    }
                    outcome.try_recv().ok().flatten()
                }
            }
        };
        match recorded {
            Some(recorded) => Ok(recorded),
            None => self.state.record_attempt(row, &self.holder, attempt).await,
        }
    }
}

impl Context {
    /// The time of an attempt: the run's start plus what the run has taken, so that a retry's
    /// next attempt and the give-up clock count from the attempt, not from the run's start.
    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(CancellationToken::is_cancelled)
    }

    /// Whether the claims still hold for longer than [`CLAIM_MARGIN`].
    fn claim_holds(&self) -> bool {
        let margin = chrono::Duration::from_std(CLAIM_MARGIN).unwrap_or_default();
        self.now() + margin < *lock(&self.valid_until)
    }

    /// Resolves [`SHUTDOWN_GRACE`] after the daemon began to stop; never without a stop.
    async fn grace_over(&self) {
        match &self.stop {
            Some(stop) => {
                stop.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            }
            None => std::future::pending().await,
        }
    }

    /// Resolves when the claims come within [`CLAIM_MARGIN`] of lapsing (renewals failing).
    async fn claim_lapsing(&self) {
        while self.claim_holds() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

enum Outcome {
    Sent,
    Postponed,
    Retrying(&'static str),
    Dead(&'static str),
    /// Still retrying: the server refused fristvakt itself (class), not this mail.
    ServerRefused(&'static str),
    /// Not attempted (dispatch paused or stopping); the claim released, the row still due.
    Released,
    /// Not attempted: the mail server cannot be reached (class); the claim released, the row
    /// kept its place and its retry period.
    Unavailable(&'static str),
    /// Another sender holds the row now (this one's claim lapsed), or this sender abandoned
    /// it before its claim could lapse; nothing recorded by this sender.
    ClaimLost,
}

/// What handling one row came to: its outcome, how many of its recipients were refused
/// permanently in this attempt, and whether it was written one role up.
struct Handled {
    outcome: Outcome,
    refused: u64,
    escalated: bool,
    /// The message's end went out unanswered: the server may have the mail.
    unconfirmed: bool,
    /// Given up with nobody reached and no role above: a dead letter, by cause.
    dead_letter: Option<&'static str>,
}

impl From<Outcome> for Handled {
    fn from(outcome: Outcome) -> Handled {
        Handled { outcome, refused: 0, escalated: false, unconfirmed: false, dead_letter: None }
    }
}

impl Context {
    fn paused(&self) -> bool {
        lock(&self.paused).is_some()
    }

    fn pause(&self, class: &'static str) {
        lock(&self.paused).get_or_insert(class);
    }
}

async fn handle_claimed(
    ctx: &Context,
    row: &Result<OutboxRow, UndecodableRow>,
) -> Result<(MailLabel, Handled), StateError> {
    let mut committed = None;
    let handled = match row {
        Ok(row) => handle(ctx, row, &mut committed).await,
        Err(row) => give_up_undecodable(ctx, row).await,
    };
    // The lane this mail went out on takes its next mail's message only now that this one's
    // outcome is committed (`handle` returns after its record); after a failure of the state
    // store the outcome may be unrecorded, and the sender dropped says so to the lane.
    if let (Some(committed), Ok(_)) = (committed, &handled) {
        let _ = committed.send(());
    }
    handled
}

/// A row this version cannot decode is given up at once, visibly: marked dead with its class,
/// logged as an error (an operator must look at it) and counted, never retried for ever nor
/// skipped without a trace.
async fn give_up_undecodable(ctx: &Context, row: &UndecodableRow) -> Result<(MailLabel, Handled), StateError> {
    let label = MailLabel { category: row.category, kind: row.kind, step: row.step };
    let key = log_key(&row.notice_key, row.category);
    if !ctx.state.mark_failed(row.id, &ctx.holder, &format!("{}: {}", row.class, row.error), None).await? {
        return Ok((label, claim_lost(&key).into()));
    }
    tracing::error!(
        outbox_key = %key,
        class = row.class,
        attempts = row.attempts + 1,
        error = %row.error,
        "outbox row cannot be decoded; given up (dead)"
    );
    Ok((label, Handled { dead_letter: Some(dead_letter_cause(row.class)), ..Outcome::Dead(row.class).into() }))
}

/// Why a claimed row is not to be sent now.
enum Hold {
    /// The run is paused or stopping: the claim is released.
    Release,
    /// The claim could not be renewed (the state store does not answer) and is about to lapse:
    /// another sender may take the row any moment. Not sent; nothing can be written.
    ClaimLapsing,
}

impl Hold {
    /// Whether a claimed row is held back now (checked before the rendering, and again once
    /// a lane is free).
    fn now(ctx: &Context) -> Option<Hold> {
        if ctx.paused() || ctx.stopping() {
            Some(Hold::Release)
        } else if !ctx.claim_holds() {
            Some(Hold::ClaimLapsing)
        } else {
            None
        }
    }

    /// Does what holding the row back takes; the row's outcome.
    async fn apply(self, ctx: &Context, row: &OutboxRow) -> Result<Outcome, StateError> {
        match self {
            Hold::Release => {
                ctx.state.release_claim(row.id, &ctx.holder, None).await?;
                Ok(Outcome::Released)
            }
            Hold::ClaimLapsing => {
                tracing::warn!(
                    outbox_key = %loggable_key(row),
                    "claim about to lapse (renewal failed); mail left for the sender that takes it over"
                );
                Ok(Outcome::ClaimLost)
            }
        }
    }
}

/// Handles one claimed row; a mail goes out on a lane (see [`Lanes`]), and the row's outcome is
/// committed before this returns. `committed`: set when the server was sent the message on a
/// lane, for the caller to say on it that the outcome is committed.
async fn handle(
    ctx: &Context,
    row: &OutboxRow,
    committed: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(MailLabel, Handled), StateError> {
    let label = MailLabel { category: Some(row.category()), kind: row.kind, step: row.step };
    if !ctx.window_open {
        // Every waiting mail gets the window's opening: they leave at the start of office
        // hours, throttled by the SMTP pool, rather than in a burst at midnight.
        let at = ctx.settings.mail.send_window.next_open(ctx.now(), ctx.settings.timezone);
        if !ctx.state.postpone(row.id, &ctx.holder, at).await? {
            return Ok((label, claim_lost(&loggable_key(row)).into()));
        }
        tracing::debug!(outbox_key = %loggable_key(row), at = %at, "outside the sending window; postponed");
        return Ok((label, Outcome::Postponed.into()));
    }
    if let Some(hold) = Hold::now(ctx) {
        return Ok((label, hold.apply(ctx, row).await?.into()));
    }
    // Only the recipients not yet settled: a retry never repeats the mail to one who has it.
    let owed: Vec<&Recipient> =
        row.recipients.iter().filter(|r| !row.deliveries.iter().any(|d| d.address == r.address)).collect();
    // A recipient the mail library cannot address is refused on its own (the message is
    // composed for the others, so that one odd address does not stop the mail).
    let addressable: Vec<Recipient> = row.recipients.iter().filter(|r| usable_address(&r.address)).cloned().collect();
    let unaddressable = |r: &Recipient| !addressable.iter().any(|a| a.address == r.address);
    let local_refusal = || {
        RecipientResult::Refused(SendError {
            permanent: true,
            class: "address",
            message: "not an address the mail library can send to".into(),
        })
    };
    let composed = match &row.payload {
        OutboxPayload::Notice(Some(_)) if addressable.is_empty() => Err(ComposeError::NoRecipients),
        OutboxPayload::Notice(Some(payload)) => {
            compose_notice_instead_of(&ctx.settings, payload, &addressable, &row.replaces, ctx.today, &row.message_id)
        }
        // Only a skipped step has no payload, and skipped rows are never claimed.
        OutboxPayload::Notice(None) => {
            return give_up(ctx, row, label, "bad_payload", "a notice without a payload").await;
        }
        OutboxPayload::Digest(digest) => compose_digest(&ctx.settings, digest, &row.message_id),
        // A row this version cannot render is given up visibly rather than retried for ever.
        OutboxPayload::DigestRun(_) => {
            return give_up(ctx, row, label, "unknown_category", "a digest_run record is never sent").await;
        }
    };
    let message = match composed {
        Ok(message) => message,
        // The mail cannot be written for these recipients: none of them gets it, so the step goes
        // one role up (where the message is composed for others), or is a dead letter.
        Err(e) => {
            let error = SendError { permanent: true, class: "compose", message: scrub(&e.to_string()) };
            let results = owed
                .iter()
                .map(|r| {
                    let result =
                        if unaddressable(r) { local_refusal() } else { RecipientResult::Refused(error.clone()) };
                    (r.address.clone(), result)
                })
                .collect();
            return conclude(ctx, row, label, results, chrono::Duration::zero()).await;
        }
    };
    let addresses: Vec<_> = owed.iter().filter(|r| !unaddressable(r)).map(|r| r.address.clone()).collect();
    let results = if addresses.is_empty() {
        // Settled by an attempt whose outcome was recorded but not its end, or no recipient
        // left that the mail library can address: finish the row.
        Vec::new()
    } else {
        let Ok(permit) = ctx.lanes.permits.acquire().await else {
            unreachable!("the lanes' semaphore is never closed")
        };
        let mut lane = lock(&ctx.lanes.free).pop_front().unwrap_or_default();
        // Waiting for a lane may have taken a while: the same checks as before the rendering.
        if let Some(hold) = Hold::now(ctx) {
            lock(&ctx.lanes.free).push_back(lane);
            drop(permit);
            return Ok((label, hold.apply(ctx, row).await?.into()));
        }
        let Lane { connection, previous } = &mut lane;
        // Whether the message was sent on the lane (its previous mail committed, the daemon not
        // stopping): from then on the server may take the mail at any moment.
        let begun = std::sync::atomic::AtomicBool::new(false);
        let before_message = async {
            let go = previous.committed().await && !ctx.stopping();
            begun.store(go, std::sync::atomic::Ordering::SeqCst);
            go
        };
        let is_begun = || begun.load(std::sync::atomic::Ordering::SeqCst);
        let mut delivery = Box::pin(ctx.mailer.deliver(connection, &message, &addresses, before_message));
        let delivered = loop {
            tokio::select! {
                delivered = &mut delivery => break Some(delivered),
                // Before the message, a claim about to lapse is given up; once the message went
                // out its reply is awaited (the mail is the server's from its final `.`).
                () = ctx.claim_lapsing(), if !is_begun() => {
                    if is_begun() {
                        continue;
                    }
                    break None;
                }
                // At shutdown a message under way has the grace to be answered; then it is left
                // unconfirmed, recorded to be tried again only after the data timeout.
                () = ctx.grace_over(), if is_begun() => {
                    break Some(Err(DeliverError::Unconfirmed(SendError {
                        permanent: false,
                        class: "timeout",
                        message: format!(
                            "no reply to the message within the shutdown grace ({}s)",
                            SHUTDOWN_GRACE.as_secs()
                        ),
                    })));
                }
            }
        };
        drop(delivery);
        let sent = is_begun();
        if sent {
            // The server may have this mail: the lane's next message waits for its record.
            let (sender, receiver) = tokio::sync::oneshot::channel();
            lane.previous = Previous::Pending(receiver);
            *committed = Some(sender);
        }
        lock(&ctx.lanes.free).push_back(lane);
        drop(permit);
        let Some(delivered) = delivered else {
            // Cut off mid-send (the connection dropped, so a server that had not yet taken the
            // whole message discards it) before another sender can take the row over.
            tracing::error!(
                outbox_key = %loggable_key(row),
                "mail abandoned mid-send: the claim could not be renewed (state store unreachable) and was about \
                 to lapse; the sender that takes the row over sends it"
            );
            return Ok((label, Outcome::ClaimLost.into()));
        };
        match delivered {
            Ok(results) => results,
            Err(DeliverError::Server(error)) => return server_refused(ctx, row, label, &error).await,
            Err(DeliverError::Unavailable(error)) => return unavailable(ctx, row, label, &error).await,
            // The attempt failed as a whole: a permanent failure (a 5xx reply to `DATA` or to the
            // message's end) refuses every recipient it was for; a transient one defers them.
            Err(DeliverError::Message(error)) => addresses
                .iter()
                .map(|_| {
                    if error.permanent {
                        RecipientResult::Refused(error.clone())
                    } else {
                        RecipientResult::Deferred(error.clone())
                    }
                })
                .collect(),
            Err(DeliverError::Unconfirmed(error)) => return unconfirmed(ctx, row, label, &error).await,
            // The previous mail on the lane could not be recorded (the state store failing, this
            // run is ending), or the daemon is stopping: this one was not sent, and goes out in a
            // later run.
            Err(DeliverError::Withheld) => {
                if !ctx.stopping() {
                    tracing::warn!(
                        outbox_key = %loggable_key(row),
                        "mail not sent: the previous mail on its connection could not be recorded; claim released"
                    );
                }
                ctx.state.release_claim(row.id, &ctx.holder, None).await?;
                return Ok((label, Outcome::Released.into()));
            }
        }
    };
    // Each owed recipient's result, in the row's order: those the mail library cannot address
    // refused here, the others as the server answered.
    let mut answered = results.into_iter();
    let results: Vec<(EmailAddress, RecipientResult)> = owed
        .iter()
        .filter_map(|r| {
            let result = if unaddressable(r) { Some(local_refusal()) } else { answered.next() };
            result.map(|result| (r.address.clone(), result))
        })
        .collect();
    conclude(ctx, row, label, results, chrono::Duration::zero()).await
}

/// Settles an attempt ([`settle`]) and records it: sent, retried no sooner than `at_least`
/// from now, or — nobody reached — dead, with the notice one role up when there is one, else
/// a dead letter (counted, logged as an error).
async fn conclude(
    ctx: &Context,
    row: &OutboxRow,
    label: MailLabel,
    results: Vec<(EmailAddress, RecipientResult)>,
    at_least: chrono::Duration,
) -> Result<(MailLabel, Handled), StateError> {
    let policy = Policy {
        now: ctx.now(),
        tried_for: ctx.settings.mail.send_window.open_between(
            row.created_at.max(row.not_before),
            ctx.now(),
            ctx.settings.timezone,
        ),
        give_up_after: chrono::Duration::from_std(ctx.settings.mail.give_up_after).unwrap_or(chrono::Duration::days(2)),
    };
    let settlement = settle(row, results, &policy);
    let refused = settlement.refused;
    let (attempt_state, next, error, escalation) = match &settlement.verdict {
        Verdict::Sent { note } => (OutboxState::Sent, None, note.clone(), None),
        Verdict::Retry { error, .. } => {
            let jitter = rand::thread_rng().gen_range(0.8..=1.2);
            let next = policy.now + retry_delay(&ctx.settings, row.attempts, jitter).max(at_least);
            (OutboxState::Retrying, Some(next), Some(error.clone()), None)
        }
        Verdict::Unreached { error, unreached, .. } => {
            (OutboxState::Dead, None, Some(error.clone()), escalation(ctx, row, unreached))
        }
    };
    let attempt = Attempt {
        state: attempt_state,
        next,
        error: error.as_deref(),
        deliveries: &settlement.deliveries,
        sent_at: (attempt_state == OutboxState::Sent).then_some(policy.now),
        escalation: escalation.clone(),
    };
    let recorded = ctx.record(row, attempt).await?;
    if !recorded.held {
        return Ok((label, claim_lost(&loggable_key(row)).into()));
    }
    let key = loggable_key(row);
    let delivered = settlement.delivered;
    let recipients = row.recipients.len();
    let outcome = match settlement.verdict {
        Verdict::Sent { note: None } => {
            tracing::info!(
                outbox_key = %key,
                message_id = %row.message_id,
                attempts = row.attempts + 1,
                recipients,
                delivered,
                "mail sent"
            );
            Outcome::Sent
        }
        Verdict::Sent { note: Some(note) } => {
            tracing::info!(
                outbox_key = %key,
                message_id = %row.message_id,
                attempts = row.attempts + 1,
                recipients,
                delivered,
                unreached = recipients.saturating_sub(delivered),
                note = %note,
                "mail sent to some of its recipients; the others refused it or were given up"
            );
            Outcome::Sent
        }
        Verdict::Retry { class, error } => {
            tracing::warn!(
                outbox_key = %key,
                class,
                attempts = row.attempts + 1,
                next_attempt = %next.unwrap_or(policy.now),
                error = %error,
                "mail not sent; will retry"
            );
            Outcome::Retrying(class)
        }
        Verdict::Unreached { class, error, .. } => {
            match (&escalation, recorded.escalated) {
                (Some(up), true) => tracing::warn!(
                    outbox_key = %key,
                    escalated_to = %log_key(&up.notice_key, Some(OutboxCategory::Notice)),
                    role = up.recipients.first().map(|r| r.role.as_str()).unwrap_or_default(),
                    error = %error,
                    "the mail reached none of its recipients; given up (dead) and sent one role up"
                ),
                (Some(up), false) => tracing::warn!(
                    outbox_key = %key,
                    escalated_to = %log_key(&up.notice_key, Some(OutboxCategory::Notice)),
                    error = %error,
                    "the mail reached none of its recipients; given up (dead), the notice one role up was already \
                     written (or its deadline is closed)"
                ),
                (None, _) => tracing::error!(
                    outbox_key = %key,
                    class,
                    attempts = row.attempts + 1,
                    error = %error,
                    "dead letter: the mail reached none of its recipients and there is no role above to send it to"
                ),
            }
            return Ok((
                label,
                Handled {
                    outcome: Outcome::Dead(class),
                    refused,
                    escalated: recorded.escalated,
                    unconfirmed: false,
                    dead_letter: escalation.is_none().then(|| dead_letter_cause(class)),
                },
            ));
        }
    };
    Ok((label, Handled { outcome, refused, escalated: false, unconfirmed: false, dead_letter: None }))
}

/// The bounded cause of a dead letter (`fristvakt_dead_letters_total{cause}`), from the class
/// of the failure that ended it.
fn dead_letter_cause(class: &'static str) -> &'static str {
    match class {
        "bad_payload" | "unknown_category" => "unreadable",
        "permanent_5xx" | "address" | "smtputf8" | "compose" | "other" => "refused",
        _ => "gave_up",
    }
}

/// The rules of an attempt's outcome: when it is, and how long to try.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// The time of the attempt.
    pub now: DateTime<Utc>,
    /// How long the sending window has been open since the row was first allowed out.
    pub tried_for: chrono::Duration,
    /// `mail.give_up_after`: how long a transient failure is retried.
    pub give_up_after: chrono::Duration,
}

/// What one attempt at a row comes to (see [`settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settlement {
    /// Every recipient's outcome so far, this attempt's included.
    pub deliveries: Vec<Delivery>,
    /// Recipients refused permanently in this attempt.
    pub refused: u64,
    /// The row's current recipients who have it.
    pub delivered: usize,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every recipient is settled (or given up) and at least one received it; `note` says who
    /// did not.
    Sent { note: Option<String> },
    /// Some recipient was deferred (4xx, a failure of the whole attempt) and the give-up time
    /// has not come: tried again later for those still owed it.
    Retry { class: &'static str, error: String },
    /// No recipient received it, and none can now (every one refused, or given up): it goes
    /// one role up, to others than `unreached`, or is a dead letter when there is none.
    Unreached { class: &'static str, error: String, unreached: Vec<EmailAddress> },
}

/// Settles one attempt at `row`: `results` holds each recipient's result in this attempt
/// (those it was for; a failure of the whole attempt is every one's result); the row's earlier
/// deliveries count too. Pure: no clock, no I/O, no randomness.
///
/// A step that reached no recipient goes one role up whatever the cause (refusals, a compose
/// error, repeated 4xx until `give_up_after`); only recipients of the row as it is now count
/// (a row revived with fewer recipients keeps outcomes of others).
pub(crate) fn settle(row: &OutboxRow, results: Vec<(EmailAddress, RecipientResult)>, policy: &Policy) -> Settlement {
    let mut deliveries = row.deliveries.clone();
    let mut refused = 0u64;
    let mut first_refusal: Option<&'static str> = None;
    let mut deferred: Option<SendError> = None;
    for (address, result) in results {
        let (outcome, error) = match result {
            RecipientResult::Delivered => (DeliveryOutcome::Delivered, None),
            RecipientResult::Refused(e) => {
                refused += 1;
                first_refusal.get_or_insert(e.class);
                (DeliveryOutcome::Refused, Some(format!("{}: {}", e.class, e.message)))
            }
            RecipientResult::Deferred(e) => {
                deferred.get_or_insert(e);
                continue;
            }
        };
        deliveries.push(Delivery { address, outcome, at: policy.now, error });
    }
    let reached =
        |r: &&Recipient| deliveries.iter().any(|d| d.address == r.address && d.outcome == DeliveryOutcome::Delivered);
    let delivered = row.recipients.iter().filter(reached).count();
    let unreached: Vec<EmailAddress> =
        row.recipients.iter().filter(|r| !reached(r)).map(|r| r.address.clone()).collect();
    let verdict = if let Some(SendError { class, message, .. }) = deferred {
        if policy.tried_for <= policy.give_up_after {
            Verdict::Retry { class, error: format!("{class}: {message}") }
        } else {
            let given_up = policy.give_up_after.to_std().unwrap_or_default();
            let error = format!(
                "{class}: {message} (still failing after {} of open sending window)",
                humantime::format_duration(given_up)
            );
            // Given up for the recipients still owed it; received by others, it counts as sent.
            if delivered > 0 {
                Verdict::Sent { note: Some(error) }
            } else {
                Verdict::Unreached { class, error, unreached }
            }
        }
    } else if delivered > 0 {
        let note = (!unreached.is_empty()).then(|| {
            let first = deliveries.iter().find_map(|d| d.error.as_deref()).unwrap_or("refused");
            format!("{} of {} recipient(s) refused: {first}", unreached.len(), row.recipients.len())
        });
        Verdict::Sent { note }
    } else {
        let error =
            deliveries.iter().rev().find_map(|d| d.error.clone()).unwrap_or_else(|| "permanent_5xx: refused".into());
        let class = match first_refusal {
            Some("permanent_5xx") | None => "permanent_5xx",
            Some(class) => class,
        };
        Verdict::Unreached { class, error, unreached }
    };
    Settlement { deliveries, refused, delivered, verdict }
}

/// The notice of a row that reached none of its recipients, for the next role up: the role
/// above the highest role among its recipients (caseworker → team lead → unit manager), whose
/// addresses — without the `unreached` ones — get it; if that leaves nobody, the role above
/// that. `None` for digests and above the manager.
fn escalation(ctx: &Context, row: &OutboxRow, unreached: &[EmailAddress]) -> Option<Escalation> {
    let OutboxPayload::Notice(Some(payload)) = &row.payload else { return None };
    let missed = |a: &EmailAddress| unreached.contains(a);
    let mut role = row.recipients.iter().map(|r| r.role).max()?;
    while let Some(up) = role.above() {
        role = up;
        let mut recipients: Vec<Recipient> = Vec::new();
        for address in ctx.settings.units.addresses(&payload.unit, up) {
            if !missed(&address) && !recipients.iter().any(|r| r.address == address) {
                recipients.push(Recipient { role: up, address, instead_of_caseworker: false });
            }
        }
        if recipients.is_empty() {
            continue;
        }
        let notice_key = format!("{}/up", row.notice_key);
        return Some(Escalation {
            message_id: message_id(&notice_key, &ctx.settings.mail.from),
            notice_key,
            recipients,
            replaces: row.recipients.iter().filter(|r| missed(&r.address)).cloned().collect(),
            // Due at the run's start, so that this run (which takes only rows due when it began)
            // still sends it.
            now: ctx.start,
        });
    }
    None
}

/// The server refused fristvakt itself: the row stays `retrying` (with back-off, and never
/// given up for it), and the run pauses.
async fn server_refused(
    ctx: &Context,
    row: &OutboxRow,
    label: MailLabel,
    error: &SendError,
) -> Result<(MailLabel, Handled), StateError> {
    ctx.pause(error.class);
    let jitter = rand::thread_rng().gen_range(0.8..=1.2);
    let next = ctx.now() + retry_delay(&ctx.settings, row.attempts, jitter);
    let text = format!("server_refused_{}: {}", error.class, error.message);
    let attempt = Attempt {
        state: OutboxState::Retrying,
        next: Some(next),
        error: Some(&text),
        deliveries: &row.deliveries,
        sent_at: None,
        escalation: None,
    };
    if !ctx.record(row, attempt).await?.held {
        return Ok((label, claim_lost(&loggable_key(row)).into()));
    }
    tracing::error!(
        outbox_key = %loggable_key(row),
        class = error.class,
        attempts = row.attempts + 1,
        next_attempt = %next,
        error = %error.message,
        "the mail server refuses fristvakt itself; mail kept for retry, dispatch paused"
    );
    Ok((label, Outcome::ServerRefused(error.class).into()))
}

/// The mail server cannot be reached or will not talk: no fault of this mail. The row keeps
/// its place (no attempt counted, its retry period untouched; the reason noted for
/// `outbox list`) and the run pauses, so that when the server is back the most urgent mail goes
/// out first.
async fn unavailable(
    ctx: &Context,
    row: &OutboxRow,
    label: MailLabel,
    error: &SendError,
) -> Result<(MailLabel, Handled), StateError> {
    ctx.pause(error.class);
    let note = format!("server_unavailable_{}: {}", error.class, error.message);
    ctx.state.release_claim(row.id, &ctx.holder, Some(&note)).await?;
    tracing::error!(
        outbox_key = %loggable_key(row),
        class = error.class,
        error = %error.message,
        "the mail server cannot be reached; mail kept in its place, dispatch paused"
    );
    Ok((label, Outcome::Unavailable(error.class).into()))
}

/// The claim was no longer this sender's when it recorded: it had lapsed and another sender
/// took the row. Nothing was written; logged and counted.
fn claim_lost(key: &str) -> Outcome {
    tracing::error!(
        outbox_key = %key,
        "claim lost: another sender took this row while this one worked on it; its outcome here is not recorded"
    );
    Outcome::ClaimLost
}

/// The message's final `.` went out and no reply came: the server may have accepted the mail.
/// Tried again (to the recipients still owed it) only once `mail.smtp.data_timeout` has passed,
/// so that a slow relay's mail is not sent twice in a hurry; counted as unconfirmed.
async fn unconfirmed(
    ctx: &Context,
    row: &OutboxRow,
    label: MailLabel,
    error: &SendError,
) -> Result<(MailLabel, Handled), StateError> {
    let wait = chrono::Duration::from_std(ctx.settings.mail.smtp.data_timeout).unwrap_or(chrono::Duration::minutes(10));
    tracing::warn!(
        outbox_key = %loggable_key(row),
        class = error.class,
        error = %error.message,
        data_timeout_seconds = ctx.settings.mail.smtp.data_timeout.as_secs(),
        "the mail server did not confirm the message after its end went out; it may have been delivered, and is \
         tried again only after mail.smtp.data_timeout"
    );
    let deferred = SendError { message: format!("unconfirmed: {}", error.message), ..error.clone() };
    let results = row
        .recipients
        .iter()
        .filter(|r| !row.deliveries.iter().any(|d| d.address == r.address))
        .map(|r| (r.address.clone(), RecipientResult::Deferred(deferred.clone())))
        .collect();
    let (label, mut handled) = conclude(ctx, row, label, results, wait).await?;
    handled.unconfirmed = !matches!(handled.outcome, Outcome::ClaimLost);
    Ok((label, handled))
}

/// A row that cannot be sent at all (no payload, a record never meant to be sent): a dead
/// letter at once, logged as an error and counted.
async fn give_up(
    ctx: &Context,
    row: &OutboxRow,
    label: MailLabel,
    class: &'static str,
    error: &str,
) -> Result<(MailLabel, Handled), StateError> {
    if !ctx.state.mark_failed(row.id, &ctx.holder, &format!("{class}: {error}"), None).await? {
        return Ok((label, claim_lost(&loggable_key(row)).into()));
    }
    tracing::error!(outbox_key = %loggable_key(row), class, attempts = row.attempts + 1, error, "dead letter: the mail cannot be sent");
    Ok((label, Handled { dead_letter: Some(dead_letter_cause(class)), ..Outcome::Dead(class).into() }))
}

/// The outbox key as it may be logged (see [`log_key`]).
fn loggable_key(row: &OutboxRow) -> String {
    log_key(&row.notice_key, Some(row.category()))
}

/// An outbox key as it may be logged: a notice key holds only kind, case reference and step,
/// the case reference sanitised as every logged reference is ([`log_safe`]: no control, line
/// or direction character forges a log line); a digest key ends in the manager's address,
/// which stays out of the log.
pub(crate) fn log_key(key: &str, category: Option<OutboxCategory>) -> String {
    match category {
        Some(OutboxCategory::Notice) => {
            let notice = || {
                let rest = key.strip_prefix("notice/")?;
                let (kind, rest) = rest.split_once('/')?;
                let kind = kind.parse::<Kind>().ok()?;
                let mut head = rest;
                let mut ups = 0;
                while let Some(shorter) = head.strip_suffix("/up") {
                    head = shorter;
                    ups += 1;
                }
                let (case_ref, step) = head.rsplit_once('/')?;
                let step = step.parse::<i32>().ok()?;
                Some(format!("notice/{}/{}/{step}{}", kind.as_str(), log_safe(case_ref), "/up".repeat(ups)))
            };
            notice().unwrap_or_else(|| log_safe(key))
        }
        _ => key.rsplit_once('/').map(|(head, _)| log_safe(head)).unwrap_or_else(|| "(digest)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut s = crate::config::load_with_env(None, Vec::new()).unwrap();
        s.mail.retry_initial = Duration::from_secs(60);
        s.mail.retry_max = Duration::from_secs(3600);
        let secs = |attempts, jitter| retry_delay(&s, attempts, jitter).num_seconds();
        assert_eq!(secs(0, 1.0), 60);
        assert_eq!(secs(1, 1.0), 120);
        assert_eq!(secs(3, 1.0), 480);
        assert_eq!(secs(6, 1.0), 3600);
        assert_eq!(secs(1000, 1.0), 3600);
        assert_eq!(secs(0, 0.8), 48);
        assert_eq!(secs(6, 1.2), 4320);
    }
}
