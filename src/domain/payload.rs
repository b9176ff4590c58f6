//! The payloads of outbox rows: what a notice and a digest say, as decided and stored, so that
//! a mail is rendered (and re-rendered after a failed attempt) from exactly what was decided.
//! Plain data, here so that the state store keeps them without importing `notice` or `digest`,
//! which build them.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{CaseRef, EmailAddress, UnitCode};
use crate::rules::{Deadline, DueReason, Kind, Role};

// Notices (built by `notice`)

/// One addressee of a notice and the role it was chosen for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub role: Role,
    pub address: EmailAddress,
    /// Chosen in place of a caseworker whose address is missing or invalid.
    #[serde(default)]
    pub instead_of_caseworker: bool,
}

/// The facts a notice mail is rendered from: the deadline's dates, never anything else about
/// the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticePayload {
    pub case_ref: CaseRef,
    pub unit: UnitCode,
    pub kind: Kind,
    pub step: i32,
    pub start_on: NaiveDate,
    pub nominal_due_on: NaiveDate,
    pub due_on: NaiveDate,
    pub extended_to: Option<NaiveDate>,
    /// Why `due_on` is what it is, with the days the holiday rule passed over, so that the mail
    /// explains the deadline exactly as computed. Absent in notices recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_reason: Option<DueReason>,
    /// The day the step was reached.
    pub decided_on: NaiveDate,
    /// The responsible caseworker's address (staff, contract §3), named in a notice that goes
    /// to a team lead or manager only. Absent in notices recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caseworker: Option<EmailAddress>,
    /// A placement's case (its row's `case_ref`), linked by `mail.case_link` when
    /// `mail.placement_link` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_of: Option<CaseRef>,
}

impl NoticePayload {
    /// The deadline the notice is about, open as it was when the step was reached. A notice
    /// recorded without its `due_reason` gets the one its dates imply; the days a holiday move
    /// passed over are then unknown here.
    pub fn deadline(&self) -> Deadline {
        let due_reason = match (&self.due_reason, self.extended_to) {
            (Some(reason), _) => reason.clone(),
            (None, Some(to)) => DueReason::Extended { to },
            (None, None) if self.kind == Kind::Protection => DueReason::NextDay,
            (None, None) if self.nominal_due_on == self.due_on => DueReason::Nominal,
            (None, None) => DueReason::Moved { skipped: Vec::new() },
        };
        Deadline {
            kind: self.kind,
            start_on: self.start_on,
            nominal_due_on: self.nominal_due_on,
            due_on: self.due_on,
            closed_on: None,
            due_reason,
        }
    }
}

impl NoticePayload {
    /// The payload naming the responsible caseworker.
    pub fn with_caseworker(self, caseworker: Option<EmailAddress>) -> NoticePayload {
        NoticePayload { caseworker, ..self }
    }
}

// Digests (built by `digest`)

/// One manager's digest for one day. Serialised as the outbox payload, so the mail can be
/// rendered (and re-rendered after a failed attempt) from exactly what was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub manager: EmailAddress,
    pub date: NaiveDate,
    /// The units the manager leads, by unit code.
    pub units: Vec<UnitDigest>,
}

impl Digest {
    /// Overdue deadlines over all units (not only the listed rows), placements' included.
    pub fn overdue_total(&self) -> usize {
        self.units.iter().map(|u| u.overdue.total + u.placements_overdue()).sum()
    }

    /// Deadlines due within `digest::UPCOMING_DAYS` over all units, placements' included.
    pub fn upcoming_total(&self) -> usize {
        self.units.iter().map(|u| u.upcoming.total + u.placements.total - u.placements_overdue()).sum()
    }

    /// Whether there is anything overdue or due soon, or a chain to look at.
    pub fn has_news(&self) -> bool {
        self.overdue_total() + self.upcoming_total() > 0 || self.units.iter().any(|u| !u.chains.is_empty())
    }
}

/// What a digest says about one unit (enhet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitDigest {
    pub unit: UnitCode,
    /// The configured display name, if any.
    pub name: Option<String>,
    /// Overdue (försenade), most overdue first.
    pub overdue: Section,
    /// Due today or within `digest::UPCOMING_DAYS`, soonest first.
    pub upcoming: Section,
    /// The placements' and LVU decisions' deadlines (contract §1b) overdue or due within
    /// `digest::UPCOMING_DAYS`, the LVU clocks first (a miss there ends a custody), then most overdue
    /// first; absent in digests recorded before placements were watched.
    #[serde(default)]
    pub placements: Section,
    /// Overdue and upcoming counts for every case kind and each placement kind with any, in
    /// [`Kind::ALL`] order.
    pub kinds: Vec<KindCount>,
    /// Deadlines whose legal last day fell in the last `digest::COMPLIANCE_DAYS` days.
    pub compliance: Compliance,
    /// Possible chained investigations (JO 2565-2016) whose later investigation, in this unit,
    /// is still open: by the two case references only.
    #[serde(default)]
    pub chains: Vec<ChainPair>,
}

impl UnitDigest {
    /// How many of the placements' deadlines are overdue (from the counts per kind).
    fn placements_overdue(&self) -> usize {
        self.kinds.iter().filter(|k| k.kind.is_placement()).map(|k| k.overdue).sum()
    }
}

/// Two investigations of one child, the later opened within `rules.chain_window` after the
/// earlier closed; named by case references only (the child is never named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPair {
    pub earlier: CaseRef,
    pub later: CaseRef,
}

/// A list of deadlines, cut at `digest.max_rows`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// The rows shown, at most `digest.max_rows`.
    pub rows: Vec<DigestRow>,
    /// How many there are in all.
    pub total: usize,
}

impl Section {
    /// How many were cut ("… och N till").
    pub fn more(&self) -> usize {
        self.total.saturating_sub(self.rows.len())
    }
}

/// One deadline in a digest: only what contract §3 allows in mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRow {
    pub case_ref: CaseRef,
    pub kind: Kind,
    /// The legal last day.
    pub due_on: NaiveDate,
    /// The last day by the calendar (absent in digests recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominal_due_on: Option<NaiveDate>,
    /// Why `due_on` is what it is (absent in digests recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_reason: Option<DueReason>,
    /// Days from `date` to `due_on`; negative when overdue.
    pub days_left: i64,
    pub caseworker: Option<EmailAddress>,
    /// The case in the register (`mail.case_link`).
    pub link: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCount {
    pub kind: Kind,
    pub overdue: usize,
    pub upcoming: usize,
}

/// Deadlines of the last `digest::COMPLIANCE_DAYS` days that are closed or past due, as in
/// `report compliance`: met / (met + missed + overdue).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compliance {
    pub met: usize,
    pub missed: usize,
    pub overdue: usize,
}

impl Compliance {
    pub fn total(&self) -> usize {
        self.met + self.missed + self.overdue
    }

    /// The share met in whole percent (rounded half up), or `None` when no deadline fell due.
    pub fn share_percent(&self) -> Option<usize> {
        let total = self.total();
        (total > 0).then(|| (self.met * 100 + total / 2) / total)
    }
}
