//! The law fristvakt computes: calendar, deadlines and the escalation ladder.
//!
//! Architecture invariant: this module is pure. It takes dates, options and `today` and returns
//! values; it never reads a clock, configuration, a database or the network, and depends on
//! nothing but `chrono` and `serde` derives. Everything the law says is tested here, table by
//! table, against the examples in `shared/domain/statutory-deadlines.md`.

/// The revision of the law's code: raise it with any change that alters a computed deadline
/// (a date, a reason, a kind a case gets). Stored deadlines carry prints of the register row and
/// of this revision (`state::prints`); a new revision makes every print differ, so the next full
/// pass computes every case again instead of keeping what the old code computed.
pub const REVISION: u32 = 4;

pub mod calendar;
pub mod chain;
pub mod clock;
pub mod deadline;
pub mod ladder;
pub mod placement;

pub use calendar::{DayKind, Holiday};
pub use chain::{find_chains, is_chained, InvestigationSpan};
pub use clock::{Clock, Period, StartEvent, CLOCKS};
pub use deadline::{
    deadlines_for, report_during_open_investigation, CaseDates, Deadline, DueReason, Kind, OtherInvestigation,
    RuleOptions, Status, REPORTER_INFORMATION_IN_FORCE,
};
pub use ladder::{beyond_first_sight, decide, offset_label, Ladder, LadderDecision, LadderError, Role, Step};
pub use placement::{
    application_second_cycle, cycle_change, placement_deadlines_for, Basis, ContextNeeds, CycleChange, Home,
    PlacementContext, PlacementDates,
};
