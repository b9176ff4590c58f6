//! The statutory deadlines of a child-welfare case (register contract §2): when each clock of
//! [`super::clock::CLOCKS`] starts and what closes it, for one row and the investigations of the
//! same child's other cases.
//!
//! A deadline has two last days: the nominal one from plain calendar arithmetic, and the legal one
//! after the holiday rule of lag (1930:173) 2 § or a decided extension. Reminders count from the
//! nominal day, or from a decided extension's day (the nämnd fixed a new limit), and "overdue" from
//! the legal day, because no authority has said whether inspectors apply the holiday rule to these
//! limits.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::calendar::{next_deadline_day, shift_days_saturating, DayKind};
use super::clock::Clock;

/// Which statutory clock a deadline belongs to; its properties are its [`Clock`] in
/// [`super::clock::CLOCKS`], its words in `templates/clocks.{sv,en}.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Skyddsbedömning: "genast", the same day the report came in, at the latest the next day
    /// (20 kap. 1 § socialtjänstlagen (2025:400)).
    Protection,
    /// Förhandsbedömning: within 14 days of the report, longer only for synnerliga skäl
    /// (20 kap. 2 § socialtjänstlagen (2025:400)).
    Assessment,
    /// Utredning: completed within four months, extended only for särskilda skäl
    /// (20 kap. 3 § socialtjänstlagen (2025:400)).
    Investigation,
    /// Uppföljning: a follow-up of the child's situation after a closed investigation ends at
    /// the latest six months after the investigation closed, or earlier when a new investigation
    /// of the child opens (23 kap. 1 §, 5 § socialtjänstlagen (2025:400)).
    FollowUp,
    /// Information to the person who made the report, on request: within a week of the
    /// assessment decision, or "genast" for a later request (19 kap. 6 § socialtjänstlagen
    /// (2025:400), in force 15 January 2026).
    ReporterInformation,
    /// Underställning: an emergency custody decided under LVU 6 § (or a 6 a § decision) must have
    /// come in to förvaltningsrätten within a week of the decision, or the custody ends (LVU 7 §).
    LvuCourtSubmission,
    /// The application for care after an emergency custody: within four weeks of its execution,
    /// unless more time was asked for in time, or the custody ends (LVU 8 §, 9 §).
    LvuCareApplication,
    /// Care decided under LVU 2 § or 3 § must begin within four weeks of the decision's legal
    /// force, or the decision lapses (LVU 5 §).
    LvuCareStart,
    /// Övervägande/omprövning: every placement or LVU care is reviewed at least every six months,
    /// counted from its start and then from each review (LVU 13 §; SoL 22 kap. 13 §). Recurring.
    PlacementReview,
    /// A restriction of contact or a secret address (LVU 14 § andra st.) is reviewed at least
    /// every three months. Recurring.
    RestrictionReview,
    /// A child in one family home for two years: whether to ask for a transfer of custody is
    /// considered, then every year (SoL 22 kap. 14 §; LVU 13 c §). Recurring.
    CustodyTransferReview,
    /// A child may stay in a jourhem at most two months after the investigation closed, longer
    /// only for särskilda skäl (22 kap. 4 § socialtjänstlagen (2025:400)).
    EmergencyHomeLimit,
    /// The follow-up after a placement ended: at the latest six months after its start (23 kap.
    /// 2 §, 5 § socialtjänstlagen (2025:400); compulsory after LVU care, LVU 21 b–c §§).
    PlacementFollowUp,
}

impl Kind {
    /// Every kind, in the order deadlines are listed (the order of [`super::clock::CLOCKS`]).
    pub const ALL: [Kind; 13] = [
        Kind::Protection,
        Kind::Assessment,
        Kind::Investigation,
        Kind::FollowUp,
        Kind::ReporterInformation,
        Kind::LvuCourtSubmission,
        Kind::LvuCareApplication,
        Kind::LvuCareStart,
        Kind::PlacementReview,
        Kind::RestrictionReview,
        Kind::CustodyTransferReview,
        Kind::EmergencyHomeLimit,
        Kind::PlacementFollowUp,
    ];

    /// The kinds of the cases view (contract §1), in [`Kind::ALL`] order.
    pub fn of_cases() -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(|kind| !kind.is_placement())
    }

    /// The kinds of the placements view (contract §1b), in [`Kind::ALL`] order.
    pub fn of_placements() -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(|kind| kind.is_placement())
    }

    /// Whether the clock is one of a placement or LVU decision (contract §1b): its deadlines'
    /// reference is the `placement_ref`.
    pub fn is_placement(self) -> bool {
        self.clock().of_placement
    }

    /// Whether the clock recurs (contract §2 "Recurring clocks"): the register holds only its
    /// latest review, and each review closes the running cycle and starts the next.
    pub fn is_recurring(self) -> bool {
        self.clock().recurring
    }

    /// The stable machine name used in configuration, JSON, keys and metrics.
    pub fn as_str(self) -> &'static str {
        self.clock().key
    }

    /// How many days before its last day a deadline counts as due soon.
    pub fn reminder_window_days(self) -> i64 {
        self.clock().reminder_window_days
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| unknown_value("kind", text, Kind::ALL.map(Kind::as_str)))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The dates of one register row that the deadlines depend on (register contract §1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaseDates {
    /// The report (anmälan) came in.
    pub received_on: Option<NaiveDate>,
    /// The protection assessment (skyddsbedömning) was made.
    pub protection_assessed_on: Option<NaiveDate>,
    /// The preliminary assessment (förhandsbedömning) was decided.
    pub assessment_decided_on: Option<NaiveDate>,
    /// A longer assessment time decided for synnerliga skäl: the new last day.
    pub assessment_extended_to: Option<NaiveDate>,
    /// The decision to open an investigation (beslut att inleda utredning).
    pub investigation_opened_on: Option<NaiveDate>,
    /// A decided extension of the investigation for särskilda skäl: the new last day.
    pub investigation_extended_to: Option<NaiveDate>,
    /// The investigation was closed by a decision.
    pub investigation_closed_on: Option<NaiveDate>,
    /// The decision to follow up the child's situation after the investigation closed
    /// (uppföljning); an optional column of the view.
    pub follow_up_decided_on: Option<NaiveDate>,
    /// The follow-up ended; an optional column of the view.
    pub follow_up_ended_on: Option<NaiveDate>,
    /// The reporter asked to be told whether an investigation was opened (SoL 19 kap. 6 §);
    /// an optional column of the view.
    pub reporter_info_requested_on: Option<NaiveDate>,
    /// The reporter was informed, or informing was judged unsuitable; an optional column.
    pub reporter_informed_on: Option<NaiveDate>,
}

/// How the rules are applied; the edge fills it from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleOptions {
    /// Whether lag (1930:173) 2 § moves a last day off weekends, holidays and the eves.
    pub holiday_rule: bool,
}

impl Default for RuleOptions {
    fn default() -> Self {
        RuleOptions { holiday_rule: true }
    }
}

/// Why the legal last day is what it is.
///
/// Serialised (as `{"reason": "moved", "skipped": [["2026-12-24", "christmas_eve"], …]}`) so that a
/// notice in the outbox keeps the days the holiday rule passed over and its mail can name them
/// without recomputing the calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DueReason {
    /// The legal last day is the nominal one.
    Nominal,
    /// Protection: "genast", at the latest the day after the report.
    NextDay,
    /// The holiday rule moved the nominal day past these days.
    Moved {
        /// Every day passed over, with why it moves a deadline.
        skipped: Vec<(NaiveDate, DayKind)>,
    },
    /// A decided extension set the last day.
    Extended {
        /// The decided last day.
        to: NaiveDate,
    },
}

/// One statutory deadline of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// Which clock this is.
    pub kind: Kind,
    /// The day the clock started.
    pub start_on: NaiveDate,
    /// The last day by plain calendar arithmetic; reminders count from it.
    pub nominal_due_on: NaiveDate,
    /// The legal last day; "overdue" counts from it.
    pub due_on: NaiveDate,
    /// The day the clock was stopped, if it was.
    pub closed_on: Option<NaiveDate>,
    /// Why `due_on` is what it is.
    pub due_reason: DueReason,
}

impl Deadline {
    /// Days from `today` to the legal last day (negative when overdue), or `None` once closed.
    pub fn days_left(&self, today: NaiveDate) -> Option<i64> {
        match self.closed_on {
            Some(_) => None,
            None => Some((self.due_on - today).num_days()),
        }
    }

    /// The status on `today` (register contract §2).
    ///
    /// A closed deadline is met or missed whatever `today` is. An open one is due soon from the
    /// start of its reminder window, counted back from the nominal day, until its legal last day;
    /// that includes days after a nominal day that the holiday rule or an extension moved.
    pub fn status(&self, today: NaiveDate) -> Status {
        if let Some(closed_on) = self.closed_on {
            return if closed_on <= self.due_on { Status::Met } else { Status::Missed };
        }
        let days_left = (self.due_on - today).num_days();
        let days_to_reminder_base = (self.reminder_base() - today).num_days();
        if days_left < 0 {
            Status::Overdue
        } else if days_left == 0 {
            Status::DueToday
        } else if days_to_reminder_base <= self.kind.reminder_window_days() {
            Status::DueSoon
        } else {
            Status::Pending
        }
    }

    /// The day reminders count back from: the nominal last day, or a decided extension's day.
    ///
    /// A holiday move keeps reminders on the nominal day (they come early enough whether or not
    /// an inspector applies the holiday rule); a decided extension is a new limit the nämnd set
    /// itself, so an investigation extended by two months is reminded of before its new day,
    /// not before the old one (register contract §2).
    pub fn reminder_base(&self) -> NaiveDate {
        match self.due_reason {
            DueReason::Extended { to } => to,
            _ => self.nominal_due_on,
        }
    }

    /// Whether the clock has been stopped.
    pub fn is_closed(&self) -> bool {
        self.closed_on.is_some()
    }
}

/// Where a deadline stands on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Closed on or before the legal last day.
    Met,
    /// Closed after the legal last day.
    Missed,
    /// Open, and the legal last day has passed.
    Overdue,
    /// Open, and today is the legal last day.
    DueToday,
    /// Open, and inside the reminder window.
    DueSoon,
    /// Open, and not yet inside the reminder window.
    Pending,
}

impl Status {
    /// Every status, most settled first.
    pub const ALL: [Status; 6] =
        [Status::Met, Status::Missed, Status::Overdue, Status::DueToday, Status::DueSoon, Status::Pending];

    /// The stable machine name used on the command line, in JSON and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Missed => "missed",
            Status::Overdue => "overdue",
            Status::DueToday => "due_today",
            Status::DueSoon => "due_soon",
            Status::Pending => "pending",
        }
    }

    /// Whether the deadline's clock has stopped.
    pub fn is_closed(self) -> bool {
        matches!(self, Status::Met | Status::Missed)
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| unknown_value("status", text, Status::ALL.map(Status::as_str)))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An investigation of another case of the same child (`child_key`), as the rules across one
/// child's cases need it: its opening and, when closed, its close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OtherInvestigation {
    /// The decision to open it.
    pub opened_on: NaiveDate,
    /// The decision that closed it, if any.
    pub closed_on: Option<NaiveDate>,
}

impl OtherInvestigation {
    /// Whether it was open when a report came in on `received_on`: opened strictly before, and
    /// not closed before (register contract §1).
    fn open_on(&self, received_on: NaiveDate) -> bool {
        self.opened_on < received_on && self.closed_on.is_none_or(|closed| closed >= received_on)
    }
}

/// The first day SoL 19 kap. 6 § (the reporter's right to be informed) applies to a request.
pub const REPORTER_INFORMATION_IN_FORCE: NaiveDate = match NaiveDate::from_ymd_opt(2026, 1, 15) {
    Some(day) => day,
    None => panic!("a valid day"),
};

/// The deadlines of one case, in [`Kind`] order, exactly as the table in register contract §2.
///
/// `others` are the investigations of the child's other cases (rows with the same `child_key`;
/// empty when the view has no `child_key` or the child has no other case). They remove the
/// assessment clock of a report received while one of them was open, and end a follow-up when
/// one opens on or after its start.
pub fn deadlines_for(dates: &CaseDates, others: &[OtherInvestigation], options: RuleOptions) -> Vec<Deadline> {
    let mut deadlines = Vec::with_capacity(Kind::ALL.len());
    let during_investigation = report_during_open_investigation(dates, others);
    // The preliminary assessment's decision: its own, or the opening of an investigation on or
    // after the report (the decision the assessment leads to; one opened before is not).
    let assessment_decision = dates.received_on.and_then(|received_on| {
        dates.assessment_decided_on.or(dates.investigation_opened_on.filter(|opened| *opened >= received_on))
    });
    if let Some(received_on) = dates.received_on {
        deadlines.push(Deadline {
            kind: Kind::Protection,
            start_on: received_on,
            nominal_due_on: received_on,
            due_on: shift_days_saturating(received_on, 1),
            closed_on: dates.protection_assessed_on,
            due_reason: DueReason::NextDay,
        });
        // A report about a child already under investigation (in this case or another of the
        // child's) needs no preliminary assessment: the investigation takes the new information
        // in. A report on the day an investigation opens is an ordinary one.
        if !during_investigation {
            deadlines.push(counted(
                Kind::Assessment.clock(),
                received_on,
                dates.assessment_extended_to,
                assessment_decision,
                options,
            ));
        }
    }
    if let Some(opened_on) = dates.investigation_opened_on {
        deadlines.push(counted(
            Kind::Investigation.clock(),
            opened_on,
            dates.investigation_extended_to,
            dates.investigation_closed_on,
            options,
        ));
    }
    // The follow-up runs from the investigation's close, whenever the follow-up itself was
    // decided, and ends at its own end or when an investigation of the child opens on or after
    // its start day in another case ("när nämnden dessförinnan inleder en utredning"), whichever
    // is first. No extension exists.
    if let (Some(_), Some(closed_on)) = (dates.follow_up_decided_on, dates.investigation_closed_on) {
        let new_investigation = others.iter().map(|o| o.opened_on).filter(|opened| *opened >= closed_on).min();
        let ended = [dates.follow_up_ended_on, new_investigation].into_iter().flatten().min();
        deadlines.push(counted(Kind::FollowUp.clock(), closed_on, None, ended, options));
    }
    if let Some(deadline) = reporter_information(dates, during_investigation, assessment_decision, options) {
        deadlines.push(deadline);
    }
    deadlines
}

/// The reporter's clock (SoL 19 kap. 6 § andra st.): a request made by the week after the
/// decision (or before any) is answered within a week of the decision; a later request, or one
/// about a child already under investigation, "genast" — like the protection clock, at the latest
/// the next day. No clock while the decision it waits for is not made, nor for a request made
/// before the paragraph came into force.
fn reporter_information(
    dates: &CaseDates,
    during_investigation: bool,
    decision: Option<NaiveDate>,
    options: RuleOptions,
) -> Option<Deadline> {
    let requested_on = dates.reporter_info_requested_on.filter(|day| *day >= REPORTER_INFORMATION_IN_FORCE)?;
    dates.received_on?;
    let clock = Kind::ReporterInformation.clock();
    let at_once = |start_on: NaiveDate| Deadline {
        kind: Kind::ReporterInformation,
        start_on,
        nominal_due_on: start_on,
        due_on: shift_days_saturating(start_on, 1),
        closed_on: dates.reporter_informed_on,
        due_reason: DueReason::NextDay,
    };
    if during_investigation {
        return Some(at_once(requested_on));
    }
    let decided_on = decision?;
    if requested_on <= clock.period.last_day_from(decided_on) {
        Some(counted(clock, decided_on, None, dates.reporter_informed_on, options))
    } else {
        Some(at_once(requested_on))
    }
}

/// A deadline of a counted clock started on `start_on`: its period from the table, the decided
/// extension when there is one, else the holiday rule when the clock and the options apply it.
pub(super) fn counted(
    clock: &Clock,
    start_on: NaiveDate,
    extended_to: Option<NaiveDate>,
    closed_on: Option<NaiveDate>,
    options: RuleOptions,
) -> Deadline {
    let nominal = clock.period.last_day_from(start_on);
    let (due_on, due_reason) = legal_due(nominal, extended_to, clock.holiday_rule && options.holiday_rule);
    Deadline { kind: clock.kind, start_on, nominal_due_on: nominal, due_on, closed_on, due_reason }
}

/// Whether the assessment clock is absent because the report came in while an investigation of
/// the child was open, the row's own or another case's (register contract §1); `explain` says so.
pub fn report_during_open_investigation(dates: &CaseDates, others: &[OtherInvestigation]) -> bool {
    let Some(received_on) = dates.received_on else { return false };
    let own = dates
        .investigation_opened_on
        .map(|opened_on| OtherInvestigation { opened_on, closed_on: dates.investigation_closed_on });
    own.iter().chain(others).any(|investigation| investigation.open_on(received_on))
}

/// The legal last day for a nominal one: a decided extension wins as decided, because the
/// nämnd fixes that day itself; otherwise the holiday rule applies when switched on.
pub(super) fn legal_due(
    nominal: NaiveDate,
    extended_to: Option<NaiveDate>,
    holiday_rule: bool,
) -> (NaiveDate, DueReason) {
    if let Some(to) = extended_to {
        return (to, DueReason::Extended { to });
    }
    if !holiday_rule {
        return (nominal, DueReason::Nominal);
    }
    let (due_on, skipped) = next_deadline_day(nominal);
    if skipped.is_empty() {
        (due_on, DueReason::Nominal)
    } else {
        (due_on, DueReason::Moved { skipped })
    }
}

/// The message for a machine name that is not one of `allowed`.
pub(crate) fn unknown_value<const N: usize>(what: &str, text: &str, allowed: [&str; N]) -> String {
    format!("unknown {what} {text:?}; expected one of: {}", allowed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::Datelike;
    use proptest::prelude::*;
    use serde::de::value::{Error as ValueError, StrDeserializer};
    use serde::de::IntoDeserializer;

    use super::super::calendar::{add_months, deadline_moving_day, LAST_YEAR};

    const ON: RuleOptions = RuleOptions { holiday_rule: true };
    const OFF: RuleOptions = RuleOptions { holiday_rule: false };

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    /// A register row from `column = date` pairs, named as in register contract §1.
    fn row(columns: &[(&str, &str)]) -> CaseDates {
        let mut dates = CaseDates::default();
        for &(column, value) in columns {
            let field = match column {
                "received_on" => &mut dates.received_on,
                "protection_assessed_on" => &mut dates.protection_assessed_on,
                "assessment_decided_on" => &mut dates.assessment_decided_on,
                "assessment_extended_to" => &mut dates.assessment_extended_to,
                "investigation_opened_on" => &mut dates.investigation_opened_on,
                "investigation_extended_to" => &mut dates.investigation_extended_to,
                "investigation_closed_on" => &mut dates.investigation_closed_on,
                "follow_up_decided_on" => &mut dates.follow_up_decided_on,
                "follow_up_ended_on" => &mut dates.follow_up_ended_on,
                "reporter_info_requested_on" => &mut dates.reporter_info_requested_on,
                "reporter_informed_on" => &mut dates.reporter_informed_on,
                other => panic!("no column {other}"),
            };
            *field = Some(d(value));
        }
        dates
    }

    /// One line per deadline, for comparing whole results at a glance.
    fn render(deadline: &Deadline) -> String {
        let reason = match &deadline.due_reason {
            DueReason::Nominal => "nominal".to_string(),
            DueReason::NextDay => "next day".to_string(),
            DueReason::Moved { skipped } => {
                let days: Vec<String> =
                    skipped.iter().map(|(day, kind)| format!("{} {}", day.format("%m-%d"), kind.name_sv())).collect();
                format!("moved over {}", days.join(", "))
            }
            DueReason::Extended { to } => format!("extended to {to}"),
        };
        let closed = match deadline.closed_on {
            Some(day) => format!("closed {day}"),
            None => "open".to_string(),
        };
        format!(
            "{} from {}: nominal {}, due {} ({reason}), {closed}",
            deadline.kind, deadline.start_on, deadline.nominal_due_on, deadline.due_on
        )
    }

    fn find(dates: &CaseDates, options: RuleOptions, kind: Kind) -> Option<Deadline> {
        deadlines_for(dates, &[], options).into_iter().find(|deadline| deadline.kind == kind)
    }

    /// A report while the row's own investigation is open gets a protection clock and no
    /// assessment clock; on the opening day it is an ordinary report; after the investigation
    /// closed, its assessment is open until decided.
    #[test]
    fn a_report_during_an_open_investigation_needs_no_assessment() {
        let kinds = |pairs: &[(&str, &str)]| -> Vec<String> {
            deadlines_for(&row(pairs), &[], ON).iter().map(render).collect()
        };
        assert_eq!(
            kinds(&[("investigation_opened_on", "2026-03-02"), ("received_on", "2026-04-10")]),
            [
                "protection from 2026-04-10: nominal 2026-04-10, due 2026-04-11 (next day), open",
                "investigation from 2026-03-02: nominal 2026-07-02, due 2026-07-02 (nominal), open",
            ]
        );
        // The investigation closes on the report's day: still open when the report came in.
        assert_eq!(
            kinds(&[
                ("investigation_opened_on", "2026-03-02"),
                ("investigation_closed_on", "2026-04-10"),
                ("received_on", "2026-04-10"),
            ])
            .len(),
            2
        );
        // The same day: an ordinary report, its assessment closed by the opening.
        let same_day = kinds(&[("received_on", "2026-03-02"), ("investigation_opened_on", "2026-03-02")]);
        assert_eq!(
            same_day[1],
            "assessment from 2026-03-02: nominal 2026-03-16, due 2026-03-16 (nominal), closed 2026-03-02"
        );
        // After the investigation closed: a new report with an open assessment.
        let after = kinds(&[
            ("investigation_opened_on", "2026-01-05"),
            ("investigation_closed_on", "2026-03-20"),
            ("received_on", "2026-04-10"),
        ]);
        assert_eq!(after[1], "assessment from 2026-04-10: nominal 2026-04-24, due 2026-04-24 (nominal), open");
        assert_eq!(after.len(), 3);
    }

    /// The follow-up clock (SoL 23 kap. 5 §): the investigation's close + 6 months (lag 1930:173
    /// 1 §: the same day number, else the month's last day), moved by the holiday rule, closed by
    /// its end.
    #[test]
    fn follow_up_ends_six_months_after_the_investigation_closed() {
        fn check(closed: &str, extra: &[(&str, &str)], options: RuleOptions, expected: &str) {
            let mut pairs = vec![
                ("investigation_opened_on", "2020-01-01"),
                ("investigation_closed_on", closed),
                ("follow_up_decided_on", closed),
            ];
            pairs.extend_from_slice(extra);
            let actual = find(&row(&pairs), options, Kind::FollowUp).map_or_else(|| "none".to_string(), |x| render(&x));
            assert_eq!(actual, expected, "closed {closed} {extra:?}");
        }
        // Valborgsmässoafton is no holiday: Friday 30 April stays.
        check("2026-10-31", &[], ON, "follow_up from 2026-10-31: nominal 2027-04-30, due 2027-04-30 (nominal), open");
        check("2027-03-31", &[], ON, "follow_up from 2027-03-31: nominal 2027-09-30, due 2027-09-30 (nominal), open");
        // No 31 February: the month's last day, a Sunday, moves to Monday 1 March.
        check(
            "2026-08-31",
            &[],
            ON,
            "follow_up from 2026-08-31: nominal 2027-02-28, due 2027-03-01 (moved over 02-28 söndag), open",
        );
        check("2026-08-31", &[], OFF, "follow_up from 2026-08-31: nominal 2027-02-28, due 2027-02-28 (nominal), open");
        // A leap year's 29th.
        check("2027-08-31", &[], OFF, "follow_up from 2027-08-31: nominal 2028-02-29, due 2028-02-29 (nominal), open");
        // Julafton, juldagen, annandag jul and a Sunday move 24 December 2026 to Monday 28 December.
        check("2027-06-30", &[], ON, "follow_up from 2027-06-30: nominal 2027-12-30, due 2027-12-30 (nominal), open");
        check("2026-06-30", &[], ON, "follow_up from 2026-06-30: nominal 2026-12-30, due 2026-12-30 (nominal), open");
        check(
            "2026-06-24",
            &[],
            ON,
            "follow_up from 2026-06-24: nominal 2026-12-24, due 2026-12-28 (moved over 12-24 julafton, 12-25 juldagen, 12-26 annandag jul, 12-27 söndag), open",
        );
        // The follow-up's end closes it; decided later than the close, it still counts from the close.
        check(
            "2027-03-31",
            &[("follow_up_ended_on", "2027-05-20")],
            ON,
            "follow_up from 2027-03-31: nominal 2027-09-30, due 2027-09-30 (nominal), closed 2027-05-20",
        );
        let late_decision = row(&[
            ("investigation_opened_on", "2027-01-10"),
            ("investigation_closed_on", "2027-03-31"),
            ("follow_up_decided_on", "2027-04-12"),
        ]);
        assert_eq!(find(&late_decision, ON, Kind::FollowUp).map(|x| x.due_on), Some(d("2027-09-30")));
        // No follow-up without a decision, or without a closed investigation.
        let no_decision = row(&[("investigation_opened_on", "2027-01-10"), ("investigation_closed_on", "2027-03-31")]);
        assert_eq!(find(&no_decision, ON, Kind::FollowUp), None);
        let still_open = row(&[("investigation_opened_on", "2027-01-10"), ("follow_up_decided_on", "2027-03-31")]);
        assert_eq!(find(&still_open, ON, Kind::FollowUp), None);
    }

    #[test]
    fn deadlines_follow_the_contract_table() {
        fn check(dates: CaseDates, options: RuleOptions, kind: Kind, expected: &str) {
            let actual = find(&dates, options, kind).map_or_else(|| "none".to_string(), |x| render(&x));
            assert_eq!(actual, expected, "{dates:?}");
        }
        // Protection: "genast", at the latest the next day, weekends included.
        check(
            row(&[("received_on", "2025-03-03")]),
            ON,
            Kind::Protection,
            "protection from 2025-03-03: nominal 2025-03-03, due 2025-03-04 (next day), open",
        );
        check(
            row(&[("received_on", "2026-03-07")]),
            ON,
            Kind::Protection,
            "protection from 2026-03-07: nominal 2026-03-07, due 2026-03-08 (next day), open",
        );
        check(
            row(&[("received_on", "2026-12-23")]),
            ON,
            Kind::Protection,
            "protection from 2026-12-23: nominal 2026-12-23, due 2026-12-24 (next day), open",
        );
        check(
            row(&[("received_on", "2026-03-07"), ("protection_assessed_on", "2026-03-07")]),
            ON,
            Kind::Protection,
            "protection from 2026-03-07: nominal 2026-03-07, due 2026-03-08 (next day), closed 2026-03-07",
        );
        check(row(&[("investigation_opened_on", "2026-03-02")]), ON, Kind::Protection, "none");
        // Assessment: 14 days, the receipt day being day 0.
        check(
            row(&[("received_on", "2025-03-03")]),
            ON,
            Kind::Assessment,
            "assessment from 2025-03-03: nominal 2025-03-17, due 2025-03-17 (nominal), open",
        );
        check(row(&[("received_on", "2026-12-10")]), ON, Kind::Assessment, "assessment from 2026-12-10: nominal 2026-12-24, due 2026-12-28 (moved over 12-24 julafton, 12-25 juldagen, 12-26 annandag jul, 12-27 söndag), open");
        check(
            row(&[("received_on", "2026-12-10")]),
            OFF,
            Kind::Assessment,
            "assessment from 2026-12-10: nominal 2026-12-24, due 2026-12-24 (nominal), open",
        );
        check(row(&[("received_on", "2026-06-05")]), ON, Kind::Assessment, "assessment from 2026-06-05: nominal 2026-06-19, due 2026-06-22 (moved over 06-19 midsommarafton, 06-20 midsommardagen, 06-21 söndag), open");
        check(row(&[("received_on", "2026-03-20")]), ON, Kind::Assessment, "assessment from 2026-03-20: nominal 2026-04-03, due 2026-04-07 (moved over 04-03 långfredagen, 04-04 lördag, 04-05 påskdagen, 04-06 annandag påsk), open");
        check(
            row(&[("received_on", "2026-03-20"), ("assessment_extended_to", "2026-04-30")]),
            ON,
            Kind::Assessment,
            "assessment from 2026-03-20: nominal 2026-04-03, due 2026-04-30 (extended to 2026-04-30), open",
        );
        // An extension is taken as decided, even on a Saturday.
        check(
            row(&[("received_on", "2026-03-20"), ("assessment_extended_to", "2026-05-02")]),
            ON,
            Kind::Assessment,
            "assessment from 2026-03-20: nominal 2026-04-03, due 2026-05-02 (extended to 2026-05-02), open",
        );
        check(
            row(&[("received_on", "2025-03-03"), ("assessment_decided_on", "2025-03-14")]),
            ON,
            Kind::Assessment,
            "assessment from 2025-03-03: nominal 2025-03-17, due 2025-03-17 (nominal), closed 2025-03-14",
        );
        check(
            row(&[("received_on", "2025-03-03"), ("investigation_opened_on", "2025-03-10")]),
            ON,
            Kind::Assessment,
            "assessment from 2025-03-03: nominal 2025-03-17, due 2025-03-17 (nominal), closed 2025-03-10",
        );
        check(
            row(&[
                ("received_on", "2025-03-03"),
                ("assessment_decided_on", "2025-03-12"),
                ("investigation_opened_on", "2025-03-14"),
            ]),
            ON,
            Kind::Assessment,
            "assessment from 2025-03-03: nominal 2025-03-17, due 2025-03-17 (nominal), closed 2025-03-12",
        );
        check(row(&[("investigation_opened_on", "2026-03-02")]), ON, Kind::Assessment, "none");
        // Investigation: four months by day number, else the month's last day.
        check(
            row(&[("investigation_opened_on", "2026-10-31")]),
            ON,
            Kind::Investigation,
            "investigation from 2026-10-31: nominal 2027-02-28, due 2027-03-01 (moved over 02-28 söndag), open",
        );
        check(
            row(&[("investigation_opened_on", "2026-10-31")]),
            OFF,
            Kind::Investigation,
            "investigation from 2026-10-31: nominal 2027-02-28, due 2027-02-28 (nominal), open",
        );
        check(
            row(&[("investigation_opened_on", "2023-10-31")]),
            ON,
            Kind::Investigation,
            "investigation from 2023-10-31: nominal 2024-02-29, due 2024-02-29 (nominal), open",
        );
        check(
            row(&[("investigation_opened_on", "2025-11-30")]),
            ON,
            Kind::Investigation,
            "investigation from 2025-11-30: nominal 2026-03-30, due 2026-03-30 (nominal), open",
        );
        check(
            row(&[("investigation_opened_on", "2025-11-30"), ("investigation_extended_to", "2026-05-29")]),
            ON,
            Kind::Investigation,
            "investigation from 2025-11-30: nominal 2026-03-30, due 2026-05-29 (extended to 2026-05-29), open",
        );
        check(
            row(&[("investigation_opened_on", "2025-11-30"), ("investigation_closed_on", "2026-04-02")]),
            ON,
            Kind::Investigation,
            "investigation from 2025-11-30: nominal 2026-03-30, due 2026-03-30 (nominal), closed 2026-04-02",
        );
        check(row(&[("received_on", "2025-03-03")]), ON, Kind::Investigation, "none");
    }

    #[test]
    fn deadlines_exist_per_row_in_kind_order() {
        fn check(dates: CaseDates, expected: &[Kind]) {
            let kinds: Vec<Kind> = deadlines_for(&dates, &[], ON).iter().map(|x| x.kind).collect();
            assert_eq!(kinds, expected, "{dates:?}");
        }
        check(row(&[]), &[]);
        check(row(&[("received_on", "2025-03-03")]), &[Kind::Protection, Kind::Assessment]);
        // An investigation opened on application has no report and so no earlier clocks.
        check(row(&[("investigation_opened_on", "2025-03-03")]), &[Kind::Investigation]);
        check(
            row(&[("received_on", "2025-03-03"), ("investigation_opened_on", "2025-03-10")]),
            &[Kind::Protection, Kind::Assessment, Kind::Investigation],
        );
        check(
            row(&[
                ("received_on", "2026-03-03"),
                ("investigation_opened_on", "2026-03-10"),
                ("investigation_closed_on", "2026-06-10"),
                ("follow_up_decided_on", "2026-06-10"),
                ("reporter_info_requested_on", "2026-03-04"),
            ]),
            &Kind::of_cases().collect::<Vec<_>>(),
        );
        // A report during the open investigation: no assessment clock.
        check(
            row(&[("investigation_opened_on", "2025-03-03"), ("received_on", "2025-03-10")]),
            &[Kind::Protection, Kind::Investigation],
        );
        // Closing dates alone start nothing.
        check(row(&[("assessment_decided_on", "2025-03-03"), ("investigation_closed_on", "2025-03-10")]), &[]);
    }

    #[test]
    fn status_follows_the_contract() {
        fn check(dates: CaseDates, kind: Kind, today: &str, status: Status, days_left: Option<i64>) {
            let deadline = find(&dates, ON, kind).unwrap();
            let today = d(today);
            assert_eq!(
                (deadline.status(today), deadline.days_left(today)),
                (status, days_left),
                "{} on {today}",
                render(&deadline)
            );
        }
        let assessment = row(&[("received_on", "2025-03-03")]); // nominal = due = 2025-03-17
        check(assessment, Kind::Assessment, "2025-03-03", Status::Pending, Some(14));
        check(assessment, Kind::Assessment, "2025-03-13", Status::Pending, Some(4));
        check(assessment, Kind::Assessment, "2025-03-14", Status::DueSoon, Some(3)); // window opens
        check(assessment, Kind::Assessment, "2025-03-16", Status::DueSoon, Some(1));
        check(assessment, Kind::Assessment, "2025-03-17", Status::DueToday, Some(0));
        check(assessment, Kind::Assessment, "2025-03-18", Status::Overdue, Some(-1));
        check(assessment, Kind::Assessment, "2025-04-17", Status::Overdue, Some(-31));
        let moved = row(&[("received_on", "2026-12-10")]); // nominal 2026-12-24, due 2026-12-28
        check(moved, Kind::Assessment, "2026-12-20", Status::Pending, Some(8));
        check(moved, Kind::Assessment, "2026-12-21", Status::DueSoon, Some(7)); // from the nominal day
        check(moved, Kind::Assessment, "2026-12-26", Status::DueSoon, Some(2)); // past nominal, not due
        check(moved, Kind::Assessment, "2026-12-28", Status::DueToday, Some(0));
        check(moved, Kind::Assessment, "2026-12-29", Status::Overdue, Some(-1));
        let protection = row(&[("received_on", "2025-03-03")]); // due 2025-03-04
        check(protection, Kind::Protection, "2025-03-02", Status::Pending, Some(2)); // a --today before the report
        check(protection, Kind::Protection, "2025-03-03", Status::DueSoon, Some(1));
        check(protection, Kind::Protection, "2025-03-04", Status::DueToday, Some(0));
        check(protection, Kind::Protection, "2025-03-05", Status::Overdue, Some(-1));
        let investigation = row(&[("investigation_opened_on", "2025-03-03")]); // due 2025-07-03
        check(investigation, Kind::Investigation, "2025-06-18", Status::Pending, Some(15));
        check(investigation, Kind::Investigation, "2025-06-19", Status::DueSoon, Some(14)); // window opens
        check(investigation, Kind::Investigation, "2025-07-02", Status::DueSoon, Some(1));
        check(investigation, Kind::Investigation, "2025-07-03", Status::DueToday, Some(0));
        check(investigation, Kind::Investigation, "2025-07-04", Status::Overdue, Some(-1));
        // Closed: met on or before the legal day, even after the nominal one; missed after it.
        check(
            row(&[("received_on", "2025-03-03"), ("assessment_decided_on", "2025-03-17")]),
            Kind::Assessment,
            "2025-05-01",
            Status::Met,
            None,
        );
        check(
            row(&[("received_on", "2026-12-10"), ("assessment_decided_on", "2026-12-28")]),
            Kind::Assessment,
            "2027-01-10",
            Status::Met,
            None,
        );
        check(
            row(&[("received_on", "2025-03-03"), ("assessment_decided_on", "2025-03-18")]),
            Kind::Assessment,
            "2025-05-01",
            Status::Missed,
            None,
        );
        check(
            row(&[("received_on", "2025-03-03"), ("protection_assessed_on", "2025-03-05")]),
            Kind::Protection,
            "2025-03-05",
            Status::Missed,
            None,
        );
        check(
            row(&[
                ("investigation_opened_on", "2025-03-03"),
                ("investigation_extended_to", "2025-09-30"),
                ("investigation_closed_on", "2025-09-01"),
            ]),
            Kind::Investigation,
            "2025-09-01",
            Status::Met,
            None,
        );
    }

    #[test]
    fn names_parse_back_and_match_serde() {
        fn check<T>(all: &[T], as_str: fn(&T) -> &'static str)
        where
            T: FromStr<Err = String> + fmt::Display + fmt::Debug + PartialEq + for<'de> Deserialize<'de>,
        {
            for value in all {
                let name = as_str(value);
                assert_eq!(name.parse::<T>().as_ref(), Ok(value));
                assert_eq!(value.to_string(), name);
                let deserializer: StrDeserializer<ValueError> = name.into_deserializer();
                assert_eq!(T::deserialize(deserializer).as_ref(), Ok(value));
            }
            let error = "Overdue".parse::<T>().unwrap_err();
            assert!(error.contains("\"Overdue\"") && error.contains(as_str(&all[0])), "{error}");
        }
        check(&Kind::ALL, |kind| kind.as_str());
        check(&Status::ALL, |status| status.as_str());
    }

    #[test]
    fn kind_and_status_words_are_fixed() {
        let kinds: Vec<_> = Kind::ALL.iter().map(|k| (k.as_str(), k.reminder_window_days())).collect();
        assert_eq!(
            kinds,
            [
                ("protection", 0),
                ("assessment", 3),
                ("investigation", 14),
                ("follow_up", 14),
                ("reporter_information", 2),
                ("lvu_court_submission", 3),
                ("lvu_care_application", 7),
                ("lvu_care_start", 7),
                ("placement_review", 30),
                ("restriction_review", 14),
                ("custody_transfer_review", 30),
                ("emergency_home_limit", 14),
                ("placement_follow_up", 14),
            ]
        );
        let statuses: Vec<_> = Status::ALL.iter().map(|s| (s.as_str(), s.is_closed())).collect();
        assert_eq!(
            statuses,
            [
                ("met", true),
                ("missed", true),
                ("overdue", false),
                ("due_today", false),
                ("due_soon", false),
                ("pending", false),
            ]
        );
    }

    fn other(opened: &str, closed: Option<&str>) -> OtherInvestigation {
        OtherInvestigation { opened_on: d(opened), closed_on: closed.map(d) }
    }

    /// SoL 23 kap. 5 §: a follow-up ends early when an investigation of the child opens in another
    /// case; before its last day that is met, after it missed. An investigation opened before the
    /// follow-up started does not end it.
    #[test]
    fn a_new_investigation_of_the_child_ends_the_follow_up() {
        let case = row(&[
            ("investigation_opened_on", "2026-01-12"),
            ("investigation_closed_on", "2026-03-31"),
            ("follow_up_decided_on", "2026-03-31"),
        ]);
        let follow_up = |others: &[OtherInvestigation]| {
            deadlines_for(&case, others, ON).into_iter().find(|x| x.kind == Kind::FollowUp).map(|x| render(&x))
        };
        assert_eq!(
            follow_up(&[other("2026-06-01", None)]).unwrap(),
            "follow_up from 2026-03-31: nominal 2026-09-30, due 2026-09-30 (nominal), closed 2026-06-01"
        );
        let late = deadlines_for(&case, &[other("2026-10-05", None)], ON);
        let late = late.iter().find(|x| x.kind == Kind::FollowUp).unwrap();
        assert_eq!((late.closed_on, late.status(d("2026-12-01"))), (Some(d("2026-10-05")), Status::Missed));
        // The earliest counts; one opened before the follow-up started (and closed) does not.
        assert_eq!(
            follow_up(&[
                other("2026-08-01", None),
                other("2026-05-02", Some("2026-05-20")),
                other("2025-11-01", Some("2026-02-01"))
            ])
            .unwrap(),
            "follow_up from 2026-03-31: nominal 2026-09-30, due 2026-09-30 (nominal), closed 2026-05-02"
        );
        // An investigation opened on the close day itself is "on or after the start".
        assert!(follow_up(&[other("2026-03-31", None)]).unwrap().ends_with("closed 2026-03-31"));
        assert!(follow_up(&[other("2026-03-30", None)]).unwrap().ends_with("open"));
        // The follow-up's own end, when earlier, wins.
        let ended = CaseDates { follow_up_ended_on: Some(d("2026-04-15")), ..case };
        let x = deadlines_for(&ended, &[other("2026-06-01", None)], ON);
        assert_eq!(x.iter().find(|x| x.kind == Kind::FollowUp).unwrap().closed_on, Some(d("2026-04-15")));
    }

    /// SoL 20 kap. 2 §: no assessment for a report received while any investigation of the child
    /// is open, in this case or another; after that investigation closed, an ordinary clock.
    #[test]
    fn a_report_into_another_cases_open_investigation_needs_no_assessment() {
        let report = row(&[("received_on", "2026-04-10")]);
        let kinds = |others: &[OtherInvestigation]| -> Vec<Kind> {
            deadlines_for(&report, others, ON).iter().map(|x| x.kind).collect()
        };
        assert_eq!(kinds(&[other("2026-03-02", None)]), [Kind::Protection]);
        assert_eq!(kinds(&[other("2026-03-02", Some("2026-04-10"))]), [Kind::Protection]);
        assert!(report_during_open_investigation(&report, &[other("2026-03-02", None)]));
        // Closed before the report came in, or opened on its day or later: an ordinary report.
        assert_eq!(kinds(&[other("2026-01-05", Some("2026-04-09"))]), [Kind::Protection, Kind::Assessment]);
        assert_eq!(kinds(&[other("2026-04-10", None)]), [Kind::Protection, Kind::Assessment]);
        assert_eq!(kinds(&[]), [Kind::Protection, Kind::Assessment]);
    }

    /// SoL 19 kap. 6 § andra st.: the week form (a request by the decision + 7 days, or before
    /// any decision), the "genast" form (a later request, or a child already under
    /// investigation), none while no decision exists, none for a request before 15 January 2026.
    #[test]
    fn the_reporter_is_informed_within_a_week_of_the_decision_or_at_once() {
        fn check(pairs: &[(&str, &str)], others: &[OtherInvestigation], expected: &str) {
            let found = deadlines_for(&row(pairs), others, ON)
                .into_iter()
                .find(|x| x.kind == Kind::ReporterInformation)
                .map_or_else(|| "none".to_string(), |x| render(&x));
            assert_eq!(found, expected, "{pairs:?}");
        }
        let report = [("received_on", "2026-03-02")];
        let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
            report.iter().copied().chain(extra.iter().copied()).collect()
        };
        // Asked before the decision: the week runs from the decision (Wednesday 11 March).
        check(
            &with(&[("reporter_info_requested_on", "2026-03-03"), ("assessment_decided_on", "2026-03-11")]),
            &[],
            "reporter_information from 2026-03-11: nominal 2026-03-18, due 2026-03-18 (nominal), open",
        );
        // No decision yet: no clock.
        check(&with(&[("reporter_info_requested_on", "2026-03-03")]), &[], "none");
        // Opening an investigation is the decision; on its week's last day the request is in time.
        check(
            &with(&[("reporter_info_requested_on", "2026-03-18"), ("investigation_opened_on", "2026-03-11")]),
            &[],
            "reporter_information from 2026-03-11: nominal 2026-03-18, due 2026-03-18 (nominal), open",
        );
        // A week ending on a holiday moves: decided Thursday 26 March 2026 → 2 April (Thursday);
        // decided 30 March → 6 April, annandag påsk → Tuesday 7 April.
        check(
            &with(&[("reporter_info_requested_on", "2026-03-05"), ("assessment_decided_on", "2026-03-30")]),
            &[],
            "reporter_information from 2026-03-30: nominal 2026-04-06, due 2026-04-07 (moved over 04-06 annandag påsk), open",
        );
        // Asked after the week: "genast", at the latest the next day, closed when informed.
        check(
            &with(&[
                ("assessment_decided_on", "2026-03-11"),
                ("reporter_info_requested_on", "2026-03-19"),
                ("reporter_informed_on", "2026-03-20"),
            ]),
            &[],
            "reporter_information from 2026-03-19: nominal 2026-03-19, due 2026-03-20 (next day), closed 2026-03-20",
        );
        // The child was already under investigation (another case): "genast" from the request.
        check(
            &with(&[("reporter_info_requested_on", "2026-03-04")]),
            &[other("2026-02-01", None)],
            "reporter_information from 2026-03-04: nominal 2026-03-04, due 2026-03-05 (next day), open",
        );
        // Before the paragraph came into force (15 January 2026): nothing; on the day: a clock.
        let old = [("received_on", "2026-01-05"), ("assessment_decided_on", "2026-01-12")];
        check(&[old[0], old[1], ("reporter_info_requested_on", "2026-01-14")], &[], "none");
        check(
            &[old[0], old[1], ("reporter_info_requested_on", "2026-01-15")],
            &[],
            "reporter_information from 2026-01-12: nominal 2026-01-19, due 2026-01-19 (nominal), open",
        );
        // No report, no clock.
        check(&[("reporter_info_requested_on", "2026-03-04"), ("investigation_opened_on", "2026-03-04")], &[], "none");
    }

    /// Contract §2: a decided extension moves the reminders; a holiday move does not.
    #[test]
    fn an_extension_moves_the_reminder_window() {
        let extended = row(&[("investigation_opened_on", "2026-03-02"), ("investigation_extended_to", "2026-09-30")]);
        let x = find(&extended, ON, Kind::Investigation).unwrap();
        // Nominal 2 July; on 25 June the new day is weeks away: pending, not due soon.
        assert_eq!(x.status(d("2026-06-25")), Status::Pending);
        assert_eq!(x.status(d("2026-09-16")), Status::DueSoon);
        assert_eq!(x.status(d("2026-09-15")), Status::Pending);
        assert_eq!(x.reminder_base(), d("2026-09-30"));
        // A holiday move keeps the nominal day: received 10 December, nominal julafton.
        let moved = find(&row(&[("received_on", "2026-12-10")]), ON, Kind::Assessment).unwrap();
        assert_eq!((moved.reminder_base(), moved.due_on), (d("2026-12-24"), d("2026-12-28")));
        assert_eq!(moved.status(d("2026-12-21")), Status::DueSoon);
    }

    fn any_date() -> impl Strategy<Value = NaiveDate> {
        let first = d("1900-01-01").num_days_from_ce();
        let last = NaiveDate::from_ymd_opt(LAST_YEAR, 12, 31).unwrap().num_days_from_ce();
        (first..=last).prop_map(|n| NaiveDate::from_num_days_from_ce_opt(n).unwrap())
    }

    fn any_case() -> impl Strategy<Value = (CaseDates, bool)> {
        (any_date(), any_date(), proptest::option::of(0i64..=200), proptest::option::of(0i64..=200), any::<bool>())
            .prop_map(|(received, opened, assessment_extension, investigation_extension, holiday_rule)| {
                // Extensions are drawn on or after the nominal day, as decided extensions are.
                let after = |start: NaiveDate, extra: Option<i64>| extra.map(|n| shift_days_saturating(start, n));
                let dates = CaseDates {
                    received_on: Some(received),
                    assessment_extended_to: after(shift_days_saturating(received, 14), assessment_extension),
                    investigation_opened_on: Some(opened),
                    investigation_extended_to: after(add_months(opened, 4), investigation_extension),
                    ..CaseDates::default()
                };
                (dates, holiday_rule)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn legal_day_never_precedes_the_nominal_one((dates, holiday_rule) in any_case()) {
            for deadline in deadlines_for(&dates, &[], RuleOptions { holiday_rule }) {
                prop_assert!(deadline.due_on >= deadline.nominal_due_on, "{}", render(&deadline));
                prop_assert!(deadline.nominal_due_on >= deadline.start_on, "{}", render(&deadline));
            }
        }

        #[test]
        fn holiday_rule_lands_on_a_working_day_and_moves_at_most_five_days((dates, _) in any_case()) {
            let plain = CaseDates { assessment_extended_to: None, investigation_extended_to: None, ..dates };
            for deadline in deadlines_for(&plain, &[], ON) {
                if deadline.kind == Kind::Protection {
                    continue;
                }
                prop_assert_eq!(deadline_moving_day(deadline.due_on), None, "{}", render(&deadline));
                // Five days: julafton on a Wednesday, 24 → 29 December (see calendar tests).
                prop_assert!((deadline.due_on - deadline.nominal_due_on).num_days() <= 5);
                let moved = deadline.due_on != deadline.nominal_due_on;
                prop_assert_eq!(moved, matches!(deadline.due_reason, DueReason::Moved { .. }));
            }
            for deadline in deadlines_for(&plain, &[], OFF) {
                prop_assert_eq!(deadline.due_on == deadline.nominal_due_on, deadline.kind != Kind::Protection);
            }
        }

        #[test]
        fn status_agrees_with_days_left((dates, holiday_rule) in any_case(), offset in -400i64..=400, closed in proptest::option::of(-30i64..=30)) {
            for mut deadline in deadlines_for(&dates, &[], RuleOptions { holiday_rule }) {
                let today = shift_days_saturating(deadline.due_on, offset);
                deadline.closed_on = closed.map(|n| shift_days_saturating(deadline.due_on, n));
                let status = deadline.status(today);
                prop_assert_eq!(status.is_closed(), deadline.is_closed());
                match deadline.days_left(today) {
                    None => prop_assert_eq!(status, if closed.unwrap() <= 0 { Status::Met } else { Status::Missed }),
                    Some(days_left) => {
                        prop_assert_eq!(days_left, -offset);
                        prop_assert_eq!(status == Status::Overdue, days_left < 0);
                        prop_assert_eq!(status == Status::DueToday, days_left == 0);
                        let in_window = (deadline.reminder_base() - today).num_days() <= deadline.kind.reminder_window_days();
                        prop_assert_eq!(status == Status::DueSoon, days_left > 0 && in_window);
                        prop_assert_eq!(status == Status::Pending, days_left > 0 && !in_window);
                    }
                }
            }
        }

        #[test]
        fn investigation_ends_in_the_fourth_month((dates, _) in any_case()) {
            let opened = dates.investigation_opened_on.unwrap();
            let deadline = find(&dates, OFF, Kind::Investigation).unwrap();
            let months = |day: NaiveDate| day.year() * 12 + day.month0() as i32;
            prop_assert_eq!(months(deadline.nominal_due_on), months(opened) + 4);
            prop_assert!(deadline.nominal_due_on.day() <= opened.day());
        }
    }
}
