//! How fristvakt words a number of days, in Swedish and English: "om 3 dagar", "3 dagar
//! försenad", "sista dagen i dag". Mails (`compose`) and `fristvakt explain` share these, so a
//! deadline reads the same wherever it is shown. Pure: no lettre, no templates.

use chrono::NaiveDate;

use crate::config::Language;

/// "1 dag", "3 dagar"; "1 day", "3 days".
pub fn days(lang: Language, n: i64) -> String {
    match (lang, n) {
        (Language::Swedish, 1) => "1 dag".to_string(),
        (Language::Swedish, n) => format!("{n} dagar"),
        (Language::English, 1) => "1 day".to_string(),
        (Language::English, n) => format!("{n} days"),
    }
}

/// A short status: "7 dagar kvar", "sista dagen i dag", "3 dagar försenad"; "7 days left",
/// "due today", "3 days overdue". `days_left` is negative when overdue.
pub fn days_left_phrase(lang: Language, days_left: i64) -> String {
    match (lang, days_left) {
        (Language::Swedish, 0) => "sista dagen i dag".to_string(),
        (Language::Swedish, n) if n > 0 => format!("{} kvar", days(lang, n)),
        (Language::Swedish, n) => format!("{} försenad", days(lang, -n)),
        (Language::English, 0) => "due today".to_string(),
        (Language::English, n) if n > 0 => format!("{} left", days(lang, n)),
        (Language::English, n) => format!("{} overdue", days(lang, -n)),
    }
}

/// A notice subject's "sista dag 2026-12-28 (om 3 dagar)".
pub fn situation(lang: Language, days_left: i64, due_on: NaiveDate) -> String {
    let due = iso(due_on);
    match lang {
        Language::Swedish => match days_left {
            n if n > 0 => format!("sista dag {due} (om {})", days(lang, n)),
            0 => format!("sista dag {due} (sista dagen i dag)"),
            n => format!("sista dag {due} ({} försenad)", days(lang, -n)),
        },
        Language::English => match days_left {
            n if n > 0 => format!("last day {due} (in {})", days(lang, n)),
            0 => format!("last day {due} (last day today)"),
            n => format!("last day {due} ({} overdue)", days(lang, -n)),
        },
    }
}

/// A notice body's "7 dagar kvar till sista dagen" or "3 dagar försenad – sista dagen var …".
pub fn days_text(lang: Language, days_left: i64, due_on: NaiveDate) -> String {
    let due = iso(due_on);
    match lang {
        Language::Swedish => match days_left {
            n if n > 0 => format!("{} kvar till sista dagen", days(lang, n)),
            0 => "i dag är sista dagen".to_string(),
            n => format!("{} försenad – sista dagen var {due}", days(lang, -n)),
        },
        Language::English => match days_left {
            n if n > 0 => format!("{} left until the last day", days(lang, n)),
            0 => "today is the last day".to_string(),
            n => format!("{} overdue – the last day was {due}", days(lang, -n)),
        },
    }
}

fn iso(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_phrases() {
        let cases = [
            (Language::Swedish, 7, "7 dagar kvar"),
            (Language::Swedish, 1, "1 dag kvar"),
            (Language::Swedish, 0, "sista dagen i dag"),
            (Language::Swedish, -1, "1 dag försenad"),
            (Language::Swedish, -3, "3 dagar försenad"),
            (Language::English, 7, "7 days left"),
            (Language::English, 1, "1 day left"),
            (Language::English, 0, "due today"),
            (Language::English, -1, "1 day overdue"),
            (Language::English, -3, "3 days overdue"),
        ];
        for (lang, left, expected) in cases {
            assert_eq!(days_left_phrase(lang, left), expected, "{lang:?} {left}");
        }
    }
}
