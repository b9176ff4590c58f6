//! Recording what became of a claimed row: an attempt settled and recorded (sent, retried, or
//! one role up, else a dead letter), a refusal of fristvakt by the server, an unreachable
//! server, an unconfirmed message, and the rows that cannot be sent at all.

use rand::Rng;

use super::settle::{dead_letter_cause, retry_delay, settle, Policy, Verdict};
use super::{log_key, loggable_key, Context, Handled, MailLabel, Outcome};
use crate::domain::{EmailAddress, ErrorClass, OutboxKey};
use crate::mail::transport::{RecipientResult, SendError};
use crate::notice::{message_id, Recipient};
use crate::state::{
    Attempt, Escalation, OutboxCategory, OutboxPayload, OutboxRow, OutboxState, StateError, UndecodableRow,
};

/// A row this version cannot decode is given up at once, visibly: marked dead with its class,
/// logged as an error (an operator must look at it) and counted, never retried for ever nor
/// skipped without a trace.
pub(super) async fn give_up_undecodable(
    ctx: &Context,
    row: &UndecodableRow,
) -> Result<(MailLabel, Handled), StateError> {
    let label = MailLabel { category: row.category, kind: row.kind, step: row.step };
    let key = log_key(&row.notice_key, row.category);
    if !ctx.state.mark_failed(row.id, &ctx.holder, &format!("{}: {}", row.class, row.error), None).await? {
        return Ok((label, claim_lost(&key).into()));
    }
    tracing::error!(
        outbox_key = %key,
        class = row.class.as_str(),
        attempts = row.attempts + 1,
        error = %row.error,
        "outbox row cannot be decoded; given up (dead)"
    );
    Ok((label, Handled { dead_letter: Some(dead_letter_cause(row.class)), ..Outcome::Dead(row.class).into() }))
}

/// Settles an attempt ([`settle`]) and records it: sent, retried no sooner than `at_least`
/// from now, or — nobody reached — dead, with the notice one role up when there is one, else
/// a dead letter (counted, logged as an error).
pub(super) async fn conclude(
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
                class = class.as_str(),
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
                    escalated_to = %log_key(&up.notice_key.to_string(), Some(OutboxCategory::Notice)),
                    role = up.recipients.first().map(|r| r.role.as_str()).unwrap_or_default(),
                    error = %error,
                    "the mail reached none of its recipients; given up (dead) and sent one role up"
                ),
                (Some(up), false) => tracing::warn!(
                    outbox_key = %key,
                    escalated_to = %log_key(&up.notice_key.to_string(), Some(OutboxCategory::Notice)),
                    error = %error,
                    "the mail reached none of its recipients; given up (dead), the notice one role up was already \
                     written (or its deadline is closed)"
                ),
                (None, _) => tracing::error!(
                    outbox_key = %key,
                    class = class.as_str(),
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

/// The notice of a row that reached none of its recipients, for the next role up: the role
/// above the highest role among its recipients (caseworker → team lead → unit manager), whose
/// addresses — without the `unreached` ones — get it; if that leaves nobody, the role above
/// that. `None` for digests and above the manager.
pub(super) fn escalation(ctx: &Context, row: &OutboxRow, unreached: &[EmailAddress]) -> Option<Escalation> {
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
        // A key this version cannot read is no notice it wrote: nobody up to carry it.
        let Ok(key) = row.notice_key.parse::<OutboxKey>() else { return None };
        let notice_key = key.up();
        return Some(Escalation {
            message_id: message_id(&notice_key.to_string(), &ctx.settings.mail.from),
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
pub(super) async fn server_refused(
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
        class = error.class.as_str(),
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
pub(super) async fn unavailable(
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
        class = error.class.as_str(),
        error = %error.message,
        "the mail server cannot be reached; mail kept in its place, dispatch paused"
    );
    Ok((label, Outcome::Unavailable(error.class).into()))
}

/// The claim was no longer this sender's when it recorded: it had lapsed and another sender
/// took the row. Nothing was written; logged and counted.
pub(super) fn claim_lost(key: &str) -> Outcome {
    tracing::error!(
        outbox_key = %key,
        "claim lost: another sender took this row while this one worked on it; its outcome here is not recorded"
    );
    Outcome::ClaimLost
}

/// The message's final `.` went out and no reply came: the server may have accepted the mail.
/// Tried again (to the recipients still owed it) only once `mail.smtp.data_timeout` has passed,
/// so that a slow relay's mail is not sent twice in a hurry; counted as unconfirmed.
pub(super) async fn unconfirmed(
    ctx: &Context,
    row: &OutboxRow,
    label: MailLabel,
    error: &SendError,
) -> Result<(MailLabel, Handled), StateError> {
    let wait = chrono::Duration::from_std(ctx.settings.mail.smtp.data_timeout).unwrap_or(chrono::Duration::minutes(10));
    tracing::warn!(
        outbox_key = %loggable_key(row),
        class = error.class.as_str(),
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
pub(super) async fn give_up(
    ctx: &Context,
    row: &OutboxRow,
    label: MailLabel,
    class: ErrorClass,
    error: &str,
) -> Result<(MailLabel, Handled), StateError> {
    if !ctx.state.mark_failed(row.id, &ctx.holder, &format!("{class}: {error}"), None).await? {
        return Ok((label, claim_lost(&loggable_key(row)).into()));
    }
    tracing::error!(outbox_key = %loggable_key(row), class = class.as_str(), attempts = row.attempts + 1, error, "dead letter: the mail cannot be sent");
    Ok((label, Handled { dead_letter: Some(dead_letter_cause(class)), ..Outcome::Dead(class).into() }))
}
