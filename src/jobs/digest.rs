//! The digest job: each manager's daily digest, written to the outbox once a day.

use chrono::{DateTime, NaiveDate, Utc};

use crate::app::{App, Moment};
use crate::config::Settings;
use crate::digest::{run_key, ChainPair, Digest, DigestFacts, DigestReport, DigestSchedule};
use crate::domain::{OutboxKey, UnitCode};
use crate::jobs::JobError;
use crate::notice::{self, Recipient};
use crate::report;
use crate::rules::Role;
use crate::state::{DigestRun, OutboxEntry, OutboxPayload, OutboxState, StateError, StateStore};

/// When today's scheduled digest time has passed and today's digests are not yet recorded,
/// records them (also when the daemon was down at the scheduled time and comes back the same
/// day). `None` when nothing was due.
pub async fn run_once(app: &App, at: Moment) -> Result<Option<DigestReport>, JobError> {
    run_due(&app.state, &app.settings, &app.schedule, at).await
}

/// Builds the digests of `today` from the stored deadlines and writes them to the outbox
/// (insert-if-absent on [`digest_key`]), together with the record that today's run happened,
/// in one transaction. Running it again, after a restart or on a second replica adds nothing.
pub async fn enqueue_digests(
    state: &StateStore,
    settings: &Settings,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> Result<DigestReport, JobError> {
    let digests = read_facts(state, settings, today).await?.into_digests(settings);
    let mut entries: Vec<OutboxEntry> = digests.iter().map(|d| outbox_entry(settings, d, now)).collect();
    entries.push(run_entry(settings, today, digests.len(), now));
    let inserted = state.record_steps(&entries, &[], now).await?;
    let enqueued = inserted.iter().filter(|k| k.parse::<OutboxKey>().is_ok_and(|k| k.is_digest())).count();
    let report =
        DigestReport { date: Some(today), built: digests.len(), enqueued, already_recorded: digests.len() - enqueued };
    tracing::info!(
        date = %today,
        built = report.built,
        enqueued = report.enqueued,
        already_recorded = report.already_recorded,
        "daily digests recorded"
    );
    Ok(report)
}

/// The daemon's digest job, for each fire time of the schedule and once at start-up: when
/// today's scheduled time has passed (see `DigestSchedule::latest_at_or_before`) and today's
/// digests are not yet recorded, records them. Returns `None` when nothing was due. Today is
/// `at.today` (the day of `at.now` in the configured zone in the daemon); the schedule and the
/// sending window are asked about the instant `at.now` and its local day.
///
/// A day on which the sending window never opens again (a public holiday such as julafton, or
/// after its closing hour) gets no digest: it would arrive the next working morning beside that
/// day's own digest, with yesterday's figures.
async fn run_due(
    state: &StateStore,
    settings: &Settings,
    schedule: &DigestSchedule,
    at: Moment,
) -> Result<Option<DigestReport>, JobError> {
    let tz = settings.timezone;
    let Moment { now, today, .. } = at;
    if schedule.latest_at_or_before(now, tz).is_none() {
        return Ok(None);
    }
    // Whether the window opens again on the instant's own local day (the same day as `today`
    // in the daemon; a fixed `--today` keeps the instant's window).
    let opens = settings.mail.send_window.next_open(now, tz);
    if opens.with_timezone(&tz).date_naive() != now.with_timezone(&tz).date_naive() {
        tracing::info!(date = %today, "daily digests skipped: the sending window does not open again today");
        return Ok(None);
    }
    if state.outbox_has_key(&run_key(today)).await? {
        return Ok(None);
    }
    enqueue_digests(state, settings, today, now).await.map(Some)
}

/// What the digests of `today` show, read from the state database and nothing more: the units
/// holding deadlines, the open deadlines overdue or due within `digest::UPCOMING_DAYS` (each
/// unit's lists kept to `digest.max_rows` as they are read), the 30-day share counted by the
/// database with the report's tally (`report::recent_by_unit_and_kind`), and the open chains.
/// Memory grows with the units and the rows a digest prints, not with the stored deadlines; the
/// digests equal those [`crate::digest::build_digests`] makes of every stored deadline.
pub async fn read_facts(state: &StateStore, settings: &Settings, today: NaiveDate) -> Result<DigestFacts, JobError> {
    let mut facts = DigestFacts::new(settings, today);
    for unit in state.units_with_deadlines().await? {
        facts.unit(unit);
    }
    state
        .each_open_deadline_due_by(facts.shown_until(), |stored| {
            facts.deadline(settings, &stored);
            Ok::<_, StateError>(())
        })
        .await?;
    for ((unit, _), tally) in report::recent_by_unit_and_kind(state, today).await? {
        // Stored units are stored as parsed; one that no longer parses has no digest.
        if let Ok(unit) = UnitCode::parse(&unit) {
            facts.recent(unit, &tally);
        }
    }
    for chain in state.open_chains(settings.rules.chain_window_days).await? {
        facts.chain(chain.unit, ChainPair { earlier: chain.earlier, later: chain.later });
    }
    Ok(facts)
}

fn outbox_entry(settings: &Settings, digest: &Digest, now: DateTime<Utc>) -> OutboxEntry {
    let key = OutboxKey::Digest { date: digest.date, manager: digest.manager.clone() };
    let recipients =
        vec![Recipient { role: Role::Manager, address: digest.manager.clone(), instead_of_caseworker: false }];
    OutboxEntry {
        message_id: notice::message_id(&key.to_string(), &settings.mail.from),
        notice_key: key,
        case_ref: None,
        kind: None,
        step: None,
        recipients,
        payload: OutboxPayload::Digest(Box::new(digest.clone())),
        state: OutboxState::Pending,
        not_before: now,
    }
}

fn run_entry(settings: &Settings, date: NaiveDate, digests: usize, now: DateTime<Utc>) -> OutboxEntry {
    let key = OutboxKey::DigestRun { date };
    OutboxEntry {
        message_id: notice::message_id(&key.to_string(), &settings.mail.from),
        notice_key: key,
        case_ref: None,
        kind: None,
        step: None,
        recipients: Vec::new(),
        payload: OutboxPayload::DigestRun(DigestRun { date, digests }),
        // Skipped: a record, never claimed by the dispatcher.
        state: OutboxState::Skipped,
        not_before: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::tests::{sample_digest, settings};

    #[test]
    fn digest_keys_are_per_manager_and_day_and_payload_round_trips() {
        let s = settings("");
        let digest = sample_digest(&s);
        assert_eq!(
            crate::digest::digest_key(&digest.manager, digest.date),
            "digest/2026-11-25/ec.bromma@kommun.example"
        );
        let entry = outbox_entry(&s, &digest, Utc::now());
        assert_eq!(entry.payload.category().as_str(), "digest");
        let OutboxPayload::Digest(back) = &entry.payload else { panic!("{:?}", entry.payload) };
        assert_eq!(**back, digest);
        let recipients = &entry.recipients;
        assert_eq!(recipients[0].role, Role::Manager);
        assert_eq!(recipients[0].address.as_str(), "ec.bromma@kommun.example");
    }
}
