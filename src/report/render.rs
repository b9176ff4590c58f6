//! A compliance report as a text table, CSV or JSON (register contract §4), and the words of
//! every format in Swedish and English. Every figure is shown as the report's one
//! [`Suppression`](super::Suppression) decided: a suppressed group shows none in any format.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::{Dimension, Disclosure, Group, Report, SexGap, Table};
use crate::catalogue;
use crate::config::Language;
use crate::rules::Kind;

/// A share 0–1 rounded to four decimals: the same figure in CSV and JSON.
pub fn share(value: Option<f64>) -> Option<f64> {
    value.map(|v| (v * 10_000.0).round() / 10_000.0)
}

/// A share as a percentage with one decimal, for people.
pub fn percent(value: Option<f64>, w: &Words) -> String {
    match value {
        Some(v) => format!("{:.1} %", v * 100.0).replace('.', &w.text("report.decimal_point")),
        None => "–".into(),
    }
}

/// The JSON form: an array with one object per group, keyed by the dimensions asked for and
/// `total, met, missed, overdue, share_met` (contract §4), plus `share_met_nominal`,
/// `days_used_median`, `days_used_p90`, `longest_overrun_days`, `chained_investigations` (the
/// group's investigations opened within `rules.chain_window` after another investigation of the
/// same child closed; null where chains are not counted: no child keys, another kind) and
/// `suppression` (`shown`, `small_group`, `complement`, or `off` with `--no-suppress`). A
/// suppressed group's figures are null. There is no totals row in JSON.
pub fn json(report: &Report) -> Result<String, serde_json::Error> {
    let table = &report.table;
    let rows: Vec<Value> = table.groups.iter().map(|g| json_group(table, g)).collect();
    serde_json::to_string_pretty(&rows)
}

fn json_group(table: &Table, g: &Group) -> Value {
    let mut o = Map::new();
    for (dim, value) in table.by.iter().zip(&g.key) {
        o.insert(dim.as_str().into(), Value::String(value.clone()));
    }
    let figure = |f: fn(&Group) -> Value| g.outcomes().map(f).unwrap_or(Value::Null);
    o.insert("total".into(), g.visible().map(|g| json!(g.tally.total)).unwrap_or(Value::Null));
    o.insert("met".into(), figure(|g| json!(g.tally.met)));
    o.insert("missed".into(), figure(|g| json!(g.tally.missed)));
    o.insert("overdue".into(), figure(|g| json!(g.tally.overdue)));
    o.insert("share_met".into(), figure(|g| json!(share(g.tally.share_met()))));
    o.insert("share_met_nominal".into(), figure(|g| json!(share(g.tally.share_met_nominal()))));
    o.insert("days_used_median".into(), figure(|g| json!(g.days_used.median)));
    o.insert("days_used_p90".into(), figure(|g| json!(g.days_used.p90)));
    o.insert("longest_overrun_days".into(), figure(|g| json!(g.longest_overrun)));
    o.insert("chained_investigations".into(), json!(g.chained_shown()));
    o.insert("suppression".into(), Value::String(g.disclosure.as_str().into()));
    Value::Object(o)
}

/// The CSV header: `row` (`group` or `total`), the dimensions, the figures, `suppression`.
pub fn csv_header(by: &[Dimension]) -> Vec<String> {
    let mut h = vec!["row".to_string()];
    h.extend(by.iter().map(|d| d.as_str().to_string()));
    h.extend(
        [
            "total",
            "met",
            "missed",
            "overdue",
            "share_met",
            "share_met_nominal",
            "days_used_median",
            "days_used_p90",
            "longest_overrun_days",
            "chained_investigations",
            "suppression",
        ]
        .map(String::from),
    );
    h
}

/// How the CSV is written (`--csv-dialect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsvDialect {
    /// RFC 4180: comma-separated, decimal point, no byte order mark.
    #[default]
    Rfc4180,
    /// For Swedish spreadsheets (Excel, LibreOffice in a Swedish locale): semicolon-separated,
    /// decimal comma, a UTF-8 byte order mark (so that å, ä, ö read right), CRLF line ends.
    ExcelSv,
}

/// The CSV form: a header row, one row per group, the totals row; UTF-8, ISO months, shares
/// 0–1. Every figure column holds a number or nothing, so that a spreadsheet reads it as
/// numbers: a suppressed group's figures (its total included) are empty, and the `suppression`
/// column says why (`small_group`, `complementary`); so are the totals row's figures that the
/// suppression withholds.
pub fn csv(report: &Report, dialect: CsvDialect) -> Result<String, csv::Error> {
    let table = &report.table;
    let mut builder = csv::WriterBuilder::new();
    if dialect == CsvDialect::ExcelSv {
        builder.delimiter(b';').terminator(csv::Terminator::CRLF);
    }
    let mut w = builder.from_writer(Vec::new());
    w.write_record(csv_header(&table.by))?;
    // A number's text in the dialect: a decimal comma for Swedish spreadsheets.
    let number = |text: String| match dialect {
        CsvDialect::Rfc4180 => text,
        CsvDialect::ExcelSv => text.replace('.', ","),
    };
    for (kind, g) in table.groups.iter().map(|g| ("group", g)).chain([("total", &table.totals)]) {
        let mut record = vec![kind.to_string()];
        if kind == "total" {
            record.extend(table.by.iter().map(|_| String::new()));
        } else {
            record.extend(g.key.iter().cloned());
        }
        let opt = |v: Option<String>| v.map(number).unwrap_or_default();
        let outcome = |f: fn(&Group) -> Option<String>| opt(g.outcomes().and_then(f));
        match g.visible() {
            Some(g) => record.extend([
                g.tally.total.to_string(),
                outcome(|g| Some(g.tally.met.to_string())),
                outcome(|g| Some(g.tally.missed.to_string())),
                outcome(|g| Some(g.tally.overdue.to_string())),
                outcome(|g| share(g.tally.share_met()).map(|s| s.to_string())),
                outcome(|g| share(g.tally.share_met_nominal()).map(|s| s.to_string())),
                opt(g.days_used.median.map(|m| m.to_string())),
                opt(g.days_used.p90.map(|p| p.to_string())),
                opt(g.longest_overrun.map(|o| o.to_string())),
                opt(g.chained_shown().map(|n| n.to_string())),
            ]),
            None => record.extend((0..10).map(|_| String::new())),
        }
        record.push(g.disclosure.as_str().to_string());
        w.write_record(&record)?;
    }
    let bytes = w.into_inner().map_err(|e| csv::Error::from(e.into_error()))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(match dialect {
        CsvDialect::Rfc4180 => text,
        CsvDialect::ExcelSv => format!("\u{feff}{text}"),
    })
}

/// The text table for a terminal, with the period, the notes and the suppression statement.
pub fn table(report: &Report, w: &Words) -> String {
    let table = &report.table;
    let mut heads: Vec<String> = table.by.iter().map(|d| w.dimension(*d).to_string()).collect();
    heads.extend(w.figure_heads().iter().map(|s| s.to_string()));
    if table.chains {
        heads.push(w.chain_head());
    }
    let mut rows: Vec<Vec<String>> = table.groups.iter().map(|g| text_row(report, g, w, &g.key, false)).collect();
    let mut label = vec![String::new(); table.by.len()];
    if let Some(first) = label.first_mut() {
        *first = w.totals();
    }
    let totals_row = text_row(report, &table.totals, w, &label, true);
    rows.push(totals_row);
    let widths: Vec<usize> = (0..heads.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([heads[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i < table.by.len() {
                let _ = write!(s, "{c}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(s, "{}{c}  ", " ".repeat(pad));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", w.title_line(report));
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", line(&heads));
    for (i, r) in rows.iter().enumerate() {
        if i + 1 == rows.len() {
            let _ = writeln!(out, "{}", "-".repeat(widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1)));
        }
        let _ = writeln!(out, "{}", line(r));
    }
    let _ = writeln!(out);
    for note in note_lines(report, w) {
        let _ = writeln!(out, "{note}");
    }
    out
}

fn text_row(report: &Report, g: &Group, w: &Words, label: &[String], totals: bool) -> Vec<String> {
    let mut r: Vec<String> = label.iter().zip(&report.table.by).map(|(v, d)| w.value(*d, v)).collect();
    r.extend(w.figures(g, report.request.min_group));
    if report.table.chains {
        r.push(w.chained(g, totals));
    }
    r
}

/// The plain-words lines under every table: what is counted, suppression, equal treatment.
pub fn note_lines(report: &Report, w: &Words) -> Vec<String> {
    let mut out = vec![w.counted_rule()];
    out.push(w.suppression_line(report));
    out.push(w.chain_line(report));
    if let Some(s) = &report.notes.unit_spread {
        out.push(w.unit_spread(s));
    }
    for gap in &report.notes.sex_gaps {
        out.push(w.sex_gap(gap, report.request.min_group));
    }
    if report.table.by.contains(&Dimension::Sex) && report.notes.sex_gaps.is_empty() {
        out.push(w.text("report.girls_and_boys_too"));
    }
    out
}

/// The words of a report in one language (`[report]` in templates/words.LANG.toml).
#[derive(Debug, Clone, Copy)]
pub struct Words {
    pub lang: Language,
    words: &'static catalogue::Words,
    clocks: &'static catalogue::Catalogue,
}

impl Words {
    /// The built-in words of `lang`.
    pub fn new(lang: Language) -> Words {
        Words { lang, words: catalogue::Words::built_in(lang), clocks: catalogue::Catalogue::of(lang) }
    }

    /// The words of `lang` with the override of `mail.templates_dir` (checked at start-up; the
    /// built-in words should it fail later).
    pub fn of(settings: &crate::config::Settings, lang: Language) -> Words {
        let words = catalogue::Words::load(lang, settings.mail.templates_dir.as_deref())
            .unwrap_or_else(|_| catalogue::Words::built_in(lang));
        Words { lang, words, clocks: catalogue::Catalogue::for_settings(settings, lang) }
    }

    /// The words of `key`.
    pub fn text(&self, key: &str) -> String {
        self.words.get(key).to_string()
    }

    /// The words of `key` with its `{name}`s filled in.
    pub fn fill(&self, key: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
        self.words.fill(key, args)
    }

    pub fn title(&self) -> String {
        self.text("report.compliance_with_statutory_deadlines")
    }

    pub fn title_line(&self, report: &Report) -> String {
        let r = &report.request;
        self.fill(
            "report.title_line",
            &[("title", &self.title()), ("from", &r.period.from), ("to", &r.period.to), ("today", &r.today)],
        )
    }

    pub fn dimension(&self, d: Dimension) -> String {
        match d {
            Dimension::Unit => self.text("report.unit"),
            Dimension::Kind => self.text("report.kind"),
            Dimension::Sex => self.text("report.sex"),
            Dimension::Month => self.text("report.month"),
        }
    }

    /// A dimension's value for people: kinds and sexes named, units and months as they are.
    pub fn value(&self, d: Dimension, v: &str) -> String {
        match d {
            Dimension::Kind => match v.parse::<Kind>() {
                Ok(k) => self.kind(k),
                Err(_) => v.to_string(),
            },
            Dimension::Sex => match v {
                "F" => self.text("report.girls"),
                "M" => self.text("report.boys"),
                "unknown" => self.text("report.unknown"),
                other => other.to_string(),
            },
            _ => v.to_string(),
        }
    }

    pub fn kind(&self, k: Kind) -> String {
        self.clocks.clock(k).name.clone()
    }

    pub fn totals(&self) -> String {
        self.text("report.total")
    }

    pub fn figure_heads(&self) -> Vec<String> {
        [
            "total",
            "met",
            "missed",
            "overdue",
            "share_met",
            "against_nominal",
            "median_days",
            "p90_days",
            "longest_overrun",
        ]
        .map(|head| self.text(&format!("report.head.{head}")))
        .to_vec()
    }

    /// The figure cells of a row: numbers, or "< N" and "*" when suppressed (also for the totals
    /// row's withheld figures).
    pub fn figures(&self, g: &Group, min_group: u64) -> Vec<String> {
        let outcome = |f: &dyn Fn(&Group) -> String| g.outcomes().map(f).unwrap_or_else(|| "*".into());
        match g.visible() {
            Some(g) => vec![
                g.tally.total.to_string(),
                outcome(&|g| g.tally.met.to_string()),
                outcome(&|g| g.tally.missed.to_string()),
                outcome(&|g| g.tally.overdue.to_string()),
                outcome(&|g| percent(g.tally.share_met(), self)),
                outcome(&|g| percent(g.tally.share_met_nominal(), self)),
                g.days_used.median.map(|m| self.number(m)).unwrap_or_else(|| "–".into()),
                g.days_used.p90.map(|p| p.to_string()).unwrap_or_else(|| "–".into()),
                g.longest_overrun.map(|o| o.to_string()).unwrap_or_else(|| "–".into()),
            ],
            None => {
                let total = if g.disclosure == Disclosure::SmallGroup { format!("< {min_group}") } else { "*".into() };
                let mut v = vec![total];
                v.extend((0..8).map(|_| "*".to_string()));
                v
            }
        }
    }

    /// The head of the chained-investigations column (shown when chains were counted).
    pub fn chain_head(&self) -> String {
        self.text("report.chained")
    }

    /// A group's chained investigations: the count, "*" when hidden (a suppressed group, or the
    /// totals row when it would give one away), "–" where there is no investigation to count.
    pub fn chained(&self, g: &Group, totals: bool) -> String {
        match (g.chained_shown(), g.chained) {
            (Some(n), _) => n.to_string(),
            (None, None) if !totals && g.visible().is_some() => "–".into(),
            (None, _) => "*".into(),
        }
    }

    /// What the chain column counts, or that it could not be counted.
    pub fn chain_line(&self, report: &Report) -> String {
        let days = report.request.chain_window_days;
        if report.table.chains {
            self.fill("report.chains_counted", &[("days", &days)])
        } else {
            self.text("report.chains_not_counted")
        }
    }

    fn number(&self, v: f64) -> String {
        let text = if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") };
        text.replace('.', &self.text("report.decimal_point"))
    }

    pub fn counted_rule(&self) -> String {
        self.text("report.counted_deadlines_whose_last")
    }

    pub fn suppression_line(&self, report: &Report) -> String {
        let min = report.request.min_group;
        if report.request.suppress {
            self.fill("report.suppressed", &[("min", &min)])
        } else {
            self.text("report.note_unsuppressed_small_groups")
        }
    }

    pub fn unit_spread(&self, s: &super::UnitSpread) -> String {
        let p = |v: f64| percent(Some(v), self);
        let left_out = if s.units_left_out > 0 {
            self.fill("report.units_left_out", &[("units", &s.units_left_out)])
        } else {
            String::new()
        };
        let points = self.number(((s.best.1 - s.worst.1) * 1000.0).round() / 10.0);
        self.fill(
            "report.unit_spread",
            &[
                ("best", &s.best.0),
                ("best_share", &p(s.best.1)),
                ("worst", &s.worst.0),
                ("worst_share", &p(s.worst.1)),
                ("median", &p(s.median)),
                ("units", &s.units),
                ("points", &points),
                ("left_out", &left_out),
            ],
        )
    }

    /// A girls/boys comparison; without figures when it would take in a hidden group.
    pub fn sex_gap(&self, g: &SexGap, min_group: u64) -> String {
        let what = match g.kind {
            Some(k) => self.kind(k),
            None => self.text("report.all_deadlines"),
        };
        let Some((girls, boys)) = g.girls_boys else {
            return self.fill("report.sex_gap_hidden", &[("what", &what), ("min_group", &min_group)]);
        };
        let p = |t: &super::Tally| percent(t.share_met(), self);
        let points = g.gap_points().map(|x| self.number((x.abs() * 10.0).round() / 10.0)).unwrap_or_default();
        let girls_ahead = g.gap_points().unwrap_or(0.0) > 0.0;
        let args: [(&str, &dyn std::fmt::Display); 9] = [
            ("what", &what),
            ("girls", &p(&girls)),
            ("boys", &p(&boys)),
            ("girls_total", &girls.total),
            ("boys_total", &boys.total),
            ("min", &super::MIN_FOR_COMPARISON),
            ("points", &points),
            ("ahead", &self.text(if girls_ahead { "report.girls_deadlines" } else { "report.boys_deadlines" })),
            ("behind", &self.text(if girls_ahead { "report.boys_behind" } else { "report.girls_behind" })),
        ];
        let key = match (g.comparable(), g.notable()) {
            (false, _) => "report.sex_gap_too_few",
            (true, true) => "report.sex_gap_notable",
            (true, false) => "report.sex_gap_small",
        };
        self.fill(key, &args)
    }
}
