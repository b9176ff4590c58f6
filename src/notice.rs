//! Notices: what one e-mail about one deadline at one ladder step says and to whom it goes.
//!
//! A notice is written to the outbox (with a key unique per case, kind and step) before it is
//! sent; this module builds those rows. Rendering and sending live in `mail`.

use chrono::NaiveDate;

use crate::config::Settings;
pub use crate::domain::payload::{NoticePayload, Recipient};
use crate::domain::{CaseRef, EmailAddress, OutboxKey, UnitCode};
use crate::rules::{Deadline, DueReason, Kind, Role, Step};

/// The outbox key of a notice: unique per (case, kind, step), and for a cycle of a recurring
/// clock or the second cycle of `lvu_care_application` per (reference, kind, cycle start day,
/// step) (contract §3). A one-off clock's key has no cycle, as before cycles existed, so that
/// nothing recorded then is sent again.
pub fn notice_key(case_ref: &CaseRef, kind: Kind, cycle_start: Option<NaiveDate>, step: i32) -> String {
    OutboxKey::notice(case_ref.clone(), kind, cycle_start, step).to_string()
}

pub use crate::domain::cycle_of_key;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_and_carry_no_case_reference() {
        let from = EmailAddress::parse("fristvakt@kommun.example").unwrap();
        let key = notice_key(&"2026-BU-0142".parse().unwrap(), Kind::Assessment, None, -3);
        let id = message_id(&key, &from);
        assert_eq!(id, message_id(&key, &from));
        assert_ne!(id, message_id(&notice_key(&"2026-BU-0142".parse().unwrap(), Kind::Assessment, None, 0), &from));
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
