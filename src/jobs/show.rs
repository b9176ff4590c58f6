//! What the show commands (`deadlines`, `explain`, `digest --dry-run`) print: nothing is written
//! to the state database. `deadlines` and `digest --dry-run` read the state as of the last poll
//! ([`Source::Stored`]: the filters in the statement, the rows streamed, the digest read as the
//! digest job reads it); with `--fresh`, or before any poll, they compute the register as they
//! read it, in case-reference order, one chunk in memory ([`Source::Register`]).

mod compute;
pub use compute::Order;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::app::{App, Moment};
use crate::catalogue::{Catalogue, Words};
use crate::config::Settings;
use crate::digest::{self, Preview};
use crate::domain::{CaseRef, EmailAddress};
use crate::explanation::Explanation;
use crate::jobs::JobError;
use crate::mail::compose;
use crate::register;
use crate::rules::{self, Kind, Role, RuleOptions};
use crate::state::{OutboxRow, OutboxState, ShowQuery, StateError, StoredDeadline};
use crate::sync::PollError;

/// Where `deadlines` and `digest --dry-run` take the deadlines from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The state database as of the last poll, which ended (or, failing that, read the
    /// register) at `polled_at`.
    Stored { polled_at: DateTime<Utc> },
    /// The register, read whole and computed now: asked for (`--fresh`), or no poll has run.
    Register { asked: bool },
}

impl Source {
    /// The state as of the last poll, unless `fresh` or no poll has run yet.
    pub async fn choose(app: &App, fresh: bool) -> Result<Source, JobError> {
        if fresh {
            return Ok(Source::Register { asked: true });
        }
        let poll = app.state.poll_state().await?;
        Ok(match poll.last_success_at.or(poll.watermark) {
            Some(polled_at) => Source::Stored { polled_at },
            None => Source::Register { asked: false },
        })
    }

    /// What standard error says of it, if anything.
    pub fn note(&self) -> Option<String> {
        match self {
            Source::Stored { polled_at } => Some(format!(
                "as of the poll at {} (--fresh reads the register now)",
                polled_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            )),
            Source::Register { asked: true } => None,
            Source::Register { asked: false } => {
                Some("no poll has run yet: computed from the register now (nothing is stored)".to_string())
            }
        }
    }
}

/// Why handing on the current deadlines stopped: the computation, or the receiver (`E`).
enum Stop<E> {
    Job(JobError),
    Receiver(E),
}

impl<E> From<PollError> for Stop<E> {
    fn from(e: PollError) -> Self {
        Stop::Job(e.into())
    }
}

impl<E> From<StateError> for Stop<E> {
    fn from(e: StateError) -> Self {
        Stop::Job(e.into())
    }
}

/// Hands `each` every current deadline (of `unit` as stored, upper case; not withdrawn)
/// computed from the register now, in the stored listing's order or in any (`order`), as the
/// register is read (`compute::each_current_deadline`: one chunk in memory); nothing is written.
/// If the register cannot be opened, the stored deadlines (as of the last poll) are handed on instead, and the
/// warning returned says so. Returns it.
pub async fn each_deadline_now<E: From<JobError>>(
    app: &App,
    at: Moment,
    unit: Option<&str>,
    order: compute::Order,
    mut each: impl FnMut(StoredDeadline) -> Result<(), E>,
) -> Result<Option<String>, E> {
    let mut wanted = |d: StoredDeadline| -> Result<(), Stop<E>> {
        if d.withdrawn || unit.is_some_and(|u| d.unit.as_str() != u) {
            return Ok(());
        }
        each(d).map_err(Stop::Receiver)
    };
    let register = match app.register().await {
        Ok(register) => register,
        Err(e) => {
            let stored = ShowQuery { unit: unit.map(str::to_string), status: None, today: at.today };
            match app.state.each_deadline(&stored, &mut wanted).await {
                Ok(_) => return Ok(Some(format!("showing stored deadlines; the register could not be read: {e}"))),
                Err(Stop::Job(e)) => return Err(e.into()),
                Err(Stop::Receiver(e)) => return Err(e),
            }
        }
    };
    match compute::each_current_deadline(&register, &app.state, &app.settings, (at.today, at.now), order, &mut wanted)
        .await
    {
        Ok(_) => Ok(None),
        Err(Stop::Job(e)) => Err(e.into()),
        Err(Stop::Receiver(e)) => Err(e),
    }
}

/// What the digests of `at.today` show, gathered as the register's deadlines are computed and
/// stream past, as the digest job gathers them from the state (`jobs::digest::read_facts`): each
/// unit's lists kept to `digest.max_rows`, the 30-day share counted per unit, and of the
/// investigations with a child's key only what a chain needs. Memory grows with the units, the
/// rows a digest prints and those investigations, not with every deadline.
async fn digest_facts_now(app: &App, at: Moment) -> Result<(digest::DigestFacts, Option<String>), JobError> {
    let settings = &app.settings;
    let recent = crate::report::Period::recent(at.today);
    let mut facts = digest::DigestFacts::new(settings, at.today);
    let mut tallies: std::collections::HashMap<crate::domain::UnitCode, crate::report::Tally> =
        std::collections::HashMap::new();
    let mut investigations = digest::Investigations::default();
    // The lists keep the first rows by their own order, the tallies and chains need none.
    let warning = each_deadline_now(app, at, None, compute::Order::Any, |d: StoredDeadline| -> Result<(), JobError> {
        if d.withdrawn {
            return Ok(());
        }
        if recent.contains(d.deadline.due_on) {
            tallies.entry(d.unit.clone()).or_default().count(&d.deadline, at.today, 1);
        }
        facts.deadline(settings, &d);
        investigations.push(&d);
        facts.unit(d.unit);
        Ok(())
    })
    .await?;
    for (unit, tally) in tallies {
        facts.recent(unit, &tally);
    }
    for (unit, pair) in investigations.open_chains(settings.rules.chain_window_days) {
        facts.chain(unit, pair);
    }
    Ok((facts, warning))
}

/// The digests that would be sent on `at.today` (all, or only `manager`'s), as text: read as
/// the digest job reads them from the state as of the last poll, or, from `source`'s register,
/// built from every deadline computed in memory.
pub async fn digest_preview(
    app: &App,
    at: Moment,
    manager: Option<&EmailAddress>,
    source: Source,
) -> Result<PreviewText, JobError> {
    let (preview, warning) = match source {
        Source::Stored { .. } => {
            let facts = crate::jobs::digest::read_facts(&app.state, &app.settings, at.today).await?;
            (digest::preview_from_facts(&app.settings, facts, manager), None)
        }
        Source::Register { .. } => {
            let (facts, warning) = digest_facts_now(app, at).await?;
            (digest::preview_from_facts(&app.settings, facts, manager), warning)
        }
    };
    let text = match preview {
        Preview::Nothing(text) => text,
        Preview::Digests(digests) => {
            let texts = digests
                .iter()
                .map(|d| compose::digest_preview_text(&app.settings, d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JobError::Render(e.to_string()))?;
            texts.join(&format!("\n{}\n\n", "-".repeat(72)))
        }
    };
    Ok(PreviewText { text, warning })
}

/// A text to print, and a warning for standard error.
#[derive(Debug)]
pub struct PreviewText {
    pub text: String,
    pub warning: Option<String>,
}

/// The outbox rows of one case, for `explain`.
pub async fn outbox_of_case(app: &App, case_ref: &str) -> Result<Vec<OutboxRow>, JobError> {
    Ok(app.state.outbox_for_case(case_ref).await?)
}

/// One ladder step of a deadline as the outbox holds it, for `explain`: its state, and the
/// state of the same notice sent one role up (key + `/up`), if there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedStep {
    pub step: i32,
    pub state: OutboxState,
    pub up: Option<OutboxState>,
}

/// A recorded step in the words of `explain`'s language, with the reason for a step that was not
/// sent: caught up (a later step was reached when the deadline was seen, and only the latest is
/// sent), first seen past the horizon (every step skipped), or cancelled (closed or withdrawn).
fn step_words(settings: &Settings, r: &RecordedStep, all: &[RecordedStep]) -> String {
    let horizon = settings.ladders.first_sight_horizon_days;
    let later_sent =
        all.iter().any(|o| o.step > r.step && !matches!(o.state, OutboxState::Skipped | OutboxState::Cancelled));
    let catalogue = Words::of(settings);
    let words = |state: OutboxState| -> String {
        match state {
            OutboxState::Sent => catalogue.fill("explain.sent", &[]),
            OutboxState::Pending => catalogue.fill("explain.pending", &[]),
            OutboxState::Retrying => catalogue.fill("explain.retrying", &[]),
            OutboxState::Dead => catalogue.fill("explain.dead", &[]),
            OutboxState::Skipped if later_sent => catalogue.fill("explain.skipped_caught_up", &[]),
            OutboxState::Skipped => catalogue.fill("explain.skipped_horizon", &[("horizon", &horizon)]),
            OutboxState::Cancelled => catalogue.fill("explain.cancelled", &[]),
        }
    };
    match r.up {
        Some(up) => format!("{} → {}: {}", words(r.state), catalogue.get("explain.one_role_up"), words(up)),
        None => words(r.state),
    }
}

/// What a poll now would mail, for `poll --once --dry-run`: the register read whole and
/// computed in memory over the stored state (as `deadlines --fresh`), each open deadline's
/// ladder decided against the steps the outbox already holds, the first-sight horizon applied.
/// Nothing is written or sent.
#[derive(Debug, Default)]
pub struct PollPreview {
    /// Notices per (kind, step offset), with the step's roles.
    pub notices: std::collections::BTreeMap<(&'static str, i32), (u64, String)>,
    /// Earlier steps a poll would record as skipped (a deadline already past them).
    pub skipped: u64,
    /// Deadlines first seen more than `ladder.first_sight_horizon` after their last day: every
    /// step skipped, no mail.
    pub beyond_horizon: u64,
}

impl PollPreview {
    pub fn total(&self) -> u64 {
        self.notices.values().map(|(n, _)| n).sum()
    }

    /// The preview as the command prints it.
    pub fn text(&self, today: NaiveDate, horizon_days: i64) -> String {
        let mut out = format!(
            "poll --dry-run for {today}: the register read now; nothing is written or sent\n\
             a poll would send {} notice(s) (when the sending window mail.send_window is open):\n",
            self.total()
        );
        if !self.notices.is_empty() {
            out.push_str(&format!("  {:<24} {:>5} {:>8}  TO\n", "KIND", "STEP", "NOTICES"));
            for ((kind, step), (n, roles)) in &self.notices {
                out.push_str(&format!("  {kind:<24} {step:>+5} {n:>8}  {roles}\n"));
            }
        }
        out.push_str(&format!(
            "and record {} earlier step(s) as skipped (caught up: only the latest step reached is sent); \
             {} deadline(s) first seen more than {horizon_days} days after their last day get no notice \
             (ladder.first_sight_horizon)\n",
            self.skipped, self.beyond_horizon
        ));
        out
    }
}

/// See [`PollPreview`]. A register that cannot be read is an error here (nothing to preview).
pub async fn poll_preview(app: &App, at: Moment) -> Result<PollPreview, JobError> {
    // The open deadlines only: the closed ones reach no step.
    let mut open: Vec<StoredDeadline> = Vec::new();
    let warning =
        each_deadline_now(app, at, None, compute::Order::Listing, |d: StoredDeadline| -> Result<(), JobError> {
            if !d.deadline.is_closed() {
                open.push(d);
            }
            Ok(())
        })
        .await?;
    if let Some(warning) = warning {
        return Err(JobError::Render(warning));
    }
    let mut refs: Vec<CaseRef> = open.iter().map(|d| d.case_ref.clone()).collect();
    refs.dedup();
    let recorded = app.state.recorded_steps(&refs).await?;
    let settings = &app.settings;
    let mut preview = PollPreview::default();
    for stored in &open {
        let deadline = &stored.deadline;
        let ladder = settings.ladders.for_kind(deadline.kind);
        let steps = recorded
            .get(&(stored.case_ref.clone(), deadline.kind, stored.cycle_start))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut decision = rules::decide(deadline, ladder, at.today, steps);
        if stored
            .first_seen_on
            .is_some_and(|first| rules::beyond_first_sight(deadline, first, settings.ladders.first_sight_horizon_days))
        {
            if decision.send.is_some() {
                preview.beyond_horizon += 1;
            }
            decision = decision.silenced();
        }
        preview.skipped += decision.skip.len() as u64;
        if let Some(step) = decision.send.and_then(|offset| ladder.step(offset)) {
            let roles: Vec<&str> = step.roles.iter().map(|r| r.as_str()).collect();
            let entry = preview.notices.entry((deadline.kind.as_str(), step.offset)).or_insert((0, roles.join(", ")));
            entry.0 += 1;
        }
    }
    Ok(preview)
}

/// One chain (JO 2565-2016) the case's investigation is part of, named by the other case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainNote {
    /// The other case of the pair.
    pub other: CaseRef,
    /// Whether this case's investigation is the later one (opened after the other closed).
    pub this_is_later: bool,
    /// Days from the earlier investigation's close to the later one's opening.
    pub gap_days: i64,
}

/// The chains `case`'s investigation forms with the investigations of `others` (rows of the
/// same child), within `window_days`.
pub fn chain_notes(case: &register::CaseRow, others: &[register::CaseRow], window_days: i64) -> Vec<ChainNote> {
    let span = |row: &register::CaseRow| {
        row.dates.investigation_opened_on.map(|opened_on| rules::InvestigationSpan {
            child: (),
            opened_on,
            closed_on: row.dates.investigation_closed_on,
        })
    };
    let Some(this) = span(case) else { return Vec::new() };
    let mut notes = Vec::new();
    for other in others.iter().filter(|o| o.case_ref != case.case_ref) {
        let Some(that) = span(other) else { continue };
        for (earlier, later, this_is_later) in [(&that, &this, true), (&this, &that, false)] {
            if let Some(closed) = earlier.closed_on {
                if rules::is_chained(closed, later.opened_on, window_days) {
                    let gap_days = (later.opened_on - closed).num_days();
                    notes.push(ChainNote { other: other.case_ref.clone(), this_is_later, gap_days });
                }
            }
        }
    }
    notes.sort_by(|a, b| a.other.as_str().cmp(b.other.as_str()));
    notes
}

/// The explanation as text; `recorded` lists a kind's ladder steps already in the outbox, with
/// their outbox state; `chains` the chained investigations the case is part of.
pub fn explain_text(
    settings: &Settings,
    case: &register::CaseRow,
    today: NaiveDate,
    others: &[rules::OtherInvestigation],
    chains: &[ChainNote],
    recorded: impl Fn(Kind) -> Vec<RecordedStep>,
) -> String {
    let words = Words::of(settings);
    let options = RuleOptions { holiday_rule: settings.calendar.holiday_rule };
    let (case_ref, unit, dates) = (case.case_ref.as_str(), case.unit.as_str(), &case.dates);
    let mut out = String::new();
    let mut say = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    say(words.fill("explain.case", &[("case_ref", &case_ref), ("unit", &unit), ("today", &today)]));
    let deadlines = rules::deadlines_for(dates, others, options);
    if deadlines.is_empty() {
        say(words.fill("explain.no_deadlines", &[]));
    }
    if rules::report_during_open_investigation(dates, others) {
        say(String::new());
        say(words.fill("explain.no_assessment", &[]));
    }
    for chain in chains {
        say(String::new());
        let other = chain.other.as_str();
        let window = settings.rules.chain_window_days;
        let key = if chain.this_is_later { "explain.chain_later" } else { "explain.chain_earlier" };
        say(words.fill(key, &[("days", &chain.gap_days), ("other", &other), ("window", &window)]));
    }
    explain_deadlines(settings, &deadlines, today, recorded, &mut out);
    out
}

/// The explanation of a placement's deadlines (contract §1b): what the row is, each clock as
/// `explain` words a case's, and the closed cycles of its recurring clocks that fristvakt keeps
/// (`closed_cycles`, contract §2); `recorded` as for [`explain_text`], of the running cycles.
pub fn explain_placement_text(
    settings: &Settings,
    row: &register::PlacementRow,
    context: &rules::PlacementContext,
    today: NaiveDate,
    closed_cycles: &[rules::Deadline],
    recorded: impl Fn(Kind) -> Vec<RecordedStep>,
) -> String {
    let words = Words::of(settings);
    let options = RuleOptions { holiday_rule: settings.calendar.holiday_rule };
    let (placement_ref, unit, basis) = (row.placement_ref.as_str(), row.unit.as_str(), row.dates.basis.as_str());
    let mut out = String::new();
    let case = row.case_ref.as_ref().map(|c| c.as_str());
    let args: [(&str, &dyn std::fmt::Display); 5] = [
        ("placement_ref", &placement_ref),
        ("basis", &basis),
        ("case_ref", &case.unwrap_or("")),
        ("unit", &unit),
        ("today", &today),
    ];
    out.push_str(&words.fill(if case.is_some() { "explain.placement_in_case" } else { "explain.placement" }, &args));
    out.push('\n');
    let deadlines = rules::placement_deadlines_for(&row.dates, context, options);
    if deadlines.is_empty() {
        out.push_str(words.get("explain.placement_no_deadlines"));
        out.push('\n');
    }
    explain_deadlines(settings, &deadlines, today, recorded, &mut out);
    if !closed_cycles.is_empty() {
        out.push('\n');
        out.push_str(words.get("explain.closed_cycles"));
        out.push('\n');
        for d in closed_cycles {
            let closed_on = d.closed_on.map(|c| c.to_string()).unwrap_or_default();
            let status = d.status(today);
            out.push_str(&words.fill(
                "explain.closed_cycle",
                &[
                    ("kind", &d.kind.as_str()),
                    ("start_on", &d.start_on),
                    ("due_on", &d.due_on),
                    ("closed_on", &closed_on),
                    ("status", &status.as_str()),
                ],
            ));
            out.push('\n');
        }
    }
    out
}

/// Each deadline in the words of the notice mails, with its ladder's steps and their state.
fn explain_deadlines(
    settings: &Settings,
    deadlines: &[rules::Deadline],
    today: NaiveDate,
    recorded: impl Fn(Kind) -> Vec<RecordedStep>,
    out: &mut String,
) {
    let words = Words::of(settings);
    let options = RuleOptions { holiday_rule: settings.calendar.holiday_rule };
    let mut say = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    for d in deadlines {
        say(String::new());
        say(format!(
            "{} ({}, {})",
            Catalogue::for_settings(settings, settings.mail.language).clock(d.kind).name,
            d.kind.as_str(),
            Catalogue::for_settings(settings, settings.mail.language).clock(d.kind).citation
        ));
        // The law in the words of the notice mails: the same template, the same lines.
        match compose::explanation_lines(settings, &Explanation::new(d, today, options)) {
            Ok(lines) => lines.iter().for_each(|line| say(format!("  {line}"))),
            Err(e) => say(format!("  {e}")),
        }
        let recorded = recorded(d.kind);
        for step in settings.ladders.for_kind(d.kind).steps() {
            let fires = step.fires_on(d);
            let roles: Vec<&str> = step.roles.iter().map(|r| words.get(explain_role(*r))).collect();
            let state = recorded.iter().find(|r| r.step == step.offset);
            let status = match state {
                Some(r) => step_words(settings, r, &recorded),
                None if d.is_closed() => words.fill("explain.step_closed", &[]),
                None if fires <= today => words.fill("explain.step_reached", &[]),
                None => words.fill("explain.step_upcoming", &[]),
            };
            say(format!(
                "  {} {:>4} {fires} → {}: {status}",
                words.get("explain.step"),
                step.label(),
                roles.join(", ")
            ));
        }
    }
}

/// The key of a ladder step's role in `explain` (the Swedish title, the English machine name).
fn explain_role(role: Role) -> &'static str {
    match role {
        Role::Caseworker => "explain.role.caseworker",
        Role::TeamLead => "explain.role.team_lead",
        Role::Manager => "explain.role.manager",
    }
}
