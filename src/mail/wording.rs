//! How fristvakt words a number of days, in Swedish and English: "om 3 dagar", "3 dagar
//! försenad", "sista dagen i dag". Mails (`compose`) and `fristvakt explain` share these, so a
//! deadline reads the same wherever it is shown. The words are the catalogue's
//! (`templates/words.LANG.toml`); this module picks which.

use chrono::NaiveDate;

use crate::catalogue::Words;

/// A short status: "7 dagar kvar", "sista dagen i dag", "3 dagar försenad"; "7 days left",
/// "due today", "3 days overdue". `days_left` is negative when overdue.
pub fn days_left_phrase(words: &Words, days_left: i64) -> String {
    match days_left {
        0 => words.fill("days_left.today", &[]),
        n if n > 0 => words.fill("days_left.left", &[("days", &words.days(n))]),
        n => words.fill("days_left.overdue", &[("days", &words.days(-n))]),
    }
}

/// A notice subject's "sista dag 2026-12-28 (om 3 dagar)".
pub fn situation(words: &Words, days_left: i64, due_on: NaiveDate) -> String {
    phrase(words, "situation", days_left, due_on)
}

/// A notice body's "7 dagar kvar till sista dagen" or "3 dagar försenad – sista dagen var …".
pub fn days_text(words: &Words, days_left: i64, due_on: NaiveDate) -> String {
    phrase(words, "days_text", days_left, due_on)
}

fn phrase(words: &Words, section: &str, days_left: i64, due_on: NaiveDate) -> String {
    let due = iso(due_on);
    let (which, n) = match days_left {
        n if n > 0 => ("left", n),
        0 => ("today", 0),
        n => ("overdue", -n),
    };
    words.fill(&format!("{section}.{which}"), &[("days", &words.days(n)), ("due", &due)])
}

fn iso(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Language;

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
            assert_eq!(days_left_phrase(Words::built_in(lang), left), expected, "{lang:?} {left}");
        }
    }
}
