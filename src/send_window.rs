//! When notices may be sent: local office hours, public holidays excluded (`mail.send_window`).

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::rules::calendar::{deadline_moving_day, DayKind};

/// Local sending hours. Closed on public holidays and on midsommarafton, julafton and nyårsafton,
/// when offices are closed and a mail would only wait in an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendWindow {
    /// Send at once, day and night.
    Always,
    /// Send on the given weekdays between `start` (inclusive) and `end` (exclusive), local time.
    Hours { days: [bool; 7], start: NaiveTime, end: NaiveTime },
}

impl SendWindow {
    /// Parses `"always"` or `"Mon-Fri 07:00-18:00"` (days as a range or a comma list).
    pub fn parse(raw: &str) -> Result<SendWindow, String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("always") {
            return Ok(SendWindow::Always);
        }
        let (days_part, hours_part) = raw.split_once(' ').ok_or_else(|| {
            format!("expected \"always\" or days and hours like \"Mon-Fri 07:00-18:00\", got {raw:?}")
        })?;
        let mut days = [false; 7];
        for item in days_part.split(',') {
            let (from, to) = match item.split_once('-') {
                Some((a, b)) => (parse_weekday(a)?, parse_weekday(b)?),
                None => (parse_weekday(item)?, parse_weekday(item)?),
            };
            let mut d = from;
            loop {
                days[d.num_days_from_monday() as usize] = true;
                if d == to {
                    break;
                }
                d = d.succ();
            }
        }
        let (start, end) = hours_part
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("expected hours like 07:00-18:00, got {hours_part:?}"))?;
        let start = parse_time(start)?;
        let end = parse_time(end)?;
        if end <= start {
            return Err(format!("the window ends ({end}) before it starts ({start})"));
        }
        // Every Sunday is a public holiday, which the window excludes: a Sunday-only window would
        // never open, and every notice would wait for ever.
        if days[..6].iter().all(|d| !d) {
            return Err(format!(
                "{raw:?} never opens: every Sunday is a public holiday, on which no mail is sent; include a weekday"
            ));
        }
        Ok(SendWindow::Hours { days, start, end })
    }

    /// Whether a notice may go out at `now`.
    pub fn is_open(&self, now: DateTime<Utc>, tz: Tz) -> bool {
        match self {
            SendWindow::Always => true,
            SendWindow::Hours { days, start, end } => {
                let local = now.with_timezone(&tz);
                let time = local.time();
                self.day_is_open(local.date_naive(), days) && time >= *start && time < *end
            }
        }
    }

    /// The earliest instant at or after `now` when the window is open.
    pub fn next_open(&self, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let (days, start) = match self {
            SendWindow::Always => return now,
            SendWindow::Hours { days, start, .. } => (days, *start),
        };
        if self.is_open(now, tz) {
            return now;
        }
        let today = now.with_timezone(&tz).date_naive();
        // A window opens on some day within any stretch of a year: at least one weekday is
        // allowed and no more than a handful of days in a row are holidays.
        for ahead in 0..400 {
            let date = today + Duration::days(ahead);
            if !self.day_is_open(date, days) {
                continue;
            }
            let opening = local_instant(tz, date, start);
            if opening >= now {
                return opening;
            }
        }
        now
    }

    /// How long the window was open between `from` and `to`: the time a mail could have gone
    /// out. The give-up clock of a failing mail counts this, not wall time, so that a notice
    /// held over a weekend is not given up after one failure on Monday morning. Days further back
    /// than ten years from `to` are not counted (a give-up period is days, not years).
    pub fn open_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, tz: Tz) -> Duration {
        let (days, start, end) = match self {
            SendWindow::Always => return (to - from).max(Duration::zero()),
            SendWindow::Hours { days, start, end } => (days, *start, *end),
        };
        if to <= from {
            return Duration::zero();
        }
        let from = from.max(to - Duration::days(3660));
        let mut open = Duration::zero();
        let mut date = from.with_timezone(&tz).date_naive();
        let last = to.with_timezone(&tz).date_naive();
        while date <= last {
            if self.day_is_open(date, days) {
                let opens = local_instant(tz, date, start).max(from);
                let closes = local_instant(tz, date, end).min(to);
                if closes > opens {
                    open += closes - opens;
                }
            }
            date += Duration::days(1);
        }
        open
    }

    fn day_is_open(&self, date: NaiveDate, days: &[bool; 7]) -> bool {
        if !days[date.weekday().num_days_from_monday() as usize] {
            return false;
        }
        match deadline_moving_day(date) {
            None | Some(DayKind::Saturday) => true,
            Some(_) => false,
        }
    }
}

impl fmt::Display for SendWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendWindow::Always => f.write_str("always"),
            SendWindow::Hours { days, start, end } => {
                let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
                let list: Vec<&str> = (0..7).filter(|i| days[*i]).map(|i| names[i]).collect();
                write!(f, "{} {}-{}", list.join(","), start.format("%H:%M"), end.format("%H:%M"))
            }
        }
    }
}

/// The UTC instant of a local wall-clock time; at a spring-forward gap, the first valid instant after.
fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut naive = date.and_time(time);
    for _ in 0..4 {
        if let Some(t) = tz.from_local_datetime(&naive).earliest() {
            return t.with_timezone(&Utc);
        }
        naive += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_time(time))
}

fn parse_weekday(raw: &str) -> Result<Weekday, String> {
    raw.trim().parse::<Weekday>().map_err(|_| format!("{raw:?} is not a weekday (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

fn parse_time(raw: &str) -> Result<NaiveTime, String> {
    let raw = raw.trim();
    if raw == "24:00" {
        return NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).ok_or_else(|| "unreachable".to_string());
    }
    NaiveTime::parse_from_str(raw, "%H:%M").map_err(|_| format!("{raw:?} is not a time like 07:00"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_and_prints() {
        let w = SendWindow::parse("Mon-Fri 07:00-18:00").unwrap();
        assert_eq!(w.to_string(), "Mon,Tue,Wed,Thu,Fri 07:00-18:00");
        assert_eq!(SendWindow::parse("always").unwrap(), SendWindow::Always);
        assert_eq!(SendWindow::parse("Sat,Sun 10:00-12:00").unwrap().to_string(), "Sat,Sun 10:00-12:00");
        for bad in ["", "Mon-Fri", "Mon-Fri 18:00-07:00", "Mo-Fr 07:00-18:00", "Mon-Fri 7-18"] {
            assert!(SendWindow::parse(bad).is_err(), "{bad}");
        }
        let never = SendWindow::parse("Sun 10:00-12:00").unwrap_err();
        assert!(never.contains("never opens"), "{never}");
    }

    #[test]
    fn every_accepted_window_opens_within_five_weeks() {
        let tz = chrono_tz::Europe::Stockholm;
        let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        for mask in 1u32..128 {
            let days: Vec<&str> = (0..7).filter(|i| mask & (1 << i) != 0).map(|i| names[i]).collect();
            let raw = format!("{} 10:00-12:00", days.join(","));
            let Ok(window) = SendWindow::parse(&raw) else {
                assert_eq!(days, ["Sun"], "{raw} was refused");
                continue;
            };
            // From the Friday before julafton 2026, the longest stretch of closed days.
            let from = utc("2026-12-18T12:00:00Z");
            let opens = window.next_open(from, tz);
            assert!(opens > from && opens - from < Duration::days(35) && window.is_open(opens, tz), "{raw}: {opens}");
        }
    }

    #[test]
    fn opens_on_next_working_morning_in_stockholm_time() {
        let tz = chrono_tz::Europe::Stockholm;
        let w = SendWindow::parse("Mon-Fri 07:00-18:00").unwrap();
        // Wednesday 2026-11-25 10:00 CET is open.
        assert!(w.is_open(utc("2026-11-25T09:00:00Z"), tz));
        // 18:30 CET is closed; next opening Thursday 07:00 CET = 06:00 UTC.
        assert_eq!(w.next_open(utc("2026-11-25T17:30:00Z"), tz), utc("2026-11-26T06:00:00Z"));
        // Friday evening before julafton 2026 (Thu): julafton, juldagen, annandag jul (Sat),
        // Sunday are closed; Monday 28 December 07:00 CET.
        assert_eq!(w.next_open(utc("2026-12-23T17:30:00Z"), tz), utc("2026-12-28T06:00:00Z"));
        // Summer time: 07:00 CEST = 05:00 UTC.
        assert_eq!(w.next_open(utc("2026-06-01T03:00:00Z"), tz), utc("2026-06-01T05:00:00Z"));
        assert_eq!(SendWindow::Always.next_open(utc("2026-12-24T23:00:00Z"), tz), utc("2026-12-24T23:00:00Z"));
    }

    #[test]
    fn counts_only_the_hours_the_window_was_open() {
        let tz = chrono_tz::Europe::Stockholm;
        let w = SendWindow::parse("Mon-Fri 07:00-18:00").unwrap();
        let hours = |from: &str, to: &str| w.open_between(utc(from), utc(to), tz).num_minutes() as f64 / 60.0;
        // Written Friday 2026-11-20 10:00 CET, failing Monday 08:00 CET: Friday 10–18 and
        // Monday 07–08, nine hours, though 70 hours passed.
        assert_eq!(hours("2026-11-20T09:00:00Z", "2026-11-23T07:00:00Z"), 9.0);
        // Within one open day, and nothing when the order is reversed or the span is closed.
        assert_eq!(hours("2026-11-25T08:00:00Z", "2026-11-25T10:30:00Z"), 2.5);
        assert_eq!(hours("2026-11-25T10:00:00Z", "2026-11-25T08:00:00Z"), 0.0);
        assert_eq!(hours("2026-11-21T08:00:00Z", "2026-11-22T20:00:00Z"), 0.0);
        // Christmas 2026: 23 December (Wednesday) 17:00 CET to Monday 28 December 09:00 CET
        // is one hour on the 23rd and two on the 28th; julafton to annandag jul are closed.
        assert_eq!(hours("2026-12-23T16:00:00Z", "2026-12-28T08:00:00Z"), 3.0);
        // A week of office days: 5 × 11 hours.
        assert_eq!(hours("2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"), 55.0);
        assert_eq!(
            SendWindow::Always.open_between(utc("2026-11-20T09:00:00Z"), utc("2026-11-23T07:00:00Z"), tz),
            Duration::hours(70)
        );
    }
}
