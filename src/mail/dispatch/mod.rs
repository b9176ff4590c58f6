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

mod claims;
mod commit;
mod lanes;
mod record;
mod report;
mod settle;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, Transport};
use crate::domain::{log_safe, EmailAddress, ErrorClass, OutboxKey};
use crate::mail::compose::{compose_digest, compose_notice_instead_of, usable_address, ComposeError};
use crate::mail::transport::{scrub, DeliverError, Mailer, RecipientResult, SendError};
use crate::notice::Recipient;
use crate::state::{OutboxCategory, OutboxPayload, OutboxRow, StateError, StateStore, UndecodableRow};

pub use self::claims::CLAIM_TTL;
use self::claims::{renew, Hold};
use self::commit::GroupCommit;
use self::lanes::{Lanes, Sent};
use self::record::{claim_lost, conclude, give_up, give_up_undecodable, server_refused, unavailable, unconfirmed};
use self::report::tally;
pub use self::report::{DispatchReport, MailLabel};
pub use self::settle::{retry_delay, DeadLetterCause};

/// How long, once the daemon stops, a message whose end went out waits for the server's reply;
/// then it is left unconfirmed (recorded to be tried again after `mail.smtp.data_timeout`),
/// its claim never released for another sender to send it at once.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    State(#[from] StateError),
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
            class = class.as_str(),
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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
    paused: Mutex<Option<ErrorClass>>,
    /// Until when this sender's claims are known to hold: the last claim or renewal's expiry.
    valid_until: Mutex<DateTime<Utc>>,
    /// The group commit of the senders' records.
    records: GroupCommit,
    /// The senders' SMTP connections, each with the commit of the last mail sent on it.
    lanes: Lanes,
}

enum Outcome {
    Sent,
    Postponed,
    Retrying(ErrorClass),
    Dead(ErrorClass),
    /// Still retrying: the server refused fristvakt itself (class), not this mail.
    ServerRefused(ErrorClass),
    /// Not attempted (dispatch paused or stopping); the claim released, the row still due.
    Released,
    /// Not attempted: the mail server cannot be reached (class); the claim released, the row
    /// kept its place and its retry period.
    Unavailable(ErrorClass),
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
    dead_letter: Option<DeadLetterCause>,
}

impl From<Outcome> for Handled {
    fn from(outcome: Outcome) -> Handled {
        Handled { outcome, refused: 0, escalated: false, unconfirmed: false, dead_letter: None }
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

    /// Resolves [`SHUTDOWN_GRACE`] after the daemon began to stop; never without a stop.
    pub(super) async fn grace_over(&self) {
        match &self.stop {
            Some(stop) => {
                stop.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            }
            None => std::future::pending().await,
        }
    }

    fn paused(&self) -> bool {
        lock(&self.paused).is_some()
    }

    fn pause(&self, class: ErrorClass) {
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
            class: ErrorClass::Address,
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
            return give_up(ctx, row, label, ErrorClass::BadPayload, "a notice without a payload").await;
        }
        OutboxPayload::Digest(digest) => compose_digest(&ctx.settings, digest, &row.message_id),
        // A row this version cannot render is given up visibly rather than retried for ever.
        OutboxPayload::DigestRun(_) => {
            return give_up(ctx, row, label, ErrorClass::UnknownCategory, "a digest_run record is never sent").await;
        }
    };
    let message = match composed {
        Ok(message) => message,
        // The mail cannot be written for these recipients: none of them gets it, so the step goes
        // one role up (where the message is composed for others), or is a dead letter.
        Err(e) => {
            let error = SendError { permanent: true, class: ErrorClass::Compose, message: scrub(&e.to_string()) };
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
        let delivered = match lanes::send(ctx, &message, &addresses, committed).await {
            Sent::Held(hold) => return Ok((label, hold.apply(ctx, row).await?.into())),
            Sent::Abandoned => {
                // Cut off mid-send (the connection dropped, so a server that had not yet taken the
                // whole message discards it) before another sender can take the row over.
                tracing::error!(
                    outbox_key = %loggable_key(row),
                    "mail abandoned mid-send: the claim could not be renewed (state store unreachable) and was \
                     about to lapse; the sender that takes the row over sends it"
                );
                return Ok((label, Outcome::ClaimLost.into()));
            }
            Sent::Answered(delivered) => delivered,
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

/// The outbox key as it may be logged (see [`log_key`]).
fn loggable_key(row: &OutboxRow) -> String {
    log_key(&row.notice_key, Some(row.category()))
}

/// An outbox key as it may be logged: a notice key holds only kind, case reference and step,
/// the case reference sanitised as every logged reference is ([`log_safe`]: no control, line
/// or direction character forges a log line); a digest key ends in the manager's address,
/// which stays out of the log.
pub(crate) fn log_key(key: &str, category: Option<OutboxCategory>) -> String {
    match (category, key.parse::<OutboxKey>()) {
        (Some(OutboxCategory::Notice), Ok(OutboxKey::Notice(n))) => {
            // The reference and the cycle are shown as one value, as they are stored.
            let head = match n.cycle {
                Some(cycle) => log_safe(&format!("{}/{}", n.case_ref, cycle.format("%Y-%m-%d"))),
                None => log_safe(n.case_ref.as_str()),
            };
            format!("notice/{}/{head}/{}{}", n.kind.as_str(), n.step, "/up".repeat(usize::from(n.up)))
        }
        (Some(OutboxCategory::Notice), _) => log_safe(key),
        (_, Ok(OutboxKey::Digest { date, .. })) => format!("digest/{date}"),
        (_, Ok(OutboxKey::DigestRun { .. })) => "digest-run".into(),
        _ => key.rsplit_once('/').map(|(head, _)| log_safe(head)).unwrap_or_else(|| "(digest)".into()),
    }
}
