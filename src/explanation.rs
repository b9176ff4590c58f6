//! One explanation of one deadline: what the law asks, what started the clock, how the last day
//! was computed, why it was moved or extended, and where the deadline stands.
//!
//! [`Explanation`] is plain data, computed by a pure function from a [`Deadline`] and `today`.
//! It holds no sentences, only the names of the days passed over: the sentences live once, in
//! `templates/explanation.{sv,en}.txt.j2` (short forms for the digest in
//! `explanation.{sv,en}.macros.j2`), and `fristvakt explain` and the notice mails both render them
//! through [`crate::mail::compose::explanation_lines`], so a deadline is explained the same way
//! wherever it is shown.
//!
//! The days a holiday move passed over are taken from the deadline's [`DueReason::Moved`], which
//! the state store keeps in full. Only a reason that carries none (a notice recorded before its
//! `due_reason` was kept) has them looked up in the (pure) calendar.
//!
//! Like a mail, an explanation carries only the kind, the dates and the status of a deadline —
//! nothing about the child.

use chrono::NaiveDate;
use serde::Serialize;

use crate::catalogue::Words;
use crate::config::Language;
use crate::rules::calendar::{deadline_moving_day, next_deadline_day, DayKind};
use crate::rules::{Deadline, DueReason, Kind, Period, RuleOptions, StartEvent, Status};

/// A deadline explained, ready for a template (`explanation` in its context).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Which clock (`protection`, `assessment`, …, the machine names of `rules::CLOCKS`).
    pub kind: Kind,
    /// The paragraph of the law in force that sets the clock.
    pub citation: &'static str,
    /// What started the clock.
    pub start_event: StartEvent,
    /// The day the clock started.
    pub start_on: NaiveDate,
    /// The time the law gives from the start.
    pub period: Period,
    /// The last day by plain calendar arithmetic.
    pub nominal_due_on: NaiveDate,
    /// The last day that applies.
    pub due_on: NaiveDate,
    /// Why the last day that applies is what it is.
    pub last_day: LastDay,
    /// The day the status is given for.
    pub today: NaiveDate,
    /// The status on `today`.
    pub status: Status,
    /// The day the clock was stopped, if it was.
    pub closed_on: Option<NaiveDate>,
    /// Days from `today` to the last day (negative when overdue); `None` once closed.
    pub days_left: Option<i64>,
}

/// Why the last day that applies is what it is, as `{"reason": "moved", …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum LastDay {
    /// The calendar day applies: it is a working day (or the holiday rule is off and it is one).
    Nominal,
    /// The calendar day would move under lag (1930:173), but the holiday rule is switched off in
    /// the configuration (`calendar.holiday_rule = false`).
    NotMoved {
        /// The calendar day and why it would have moved.
        day: SkippedDay,
    },
    /// "Genast" (protection, the reporter's late request): at the latest the day after the start;
    /// the holiday rule does not apply.
    NextDay,
    /// The holiday rule of lag (1930:173) moved the calendar day past these days.
    Moved {
        /// Every day passed over, in order, starting with the calendar day.
        skipped: Vec<SkippedDay>,
        /// How many days later the last day is.
        days: i64,
    },
    /// The last day was moved, but the days passed over are not known (a notice recorded
    /// without them) and the calendar does not give them.
    MovedUnexplained {
        /// How many days later the last day is.
        days: i64,
    },
    /// A decided extension set the last day (särskilda skäl for an investigation, synnerliga
    /// skäl for a preliminary assessment).
    Extended,
}

/// One day that moves a last day, with its names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedDay {
    pub on: NaiveDate,
    /// `saturday`, `sunday`, `christmas_eve`, `{"holiday": "christmas_day"}`, …
    pub day: DayKind,
    /// An ordinary Saturday or Sunday, which Swedish writes with "en": "är en lördag".
    pub weekend: bool,
    pub name_sv: &'static str,
    pub name_en: &'static str,
}

impl SkippedDay {
    fn new(on: NaiveDate, day: DayKind) -> SkippedDay {
        // The built-in names (`[day]` of templates/words.LANG.toml).
        let name = |language| Words::built_in(language).day(day);
        SkippedDay {
            on,
            day,
            weekend: day.is_weekend(),
            name_sv: name(Language::Swedish),
            name_en: name(Language::English),
        }
    }
}

impl Explanation {
    /// Explains `deadline` as it stands on `today`, under `options` (only used to say that a
    /// day was not moved because the holiday rule is switched off); see [`LastDay::new`].
    pub fn new(deadline: &Deadline, today: NaiveDate, options: RuleOptions) -> Explanation {
        let clock = deadline.kind.clock();
        let (start_event, period) = match deadline.due_reason {
            // The reporter's "genast" form: a request after the decision's week, or about a child
            // already under investigation, runs from the request.
            DueReason::NextDay if deadline.kind == Kind::ReporterInformation => {
                (StartEvent::InformationRequested, Period::AtOnce)
            }
            _ => (clock.start, clock.period),
        };
        let last_day =
            LastDay::new(deadline.kind, deadline.nominal_due_on, deadline.due_on, &deadline.due_reason, options);
        Explanation {
            kind: deadline.kind,
            citation: clock.citation,
            start_event,
            start_on: deadline.start_on,
            period,
            nominal_due_on: deadline.nominal_due_on,
            due_on: deadline.due_on,
            last_day,
            today,
            status: deadline.status(today),
            closed_on: deadline.closed_on,
            days_left: deadline.days_left(today),
        }
    }
}

impl LastDay {
    /// Why a deadline of `kind` has the last day `due_on` for the calendar day `nominal_due_on`,
    /// as `reason` records it; the digest uses it for its rows.
    ///
    /// The days passed over come from [`DueReason::Moved`]; they are looked up in the calendar
    /// only when the reason carries none, as a notice recorded before its `due_reason` was kept.
    pub fn new(
        kind: Kind,
        nominal_due_on: NaiveDate,
        due_on: NaiveDate,
        reason: &DueReason,
        options: RuleOptions,
    ) -> LastDay {
        let days = (due_on - nominal_due_on).num_days();
        match reason {
            DueReason::NextDay => LastDay::NextDay,
            DueReason::Extended { .. } => LastDay::Extended,
            DueReason::Moved { skipped } if !skipped.is_empty() => {
                LastDay::Moved { skipped: skipped.iter().map(|&(on, day)| SkippedDay::new(on, day)).collect(), days }
            }
            DueReason::Moved { .. } => match next_deadline_day(nominal_due_on) {
                (to, skipped) if to == due_on && !skipped.is_empty() => LastDay::Moved {
                    skipped: skipped.into_iter().map(|(on, day)| SkippedDay::new(on, day)).collect(),
                    days,
                },
                _ => LastDay::MovedUnexplained { days },
            },
            DueReason::Nominal => match deadline_moving_day(nominal_due_on) {
                Some(day) if !options.holiday_rule && kind.clock().holiday_rule => {
                    LastDay::NotMoved { day: SkippedDay::new(nominal_due_on, day) }
                }
                _ => LastDay::Nominal,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rules::{deadlines_for, CaseDates};

    const ON: RuleOptions = RuleOptions { holiday_rule: true };
    const OFF: RuleOptions = RuleOptions { holiday_rule: false };

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn deadline(dates: CaseDates, options: RuleOptions, kind: Kind) -> Deadline {
        deadlines_for(&dates, &[], options).into_iter().find(|x| x.kind == kind).unwrap()
    }

    fn received(on: &str) -> CaseDates {
        CaseDates { received_on: Some(d(on)), ..CaseDates::default() }
    }

    #[test]
    fn julafton_2025_moves_five_days_and_names_each_day() {
        let x = Explanation::new(&deadline(received("2025-12-10"), ON, Kind::Assessment), d("2025-12-22"), ON);
        assert_eq!((x.nominal_due_on, x.due_on), (d("2025-12-24"), d("2025-12-29")));
        assert_eq!(x.period, Period::Days { count: 14 });
        assert_eq!(x.start_event, StartEvent::ReportReceived);
        let LastDay::Moved { skipped, days } = &x.last_day else { panic!("{:?}", x.last_day) };
        assert_eq!(*days, 5);
        let names: Vec<_> = skipped.iter().map(|s| (s.on.to_string(), s.name_sv, s.weekend)).collect();
        assert_eq!(
            names,
            [
                ("2025-12-24".to_string(), "julafton", false),
                ("2025-12-25".to_string(), "juldagen", false),
                ("2025-12-26".to_string(), "annandag jul", false),
                ("2025-12-27".to_string(), "lördag", true),
                ("2025-12-28".to_string(), "söndag", true),
            ]
        );
        assert_eq!((x.status, x.days_left), (Status::DueSoon, Some(7)));
    }

    #[test]
    fn the_carried_days_win_over_the_calendar() {
        // A reason that says something the calendar would not: it is shown as carried.
        let mut x = deadline(received("2025-12-10"), ON, Kind::Assessment);
        x.due_reason = DueReason::Moved { skipped: vec![(d("2025-12-24"), DayKind::ChristmasEve)] };
        let e = Explanation::new(&x, d("2025-12-22"), ON);
        assert_eq!(
            e.last_day,
            LastDay::Moved { skipped: vec![SkippedDay::new(d("2025-12-24"), DayKind::ChristmasEve)], days: 5 }
        );
        // A reason read back without its days: the calendar fills them in, if it agrees.
        x.due_reason = DueReason::Moved { skipped: Vec::new() };
        let LastDay::Moved { skipped, .. } = Explanation::new(&x, d("2025-12-22"), ON).last_day else { panic!() };
        assert_eq!(skipped.len(), 5);
        x.due_on = d("2025-12-30");
        assert_eq!(Explanation::new(&x, d("2025-12-22"), ON).last_day, LastDay::MovedUnexplained { days: 6 });
    }

    #[test]
    fn reasons_for_each_kind() {
        let protection = Explanation::new(&deadline(received("2025-03-03"), ON, Kind::Protection), d("2025-03-03"), ON);
        assert_eq!((protection.period, protection.last_day), (Period::AtOnce, LastDay::NextDay));
        let plain = Explanation::new(&deadline(received("2025-03-03"), ON, Kind::Assessment), d("2025-03-03"), ON);
        assert_eq!(plain.last_day, LastDay::Nominal);
        let off = Explanation::new(&deadline(received("2025-12-10"), OFF, Kind::Assessment), d("2025-12-10"), OFF);
        assert_eq!(off.last_day, LastDay::NotMoved { day: SkippedDay::new(d("2025-12-24"), DayKind::ChristmasEve) });
        let dates = CaseDates {
            investigation_opened_on: Some(d("2025-03-03")),
            investigation_extended_to: Some(d("2025-09-30")),
            investigation_closed_on: Some(d("2025-09-01")),
            ..CaseDates::default()
        };
        let extended = Explanation::new(&deadline(dates, ON, Kind::Investigation), d("2025-09-10"), ON);
        assert_eq!(extended.last_day, LastDay::Extended);
        assert_eq!(extended.period, Period::Months { count: 4 });
        assert_eq!(extended.start_event, StartEvent::InvestigationOpened);
        assert_eq!(
            (extended.status, extended.closed_on, extended.days_left),
            (Status::Met, Some(d("2025-09-01")), None)
        );
    }

    #[test]
    fn serialises_as_plain_data_for_templates() {
        let x = Explanation::new(&deadline(received("2025-12-10"), ON, Kind::Assessment), d("2025-12-22"), ON);
        let json = serde_json::to_value(&x).unwrap();
        assert_eq!(json["kind"], "assessment");
        assert_eq!(json["start_event"], "report_received");
        assert_eq!(json["period"], serde_json::json!({"unit": "days", "count": 14}));
        assert_eq!(json["last_day"]["reason"], "moved");
        assert_eq!(json["last_day"]["days"], 5);
        assert_eq!(json["last_day"]["skipped"][1]["day"], serde_json::json!({"holiday": "christmas_day"}));
        assert_eq!(json["status"], "due_soon");
        assert_eq!(json["due_on"], "2025-12-29");
    }
}
