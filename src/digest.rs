//! Daily digests (daglig fristöversikt): one mail per manager (enhetschef) and day that shows,
//! for each unit the manager leads, the overdue deadlines, those due within a week, counts per
//! kind and the share of deadlines met over the last 30 days (register contract §3).
//!
//! The module has three layers:
//! - [`DigestSchedule`]: when digests are due, from `digest.cron` in the configured time zone;
//! - [`build_digests`]: what they say, a pure function of settings, stored deadlines and `today`;
//! - [`enqueue_digests`] / [`run_due`]: writing them to the outbox, once per manager and day, as
//!   category `digest` rows whose payload is the serialised [`Digest`]; the dispatcher renders
//!   them with [`crate::mail::compose::compose_digest`] when it sends, from the templates'
//!   [`Context`] built here.
//!
//! Only case references, unit codes, dates, kinds, caseworker addresses and case links appear in
//! a digest: nothing else about a case leaves the register.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::catalogue::Words;
use crate::config::Settings;
pub use crate::domain::payload::{ChainPair, Compliance, Digest, DigestRow, KindCount, Section, UnitDigest};
use crate::domain::StoredDeadline;
use crate::domain::{CaseRef, EmailAddress, OutboxKey, UnitCode};
use crate::explanation::LastDay;
use crate::report;
use crate::rules::{find_chains, InvestigationSpan, Kind, Role, RuleOptions};

/// How far ahead "due soon" looks in a digest, in days (contract §3: "the next 7 days").
pub const UPCOMING_DAYS: i64 = 7;
/// The period of the share of deadlines met, in days before `today` (`report::RECENT_DAYS`).
pub const COMPLIANCE_DAYS: u64 = report::RECENT_DAYS;

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("digest.cron {expr:?} is not a cron expression with seconds like \"0 0 7 * * Mon-Fri\": {message}")]
    Schedule { expr: String, message: String },
    #[error("cannot serialise the digest for the outbox: {0}")]
    Payload(#[from] serde_json::Error),
}

// ---------------------------------------------------------------------------------------------
// Schedule
// ---------------------------------------------------------------------------------------------

/// When digests are due: `digest.cron` (with seconds, e.g. `0 0 7 * * Mon-Fri`) evaluated in
/// **local** time of the configured zone, so 07:00 stays 07:00 across the changes to and from
/// summer time (last Sunday of March and of October).
///
/// Why not `tokio_cron_scheduler::Job::new_tz`: tokio-cron-scheduler 0.14 computes the zone's
/// UTC offset once, when the job is created (`job/mod.rs`, `time_offset_seconds`), and the
/// scheduler computes every later tick in that frozen `FixedOffset` (`scheduler.rs`). A job
/// created in winter (+01:00) then fires at 08:00 local all summer, one created in summer at
/// 06:00 local all winter. We evaluate croner with `chrono_tz` ourselves instead; the daemon
/// sleeps until [`DigestSchedule::next_after`] and then calls [`run_due`].
#[derive(Debug, Clone)]
pub struct DigestSchedule {
    cron: croner::Cron,
}

impl DigestSchedule {
    /// Parses a cron expression with seconds; day of month and day of week must both match
    /// when both are given (croner's `with_dom_and_dow`, as in the configuration check).
    pub fn parse(expr: &str) -> Result<DigestSchedule, DigestError> {
        let cron = croner::Cron::new(expr)
            .with_seconds_required()
            .with_dom_and_dow()
            .parse()
            .map_err(|e| DigestError::Schedule { expr: expr.to_string(), message: e.to_string() })?;
        Ok(DigestSchedule { cron })
    }

    /// The schedule of `digest.cron`.
    pub fn from_settings(settings: &Settings) -> Result<DigestSchedule, DigestError> {
        DigestSchedule::parse(&settings.digest.cron)
    }

    /// The first scheduled instant strictly after `after`, matched against local time in `tz`.
    ///
    /// On the night clocks go back, a local time of the repeated hour exists twice; croner
    /// answers with its first instance, which may lie before `after` once we are in the second
    /// pass. Such answers are skipped, so each scheduled local time fires once.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let mut from = after.with_timezone(&tz);
        // Each round moves `from` forward by at least a second; the repeated hour has 3 600.
        for _ in 0..=3_600 {
            let next = self.cron.find_next_occurrence(&from, false).ok()?;
            let next_utc = next.with_timezone(&Utc);
            if next_utc > after {
                return Some(next_utc);
            }
            from = next;
        }
        None
    }

    /// The latest scheduled instant at or before `now` on `now`'s local date, if any: the
    /// digest that should already have gone out today. Used to catch up after downtime the
    /// same day; a scheduled time of an earlier day is never returned, so digests of days long
    /// past are not sent.
    pub fn latest_at_or_before(&self, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local_date = now.with_timezone(&tz).date_naive();
        let day_start = start_of_day(local_date, tz)?;
        // The first candidate may be the very first second of the day, hence the inclusive search.
        let first = self.cron.find_next_occurrence(&day_start.with_timezone(&tz), true).ok()?.with_timezone(&Utc);
        if first > now || first.with_timezone(&tz).date_naive() != local_date {
            return None;
        }
        // Walk forward; every step is at least a second and stops at `now`, so this ends within
        // a day's seconds even for a schedule that fires every second.
        let mut latest = first;
        while let Some(next) = self.next_after(latest, tz).filter(|n| *n <= now) {
            latest = next;
        }
        Some(latest)
    }
}

/// The first instant of `date` in `tz` (midnight, or the first valid time after a gap).
fn start_of_day(date: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    let midnight = date.and_time(NaiveTime::MIN);
    (0..=24 * 60)
        .find_map(|minutes| tz.from_local_datetime(&(midnight + chrono::Duration::minutes(minutes))).earliest())
        .map(|t| t.with_timezone(&Utc))
}

// ---------------------------------------------------------------------------------------------
// Content
// ---------------------------------------------------------------------------------------------

impl DigestRow {
    /// The row of `stored` (open, `days_left` to its legal last day), linked by `mail.case_link`.
    fn of(settings: &Settings, stored: &StoredDeadline, days_left: i64) -> DigestRow {
        let deadline = &stored.deadline;
        DigestRow {
            case_ref: stored.case_ref.clone(),
            kind: deadline.kind,
            due_on: deadline.due_on,
            nominal_due_on: Some(deadline.nominal_due_on),
            due_reason: Some(deadline.due_reason.clone()),
            days_left,
            caseworker: stored.caseworker.clone(),
            // A placement links as its notices do (contract §3); none: an empty link, not shown.
            link: if deadline.kind.is_placement() {
                let case_of = stored.case_of.as_ref().map(CaseRef::as_str);
                settings.mail.placement_link_for(stored.case_ref.as_str(), case_of).unwrap_or_default()
            } else {
                settings.mail.case_link_for(stored.case_ref.as_str())
            },
        }
    }
}

impl KindCount {
    /// Whether the digest counts it: every case kind; a placement kind only when the unit has
    /// one to count, so that a register without the placements view gets the digest it had.
    fn shown(&self) -> bool {
        !self.kind.is_placement() || self.overdue + self.upcoming > 0
    }
}

impl From<&report::Tally> for Compliance {
    fn from(t: &report::Tally) -> Compliance {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Compliance { met: n(t.met), missed: n(t.missed), overdue: n(t.overdue) }
    }
}

/// The day's digests, one per manager address, in address order (pure).
///
/// `deadlines` is what `StateStore::deadlines` returns: every stored deadline, open and closed
/// (closed ones feed the 30-day share); withdrawn ones are ignored. Units are those configured
/// and those in the data; each unit goes to the managers that `UnitDirectory::addresses`
/// resolves (deputies for away managers; `units.default` for units without their own entry),
/// and a manager of several units gets one digest covering all of them. Without
/// `digest.send_empty`, a manager with nothing overdue or due soon gets no digest.
pub fn build_digests(settings: &Settings, deadlines: &[StoredDeadline], today: NaiveDate) -> Vec<Digest> {
    let mut units: BTreeMap<UnitCode, UnitFacts> =
        settings.units.units.keys().map(|u| (u.clone(), UnitFacts::default())).collect();
    // The share is counted as the compliance report and the gauges count it: one period, one tally.
    let recent = report::Period::recent(today);
    for stored in deadlines.iter().filter(|d| !d.withdrawn) {
        let facts = units.entry(stored.unit.clone()).or_default();
        let deadline = &stored.deadline;
        if recent.contains(deadline.due_on) {
            facts.recent.count(deadline, today, 1);
        }
        let Some(days_left) = deadline.days_left(today) else { continue };
        let row = || DigestRow::of(settings, stored, days_left);
        if days_left > UPCOMING_DAYS {
            continue;
        }
        if deadline.kind.is_placement() {
            facts.placements.push(row());
        } else if days_left < 0 {
            facts.overdue.push(row());
        } else {
            facts.upcoming.push(row());
        }
    }

    for (unit, pair) in open_chains(deadlines, settings.rules.chain_window_days) {
        units.entry(unit).or_default().chains.push(pair);
    }

    let max_rows = settings.digest.max_rows;
    let units = units.into_iter().map(|(unit, facts)| {
        let digest = facts.into_unit_digest(unit.clone(), settings.units.unit_name(&unit), max_rows);
        (unit, digest)
    });
    by_manager(settings, units, today)
}

/// The digests of the units' managers: one per manager, covering each unit that
/// `UnitDirectory::addresses` gives them, in address order; without `digest.send_empty`, only
/// those with news.
fn by_manager(
    settings: &Settings,
    units: impl Iterator<Item = (UnitCode, UnitDigest)>,
    today: NaiveDate,
) -> Vec<Digest> {
    let mut by_manager: BTreeMap<EmailAddress, Vec<UnitDigest>> = BTreeMap::new();
    for (unit, digest) in units {
        for manager in settings.units.addresses(&unit, Role::Manager) {
            by_manager.entry(manager).or_default().push(digest.clone());
        }
    }
    by_manager
        .into_iter()
        .map(|(manager, units)| Digest { manager, date: today, units })
        .filter(|d| settings.digest.send_empty || d.has_news())
        .collect()
}

/// The day's digests gathered from what a digest shows, read piece by piece from the state
/// database (`jobs::digest::read_facts`) rather than from every stored deadline: the units, the
/// open deadlines overdue or due within [`UPCOMING_DAYS`] (each section keeping only its first
/// `digest.max_rows` rows in the digest's order, every row counted), each unit's 30-day tally
/// (counted by the database, `report::recent_by_unit_and_kind`) and the open chains. Its
/// memory grows with the units and `digest.max_rows`, never with the deadlines.
///
/// It gives what [`build_digests`] gives over every stored deadline (test: the demo register,
/// several days, both engines).
#[derive(Debug)]
pub struct DigestFacts {
    today: NaiveDate,
    max_rows: usize,
    units: BTreeMap<UnitCode, ShownFacts>,
}

#[derive(Debug, Default)]
struct ShownFacts {
    overdue: Ranked,
    upcoming: Ranked,
    /// Ordered LVU first ([`placement_order`]).
    placements: Ranked,
    recent: report::Tally,
    chains: Vec<ChainPair>,
}

/// A section's rows as they come, kept to its first `max_rows` in the digest's order (sorted
/// and cut whenever it holds twice as many), every row counted in all and per kind.
#[derive(Debug, Default)]
struct Ranked {
    rows: Vec<DigestRow>,
    total: usize,
    kinds: [usize; Kind::ALL.len()],
    /// Of `kinds`, those overdue.
    overdue_kinds: [usize; Kind::ALL.len()],
}

impl Ranked {
    fn push(&mut self, row: DigestRow, max_rows: usize) {
        self.total += 1;
        if let Some(i) = Kind::ALL.iter().position(|k| *k == row.kind) {
            self.kinds[i] += 1;
            if row.days_left < 0 {
                self.overdue_kinds[i] += 1;
            }
        }
        self.rows.push(row);
        if self.rows.len() >= 2 * max_rows.max(32) {
            self.cut(max_rows);
        }
    }

    fn cut(&mut self, max_rows: usize) {
        self.rows.sort_by(row_order);
        self.rows.truncate(max_rows);
    }

    /// The placements' section: LVU first, kept to `max_rows`.
    fn into_placements(mut self, max_rows: usize) -> Section {
        self.rows.sort_by(placement_order);
        self.rows.truncate(max_rows);
        Section { rows: self.rows, total: self.total }
    }

    fn into_section(mut self, max_rows: usize) -> Section {
        self.cut(max_rows);
        Section { rows: self.rows, total: self.total }
    }
}

/// The placements' order: the LVU clocks first (a miss ends a custody or a care decision), then
/// as [`row_order`].
fn placement_order(a: &DigestRow, b: &DigestRow) -> std::cmp::Ordering {
    let lvu =
        |r: &DigestRow| !matches!(r.kind, Kind::LvuCourtSubmission | Kind::LvuCareApplication | Kind::LvuCareStart);
    lvu(a).cmp(&lvu(b)).then_with(|| row_order(a, b))
}

/// Most overdue first, soonest first; ties in a stable, readable order.
fn row_order(a: &DigestRow, b: &DigestRow) -> std::cmp::Ordering {
    (a.days_left, &a.case_ref, a.kind).cmp(&(b.days_left, &b.case_ref, b.kind))
}

impl DigestFacts {
    /// Nothing gathered yet but the configured units.
    pub fn new(settings: &Settings, today: NaiveDate) -> DigestFacts {
        let units = settings.units.units.keys().map(|u| (u.clone(), ShownFacts::default())).collect();
        DigestFacts { today, max_rows: settings.digest.max_rows, units }
    }

    /// The last day a deadline shown as due soon may have: [`UPCOMING_DAYS`] after `today`.
    pub fn shown_until(&self) -> NaiveDate {
        self.today.checked_add_days(chrono::Days::new(UPCOMING_DAYS as u64)).unwrap_or(NaiveDate::MAX)
    }

    /// A unit that holds a deadline (not withdrawn): it has a place in its managers' digests.
    pub fn unit(&mut self, unit: UnitCode) {
        self.units.entry(unit).or_default();
    }

    /// A stored deadline: listed when it is open, not withdrawn, and overdue or due within
    /// [`UPCOMING_DAYS`]; any other is passed over.
    pub fn deadline(&mut self, settings: &Settings, stored: &StoredDeadline) {
        let deadline = &stored.deadline;
        let Some(days_left) = deadline.days_left(self.today) else { return };
        if stored.withdrawn || days_left > UPCOMING_DAYS {
            return;
        }
        let row = DigestRow::of(settings, stored, days_left);
        let max_rows = self.max_rows;
        let facts = self.units.entry(stored.unit.clone()).or_default();
        if deadline.kind.is_placement() {
            // Kept whole (a few a unit), cut in the LVU-first order at the end.
            facts.placements.push(row, usize::MAX / 4);
        } else if days_left < 0 {
            facts.overdue.push(row, max_rows);
        } else {
            facts.upcoming.push(row, max_rows);
        }
    }

    /// A unit's deadlines of [`report::Period::recent`], counted (one kind's tally at a time).
    pub fn recent(&mut self, unit: UnitCode, tally: &report::Tally) {
        self.units.entry(unit).or_default().recent.add(tally);
    }

    /// A possible chain whose later investigation, open, is in `unit`.
    pub fn chain(&mut self, unit: UnitCode, pair: ChainPair) {
        self.units.entry(unit).or_default().chains.push(pair);
    }

    /// Whether `manager` receives digests at all (a manager of a configured unit or of one in
    /// the data), i.e. would get one with `digest.send_empty`.
    pub fn leads_a_unit(&self, settings: &Settings, manager: &EmailAddress) -> bool {
        self.units.keys().any(|unit| settings.units.addresses(unit, Role::Manager).contains(manager))
    }

    /// The day's digests, as [`build_digests`] makes them.
    pub fn into_digests(self, settings: &Settings) -> Vec<Digest> {
        let (today, max_rows) = (self.today, self.max_rows);
        let units = self.units.into_iter().map(|(unit, mut facts)| {
            let kinds = Kind::ALL
                .iter()
                .enumerate()
                .map(|(i, &kind)| KindCount {
                    kind,
                    overdue: facts.overdue.kinds[i] + facts.placements.overdue_kinds[i],
                    upcoming: facts.upcoming.kinds[i] + facts.placements.kinds[i] - facts.placements.overdue_kinds[i],
                })
                .filter(KindCount::shown)
                .collect();
            facts
                .chains
                .sort_by(|a, b| (a.later.as_str(), a.earlier.as_str()).cmp(&(b.later.as_str(), b.earlier.as_str())));
            let digest = UnitDigest {
                name: settings.units.unit_name(&unit).map(str::to_string),
                unit: unit.clone(),
                overdue: facts.overdue.into_section(max_rows),
                upcoming: facts.upcoming.into_section(max_rows),
                placements: facts.placements.into_placements(max_rows),
                kinds,
                compliance: Compliance::from(&facts.recent),
                chains: facts.chains,
            };
            (unit, digest)
        });
        by_manager(settings, units, today)
    }
}

/// The chained pairs among the (not withdrawn) investigation deadlines that carry a child key,
/// whose later investigation is still open, with the later one's unit; ordered by unit, then
/// the later case, then the earlier.
fn open_chains(deadlines: &[StoredDeadline], window_days: i64) -> Vec<(UnitCode, ChainPair)> {
    let mut investigations = Investigations::default();
    for stored in deadlines {
        investigations.push(stored);
    }
    investigations.open_chains(window_days)
}

/// The investigation deadlines with a child's key, gathered one at a time (as they stream past)
/// for [`Investigations::open_chains`]: only what a chain needs of each (its child's key, its
/// case, the dates; the unit of an open one), packed: the keys and the references one after
/// another in two strings, 20 bytes of ends, dates and unit a deadline beside them (a deadline
/// each as owned strings, and a map of every child, took about 100 MB at a million cases, where
/// almost every child has one investigation). The keys never leave this struct.
#[derive(Default)]
pub struct Investigations {
    spans: Vec<PackedSpan>,
    /// The children's keys, one after another (`PackedSpan::key_end`).
    keys: String,
    /// The cases' references, one after another (`PackedSpan::case_end`).
    cases: String,
    /// The units of the open investigations, each once (`PackedSpan::unit`).
    units: Vec<UnitCode>,
}

/// One investigation of [`Investigations`].
#[derive(Clone, Copy)]
struct PackedSpan {
    key_end: u32,
    case_end: u32,
    opened_on: NaiveDate,
    closed_on: Option<NaiveDate>,
    /// Into `units`, for an open investigation (a later one names its unit); `NO_UNIT` else.
    unit: u32,
}

const NO_UNIT: u32 = u32::MAX;

impl Investigations {
    /// Keeps `stored` when it is an investigation with a child's key, not withdrawn.
    pub fn push(&mut self, stored: &StoredDeadline) {
        let Some(child) = &stored.child_key else { return };
        if stored.withdrawn || stored.deadline.kind != Kind::Investigation {
            return;
        }
        let deadline = &stored.deadline;
        let unit = if deadline.is_closed() {
            NO_UNIT
        } else {
            // A few hundred units at most: a walk from the newest finds a unit of the same
            // stretch of the register at once.
            match self.units.iter().rposition(|u| *u == stored.unit) {
                Some(i) => i as u32,
                None => {
                    self.units.push(stored.unit.clone());
                    (self.units.len() - 1) as u32
                }
            }
        };
        self.keys.push_str(child.as_str());
        self.cases.push_str(stored.case_ref.as_str());
        self.spans.push(PackedSpan {
            key_end: self.keys.len() as u32,
            case_end: self.cases.len() as u32,
            opened_on: deadline.start_on,
            closed_on: deadline.closed_on,
            unit,
        });
    }

    fn key(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.spans[i - 1].key_end as usize };
        &self.keys[start..self.spans[i].key_end as usize]
    }

    fn case_ref(&self, i: usize) -> CaseRef {
        let start = if i == 0 { 0 } else { self.spans[i - 1].case_end as usize };
        // Pushed from a `CaseRef`: it parses again.
        CaseRef::parse(&self.cases[start..self.spans[i].case_end as usize]).expect("a stored case reference")
    }

    /// The chained pairs whose later investigation is still open, with the later one's unit;
    /// ordered by unit, then the later case, then the earlier. The investigations are taken
    /// child by child (sorted by key), each child's by [`find_chains`].
    pub fn open_chains(&self, window_days: i64) -> Vec<(UnitCode, ChainPair)> {
        let mut order: Vec<u32> = (0..self.spans.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.key(a as usize).cmp(self.key(b as usize)).then(a.cmp(&b)));
        let mut found: Vec<(u32, u32)> = Vec::new();
        for child in order.chunk_by(|&a, &b| self.key(a as usize) == self.key(b as usize)) {
            if child.len() < 2 || child.iter().all(|&i| self.spans[i as usize].unit == NO_UNIT) {
                continue;
            }
            let spans: Vec<InvestigationSpan<()>> = child
                .iter()
                .map(|&i| {
                    let span = &self.spans[i as usize];
                    InvestigationSpan { child: (), opened_on: span.opened_on, closed_on: span.closed_on }
                })
                .collect();
            for (earlier, later) in find_chains(&spans, window_days) {
                let (earlier, later) = (child[earlier], child[later]);
                if self.spans[later as usize].unit != NO_UNIT {
                    found.push((later, earlier));
                }
            }
        }
        // In the order of the later investigation, then the earlier, as `find_chains` gives
        // them over all of them (which the sort below keeps where it finds two pairs equal).
        found.sort_unstable();
        let mut pairs: Vec<(UnitCode, ChainPair)> = found
            .into_iter()
            .map(|(later, earlier)| {
                let unit = self.units[self.spans[later as usize].unit as usize].clone();
                (unit, ChainPair { earlier: self.case_ref(earlier as usize), later: self.case_ref(later as usize) })
            })
            .collect();
        pairs.sort_by(chain_order);
        pairs
    }
}

/// The order of a unit's chains: by unit, then the later investigation, then the earlier.
fn chain_order(a: &(UnitCode, ChainPair), b: &(UnitCode, ChainPair)) -> std::cmp::Ordering {
    fn key((unit, pair): &(UnitCode, ChainPair)) -> (&str, &str, &str) {
        (unit.as_str(), pair.later.as_str(), pair.earlier.as_str())
    }
    key(a).cmp(&key(b))
}

#[derive(Default)]
struct UnitFacts {
    overdue: Vec<DigestRow>,
    upcoming: Vec<DigestRow>,
    placements: Vec<DigestRow>,
    recent: report::Tally,
    chains: Vec<ChainPair>,
}

impl UnitFacts {
    fn into_unit_digest(mut self, unit: UnitCode, name: Option<&str>, max_rows: usize) -> UnitDigest {
        let kinds = Kind::ALL
            .into_iter()
            .map(|kind| KindCount {
                kind,
                overdue: self
                    .overdue
                    .iter()
                    .chain(&self.placements)
                    .filter(|r| r.kind == kind && r.days_left < 0)
                    .count(),
                upcoming: self
                    .upcoming
                    .iter()
                    .chain(&self.placements)
                    .filter(|r| r.kind == kind && r.days_left >= 0)
                    .count(),
            })
            .filter(KindCount::shown)
            .collect();
        self.overdue.sort_by(row_order);
        self.upcoming.sort_by(row_order);
        self.placements.sort_by(placement_order);
        UnitDigest {
            unit,
            name: name.map(str::to_string),
            overdue: cut(self.overdue, max_rows),
            upcoming: cut(self.upcoming, max_rows),
            placements: cut(self.placements, max_rows),
            kinds,
            compliance: Compliance::from(&self.recent),
            chains: self.chains,
        }
    }
}

fn cut(mut rows: Vec<DigestRow>, max_rows: usize) -> Section {
    let total = rows.len();
    rows.truncate(max_rows);
    Section { rows, total }
}

// ---------------------------------------------------------------------------------------------
// Wording (the mail itself is built by `mail::compose`)
// ---------------------------------------------------------------------------------------------

/// The summary line at the top and in the subject, e.g. "3 försenade, 5 förfaller inom 7 dagar".
pub fn summary(words: &Words, overdue: usize, upcoming: usize) -> String {
    let key = if overdue == 1 { "digest.summary_one" } else { "digest.summary" };
    words.fill(key, &[("overdue", &overdue), ("upcoming", &upcoming), ("days", &UPCOMING_DAYS)])
}

/// The subject, e.g. "Daglig fristöversikt 2026-11-25: 3 försenade, 5 förfaller inom 7 dagar".
pub fn subject(words: &Words, digest: &Digest) -> String {
    words.fill(
        "digest.subject",
        &[
            ("title", &words.get("digest.title")),
            ("date", &digest.date),
            ("summary", &summary(words, digest.overdue_total(), digest.upcoming_total())),
        ],
    )
}

/// What templates see: the digest with kind names in the mail's language and counts derived.
#[derive(Serialize)]
pub(crate) struct Context {
    manager: String,
    date: String,
    summary: String,
    overdue_total: usize,
    upcoming_total: usize,
    upcoming_days: i64,
    compliance_days: u64,
    units: Vec<UnitContext>,
}

#[derive(Serialize)]
struct UnitContext {
    code: String,
    name: Option<String>,
    overdue: SectionContext,
    upcoming: SectionContext,
    /// The placements' and LVU decisions' deadlines, LVU first.
    placements: SectionContext,
    kinds: Vec<KindContext>,
    chains: Vec<ChainContext>,
    met: usize,
    missed: usize,
    past_due: usize,
    compliance_total: usize,
    share_percent: Option<usize>,
}

#[derive(Serialize)]
struct SectionContext {
    rows: Vec<RowContext>,
    total: usize,
    more: usize,
}

#[derive(Serialize)]
struct RowContext {
    case_ref: String,
    kind: String,
    due_on: String,
    /// The last day by the calendar; the same as `due_on` when not known.
    nominal_due_on: String,
    /// Why the last day is what it is, as in the explanation (`crate::explanation::LastDay`).
    last_day: LastDay,
    days_left: i64,
    /// Days overdue or left, without sign.
    days: i64,
    caseworker: Option<String>,
    link: String,
}

#[derive(Serialize)]
struct ChainContext {
    earlier: String,
    later: String,
}

#[derive(Serialize)]
struct KindContext {
    name: String,
    overdue: usize,
    upcoming: usize,
}

impl Context {
    pub(crate) fn new(settings: &Settings, digest: &Digest) -> Context {
        let language = settings.mail.language;
        let clocks = crate::catalogue::Catalogue::for_settings(settings, language);
        let kind_name = |kind: Kind| clocks.clock(kind).name.clone();
        let options = RuleOptions { holiday_rule: settings.calendar.holiday_rule };
        let last_day = |r: &DigestRow| match (r.nominal_due_on, &r.due_reason) {
            (Some(nominal), Some(reason)) => LastDay::new(r.kind, nominal, r.due_on, reason, options),
            _ => LastDay::Nominal,
        };
        let section = |s: &Section| SectionContext {
            rows: s
                .rows
                .iter()
                .map(|r| RowContext {
                    case_ref: r.case_ref.to_string(),
                    kind: kind_name(r.kind),
                    due_on: r.due_on.to_string(),
                    nominal_due_on: r.nominal_due_on.unwrap_or(r.due_on).to_string(),
                    last_day: last_day(r),
                    days_left: r.days_left,
                    days: r.days_left.abs(),
                    caseworker: r.caseworker.as_ref().map(EmailAddress::to_string),
                    link: r.link.clone(),
                })
                .collect(),
            total: s.total,
            more: s.more(),
        };
        Context {
            manager: digest.manager.to_string(),
            date: digest.date.to_string(),
            summary: summary(Words::of(settings), digest.overdue_total(), digest.upcoming_total()),
            overdue_total: digest.overdue_total(),
            upcoming_total: digest.upcoming_total(),
            upcoming_days: UPCOMING_DAYS,
            compliance_days: COMPLIANCE_DAYS,
            units: digest
                .units
                .iter()
                .map(|u| UnitContext {
                    code: u.unit.to_string(),
                    name: u.name.clone(),
                    overdue: section(&u.overdue),
                    upcoming: section(&u.upcoming),
                    placements: section(&u.placements),
                    // A placement kind is counted only when the unit has one to count: a register
                    // without the placements view gets the digest it always had.
                    kinds: u
                        .kinds
                        .iter()
                        .map(|k| KindContext { name: kind_name(k.kind), overdue: k.overdue, upcoming: k.upcoming })
                        .collect(),
                    chains: u
                        .chains
                        .iter()
                        .map(|c| ChainContext { earlier: c.earlier.to_string(), later: c.later.to_string() })
                        .collect(),
                    met: u.compliance.met,
                    missed: u.compliance.missed,
                    past_due: u.compliance.overdue,
                    compliance_total: u.compliance.total(),
                    share_percent: u.compliance.share_percent(),
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------------------------

/// What one run of the digest job (`jobs::digest::enqueue_digests`) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestReport {
    pub date: Option<NaiveDate>,
    /// Digests built (managers with something to report, or all with `send_empty`).
    pub built: usize,
    /// Digests newly written to the outbox.
    pub enqueued: usize,
    /// Digests that were already in the outbox (an earlier run, another replica).
    pub already_recorded: usize,
}

/// The outbox key of a manager's digest of a day: unique per manager and date, so it is
/// written and sent once however often the job runs.
pub fn digest_key(manager: &EmailAddress, date: NaiveDate) -> String {
    OutboxKey::Digest { date, manager: manager.clone() }.to_string()
}

/// The outbox key recording that the digests of `date` were decided.
pub fn run_key(date: NaiveDate) -> String {
    OutboxKey::DigestRun { date }.to_string()
}

/// What `fristvakt digest --dry-run` shows for `today`: every digest (or only `manager`'s),
/// or why there is none.
#[derive(Debug)]
pub enum Preview {
    Digests(Vec<Digest>),
    Nothing(String),
}

/// The digests of `today` built from `deadlines` (all, or only `manager`'s); nothing is written.
pub fn preview(
    settings: &Settings,
    deadlines: &[StoredDeadline],
    today: NaiveDate,
    manager: Option<&EmailAddress>,
) -> Preview {
    let digests = build_digests(settings, deadlines, today);
    preview_of(settings, digests, today, manager, |m| leads_a_unit(settings, deadlines, m))
}

/// The digests of `today` gathered as the digest job gathers them (all, or only `manager`'s).
pub fn preview_from_facts(settings: &Settings, facts: DigestFacts, manager: Option<&EmailAddress>) -> Preview {
    let today = facts.today;
    let leads = manager.is_some_and(|m| facts.leads_a_unit(settings, m));
    preview_of(settings, facts.into_digests(settings), today, manager, |_| leads)
}

fn preview_of(
    settings: &Settings,
    digests: Vec<Digest>,
    today: NaiveDate,
    manager: Option<&EmailAddress>,
    leads_a_unit: impl Fn(&EmailAddress) -> bool,
) -> Preview {
    let digests: Vec<Digest> = digests.into_iter().filter(|d| manager.is_none_or(|m| &d.manager == m)).collect();
    if !digests.is_empty() {
        return Preview::Digests(digests);
    }
    Preview::Nothing(match manager {
        Some(m) if !leads_a_unit(m) => {
            format!("no digest for {m}: not the manager of any unit (see units.*.managers)\n")
        }
        _ => format!(
            "no digest{} on {today}: nothing overdue or due within {UPCOMING_DAYS} days (digest.send_empty = {})\n",
            manager.map(|m| format!(" for {m}")).unwrap_or_default(),
            settings.digest.send_empty
        ),
    })
}

/// Whether `manager` receives digests at all, i.e. would get one with `digest.send_empty`.
fn leads_a_unit(settings: &Settings, deadlines: &[StoredDeadline], manager: &EmailAddress) -> bool {
    let mut all = settings.clone();
    all.digest.send_empty = true;
    build_digests(&all, deadlines, NaiveDate::MIN).iter().any(|d| &d.manager == manager)
}

/// Tests, and sample digests for the rendering tests of `mail::compose`.
#[cfg(test)]
pub(crate) mod tests {
    use chrono::{Datelike, Timelike};

    use super::*;
    use crate::rules::{Deadline, DueReason};

    pub(crate) fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const STOCKHOLM: Tz = chrono_tz::Europe::Stockholm;

    pub(crate) fn settings(extra: &str) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let toml = format!(
            "[units.\"BRO-BU\"]\nname = \"Bromma barn och unga\"\nmanagers = [\"ec.bromma@kommun.example\"]\n\
             [units.\"VAS-BU\"]\nmanagers = [\"ec.bromma@kommun.example\"]\n\
             [units.\"SOD-BU\"]\nmanagers = [\"ec.soder@kommun.example\"]\n{extra}"
        );
        std::fs::write(&path, toml).unwrap();
        crate::config::load_with_env(Some(&path), Vec::new()).unwrap()
    }

    pub(crate) fn open(case_ref: &str, unit: &str, kind: Kind, due_on: &str) -> StoredDeadline {
        StoredDeadline {
            case_ref: CaseRef::parse(case_ref).unwrap(),
            unit: UnitCode::parse(unit).unwrap(),
            caseworker: Some(EmailAddress::parse("hl@kommun.example").unwrap()),
            child_sex: None,
            deadline: Deadline {
                kind,
                start_on: d("2026-01-01"),
                nominal_due_on: d(due_on),
                due_on: d(due_on),
                closed_on: None,
                due_reason: DueReason::Nominal,
            },
            withdrawn: false,
            first_seen_on: None,
            child_key: None,
            case_of: None,
            cycle_start: None,
        }
    }

    pub(crate) fn closed(case_ref: &str, unit: &str, due_on: &str, closed_on: &str) -> StoredDeadline {
        let mut s = open(case_ref, unit, Kind::Assessment, due_on);
        s.deadline.closed_on = Some(d(closed_on));
        s
    }

    fn refs(section: &Section) -> Vec<&str> {
        section.rows.iter().map(|r| r.case_ref.as_str()).collect()
    }

    pub(crate) const TODAY: &str = "2026-11-25";

    /// The packed investigations find the chains that [`find_chains`] finds over all of them
    /// at once (the way they were found before they were packed), in the same order: children
    /// with one, two and many investigations, open and closed, in several units, a child's
    /// investigations pushed far apart, a case with two chains, and the withdrawn, the other
    /// kinds and those without a key left out.
    #[test]
    fn packed_investigations_chain_as_all_at_once() {
        let mut all = Vec::new();
        let units = ["BRO-BU", "VAS-BU", "SOD-BU"];
        for n in 0..600u32 {
            let child = format!("child-{:03}", n % 41);
            let opened = d("2025-01-01") + chrono::Duration::days(i64::from((n * 37) % 300));
            let mut s = open(&format!("2025-{n:04}"), units[(n % 3) as usize], Kind::Investigation, "2026-12-01");
            s.deadline.start_on = opened;
            if n % 4 != 0 {
                s.deadline.closed_on = Some(opened + chrono::Duration::days(i64::from(n % 60)));
            }
            s.child_key = (n % 29 != 0).then(|| crate::domain::ChildKey::parse(&child).unwrap());
            s.withdrawn = n % 31 == 0;
            if n % 43 == 0 {
                s.deadline.kind = Kind::Assessment;
            }
            all.push(s);
        }
        let window = 30;
        let kept: Vec<&StoredDeadline> = all
            .iter()
            .filter(|s| s.child_key.is_some() && !s.withdrawn && s.deadline.kind == Kind::Investigation)
            .collect();
        let spans: Vec<InvestigationSpan<&str>> = kept
            .iter()
            .map(|s| InvestigationSpan {
                child: s.child_key.as_ref().unwrap().as_str(),
                opened_on: s.deadline.start_on,
                closed_on: s.deadline.closed_on,
            })
            .collect();
        let mut expected: Vec<(UnitCode, ChainPair)> = find_chains(&spans, window)
            .into_iter()
            .filter(|&(_, later)| !kept[later].deadline.is_closed())
            .map(|(earlier, later)| {
                let pair = ChainPair { earlier: kept[earlier].case_ref.clone(), later: kept[later].case_ref.clone() };
                (kept[later].unit.clone(), pair)
            })
            .collect();
        expected.sort_by(chain_order);
        assert!(expected.len() > 20, "the data makes chains: {}", expected.len());
        let found = open_chains(&all, window);
        let show = |pairs: &[(UnitCode, ChainPair)]| -> Vec<String> {
            pairs.iter().map(|(u, p)| format!("{} {} {}", u.as_str(), p.earlier.as_str(), p.later.as_str())).collect()
        };
        assert_eq!(show(&found), show(&expected));
    }

    #[test]
    fn next_fire_is_seven_local_across_all_dst_changes() {
        let schedule = DigestSchedule::parse("0 0 7 * * Mon-Fri").unwrap();
        // (first day, last day, offset before, offset after) around each change.
        for (from, to, change) in [
            ("2026-03-23", "2026-04-03", "2026-03-29"),
            ("2026-10-19", "2026-10-30", "2026-10-25"),
            ("2027-03-22", "2027-04-02", "2027-03-28"),
            ("2027-10-25", "2027-11-05", "2027-10-31"),
        ] {
            let (from, to, change) = (d(from), d(to), d(change));
            let mut t = start_of_day(from, STOCKHOLM).unwrap();
            let mut fired = Vec::new();
            while let Some(next) = schedule.next_after(t, STOCKHOLM) {
                let local = next.with_timezone(&STOCKHOLM);
                if local.date_naive() > to {
                    break;
                }
                assert_eq!(local.time(), NaiveTime::from_hms_opt(7, 0, 0).unwrap(), "{next}");
                // Summer time (CEST, +02:00) between the March and October changes.
                let summer = (local.date_naive() > change) == (change.month0() == 2);
                assert_eq!(next.time().hour(), if summer { 5 } else { 6 }, "{next} around {change}");
                fired.push(local.date_naive());
                t = next;
            }
            let working: Vec<NaiveDate> =
                from.iter_days().take_while(|x| *x <= to).filter(|x| x.weekday().num_days_from_monday() < 5).collect();
            assert_eq!(fired, working, "one fire per weekday around {change}");
        }
    }

    #[test]
    fn a_frozen_utc_offset_fires_at_the_wrong_local_hour_after_the_change() {
        // What tokio-cron-scheduler 0.14 does: the offset of the creation day, fixed for ever.
        let cron = croner::Cron::new("0 0 7 * * Mon-Fri").with_seconds_required().with_dom_and_dow().parse().unwrap();
        let winter = chrono::FixedOffset::east_opt(3600).unwrap();
        let frozen = cron.find_next_occurrence(&utc("2026-03-30T00:00:00Z").with_timezone(&winter), false).unwrap();
        assert_eq!(frozen.with_timezone(&STOCKHOLM).hour(), 8, "the bug this module avoids");
        let schedule = DigestSchedule::parse("0 0 7 * * Mon-Fri").unwrap();
        let ours = schedule.next_after(utc("2026-03-30T00:00:00Z"), STOCKHOLM).unwrap();
        assert_eq!(ours, utc("2026-03-30T05:00:00Z"));
    }

    #[test]
    fn catch_up_only_on_the_same_local_day() {
        let s = DigestSchedule::parse("0 0 7 * * Mon-Fri").unwrap();
        let tz = STOCKHOLM;
        // Wednesday 25 November 2026, CET.
        assert_eq!(s.latest_at_or_before(utc("2026-11-25T08:00:00Z"), tz), Some(utc("2026-11-25T06:00:00Z")));
        assert_eq!(s.latest_at_or_before(utc("2026-11-25T06:00:00Z"), tz), Some(utc("2026-11-25T06:00:00Z")));
        assert_eq!(s.latest_at_or_before(utc("2026-11-25T05:59:59Z"), tz), None, "before 07:00 local");
        assert_eq!(s.latest_at_or_before(utc("2026-11-25T22:59:00Z"), tz), Some(utc("2026-11-25T06:00:00Z")));
        // 00:30 local on Thursday is still Wednesday in UTC: no digest of yesterday.
        assert_eq!(s.latest_at_or_before(utc("2026-11-25T23:30:00Z"), tz), None);
        // Saturday: nothing scheduled.
        assert_eq!(s.latest_at_or_before(utc("2026-11-28T10:00:00Z"), tz), None);
        // Monday after the March change: 07:00 CEST is 05:00 UTC.
        assert_eq!(s.latest_at_or_before(utc("2026-03-30T07:00:00Z"), tz), Some(utc("2026-03-30T05:00:00Z")));
        // Several times a day: the latest one passed.
        let s = DigestSchedule::parse("0 0 7,12 * * *").unwrap();
        assert_eq!(s.latest_at_or_before(utc("2026-11-25T12:00:00Z"), tz), Some(utc("2026-11-25T11:00:00Z")));
        assert!(DigestSchedule::parse("0 7 * * Mon-Fri").is_err(), "seconds are required");
    }

    #[test]
    fn overdue_most_first_then_upcoming_soonest_first() {
        let s = settings("");
        let data = vec![
            open("A-1", "BRO-BU", Kind::Assessment, "2026-11-24"),
            open("A-2", "BRO-BU", Kind::Investigation, "2026-11-10"),
            open("A-3", "BRO-BU", Kind::Protection, "2026-11-20"),
            open("A-4", "BRO-BU", Kind::Assessment, "2026-12-02"),
            open("A-5", "BRO-BU", Kind::Assessment, "2026-11-25"),
            open("A-6", "BRO-BU", Kind::Investigation, "2026-12-03"),
            open("A-7", "BRO-BU", Kind::Investigation, "2026-11-27"),
        ];
        let digests = build_digests(&s, &data, d(TODAY));
        let bromma = &digests[0];
        assert_eq!(bromma.manager.as_str(), "ec.bromma@kommun.example");
        let unit = &bromma.units[0];
        assert_eq!(unit.unit.as_str(), "BRO-BU");
        assert_eq!(refs(&unit.overdue), ["A-2", "A-3", "A-1"]);
        assert_eq!(unit.overdue.rows.iter().map(|r| r.days_left).collect::<Vec<_>>(), [-15, -5, -1]);
        // 7 days ahead is in, 8 is out.
        assert_eq!(refs(&unit.upcoming), ["A-5", "A-7", "A-4"]);
        let counts: Vec<(Kind, usize, usize)> = unit.kinds.iter().map(|k| (k.kind, k.overdue, k.upcoming)).collect();
        assert_eq!(
            counts,
            [
                (Kind::Protection, 1, 0),
                (Kind::Assessment, 1, 2),
                (Kind::Investigation, 1, 1),
                (Kind::FollowUp, 0, 0),
                (Kind::ReporterInformation, 0, 0),
            ]
        );
        assert_eq!(unit.overdue.rows[0].link, "https://register.kommun.example/case/A-2");
        assert_eq!(unit.overdue.rows[0].caseworker.as_ref().unwrap().as_str(), "hl@kommun.example");
    }

    #[test]
    fn one_digest_per_manager_covering_all_their_units() {
        let s = settings("");
        let data = vec![
            open("B-1", "BRO-BU", Kind::Assessment, "2026-11-20"),
            open("V-1", "vas-bu", Kind::Assessment, "2026-11-26"),
            open("S-1", "SOD-BU", Kind::Assessment, "2026-11-19"),
            // An unconfigured unit goes to the default manager.
            open("K-1", "KUN-BU", Kind::Assessment, "2026-11-19"),
        ];
        let digests = build_digests(&s, &data, d(TODAY));
        let managers: Vec<&str> = digests.iter().map(|d| d.manager.as_str()).collect();
        assert_eq!(managers, ["ec.bromma@kommun.example", "ec.soder@kommun.example", "enhetschef@kommun.example"]);
        let units: Vec<&str> = digests[0].units.iter().map(|u| u.unit.as_str()).collect();
        assert_eq!(units, ["BRO-BU", "VAS-BU"]);
        assert_eq!((digests[0].overdue_total(), digests[0].upcoming_total()), (1, 1));
        assert_eq!(digests[2].units.len(), 1);
        assert_eq!(digests[2].units[0].unit.as_str(), "KUN-BU");
    }

    #[test]
    fn lists_are_cut_at_max_rows_with_the_rest_counted() {
        let s = settings("[digest]\nmax_rows = 2\n");
        let data: Vec<StoredDeadline> = (1..=5)
            .map(|i| open(&format!("C-{i}"), "BRO-BU", Kind::Assessment, &format!("2026-11-{:02}", 10 + i)))
            .collect();
        let digests = build_digests(&s, &data, d(TODAY));
        let unit = &digests[0].units[0];
        assert_eq!(refs(&unit.overdue), ["C-1", "C-2"], "the most overdue are kept");
        assert_eq!((unit.overdue.total, unit.overdue.more()), (5, 3));
        assert_eq!(unit.kinds[1].overdue, 5, "counts cover the whole list");
    }

    #[test]
    fn managers_with_nothing_to_report_get_no_digest_unless_configured() {
        let data = vec![
            open("B-1", "BRO-BU", Kind::Assessment, "2026-11-20"),
            // Due in 20 days and met ones: nothing to report for Söder.
            open("S-1", "SOD-BU", Kind::Investigation, "2026-12-15"),
            closed("S-2", "SOD-BU", "2026-11-20", "2026-11-18"),
        ];
        let quiet = build_digests(&settings(""), &data, d(TODAY));
        assert_eq!(quiet.iter().map(|d| d.manager.as_str()).collect::<Vec<_>>(), ["ec.bromma@kommun.example"]);
        let all = build_digests(&settings("[digest]\nsend_empty = true\n"), &data, d(TODAY));
        // The default manager leads no unit here, so even send_empty gives them nothing.
        assert_eq!(all.len(), 2, "Bromma and Söder");
        let soder = all.iter().find(|d| d.manager.as_str() == "ec.soder@kommun.example").unwrap();
        assert!(!soder.has_news());
        assert_eq!(soder.units[0].compliance, Compliance { met: 1, missed: 0, overdue: 0 });
    }

    #[test]
    fn share_met_over_the_last_thirty_days() {
        let s = settings("");
        let data = vec![
            closed("M-1", "BRO-BU", "2026-11-20", "2026-11-19"),   // met
            closed("M-2", "BRO-BU", "2026-10-26", "2026-10-26"),   // met, first day of the period
            closed("M-3", "BRO-BU", "2026-11-10", "2026-11-12"),   // missed
            open("M-4", "BRO-BU", Kind::Assessment, "2026-11-24"), // overdue
            closed("M-5", "BRO-BU", "2026-10-25", "2026-10-20"),   // before the period
            closed("M-6", "BRO-BU", "2026-11-25", "2026-11-24"),   // due today: not yet counted
            {
                let mut w = closed("M-7", "BRO-BU", "2026-11-20", "2026-11-30");
                w.withdrawn = true;
                w
            },
        ];
        let digests = build_digests(&s, &data, d(TODAY));
        let c = digests[0].units[0].compliance;
        assert_eq!(c, Compliance { met: 2, missed: 1, overdue: 1 });
        assert_eq!(c.share_percent(), Some(50));
        assert_eq!(Compliance { met: 2, missed: 1, overdue: 0 }.share_percent(), Some(67));
        assert_eq!(Compliance::default().share_percent(), None);
    }

    pub(crate) fn sample_digest(s: &Settings) -> Digest {
        let mut a = open("2026-BU <1>", "BRO-BU", Kind::Assessment, "2026-11-20");
        a.caseworker = None;
        let data = vec![
            a,
            open("2026-BU-2", "BRO-BU", Kind::Investigation, "2026-11-27"),
            closed("2026-BU-3", "BRO-BU", "2026-11-20", "2026-11-19"),
        ];
        build_digests(s, &data, d(TODAY)).remove(0)
    }
}
