//! Compliance reports (`report compliance`, register contract §4): the share of deadlines met,
//! by unit, kind, sex and month, as the inspectors count it — for every case, on any day.
//!
//! - What counts: deadlines whose legal last day (`due_on`) falls in the period and that are
//!   closed, or past due on `today`. Each is met, missed or overdue by [`Deadline::status`]
//!   ([`outcome`]); "met against the nominal day" asks the same of the nominal last day, so a
//!   reader sees what the holiday rule and decided extensions change.
//! - Where it is counted: in the state database, grouped ([`StateStore::compliance_cells`],
//!   [`StateStore::days_used_cells`]); a report never loads the deadlines themselves, so its
//!   memory grows with the number of groups, not of deadlines.
//! - What is shown: one decision per report ([`Suppression`]) hides the groups of fewer than
//!   `report.min_group` deadlines and the groups that the totals row would give away with them,
//!   unless the caller asks for an unsuppressed internal report. Every format, chart and note
//!   reads it: what they print beyond the table's groups are sums of shown groups only
//!   ([`Table::sum_shown`]), so that nothing but the totals row reaches a hidden group.
//! - Chained investigations (JO 2565-2016, register contract §2): each group's investigations
//!   that were opened within `rules.chain_window` after another investigation of the same child
//!   closed ([`StateStore::chained_cells`]), counted in the later investigation's group, and so
//!   per unit. A figure of its group like the others: shown only when the group is, and hidden
//!   from the totals row when it would give away a suppressed group's count ([`Withheld`]). Without child keys
//!   in the state (a register view without `child_key`) the report says chains are not counted.
//! - One definition of the share: the daily digest's 30-day share and the
//!   `fristvakt_compliance_share_met` gauges count with [`Tally`] over [`Period::recent`] too.
//!
//! Only unit codes, kinds, sex codes, months and counts leave this module: never a case
//! reference, a caseworker, a child key or anything else about a case.

pub mod html;
pub mod render;
pub mod suppression;

#[cfg(test)]
mod disclosure_tests;

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};

use crate::rules::{Deadline, DueReason, Kind, Status};
pub use crate::state::report::Dimension;
use crate::state::report::{ChainedCell, DaysUsedCell, OutcomeCell, ReportScope};
use crate::state::{StateError, StateStore};
pub use suppression::{Suppression, Withheld};

/// Days of the recent share: the digest's and the gauges' (contract §3: "the last 30 days").
pub const RECENT_DAYS: u64 = 30;

/// Deadlines per group below which a girls/boys difference is not interpreted.
pub const MIN_FOR_COMPARISON: u64 = 30;

/// A girls/boys difference in share met larger than this (percentage points) gets a note.
pub const NOTABLE_GAP_POINTS: f64 = 5.0;

/// How a deadline that counts in a report ended, or stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Met,
    Missed,
    Overdue,
}

/// The outcome of `deadline` on `today`, or `None` when it does not count yet (open and not
/// past its legal last day). The status rule decides: one definition for reports, digests and
/// gauges.
pub fn outcome(deadline: &Deadline, today: NaiveDate) -> Option<Outcome> {
    match deadline.status(today) {
        Status::Met => Some(Outcome::Met),
        Status::Missed => Some(Outcome::Missed),
        Status::Overdue => Some(Outcome::Overdue),
        Status::DueToday | Status::DueSoon | Status::Pending => None,
    }
}

/// Whether `deadline` would be met had its last day been the nominal one (no holiday move, no
/// extension).
pub fn met_by_nominal_day(deadline: &Deadline, today: NaiveDate) -> bool {
    let nominal = Deadline { due_on: deadline.nominal_due_on, due_reason: DueReason::Nominal, ..deadline.clone() };
    nominal.status(today) == Status::Met
}

/// Counted deadlines of a group: total = met + missed + overdue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: u64,
    pub met: u64,
    pub missed: u64,
    pub overdue: u64,
    /// Those closed by their nominal last day.
    pub met_nominal: u64,
}

impl Tally {
    /// Counts `n` deadlines like `deadline` on `today` (nothing when it does not count yet).
    pub fn count(&mut self, deadline: &Deadline, today: NaiveDate, n: u64) {
        let Some(outcome) = outcome(deadline, today) else { return };
        self.total += n;
        match outcome {
            Outcome::Met => self.met += n,
            Outcome::Missed => self.missed += n,
            Outcome::Overdue => self.overdue += n,
        }
        if met_by_nominal_day(deadline, today) {
            self.met_nominal += n;
        }
    }

    pub fn add(&mut self, other: &Tally) {
        self.total += other.total;
        self.met += other.met;
        self.missed += other.missed;
        self.overdue += other.overdue;
        self.met_nominal += other.met_nominal;
    }

    /// met / total, 0–1; `None` for an empty group.
    pub fn share_met(&self) -> Option<f64> {
        (self.total > 0).then(|| self.met as f64 / self.total as f64)
    }

    /// met against the nominal day / total.
    pub fn share_met_nominal(&self) -> Option<f64> {
        (self.total > 0).then(|| self.met_nominal as f64 / self.total as f64)
    }
}

/// Days of legal last days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    /// The [`RECENT_DAYS`] days before `today` (today itself not included: a deadline due today
    /// is not yet decided).
    pub fn recent(today: NaiveDate) -> Period {
        Period {
            from: today.checked_sub_days(Days::new(RECENT_DAYS)).unwrap_or(NaiveDate::MIN),
            to: today.pred_opt().unwrap_or(NaiveDate::MIN),
        }
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        (self.from..=self.to).contains(&day)
    }
}

/// What a report asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub period: Period,
    pub today: NaiveDate,
    pub by: Vec<Dimension>,
    /// `report.min_group`.
    pub min_group: u64,
    /// False only for internal use (`--no-suppress`); the output then says so.
    pub suppress: bool,
    /// `rules.chain_window` in days: the chained investigations counted per group.
    pub chain_window_days: i64,
}

impl Request {
    fn scope(&self) -> ReportScope {
        ReportScope { from: self.period.from, to: self.period.to, today: self.today }
    }
}

/// Whether a group's figures may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    Shown,
    /// Fewer than `report.min_group` deadlines: shown as "< N", no figure.
    SmallGroup,
    /// Large enough, but hidden because the totals row minus the shown groups would give away
    /// the one small group.
    Complement,
    /// Suppression switched off (`--no-suppress`): every figure shown, the output says so.
    Unsuppressed,
}

impl Disclosure {
    pub fn as_str(self) -> &'static str {
        match self {
            Disclosure::Shown => "shown",
            Disclosure::SmallGroup => "small_group",
            Disclosure::Complement => "complement",
            Disclosure::Unsuppressed => "off",
        }
    }

    pub fn is_hidden(self) -> bool {
        matches!(self, Disclosure::SmallGroup | Disclosure::Complement)
    }
}

/// Median and 90th percentile of the days closed deadlines used (start to closing day).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DaysUsed {
    /// The middle value; the mean of the two middle ones for an even count.
    pub median: Option<f64>,
    /// Nearest rank: the smallest number of days within which 90 % were closed.
    pub p90: Option<i64>,
}

impl DaysUsed {
    /// From a histogram of (days, deadlines).
    pub fn from_histogram(histogram: &BTreeMap<i64, u64>) -> DaysUsed {
        let n: u64 = histogram.values().sum();
        if n == 0 {
            return DaysUsed::default();
        }
        // The value at 1-based rank `rank`.
        let at = |rank: u64| -> i64 {
            let mut seen = 0;
            for (&days, &count) in histogram {
                seen += count;
                if seen >= rank {
                    return days;
                }
            }
            histogram.keys().next_back().copied().unwrap_or(0)
        };
        let median = if n % 2 == 1 { at(n / 2 + 1) as f64 } else { (at(n / 2) + at(n / 2 + 1)) as f64 / 2.0 };
        DaysUsed { median: Some(median), p90: Some(at((n * 9).div_ceil(10))) }
    }
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The value of each dimension of [`Table::by`], in that order; empty for the totals row.
    pub key: Vec<String>,
    /// Always the true figures: renderers show them only when [`Group::visible`] allows.
    pub tally: Tally,
    pub days_used: DaysUsed,
    pub longest_overrun: Option<i64>,
    /// The group's investigations that follow another investigation of the same child within
    /// the chain window; `None` where chains are not counted (no child keys, a group of another
    /// kind, the charts' groupings) or, on the totals row, hidden with a suppressed group.
    pub chained: Option<u64>,
    pub disclosure: Disclosure,
    /// Figures of a shown totals row that would give a hidden group away.
    pub withheld: Withheld,
}

impl Group {
    /// The group, unless it is suppressed: its count.
    pub fn visible(&self) -> Option<&Group> {
        (!self.disclosure.is_hidden()).then_some(self)
    }

    /// The group, unless it is suppressed or its outcome figures (met, missed, overdue, the
    /// shares) are withheld.
    pub fn outcomes(&self) -> Option<&Group> {
        self.visible().filter(|g| !g.withheld.outcomes)
    }

    /// The chained investigations, when counted here and shown.
    pub fn chained_shown(&self) -> Option<u64> {
        self.visible().filter(|g| !g.withheld.chained).and_then(|g| g.chained)
    }

    /// The value of `dim` in this group's key.
    pub fn value(&self, by: &[Dimension], dim: Dimension) -> Option<&str> {
        by.iter().position(|d| *d == dim).and_then(|i| self.key.get(i)).map(String::as_str)
    }
}

/// Groups of one grouping and their totals row.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub by: Vec<Dimension>,
    pub groups: Vec<Group>,
    pub totals: Group,
    /// Whether chained investigations were counted ([`Group::chained`]).
    pub chains: bool,
}

impl Table {
    /// The groups matching `pred` added up (nothing for none), or `None` when one of them is
    /// hidden: the sum less the shown groups would give it away. Every figure printed beyond the
    /// groups and the totals row (notes, charts) is such a sum.
    pub fn sum_shown(&self, pred: impl Fn(&Group) -> bool) -> Option<Tally> {
        let mut sum = Tally::default();
        for g in self.groups.iter().filter(|g| pred(g)) {
            sum.add(&g.visible()?.tally);
        }
        Some(sum)
    }

    /// Whether any group matches `pred`.
    pub fn any(&self, pred: impl Fn(&Group) -> bool) -> bool {
        self.groups.iter().any(pred)
    }
}

/// The compliance report: the asked table and the equal-treatment notes.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub request: Request,
    /// Suppressed by [`Report::suppression`].
    pub table: Table,
    /// The one decision every output reads.
    pub suppression: Suppression,
    pub notes: Notes,
}

/// Equal treatment: how far apart units are, and girls against boys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notes {
    /// With `unit` in the grouping and at least two units shown.
    pub unit_spread: Option<UnitSpread>,
    /// With `sex` in the grouping: per kind (or over all kinds without `kind`).
    pub sex_gaps: Vec<SexGap>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnitSpread {
    pub best: (String, f64),
    pub worst: (String, f64),
    pub median: f64,
    pub units: usize,
    /// Units left out because a group of theirs is hidden.
    pub units_left_out: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SexGap {
    /// `None`: all kinds together.
    pub kind: Option<Kind>,
    /// Girls and boys; `None` when either would take in a hidden group (the note then says so,
    /// without figures).
    pub girls_boys: Option<(Tally, Tally)>,
}

impl SexGap {
    /// Both groups shown and holding at least [`MIN_FOR_COMPARISON`] deadlines.
    pub fn comparable(&self) -> bool {
        self.girls_boys.is_some_and(|(g, b)| g.total >= MIN_FOR_COMPARISON && b.total >= MIN_FOR_COMPARISON)
    }

    /// Girls' share minus boys' share, in percentage points.
    pub fn gap_points(&self) -> Option<f64> {
        let (girls, boys) = self.girls_boys?;
        Some((girls.share_met()? - boys.share_met()?) * 100.0)
    }

    /// Comparable, and further apart than [`NOTABLE_GAP_POINTS`].
    pub fn notable(&self) -> bool {
        self.comparable() && self.gap_points().is_some_and(|g| g.abs() > NOTABLE_GAP_POINTS)
    }
}

/// The report asked for: the table grouped as asked, suppressed once, and the notes.
pub async fn compliance(state: &StateStore, request: &Request) -> Result<Report, StateError> {
    let scope = request.scope();
    let outcomes = state.compliance_cells(scope, &request.by).await?;
    let days = state.days_used_cells(scope, &request.by).await?;
    let chains = if state.has_child_keys().await? {
        Some(state.chained_cells(scope, &request.by, request.chain_window_days).await?)
    } else {
        None
    };
    Ok(build(request, &outcomes, &days, chains.as_deref()))
}

/// The report from the grouped cells (by `request.by`): groups, chains, the one suppression
/// decision, then the notes from the suppressed table. `chains` is `None` when no stored
/// deadline carries a child key.
pub fn build(
    request: &Request,
    outcomes: &[OutcomeCell],
    days: &[DaysUsedCell],
    chains: Option<&[ChainedCell]>,
) -> Report {
    let by = &request.by;
    let mut tallies: BTreeMap<&[String], (Tally, Option<i64>)> = BTreeMap::new();
    for cell in outcomes {
        let n = u64::try_from(cell.deadlines).unwrap_or(0);
        let entry = tallies.entry(&cell.key).or_default();
        entry.0.count(&representative(cell, request.today), request.today, n);
        entry.1 = entry.1.max(cell.longest_overrun.filter(|d| *d > 0));
    }
    let mut histograms: BTreeMap<&[String], BTreeMap<i64, u64>> = BTreeMap::new();
    let mut all_days: BTreeMap<i64, u64> = BTreeMap::new();
    for cell in days {
        let n = u64::try_from(cell.deadlines).unwrap_or(0);
        *histograms.entry(&cell.key).or_default().entry(cell.days).or_default() += n;
        *all_days.entry(cell.days).or_default() += n;
    }
    let mut totals = Group {
        key: Vec::new(),
        tally: Tally::default(),
        days_used: DaysUsed::from_histogram(&all_days),
        longest_overrun: None,
        chained: None,
        disclosure: Disclosure::Shown,
        withheld: Withheld::default(),
    };
    let mut groups: Vec<Group> = tallies
        .into_iter()
        .filter(|(_, (tally, _))| tally.total > 0)
        .map(|(key, (tally, longest_overrun))| {
            totals.tally.add(&tally);
            totals.longest_overrun = totals.longest_overrun.max(longest_overrun);
            let days_used = histograms.get(key).map(DaysUsed::from_histogram).unwrap_or_default();
            Group {
                key: key.to_vec(),
                tally,
                days_used,
                longest_overrun,
                chained: None,
                disclosure: Disclosure::Shown,
                withheld: Withheld::default(),
            }
        })
        .collect();
    groups.sort_by_key(|g| sort_key(by, &g.key));
    let mut table = Table { by: by.clone(), groups, totals, chains: false };
    if let Some(cells) = chains {
        count_chains(&mut table, cells);
    }
    let suppression = Suppression::apply(&mut table, request.min_group, request.suppress);
    let notes = notes(&table);
    Report { request: request.clone(), table, suppression, notes }
}

/// Gives every group whose deadlines include investigations its chained investigations (0 when
/// none), and the totals row their sum; [`Suppression`] decides what of it is shown.
fn count_chains(table: &mut Table, cells: &[ChainedCell]) {
    let counts: BTreeMap<&[String], u64> =
        cells.iter().map(|cell| (cell.key.as_slice(), u64::try_from(cell.investigations).unwrap_or(0))).collect();
    let kind_at = table.by.iter().position(|d| *d == Dimension::Kind);
    let investigation = Kind::Investigation.as_str();
    let mut sum = 0;
    for g in &mut table.groups {
        let holds_investigations = kind_at.is_none_or(|i| g.key.get(i).map(String::as_str) == Some(investigation));
        if holds_investigations {
            let n = counts.get(g.key.as_slice()).copied().unwrap_or(0);
            sum += n;
            g.chained = Some(n);
        }
    }
    table.totals.chained = Some(sum);
    table.chains = true;
}

/// Tallies of the [`Period::recent`] days before `today` by unit and kind, for the gauges.
pub async fn recent_by_unit_and_kind(
    state: &StateStore,
    today: NaiveDate,
) -> Result<BTreeMap<(String, Kind), Tally>, StateError> {
    let period = Period::recent(today);
    let scope = ReportScope { from: period.from, to: period.to, today };
    let mut out: BTreeMap<(String, Kind), Tally> = BTreeMap::new();
    for cell in state.compliance_cells(scope, &[Dimension::Unit, Dimension::Kind]).await? {
        let (Some(unit), Some(Ok(kind))) = (cell.key.first(), cell.key.get(1).map(|k| k.parse::<Kind>())) else {
            return Err(StateError::Corrupt { column: "kind", value: cell.key.join("/") });
        };
        let n = u64::try_from(cell.deadlines).unwrap_or(0);
        out.entry((unit.clone(), kind)).or_default().count(&representative(&cell, today), today, n);
    }
    Ok(out)
}

/// A deadline with the inputs of the status rule that `cell` describes, so that the rule itself
/// classifies the cell.
fn representative(cell: &OutcomeCell, today: NaiveDate) -> Deadline {
    let day = |n: i64| today + chrono::Duration::days(n);
    let due_on = if cell.past_due { day(-2) } else { day(0) };
    // The nominal day: the closing day itself when closed by it, else the day before.
    let closed_on = cell.closed.then(|| if cell.closed_in_time { due_on } else { due_on + chrono::Duration::days(1) });
    let nominal_due_on = match closed_on {
        Some(c) if cell.closed_by_nominal => c,
        Some(c) => c - chrono::Duration::days(1),
        None => due_on,
    };
    Deadline {
        kind: Kind::Assessment,
        start_on: nominal_due_on,
        nominal_due_on,
        due_on,
        closed_on,
        due_reason: DueReason::Nominal,
    }
}

/// The equal-treatment notes, from the suppressed table: sums of shown groups only
/// ([`Table::sum_shown`]). A unit with a hidden group is left out of the spread; a girls/boys
/// comparison that would take in a hidden group is made without figures.
pub fn notes(table: &Table) -> Notes {
    let by = &table.by;
    let mut notes = Notes::default();
    if by.contains(&Dimension::Unit) {
        let units: std::collections::BTreeSet<&str> =
            table.groups.iter().filter_map(|g| g.value(by, Dimension::Unit)).collect();
        let all = units.len();
        let mut shares: Vec<(String, f64)> = units
            .into_iter()
            .filter_map(|u| {
                let tally = table.sum_shown(|g| g.value(by, Dimension::Unit) == Some(u))?;
                Some((u.to_string(), tally.share_met()?))
            })
            .collect();
        if shares.len() >= 2 {
            shares.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let values: Vec<f64> = shares.iter().map(|s| s.1).collect();
            let mid = values.len() / 2;
            let median = if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 };
            notes.unit_spread = Some(UnitSpread {
                best: shares[0].clone(),
                worst: shares[shares.len() - 1].clone(),
                median,
                units: shares.len(),
                units_left_out: all - shares.len(),
            });
        }
    }
    if by.contains(&Dimension::Sex) {
        let per_kind = by.contains(&Dimension::Kind);
        let kinds: Vec<Option<Kind>> =
            if per_kind { Kind::ALL.iter().copied().map(Some).collect() } else { vec![None] };
        for kind in kinds {
            let of = |sex: &'static str| {
                move |g: &Group| {
                    g.value(by, Dimension::Sex) == Some(sex)
                        && kind.is_none_or(|k| g.value(by, Dimension::Kind) == Some(k.as_str()))
                }
            };
            if !table.any(of("F")) && !table.any(of("M")) {
                continue;
            }
            let girls_boys = table.sum_shown(of("F")).zip(table.sum_shown(of("M")));
            notes.sex_gaps.push(SexGap { kind, girls_boys });
        }
    }
    notes
}

/// Kinds in their legal order, everything else as text.
fn sort_key(by: &[Dimension], key: &[String]) -> Vec<(usize, String)> {
    by.iter()
        .zip(key)
        .map(|(dim, value)| match dim {
            Dimension::Kind => (Kind::ALL.iter().position(|k| k.as_str() == value).unwrap_or(9), String::new()),
            _ => (0, value.clone()),
        })
        .collect()
}

/// The months `YYYY-MM` of a period, in order.
pub fn months(period: Period) -> Vec<String> {
    let mut out = Vec::new();
    let mut day = NaiveDate::from_ymd_opt(period.from.year(), period.from.month(), 1);
    while let Some(d) = day.filter(|d| *d <= period.to) {
        out.push(d.format("%Y-%m").to_string());
        day = d.checked_add_months(chrono::Months::new(1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn dimensions_parse_in_any_order_once_each() {
        assert_eq!(Dimension::parse_list("kind,unit").unwrap(), [Dimension::Kind, Dimension::Unit]);
        assert_eq!(Dimension::parse_list("").unwrap(), []);
        assert!(Dimension::parse_list("unit,unit").is_err());
        assert!(Dimension::parse_list("case_ref").is_err());
    }

    #[test]
    fn median_and_ninetieth_percentile_of_a_histogram() {
        // 1, 2, 2, 3, 10 → median 2, p90 rank ceil(4.5) = 5 → 10.
        let h = BTreeMap::from([(1, 1), (2, 2), (3, 1), (10, 1)]);
        assert_eq!(DaysUsed::from_histogram(&h), DaysUsed { median: Some(2.0), p90: Some(10) });
        // 1, 2, 3, 4 → median 2.5, p90 rank ceil(3.6) = 4 → 4.
        let h = BTreeMap::from([(1, 1), (2, 1), (3, 1), (4, 1)]);
        assert_eq!(DaysUsed::from_histogram(&h), DaysUsed { median: Some(2.5), p90: Some(4) });
        // Twenty values of 5 and nothing else.
        assert_eq!(DaysUsed::from_histogram(&BTreeMap::from([(5, 20)])), DaysUsed { median: Some(5.0), p90: Some(5) });
        assert_eq!(DaysUsed::from_histogram(&BTreeMap::new()), DaysUsed::default());
    }

    #[test]
    fn outcomes_follow_the_status_rule_and_the_nominal_day() {
        let today = d("2026-11-25");
        // Nominal Saturday 2026-11-21, moved to Monday 2026-11-23, closed that Monday.
        let moved = Deadline {
            kind: Kind::Assessment,
            start_on: d("2026-11-07"),
            nominal_due_on: d("2026-11-21"),
            due_on: d("2026-11-23"),
            closed_on: Some(d("2026-11-23")),
            due_reason: DueReason::NextDay,
        };
        assert_eq!(outcome(&moved, today), Some(Outcome::Met));
        assert!(!met_by_nominal_day(&moved, today));
        let open_today = Deadline { closed_on: None, due_on: today, ..moved.clone() };
        assert_eq!(outcome(&open_today, today), None);
        let overdue = Deadline { closed_on: None, ..moved.clone() };
        assert_eq!(outcome(&overdue, today), Some(Outcome::Overdue));
        let mut t = Tally::default();
        t.count(&moved, today, 3);
        t.count(&overdue, today, 1);
        t.count(&open_today, today, 7);
        assert_eq!(t, Tally { total: 4, met: 3, missed: 0, overdue: 1, met_nominal: 0 });
        assert_eq!(t.share_met(), Some(0.75));
    }

    #[test]
    fn a_girls_boys_gap_over_five_points_with_thirty_each_gets_a_note() {
        let row = |kind: &str, sex: &str, total: u64, met: u64| Group {
            key: vec![kind.to_string(), sex.to_string()],
            tally: Tally { total, met, missed: total - met, ..Tally::default() },
            days_used: DaysUsed::default(),
            longest_overrun: None,
            chained: None,
            disclosure: Disclosure::Shown,
            withheld: Withheld::default(),
        };
        let by = vec![Dimension::Kind, Dimension::Sex];
        let table = Table {
            by: by.clone(),
            groups: vec![
                // 90 % against 75 %: 15 points over 40 each.
                row("assessment", "F", 40, 36),
                row("assessment", "M", 40, 30),
                // 80 % against 77.5 %: within 5 points.
                row("investigation", "F", 30, 24),
                row("investigation", "M", 40, 31),
                // 12 points, but only 20 girls.
                row("protection", "F", 20, 19),
                row("protection", "M", 30, 25),
                row("protection", "unknown", 2, 2),
            ],
            totals: row("", "", 0, 0),
            chains: false,
        };
        let notes = notes(&table);
        let gaps: Vec<(Option<Kind>, bool, bool)> =
            notes.sex_gaps.iter().map(|g| (g.kind, g.comparable(), g.notable())).collect();
        assert_eq!(
            gaps,
            [
                (Some(Kind::Protection), false, false),
                (Some(Kind::Assessment), true, true),
                (Some(Kind::Investigation), true, false)
            ]
        );
        let sv = render::Words::new(crate::config::Language::Swedish).sex_gap(&notes.sex_gaps[1], 5);
        assert!(sv.contains("flickornas frister hölls oftare i tid") && sv.contains("15 procentenheter"), "{sv}");
        let en = render::Words::new(crate::config::Language::English).sex_gap(&notes.sex_gaps[1], 5);
        assert!(en.contains("girls' deadlines were met more often") && en.contains("15 percentage points"), "{en}");
        assert!(notes.unit_spread.is_none());
    }

    #[test]
    fn the_recent_period_is_the_thirty_days_before_today() {
        let p = Period::recent(d("2026-11-25"));
        assert_eq!((p.from, p.to), (d("2026-10-26"), d("2026-11-24")));
        assert_eq!(months(Period { from: d("2026-11-15"), to: d("2027-01-01") }), ["2026-11", "2026-12", "2027-01"]);
    }
}
