//! A register row checked against contract §1: a [`CaseRow`], or a [`Rejection`] naming the
//! reason and the column (never another column's value).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

#[cfg(test)]
use super::columns::Column;
use super::columns::{position, RawRow, Storage, COLUMNS, WIDTH};
use crate::domain::{iso_day, log_safe, named_enum, CaseRef, ChildKey, EmailAddress, Sex, UnitCode};
use crate::rules::calendar::{FIRST_YEAR, LAST_YEAR};
use crate::rules::CaseDates;

/// The name of a column of the table, checked when the crate is built.
macro_rules! column {
    ($name:ident) => {
        COLUMNS[{
            const AT: usize = position(stringify!($name));
            AT
        }]
        .name
    };
}

/// A validated register row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    pub case_ref: CaseRef,
    pub unit: UnitCode,
    /// `None` when the register has no caseworker or an address that does not parse.
    pub caseworker: Option<EmailAddress>,
    /// The register holds a caseworker value that is not an e-mail address.
    pub caseworker_invalid: bool,
    pub child_sex: Option<Sex>,
    /// The child's pseudonymous key, when the view has `child_key` (never logged or shown).
    pub child_key: Option<ChildKey>,
    pub dates: CaseDates,
    pub updated_at: DateTime<Utc>,
}

named_enum! {
    /// Why a row was skipped; a bounded set, used as a metrics label.
    pub enum RejectReason as "reject reason" {
        MissingCaseRef = "missing_case_ref",
        MissingUnit = "missing_unit",
        BadDate = "bad_date",
        CloseBeforeStart = "close_before_start",
        UnknownSex = "unknown_sex",
        BadTimestamp = "bad_timestamp",
        BadChildKey = "bad_child_key",
        /// A value that is not UTF-8 (a Latin-1 reference): decoded lossily it could merge two
        /// cases.
        NotUtf8 = "not_utf8",
        /// A value longer than `register.max_cell_bytes`.
        CellTooLarge = "cell_too_large",
        /// A placement row whose `placement_ref` is also a `case_ref` (contract §1b).
        RefCollision = "ref_collision",
        /// A placement row's `basis` or `home` that is not one of contract §1b's codes.
        UnknownCode = "unknown_code",
    }
}

/// A skipped row: the reason, the column and the case reference (when there is one), as the
/// register holds it. Its `Display` is safe to log: it never holds another column's value, and
/// the case reference is shown only sanitised and shortened ([`log_safe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub column: &'static str,
    pub case_ref: Option<String>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let case = self.case_ref.as_deref().map(log_safe);
        let case = case.as_deref().unwrap_or("(no case_ref)");
        let what = match self.reason {
            RejectReason::MissingCaseRef if self.case_ref.is_some() => {
                "not a valid case reference (at most 100 printable characters)"
            }
            RejectReason::MissingCaseRef => "case_ref is missing",
            RejectReason::MissingUnit => "unit is missing",
            RejectReason::BadDate => "not a valid date (YYYY-MM-DD, 1900–2200)",
            RejectReason::CloseBeforeStart => "is before the date it closes or extends",
            RejectReason::UnknownSex => "not F, M or empty",
            RejectReason::BadTimestamp => "not an RFC 3339 timestamp",
            RejectReason::BadChildKey => "not a child key (1–200 printable characters)",
            RejectReason::NotUtf8 => "not UTF-8 text",
            RejectReason::CellTooLarge => "longer than register.max_cell_bytes",
            RejectReason::RefCollision => "the placement reference is also a case reference",
            RejectReason::UnknownCode => "not one of the codes the register contract lists",
        };
        write!(f, "case {case}: column {}: {what}", self.column)
    }
}

/// Validates a row as read ([`EncodedRow`](super::EncodedRow)): a value over `max_cell_bytes`
/// or not UTF-8 is rejected first (`cell_too_large`, `not_utf8`), then the text is [`validate`]d.
pub fn validate_encoded(row: super::EncodedRow<'_>, max_cell_bytes: usize) -> Result<CaseRow, Rejection> {
    validate(&row.to_checked_raw(max_cell_bytes)?)
}

/// Checks a row against contract §1.
pub fn validate(raw: &RawRow) -> Result<CaseRow, Rejection> {
    let present = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let case_ref_text = present(&raw.case_ref);
    let reject = |reason, column| Rejection { reason, column, case_ref: case_ref_text.clone() };
    let case_ref = case_ref_text
        .as_deref()
        .and_then(|c| CaseRef::parse(c).ok())
        .ok_or_else(|| reject(RejectReason::MissingCaseRef, column!(case_ref)))?;
    let unit = present(&raw.unit)
        .and_then(|u| UnitCode::parse(&u).ok())
        .ok_or_else(|| reject(RejectReason::MissingUnit, column!(unit)))?;
    let child_sex = match present(&raw.child_sex).as_deref() {
        None => None,
        Some("F") | Some("f") => Some(Sex::Female),
        Some("M") | Some("m") => Some(Sex::Male),
        Some(_) => return Err(reject(RejectReason::UnknownSex, column!(child_sex))),
    };
    let date = |value: &Option<String>, column: &'static str| -> Result<Option<NaiveDate>, Rejection> {
        match present(value) {
            None => Ok(None),
            Some(text) => parse_day(&text).map(Some).ok_or_else(|| reject(RejectReason::BadDate, column)),
        }
    };
    // Every date column of the table, in its order: the first bad one is named.
    let mut days = [None; WIDTH];
    for ((column, value), day) in COLUMNS.iter().zip(raw.values()).zip(&mut days) {
        if column.storage == Storage::Date {
            *day = date(value, column.name)?;
        }
    }
    // `rules::CaseDates` names its fields after the columns; the compiler asks for every one.
    macro_rules! case_dates {
        ($($field:ident),* $(,)?) => {
            CaseDates { $($field: days[{ const AT: usize = position(stringify!($field)); AT }],)* }
        };
    }
    let dates = case_dates!(
        received_on,
        protection_assessed_on,
        assessment_decided_on,
        assessment_extended_to,
        investigation_opened_on,
        investigation_extended_to,
        investigation_closed_on,
        follow_up_decided_on,
        follow_up_ended_on,
        reporter_info_requested_on,
        reporter_informed_on,
    );
    // A date before the one it closes or extends.
    macro_rules! before {
        ($later:ident, $start:ident) => {
            match (dates.$later, dates.$start) {
                (Some(l), Some(s)) if l < s => Err(reject(RejectReason::CloseBeforeStart, column!($later))),
                _ => Ok(()),
            }
        };
    }
    before!(protection_assessed_on, received_on)?;
    before!(assessment_decided_on, received_on)?;
    before!(assessment_extended_to, received_on)?;
    // An investigation opened before the report is not a broken row: the report came in during
    // (or after) the investigation (see `rules::deadlines_for`). Nor is a reporter informed
    // before the request was recorded: the information was given unasked, or with the decision.
    before!(investigation_extended_to, investigation_opened_on)?;
    before!(investigation_closed_on, investigation_opened_on)?;
    before!(follow_up_ended_on, follow_up_decided_on)?;
    // The key's value is never put into the rejection: only the column is named.
    let child_key = match present(&raw.child_key) {
        None => None,
        Some(text) => Some(ChildKey::parse(&text).map_err(|_| reject(RejectReason::BadChildKey, column!(child_key)))?),
    };
    let updated_at = present(&raw.updated_at)
        .and_then(|t| crate::db::parse_instant(&t))
        .ok_or_else(|| reject(RejectReason::BadTimestamp, column!(updated_at)))?;
    let (caseworker, caseworker_invalid) = match present(&raw.caseworker) {
        None => (None, false),
        Some(text) => match EmailAddress::parse(&text) {
            Ok(a) => (Some(a), false),
            Err(_) => (None, true),
        },
    };
    Ok(CaseRow { case_ref, unit, caseworker, caseworker_invalid, child_sex, child_key, dates, updated_at })
}

/// A register date: `YYYY-MM-DD` (PostgreSQL renders a date column so, SQLite holds the text),
/// or a midnight timestamp (a view column of type timestamp instead of date, rendered
/// `2026-03-03 00:00:00`) as that date; any other time of day is not a date. The date is ten
/// bytes long and within the calendar's years.
///
/// Read by [`crate::domain::iso_day`] (by hand in its common form).
pub(crate) fn parse_day(text: &str) -> Option<NaiveDate> {
    let day = text.strip_suffix(" 00:00:00").or_else(|| text.strip_suffix("T00:00:00")).unwrap_or(text);
    if day.len() != 10 {
        return None;
    }
    iso_day(day).filter(|d| (FIRST_YEAR..=LAST_YEAR).contains(&d.year()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rule as it was written with chrono alone.
    fn parse_day_by_chrono(text: &str) -> Option<NaiveDate> {
        let day = text.strip_suffix(" 00:00:00").or_else(|| text.strip_suffix("T00:00:00")).unwrap_or(text);
        NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .ok()
            .filter(|d| (FIRST_YEAR..=LAST_YEAR).contains(&d.year()) && day.len() == 10)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// The hand-written reading of a date gives what chrono gives: for dates of every shape
        /// near the rule's edges (years, months, days out of range, other separators, signs,
        /// spaces, the midnight suffixes) and for any text.
        #[test]
        fn parse_day_reads_as_chrono_does(
            year in prop_oneof![1890..2210i32, 0..10000i32],
            month in 0..14u32,
            day in 0..33u32,
            separator in prop::sample::select(vec!["-", "/", " ", "+", "-0", ""]),
            prefix in prop::sample::select(vec!["", " ", "+", "-", "0", "\u{3000}"]),
            suffix in prop::sample::select(vec!["", " 00:00:00", "T00:00:00", " 00:00:01", "Z", " "]),
            widths in (1..5usize, 1..3usize, 1..3usize),
            any in "\\PC{0,12}|[0-9 +-]{8,12}",
        ) {
            let (yw, mw, dw) = widths;
            let text = format!("{prefix}{year:0yw$}{separator}{month:0mw$}-{day:0dw$}{suffix}");
            prop_assert_eq!(parse_day(&text), parse_day_by_chrono(&text), "{:?}", text);
            let text = format!("{year:04}-{month:02}-{day:02}{suffix}");
            prop_assert_eq!(parse_day(&text), parse_day_by_chrono(&text), "{:?}", text);
            prop_assert_eq!(parse_day(&any), parse_day_by_chrono(&any), "{:?}", any);
        }
    }

    #[test]
    fn parse_day_keeps_the_rule_s_edges() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(parse_day("2026-03-03"), day(2026, 3, 3));
        assert_eq!(parse_day("2026-03-03 00:00:00"), day(2026, 3, 3));
        assert_eq!(parse_day("2026-03-03T00:00:00"), day(2026, 3, 3));
        assert_eq!(parse_day("2024-02-29"), day(2024, 2, 29));
        assert_eq!(parse_day(&format!("{FIRST_YEAR}-01-01")), day(FIRST_YEAR, 1, 1));
        assert_eq!(parse_day(&format!("{LAST_YEAR}-12-31")), day(LAST_YEAR, 12, 31));
        for bad in ["2026-02-30", "2026-13-01", "2026-00-10", "1899-12-31", "2201-01-01", "2026-3-3", "20260303"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        assert_eq!(parse_day("2026-03-03 10:00:00"), None);
        // Chrono's readings of other ten-byte texts stay.
        assert_eq!(parse_day("+2026-3-03"), parse_day_by_chrono("+2026-3-03"));
        assert_eq!(parse_day("2026- 3-03"), parse_day_by_chrono("2026- 3-03"));
    }

    fn row() -> RawRow {
        RawRow {
            case_ref: Some("2026-BU-1".into()),
            unit: Some("BRO-BU".into()),
            received_on: Some("2026-02-02".into()),
            updated_at: Some("2026-02-20T08:00:00Z".into()),
            ..RawRow::default()
        }
    }

    /// Every date column of the table is read as a date: a bad one rejects the row, naming it.
    #[test]
    fn every_date_column_is_checked_and_named() {
        let dates: Vec<&Column> = COLUMNS.iter().filter(|c| c.storage == Storage::Date).collect();
        assert!(dates.iter().any(|c| c.name == "reporter_informed_on"));
        for (at, column) in COLUMNS.iter().enumerate().filter(|(_, c)| c.storage == Storage::Date) {
            let mut raw = row();
            *raw.values_mut()[at] = Some("2026-02-30".into());
            let rejection = validate(&raw).unwrap_err();
            assert_eq!((rejection.reason, rejection.column), (RejectReason::BadDate, column.name));
        }
    }

    /// The reporter's days are read; told before the request was recorded is not a broken row.
    #[test]
    fn the_reporter_s_days_are_read_in_either_order() {
        let raw = RawRow {
            reporter_info_requested_on: Some("2026-02-10".into()),
            reporter_informed_on: Some("2026-02-09".into()),
            ..row()
        };
        let dates = validate(&raw).unwrap().dates;
        assert_eq!(dates.reporter_info_requested_on, NaiveDate::from_ymd_opt(2026, 2, 10));
        assert_eq!(dates.reporter_informed_on, NaiveDate::from_ymd_opt(2026, 2, 9));
        assert_eq!(dates.received_on, NaiveDate::from_ymd_opt(2026, 2, 2));
    }
}
