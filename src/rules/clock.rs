//! The law as one table: every statutory clock fristvakt watches, declared once.
//!
//! Each [`Kind`] has exactly one [`Clock`] in [`CLOCKS`], holding every property of the clock that
//! is not the logic of when it starts and closes: its machine name, the event that starts it, the
//! time the law gives, the register column of a decided extension, the columns that close it,
//! whether the holiday rule of lag (1930:173) 2 § applies, the reminder window, the default
//! escalation ladder, the paragraph of the law in force and the colour of its charts. The words
//! (the names in Swedish and English, the rule in one sentence, what starts it) are not here: they
//! live in `templates/clocks.{sv,en}.toml`, keyed by the machine name, so that this module stays
//! free of language.
//!
//! Everything that lists kinds — configuration keys (`ladder.<key>`), metric labels, the
//! explanation, the report's colours, the docs' tables — reads this table. Adding a clock is an
//! entry here, its start and close logic in [`super::deadline`], its words in the catalogue, and
//! its tests (ARCHITECTURE.md, "How to add a clock").

use chrono::NaiveDate;
use serde::Serialize;

use super::calendar::{add_months, shift_days_saturating};
use super::deadline::Kind;
use super::ladder::Role;

/// The event that starts a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartEvent {
    /// The report (anmälan) came in.
    ReportReceived,
    /// The decision to open an investigation (beslut att inleda utredning).
    InvestigationOpened,
    /// The investigation was closed by a decision.
    InvestigationClosed,
    /// The decision to open or not open an investigation (the preliminary assessment's end).
    AssessmentDecision,
    /// The person who made the report asked to be told of that decision.
    InformationRequested,
    /// The decision on an emergency custody (omedelbart omhändertagande, LVU 6 §).
    CustodyDecided,
    /// The emergency custody was executed.
    CustodyExecuted,
    /// The court's care decision gained legal force.
    CareDecisionInForce,
    /// The placement or care began, or was last reviewed (övervägande/omprövning).
    PlacementReviewed,
    /// The restriction (LVU 14 § andra st.) was decided, or last reviewed.
    RestrictionReviewed,
    /// The child came to live in the family home, or a custody transfer was last considered.
    CustodyConsidered,
    /// The placement or the care ended (for LVU, the follow-up's own start when it waited for
    /// the child's return home).
    PlacementEnded,
}

impl StartEvent {
    /// Every start event.
    pub const ALL: [StartEvent; 12] = [
        StartEvent::ReportReceived,
        StartEvent::InvestigationOpened,
        StartEvent::InvestigationClosed,
        StartEvent::AssessmentDecision,
        StartEvent::InformationRequested,
        StartEvent::CustodyDecided,
        StartEvent::CustodyExecuted,
        StartEvent::CareDecisionInForce,
        StartEvent::PlacementReviewed,
        StartEvent::RestrictionReviewed,
        StartEvent::CustodyConsidered,
        StartEvent::PlacementEnded,
    ];

    /// The stable machine name, the key of its words in the catalogue.
    pub fn as_str(self) -> &'static str {
        match self {
            StartEvent::ReportReceived => "report_received",
            StartEvent::InvestigationOpened => "investigation_opened",
            StartEvent::InvestigationClosed => "investigation_closed",
            StartEvent::AssessmentDecision => "assessment_decision",
            StartEvent::InformationRequested => "information_requested",
            StartEvent::CustodyDecided => "custody_decided",
            StartEvent::CustodyExecuted => "custody_executed",
            StartEvent::CareDecisionInForce => "care_decision_in_force",
            StartEvent::PlacementReviewed => "placement_reviewed",
            StartEvent::RestrictionReviewed => "restriction_reviewed",
            StartEvent::CustodyConsidered => "custody_considered",
            StartEvent::PlacementEnded => "placement_ended",
        }
    }
}

/// The time the law gives from the start, as `{"unit": "days", "count": 14}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "unit", rename_all = "snake_case")]
pub enum Period {
    /// "Genast": the same day, at the latest the next (no holiday rule).
    AtOnce,
    /// A number of days counted from the start day (day 0).
    Days { count: u32 },
    /// A number of weeks: seven days each, the start day being day 0.
    Weeks { count: u32 },
    /// A number of months: the same day number, else the month's last day (lag 1930:173 1 §).
    Months { count: u32 },
    /// A number of years, counted as twelve months each.
    Years { count: u32 },
}

impl Period {
    /// The nominal last day of a clock started on `start`: plain calendar arithmetic.
    pub fn last_day_from(self, start: NaiveDate) -> NaiveDate {
        match self {
            Period::AtOnce => start,
            Period::Days { count } => shift_days_saturating(start, i64::from(count)),
            Period::Weeks { count } => shift_days_saturating(start, 7 * i64::from(count)),
            Period::Months { count } => add_months(start, count),
            Period::Years { count } => add_months(start, 12 * count),
        }
    }
}

/// One statutory clock: everything about it but the logic of when it starts and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Which clock.
    pub kind: Kind,
    /// The stable machine name used in configuration, JSON, outbox keys, metrics and the words'
    /// catalogue.
    pub key: &'static str,
    /// What starts it (the usual start; `reporter_information` starts at the request in its
    /// "genast" form).
    pub start: StartEvent,
    /// The time the law gives.
    pub period: Period,
    /// The register column of a decided extension: the new last day.
    pub extension: Option<&'static str>,
    /// The register columns whose dates close it, in the order they are tried.
    pub closed_by: &'static [&'static str],
    /// Whether lag (1930:173) 2 § moves its last day off weekends, holidays and the eves.
    pub holiday_rule: bool,
    /// How many days before its last day a deadline counts as due soon (register contract §2).
    pub reminder_window_days: i64,
    /// The default escalation ladder (register contract §3): offset in days → roles.
    pub ladder: &'static [(i32, &'static [Role])],
    /// The paragraph of the law in force that sets the clock.
    pub citation: &'static str,
    /// The colour of its bars and lines in the HTML report.
    pub colour: &'static str,
    /// A clock of the placements view (contract §1b): its reference is the `placement_ref`.
    pub of_placement: bool,
    /// A recurring clock (contract §2 "Recurring clocks"): its deadlines are cycles, each
    /// identified by its start day; a later review closes the running one and starts the next.
    pub recurring: bool,
}

use Role::{Caseworker as C, Manager as M, TeamLead as T};

/// Every clock, in [`Kind::ALL`] order (a test checks that the two agree).
pub const CLOCKS: [Clock; 13] = [
    Clock {
        kind: Kind::Protection,
        key: "protection",
        start: StartEvent::ReportReceived,
        period: Period::AtOnce,
        extension: None,
        closed_by: &["protection_assessed_on"],
        // The on-call service works weekends: "genast" never moves.
        holiday_rule: false,
        reminder_window_days: 0,
        ladder: &[(0, &[C, T]), (1, &[M])],
        citation: "20 kap. 1 § socialtjänstlagen (2025:400)",
        colour: "#1b6b93",
        of_placement: false,
        recurring: false,
    },
    Clock {
        kind: Kind::Assessment,
        key: "assessment",
        start: StartEvent::ReportReceived,
        period: Period::Days { count: 14 },
        extension: Some("assessment_extended_to"),
        closed_by: &["assessment_decided_on", "investigation_opened_on"],
        holiday_rule: true,
        reminder_window_days: 3,
        ladder: &[(-3, &[C]), (0, &[C]), (1, &[C, T]), (5, &[M])],
        citation: "20 kap. 2 § socialtjänstlagen (2025:400)",
        colour: "#d9822b",
        of_placement: false,
        recurring: false,
    },
    Clock {
        kind: Kind::Investigation,
        key: "investigation",
        start: StartEvent::InvestigationOpened,
        period: Period::Months { count: 4 },
        extension: Some("investigation_extended_to"),
        closed_by: &["investigation_closed_on"],
        holiday_rule: true,
        reminder_window_days: 14,
        ladder: &[(-14, &[C]), (-3, &[C, T]), (1, &[T]), (14, &[M])],
        citation: "20 kap. 3 § socialtjänstlagen (2025:400)",
        colour: "#4f8a3c",
        of_placement: false,
        recurring: false,
    },
    Clock {
        kind: Kind::FollowUp,
        key: "follow_up",
        start: StartEvent::InvestigationClosed,
        period: Period::Months { count: 6 },
        extension: None,
        closed_by: &["follow_up_ended_on", "investigation_opened_on (another case of the child)"],
        holiday_rule: true,
        reminder_window_days: 14,
        ladder: &[(-14, &[C]), (1, &[C, T]), (14, &[M])],
        citation: "23 kap. 1 §, 5 § socialtjänstlagen (2025:400)",
        colour: "#8a3c7a",
        of_placement: false,
        recurring: false,
    },
    Clock {
        kind: Kind::ReporterInformation,
        key: "reporter_information",
        start: StartEvent::AssessmentDecision,
        period: Period::Weeks { count: 1 },
        extension: None,
        closed_by: &["reporter_informed_on"],
        holiday_rule: true,
        reminder_window_days: 2,
        ladder: &[(-2, &[C]), (1, &[C, T])],
        citation: "19 kap. 6 § socialtjänstlagen (2025:400)",
        colour: "#6b6b6b",
        of_placement: false,
        recurring: false,
    },
    Clock {
        kind: Kind::LvuCourtSubmission,
        key: "lvu_court_submission",
        start: StartEvent::CustodyDecided,
        // "Inom en vecka från den dag då beslutet fattades"; JO: lag (1930:173) applies.
        period: Period::Days { count: 7 },
        extension: None,
        closed_by: &["submitted_to_court_on"],
        holiday_rule: true,
        reminder_window_days: 3,
        // A miss ends the custody and cannot be repaired: the manager hears of it before the day.
        ladder: &[(-3, &[C, T]), (-1, &[C, T, M]), (0, &[M]), (1, &[M])],
        citation: "7 § lagen (1990:52) med särskilda bestämmelser om vård av unga",
        colour: "#b22222",
        of_placement: true,
        recurring: false,
    },
    Clock {
        kind: Kind::LvuCareApplication,
        key: "lvu_care_application",
        start: StartEvent::CustodyExecuted,
        period: Period::Days { count: 28 },
        // Recorded without the request's day, the court's new day is this clock's last day.
        extension: Some("application_extended_to"),
        closed_by: &["care_applied_on", "application_extension_requested_on"],
        holiday_rule: true,
        reminder_window_days: 7,
        ladder: &[(-7, &[C]), (-3, &[C, T]), (-1, &[C, T, M]), (1, &[M])],
        citation: "8 §, 9 § lagen (1990:52) med särskilda bestämmelser om vård av unga",
        colour: "#e0457b",
        of_placement: true,
        recurring: false,
    },
    Clock {
        kind: Kind::LvuCareStart,
        key: "lvu_care_start",
        start: StartEvent::CareDecisionInForce,
        period: Period::Days { count: 28 },
        extension: None,
        closed_by: &["executed_on"],
        holiday_rule: true,
        reminder_window_days: 7,
        ladder: &[(-7, &[C]), (-2, &[C, T]), (1, &[M])],
        citation: "5 § lagen (1990:52) med särskilda bestämmelser om vård av unga",
        colour: "#7a4fbf",
        of_placement: true,
        recurring: false,
    },
    Clock {
        kind: Kind::PlacementReview,
        key: "placement_review",
        start: StartEvent::PlacementReviewed,
        period: Period::Months { count: 6 },
        extension: None,
        closed_by: &["last_reviewed_on (a later review)", "ended_on"],
        holiday_rule: true,
        reminder_window_days: 30,
        ladder: &[(-30, &[C]), (-7, &[C, T]), (1, &[T]), (14, &[M])],
        citation: "13 § lagen (1990:52) med särskilda bestämmelser om vård av unga; 22 kap. 13 § socialtjänstlagen (2025:400)",
        colour: "#3d5a80",
        of_placement: true,
        recurring: true,
    },
    Clock {
        kind: Kind::RestrictionReview,
        key: "restriction_review",
        start: StartEvent::RestrictionReviewed,
        period: Period::Months { count: 3 },
        extension: None,
        closed_by: &["restriction_last_reviewed_on (a later review)", "restriction_ended_on", "ended_on"],
        holiday_rule: true,
        reminder_window_days: 14,
        ladder: &[(-14, &[C]), (-3, &[C, T]), (1, &[M])],
        citation: "14 § lagen (1990:52) med särskilda bestämmelser om vård av unga",
        colour: "#c44536",
        of_placement: true,
        recurring: true,
    },
    Clock {
        kind: Kind::CustodyTransferReview,
        key: "custody_transfer_review",
        start: StartEvent::CustodyConsidered,
        // Two years from the child's coming to the home; after a consideration, one year.
        period: Period::Years { count: 2 },
        extension: None,
        closed_by: &["custody_considered_on (a later consideration)", "ended_on"],
        holiday_rule: true,
        reminder_window_days: 30,
        ladder: &[(-30, &[C]), (1, &[C, T]), (30, &[M])],
        citation: "22 kap. 14 § socialtjänstlagen (2025:400); 13 c § lagen (1990:52) med särskilda bestämmelser om vård av unga",
        colour: "#5b8e7d",
        of_placement: true,
        recurring: true,
    },
    Clock {
        kind: Kind::EmergencyHomeLimit,
        key: "emergency_home_limit",
        start: StartEvent::InvestigationClosed,
        period: Period::Months { count: 2 },
        extension: Some("emergency_home_extended_to"),
        closed_by: &["ended_on"],
        holiday_rule: true,
        reminder_window_days: 14,
        ladder: &[(-14, &[C, T]), (1, &[M])],
        citation: "22 kap. 4 § socialtjänstlagen (2025:400)",
        colour: "#2a9d8f",
        of_placement: true,
        recurring: false,
    },
    Clock {
        kind: Kind::PlacementFollowUp,
        key: "placement_follow_up",
        start: StartEvent::PlacementEnded,
        period: Period::Months { count: 6 },
        extension: None,
        closed_by: &["follow_up_ended_on", "investigation_opened_on (a case of the child)"],
        holiday_rule: true,
        reminder_window_days: 14,
        ladder: &[(-14, &[C]), (1, &[C, T]), (14, &[M])],
        citation: "23 kap. 2 §, 5 § socialtjänstlagen (2025:400); 21 b–c §§ lagen (1990:52) med särskilda bestämmelser om vård av unga",
        colour: "#a0781e",
        of_placement: true,
        recurring: false,
    },
];

impl Kind {
    /// This kind's clock.
    pub fn clock(self) -> &'static Clock {
        &CLOCKS[self as usize]
    }
}

/// The docs' table of the clocks (docs/deadlines.md holds it; a test keeps the two equal).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| kind | starts | time | holiday rule | extension | closed by | reminders from | default ladder | law |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for clock in &CLOCKS {
        let period = match clock.period {
            Period::AtOnce => "at once (the same day, at the latest the next)".to_string(),
            Period::Days { count } => format!("{count} days"),
            Period::Weeks { count } => format!("{count} week{}", if count == 1 { "" } else { "s" }),
            Period::Months { count } => format!("{count} months"),
            Period::Years { count } => format!("{count} years"),
        };
        let ladder: Vec<String> = clock
            .ladder
            .iter()
            .map(|(offset, roles)| {
                let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                format!("{} → {}", super::ladder::offset_label(*offset), roles.join(", "))
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} days before | {} | {} |\n",
            clock.key,
            clock.start.as_str().replace('_', " "),
            period,
            if clock.holiday_rule { "yes" } else { "no" },
            clock.extension.map_or_else(|| "none".to_string(), |c| format!("`{c}`")),
            clock.closed_by.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
            clock.reminder_window_days,
            ladder.join(" · "),
            clock.citation,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_clock_per_kind_in_kind_order() {
        assert_eq!(CLOCKS.len(), Kind::ALL.len());
        for (index, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(CLOCKS[index].kind, *kind, "CLOCKS[{index}]");
            assert_eq!(kind.clock().kind, *kind);
        }
        let mut keys: Vec<&str> = CLOCKS.iter().map(|c| c.key).collect();
        let mut colours: Vec<&str> = CLOCKS.iter().map(|c| c.colour).collect();
        keys.sort_unstable();
        keys.dedup();
        colours.sort_unstable();
        colours.dedup();
        assert_eq!((keys.len(), colours.len()), (CLOCKS.len(), CLOCKS.len()), "keys and colours are unique");
    }

    #[test]
    fn reminder_windows_and_citations_are_the_contracts() {
        let rows: Vec<_> = CLOCKS.iter().map(|c| (c.key, c.reminder_window_days, c.citation)).collect();
        assert_eq!(
            rows,
            [
                ("protection", 0, "20 kap. 1 § socialtjänstlagen (2025:400)"),
                ("assessment", 3, "20 kap. 2 § socialtjänstlagen (2025:400)"),
                ("investigation", 14, "20 kap. 3 § socialtjänstlagen (2025:400)"),
                ("follow_up", 14, "23 kap. 1 §, 5 § socialtjänstlagen (2025:400)"),
                ("reporter_information", 2, "19 kap. 6 § socialtjänstlagen (2025:400)"),
                ("lvu_court_submission", 3, "7 § lagen (1990:52) med särskilda bestämmelser om vård av unga"),
                ("lvu_care_application", 7, "8 §, 9 § lagen (1990:52) med särskilda bestämmelser om vård av unga"),
                ("lvu_care_start", 7, "5 § lagen (1990:52) med särskilda bestämmelser om vård av unga"),
                (
                    "placement_review",
                    30,
                    "13 § lagen (1990:52) med särskilda bestämmelser om vård av unga; 22 kap. 13 § socialtjänstlagen (2025:400)"
                ),
                ("restriction_review", 14, "14 § lagen (1990:52) med särskilda bestämmelser om vård av unga"),
                (
                    "custody_transfer_review",
                    30,
                    "22 kap. 14 § socialtjänstlagen (2025:400); 13 c § lagen (1990:52) med särskilda bestämmelser om vård av unga"
                ),
                ("emergency_home_limit", 14, "22 kap. 4 § socialtjänstlagen (2025:400)"),
                (
                    "placement_follow_up",
                    14,
                    "23 kap. 2 §, 5 § socialtjänstlagen (2025:400); 21 b–c §§ lagen (1990:52) med särskilda bestämmelser om vård av unga"
                ),
            ]
        );
    }

    #[test]
    fn periods_count_as_the_law_counts() {
        let d = |t: &str| NaiveDate::parse_from_str(t, "%Y-%m-%d").unwrap();
        assert_eq!(Period::AtOnce.last_day_from(d("2026-03-03")), d("2026-03-03"));
        assert_eq!(Period::Days { count: 14 }.last_day_from(d("2026-03-03")), d("2026-03-17"));
        assert_eq!(Period::Weeks { count: 1 }.last_day_from(d("2026-03-03")), d("2026-03-10"));
        assert_eq!(Period::Months { count: 6 }.last_day_from(d("2026-08-31")), d("2027-02-28"));
        assert_eq!(Period::Years { count: 2 }.last_day_from(d("2028-02-29")), d("2030-02-28"));
    }

    #[test]
    fn the_docs_table_is_the_clock_table() {
        let docs = include_str!("../../docs/deadlines.md");
        assert!(
            docs.contains(&markdown_table()),
            "docs/deadlines.md must hold the table rules::clock::markdown_table() prints:\n{}",
            markdown_table()
        );
    }
}
