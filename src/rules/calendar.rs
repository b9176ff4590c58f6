//! The Swedish calendar as the law of deadlines sees it.
//!
//! Public holidays (allmänna helgdagar) follow lag (1989:253) om allmänna helgdagar as amended from
//! 2005; the days that move a last day follow lag (1930:173) om beräkning av lagstadgad tid, 2 §;
//! months are counted by its 1 §. Everything here is plain date arithmetic: no clock, no I/O.
//!
//! The rules are checked for the years [`FIRST_YEAR`]..=[`LAST_YEAR`]. Outside them the same rules
//! are applied as they are, which is historically wrong before 1953 (midsommardagen and alla
//! helgons dag were then fixed days) and unknown after any future amendment.

use chrono::{Datelike, Days, Months, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// The first year for which the calendar is checked.
pub const FIRST_YEAR: i32 = 1900;
/// The last year for which the calendar is checked.
pub const LAST_YEAR: i32 = 2200;

/// A named public holiday (allmän helgdag) under lag (1989:253).
///
/// Ordinary Sundays are public holidays too but carry no name, so they are not variants here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Holiday {
    /// Nyårsdagen, 1 January.
    NewYearsDay,
    /// Trettondedag jul, 6 January.
    Epiphany,
    /// Långfredagen, two days before Easter Sunday.
    GoodFriday,
    /// Påskdagen.
    EasterSunday,
    /// Annandag påsk, the day after Easter Sunday.
    EasterMonday,
    /// Första maj.
    MayDay,
    /// Kristi himmelsfärdsdag, 39 days after Easter Sunday.
    AscensionDay,
    /// Pingstdagen, 49 days after Easter Sunday.
    Pentecost,
    /// Annandag pingst, 50 days after Easter Sunday; a holiday only before 2005, when
    /// nationaldagen took its place (SFS 2004:1320).
    WhitMonday,
    /// Sveriges nationaldag, 6 June; a holiday only from 2005.
    NationalDay,
    /// Midsommardagen, the Saturday in 20–26 June.
    MidsummerDay,
    /// Alla helgons dag, the Saturday in 31 October–6 November.
    AllSaintsDay,
    /// Juldagen, 25 December.
    ChristmasDay,
    /// Annandag jul, 26 December.
    BoxingDay,
}

impl Holiday {
    /// Every holiday in declaration order, which is also the order within a year when two
    /// holidays do not share a date.
    pub const ALL: [Holiday; 14] = [
        Holiday::NewYearsDay,
        Holiday::Epiphany,
        Holiday::GoodFriday,
        Holiday::EasterSunday,
        Holiday::EasterMonday,
        Holiday::MayDay,
        Holiday::AscensionDay,
        Holiday::Pentecost,
        Holiday::WhitMonday,
        Holiday::NationalDay,
        Holiday::MidsummerDay,
        Holiday::AllSaintsDay,
        Holiday::ChristmasDay,
        Holiday::BoxingDay,
    ];

    /// The holiday's date in `year`, or `None` when it is not a holiday that year.
    pub fn date_in(self, year: i32) -> Option<NaiveDate> {
        let fixed = |month, day| NaiveDate::from_ymd_opt(year, month, day);
        let from_easter = |offset: i64| {
            let easter = easter_in(year)?;
            shift_days(easter, offset)
        };
        match self {
            Holiday::NewYearsDay => fixed(1, 1),
            Holiday::Epiphany => fixed(1, 6),
            Holiday::GoodFriday => from_easter(-2),
            Holiday::EasterSunday => from_easter(0),
            Holiday::EasterMonday => from_easter(1),
            Holiday::MayDay => fixed(5, 1),
            Holiday::AscensionDay => from_easter(39),
            Holiday::Pentecost => from_easter(49),
            Holiday::WhitMonday if year < NATIONAL_DAY_REFORM => from_easter(50),
            Holiday::WhitMonday => None,
            Holiday::NationalDay if year >= NATIONAL_DAY_REFORM => fixed(6, 6),
            Holiday::NationalDay => None,
            Holiday::MidsummerDay => first_saturday_from(fixed(6, 20)?),
            Holiday::AllSaintsDay => first_saturday_from(fixed(10, 31)?),
            Holiday::ChristmasDay => fixed(12, 25),
            Holiday::BoxingDay => fixed(12, 26),
        }
    }
}

/// What makes a day one that moves a last day under lag (1930:173) 2 §.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayKind {
    /// A named public holiday, whatever weekday it falls on.
    Holiday(Holiday),
    /// An ordinary Sunday (söndag).
    Sunday,
    /// An ordinary Saturday (lördag).
    Saturday,
    /// Midsommarafton, the Friday in 19–25 June.
    MidsummerEve,
    /// Julafton, 24 December.
    ChristmasEve,
    /// Nyårsafton, 31 December.
    NewYearsEve,
}

impl DayKind {
    /// Whether this is an ordinary Saturday or Sunday rather than a named day.
    pub fn is_weekend(self) -> bool {
        matches!(self, DayKind::Saturday | DayKind::Sunday)
    }
}

/// Easter Sunday (påskdagen) of `year` by the Gregorian computus ("anonymous" algorithm of
/// Meeus, Jones and Butcher).
///
/// # Panics
///
/// Only when `year` lies outside the years chrono can represent (about ±262 000), which no caller
/// holding a [`NaiveDate`] can reach.
pub fn easter_sunday(year: i32) -> NaiveDate {
    let (month, day) = easter_month_day(year);
    // The computus always yields a day in 22 March..=25 April, which exists in every year, so
    // this fails only for a year chrono cannot represent at all, as documented above.
    NaiveDate::from_ymd_opt(year, month, day).expect("year outside chrono's range")
}

/// The named public holiday on `date`, if any; ordinary Sundays give `None`.
///
/// When two holidays share a date (Kristi himmelsfärdsdag on första maj, as in 2008; pingstdagen
/// on nationaldagen) the one first in [`Holiday::ALL`] is returned.
pub fn public_holiday(date: NaiveDate) -> Option<Holiday> {
    Holiday::ALL.into_iter().find(|holiday| holiday.date_in(date.year()) == Some(date))
}

/// Whether `date` is a public holiday (allmän helgdag): a named holiday or any Sunday.
pub fn is_public_holiday(date: NaiveDate) -> bool {
    date.weekday() == Weekday::Sun || public_holiday(date).is_some()
}

/// The named public holidays of `year`, sorted by date.
///
/// A date appears twice when two holidays share it, so that neither name is lost in a list
/// shown to people. A year chrono cannot represent has no holidays.
pub fn holidays_of_year(year: i32) -> Vec<(NaiveDate, Holiday)> {
    let mut holidays: Vec<(NaiveDate, Holiday)> =
        Holiday::ALL.into_iter().filter_map(|holiday| Some((holiday.date_in(year)?, holiday))).collect();
    // A stable sort keeps declaration order between holidays that share a date.
    holidays.sort_by_key(|&(date, _)| date);
    holidays
}

/// Why `date` would move a last day under lag (1930:173) 2 §, or `None` for an ordinary weekday.
///
/// The most specific name wins: a named holiday before an eve, an eve before a plain Saturday or
/// Sunday (annandag jul on a Saturday is `Holiday(BoxingDay)`, julafton on a Sunday is
/// `ChristmasEve`), so that a person reading why a deadline moved sees the familiar name.
pub fn deadline_moving_day(date: NaiveDate) -> Option<DayKind> {
    if let Some(holiday) = public_holiday(date) {
        return Some(DayKind::Holiday(holiday));
    }
    match (date.month(), date.day()) {
        (12, 24) => return Some(DayKind::ChristmasEve),
        (12, 31) => return Some(DayKind::NewYearsEve),
        _ => {}
    }
    let midsummer_eve = Holiday::MidsummerDay.date_in(date.year()).and_then(|day| day.pred_opt());
    if midsummer_eve == Some(date) {
        return Some(DayKind::MidsummerEve);
    }
    match date.weekday() {
        Weekday::Sun => Some(DayKind::Sunday),
        Weekday::Sat => Some(DayKind::Saturday),
        _ => None,
    }
}

/// The last day after the holiday rule of lag (1930:173) 2 §.
///
/// When `date` moves a deadline, returns the next day that does not, with every day passed over
/// and why; otherwise `(date, vec![])`. In 1900..=2200 the move is at most five days (see the
/// tests); the loop is bounded only by chrono's last date, where it stops rather than panic.
pub fn next_deadline_day(date: NaiveDate) -> (NaiveDate, Vec<(NaiveDate, DayKind)>) {
    let mut day = date;
    let mut skipped = Vec::new();
    while let Some(kind) = deadline_moving_day(day) {
        skipped.push((day, kind));
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    (day, skipped)
}

/// `date` plus a number of calendar months under lag (1930:173) 1 §: the day with the same
/// number, or the last day of the end month when it has no such day (31 October + 4 months is
/// 28 or 29 February).
///
/// Saturates at chrono's last date instead of panicking; register dates are far from it.
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    // chrono clamps to the month's last day exactly as 1 § prescribes.
    date.checked_add_months(Months::new(months)).unwrap_or(NaiveDate::MAX)
}

/// Whether `date` is an ordinary weekday on which a last day stays put; also the days on which
/// mail may go out within a sending window.
pub fn is_working_day(date: NaiveDate) -> bool {
    deadline_moving_day(date).is_none()
}

/// `date` moved by `days` (negative: backwards), or `None` past chrono's first or last date.
pub(crate) fn shift_days(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    let magnitude = Days::new(days.unsigned_abs());
    if days >= 0 {
        date.checked_add_days(magnitude)
    } else {
        date.checked_sub_days(magnitude)
    }
}

/// Like [`shift_days`], but saturating at chrono's first and last dates so that hostile input
/// cannot panic a daemon; register dates are validated far inside that range.
pub(crate) fn shift_days_saturating(date: NaiveDate, days: i64) -> NaiveDate {
    shift_days(date, days).unwrap_or(if days >= 0 { NaiveDate::MAX } else { NaiveDate::MIN })
}

/// The year from which nationaldagen replaces annandag pingst (SFS 2004:1320).
const NATIONAL_DAY_REFORM: i32 = 2005;

/// Month and day of Easter Sunday by the anonymous Gregorian algorithm.
fn easter_month_day(year: i32) -> (u32, u32) {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let month = (h + l - 7 * m + 114).div_euclid(31);
    let day = (h + l - 7 * m + 114).rem_euclid(31) + 1;
    // Both values are small positive numbers by construction (month 3 or 4, day 1..=31).
    (month.unsigned_abs(), day.unsigned_abs())
}

/// Easter Sunday of `year`, or `None` for a year chrono cannot represent.
fn easter_in(year: i32) -> Option<NaiveDate> {
    let (month, day) = easter_month_day(year);
    NaiveDate::from_ymd_opt(year, month, day)
}

/// The first Saturday on or after `date`.
fn first_saturday_from(date: NaiveDate) -> Option<NaiveDate> {
    let ahead = (7 + Weekday::Sat.num_days_from_monday() - date.weekday().num_days_from_monday()) % 7;
    shift_days(date, i64::from(ahead))
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn first_day() -> NaiveDate {
        NaiveDate::from_ymd_opt(FIRST_YEAR, 1, 1).unwrap()
    }

    fn last_day() -> NaiveDate {
        NaiveDate::from_ymd_opt(LAST_YEAR, 12, 31).unwrap()
    }

    fn every_day() -> impl Iterator<Item = NaiveDate> {
        first_day().iter_days().take_while(|day| *day <= last_day())
    }

    fn any_date() -> impl Strategy<Value = NaiveDate> {
        (first_day().num_days_from_ce()..=last_day().num_days_from_ce())
            .prop_map(|n| NaiveDate::from_num_days_from_ce_opt(n).unwrap())
    }

    #[test]
    fn easter_sunday_matches_known_dates() {
        // Each date was checked against dateutil.easter (EASTER_WESTERN), a separate
        // implementation of the Gregorian computus.
        fn check(year: i32, expected: &str) {
            assert_eq!(easter_sunday(year), d(expected), "easter {year}");
        }
        check(1900, "1900-04-15");
        check(1961, "1961-04-02");
        check(1999, "1999-04-04");
        check(2000, "2000-04-23");
        check(2008, "2008-03-23");
        check(2024, "2024-03-31");
        check(2025, "2025-04-20");
        check(2026, "2026-04-05");
        check(2027, "2027-03-28");
        check(2038, "2038-04-25");
        check(2100, "2100-03-28");
        check(2200, "2200-04-06");
    }

    #[test]
    fn easter_is_a_sunday_in_its_window_every_year() {
        for year in FIRST_YEAR..=LAST_YEAR {
            let easter = easter_sunday(year);
            assert_eq!(easter.weekday(), Weekday::Sun, "{easter}");
            assert!(d(&format!("{year}-03-22")) <= easter && easter <= d(&format!("{year}-04-25")), "{easter}");
        }
    }

    #[test]
    fn holidays_of_year_lists_every_named_holiday() {
        // Expected lists were produced independently (Python with dateutil.easter) and match
        // published Swedish calendars for 2024–2027.
        fn check(year: i32, expected: &str) {
            let actual = holidays_of_year(year)
                .into_iter()
                .map(|(date, holiday)| format!("{} {}", date.format("%m-%d"), holiday.name_sv()))
                .collect::<Vec<_>>()
                .join(", ");
            assert_eq!(actual, expected, "holidays of {year}");
        }
        check(2024, "01-01 nyårsdagen, 01-06 trettondedag jul, 03-29 långfredagen, 03-31 påskdagen, 04-01 annandag påsk, 05-01 första maj, 05-09 Kristi himmelsfärdsdag, 05-19 pingstdagen, 06-06 Sveriges nationaldag, 06-22 midsommardagen, 11-02 alla helgons dag, 12-25 juldagen, 12-26 annandag jul");
        check(2025, "01-01 nyårsdagen, 01-06 trettondedag jul, 04-18 långfredagen, 04-20 påskdagen, 04-21 annandag påsk, 05-01 första maj, 05-29 Kristi himmelsfärdsdag, 06-06 Sveriges nationaldag, 06-08 pingstdagen, 06-21 midsommardagen, 11-01 alla helgons dag, 12-25 juldagen, 12-26 annandag jul");
        check(2026, "01-01 nyårsdagen, 01-06 trettondedag jul, 04-03 långfredagen, 04-05 påskdagen, 04-06 annandag påsk, 05-01 första maj, 05-14 Kristi himmelsfärdsdag, 05-24 pingstdagen, 06-06 Sveriges nationaldag, 06-20 midsommardagen, 10-31 alla helgons dag, 12-25 juldagen, 12-26 annandag jul");
        check(2027, "01-01 nyårsdagen, 01-06 trettondedag jul, 03-26 långfredagen, 03-28 påskdagen, 03-29 annandag påsk, 05-01 första maj, 05-06 Kristi himmelsfärdsdag, 05-16 pingstdagen, 06-06 Sveriges nationaldag, 06-26 midsommardagen, 11-06 alla helgons dag, 12-25 juldagen, 12-26 annandag jul");
        // Before 2005: annandag pingst, no nationaldag.
        check(1999, "01-01 nyårsdagen, 01-06 trettondedag jul, 04-02 långfredagen, 04-04 påskdagen, 04-05 annandag påsk, 05-01 första maj, 05-13 Kristi himmelsfärdsdag, 05-23 pingstdagen, 05-24 annandag pingst, 06-26 midsommardagen, 11-06 alla helgons dag, 12-25 juldagen, 12-26 annandag jul");
        // Kristi himmelsfärdsdag on första maj: both names are kept.
        check(2008, "01-01 nyårsdagen, 01-06 trettondedag jul, 03-21 långfredagen, 03-23 påskdagen, 03-24 annandag påsk, 05-01 första maj, 05-01 Kristi himmelsfärdsdag, 05-11 pingstdagen, 06-06 Sveriges nationaldag, 06-21 midsommardagen, 11-01 alla helgons dag, 12-25 juldagen, 12-26 annandag jul");
        check(2200, "01-01 nyårsdagen, 01-06 trettondedag jul, 04-04 långfredagen, 04-06 påskdagen, 04-07 annandag påsk, 05-01 första maj, 05-15 Kristi himmelsfärdsdag, 05-25 pingstdagen, 06-06 Sveriges nationaldag, 06-21 midsommardagen, 11-01 alla helgons dag, 12-25 juldagen, 12-26 annandag jul");
    }

    #[test]
    fn public_holiday_and_is_public_holiday_classify_single_days() {
        fn check(date: &str, named: Option<Holiday>, is_holiday: bool) {
            assert_eq!(public_holiday(d(date)), named, "{date}");
            assert_eq!(is_public_holiday(d(date)), is_holiday, "{date}");
        }
        check("2004-05-31", Some(Holiday::WhitMonday), true); // last annandag pingst
        check("2005-05-16", None, false); // annandag pingst, no longer a holiday
        check("2004-06-07", None, false); // an ordinary Monday
        check("2003-06-06", None, false); // nationaldagen before 2005, a Friday
        check("2005-06-06", Some(Holiday::NationalDay), true); // the first
        check("2008-05-01", Some(Holiday::MayDay), true); // also Kristi himmelsfärdsdag
        check("2027-06-06", Some(Holiday::NationalDay), true); // a Sunday keeps its name
        check("2026-03-01", None, true); // an ordinary Sunday
        check("2026-02-28", None, false); // an ordinary Saturday is no holiday
        check("2026-01-05", None, false); // trettondedagsafton
        check("2026-04-02", None, false); // skärtorsdag
        check("2026-04-30", None, false); // valborgsmässoafton
        check("2026-06-19", None, false); // midsommarafton moves deadlines but is no holiday
        check("2026-12-24", None, false); // julafton likewise
        check("1900-04-13", Some(Holiday::GoodFriday), true);
        check("2200-11-01", Some(Holiday::AllSaintsDay), true);
    }

    #[test]
    fn deadline_moving_day_names_the_reason() {
        fn check(date: &str, expected: Option<DayKind>) {
            assert_eq!(deadline_moving_day(d(date)), expected, "{date}");
        }
        check("2025-03-17", None); // an ordinary Monday
        check("2026-03-07", Some(DayKind::Saturday));
        check("2026-03-08", Some(DayKind::Sunday));
        check("2026-06-19", Some(DayKind::MidsummerEve));
        check("2026-06-20", Some(DayKind::Holiday(Holiday::MidsummerDay)));
        check("2026-12-24", Some(DayKind::ChristmasEve));
        check("2022-12-24", Some(DayKind::ChristmasEve)); // a Saturday
        check("2022-12-25", Some(DayKind::Holiday(Holiday::ChristmasDay))); // a Sunday
        check("2026-12-26", Some(DayKind::Holiday(Holiday::BoxingDay))); // a Saturday
        check("2026-12-31", Some(DayKind::NewYearsEve));
        check("2026-10-31", Some(DayKind::Holiday(Holiday::AllSaintsDay)));
        check("2026-10-30", None); // the Friday before alla helgons dag
        check("2026-01-05", None); // trettondedagsafton (RÅ 2004 not 40)
        check("2026-01-06", Some(DayKind::Holiday(Holiday::Epiphany)));
        check("2026-04-02", None); // skärtorsdag
        check("2026-04-30", None); // valborgsmässoafton
        check("2026-05-14", Some(DayKind::Holiday(Holiday::AscensionDay)));
        check("2026-05-15", None); // the Friday after Kristi himmelsfärdsdag
    }

    #[test]
    fn next_deadline_day_lists_every_skipped_day() {
        fn check(date: &str, expected_day: &str, expected_skipped: &str) {
            let (day, skipped) = next_deadline_day(d(date));
            let skipped = skipped
                .iter()
                .map(|(date, kind)| format!("{} {}", date.format("%m-%d"), kind.name_sv()))
                .collect::<Vec<_>>()
                .join(", ");
            assert_eq!((day, skipped.as_str()), (d(expected_day), expected_skipped), "{date}");
        }
        check("2025-03-17", "2025-03-17", "");
        check("2026-03-07", "2026-03-09", "03-07 lördag, 03-08 söndag");
        check("2026-12-24", "2026-12-28", "12-24 julafton, 12-25 juldagen, 12-26 annandag jul, 12-27 söndag");
        // The worst case in 1900..=2200: julafton on a Wednesday moves five days.
        check(
            "2025-12-24",
            "2025-12-29",
            "12-24 julafton, 12-25 juldagen, 12-26 annandag jul, 12-27 lördag, 12-28 söndag",
        );
        check("2026-04-03", "2026-04-07", "04-03 långfredagen, 04-04 lördag, 04-05 påskdagen, 04-06 annandag påsk");
        check("2026-06-19", "2026-06-22", "06-19 midsommarafton, 06-20 midsommardagen, 06-21 söndag");
        check("2026-12-31", "2027-01-04", "12-31 nyårsafton, 01-01 nyårsdagen, 01-02 lördag, 01-03 söndag");
        check("2004-05-29", "2004-06-01", "05-29 lördag, 05-30 pingstdagen, 05-31 annandag pingst");
        check("2005-05-14", "2005-05-16", "05-14 lördag, 05-15 pingstdagen");
    }

    #[test]
    fn the_longest_move_in_the_checked_years_is_five_days() {
        // The worst case is a run of five moving days: julafton on a Wednesday (24–28 December,
        // e.g. 2025) or a Saturday 22 December before a Monday julafton (22–26 December, e.g.
        // 2029). A bound of four days is the intuitive guess and is wrong.
        let mut longest = 0;
        let mut worst = Vec::new();
        for day in every_day() {
            let (moved_to, skipped) = next_deadline_day(day);
            let moved = (moved_to - day).num_days();
            assert_eq!(moved, i64::try_from(skipped.len()).unwrap(), "{day}");
            if moved > longest {
                longest = moved;
                worst.clear();
            }
            if moved == longest {
                worst.push(day.format("%m-%d %a").to_string());
            }
        }
        worst.sort();
        worst.dedup();
        assert_eq!(longest, 5);
        assert_eq!(worst, ["12-22 Sat", "12-24 Wed"]);
    }

    #[test]
    fn add_months_counts_by_day_number() {
        fn check(start: &str, months: u32, expected: &str) {
            assert_eq!(add_months(d(start), months), d(expected), "{start} + {months}");
        }
        check("2026-10-31", 4, "2027-02-28");
        check("2023-10-31", 4, "2024-02-29");
        check("1899-10-31", 4, "1900-02-28"); // 1900 is no leap year
        check("2099-10-31", 4, "2100-02-28"); // nor is 2100
        check("1999-10-31", 4, "2000-02-29"); // but 2000 is
        check("2025-11-30", 4, "2026-03-30");
        check("2025-10-29", 4, "2026-02-28");
        check("2025-03-03", 4, "2025-07-03");
        check("2025-08-31", 4, "2025-12-31");
        check("2025-01-31", 1, "2025-02-28");
        check("2025-05-15", 0, "2025-05-15");
    }

    #[test]
    fn outside_chrono_range_nothing_panics() {
        assert_eq!(add_months(NaiveDate::MAX, 4), NaiveDate::MAX);
        assert_eq!(next_deadline_day(NaiveDate::MAX).0, NaiveDate::MAX);
        assert_eq!(shift_days_saturating(NaiveDate::MIN, -1), NaiveDate::MIN);
        assert!(holidays_of_year(i32::MAX).is_empty());
    }

    #[test]
    fn names_are_distinct() {
        let mut sv: Vec<_> = Holiday::ALL.iter().map(|h| h.name_sv()).collect();
        let mut en: Vec<_> = Holiday::ALL.iter().map(|h| h.name_en()).collect();
        sv.sort();
        sv.dedup();
        en.sort();
        en.dedup();
        assert_eq!((sv.len(), en.len()), (Holiday::ALL.len(), Holiday::ALL.len()));
        assert_eq!(DayKind::Holiday(Holiday::Epiphany).name_sv(), "trettondedag jul");
        assert_eq!(DayKind::NewYearsEve.name_en(), "New Year's Eve");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn next_deadline_day_lands_on_a_working_day(date in any_date()) {
            let (day, skipped) = next_deadline_day(date);
            prop_assert!(is_working_day(day));
            prop_assert!(day >= date);
            prop_assert!((day - date).num_days() <= 5);
            for (offset, (skipped_day, kind)) in skipped.iter().enumerate() {
                prop_assert_eq!(*skipped_day, shift_days_saturating(date, offset as i64));
                prop_assert_eq!(deadline_moving_day(*skipped_day), Some(*kind));
            }
        }

        #[test]
        fn is_working_day_agrees_with_holidays(date in any_date()) {
            let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
            if weekend || is_public_holiday(date) {
                prop_assert!(!is_working_day(date));
            }
            if public_holiday(date).is_some() {
                prop_assert!(is_public_holiday(date));
            }
        }

        #[test]
        fn add_months_keeps_the_day_or_ends_the_month(date in any_date(), months in 0u32..=24) {
            let end = add_months(date, months);
            prop_assert!(end.day() <= date.day());
            let month_index = |day: NaiveDate| day.year() * 12 + day.month0() as i32;
            prop_assert_eq!(month_index(end), month_index(date) + months as i32);
            if end.day() < date.day() {
                // Clamped: the end month must have no day with the start day's number.
                prop_assert!(end.succ_opt().unwrap().month() != end.month());
            }
        }
    }
}

/// The days' names for the rules' own tests and their messages; a user reads the catalogue's
/// (`[day]` in templates/words.LANG.toml), which a test holds equal.
#[cfg(test)]
mod names {
    use super::{DayKind, Holiday};

    impl Holiday {
        /// The Swedish name as written in running text, for the rules' own tests and messages (a
        /// user reads the catalogue's, `[day]` in templates/words.sv.toml).
        pub(crate) fn name_sv(self) -> &'static str {
            match self {
                Holiday::NewYearsDay => "nyårsdagen",
                Holiday::Epiphany => "trettondedag jul",
                Holiday::GoodFriday => "långfredagen",
                Holiday::EasterSunday => "påskdagen",
                Holiday::EasterMonday => "annandag påsk",
                Holiday::MayDay => "första maj",
                Holiday::AscensionDay => "Kristi himmelsfärdsdag",
                Holiday::Pentecost => "pingstdagen",
                Holiday::WhitMonday => "annandag pingst",
                Holiday::NationalDay => "Sveriges nationaldag",
                Holiday::MidsummerDay => "midsommardagen",
                Holiday::AllSaintsDay => "alla helgons dag",
                Holiday::ChristmasDay => "juldagen",
                Holiday::BoxingDay => "annandag jul",
            }
        }

        /// The English name, for tests (a user reads `[day]` in templates/words.en.toml).
        pub(crate) fn name_en(self) -> &'static str {
            match self {
                Holiday::NewYearsDay => "New Year's Day",
                Holiday::Epiphany => "Epiphany",
                Holiday::GoodFriday => "Good Friday",
                Holiday::EasterSunday => "Easter Sunday",
                Holiday::EasterMonday => "Easter Monday",
                Holiday::MayDay => "May Day",
                Holiday::AscensionDay => "Ascension Day",
                Holiday::Pentecost => "Whit Sunday",
                Holiday::WhitMonday => "Whit Monday",
                Holiday::NationalDay => "National Day of Sweden",
                Holiday::MidsummerDay => "Midsummer Day",
                Holiday::AllSaintsDay => "All Saints' Day",
                Holiday::ChristmasDay => "Christmas Day",
                Holiday::BoxingDay => "Boxing Day",
            }
        }
    }

    impl DayKind {
        /// The Swedish name as written in running text, for the rules' own tests and messages (a
        /// user reads the catalogue's, `[day]` in templates/words.sv.toml).
        pub(crate) fn name_sv(self) -> &'static str {
            match self {
                DayKind::Holiday(holiday) => holiday.name_sv(),
                DayKind::Sunday => "söndag",
                DayKind::Saturday => "lördag",
                DayKind::MidsummerEve => "midsommarafton",
                DayKind::ChristmasEve => "julafton",
                DayKind::NewYearsEve => "nyårsafton",
            }
        }

        /// The English name, for tests (a user reads `[day]` in templates/words.en.toml).
        pub(crate) fn name_en(self) -> &'static str {
            match self {
                DayKind::Holiday(holiday) => holiday.name_en(),
                DayKind::Sunday => "Sunday",
                DayKind::Saturday => "Saturday",
                DayKind::MidsummerEve => "Midsummer Eve",
                DayKind::ChristmasEve => "Christmas Eve",
                DayKind::NewYearsEve => "New Year's Eve",
            }
        }
    }
}
