//! The ladder job: the escalation steps reached by today, written to the outbox.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};

use crate::app::{App, Moment};
use crate::config::Settings;
use crate::domain::{CaseRef, OutboxKey};
use crate::jobs::{poll, JobError};
use crate::metrics::Outcome;
use crate::notice::{self, Recipient};
use crate::rules::ladder::offset_label;
use crate::rules::{self, decide, Deadline, Kind, Ladder};
use crate::state::{OutboxEntry, OutboxPayload, OutboxState, StateStore};
use crate::sync::PollError;

/// Deadlines visited per round of ladder evaluation.
const LADDER_BATCH: i64 = 500;

/// What one ladder evaluation wrote to the outbox.
#[derive(Debug, Clone, Default)]
pub struct LadderReport {
    pub deadlines_visited: u64,
    /// Notices written, per kind and step.
    pub enqueued: BTreeMap<(Kind, i32), u64>,
    pub skipped: u64,
    pub caseworker_fallbacks: u64,
    /// Stored deadlines that did not decode, set aside (logged without their values).
    pub unreadable: u64,
}

impl LadderReport {
    pub fn notices_enqueued(&self) -> u64 {
        self.enqueued.values().sum()
    }
}

/// Records the ladder steps reached by `at.today` (the poll job does this after every poll).
/// `None` when another replica holds the poll lease.
pub async fn run_once(app: &App, at: Moment) -> Result<Option<LadderReport>, JobError> {
    if !poll::take_lease(app, at).await? {
        return Ok(None);
    }
    evaluate(app, at).await.map(Some)
}

/// The ladder evaluation itself, for a caller that holds the poll lease.
pub(crate) async fn evaluate(app: &App, at: Moment) -> Result<LadderReport, JobError> {
    let report = evaluate_ladders(&app.state, &app.settings, at.today, at.now).await?;
    for ((kind, step), n) in &report.enqueued {
        app.metrics.add_notice(*kind, offset_label(*step), Outcome::Enqueued, *n);
    }
    app.metrics.add_caseworker_fallbacks(report.caseworker_fallbacks);
    Ok(report)
}

/// The day the next step after `last_offset` fires, if any.
fn next_step_after(ladder: &Ladder, deadline: &Deadline, last_offset: Option<i32>) -> Option<NaiveDate> {
    if deadline.is_closed() {
        return None;
    }
    ladder.steps().iter().filter(|s| last_offset.is_none_or(|last| s.offset > last)).map(|s| s.fires_on(deadline)).min()
}

/// Writes an outbox row for every ladder step reached by `today` (the latest one per deadline;
/// earlier unrecorded ones as skipped), insert-if-absent, so running it again adds nothing.
pub async fn evaluate_ladders(
    state: &StateStore,
    settings: &Settings,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> Result<LadderReport, PollError> {
    let mut report = LadderReport::default();
    let mut visited: HashSet<(CaseRef, Kind, Option<NaiveDate>)> = HashSet::new();
    let not_before = settings.mail.send_window.next_open(now, settings.timezone);
    loop {
        let (batch, unreadable) = state.deadlines_due_for_steps(today, LADDER_BATCH).await?;
        report.unreadable += unreadable;
        if batch.is_empty() {
            if unreadable > 0 {
                // Set aside: the next round reads past them.
                continue;
            }
            break;
        }
        let fresh =
            batch.iter().filter(|d| !visited.contains(&(d.case_ref.clone(), d.deadline.kind, d.cycle_start))).count();
        if fresh == 0 {
            return Err(PollError::NoProgress(batch.len()));
        }
        let case_refs: Vec<CaseRef> = batch.iter().map(|d| d.case_ref.clone()).collect();
        let recorded = state.recorded_steps(&case_refs).await?;
        let mut entries = Vec::new();
        let mut next_steps = Vec::with_capacity(batch.len());
        for stored in &batch {
            visited.insert((stored.case_ref.clone(), stored.deadline.kind, stored.cycle_start));
            report.deadlines_visited += 1;
            let deadline = &stored.deadline;
            let ladder = settings.ladders.for_kind(deadline.kind);
            let cycle = stored.cycle_start;
            let steps =
                recorded.get(&(stored.case_ref.clone(), deadline.kind, cycle)).map(Vec::as_slice).unwrap_or(&[]);
            let mut decision = decide(deadline, ladder, today, steps);
            // First seen long after its last day (the first start against a register with years
            // of history): every step is recorded as skipped, nothing is sent.
            if stored.first_seen_on.is_some_and(|first| {
                rules::beyond_first_sight(deadline, first, settings.ladders.first_sight_horizon_days)
            }) {
                decision = decision.silenced();
            }
            for offset in &decision.skip {
                entries.push(skipped_entry(settings, (&stored.case_ref, deadline.kind, cycle), *offset, not_before));
                report.skipped += 1;
            }
            if let Some(offset) = decision.send {
                if let Some(step) = ladder.step(offset) {
                    let (recipients, fell_back) =
                        notice::resolve_recipients(settings, &stored.unit, stored.caseworker.as_ref(), &step.roles);
                    if fell_back {
                        report.caseworker_fallbacks += 1;
                    }
                    let mut payload = notice::payload(&stored.case_ref, &stored.unit, deadline, step, today)
                        .with_caseworker(stored.caseworker.clone());
                    payload.case_of = stored.case_of.clone();
                    entries.push(notice_entry(settings, payload, cycle, recipients, not_before));
                    *report.enqueued.entry((deadline.kind, offset)).or_default() += 1;
                }
            }
            let last = steps.iter().copied().chain(decision.send).chain(decision.skip.iter().copied()).max();
            next_steps.push((stored.case_ref.clone(), deadline.kind, cycle, next_step_after(ladder, deadline, last)));
        }
        let inserted = state.record_steps(&entries, &next_steps, now).await?;
        if inserted.len() < entries.len() {
            // Another process recorded some of these first: that is the exactly-once guarantee
            // at work, not an error.
            tracing::debug!(already = entries.len() - inserted.len(), "ladder steps already recorded elsewhere");
        }
    }
    if report.notices_enqueued() > 0 || report.skipped > 0 {
        tracing::info!(
            notices = report.notices_enqueued(),
            skipped = report.skipped,
            caseworker_fallbacks = report.caseworker_fallbacks,
            "ladder steps recorded"
        );
    }
    Ok(report)
}

fn notice_entry(
    settings: &Settings,
    payload: notice::NoticePayload,
    cycle_start: Option<NaiveDate>,
    recipients: Vec<Recipient>,
    not_before: DateTime<Utc>,
) -> OutboxEntry {
    let key = OutboxKey::notice(payload.case_ref.clone(), payload.kind, cycle_start, payload.step);
    OutboxEntry {
        message_id: notice::message_id(&key.to_string(), &settings.mail.from),
        notice_key: key,
        case_ref: Some(payload.case_ref.clone()),
        kind: Some(payload.kind),
        step: Some(payload.step),
        recipients,
        payload: OutboxPayload::Notice(Some(payload)),
        state: OutboxState::Pending,
        not_before,
    }
}

/// The record of a step passed over by a catch-up: it has no payload and is never sent.
fn skipped_entry(
    settings: &Settings,
    (case_ref, kind, cycle_start): (&CaseRef, Kind, Option<NaiveDate>),
    offset: i32,
    not_before: DateTime<Utc>,
) -> OutboxEntry {
    let key = OutboxKey::notice(case_ref.clone(), kind, cycle_start, offset);
    OutboxEntry {
        message_id: notice::message_id(&key.to_string(), &settings.mail.from),
        notice_key: key,
        case_ref: Some(case_ref.clone()),
        kind: Some(kind),
        step: Some(offset),
        recipients: Vec::new(),
        payload: OutboxPayload::Notice(None),
        state: OutboxState::Skipped,
        not_before,
    }
}
