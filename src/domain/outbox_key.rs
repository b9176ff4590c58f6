//! The key of an outbox row ([`OutboxKey`]): what makes a mail unique, so that it is written and
//! sent once. Stored as text (`outbox.notice_key`); the text format is fixed, since existing
//! databases hold it:
//!
//! - `notice/<kind>/<case_ref>/<step>` for a step of a one-off clock,
//!   `notice/<kind>/<case_ref>/<cycle start YYYY-MM-DD>/<step>` for a cycle of a recurring clock
//!   (contract §3), each followed by one `/up` per role the notice went up;
//! - `digest/<date>/<manager>`: a manager's digest of a day;
//! - `digest-run/<date>`: the record that the digests of a day were decided.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;

use crate::domain::{CaseRef, EmailAddress};
use crate::rules::Kind;

/// The notice of one step of one deadline, possibly carried one or more roles up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoticeKey {
    pub kind: Kind,
    pub case_ref: CaseRef,
    /// The cycle of a recurring clock (or the second cycle of `lvu_care_application`); `None`
    /// for a one-off clock, whose key has no cycle, as before cycles existed.
    pub cycle: Option<NaiveDate>,
    pub step: i32,
    /// How many roles up the notice went because it reached nobody (`/up` each).
    pub up: u8,
}

/// The key of an outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OutboxKey {
    Notice(NoticeKey),
    /// A manager's digest of a day: unique per manager and date.
    Digest {
        date: NaiveDate,
        manager: EmailAddress,
    },
    /// The digests of a day were decided.
    DigestRun {
        date: NaiveDate,
    },
}

/// Text that is not an outbox key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an outbox key")]
pub struct BadOutboxKey;

const DATE: &str = "%Y-%m-%d";

impl OutboxKey {
    /// The key of a step's notice (not yet carried up).
    pub fn notice(case_ref: CaseRef, kind: Kind, cycle: Option<NaiveDate>, step: i32) -> OutboxKey {
        OutboxKey::Notice(NoticeKey { kind, case_ref, cycle, step, up: 0 })
    }

    /// The key of this notice carried one role further up; a digest key is returned unchanged.
    pub fn up(&self) -> OutboxKey {
        match self {
            OutboxKey::Notice(n) => OutboxKey::Notice(NoticeKey { up: n.up + 1, ..n.clone() }),
            other => other.clone(),
        }
    }

    /// Whether this is a notice carried up (a role above the step's own).
    pub fn is_up(&self) -> bool {
        matches!(self, OutboxKey::Notice(n) if n.up > 0)
    }

    /// Whether this is a manager's digest (not the record of a run).
    pub fn is_digest(&self) -> bool {
        matches!(self, OutboxKey::Digest { .. })
    }
}

impl fmt::Display for OutboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboxKey::Notice(n) => {
                write!(f, "notice/{}/{}/", n.kind.as_str(), n.case_ref)?;
                if let Some(cycle) = n.cycle {
                    write!(f, "{}/", cycle.format(DATE))?;
                }
                write!(f, "{}", n.step)?;
                for _ in 0..n.up {
                    f.write_str("/up")?;
                }
                Ok(())
            }
            OutboxKey::Digest { date, manager } => write!(f, "digest/{date}/{manager}"),
            OutboxKey::DigestRun { date } => write!(f, "digest-run/{date}"),
        }
    }
}

/// The address part of `digest/<day>/<address>`'s rest.
fn manager_text<'a>(rest: &'a str, day: &str) -> &'a str {
    &rest[day.len() + 1..]
}

fn date(text: &str) -> Option<NaiveDate> {
    // Exactly `YYYY-MM-DD`, as written: chrono also takes `2026-1-5`.
    let d = NaiveDate::parse_from_str(text, DATE).ok()?;
    (d.format(DATE).to_string() == text).then_some(d)
}

impl FromStr for OutboxKey {
    type Err = BadOutboxKey;

    /// Reads a key back. The case reference may hold `/`: the step is the last part (after the
    /// `/up`s), and a cycle is read when the part before it is a date. (A one-off clock's key of
    /// a reference ending in `/YYYY-MM-DD` has the same text as a cycle's key of the shorter
    /// reference; [`crate::domain::cycle_of_key`] tells them apart with the reference known.)
    fn from_str(text: &str) -> Result<OutboxKey, BadOutboxKey> {
        if let Some(rest) = text.strip_prefix("notice/") {
            let (kind, mut head) = rest.split_once('/').ok_or(BadOutboxKey)?;
            let kind = kind.parse::<Kind>().map_err(|_| BadOutboxKey)?;
            let mut up = 0u8;
            while let Some(shorter) = head.strip_suffix("/up") {
                head = shorter;
                up = up.checked_add(1).ok_or(BadOutboxKey)?;
            }
            let (head, step) = head.rsplit_once('/').ok_or(BadOutboxKey)?;
            let step: i32 = step.parse().map_err(|_| BadOutboxKey)?;
            let (case_ref, cycle) = match head.rsplit_once('/').and_then(|(r, c)| Some((r, date(c)?))) {
                Some((r, cycle)) => (r, Some(cycle)),
                None => (head, None),
            };
            let parsed = CaseRef::parse(case_ref).map_err(|_| BadOutboxKey)?;
            if parsed.as_str() != case_ref {
                return Err(BadOutboxKey);
            }
            let key = OutboxKey::Notice(NoticeKey { kind, case_ref: parsed, cycle, step, up });
            // `+3`, `03`: numbers this code never writes.
            return if key.to_string() == text { Ok(key) } else { Err(BadOutboxKey) };
        }
        if let Some(rest) = text.strip_prefix("digest/") {
            let (day, manager) = rest.split_once('/').ok_or(BadOutboxKey)?;
            let date = date(day).ok_or(BadOutboxKey)?;
            let manager = EmailAddress::parse(manager).map_err(|_| BadOutboxKey)?;
            if manager.as_str() != manager_text(rest, day) {
                return Err(BadOutboxKey);
            }
            return Ok(OutboxKey::Digest { date, manager });
        }
        if let Some(day) = text.strip_prefix("digest-run/") {
            return Ok(OutboxKey::DigestRun { date: date(day).ok_or(BadOutboxKey)? });
        }
        Err(BadOutboxKey)
    }
}

/// The cycle a notice key of `case_ref` and `kind` carries, `None` for a one-off clock's key
/// (contract §3) or a key of another reference or kind.
pub fn cycle_of_key(key: &str, case_ref: &str, kind: Kind) -> Option<NaiveDate> {
    match key.parse::<OutboxKey>().ok()? {
        OutboxKey::Notice(n) if n.kind == kind && n.case_ref.as_str() == case_ref => n.cycle,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn the_text_is_as_stored() {
        let r = CaseRef::parse("2026-BU-0142").unwrap();
        let k = OutboxKey::notice(r.clone(), Kind::Assessment, None, -3);
        assert_eq!(k.to_string(), "notice/assessment/2026-BU-0142/-3");
        assert_eq!(k.up().up().to_string(), "notice/assessment/2026-BU-0142/-3/up/up");
        let cycle = OutboxKey::notice(r, Kind::Assessment, Some(day("2026-01-05")), 2);
        assert_eq!(cycle.to_string(), "notice/assessment/2026-BU-0142/2026-01-05/2");
        let manager = EmailAddress::parse("ec.bromma@kommun.example").unwrap();
        let digest = OutboxKey::Digest { date: day("2026-11-25"), manager };
        assert_eq!(digest.to_string(), "digest/2026-11-25/ec.bromma@kommun.example");
        assert_eq!(OutboxKey::DigestRun { date: day("2026-11-25") }.to_string(), "digest-run/2026-11-25");
        assert!(digest.is_digest() && !digest.is_up() && k.up().is_up() && !k.is_up());
    }

    #[test]
    fn text_that_is_no_key_is_refused() {
        for text in [
            "",
            "notice/haircut/R/1",
            "notice/assessment/R",
            "notice/assessment/R/+1",
            "notice/assessment/R/x",
            "notice/assessment/ R/1",
            "digest/2026-1-5/a@b.example",
            "digest/2026-01-05/not an address",
            "digest-run/soon",
            "other/1",
        ] {
            assert_eq!(text.parse::<OutboxKey>(), Err(BadOutboxKey), "{text:?}");
        }
    }

    #[test]
    fn the_cycle_of_a_key_needs_its_reference() {
        let key = "notice/lvu_care_application/X/2026-01-05/0/up";
        assert_eq!(cycle_of_key(key, "X", Kind::LvuCareApplication), Some(day("2026-01-05")));
        // The same text is the one-off key of the reference `X/2026-01-05`.
        assert_eq!(
            cycle_of_key("notice/lvu_care_application/X/2026-01-05/0", "X/2026-01-05", Kind::LvuCareApplication),
            None
        );
        assert_eq!(cycle_of_key(key, "Y", Kind::LvuCareApplication), None);
        assert_eq!(cycle_of_key(key, "X", Kind::Assessment), None);
    }

    fn any_key() -> impl Strategy<Value = OutboxKey> {
        let day = (2000i32..2100, 1u32..13, 1u32..29).prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap());
        let notice = (
            proptest::sample::select(Kind::ALL.to_vec()),
            // Any printable reference, `/` included, not ending in a date part.
            "[A-Za-z0-9/ÅÄÖåäö -]{0,30}[A-Za-z]",
            proptest::option::of(day.clone()),
            -400i32..400,
            0u8..3,
        )
            .prop_filter_map("a reference", |(kind, r, cycle, step, up)| {
                let case_ref = CaseRef::parse(&r).ok().filter(|c| c.as_str() == r)?;
                Some(OutboxKey::Notice(NoticeKey { kind, case_ref, cycle, step, up }))
            });
        let digest = (day.clone(), "[a-z0-9.]{1,12}@[a-z]{1,8}\\.example")
            .prop_filter_map("an address", |(date, a)| {
                Some(OutboxKey::Digest { date, manager: EmailAddress::parse(&a).ok()? })
            });
        let run = day.prop_map(|date| OutboxKey::DigestRun { date });
        prop_oneof![notice, digest, run]
    }

    proptest! {
        #[test]
        fn every_key_reads_back_as_written(key in any_key()) {
            let text = key.to_string();
            prop_assert_eq!(text.parse::<OutboxKey>(), Ok(key));
        }

        #[test]
        fn any_text_that_reads_writes_back_the_same(text in "(notice/(assessment|placement_review)/[A-Z0-9/-]{1,12}(/2026-0[1-9]-1[0-9])?/-?[0-9]{1,3}(/up){0,2}|digest(-run)?/2026-11-2[0-9](/[a-z]{1,5}@x\\.example)?)") {
            if let Ok(key) = text.parse::<OutboxKey>() {
                prop_assert_eq!(key.to_string(), text);
            }
        }
    }
}
