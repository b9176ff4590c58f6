//! Values that are known to be good once constructed ("parse, don't validate").

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::rules::Deadline;

pub mod named;
pub mod outbox_key;
pub mod payload;

pub(crate) use named::named_enum;
pub use named::{ErrorClass, UnknownName};
pub use outbox_key::{cycle_of_key, BadOutboxKey, NoticeKey, OutboxKey};
pub use payload::{ChainPair, Compliance, Digest, DigestRow, KindCount, NoticePayload, Recipient, Section, UnitDigest};

/// An e-mail address of a caseworker (handläggare), team lead or manager.
///
/// Checked with the dot-atom rules of RFC 5322 that real municipal addresses follow; quoted local
/// parts and address literals are refused. The domain is compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<EmailAddress, String> {
        let raw = raw.trim();
        let (local, domain) = raw.rsplit_once('@').ok_or_else(|| "an e-mail address needs an '@'".to_string())?;
        // RFC 5322's atext, by `matches!` rather than a search of a string of the specials for
        // every character (this check was a sixth of a placements row's validation).
        let atom_char = |c: char| {
            c.is_alphanumeric()
                || matches!(
                    c,
                    '!' | '#'
                        | '$'
                        | '%'
                        | '&'
                        | '\''
                        | '*'
                        | '+'
                        | '/'
                        | '='
                        | '?'
                        | '^'
                        | '_'
                        | '`'
                        | '{'
                        | '|'
                        | '}'
                        | '~'
                        | '-'
                )
        };
        let dot_atom = |s: &str, chars: &dyn Fn(char) -> bool| {
            !s.is_empty() && s.split('.').all(|part| !part.is_empty() && part.chars().all(chars))
        };
        if local.len() > 64 || !dot_atom(local, &atom_char) {
            return Err("the part before '@' is not a valid mailbox name".into());
        }
        // The domain is checked as it is stored (lower case): lowercasing can change a string
        // ("İ" becomes "i" and a combining dot), and a value accepted here must parse again,
        // unchanged, when the state store reads it back.
        let domain = domain.to_lowercase();
        let label_char = |c: char| c.is_alphanumeric() || c == '-';
        if domain.len() > 253
            || !dot_atom(&domain, &label_char)
            || domain.split('.').any(|l| l.starts_with('-') || l.ends_with('-'))
        {
            return Err("the part after '@' is not a valid domain".into());
        }
        Ok(EmailAddress(format!("{local}@{domain}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        EmailAddress::parse(&value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> String {
        value.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The code of a responsible unit, e.g. `BRO-BU`. Compared case-insensitively (stored upper case),
/// because configuration keys and register values are typed by different people.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UnitCode(String);

impl UnitCode {
    pub fn parse(raw: &str) -> Result<UnitCode, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("the unit code is empty".into());
        }
        // Checked as stored (upper case), which can be longer than the text given ("ß" is "SS"):
        // a code accepted here must parse again, unchanged, when the state store reads it back.
        let code = raw.to_uppercase();
        if code.len() > 64 || code.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("a unit code is at most 64 bytes without spaces".into());
        }
        Ok(UnitCode(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UnitCode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        UnitCode::parse(&value)
    }
}

impl From<UnitCode> for String {
    fn from(value: UnitCode) -> String {
        value.0
    }
}

impl fmt::Display for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A case reference (diarienummer): the only identifier of a case that may leave the register.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaseRef(String);

impl CaseRef {
    pub fn parse(raw: &str) -> Result<CaseRef, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("the case reference is empty".into());
        }
        if raw.len() > 100 || raw.chars().any(|c| c.is_control()) {
            return Err("a case reference is at most 100 printable characters".into());
        }
        Ok(CaseRef(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for CaseRef {
    type Err = String;
    fn from_str(raw: &str) -> Result<CaseRef, String> {
        CaseRef::parse(raw)
    }
}

impl TryFrom<String> for CaseRef {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CaseRef::parse(&value)
    }
}

impl From<CaseRef> for String {
    fn from(value: CaseRef) -> String {
        value.0
    }
}

impl fmt::Display for CaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many characters of a register value a log line or a message shows at most.
pub const LOG_VALUE_MAX_CHARS: usize = 40;

/// A value read from the register, made safe for a log line or an error message: every control
/// character (and every Unicode line separator or bidirectional control, which could forge or
/// hide log lines) becomes `?`, and a value longer than [`LOG_VALUE_MAX_CHARS`] characters is
/// cut there with `…`. A value that had to be changed ends with a note of its original length,
/// `[N chars]`; a good case reference comes out as it is.
pub fn log_safe(raw: &str) -> String {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    let length = raw.chars().count();
    if length <= LOG_VALUE_MAX_CHARS && !raw.chars().any(unsafe_char) {
        return raw.to_string();
    }
    let mut out: String = raw.chars().take(LOG_VALUE_MAX_CHARS).map(|c| if unsafe_char(c) { '?' } else { c }).collect();
    if length > LOG_VALUE_MAX_CHARS {
        out.push('…');
    }
    format!("{out} [{length} chars]")
}

/// A day written `YYYY-MM-DD`, read as chrono's `%Y-%m-%d` reads it. The ten bytes of that form
/// (as the register and the state store write a day) are read by hand: chrono's `parse_from_str`
/// interprets its format string for every value, 6 µs a stored deadline's row of dates read back
/// (BENCHMARKS.md, "Prints for the placements"). Any other text is left to chrono, whose reading
/// (a sign, a one-digit month) it keeps; the property test `iso_day_reads_as_chrono_does` holds
/// the two equal.
pub fn iso_day(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    let digit = |i: usize| b[i].wrapping_sub(b'0');
    if b.len() == 10 && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&i| digit(i) <= 9) && b[4] == b'-' && b[7] == b'-' {
        let number = |range: std::ops::Range<usize>| range.fold(0, |n, i| n * 10 + u32::from(digit(i)));
        NaiveDate::from_ymd_opt(number(0..4) as i32, number(5..7), number(8..10))
    } else {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
    }
}

/// A day as chrono's `%F` (`%Y-%m-%d`) writes it, the form the register and the state store keep:
/// the writing counterpart of [`iso_day`]. A year of four digits is written by hand (chrono
/// interprets its format string for every value, about 250 ns a day, and a poll that closes
/// 1 000 review cycles binds some 14 000 days); any other year (a sign, a fifth digit) is left to
/// chrono. The property test `iso_day_text_writes_as_chrono_does` holds the two equal.
pub fn iso_day_text(day: NaiveDate) -> String {
    use chrono::Datelike;
    let year = day.year();
    if !(0..=9999).contains(&year) {
        return day.format("%Y-%m-%d").to_string();
    }
    let (year, month, day) = (year as u32, day.month(), day.day());
    let digit = |n: u32| b'0' + (n % 10) as u8;
    let text = [
        digit(year / 1000),
        digit(year / 100),
        digit(year / 10),
        digit(year),
        b'-',
        digit(month / 10),
        digit(month),
        b'-',
        digit(day / 10),
        digit(day),
    ];
    text.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    /// A value accepted at the edge reads back from the store as itself: the store keeps
    /// `as_str`, and reading parses it again.
    fn round_trips<T: PartialEq + fmt::Debug>(
        parse: impl Fn(&str) -> Result<T, String>,
        text: &str,
        as_str: impl Fn(&T) -> String,
    ) {
        if let Ok(value) = parse(text) {
            let stored = as_str(&value);
            assert_eq!(parse(&stored).as_ref(), Ok(&value), "{text:?} stored as {stored:?}");
        }
    }

    #[test]
    fn values_that_change_when_normalised_round_trip_or_are_refused_at_the_edge() {
        // "İ" lowercases to "i" + U+0307, a combining mark no domain label holds: refused at once
        // instead of failing every later read of the stored value.
        assert!(EmailAddress::parse("x@İ.se").is_err());
        assert_eq!(EmailAddress::parse("Anna@Kommun.EXAMPLE").unwrap().as_str(), "Anna@kommun.example");
        // "ß" uppercases to "SS": 40 of them are 80 bytes stored, over the limit.
        assert!(UnitCode::parse(&"ß".repeat(40)).is_err());
        assert_eq!(UnitCode::parse("bro-bu").unwrap().as_str(), "BRO-BU");
        for text in ["x@İ.se", "a@ǅ.se", "ﬀ@ﬃ.se", "ß", "ŉ-unit", "ΐ"] {
            round_trips(EmailAddress::parse, text, |v| v.as_str().to_string());
            round_trips(UnitCode::parse, text, |v| v.as_str().to_string());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// The hand-written reading of a day gives what chrono's `%Y-%m-%d` gives, for days of
        /// every shape near its edges (days and months out of range, other separators, signs,
        /// lengths) and for any text.
        #[test]
        fn iso_day_reads_as_chrono_does(
            year in prop_oneof![0..10000i32, -300..300i32, 9990..100000i32],
            month in 0..14u32,
            day in 0..33u32,
            separator in prop::sample::select(vec!["-", "/", " ", "+", "-0", ""]),
            prefix in prop::sample::select(vec!["", " ", "+", "-", "0", "\u{3000}"]),
            any in ".{0,12}",
        ) {
            let chrono = |t: &str| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok();
            for text in [
                format!("{prefix}{year:04}{separator}{month:02}{separator}{day:02}"),
                format!("{prefix}{year}-{month}-{day}"),
                any,
            ] {
                prop_assert_eq!(iso_day(&text), chrono(&text), "{:?}", text);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// The hand-written day is chrono's, for every day chrono holds (signed years and years
        /// of five digits included), and reads back as itself.
        #[test]
        fn iso_day_text_writes_as_chrono_does(days in prop_oneof![
            -200_000..200_000i32,
            (chrono::Datelike::num_days_from_ce(&NaiveDate::MIN))..=(chrono::Datelike::num_days_from_ce(&NaiveDate::MAX)),
        ]) {
            let day = NaiveDate::from_num_days_from_ce_opt(days).unwrap();
            let text = iso_day_text(day);
            prop_assert_eq!(&text, &day.format("%F").to_string());
            prop_assert_eq!(iso_day(&text), Some(day));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_accepted_value_round_trips(local in "\\PC{0,20}", domain in "\\PC{0,20}", any in "\\PC{0,80}") {
            let address = format!("{local}@{domain}");
            round_trips(EmailAddress::parse, &address, |v| v.as_str().to_string());
            round_trips(UnitCode::parse, &any, |v| v.as_str().to_string());
            round_trips(CaseRef::parse, &any, |v| v.as_str().to_string());
            round_trips(ChildKey::parse, &any, |v| v.as_str().to_string());
        }
    }

    #[test]
    fn register_values_are_logged_sanitised_and_shortened() {
        assert_eq!(log_safe("2026-BU-00537"), "2026-BU-00537");
        assert_eq!(log_safe(&"x".repeat(40)), "x".repeat(40));
        // Control characters cannot start a forged log line or move the terminal's cursor.
        let forged = "2026-BU-1\nWARN register row skipped\r\u{1b}[2K";
        let safe = log_safe(forged);
        assert_eq!(safe, "2026-BU-1?WARN register row skipped??[2K [40 chars]");
        assert!(!safe.chars().any(char::is_control), "{safe:?}");
        assert_eq!(log_safe("A\u{202E}B\u{2028}C"), "A?B?C [5 chars]");
        // A long value: 40 characters, then a note of the original length.
        let long = format!("{}\t{}", "A".repeat(45), "B".repeat(5000));
        let safe = log_safe(&long);
        assert_eq!(safe, format!("{}… [5046 chars]", "A".repeat(40)));
        assert!(safe.chars().count() <= LOG_VALUE_MAX_CHARS + 20, "{safe}");
        // Characters, not bytes: a multi-byte character is never cut.
        assert_eq!(log_safe(&"ö".repeat(41)), format!("{}… [41 chars]", "ö".repeat(40)));
    }

    #[test]
    fn email_addresses() {
        for ok in ["a@b.se", "anna.lindqvist@kommun.example", "x+y@Sub.Domain.SE", "a@localhost"] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(EmailAddress::parse("A@B.SE").unwrap().as_str(), "A@b.se");
        for bad in ["", "a", "@b.se", "a@", "a b@c.se", "a@b..se", "a@-b.se", ".a@b.se", "a@b.se>"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unit_codes_compare_case_insensitively() {
        assert_eq!(UnitCode::parse("bro-bu").unwrap(), UnitCode::parse("BRO-BU").unwrap());
        assert!(UnitCode::parse(" ").is_err());
        assert!(UnitCode::parse("A B").is_err());
    }
}

/// The child's sex, kept only for aggregated compliance figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Female,
    Male,
}

impl Sex {
    /// The stored code: `F` or `M`.
    pub fn code(self) -> &'static str {
        match self {
            Sex::Female => "F",
            Sex::Male => "M",
        }
    }

    /// Reads a stored code back.
    pub fn from_code(code: &str) -> Result<Sex, String> {
        match code {
            "F" => Ok(Sex::Female),
            "M" => Ok(Sex::Male),
            other => Err(format!("unknown sex code {other:?}")),
        }
    }
}

/// The register's pseudonymous key of a child (the optional column `child_key`), used only to
/// link the investigations of one child into chains (register contract §2).
///
/// It has no `Display` and no `Serialize`, and its `Debug` form hides it, so it cannot reach a
/// log line, a mail, a metric, a report or an error message by accident; only `state` reads
/// and writes it ([`ChildKey::as_str`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChildKey(String);

impl ChildKey {
    /// A key as the register holds it; blank is no key. At most 200 characters, like any
    /// keyed hash the register side would make.
    pub fn parse(text: &str) -> Result<ChildKey, String> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
            return Err("not a child key (1–200 printable characters)".to_string());
        }
        Ok(ChildKey(text.to_string()))
    }

    /// The key itself, for the state store only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChildKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChildKey(…)")
    }
}

/// One deadline of one case, with what fristvakt keeps of the case beside it: the unit, the
/// caseworker's address and the child's sex (for aggregated figures only); `withdrawn` when the
/// case left the register or the deadline no longer exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadline {
    pub case_ref: CaseRef,
    pub unit: UnitCode,
    pub caseworker: Option<EmailAddress>,
    pub child_sex: Option<Sex>,
    pub deadline: Deadline,
    pub withdrawn: bool,
    /// The day a poll first stored this deadline (`None`: stored before fristvakt kept it, or
    /// not stored yet); with `ladder.first_sight_horizon` it decides whether any notice is sent.
    pub first_seen_on: Option<NaiveDate>,
    /// The child's key, on investigation deadlines only, when the view has `child_key`.
    pub child_key: Option<ChildKey>,
    /// A placement's case (its row's `case_ref`), for its notices' link (`mail.case_link` when
    /// `mail.placement_link` is not set); `None` for a case's own deadlines.
    pub case_of: Option<CaseRef>,
    /// The cycle of a recurring clock or the second cycle of `lvu_care_application` (contract
    /// §3: what is sent once is (reference, kind, cycle start day, step)); `None` for a one-off.
    pub cycle_start: Option<NaiveDate>,
}

impl StoredDeadline {
    /// Its reference, cycle start day and deadline, when it is a cycle (a recurring clock's, or
    /// the second of `lvu_care_application`) not withdrawn.
    pub fn cycle(&self) -> Option<(CaseRef, NaiveDate, Deadline)> {
        let cycle = self.cycle_start.filter(|_| !self.withdrawn)?;
        Some((self.case_ref.clone(), cycle, self.deadline.clone()))
    }
}
