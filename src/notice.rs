//! Notices: what one e-mail about one deadline at one ladder step says and to whom it goes.
//!
//! A notice is written to the outbox (with a key unique per case, kind and step) before it is
//! sent; this module builds those rows. Rendering and sending live in `mail`.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::domain::{CaseRef, EmailAddress, UnitCode};
use crate::rules::{Deadline, DueReason, Kind, Role, Step};

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

/// The outbox key of a notice: unique per (case, kind, step), and for a cycle of a recurring
/// clock or the second cycle of `lvu_care_application` per (reference, kind, cycle start day,
/// step) (contract §3). A one-off clock's key has no cycle, as before cycles existed, so that
/// nothing recorded then is sent again.
pub fn notice_key(case_ref: &str, kind: Kind, cycle_start: Option<NaiveDate>, step: i32) -> String {
    match cycle_start {
        Some(cycle) => format!("notice/{}/{case_ref}/{}/{step}", kind.as_str(), cycle.format("%Y-%m-%d")),
        None => format!("notice/{}/{case_ref}/{step}", kind.as_str()),
    }
}

/// The cycle a notice key of `case_ref` and `kind` carries ([`notice_key`]), `None` for a
/// one-off clock's key.
pub fn cycle_of_key(key: &str, case_ref: &str, kind: Kind) -> Option<NaiveDate> {
    let rest = key.strip_prefix("notice/")?.strip_prefix(kind.as_str())?.strip_prefix('/')?;
    let rest = rest.strip_prefix(case_ref)?.strip_prefix('/')?;
    let (cycle, _step) = rest.split_once('/')?;
    NaiveDate::parse_from_str(cycle, "%Y-%m-%d").ok()
}

/// A stable `Message-ID` for an outbox key, so a repeated mail is recognisable as the same
/// one. The key is hashed, so the header carries no case reference.
pub fn message_id(key: &str, from: &EmailAddress) -> String {
    let domain = from.as_str().rsplit_once('@').map(|(_, d)| d).unwrap_or("fristvakt.invalid");
    format!("<{:016x}{:016x}.fristvakt@{domain}>", fnv1a(key, 0xcbf2_9ce4_8422_2325), fnv1a(key, 0x6c62_272e_07bb_0142))
}

/// FNV-1a: a fixed, documented hash, stable across Rust versions (unlike `DefaultHasher`).
fn fnv1a(text: &str, offset: u64) -> u64 {
    text.bytes().fold(offset, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Resolves a step's roles to addresses (contract §3): `caseworker` from the row, `team_lead`
/// and `manager` from the unit's entry, else `units.default`; de-duplicated. A missing caseworker
/// address falls back to the unit's team leads. Returns the recipients and whether that
/// fallback was used.
pub fn resolve_recipients(
    settings: &Settings,
    unit: &UnitCode,
    caseworker: Option<&EmailAddress>,
    roles: &[Role],
) -> (Vec<Recipient>, bool) {
    let mut out: Vec<Recipient> = Vec::new();
    let mut fell_back = false;
    let push = |out: &mut Vec<Recipient>, role: Role, address: &EmailAddress, instead: bool| {
        if !out.iter().any(|r| &r.address == address) {
            out.push(Recipient { role, address: address.clone(), instead_of_caseworker: instead });
        }
    };
    for role in roles {
        match role {
            Role::Caseworker => match caseworker {
                Some(a) => push(&mut out, Role::Caseworker, a, false),
                None => {
                    fell_back = true;
                    for a in settings.units.addresses(unit, Role::TeamLead) {
                        push(&mut out, Role::TeamLead, &a, true);
                    }
                }
            },
            other => {
                for a in settings.units.addresses(unit, *other) {
                    push(&mut out, *other, &a, false);
                }
            }
        }
    }
    (out, fell_back)
}

/// The payload of a notice for a deadline at a step.
pub fn payload(
    case_ref: &CaseRef,
    unit: &UnitCode,
    deadline: &Deadline,
    step: &Step,
    today: NaiveDate,
) -> NoticePayload {
    NoticePayload {
        case_ref: case_ref.clone(),
        unit: unit.clone(),
        kind: deadline.kind,
        step: step.offset,
        start_on: deadline.start_on,
        nominal_due_on: deadline.nominal_due_on,
        due_on: deadline.due_on,
        extended_to: match deadline.due_reason {
            DueReason::Extended { to } => Some(to),
            _ => None,
        },
        due_reason: Some(deadline.due_reason.clone()),
        decided_on: today,
        caseworker: None,
        case_of: None,
    }
}

impl NoticePayload {
    /// The payload naming the responsible caseworker.
    pub fn with_caseworker(self, caseworker: Option<EmailAddress>) -> NoticePayload {
        NoticePayload { caseworker, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_and_carry_no_case_reference() {
        let from = EmailAddress::parse("fristvakt@kommun.example").unwrap();
        let key = notice_key("2026-BU-0142", Kind::Assessment, None, -3);
        let id = message_id(&key, &from);
        assert_eq!(id, message_id(&key, &from));
        assert_ne!(id, message_id(&notice_key("2026-BU-0142", Kind::Assessment, None, 0), &from));
        assert!(!id.contains("0142"), "{id}");
        assert!(id.starts_with('<') && id.ends_with("@kommun.example>"));
    }

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_payload_keeps_the_due_reason_and_reads_older_payloads() {
        use crate::rules::calendar::{DayKind, Holiday};
        let deadline = Deadline {
            kind: Kind::Assessment,
            start_on: d("2025-12-10"),
            nominal_due_on: d("2025-12-24"),
            due_on: d("2025-12-29"),
            closed_on: None,
            due_reason: DueReason::Moved {
                skipped: vec![
                    (d("2025-12-24"), DayKind::ChristmasEve),
                    (d("2025-12-25"), DayKind::Holiday(Holiday::ChristmasDay)),
                ],
            },
        };
        let unit = UnitCode::parse("BRO-BU").unwrap();
        let step = Step { offset: -3, roles: vec![Role::Caseworker] };
        let payload = payload(&CaseRef::parse("2025-BU-0001").unwrap(), &unit, &deadline, &step, d("2025-12-21"));
        let json = serde_json::to_string(&payload).unwrap();
        assert!(
            json.contains(r#""due_reason":{"reason":"moved","skipped":[["2025-12-24","christmas_eve"],"#),
            "{json}"
        );
        let back: NoticePayload = serde_json::from_str(&json).unwrap();
        assert_eq!(back.deadline(), deadline);
        // A payload recorded before `due_reason` was kept.
        let old = json.split(r#","due_reason""#).next().unwrap().to_string() + r#","decided_on":"2025-12-21"}"#;
        let old: NoticePayload = serde_json::from_str(&old).unwrap();
        assert_eq!(old.due_reason, None);
        assert_eq!(old.deadline().due_reason, DueReason::Moved { skipped: Vec::new() });
    }
}
