//! The clocks of a placement or LVU decision (register contract §1b, §2 "Clocks of placements and
//! LVU decisions"): when each one-off clock of a placements row starts and what closes it, given
//! the investigation close of the case the row belongs to (the jourhem limit) and the
//! investigations opened in the child's cases (a follow-up ended by a new investigation).
//!
//! These are the clocks where a missed day ends a child's protection: an emergency custody not
//! submitted to the court within a week, or without an application for care within four weeks,
//! ends by law (LVU 7 §, 9 §); a care decision lapses when care has not begun within four weeks of
//! its legal force (LVU 5 §).

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;

use super::clock::{Clock, Period};
use super::deadline::{counted, unknown_value, Deadline, DueReason, Kind, RuleOptions};

/// The legal basis of a placement or decision (`basis`, contract §1b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Basis {
    /// A placement with consent (SoL 22 kap.).
    Sol,
    /// Omedelbart omhändertagande decided by the nämnd or its chair (LVU 6 § första–andra st.).
    Lvu6,
    /// LVU 6 a §: the same two court clocks.
    Lvu6a,
    /// Care decided under LVU 2 § (the home environment).
    Lvu2,
    /// Care decided under LVU 3 § (the young person's own behaviour).
    Lvu3,
}

impl Basis {
    pub const ALL: [Basis; 5] = [Basis::Sol, Basis::Lvu6, Basis::Lvu6a, Basis::Lvu2, Basis::Lvu3];

    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Sol => "sol",
            Basis::Lvu6 => "lvu_6",
            Basis::Lvu6a => "lvu_6a",
            Basis::Lvu2 => "lvu_2",
            Basis::Lvu3 => "lvu_3",
        }
    }

    /// An emergency custody whose decision the nämnd must submit to the court.
    pub fn is_emergency_custody(self) -> bool {
        matches!(self, Basis::Lvu6 | Basis::Lvu6a)
    }

    /// Care decided by the court under LVU 2 § or 3 §.
    pub fn is_lvu_care(self) -> bool {
        matches!(self, Basis::Lvu2 | Basis::Lvu3)
    }
}

impl FromStr for Basis {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Basis::ALL
            .into_iter()
            .find(|b| b.as_str() == text)
            .ok_or_else(|| unknown_value("basis", text, Basis::ALL.map(Basis::as_str)))
    }
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the child lives (`home`, contract §1b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Home {
    FamilyHome,
    /// Jourhem.
    EmergencyHome,
    /// Hem för vård eller boende.
    Hvb,
    /// Stödboende.
    SupportedHousing,
    /// Skyddat boende.
    ProtectedHousing,
    /// Särskilt ungdomshem.
    Sis,
    OwnHome,
    Other,
}

impl Home {
    pub const ALL: [Home; 8] = [
        Home::FamilyHome,
        Home::EmergencyHome,
        Home::Hvb,
        Home::SupportedHousing,
        Home::ProtectedHousing,
        Home::Sis,
        Home::OwnHome,
        Home::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Home::FamilyHome => "family_home",
            Home::EmergencyHome => "emergency_home",
            Home::Hvb => "hvb",
            Home::SupportedHousing => "supported_housing",
            Home::ProtectedHousing => "protected_housing",
            Home::Sis => "sis",
            Home::OwnHome => "own_home",
            Home::Other => "other",
        }
    }
}

impl FromStr for Home {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Home::ALL
            .into_iter()
            .find(|h| h.as_str() == text)
            .ok_or_else(|| unknown_value("home", text, Home::ALL.map(Home::as_str)))
    }
}

/// The values of one placements row that its clocks depend on (contract §1b), named after the
/// columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementDates {
    pub basis: Basis,
    pub home: Option<Home>,
    pub home_since: Option<NaiveDate>,
    pub decided_on: NaiveDate,
    pub executed_on: Option<NaiveDate>,
    pub legal_force_on: Option<NaiveDate>,
    pub submitted_to_court_on: Option<NaiveDate>,
    pub care_applied_on: Option<NaiveDate>,
    pub application_extension_requested_on: Option<NaiveDate>,
    pub application_extended_to: Option<NaiveDate>,
    pub last_reviewed_on: Option<NaiveDate>,
    pub restriction_decided_on: Option<NaiveDate>,
    pub restriction_last_reviewed_on: Option<NaiveDate>,
    pub restriction_ended_on: Option<NaiveDate>,
    pub custody_considered_on: Option<NaiveDate>,
    pub emergency_home_extended_to: Option<NaiveDate>,
    pub ended_on: Option<NaiveDate>,
    pub follow_up_decided_on: Option<NaiveDate>,
    pub follow_up_ended_on: Option<NaiveDate>,
}

impl PlacementDates {
    /// A row of `basis` decided on `decided_on`, every other column empty.
    pub fn new(basis: Basis, decided_on: NaiveDate) -> PlacementDates {
        PlacementDates {
            basis,
            home: None,
            home_since: None,
            decided_on,
            executed_on: None,
            legal_force_on: None,
            submitted_to_court_on: None,
            care_applied_on: None,
            application_extension_requested_on: None,
            application_extended_to: None,
            last_reviewed_on: None,
            restriction_decided_on: None,
            restriction_last_reviewed_on: None,
            restriction_ended_on: None,
            custody_considered_on: None,
            emergency_home_extended_to: None,
            ended_on: None,
            follow_up_decided_on: None,
            follow_up_ended_on: None,
        }
    }
}

/// What a placement's clocks need from the cases view: the investigation close of the case the
/// row names (`case_ref`), and the investigations opened in the child's cases (`child_key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementContext {
    /// `investigation_closed_on` of the case joined by `case_ref`.
    pub investigation_closed_on: Option<NaiveDate>,
    /// `investigation_opened_on` of every case of the child.
    pub investigations_opened: Vec<NaiveDate>,
}

/// Which facts of the cases view a placement's clocks read ([`PlacementContext`]), from its row
/// alone: the case's investigation close only for a placement in an emergency home (jourhem,
/// `emergency_home_limit`, SoL 22 kap. 4 §), the child's investigations only for a placement
/// with a follow-up clock, running or ended (`placement_follow_up`, SoL 23 kap. 2 §, LVU 21 b §:
/// a new investigation on or after its start ends it). Most placements read neither, and a poll
/// looks up only what these say: [`placement_deadlines_for`] reads its context through them, so
/// a fact not needed cannot change a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextNeeds {
    /// `investigation_closed_on` of the case the row names.
    pub case_close: bool,
    /// `investigation_opened_on` of the child's cases.
    pub child_investigations: bool,
}

impl PlacementDates {
    /// What of the cases view this row's clocks read (see [`ContextNeeds`]).
    pub fn context_needs(&self) -> ContextNeeds {
        ContextNeeds {
            case_close: self.home == Some(Home::EmergencyHome),
            child_investigations: follow_up_start(self).is_some(),
        }
    }
}

/// The deadlines of one placements row, in [`Kind`] order, exactly as contract §2 states them.
/// Of `context`, only what the row's [`ContextNeeds`] name is read.
pub fn placement_deadlines_for(p: &PlacementDates, context: &PlacementContext, options: RuleOptions) -> Vec<Deadline> {
    let needs = p.context_needs();
    let case_closed_on = context.investigation_closed_on.filter(|_| needs.case_close);
    let opened: &[NaiveDate] = if needs.child_investigations { &context.investigations_opened } else { &[] };
    let mut deadlines = Vec::new();
    if p.basis.is_emergency_custody() {
        // LVU 7 §: the week counts from the decision (JO 3925-2006), the holiday rule applies.
        deadlines.extend(one_off(p, Kind::LvuCourtSubmission, p.decided_on, None, p.submitted_to_court_on, options));
        if let Some(executed_on) = p.executed_on {
            // LVU 8 §, 9 § 1: an application, or a request for more time made in time, keeps the
            // custody. A court's new day recorded without the request's day is this clock's
            // last day (the second cycle, from the request, is the recurring store's).
            let closed_on = [p.care_applied_on, p.application_extension_requested_on].into_iter().flatten().min();
            let extended_to = p.application_extended_to.filter(|_| p.application_extension_requested_on.is_none());
            deadlines.extend(one_off(p, Kind::LvuCareApplication, executed_on, extended_to, closed_on, options));
        }
    }
    if p.basis.is_lvu_care() {
        if let Some(legal_force_on) = p.legal_force_on {
            // LVU 5 §, 10 §: care begun under an emergency custody before the legal force is met.
            deadlines.extend(one_off(p, Kind::LvuCareStart, legal_force_on, None, p.executed_on, options));
        }
    }
    if !p.basis.is_emergency_custody() {
        if let Some(executed_on) = p.executed_on {
            // LVU 13 §; SoL 22 kap. 13 §: six months from the start, then from each review.
            let start_on = latest_of(executed_on, p.last_reviewed_on, p.ended_on);
            deadlines.push(running_cycle(Kind::PlacementReview.clock(), start_on, p.ended_on, options));
        }
    }
    if let Some(decided_on) = p.restriction_decided_on {
        // LVU 14 §: three months from the decision, then from each review, until it ends.
        let ended_on = [p.restriction_ended_on, p.ended_on].into_iter().flatten().min();
        let start_on = latest_of(decided_on, p.restriction_last_reviewed_on, ended_on);
        deadlines.push(running_cycle(Kind::RestrictionReview.clock(), start_on, ended_on, options));
    }
    if let (Some(Home::FamilyHome), Some(executed_on)) = (p.home, p.executed_on) {
        deadlines.push(custody_transfer_cycle(p, executed_on, options));
    }
    if let (Some(Home::EmergencyHome), Some(closed_on)) = (p.home, case_closed_on) {
        // SoL 22 kap. 4 §: two months after the investigation closed, for a child still there.
        if p.ended_on.is_none_or(|ended| ended >= closed_on) {
            deadlines.push(counted(
                Kind::EmergencyHomeLimit.clock(),
                closed_on,
                p.emergency_home_extended_to,
                p.ended_on,
                options,
            ));
        }
    }
    if let Some(start_on) = follow_up_start(p) {
        let new_investigation = opened.iter().copied().filter(|opened| *opened >= start_on).min();
        let ended = [p.follow_up_ended_on, new_investigation].into_iter().flatten().min();
        deadlines.push(counted(Kind::PlacementFollowUp.clock(), start_on, None, ended, options));
    }
    deadlines
}

/// The later of a recurring clock's first start and its latest review, a review after the measure
/// ended not counting (an ended measure starts no new cycle).
fn latest_of(first: NaiveDate, reviewed_on: Option<NaiveDate>, ended_on: Option<NaiveDate>) -> NaiveDate {
    let reviewed_on = reviewed_on.filter(|reviewed| ended_on.is_none_or(|ended| *reviewed <= ended));
    reviewed_on.map_or(first, |reviewed| reviewed.max(first))
}

/// The running cycle of a recurring clock started on `start_on`: closed on the measure's end when
/// it ended (met when on or before the legal last day, there being nothing more to review; missed
/// when after). Only a later review closes it otherwise, and that is the store's to see
/// ([`cycle_change`]): the register holds only the latest review.
fn running_cycle(clock: &Clock, start_on: NaiveDate, ended_on: Option<NaiveDate>, options: RuleOptions) -> Deadline {
    counted(clock, start_on, None, ended_on, options)
}

/// The custody-transfer question (SoL 22 kap. 14 §; LVU 13 c §): two years from the child's
/// coming to the family home (`home_since`, carried over when a new row starts for the same home;
/// else `executed_on`), then a year from each consideration. A consideration more than 30 days
/// before the two years are up does not close the first cycle; one later does.
fn custody_transfer_cycle(p: &PlacementDates, executed_on: NaiveDate, options: RuleOptions) -> Deadline {
    let clock = Kind::CustodyTransferReview.clock();
    let first = running_cycle(clock, p.home_since.unwrap_or(executed_on), p.ended_on, options);
    let considered_on = p
        .custody_considered_on
        .filter(|considered| *considered >= first.nominal_due_on - chrono::Duration::days(EARLY_CONSIDERATION_DAYS))
        .filter(|considered| p.ended_on.is_none_or(|ended| *considered <= ended));
    match considered_on {
        Some(considered_on) => {
            let yearly = Clock { period: Period::Years { count: 1 }, ..*clock };
            running_cycle(&yearly, considered_on, p.ended_on, options)
        }
        None => first,
    }
}

/// How many days before the two years are up a consideration of a custody transfer closes the
/// first cycle (contract §2, `custody_transfer_review`).
pub const EARLY_CONSIDERATION_DAYS: i64 = 30;

/// The review day a recurring clock's cycle started on, when it started on one (not on the
/// measure's own start): the register's latest review of that kind.
fn review_of(kind: Kind, p: &PlacementDates) -> Option<NaiveDate> {
    match kind {
        Kind::PlacementReview => p.last_reviewed_on,
        Kind::RestrictionReview => p.restriction_last_reviewed_on,
        Kind::CustodyTransferReview => p.custody_considered_on,
        _ => None,
    }
}

/// What a poll does with the stored running cycle of a recurring clock, given the cycle the row
/// now gives (contract §2 "Recurring clocks").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleChange {
    /// The row's cycle replaces the running one in place (a corrected start, a review date moved
    /// back, an end): nothing is closed.
    InPlace,
    /// A later review: the running cycle closes on that day (met or missed against its own
    /// `due_on`) and the row's cycle is the next one.
    Next {
        /// The review day.
        closed_on: NaiveDate,
    },
}

/// Whether the row's cycle `now` of a recurring kind follows the stored `running` one (a later
/// review closes it) or replaces it in place (any other change).
pub fn cycle_change(running: &Deadline, now: &Deadline, p: &PlacementDates) -> CycleChange {
    let by_review = review_of(now.kind, p) == Some(now.start_on);
    if by_review && now.start_on > running.start_on && running.closed_on.is_none_or(|c| c >= now.start_on) {
        CycleChange::Next { closed_on: now.start_on }
    } else {
        CycleChange::InPlace
    }
}

/// The second cycle of `lvu_care_application` (contract §2): a court's extension after a request
/// for more time starts it on the request day; its last day is the court's (nominal = legal =
/// `application_extended_to`), and the application closes it. It exists only when the request,
/// not an earlier application, closed the first cycle. Of an ended custody it is like any one-off
/// clock: nothing was owed when the custody ended on or before its last day, else a miss.
pub fn application_second_cycle(p: &PlacementDates) -> Option<Deadline> {
    if !p.basis.is_emergency_custody() || p.executed_on.is_none() {
        return None;
    }
    let requested_on = p.application_extension_requested_on?;
    let extended_to = p.application_extended_to?;
    if p.care_applied_on.is_some_and(|applied| applied < requested_on) {
        return None;
    }
    let mut closed_on = p.care_applied_on;
    if closed_on.is_none() {
        if let Some(ended_on) = p.ended_on {
            if ended_on <= extended_to {
                return None;
            }
            closed_on = Some(ended_on);
        }
    }
    Some(Deadline {
        kind: Kind::LvuCareApplication,
        start_on: requested_on,
        nominal_due_on: extended_to,
        due_on: extended_to,
        closed_on,
        due_reason: DueReason::Extended { to: extended_to },
    })
}

/// The follow-up's start: a SoL placement in a family home, HVB or skyddat boende with a decided
/// follow-up (SoL 23 kap. 2 §), from its end; after LVU care always (LVU 21 b–c §§), from the
/// decided follow-up when one waited for the child's return home, else from the end.
fn follow_up_start(p: &PlacementDates) -> Option<NaiveDate> {
    let ended_on = p.ended_on?;
    match p.basis {
        Basis::Sol => {
            let covered = matches!(p.home, Some(Home::FamilyHome | Home::Hvb | Home::ProtectedHousing));
            (covered && p.follow_up_decided_on.is_some()).then_some(ended_on)
        }
        Basis::Lvu2 | Basis::Lvu3 => Some(p.follow_up_decided_on.unwrap_or(ended_on)),
        Basis::Lvu6 | Basis::Lvu6a => None,
    }
}

/// A one-off clock of a measure that may have ended (contract §2): with its closing date unset and
/// `ended_on` on or before the legal last day, nothing was owed (no clock); ended later, the clock
/// is closed on `ended_on`, missed.
fn one_off(
    p: &PlacementDates,
    kind: Kind,
    start_on: NaiveDate,
    extended_to: Option<NaiveDate>,
    closed_on: Option<NaiveDate>,
    options: RuleOptions,
) -> Option<Deadline> {
    let mut deadline = counted(kind.clock(), start_on, extended_to, closed_on, options);
    if closed_on.is_none() {
        if let Some(ended_on) = p.ended_on {
            if ended_on <= deadline.due_on {
                return None;
            }
            deadline.closed_on = Some(ended_on);
        }
    }
    Some(deadline)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rules::Status;

    const ON: RuleOptions = RuleOptions { holiday_rule: true };
    const OFF: RuleOptions = RuleOptions { holiday_rule: false };

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    /// A placements row from its basis, home and `column = date` pairs (contract §1b's names).
    fn row(basis: &str, home: Option<&str>, columns: &[(&str, &str)]) -> PlacementDates {
        let decided = columns.iter().find(|(c, _)| *c == "decided_on").map_or("2026-01-01", |(_, v)| v);
        let mut p = PlacementDates::new(basis.parse().unwrap(), d(decided));
        p.home = home.map(|h| h.parse().unwrap());
        for &(column, value) in columns {
            let field = match column {
                "decided_on" => continue,
                "home_since" => &mut p.home_since,
                "executed_on" => &mut p.executed_on,
                "legal_force_on" => &mut p.legal_force_on,
                "submitted_to_court_on" => &mut p.submitted_to_court_on,
                "care_applied_on" => &mut p.care_applied_on,
                "application_extension_requested_on" => &mut p.application_extension_requested_on,
                "application_extended_to" => &mut p.application_extended_to,
                "emergency_home_extended_to" => &mut p.emergency_home_extended_to,
                "ended_on" => &mut p.ended_on,
                "follow_up_decided_on" => &mut p.follow_up_decided_on,
                "follow_up_ended_on" => &mut p.follow_up_ended_on,
                "last_reviewed_on" => &mut p.last_reviewed_on,
                "restriction_decided_on" => &mut p.restriction_decided_on,
                "restriction_last_reviewed_on" => &mut p.restriction_last_reviewed_on,
                "restriction_ended_on" => &mut p.restriction_ended_on,
                "custody_considered_on" => &mut p.custody_considered_on,
                other => panic!("no column {other}"),
            };
            *field = Some(d(value));
        }
        p
    }

    /// Every deadline of the row, one line each: kind, start, nominal, legal, closed, status on
    /// `today`.
    fn lines(p: &PlacementDates, context: &PlacementContext, options: RuleOptions, today: &str) -> Vec<String> {
        placement_deadlines_for(p, context, options)
            .iter()
            .map(|x| {
                let closed = x.closed_on.map_or("open".to_string(), |c| format!("closed {c}"));
                format!(
                    "{} {} → {} / {} {closed} {}",
                    x.kind,
                    x.start_on,
                    x.nominal_due_on,
                    x.due_on,
                    x.status(d(today)).as_str()
                )
            })
            .collect()
    }

    /// The row's one-off clocks are `expected` (its recurring ones are `check_all`'s).
    fn check(
        basis: &str,
        home: Option<&str>,
        columns: &[(&str, &str)],
        context: &PlacementContext,
        today: &str,
        expected: &[&str],
    ) {
        let mut got = lines(&row(basis, home, columns), context, ON, today);
        got.retain(|line| !Kind::ALL.iter().any(|k| k.is_recurring() && line.starts_with(&format!("{k} "))));
        assert_eq!(got, expected, "{basis} {home:?} {columns:?}");
    }

    /// Every clock of the row is `expected`, the recurring ones included.
    fn check_all(
        basis: &str,
        home: Option<&str>,
        columns: &[(&str, &str)],
        context: &PlacementContext,
        today: &str,
        expected: &[&str],
    ) {
        let got = lines(&row(basis, home, columns), context, ON, today);
        assert_eq!(got, expected, "{basis} {home:?} {columns:?}");
    }

    const NONE: PlacementContext =
        PlacementContext { investigation_closed_on: None, investigations_opened: Vec::new() };

    #[test]
    fn emergency_custody_goes_to_court_within_a_week_of_the_decision() {
        // LVU 7 §: decided Saturday 2026-11-21; the week ends Saturday 28th → Monday 30th.
        check(
            "lvu_6",
            None,
            &[("decided_on", "2026-11-21")],
            &NONE,
            "2026-11-27",
            &["lvu_court_submission 2026-11-21 → 2026-11-28 / 2026-11-30 open due_soon"],
        );
        // Came in to the court on the Monday: in time (JO 534-2013: the day it came in counts).
        check(
            "lvu_6",
            None,
            &[("decided_on", "2026-11-21"), ("submitted_to_court_on", "2026-11-30")],
            &NONE,
            "2026-12-01",
            &["lvu_court_submission 2026-11-21 → 2026-11-28 / 2026-11-30 closed 2026-11-30 met"],
        );
        // A Tuesday decision: the next Tuesday, no move.
        check(
            "lvu_6a",
            None,
            &[("decided_on", "2026-03-03")],
            &NONE,
            "2026-03-11",
            &["lvu_court_submission 2026-03-03 → 2026-03-10 / 2026-03-10 open overdue"],
        );
        // Easter: decided Friday 2026-03-27 → Friday 3 April långfredagen → Tuesday 7 April.
        check(
            "lvu_6",
            None,
            &[("decided_on", "2026-03-27")],
            &NONE,
            "2026-04-07",
            &["lvu_court_submission 2026-03-27 → 2026-04-03 / 2026-04-07 open due_today"],
        );
        // A custody the court ordered itself is not lvu_6; care decisions owe no submission.
        check("lvu_2", None, &[("decided_on", "2026-03-03")], &NONE, "2026-03-04", &[]);
        check("sol", Some("family_home"), &[("decided_on", "2026-03-03")], &NONE, "2026-03-04", &[]);
    }

    #[test]
    fn the_care_application_within_four_weeks_of_execution() {
        // Executed 2026-11-26 → 28 days → julafton 2026-12-24 → juldagen, annandag jul, Sunday
        // → Monday 2026-12-28.
        let executed =
            [("decided_on", "2026-11-25"), ("executed_on", "2026-11-26"), ("submitted_to_court_on", "2026-11-27")];
        check(
            "lvu_6",
            None,
            &executed,
            &NONE,
            "2026-12-20",
            &[
                "lvu_court_submission 2026-11-25 → 2026-12-02 / 2026-12-02 closed 2026-11-27 met",
                "lvu_care_application 2026-11-26 → 2026-12-24 / 2026-12-28 open due_soon",
            ],
        );
        // A request for more time made in time: met, the custody goes on.
        let mut requested = executed.to_vec();
        requested.push(("application_extension_requested_on", "2026-12-21"));
        check(
            "lvu_6",
            None,
            &requested,
            &NONE,
            "2027-01-05",
            &[
                "lvu_court_submission 2026-11-25 → 2026-12-02 / 2026-12-02 closed 2026-11-27 met",
                "lvu_care_application 2026-11-26 → 2026-12-24 / 2026-12-28 closed 2026-12-21 met",
            ],
        );
        // An application filed before the custody was executed: valid, met.
        check(
            "lvu_6",
            None,
            &[
                ("decided_on", "2026-11-25"),
                ("executed_on", "2026-11-26"),
                ("submitted_to_court_on", "2026-11-26"),
                ("care_applied_on", "2026-11-25"),
            ],
            &NONE,
            "2026-12-01",
            &[
                "lvu_court_submission 2026-11-25 → 2026-12-02 / 2026-12-02 closed 2026-11-26 met",
                "lvu_care_application 2026-11-26 → 2026-12-24 / 2026-12-28 closed 2026-11-25 met",
            ],
        );
        // The court's new day recorded without the request's day is the clock's last day.
        let mut extended = executed.to_vec();
        extended.push(("application_extended_to", "2027-01-15"));
        check(
            "lvu_6",
            None,
            &extended,
            &NONE,
            "2027-01-10",
            &[
                "lvu_court_submission 2026-11-25 → 2026-12-02 / 2026-12-02 closed 2026-11-27 met",
                "lvu_care_application 2026-11-26 → 2026-12-24 / 2027-01-15 open due_soon",
            ],
        );
        // Not executed: no application clock yet.
        check(
            "lvu_6",
            None,
            &[("decided_on", "2026-11-25")],
            &NONE,
            "2026-11-29",
            &["lvu_court_submission 2026-11-25 → 2026-12-02 / 2026-12-02 open due_soon"],
        );
    }

    #[test]
    fn an_ended_custody_owes_nothing_or_is_a_visible_miss() {
        // Ended before anything was due: no clock at all.
        check(
            "lvu_6",
            None,
            &[("decided_on", "2026-11-21"), ("executed_on", "2026-11-21"), ("ended_on", "2026-11-24")],
            &NONE,
            "2026-12-30",
            &[],
        );
        // Ended on the legal last day: still nothing owed.
        check("lvu_6", None, &[("decided_on", "2026-11-21"), ("ended_on", "2026-11-30")], &NONE, "2026-12-30", &[]);
        // Lapsed because the week passed (ended by law the day after): a miss that stays visible.
        check(
            "lvu_6",
            None,
            &[("decided_on", "2026-11-21"), ("executed_on", "2026-11-21"), ("ended_on", "2026-12-01")],
            &NONE,
            "2026-12-30",
            &["lvu_court_submission 2026-11-21 → 2026-11-28 / 2026-11-30 closed 2026-12-01 missed"],
        );
        // Submitted in time, no application; the custody ended when the four weeks ran out.
        check(
            "lvu_6",
            None,
            &[
                ("decided_on", "2026-03-02"),
                ("executed_on", "2026-03-02"),
                ("submitted_to_court_on", "2026-03-04"),
                ("ended_on", "2026-04-01"),
            ],
            &NONE,
            "2026-04-10",
            &[
                "lvu_court_submission 2026-03-02 → 2026-03-09 / 2026-03-09 closed 2026-03-04 met",
                "lvu_care_application 2026-03-02 → 2026-03-30 / 2026-03-30 closed 2026-04-01 missed",
            ],
        );
    }

    #[test]
    fn care_begins_within_four_weeks_of_legal_force() {
        // LVU 5 §: legal force Monday 2026-05-04 → Monday 1 June.
        check(
            "lvu_2",
            None,
            &[("decided_on", "2026-04-10"), ("legal_force_on", "2026-05-04")],
            &NONE,
            "2026-05-28",
            &["lvu_care_start 2026-05-04 → 2026-06-01 / 2026-06-01 open due_soon"],
        );
        // Care begun under an emergency custody before the decision gained legal force (LVU 10 §).
        check(
            "lvu_3",
            None,
            &[("decided_on", "2026-04-10"), ("legal_force_on", "2026-05-04"), ("executed_on", "2026-04-12")],
            &NONE,
            "2026-05-28",
            &["lvu_care_start 2026-05-04 → 2026-06-01 / 2026-06-01 closed 2026-04-12 met"],
        );
        // Legal force 2026-05-22 → midsommarafton 19 June → midsommardagen, Sunday → Monday 22 June.
        check(
            "lvu_2",
            None,
            &[("decided_on", "2026-05-01"), ("legal_force_on", "2026-05-22")],
            &NONE,
            "2026-06-23",
            &["lvu_care_start 2026-05-22 → 2026-06-19 / 2026-06-22 open overdue"],
        );
        // Without legal force: no clock.
        check("lvu_2", None, &[("decided_on", "2026-04-10")], &NONE, "2026-05-28", &[]);
    }

    #[test]
    fn a_jourhem_for_two_months_after_the_investigation_closed() {
        let closed =
            PlacementContext { investigation_closed_on: Some(d("2026-03-31")), investigations_opened: Vec::new() };
        // Closed 31 March → 31 May, a Sunday → Monday 1 June.
        check(
            "sol",
            Some("emergency_home"),
            &[("decided_on", "2026-02-01"), ("executed_on", "2026-02-01")],
            &closed,
            "2026-05-20",
            &["emergency_home_limit 2026-03-31 → 2026-05-31 / 2026-06-01 open due_soon"],
        );
        // A decided extension for special reasons: the new day.
        check(
            "sol",
            Some("emergency_home"),
            &[
                ("decided_on", "2026-02-01"),
                ("executed_on", "2026-02-01"),
                ("emergency_home_extended_to", "2026-07-15"),
            ],
            &closed,
            "2026-06-10",
            &["emergency_home_limit 2026-03-31 → 2026-05-31 / 2026-07-15 open pending"],
        );
        // The child moved on: closed.
        check(
            "sol",
            Some("emergency_home"),
            &[("decided_on", "2026-02-01"), ("executed_on", "2026-02-01"), ("ended_on", "2026-06-03")],
            &closed,
            "2026-06-10",
            &["emergency_home_limit 2026-03-31 → 2026-05-31 / 2026-06-01 closed 2026-06-03 missed"],
        );
        // Ended before the investigation closed; no investigation closed; another home: none.
        check(
            "sol",
            Some("emergency_home"),
            &[("decided_on", "2026-02-01"), ("ended_on", "2026-03-30")],
            &closed,
            "2026-06-10",
            &[],
        );
        check("sol", Some("emergency_home"), &[("decided_on", "2026-02-01")], &NONE, "2026-06-10", &[]);
        check("sol", Some("family_home"), &[("decided_on", "2026-02-01")], &closed, "2026-06-10", &[]);
    }

    #[test]
    fn the_follow_up_after_a_placement_ended() {
        // SoL: decided follow-up after an HVB placement ended 2026-08-31 → 2027-02-28 (a Sunday)
        // → Monday 1 March; ended early by a new investigation of the same child.
        let sol = [
            ("decided_on", "2026-01-10"),
            ("executed_on", "2026-01-10"),
            ("ended_on", "2026-08-31"),
            ("follow_up_decided_on", "2026-09-02"),
        ];
        check(
            "sol",
            Some("hvb"),
            &sol,
            &NONE,
            "2027-02-20",
            &["placement_follow_up 2026-08-31 → 2027-02-28 / 2027-03-01 open due_soon"],
        );
        let new_investigation = PlacementContext {
            investigation_closed_on: None,
            investigations_opened: vec![d("2026-05-01"), d("2026-10-12")],
        };
        check(
            "sol",
            Some("hvb"),
            &sol,
            &new_investigation,
            "2027-02-20",
            &["placement_follow_up 2026-08-31 → 2027-02-28 / 2027-03-01 closed 2026-10-12 met"],
        );
        // No follow-up decided, or a home SoL 23 kap. 2 § does not cover: none.
        check("sol", Some("hvb"), &sol[..3], &NONE, "2027-02-20", &[]);
        check("sol", Some("supported_housing"), &sol, &NONE, "2027-02-20", &[]);
        // LVU: compulsory without a decision, from the end; or from a follow-up that waited for
        // the child's return home.
        check(
            "lvu_2",
            Some("family_home"),
            &sol[..3],
            &NONE,
            "2026-09-01",
            &["placement_follow_up 2026-08-31 → 2027-02-28 / 2027-03-01 open pending"],
        );
        check(
            "lvu_3",
            Some("sis"),
            &[
                ("decided_on", "2026-01-10"),
                ("ended_on", "2026-08-31"),
                ("follow_up_decided_on", "2026-10-05"),
                ("follow_up_ended_on", "2027-01-20"),
            ],
            &NONE,
            "2027-02-01",
            &["placement_follow_up 2026-10-05 → 2027-04-05 / 2027-04-05 closed 2027-01-20 met"],
        );
    }

    #[test]
    fn the_placement_is_reviewed_every_six_months_across_month_ends() {
        // Reviewed Monday 2026-08-31 → six months → 2027-02-28, a Sunday → Monday 2027-03-01.
        let reviewed = [("executed_on", "2026-03-02"), ("last_reviewed_on", "2026-08-31")];
        check_all(
            "sol",
            Some("hvb"),
            &reviewed,
            &NONE,
            "2027-01-29",
            &["placement_review 2026-08-31 → 2027-02-28 / 2027-03-01 open due_soon"],
        );
        // Before any review the cycle runs from the execution; a review before it counts for nothing.
        check_all(
            "lvu_3",
            Some("sis"),
            &[("executed_on", "2026-03-02"), ("last_reviewed_on", "2026-01-10")],
            &NONE,
            "2026-06-01",
            &["placement_review 2026-03-02 → 2026-09-02 / 2026-09-02 open pending"],
        );
        // An emergency custody is not reviewed under 13 §; nothing before the execution.
        check_all(
            "lvu_6",
            None,
            &[("decided_on", "2026-03-02"), ("submitted_to_court_on", "2026-03-03")],
            &NONE,
            "2026-03-04",
            &["lvu_court_submission 2026-03-02 → 2026-03-09 / 2026-03-09 closed 2026-03-03 met"],
        );
        check_all("lvu_2", Some("hvb"), &[("decided_on", "2026-03-02")], &NONE, "2026-03-04", &[]);
    }

    #[test]
    fn a_placement_ended_before_or_after_its_review_day() {
        let executed = ("executed_on", "2026-03-02");
        // Ended before the day: met, nothing more to review.
        check_all(
            "sol",
            Some("hvb"),
            &[executed, ("ended_on", "2026-08-20")],
            &NONE,
            "2026-12-01",
            &["placement_review 2026-03-02 → 2026-09-02 / 2026-09-02 closed 2026-08-20 met"],
        );
        // Ended after it, unreviewed: missed.
        check_all(
            "sol",
            Some("hvb"),
            &[executed, ("ended_on", "2026-09-10")],
            &NONE,
            "2026-12-01",
            &["placement_review 2026-03-02 → 2026-09-02 / 2026-09-02 closed 2026-09-10 missed"],
        );
        // A review recorded after the end starts no new cycle.
        check_all(
            "sol",
            Some("hvb"),
            &[executed, ("ended_on", "2026-08-20"), ("last_reviewed_on", "2026-08-25")],
            &NONE,
            "2026-12-01",
            &["placement_review 2026-03-02 → 2026-09-02 / 2026-09-02 closed 2026-08-20 met"],
        );
    }

    #[test]
    fn a_restriction_is_reviewed_every_three_months_and_may_end_before_the_placement() {
        // Reviewed Friday 2026-05-08 → Saturday 2026-08-08 → Monday 2026-08-10; ended 2026-06-01
        // while the care goes on.
        let columns = [
            ("executed_on", "2026-01-15"),
            ("restriction_decided_on", "2026-02-10"),
            ("restriction_last_reviewed_on", "2026-05-08"),
            ("restriction_ended_on", "2026-06-01"),
        ];
        check_all(
            "lvu_2",
            Some("hvb"),
            &columns,
            &NONE,
            "2026-06-02",
            &[
                "placement_review 2026-01-15 → 2026-07-15 / 2026-07-15 open pending",
                "restriction_review 2026-05-08 → 2026-08-08 / 2026-08-10 closed 2026-06-01 met",
            ],
        );
        // Unreviewed, from the decision; the care's end ends it too.
        check_all(
            "lvu_2",
            Some("hvb"),
            &[("executed_on", "2026-01-15"), ("restriction_decided_on", "2026-02-10"), ("ended_on", "2026-05-20")],
            &NONE,
            "2026-06-02",
            &[
                "placement_review 2026-01-15 → 2026-07-15 / 2026-07-15 closed 2026-05-20 met",
                "restriction_review 2026-02-10 → 2026-05-10 / 2026-05-11 closed 2026-05-20 missed",
                "placement_follow_up 2026-05-20 → 2026-11-20 / 2026-11-20 open pending",
            ],
        );
    }

    #[test]
    fn custody_transfer_after_two_years_in_the_home_then_yearly() {
        // In the home since Tuesday 2025-03-11 (carried over from an earlier row), this row executed
        // later: two years from home_since, 2027-03-11 (a Thursday).
        let home = [("executed_on", "2026-03-02"), ("home_since", "2025-03-11")];
        let placement = "placement_review 2026-03-02 → 2026-09-02 / 2026-09-02 open pending";
        check_all(
            "sol",
            Some("family_home"),
            &home,
            &NONE,
            "2026-06-01",
            &[placement, "custody_transfer_review 2025-03-11 → 2027-03-11 / 2027-03-11 open pending"],
        );
        // Considered a month before (39 days): it does not close the two-year cycle.
        let mut early = home.to_vec();
        early.push(("custody_considered_on", "2027-01-31"));
        check_all(
            "sol",
            Some("family_home"),
            &early,
            &NONE,
            "2026-06-01",
            &[placement, "custody_transfer_review 2025-03-11 → 2027-03-11 / 2027-03-11 open pending"],
        );
        // Within the last 30 days (exactly 30): it does; the next a year after it.
        let mut in_window = home.to_vec();
        in_window.push(("custody_considered_on", "2027-02-09"));
        check_all(
            "sol",
            Some("family_home"),
            &in_window,
            &NONE,
            "2026-06-01",
            &[placement, "custody_transfer_review 2027-02-09 → 2028-02-09 / 2028-02-09 open pending"],
        );
        // Without home_since, from the execution; a jourhem or HVB owes none.
        check_all(
            "lvu_2",
            Some("family_home"),
            &[("executed_on", "2026-03-02")],
            &NONE,
            "2026-06-01",
            &[placement, "custody_transfer_review 2026-03-02 → 2028-03-02 / 2028-03-02 open pending"],
        );
        check_all("sol", Some("hvb"), &home, &NONE, "2026-06-01", &[placement]);
    }

    /// The change from the running cycle the row `before` gave to the one `after` gives.
    fn change(
        basis: &str,
        home: &str,
        kind: Kind,
        before: &[(&str, &str)],
        after: &[(&str, &str)],
    ) -> (CycleChange, Deadline) {
        let pick = |p: &PlacementDates| {
            placement_deadlines_for(p, &NONE, ON).into_iter().find(|x| x.kind == kind).expect("the running cycle")
        };
        let now = row(basis, Some(home), after);
        let running = pick(&row(basis, Some(home), before));
        (cycle_change(&running, &pick(&now), &now), running)
    }

    #[test]
    fn only_a_later_review_closes_the_running_cycle() {
        let executed = ("executed_on", "2026-03-02");
        // A review recorded late: the cycle is missed on the review day, the next starts on it.
        let (got, mut running) =
            change("sol", "hvb", Kind::PlacementReview, &[executed], &[executed, ("last_reviewed_on", "2026-09-20")]);
        assert_eq!(got, CycleChange::Next { closed_on: d("2026-09-20") });
        running.closed_on = Some(d("2026-09-20"));
        assert_eq!(running.status(d("2026-09-21")), Status::Missed);
        // In time: met.
        let (got, _) =
            change("sol", "hvb", Kind::PlacementReview, &[executed], &[executed, ("last_reviewed_on", "2026-08-31")]);
        assert_eq!(got, CycleChange::Next { closed_on: d("2026-08-31") });
        // A review date corrected backwards closes nothing.
        let later = [executed, ("last_reviewed_on", "2026-09-20")];
        let (got, _) =
            change("sol", "hvb", Kind::PlacementReview, &later, &[executed, ("last_reviewed_on", "2026-09-10")]);
        assert_eq!(got, CycleChange::InPlace);
        // A corrected execution closes nothing.
        let (got, _) = change("sol", "hvb", Kind::PlacementReview, &[executed], &[("executed_on", "2026-03-05")]);
        assert_eq!(got, CycleChange::InPlace);
        // Reviewed, then ended: the review closes the cycle, the end the next.
        let (got, _) = change(
            "sol",
            "hvb",
            Kind::PlacementReview,
            &[executed],
            &[executed, ("last_reviewed_on", "2026-08-31"), ("ended_on", "2026-10-01")],
        );
        assert_eq!(got, CycleChange::Next { closed_on: d("2026-08-31") });
        // The custody question considered early leaves the two-year cycle running; in the window
        // it closes it.
        let home = [executed, ("home_since", "2025-03-11")];
        let (got, _) = change(
            "sol",
            "family_home",
            Kind::CustodyTransferReview,
            &home,
            &[executed, ("home_since", "2025-03-11"), ("custody_considered_on", "2027-01-31")],
        );
        assert_eq!(got, CycleChange::InPlace);
        let (got, _) = change(
            "sol",
            "family_home",
            Kind::CustodyTransferReview,
            &home,
            &[executed, ("home_since", "2025-03-11"), ("custody_considered_on", "2027-02-09")],
        );
        assert_eq!(got, CycleChange::Next { closed_on: d("2027-02-09") });
        // A restriction's review.
        let restriction = [executed, ("restriction_decided_on", "2026-04-01")];
        let (got, _) = change(
            "lvu_2",
            "hvb",
            Kind::RestrictionReview,
            &restriction,
            &[executed, ("restriction_decided_on", "2026-04-01"), ("restriction_last_reviewed_on", "2026-06-30")],
        );
        assert_eq!(got, CycleChange::Next { closed_on: d("2026-06-30") });
    }

    #[test]
    fn the_extension_cycle_of_the_care_application() {
        // LVU 8 § andra st.: more time asked for on 2026-12-21, the court's new day 2027-01-15.
        let mut columns = vec![
            ("decided_on", "2026-11-25"),
            ("executed_on", "2026-11-26"),
            ("submitted_to_court_on", "2026-11-27"),
            ("application_extension_requested_on", "2026-12-21"),
            ("application_extended_to", "2027-01-15"),
        ];
        let second = |columns: &[(&str, &str)]| application_second_cycle(&row("lvu_6", None, columns));
        let open = second(&columns).unwrap();
        assert_eq!(
            (open.start_on, open.nominal_due_on, open.due_on, open.closed_on, open.status(d("2027-01-10"))),
            (d("2026-12-21"), d("2027-01-15"), d("2027-01-15"), None, Status::DueSoon)
        );
        // The first cycle is closed by the request, met.
        let first = placement_deadlines_for(&row("lvu_6", None, &columns), &NONE, ON);
        assert_eq!(first[1].closed_on, Some(d("2026-12-21")));
        assert_eq!(first[1].status(d("2027-01-10")), Status::Met);
        columns.push(("care_applied_on", "2027-01-18"));
        assert_eq!(second(&columns).unwrap().status(d("2027-01-20")), Status::Missed);
        // No granted day yet, or an application before the request: no second cycle.
        assert_eq!(second(&columns[..4]), None);
        let mut applied_first = columns[..5].to_vec();
        applied_first.push(("care_applied_on", "2026-12-20"));
        assert_eq!(second(&applied_first), None);
        // The custody ended before the court's day: nothing was owed; after it, a miss.
        let mut ended = columns[..5].to_vec();
        ended.push(("ended_on", "2027-01-10"));
        assert_eq!(second(&ended), None);
        ended[5] = ("ended_on", "2027-01-20");
        assert_eq!(second(&ended).unwrap().closed_on, Some(d("2027-01-20")));
        // Not of a care decision.
        assert_eq!(application_second_cycle(&row("lvu_2", None, &columns)), None);
    }

    /// A placements row of any basis and home, its dates within a year of a decision in
    /// 2020–2030, each present or not (the row rules' order kept: nothing closes before the
    /// decision it must follow).
    fn any_row() -> impl Strategy<Value = (PlacementDates, PlacementContext)> {
        let offset = || proptest::option::of(0i64..=400);
        (
            (0usize..5, proptest::option::of(0usize..8), 0i64..=3650),
            (offset(), offset(), offset(), offset(), offset(), offset()),
            // An end near the LVU clocks' last days (a week, four weeks) as often as not.
            (
                proptest::option::of(prop_oneof![0i64..=400, 5i64..=12, 26i64..=33]),
                offset(),
                offset(),
                offset(),
                offset(),
            ),
        )
            .prop_map(
                |((basis, home, decided), (ex, force, sub, applied, req, ext), (end, fu, fu_end, closed, opened))| {
                    let decided_on = d("2020-01-01") + chrono::Duration::days(decided);
                    let at = |o: Option<i64>| o.map(|o| decided_on + chrono::Duration::days(o));
                    let mut p = PlacementDates::new(Basis::ALL[basis], decided_on);
                    p.home = home.map(|h| Home::ALL[h]);
                    p.executed_on = at(ex);
                    p.legal_force_on = at(force);
                    p.submitted_to_court_on = at(sub);
                    p.care_applied_on = at(applied);
                    p.application_extension_requested_on = at(req);
                    p.application_extended_to = at(ext).map(|e| e + chrono::Duration::days(28));
                    p.ended_on = at(end);
                    p.follow_up_decided_on = at(fu);
                    p.follow_up_ended_on = p.ended_on.and_then(|e| fu_end.map(|o| e + chrono::Duration::days(o)));
                    let context = PlacementContext {
                        investigation_closed_on: at(closed),
                        investigations_opened: at(opened).into_iter().collect(),
                    };
                    (p, context)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_clock_keeps_the_contract((p, context) in any_row(), holiday_rule in any::<bool>()) {
            let deadlines = placement_deadlines_for(&p, &context, RuleOptions { holiday_rule });
            // One deadline a kind, in kind order, each a placement's.
            let kinds: Vec<Kind> = deadlines.iter().map(|x| x.kind).collect();
            let mut sorted = kinds.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(&kinds, &sorted);
            for x in &deadlines {
                prop_assert!(x.kind.is_placement());
                prop_assert!(x.nominal_due_on > x.start_on);
                let extended = matches!(x.due_reason, crate::rules::DueReason::Extended { .. });
                if !extended {
                    prop_assert!(x.due_on >= x.nominal_due_on);
                    prop_assert!((x.due_on - x.nominal_due_on).num_days() <= 5);
                    prop_assert_eq!(holiday_rule || x.due_on == x.nominal_due_on, true);
                    if holiday_rule {
                        prop_assert_eq!(crate::rules::calendar::deadline_moving_day(x.due_on), None);
                    }
                }
                // The ended measure: a one-off LVU clock with its own close unset exists only as
                // a miss closed on `ended_on`.
                let own_close = match x.kind {
                    Kind::LvuCourtSubmission => Some(p.submitted_to_court_on),
                    Kind::LvuCareApplication => {
                        Some([p.care_applied_on, p.application_extension_requested_on].into_iter().flatten().min())
                    }
                    Kind::LvuCareStart => Some(p.executed_on),
                    _ => None,
                };
                if let (Some(None), Some(ended)) = (own_close, p.ended_on) {
                    prop_assert_eq!(x.closed_on, Some(ended));
                    prop_assert!(ended > x.due_on, "{:?}: nothing was owed, ended {}", x, ended);
                    prop_assert_eq!(x.status(ended), Status::Missed);
                }
            }
            // The court clocks only for an emergency custody, care start only for LVU care.
            prop_assert!(kinds.iter().all(|k| !matches!(k, Kind::LvuCourtSubmission | Kind::LvuCareApplication) || p.basis.is_emergency_custody()));
            prop_assert!(kinds.iter().all(|k| *k != Kind::LvuCareStart || p.basis.is_lvu_care()));
            // An emergency custody not ended always owes its submission.
            if p.basis.is_emergency_custody() && p.ended_on.is_none() {
                prop_assert!(kinds.contains(&Kind::LvuCourtSubmission));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The facts a poll looks up are exactly those the clocks read: without the facts
        /// [`ContextNeeds`] leaves out the deadlines are the same, and a fact it names can change
        /// them (an emergency home's limit starts from its case's close; a follow-up ends on a new
        /// investigation of the child).
        #[test]
        fn a_placement_reads_only_the_facts_it_needs((p, context) in any_row(), holiday_rule in any::<bool>()) {
            let options = RuleOptions { holiday_rule };
            let needs = p.context_needs();
            let needed = PlacementContext {
                investigation_closed_on: context.investigation_closed_on.filter(|_| needs.case_close),
                investigations_opened: if needs.child_investigations { context.investigations_opened.clone() } else { Vec::new() },
            };
            prop_assert_eq!(placement_deadlines_for(&p, &context, options), placement_deadlines_for(&p, &needed, options));
            let kinds = |context: &PlacementContext| -> Vec<Kind> {
                placement_deadlines_for(&p, context, options).iter().map(|x| x.kind).collect()
            };
            // A fact a clock reads is not left out: the rows below read one.
            if p.home == Some(Home::EmergencyHome) && p.ended_on.is_none() {
                let closed = PlacementContext { investigation_closed_on: Some(p.decided_on), ..NONE };
                prop_assert!(kinds(&closed).contains(&Kind::EmergencyHomeLimit));
                prop_assert!(!kinds(&NONE).contains(&Kind::EmergencyHomeLimit));
            }
            if let Some(start_on) = follow_up_start(&p).filter(|_| p.follow_up_ended_on.is_none()) {
                let opened = PlacementContext { investigations_opened: vec![start_on], ..NONE };
                let follow_up = |context: &PlacementContext| {
                    placement_deadlines_for(&p, context, options).into_iter().find(|x| x.kind == Kind::PlacementFollowUp)
                };
                prop_assert_eq!(follow_up(&opened).and_then(|x| x.closed_on), Some(start_on));
                prop_assert_eq!(follow_up(&NONE).and_then(|x| x.closed_on), None);
            }
        }
    }

    /// A placement row of LVU care or a SoL placement with a restriction, reviews and
    /// considerations each present or not, within three years of its execution.
    fn any_reviewed_row() -> impl Strategy<Value = PlacementDates> {
        let offset = || proptest::option::of(0i64..=1100);
        (0usize..5, any::<bool>(), 0i64..=3650, offset(), offset(), (offset(), offset(), offset(), offset(), offset()))
            .prop_map(|(basis, family, decided, home_back, reviewed, (restriction, r_rev, r_end, considered, end))| {
                let executed_on = d("2020-01-01") + chrono::Duration::days(decided);
                let at = |o: Option<i64>| o.map(|o| executed_on + chrono::Duration::days(o));
                let mut p = PlacementDates::new(Basis::ALL[basis], executed_on);
                p.executed_on = Some(executed_on);
                p.home = Some(if family { Home::FamilyHome } else { Home::Hvb });
                p.home_since = home_back.map(|o| executed_on - chrono::Duration::days(o));
                p.last_reviewed_on = at(reviewed);
                p.restriction_decided_on = at(restriction);
                p.restriction_last_reviewed_on =
                    p.restriction_decided_on.and_then(|r| r_rev.map(|o| r + chrono::Duration::days(o)));
                p.restriction_ended_on =
                    p.restriction_decided_on.and_then(|r| r_end.map(|o| r + chrono::Duration::days(o)));
                p.custody_considered_on = at(considered);
                p.ended_on = at(end);
                p
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn recurring_cycles_keep_the_contract(p in any_reviewed_row(), holiday_rule in any::<bool>()) {
            let options = RuleOptions { holiday_rule };
            let deadlines = placement_deadlines_for(&p, &NONE, options);
            for x in deadlines.iter().filter(|x| x.kind.is_recurring()) {
                // The running cycle: never before the measure's start, closed only by an end.
                let ended = match x.kind {
                    Kind::RestrictionReview => [p.restriction_ended_on, p.ended_on].into_iter().flatten().min(),
                    _ => p.ended_on,
                };
                prop_assert_eq!(x.closed_on, ended);
                prop_assert!(x.nominal_due_on > x.start_on);
                // The same row without its latest review gives the cycle this one follows, or the
                // same cycle (in place).
                let mut before = p;
                match x.kind {
                    Kind::PlacementReview => before.last_reviewed_on = None,
                    Kind::RestrictionReview => before.restriction_last_reviewed_on = None,
                    _ => before.custody_considered_on = None,
                }
                let running = placement_deadlines_for(&before, &NONE, options).into_iter().find(|y| y.kind == x.kind).unwrap();
                match cycle_change(&running, x, &p) {
                    CycleChange::Next { closed_on } => {
                        prop_assert_eq!(closed_on, x.start_on);
                        prop_assert!(x.start_on > running.start_on);
                    }
                    CycleChange::InPlace => prop_assert_eq!(running.start_on, x.start_on),
                }
            }
            let recurring: Vec<Kind> = deadlines.iter().map(|x| x.kind).filter(|k| k.is_recurring()).collect();
            prop_assert_eq!(recurring.contains(&Kind::PlacementReview), !p.basis.is_emergency_custody());
            prop_assert_eq!(recurring.contains(&Kind::RestrictionReview), p.restriction_decided_on.is_some());
            prop_assert_eq!(recurring.contains(&Kind::CustodyTransferReview), p.home == Some(Home::FamilyHome));
        }
    }

    #[test]
    fn without_the_holiday_rule_the_nominal_day_is_the_last() {
        let p = row("lvu_6", None, &[("decided_on", "2026-11-21")]);
        let got = placement_deadlines_for(&p, &NONE, OFF);
        assert_eq!((got[0].nominal_due_on, got[0].due_on), (d("2026-11-28"), d("2026-11-28")));
        assert_eq!(got[0].status(d("2026-11-29")), Status::Overdue);
    }
}
