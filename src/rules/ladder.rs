//! The escalation ladder (register contract §3): which notice a deadline is owed on a given day.
//!
//! Negative steps are reminders counted back from the nominal last day; step 0 and later steps
//! count from the legal last day. Which steps were already sent is the caller's record; this
//! module only decides from it.

use std::error::Error;
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::calendar::shift_days_saturating;
use super::deadline::{unknown_value, Deadline, Kind};

/// Who receives a notice; the edge resolves a role to addresses through configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Handläggare: the row's own caseworker.
    Caseworker,
    /// Gruppledare of the case's unit.
    TeamLead,
    /// Enhetschef of the case's unit.
    Manager,
}

impl Role {
    /// Every role, from the case outwards.
    pub const ALL: [Role; 3] = [Role::Caseworker, Role::TeamLead, Role::Manager];

    /// The stable machine name used in configuration and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Caseworker => "caseworker",
            Role::TeamLead => "team_lead",
            Role::Manager => "manager",
        }
    }

    /// The next role up the escalation ladder (caseworker → team lead → unit manager), to which
    /// a notice goes when none of its recipients could receive it; `None` above the manager.
    pub fn above(self) -> Option<Role> {
        match self {
            Role::Caseworker => Some(Role::TeamLead),
            Role::TeamLead => Some(Role::Manager),
            Role::Manager => None,
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| unknown_value("role", text, Role::ALL.map(Role::as_str)))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rung of a ladder: a day relative to the deadline and who is told on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Days from the nominal last day when negative, from the legal last day otherwise.
    pub offset: i32,
    /// Who receives the notice.
    pub roles: Vec<Role>,
}

impl Step {
    /// The day this step becomes due for `deadline`.
    ///
    /// Reminders count from the nominal day so that they come early enough even if an inspector
    /// does not apply the holiday rule, or from a decided extension's day
    /// ([`Deadline::reminder_base`]); escalations count from the legal day so that nobody is
    /// told a deadline passed while the law still allows the action.
    pub fn fires_on(&self, deadline: &Deadline) -> NaiveDate {
        let base = if self.offset < 0 { deadline.reminder_base() } else { deadline.due_on };
        shift_days_saturating(base, i64::from(self.offset))
    }

    /// The offset as stable text ("-3", "0", "+5") for state keys and metric labels.
    pub fn label(&self) -> String {
        offset_label(self.offset)
    }
}

/// A validated ladder: at least one step, each with recipients, offsets unique and ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    steps: Vec<Step>,
}

/// Why a list of steps is not a ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LadderError {
    /// There are no steps at all.
    Empty,
    /// Two steps share this offset.
    DuplicateOffset(i32),
    /// The step at this offset names no recipients.
    NoRoles(i32),
}

impl fmt::Display for LadderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LadderError::Empty => f.write_str("the ladder has no steps; give at least one"),
            LadderError::DuplicateOffset(offset) => {
                write!(f, "two steps have offset {}; give each offset once", offset_label(*offset))
            }
            LadderError::NoRoles(offset) => write!(
                f,
                "step {} has no recipients; name at least one of caseworker, team_lead, manager",
                offset_label(*offset)
            ),
        }
    }
}

impl Error for LadderError {}

impl Ladder {
    /// Validates `steps` into a ladder, sorted by offset.
    ///
    /// A role named twice in one step is kept once, since a person should not get the same
    /// notice twice; the order of roles is otherwise kept.
    pub fn new(mut steps: Vec<Step>) -> Result<Ladder, LadderError> {
        if steps.is_empty() {
            return Err(LadderError::Empty);
        }
        steps.sort_by_key(|step| step.offset);
        for step in &mut steps {
            let mut seen = Vec::with_capacity(step.roles.len());
            step.roles.retain(|role| {
                let first = !seen.contains(role);
                seen.push(*role);
                first
            });
        }
        for pair in steps.windows(2) {
            if pair[0].offset == pair[1].offset {
                return Err(LadderError::DuplicateOffset(pair[0].offset));
            }
        }
        if let Some(step) = steps.iter().find(|step| step.roles.is_empty()) {
            return Err(LadderError::NoRoles(step.offset));
        }
        Ok(Ladder { steps })
    }

    /// The default ladder of `kind` (register contract §3), from its clock's table entry.
    pub fn default_for(kind: Kind) -> Ladder {
        // Built directly rather than through `new` so that no error path exists; a test checks
        // that `new` accepts every default unchanged.
        let steps = kind.clock().ladder.iter().map(|(offset, roles)| Step { offset: *offset, roles: roles.to_vec() });
        Ladder { steps: steps.collect() }
    }

    /// The steps, ascending by offset.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The step at `offset`, if the ladder has one.
    pub fn step(&self, offset: i32) -> Option<&Step> {
        self.steps.binary_search_by_key(&offset, |step| step.offset).ok().and_then(|index| self.steps.get(index))
    }
}

/// What to do about one deadline today: at most one notice to send, and steps to record as
/// skipped (offsets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LadderDecision {
    /// The step whose notice is to be sent now.
    pub send: Option<i32>,
    /// Steps already reached that will never be sent, ascending.
    pub skip: Vec<i32>,
}

/// Decides which step of `ladder` `deadline` is owed on `today`, given the offsets already
/// `recorded` as sent or skipped.
///
/// A closed deadline gets nothing. Of the reached steps not yet recorded, only the latest is
/// sent, so that a deadline first seen long overdue gets one notice rather than a burst; the rest
/// are skipped. When a later step is already recorded (say the deadline was extended after an
/// escalation), every unrecorded reached step is skipped, since sending an earlier one would
/// step back down the ladder.
pub fn decide(deadline: &Deadline, ladder: &Ladder, today: NaiveDate, recorded: &[i32]) -> LadderDecision {
    if deadline.is_closed() {
        return LadderDecision::default();
    }
    // Steps are ascending, so `open` is too and its last element is the latest reached.
    let mut open: Vec<i32> = ladder
        .steps()
        .iter()
        .filter(|step| today >= step.fires_on(deadline) && !recorded.contains(&step.offset))
        .map(|step| step.offset)
        .collect();
    let latest_recorded = recorded.iter().copied().max();
    let send = match (open.last().copied(), latest_recorded) {
        (Some(latest), Some(done)) if done > latest => None,
        (latest, _) => latest,
    };
    if send.is_some() {
        open.pop();
    }
    LadderDecision { send, skip: open }
}

impl LadderDecision {
    /// The same decision with nothing sent: the step that would have been sent is recorded as
    /// skipped too (a deadline beyond the first-sight horizon, [`beyond_first_sight`]).
    pub fn silenced(mut self) -> LadderDecision {
        if let Some(offset) = self.send.take() {
            self.skip.push(offset);
            self.skip.sort_unstable();
        }
        self
    }
}

/// Whether a deadline first seen on `first_seen_on` was first seen more than `horizon_days`
/// after its legal last day (register contract §3): such a deadline gets no notice at all, so
/// that the first start against a register with years of history mails nobody about long-past
/// cases. Exactly `horizon_days` after is still inside the horizon.
pub fn beyond_first_sight(deadline: &Deadline, first_seen_on: NaiveDate, horizon_days: i64) -> bool {
    (first_seen_on - deadline.due_on).num_days() > horizon_days
}

/// The stable text form of an offset: "-3", "0", "+5".
pub fn offset_label(offset: i32) -> String {
    if offset > 0 {
        format!("+{offset}")
    } else {
        offset.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde::de::value::{Error as ValueError, StrDeserializer};
    use serde::de::IntoDeserializer;

    use super::super::deadline::{deadlines_for, CaseDates, RuleOptions};

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn escalation_goes_caseworker_team_lead_manager_then_stops() {
        assert_eq!(Role::Caseworker.above(), Some(Role::TeamLead));
        assert_eq!(Role::TeamLead.above(), Some(Role::Manager));
        assert_eq!(Role::Manager.above(), None);
        // The dispatcher escalates above the highest role a notice went to: the order is `Ord`.
        assert!(Role::Caseworker < Role::TeamLead && Role::TeamLead < Role::Manager);
    }

    /// The deadline of `kind` for a report received or an investigation opened on `start`.
    fn deadline(kind: Kind, start: &str, extended_to: Option<&str>, closed_on: Option<&str>) -> Deadline {
        let (start, extended_to, closed_on) = (d(start), extended_to.map(d), closed_on.map(d));
        if kind.is_placement() {
            return placement_deadline(kind, start, extended_to, closed_on);
        }
        let start = Some(start);
        let dates = match kind {
            Kind::Protection => {
                CaseDates { received_on: start, protection_assessed_on: closed_on, ..CaseDates::default() }
            }
            Kind::Assessment => CaseDates {
                received_on: start,
                assessment_extended_to: extended_to,
                assessment_decided_on: closed_on,
                ..CaseDates::default()
            },
            Kind::Investigation => CaseDates {
                investigation_opened_on: start,
                investigation_extended_to: extended_to,
                investigation_closed_on: closed_on,
                ..CaseDates::default()
            },
            // `start` is the day the investigation closed and the follow-up was decided.
            Kind::FollowUp => CaseDates {
                investigation_opened_on: Some(d("2000-01-03")),
                investigation_closed_on: start,
                follow_up_decided_on: start,
                follow_up_ended_on: closed_on,
                ..CaseDates::default()
            },
            // `start` is the assessment decision; the reporter asked the same day.
            Kind::ReporterInformation => CaseDates {
                received_on: Some(d("2026-01-15")),
                assessment_decided_on: start,
                reporter_info_requested_on: start,
                reporter_informed_on: closed_on,
                ..CaseDates::default()
            },
            _ => unreachable!("a placement's kind"),
        };
        deadlines_for(&dates, &[], RuleOptions::default()).into_iter().find(|deadline| deadline.kind == kind).unwrap()
    }

    /// The placement deadline of `kind` started on `start`.
    fn placement_deadline(
        kind: Kind,
        start: NaiveDate,
        extended_to: Option<NaiveDate>,
        closed_on: Option<NaiveDate>,
    ) -> Deadline {
        use crate::rules::{placement_deadlines_for, Basis, Home, PlacementContext, PlacementDates};
        let mut context = PlacementContext::default();
        let p = match kind {
            Kind::LvuCourtSubmission => {
                PlacementDates { submitted_to_court_on: closed_on, ..PlacementDates::new(Basis::Lvu6, start) }
            }
            Kind::LvuCareApplication => PlacementDates {
                executed_on: Some(start),
                submitted_to_court_on: Some(start),
                care_applied_on: closed_on,
                application_extended_to: extended_to,
                ..PlacementDates::new(Basis::Lvu6, start)
            },
            Kind::LvuCareStart => PlacementDates {
                legal_force_on: Some(start),
                executed_on: closed_on,
                ..PlacementDates::new(Basis::Lvu2, start)
            },
            Kind::EmergencyHomeLimit => {
                context.investigation_closed_on = Some(start);
                PlacementDates {
                    home: Some(Home::EmergencyHome),
                    emergency_home_extended_to: extended_to,
                    ended_on: closed_on,
                    ..PlacementDates::new(Basis::Sol, start)
                }
            }
            _ => PlacementDates {
                ended_on: Some(start),
                follow_up_ended_on: closed_on,
                ..PlacementDates::new(Basis::Lvu2, start)
            },
        };
        placement_deadlines_for(&p, &context, RuleOptions::default()).into_iter().find(|x| x.kind == kind).unwrap()
    }

    fn render_ladder(ladder: &Ladder) -> String {
        ladder
            .steps()
            .iter()
            .map(|step| {
                let roles: Vec<&str> = step.roles.iter().map(|role| role.as_str()).collect();
                format!("{} → {}", step.label(), roles.join(", "))
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }

    fn render_decision(decision: &LadderDecision) -> String {
        let send = decision.send.map_or_else(|| "nothing".to_string(), offset_label);
        let skip: Vec<String> = decision.skip.iter().map(|&offset| offset_label(offset)).collect();
        format!("send {send}, skip [{}]", skip.join(" "))
    }

    #[test]
    fn default_ladders_match_the_contract_table() {
        fn check(kind: Kind, expected: &str) {
            let ladder = Ladder::default_for(kind);
            assert_eq!(render_ladder(&ladder), expected, "{kind}");
            assert_eq!(Ladder::new(ladder.steps().to_vec()), Ok(ladder), "{kind}");
        }
        check(Kind::Protection, "0 → caseworker, team_lead · +1 → manager");
        check(Kind::Assessment, "-3 → caseworker · 0 → caseworker · +1 → caseworker, team_lead · +5 → manager");
        check(Kind::Investigation, "-14 → caseworker · -3 → caseworker, team_lead · +1 → team_lead · +14 → manager");
        check(Kind::FollowUp, "-14 → caseworker · +1 → caseworker, team_lead · +14 → manager");
        check(Kind::ReporterInformation, "-2 → caseworker · +1 → caseworker, team_lead");
    }

    #[test]
    fn steps_fire_from_the_nominal_or_the_legal_day() {
        fn check(kind: Kind, start: &str, extended_to: Option<&str>, offset: i32, expected: &str) {
            let deadline = deadline(kind, start, extended_to, None);
            let step = Ladder::default_for(kind).step(offset).cloned().unwrap();
            assert_eq!(step.fires_on(&deadline), d(expected), "{kind} {} from {start}", step.label());
        }
        // Protection received 2026-03-07 (a Saturday): due 2026-03-08, no holiday rule.
        check(Kind::Protection, "2026-03-07", None, 0, "2026-03-08");
        check(Kind::Protection, "2026-03-07", None, 1, "2026-03-09");
        // Assessment received 2026-12-10: nominal 2026-12-24, due 2026-12-28.
        check(Kind::Assessment, "2026-12-10", None, -3, "2026-12-21");
        check(Kind::Assessment, "2026-12-10", None, 0, "2026-12-28");
        check(Kind::Assessment, "2026-12-10", None, 1, "2026-12-29");
        check(Kind::Assessment, "2026-12-10", None, 5, "2027-01-02");
        // Extended to 2027-01-15: the reminder counts back from the decided day, as escalations
        // count on from it (contract §2).
        check(Kind::Assessment, "2026-12-10", Some("2027-01-15"), -3, "2027-01-12");
        check(Kind::Assessment, "2026-12-10", Some("2027-01-15"), 1, "2027-01-16");
        // Investigation opened 2026-10-31: nominal 2027-02-28 (a Sunday), due 2027-03-01.
        check(Kind::Investigation, "2026-10-31", None, -14, "2027-02-14");
        check(Kind::Investigation, "2026-10-31", None, -3, "2027-02-25");
        check(Kind::Investigation, "2026-10-31", None, 1, "2027-03-02");
        check(Kind::Investigation, "2026-10-31", None, 14, "2027-03-15");
    }

    #[test]
    fn decide_walks_each_default_ladder() {
        fn check(kind: Kind, start: &str, closed_on: Option<&str>, today: &str, recorded: &[i32], expected: &str) {
            let deadline = deadline(kind, start, None, closed_on);
            let decision = decide(&deadline, &Ladder::default_for(kind), d(today), recorded);
            assert_eq!(render_decision(&decision), expected, "{kind} from {start} on {today} after {recorded:?}");
        }
        // Protection received 2025-03-03: due 2025-03-04.
        check(Kind::Protection, "2025-03-03", None, "2025-03-03", &[], "send nothing, skip []");
        check(Kind::Protection, "2025-03-03", None, "2025-03-04", &[], "send 0, skip []");
        check(Kind::Protection, "2025-03-03", None, "2025-03-04", &[0], "send nothing, skip []");
        check(Kind::Protection, "2025-03-03", None, "2025-03-05", &[0], "send +1, skip []");
        check(Kind::Protection, "2025-03-03", None, "2025-03-05", &[0, 1], "send nothing, skip []");
        check(Kind::Protection, "2025-03-03", Some("2025-03-05"), "2025-03-05", &[0], "send nothing, skip []");
        // Assessment received 2025-03-03: nominal = due = 2025-03-17.
        check(Kind::Assessment, "2025-03-03", None, "2025-03-13", &[], "send nothing, skip []");
        check(Kind::Assessment, "2025-03-03", None, "2025-03-14", &[], "send -3, skip []");
        check(Kind::Assessment, "2025-03-03", None, "2025-03-16", &[-3], "send nothing, skip []");
        check(Kind::Assessment, "2025-03-03", None, "2025-03-17", &[-3], "send 0, skip []");
        check(Kind::Assessment, "2025-03-03", None, "2025-03-18", &[-3, 0], "send +1, skip []");
        check(Kind::Assessment, "2025-03-03", None, "2025-03-22", &[-3, 0, 1], "send +5, skip []");
        check(Kind::Assessment, "2025-03-03", None, "2025-04-30", &[-3, 0, 1, 5], "send nothing, skip []");
        // Catch-up: first seen 20 days overdue, only the latest step is sent.
        check(Kind::Assessment, "2025-03-03", None, "2025-04-06", &[], "send +5, skip [-3 0 +1]");
        check(Kind::Assessment, "2025-03-03", None, "2025-03-18", &[], "send +1, skip [-3 0]");
        check(Kind::Assessment, "2025-03-03", None, "2025-03-22", &[-3], "send +5, skip [0 +1]");
        // A later step already recorded: nothing earlier is sent (the deadline was extended).
        check(Kind::Assessment, "2025-03-03", None, "2025-03-18", &[5], "send nothing, skip [-3 0 +1]");
        // A closed deadline gets nothing, however late.
        check(Kind::Assessment, "2025-03-03", Some("2025-03-20"), "2025-04-06", &[], "send nothing, skip []");
        // Investigation opened 2026-10-31: nominal 2027-02-28, due 2027-03-01.
        check(Kind::Investigation, "2026-10-31", None, "2027-02-13", &[], "send nothing, skip []");
        check(Kind::Investigation, "2026-10-31", None, "2027-02-14", &[], "send -14, skip []");
        check(Kind::Investigation, "2026-10-31", None, "2027-02-25", &[-14], "send -3, skip []");
        check(Kind::Investigation, "2026-10-31", None, "2027-03-01", &[-14, -3], "send nothing, skip []");
        check(Kind::Investigation, "2026-10-31", None, "2027-03-02", &[-14, -3], "send +1, skip []");
        check(Kind::Investigation, "2026-10-31", None, "2027-03-15", &[-14, -3, 1], "send +14, skip []");
        check(Kind::Investigation, "2026-10-31", None, "2027-06-01", &[], "send +14, skip [-14 -3 +1]");
        // Follow-up after an investigation closed 2026-06-24: nominal 2026-12-24, due 2026-12-28.
        check(Kind::FollowUp, "2026-06-24", None, "2026-12-09", &[], "send nothing, skip []");
        check(Kind::FollowUp, "2026-06-24", None, "2026-12-10", &[], "send -14, skip []");
        check(Kind::FollowUp, "2026-06-24", None, "2026-12-28", &[-14], "send nothing, skip []");
        check(Kind::FollowUp, "2026-06-24", None, "2026-12-29", &[-14], "send +1, skip []");
        check(Kind::FollowUp, "2026-06-24", None, "2027-01-11", &[-14, 1], "send +14, skip []");
        check(Kind::FollowUp, "2026-06-24", Some("2026-12-27"), "2027-01-11", &[-14], "send nothing, skip []");
        // The reporter's week after a decision on 2026-03-11: last day 2026-03-18.
        check(Kind::ReporterInformation, "2026-03-11", None, "2026-03-15", &[], "send nothing, skip []");
        check(Kind::ReporterInformation, "2026-03-11", None, "2026-03-16", &[], "send -2, skip []");
        check(Kind::ReporterInformation, "2026-03-11", None, "2026-03-19", &[-2], "send +1, skip []");
    }

    /// Contract §3: steps that fell due while fristvakt was down give only the latest reached
    /// step, for a deadline known before the downtime and for one first seen after it alike.
    #[test]
    fn catch_up_after_downtime_sends_only_the_latest_reached_step() {
        fn check(kind: Kind, start: &str, today: &str, recorded: &[i32], expected: &str) {
            let deadline = deadline(kind, start, None, None);
            let decision = decide(&deadline, &Ladder::default_for(kind), d(today), recorded);
            assert_eq!(render_decision(&decision), expected, "{kind} from {start} on {today} after {recorded:?}");
        }
        // Investigation opened 2026-10-31 (nominal 2027-02-28, due 2027-03-01). Known, with the
        // -14 reminder sent on 2027-02-14; down until 2027-03-03: -3 and +1 fell due meanwhile.
        check(Kind::Investigation, "2026-10-31", "2027-03-03", &[-14], "send +1, skip [-3]");
        // The same deadline first seen on 2027-03-03 (new): the same single notice.
        check(Kind::Investigation, "2026-10-31", "2027-03-03", &[], "send +1, skip [-14 -3]");
        // Down until after the last step: the manager's step alone, known or new.
        check(Kind::Investigation, "2026-10-31", "2027-03-20", &[-14], "send +14, skip [-3 +1]");
        check(Kind::Investigation, "2026-10-31", "2027-03-20", &[], "send +14, skip [-14 -3 +1]");
        // Protection received on a Saturday, fristvakt down all weekend.
        check(Kind::Protection, "2026-03-07", "2026-03-09", &[], "send +1, skip [0]");
        // Follow-up due 2026-12-28, down over the holidays: +1 only.
        check(Kind::FollowUp, "2026-06-24", "2026-12-31", &[-14], "send +1, skip []");
        check(Kind::FollowUp, "2026-06-24", "2026-12-31", &[], "send +1, skip [-14]");
        // The day the system comes back, a step reached that very day is the one sent.
        check(Kind::Assessment, "2025-03-03", "2025-03-17", &[], "send 0, skip [-3]");
    }

    /// Contract §3: a deadline first seen more than the horizon after its legal last day gets
    /// no notice; at the horizon it gets the latest reached step.
    #[test]
    fn first_sight_horizon_silences_long_past_deadlines() {
        // Assessment received 2025-03-03: due 2025-03-17.
        let deadline = deadline(Kind::Assessment, "2025-03-03", None, None);
        let ladder = Ladder::default_for(Kind::Assessment);
        let check = |days_after_due: i64, expected_beyond: bool, expected: &str| {
            let first_seen = deadline.due_on + chrono::Duration::days(days_after_due);
            let beyond = beyond_first_sight(&deadline, first_seen, 30);
            assert_eq!(beyond, expected_beyond, "{days_after_due} days after the legal day");
            let mut decision = decide(&deadline, &ladder, first_seen, &[]);
            if beyond {
                decision = decision.silenced();
            }
            assert_eq!(render_decision(&decision), expected, "{days_after_due} days after the legal day");
        };
        check(29, false, "send +5, skip [-3 0 +1]");
        check(30, false, "send +5, skip [-3 0 +1]");
        check(31, true, "send nothing, skip [-3 0 +1 +5]");
        check(800, true, "send nothing, skip [-3 0 +1 +5]");
        // Before the legal day and on it: never beyond.
        assert!(!beyond_first_sight(&deadline, d("2025-03-01"), 30));
        assert!(!beyond_first_sight(&deadline, deadline.due_on, 0));
        // An extension after the first sight brings the deadline back inside the horizon.
        let extended = self::deadline(Kind::Assessment, "2025-03-03", Some("2025-05-30"), None);
        assert!(!beyond_first_sight(&extended, d("2025-04-20"), 30));
        // Silencing a decision that sends nothing changes nothing.
        assert_eq!(LadderDecision::default().silenced(), LadderDecision::default());
    }

    #[test]
    fn ladder_new_validates_and_sorts() {
        fn step(offset: i32, roles: &[Role]) -> Step {
            Step { offset, roles: roles.to_vec() }
        }
        fn check(steps: Vec<Step>, expected: &str) {
            let actual = match Ladder::new(steps.clone()) {
                Ok(ladder) => render_ladder(&ladder),
                Err(error) => format!("error: {error}"),
            };
            assert_eq!(actual, expected, "{steps:?}");
        }
        use Role::{Caseworker, Manager, TeamLead};
        check(vec![], "error: the ladder has no steps; give at least one");
        check(
            vec![step(1, &[Manager]), step(1, &[TeamLead])],
            "error: two steps have offset +1; give each offset once",
        );
        check(
            vec![step(-2, &[])],
            "error: step -2 has no recipients; name at least one of caseworker, team_lead, manager",
        );
        check(
            vec![step(7, &[Manager]), step(-7, &[Caseworker, Caseworker, TeamLead]), step(0, &[TeamLead, Caseworker])],
            "-7 → caseworker, team_lead · 0 → team_lead, caseworker · +7 → manager",
        );
    }

    #[test]
    fn ladder_error_variants_carry_the_offset() {
        fn check(steps: Vec<Step>, expected: LadderError) {
            let error = Ladder::new(steps).unwrap_err();
            assert_eq!(error, expected);
            // The boxed form is what the configuration edge will hold.
            let boxed: Box<dyn Error> = Box::new(error);
            assert!(!boxed.to_string().is_empty());
        }
        check(vec![], LadderError::Empty);
        check(
            vec![Step { offset: 3, roles: vec![Role::Manager] }, Step { offset: 3, roles: vec![Role::Manager] }],
            LadderError::DuplicateOffset(3),
        );
        check(vec![Step { offset: 0, roles: vec![] }], LadderError::NoRoles(0));
    }

    #[test]
    fn step_lookup_and_labels() {
        fn check(kind: Kind, offset: i32, expected: Option<&str>) {
            let ladder = Ladder::default_for(kind);
            assert_eq!(ladder.step(offset).map(Step::label).as_deref(), expected, "{kind} {offset}");
        }
        check(Kind::Assessment, -3, Some("-3"));
        check(Kind::Assessment, 0, Some("0"));
        check(Kind::Assessment, 5, Some("+5"));
        check(Kind::Assessment, 4, None);
        check(Kind::Investigation, -14, Some("-14"));
        check(Kind::Protection, -3, None);
    }

    #[test]
    fn role_names_parse_back_and_match_serde() {
        // Their titles are the catalogue's (`crate::catalogue::tests::role_and_status_names`).
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
            let deserializer: StrDeserializer<ValueError> = role.as_str().into_deserializer();
            assert_eq!(Role::deserialize(deserializer), Ok(role));
        }
        let error = "teamlead".parse::<Role>().unwrap_err();
        assert_eq!(error, "unknown role \"teamlead\"; expected one of: caseworker, team_lead, manager");
    }
}
