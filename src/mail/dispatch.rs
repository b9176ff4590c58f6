//! The dispatcher: claims due outbox rows, renders and sends them, and records the outcome.
//!
//! Architecture invariant: no database transaction is held across an SMTP call. A row is
//! claimed (a short statement that stamps holder and expiry), then sent, then marked — each its
//! own statement. A sender that dies mid-batch leaves claims that expire, after which another
//! sender takes the rows; the stable Message-ID lets a recipient recognise the rare repeat.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::StreamExt;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, Transport};
use crate::mail::compose::{compose_digest, compose_notice};
use crate::mail::transport::{scrub, Mailer, SendError};
use crate::rules::Kind;
use crate::state::{OutboxCategory, OutboxPayload, OutboxRow, StateError, StateStore, UndecodableRow};

/// Claims last at least this long; see [`claim_ttl`].
pub const MIN_CLAIM_TTL: Duration = Duration::from_secs(300);

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
    /// other, compose, bad_payload, unknown_category).
    pub errors: BTreeMap<&'static str, u64>,
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
}

/// Sends every outbox row due at `now`, batch by batch, until none is left; "today" in mail is
/// `now`'s date in `settings.timezone`.
pub async fn dispatch_once(
    state: &StateStore,
    mailer: &Mailer,
    settings: &Settings,
    now: DateTime<Utc>,
    holder: &str,
) -> Result<DispatchReport, DispatchError> {
    let today = now.with_timezone(&settings.timezone).date_naive();
    dispatch_once_on(state, mailer, settings, now, today, holder).await
}

/// Like [`dispatch_once`], with the day the mail speaks of given explicitly (`poll --once
/// --today D`, so that the days left in the mail match the day the poll computed for).
pub async fn dispatch_once_on(
    state: &StateStore,
    mailer: &Mailer,
    settings: &Settings,
    now: DateTime<Utc>,
    today: NaiveDate,
    holder: &str,
) -> Result<DispatchReport, DispatchError> {
    dispatch_until(state, mailer, settings, now, today, holder, None).await
}

/// Like [`dispatch_once_on`], but stops claiming new batches once `stop` is cancelled (the
/// daemon's shutdown); the batch in hand is finished.
pub async fn dispatch_until(
    state: &StateStore,
    mailer: &Mailer,
    settings: &Settings,
    now: DateTime<Utc>,
    today: NaiveDate,
    holder: &str,
    stop: Option<&CancellationToken>,
) -> Result<DispatchReport, DispatchError> {
    let concurrency = concurrency(settings);
    let batch = (concurrency * 4).min(50) as i64;
    let ttl = chrono::Duration::from_std(claim_ttl(settings)).unwrap_or(chrono::Duration::minutes(5));
    let window_open = settings.mail.send_window.is_open(now, settings.timezone);
    let ctx = Context { state, mailer, settings, now, today, holder, window_open };
    let mut report = DispatchReport::default();
    let started = std::time::Instant::now();
    loop {
        if stop.is_some_and(CancellationToken::is_cancelled) {
            break;
        }
        // Each batch's claim lasts `ttl` from when it is taken: a long run must not claim its
        // later batches with an expiry that has already passed, or another replica could take
        // them while they are being sent.
        let claimed_at = now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        let rows = state.claim_outbox(holder, claimed_at, claimed_at + ttl, batch).await?;
        if rows.is_empty() {
            break;
        }
        // Each row is claimed, so concurrent handling cannot send one twice; the pool bounds
        // how many SMTP connections are open at once.
        // The futures are built before they are streamed: a closure inside the stream would
        // make the whole future fail the `Send` check of `tokio::spawn` (rust-lang/rust#102211).
        let pending: Vec<_> = rows.iter().map(|row| Box::pin(handle_claimed(&ctx, row))).collect();
        let outcomes: Vec<Result<(MailLabel, Outcome), StateError>> =
            futures_util::stream::iter(pending).buffer_unordered(concurrency).collect().await;
        for outcome in outcomes {
            let (label, outcome) = outcome?;
            let map = match outcome {
                Outcome::Sent => &mut report.sent,
                Outcome::Postponed => &mut report.postponed,
                Outcome::Retrying(class) => {
                    *report.errors.entry(class).or_default() += 1;
                    &mut report.retrying
                }
                Outcome::Dead(class) => {
                    *report.errors.entry(class).or_default() += 1;
                    &mut report.dead
                }
            };
            *map.entry(label).or_default() += 1;
        }
    }
    if report != DispatchReport::default() {
        tracing::info!(
            sent = report.total_sent(),
            retrying = report.total_retrying(),
            dead = report.total_dead(),
            postponed = report.total_postponed(),
            "outbox dispatched"
        );
    }
    Ok(report)
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

/// How long a claim lasts: long enough for a batch to be sent even when every send waits for
/// its timeout (a hanging server fails at its first timed-out command), so that a live sender's
/// rows are not taken over by another; short enough that a crashed sender's rows come back soon.
pub fn claim_ttl(settings: &Settings) -> Duration {
    let rounds = 4; // batch = 4 × concurrency
    let per_send = match settings.mail.transport {
        Transport::Smtp => settings.mail.smtp.timeout * 2,
        Transport::File => Duration::from_secs(10),
    };
    MIN_CLAIM_TTL.max(per_send * rounds + Duration::from_secs(60))
}

fn concurrency(settings: &Settings) -> usize {
    match settings.mail.transport {
        Transport::Smtp => settings.mail.smtp.pool_size.max(1) as usize,
        Transport::File => 4,
    }
}

struct Context<'a> {
    state: &'a StateStore,
    mailer: &'a Mailer,
    settings: &'a Settings,
    now: DateTime<Utc>,
    today: NaiveDate,
    holder: &'a str,
    window_open: bool,
}

enum Outcome {
    Sent,
    Postponed,
    Retrying(&'static str),
    Dead(&'static str),
}

async fn handle_claimed(
    ctx: &Context<'_>,
    row: &Result<OutboxRow, UndecodableRow>,
) -> Result<(MailLabel, Outcome), StateError> {
    match row {
        Ok(row) => handle(ctx, row).await,
        Err(row) => give_up_undecodable(ctx, row).await,
    }
}

/// A row this version cannot decode is given up at once, visibly: marked dead with its class,
/// logged as an error (an operator must look at it) and counted, never retried for ever nor
/// skipped without a trace.
async fn give_up_undecodable(ctx: &Context<'_>, row: &UndecodableRow) -> Result<(MailLabel, Outcome), StateError> {
    let label = MailLabel { category: row.category, kind: row.kind, step: row.step };
    ctx.state.mark_failed(row.id, ctx.holder, &format!("{}: {}", row.class, row.error), None).await?;
    let key = match row.category {
        Some(OutboxCategory::Notice) => row.notice_key.as_str(),
        _ => row.notice_key.rsplit_once('/').map(|(head, _)| head).unwrap_or("(unknown)"),
    };
    tracing::error!(
        outbox_key = %key,
        class = row.class,
        attempts = row.attempts + 1,
        error = %row.error,
        "outbox row cannot be decoded; given up (dead)"
    );
    Ok((label, Outcome::Dead(row.class)))
}

async fn handle(ctx: &Context<'_>, row: &OutboxRow) -> Result<(MailLabel, Outcome), StateError> {
    let label = MailLabel { category: Some(row.category()), kind: row.kind, step: row.step };
    if !ctx.window_open {
        // Every waiting mail gets the window's opening: they leave at the start of office
        // hours, throttled by the SMTP pool, rather than in a burst at midnight.
        let at = ctx.settings.mail.send_window.next_open(ctx.now, ctx.settings.timezone);
        ctx.state.postpone(row.id, ctx.holder, at).await?;
        tracing::debug!(outbox_key = %loggable_key(row), at = %at, "outside the sending window; postponed");
        return Ok((label, Outcome::Postponed));
    }
    let message = match &row.payload {
        OutboxPayload::Notice(Some(payload)) => {
            match compose_notice(ctx.settings, payload, &row.recipients, ctx.today, &row.message_id) {
                Ok(message) => message,
                Err(e) => return give_up(ctx, row, label, "compose", &scrub(&e.to_string())).await,
            }
        }
        // Only a skipped step has no payload, and skipped rows are never claimed.
        OutboxPayload::Notice(None) => {
            return give_up(ctx, row, label, "bad_payload", "a notice without a payload").await;
        }
        OutboxPayload::Digest(digest) => match compose_digest(ctx.settings, digest, &row.message_id) {
            Ok(message) => message,
            Err(e) => return give_up(ctx, row, label, "compose", &e.to_string()).await,
        },
        // A row this version cannot render is given up visibly rather than retried for ever.
        OutboxPayload::DigestRun(_) => {
            return give_up(ctx, row, label, "unknown_category", "a digest_run record is never sent").await;
        }
    };
    match ctx.mailer.send(&message).await {
        Ok(()) => {
            ctx.state.mark_sent(row.id, ctx.holder, ctx.now).await?;
            tracing::info!(
                outbox_key = %loggable_key(row),
                message_id = %row.message_id,
                attempts = row.attempts + 1,
                "mail sent"
            );
            Ok((label, Outcome::Sent))
        }
        Err(SendError { permanent: true, class, message }) => give_up(ctx, row, label, class, &message).await,
        Err(SendError { class, message, .. }) => {
            let give_up_after =
                chrono::Duration::from_std(ctx.settings.mail.give_up_after).unwrap_or(chrono::Duration::days(2));
            // The clock starts when the mail was first allowed out, not when it was written: a
            // notice written on Saturday for Monday's window gets its full retry period.
            if row.created_at.max(row.not_before) + give_up_after < ctx.now {
                let error = format!(
                    "{message} (still failing after {})",
                    humantime::format_duration(ctx.settings.mail.give_up_after)
                );
                return give_up(ctx, row, label, class, &error).await;
            }
            let jitter = rand::thread_rng().gen_range(0.8..=1.2);
            let next = ctx.now + retry_delay(ctx.settings, row.attempts, jitter);
            ctx.state.mark_failed(row.id, ctx.holder, &format!("{class}: {message}"), Some(next)).await?;
            tracing::warn!(
                outbox_key = %loggable_key(row),
                class,
                attempts = row.attempts + 1,
                next_attempt = %next,
                error = %message,
                "mail not sent; will retry"
            );
            Ok((label, Outcome::Retrying(class)))
        }
    }
}

async fn give_up(
    ctx: &Context<'_>,
    row: &OutboxRow,
    label: MailLabel,
    class: &'static str,
    error: &str,
) -> Result<(MailLabel, Outcome), StateError> {
    ctx.state.mark_failed(row.id, ctx.holder, &format!("{class}: {error}"), None).await?;
    tracing::warn!(outbox_key = %loggable_key(row), class, attempts = row.attempts + 1, error, "mail given up (dead)");
    Ok((label, Outcome::Dead(class)))
}

/// The outbox key as it may be logged: a notice key holds only kind, case reference and step;
/// a digest key ends in the manager's address, which stays out of the log.
fn loggable_key(row: &OutboxRow) -> &str {
    match row.category() {
        OutboxCategory::Notice => &row.notice_key,
        _ => row.notice_key.rsplit_once('/').map(|(head, _)| head).unwrap_or("(digest)"),
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

    #[test]
    fn claims_outlast_a_batch_of_timeouts() {
        let mut s = crate::config::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(claim_ttl(&s), MIN_CLAIM_TTL);
        s.mail.transport = Transport::Smtp;
        s.mail.smtp.timeout = Duration::from_secs(120);
        assert_eq!(claim_ttl(&s), Duration::from_secs(120 * 2 * 4 + 60));
    }
}
