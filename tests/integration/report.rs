//! `report compliance`: figures of a scripted set of deadlines against hand counts (sex split,
//! nominal-day share, suppression and its second cell), on SQLite and PostgreSQL; the CSV, JSON
//! and HTML of the real binary; the digest's 30-day share and the gauges counting alike.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};

use crate::helpers::{date, fristvakt, stderr, stdout};
use crate::support::app::TestApp;
use fristvakt::config::Settings;
use fristvakt::digest;
use fristvakt::domain::{CaseRef, ChildKey, Sex, UnitCode};
use fristvakt::report::{self, Dimension, Disclosure, Group, Period, Request, Tally};
use fristvakt::rules::{Deadline, DueReason, Kind};
use fristvakt::state::{DeadlineFilter, DeadlineRecord, StateStore};

const TODAY: &str = "2026-11-25";

both_engines!(figures_match_hand_counts);

#[tokio::test]
async fn the_digest_share_and_the_gauges_count_alike() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let state = scripted_state(&settings).await;
    let today = date(TODAY);
    let tallies = report::recent_by_unit_and_kind(&state, today).await.unwrap();
    // In the 30 days before 2026-11-25 (10-26 … 11-24): BRO-BU #4 overdue, #5 met (assessment),
    // #9 missed (investigation); nothing of SOD-BU.
    assert_eq!(
        tallies,
        BTreeMap::from([
            (
                ("BRO-BU".to_string(), Kind::Assessment),
                Tally { total: 2, met: 1, missed: 0, overdue: 1, met_nominal: 1 }
            ),
            (
                ("BRO-BU".to_string(), Kind::Investigation),
                Tally { total: 1, met: 0, missed: 1, overdue: 0, met_nominal: 0 }
            ),
        ])
    );
    let stored = state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let digests = digest::build_digests(&settings, &stored, today);
    let units: Vec<_> = digests.iter().flat_map(|d| d.units.iter()).collect();
    for unit in ["BRO-BU", "SOD-BU"] {
        let mut sum = Tally::default();
        tallies.iter().filter(|((u, _), _)| u == unit).for_each(|(_, t)| sum.add(t));
        let digest_share = units.iter().find(|u| u.unit.as_str() == unit).unwrap().compliance;
        assert_eq!(digest_share, digest::Compliance::from(&sum), "{unit}");
    }
    state.close().await;
}

#[tokio::test]
async fn the_binary_prints_csv_json_and_html_with_the_same_figures() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    // Written after `settings`, which writes the same file.
    let config = ws.config("[units.\"BRO-BU\"]\nname = \"Bromma barn och unga\"\n");
    let state = scripted_state(&settings).await;
    state.close().await;
    // Everything in the database file, nothing in the write-ahead log, before the reports run.
    let pool = sqlx::SqlitePool::connect(settings.state.url.expose()).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    pool.close().await;
    let files = || -> (Vec<u8>, u64) {
        let wal = std::fs::metadata(ws.path("state.db-wal")).map(|m| m.len()).unwrap_or(0);
        (std::fs::read(ws.path("state.db")).unwrap(), wal)
    };
    let before = files();
    let run = |format: &str, extra: &[&str]| {
        let mut args = vec![
            "report",
            "compliance",
            "--from",
            "2026-10-01",
            "--to",
            "2026-11-30",
            "--today",
            TODAY,
            "--format",
            format,
        ];
        args.extend_from_slice(extra);
        let out = fristvakt(Some(&config), &args, &[]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        stdout(&out)
    };

    // JSON: one object per group with the asked keys and the contract's figures.
    let json: serde_json::Value = serde_json::from_str(&run("json", &[])).unwrap();
    let groups = json.as_array().unwrap();
    assert_eq!(groups.len(), 4);
    for g in groups {
        let o = g.as_object().unwrap();
        for key in ["unit", "kind", "total", "met", "missed", "overdue", "share_met", "suppression"] {
            assert!(o.contains_key(key), "{key} missing in {g}");
        }
        // Present, and null: the scripted state holds no child key.
        assert_eq!(o.get("chained_investigations"), Some(&serde_json::Value::Null), "{g}");
        assert!(!o.contains_key("sex") && !o.contains_key("month"), "{g}");
    }
    let sod_protection = groups.iter().find(|g| g["unit"] == "SOD-BU" && g["kind"] == "protection").unwrap();
    assert_eq!(sod_protection["total"], 8);
    assert_eq!(sod_protection["share_met"], 0.875);
    assert_eq!(sod_protection["share_met_nominal"], 0.625);
    let small = groups.iter().find(|g| g["kind"] == "investigation").unwrap();
    assert_eq!((small["total"].clone(), small["suppression"].clone()), (serde_json::Value::Null, "small_group".into()));

    // CSV: parses back to the same figures, totals row last.
    let csv_text = run("csv", &[]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..4], ["row", "unit", "kind", "total"]);
    let rows: Vec<BTreeMap<String, String>> =
        reader.records().map(|r| header.iter().cloned().zip(r.unwrap().iter().map(String::from)).collect()).collect();
    assert_eq!(rows.len(), 5);
    for (row, g) in rows.iter().zip(groups) {
        for key in ["unit", "kind", "total", "met", "missed", "overdue", "share_met", "suppression"] {
            let from_json = match &g[key] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(row[key], from_json, "{key} of {row:?}");
        }
        // Every figure column is a number or empty: a spreadsheet reads it as numbers.
        for key in ["total", "met", "missed", "overdue", "share_met", "share_met_nominal", "days_used_median"] {
            assert!(row[key].is_empty() || row[key].parse::<f64>().is_ok(), "{key} of {row:?} is not a number");
        }
    }
    // A small group: its figures empty, the flag column says why.
    assert_eq!((rows[1]["total"].as_str(), rows[1]["suppression"].as_str()), ("", "small_group"));
    let totals = &rows[4];
    assert_eq!((totals["row"].as_str(), totals["total"].as_str(), totals["met"].as_str()), ("total", "22", "17"));
    assert_eq!(totals["share_met"], "0.7727");

    // --csv-dialect excel-sv: a byte order mark, semicolons, decimal commas, the same cells.
    let excel = run("csv", &["--csv-dialect", "excel-sv"]);
    let excel = excel.strip_prefix('\u{feff}').expect("a byte order mark");
    assert!(excel.contains("\r\n") && excel.starts_with("row;unit;kind;total;"), "{excel}");
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(excel.as_bytes());
    let swedish: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    assert_eq!(swedish.len(), rows.len());
    let share_at = header.iter().position(|h| h == "share_met").unwrap();
    assert_eq!(swedish[4][share_at], "0,7727");
    for (sv, row) in swedish.iter().zip(&rows) {
        for (cell, key) in sv.iter().zip(&header) {
            assert_eq!(cell.replace(',', "."), row[key], "{key}");
        }
    }

    // --no-suppress shows every figure and says so.
    let open: serde_json::Value = serde_json::from_str(&run("json", &["--no-suppress"])).unwrap();
    assert!(open.as_array().unwrap().iter().all(|g| g["suppression"] == "off" && g["total"].is_u64()), "{open}");
    assert!(run("table", &["--no-suppress"]).contains("EJ SKYDDAD"));

    // HTML: self-contained, one SVG per chart its grouping draws (the unit and kind chart by
    // default; the trend and the girls/boys chart need month and sex), English on request.
    let page = run("html", &[]);
    assert!(page.starts_with("<!DOCTYPE html>"), "{}", &page[..100.min(page.len())]);
    assert_eq!(page.matches("<svg").count(), 1);
    assert_eq!(page.matches("</svg>").count(), 1);
    assert_eq!(page.matches("class=\"nochart\"").count(), 2);
    let every_chart = run("html", &["--by", "unit,kind,sex,month"]);
    assert_eq!((every_chart.matches("<svg").count(), every_chart.matches("</svg>").count()), (3, 3));
    for external in ["http://", "https://", "src=", "<script", "@import", "url("] {
        assert!(!page.contains(external), "{external} in the page");
    }
    assert!(page.contains("@page") && page.contains("Bromma barn och unga") && page.contains("lang=\"sv\""));
    let english = run("html", &["--lang", "en"]);
    assert!(english.contains("Share met") && english.contains("lang=\"en\""));
    let path = ws.path("report.html");
    run("html", &["--output", path.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), page);

    // Nothing about a case leaves, and the state is untouched.
    let table = run("table", &["--by", "unit,kind,sex,month"]);
    for text in [&table, &csv_text, &page, &english, &every_chart] {
        assert!(!text.contains("ARENDE"), "a case reference in the output");
    }
    assert!(files() == before, "the report changed the state database");

    let bad = fristvakt(Some(&config), &["report", "compliance", "--from", "2026-11-30", "--to", "2026-10-01"], &[]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let bad = fristvakt(
        Some(&config),
        &["report", "compliance", "--from", "2026-10-01", "--to", "2026-11-30", "--by", "case_ref"],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let zero = ws.config("[report]\nmin_group = 0\n");
    let bad = fristvakt(Some(&zero), &["check-config"], &[]);
    assert_eq!(bad.status.code(), Some(78));
    assert!(stderr(&bad).contains("report.min_group"), "{}", stderr(&bad));
}

async fn figures_match_hand_counts(postgres: Option<String>) {
    let test = TestApp::with_sqlite_register(postgres);
    let settings = test.settings("");
    let state = scripted_state(&settings).await;
    let within = |to: &str, by: &[Dimension], suppress: bool| Request {
        period: Period { from: date("2026-10-01"), to: date(to) },
        today: date(TODAY),
        by: by.to_vec(),
        min_group: 5,
        suppress,
        chain_window_days: 30,
    };
    let request = |by: &[Dimension], suppress: bool| within("2026-11-30", by, suppress);

    let r = report::compliance(&state, &request(&[Dimension::Unit, Dimension::Kind], true)).await.unwrap();
    // No deadline is due after November: a period two months longer counts the same, read by a
    // scan (121 days from its first to its last day) where the 60 days are read unit by unit in
    // the index.
    let longer = report::compliance(&state, &within("2027-01-30", &[Dimension::Unit, Dimension::Kind], true)).await;
    assert_eq!(longer.unwrap().table, r.table);
    let t = &r.table;
    let keys: Vec<String> = t.groups.iter().map(|g| g.key.join("/")).collect();
    assert_eq!(keys, ["BRO-BU/assessment", "BRO-BU/investigation", "SOD-BU/protection", "SOD-BU/assessment"]);
    let bro_a = &t.groups[0];
    assert_eq!(bro_a.tally, Tally { total: 5, met: 3, missed: 1, overdue: 1, met_nominal: 2 });
    assert_eq!((bro_a.days_used.median, bro_a.days_used.p90, bro_a.longest_overrun), (Some(14.5), Some(17), Some(22)));
    let bro_i = &t.groups[1];
    assert_eq!(bro_i.tally, Tally { total: 2, met: 1, missed: 1, overdue: 0, met_nominal: 0 });
    let sod_p = &t.groups[2];
    assert_eq!(sod_p.tally, Tally { total: 8, met: 7, missed: 1, overdue: 0, met_nominal: 5 });
    assert_eq!((sod_p.days_used.median, sod_p.days_used.p90, sod_p.longest_overrun), (Some(0.0), Some(3), Some(2)));
    let sod_a = &t.groups[3];
    assert_eq!(sod_a.tally, Tally { total: 7, met: 6, missed: 1, overdue: 0, met_nominal: 6 });
    assert_eq!((sod_a.days_used.median, sod_a.days_used.p90, sod_a.longest_overrun), (Some(10.0), Some(20), Some(6)));
    // One small group (2): the smallest other group (5) is hidden with it.
    let disclosures: Vec<Disclosure> = t.groups.iter().map(|g| g.disclosure).collect();
    assert_eq!(disclosures, [Disclosure::Complement, Disclosure::SmallGroup, Disclosure::Shown, Disclosure::Shown]);
    assert_eq!(t.totals.tally, Tally { total: 22, met: 17, missed: 4, overdue: 1, met_nominal: 13 });
    assert_eq!(
        (t.totals.days_used.median, t.totals.days_used.p90, t.totals.longest_overrun),
        (Some(10.0), Some(20), Some(22))
    );
    assert_eq!(t.totals.disclosure, Disclosure::Shown);
    // No child key stored: chains are not counted, and the report says so rather than show 0.
    assert!(!t.chains && t.groups.iter().all(|g| g.chained.is_none()) && t.totals.chained.is_none());
    // BRO-BU's groups are hidden, so its share would give them away: no spread of one unit.
    assert_eq!(r.notes.unit_spread, None);
    let r = report::compliance(&state, &request(&[Dimension::Unit, Dimension::Kind], false)).await.unwrap();
    let spread = r.notes.unit_spread.as_ref().unwrap();
    // Unsuppressed: BRO-BU 4 of 7, SOD-BU 13 of 15.
    assert_eq!((spread.best.0.as_str(), spread.worst.0.as_str(), spread.units), ("SOD-BU", "BRO-BU", 2));
    assert!((spread.best.1 - 13.0 / 15.0).abs() < 1e-9 && (spread.worst.1 - 4.0 / 7.0).abs() < 1e-9);

    // By sex: girls 11 (all met, 8 by the nominal day), boys 10, unknown 1 → the boys' group is
    // hidden with the unknown one.
    let r = report::compliance(&state, &request(&[Dimension::Sex], true)).await.unwrap();
    let by_sex: BTreeMap<&str, &Group> = r.table.groups.iter().map(|g| (g.key[0].as_str(), g)).collect();
    assert_eq!(by_sex["F"].tally, Tally { total: 11, met: 11, missed: 0, overdue: 0, met_nominal: 8 });
    assert_eq!(by_sex["M"].tally, Tally { total: 10, met: 5, missed: 4, overdue: 1, met_nominal: 4 });
    assert_eq!(by_sex["unknown"].tally, Tally { total: 1, met: 1, missed: 0, overdue: 0, met_nominal: 1 });
    let disclosures: Vec<(&str, Disclosure)> = by_sex.iter().map(|(k, g)| (*k, g.disclosure)).collect();
    assert_eq!(
        disclosures,
        [("F", Disclosure::Shown), ("M", Disclosure::Complement), ("unknown", Disclosure::SmallGroup)]
    );
    // The boys' group is hidden: the comparison is made without figures.
    assert_eq!(r.notes.sex_gaps.len(), 1);
    assert_eq!(r.notes.sex_gaps[0].girls_boys, None);
    assert!(!r.notes.sex_gaps[0].comparable() && !r.notes.sex_gaps[0].notable());

    // Unsuppressed: the same figures, every group marked as such.
    let open = report::compliance(&state, &request(&[Dimension::Sex], false)).await.unwrap();
    assert!(open.table.groups.iter().all(|g| g.disclosure == Disclosure::Unsuppressed));
    assert_eq!(open.table.totals.tally, t.totals.tally);

    // By month: October and November of the legal last day.
    let r = report::compliance(&state, &request(&[Dimension::Month], false)).await.unwrap();
    let months: Vec<(String, u64)> = r.table.groups.iter().map(|g| (g.key[0].clone(), g.tally.total)).collect();
    assert_eq!(months, [("2026-10".to_string(), 19), ("2026-11".to_string(), 3)]);
    state.close().await;
}

/// The scripted deadlines (hand counts in the comments), stored as a poll stores them; one more
/// outside the period and one withdrawn inside it, which never count.
async fn scripted_state(settings: &Settings) -> StateStore {
    let state = StateStore::connect(&settings.state.url).await.unwrap();
    state.migrate().await.unwrap();
    let mut records = Vec::new();
    let mut n = 0;
    let mut add = |unit: &str,
                   sex: Option<Sex>,
                   kind: Kind,
                   start: NaiveDate,
                   nominal: NaiveDate,
                   due: NaiveDate,
                   closed: Option<NaiveDate>| {
        n += 1;
        records.push(DeadlineRecord {
            case_ref: CaseRef::parse(&format!("ARENDE-{n:03}")).unwrap(),
            unit: UnitCode::parse(unit).unwrap(),
            caseworker: None,
            child_sex: sex,
            deadline: Deadline {
                kind,
                start_on: start,
                nominal_due_on: nominal,
                due_on: due,
                closed_on: closed,
                due_reason: if due == nominal { DueReason::Nominal } else { DueReason::NextDay },
            },
            next_step_on: None,
            row_updated_at: Utc::now(),
            seen_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            child_key: None,
            case_of: None,
            cycle_start: None,
        });
    };
    let (f, m) = (Some(Sex::Female), Some(Sex::Male));
    let d = date;
    let plus = |day: NaiveDate, n: i64| day + chrono::Duration::days(n);
    use Kind::{Assessment, Investigation, Protection};
    // BRO-BU assessment: 5 counted — met 3 (nominal 2), missed 1, overdue 1; days 9, 16, 17, 13.
    add("BRO-BU", f, Assessment, d("2026-10-01"), d("2026-10-15"), d("2026-10-15"), Some(d("2026-10-10")));
    add("BRO-BU", f, Assessment, d("2026-10-03"), d("2026-10-17"), d("2026-10-19"), Some(d("2026-10-19")));
    add("BRO-BU", m, Assessment, d("2026-10-05"), d("2026-10-19"), d("2026-10-19"), Some(d("2026-10-22")));
    add("BRO-BU", m, Assessment, d("2026-10-20"), d("2026-11-03"), d("2026-11-03"), None);
    add("BRO-BU", None, Assessment, d("2026-11-01"), d("2026-11-15"), d("2026-11-16"), Some(d("2026-11-14")));
    // Not counted: due after today, due today (both open).
    add("BRO-BU", f, Assessment, d("2026-11-12"), d("2026-11-26"), d("2026-11-26"), None);
    add("BRO-BU", m, Assessment, d("2026-11-11"), d("2026-11-25"), d("2026-11-25"), None);
    // BRO-BU investigation: 2 — met after a holiday move (not by the nominal day), missed.
    add("BRO-BU", f, Investigation, d("2026-06-10"), d("2026-10-10"), d("2026-10-12"), Some(d("2026-10-12")));
    add("BRO-BU", m, Investigation, d("2026-07-01"), d("2026-11-01"), d("2026-11-02"), Some(d("2026-11-05")));
    // SOD-BU assessment: 7 — six met in 10 days (F, F, F, F, M, M), one missed in 20 (M).
    for i in 0..7 {
        let start = plus(d("2026-10-01"), i);
        let closed = plus(start, if i == 6 { 20 } else { 10 });
        add("SOD-BU", if i < 4 { f } else { m }, Assessment, start, plus(start, 14), plus(start, 14), Some(closed));
    }
    // SOD-BU protection: 8 — five the same day, two the next (met, not by the nominal day), one
    // three days later (missed by 2); girls on even i.
    for i in 0..8 {
        let start = plus(d("2026-10-10"), i);
        let closed = plus(
            start,
            match i {
                0..=4 => 0,
                5 | 6 => 1,
                _ => 3,
            },
        );
        add("SOD-BU", if i % 2 == 0 { f } else { m }, Protection, start, start, plus(start, 1), Some(closed));
    }
    // Outside the period.
    add("SOD-BU", f, Assessment, d("2026-09-16"), d("2026-09-30"), d("2026-09-30"), None);
    // Withdrawn below.
    add("SOD-BU", f, Assessment, d("2026-10-02"), d("2026-10-16"), d("2026-10-16"), None);
    let case_refs: Vec<CaseRef> = records.iter().map(|r| r.case_ref.clone()).collect();
    state.store_deadlines(&case_refs, &records, None).await.unwrap();
    let withdrawn = records.last().unwrap().case_ref.clone();
    state.store_deadlines(&[withdrawn], &[], None).await.unwrap();
    state
}

both_engines!(chains_are_counted_per_unit);

/// A pseudonymous key as a register would make it (hex of a keyed hash): never in any output.
fn child(letter: char) -> String {
    format!("9f{}e0c4b71d", letter.to_string().repeat(6))
}

/// Investigations of children A–H in two units (chains by hand in the comments), and three
/// assessments without a key; period 2026-01-01 … 2027-06-30 on 2026-11-25, window 30 days.
async fn chain_state(settings: &Settings) -> StateStore {
    let state = StateStore::connect(&settings.state.url).await.unwrap();
    state.migrate().await.unwrap();
    let mut records = Vec::new();
    let d = date;
    let mut add = |n: u32, unit: &str, key: Option<char>, kind: Kind, start: &str, due: &str, closed: Option<&str>| {
        records.push(DeadlineRecord {
            case_ref: CaseRef::parse(&format!("KEDJA-{n:03}")).unwrap(),
            unit: UnitCode::parse(unit).unwrap(),
            caseworker: None,
            child_sex: None,
            deadline: Deadline {
                kind,
                start_on: d(start),
                nominal_due_on: d(due),
                due_on: d(due),
                closed_on: closed.map(d),
                due_reason: DueReason::Nominal,
            },
            next_step_on: None,
            row_updated_at: Utc::now(),
            seen_on: d("2026-11-01"),
            child_key: key.map(|k| ChildKey::parse(&child(k)).unwrap()),
            case_of: None,
            cycle_start: None,
        });
    };
    use Kind::{Assessment, Investigation};
    // Child A: 1 closed 04-30; 2 opened 20 days later (chain, BRO-BU); 2 closed 09-10, 3 opened
    // 30 days later in SOD-BU (chain at the window's last day, counted in SOD-BU).
    add(1, "BRO-BU", Some('a'), Investigation, "2026-01-05", "2026-05-05", Some("2026-04-30"));
    add(2, "BRO-BU", Some('a'), Investigation, "2026-05-20", "2026-09-21", Some("2026-09-10"));
    add(3, "SOD-BU", Some('a'), Investigation, "2026-10-10", "2027-02-10", Some("2026-11-01"));
    // Child B: 5 opened 31 days after 4 closed: no chain.
    add(4, "SOD-BU", Some('b'), Investigation, "2026-02-01", "2026-06-01", Some("2026-03-01"));
    add(5, "SOD-BU", Some('b'), Investigation, "2026-04-01", "2026-08-03", Some("2026-06-15"));
    // Child C: 7 opened the day 6 closed (chain), still open and overdue.
    add(6, "BRO-BU", Some('c'), Investigation, "2026-03-01", "2026-07-01", Some("2026-05-01"));
    add(7, "BRO-BU", Some('c'), Investigation, "2026-05-01", "2026-09-01", None);
    // Child D: 10 follows both 8 (14 days) and 9 (5 days): one chained investigation.
    add(8, "SOD-BU", Some('d'), Investigation, "2026-01-10", "2026-05-11", Some("2026-04-01"));
    add(9, "SOD-BU", Some('d'), Investigation, "2026-01-20", "2026-05-20", Some("2026-04-10"));
    add(10, "SOD-BU", Some('d'), Investigation, "2026-04-15", "2026-08-17", None);
    // Child E: 12 is a chain, but open and not yet due: not in the report (yet).
    add(11, "BRO-BU", Some('e'), Investigation, "2026-06-01", "2026-10-01", Some("2026-10-01"));
    add(12, "BRO-BU", Some('e'), Investigation, "2026-10-20", "2027-02-22", None);
    // Child F: 13 is withdrawn below (its key cleared), so 14, 9 days after, is no chain.
    add(13, "BRO-BU", Some('f'), Investigation, "2026-02-01", "2026-06-01", Some("2026-06-01"));
    add(14, "BRO-BU", Some('f'), Investigation, "2026-06-10", "2026-10-12", None);
    // Child G: opened a day after child C's 6 closed — another child, no chain.
    add(15, "SOD-BU", Some('g'), Investigation, "2026-05-02", "2026-09-02", Some("2026-08-01"));
    // Child H: 17 opened 30 days after 16 closed (chain).
    add(16, "BRO-BU", Some('h'), Investigation, "2026-03-01", "2026-07-01", Some("2026-07-01"));
    add(17, "BRO-BU", Some('h'), Investigation, "2026-07-31", "2026-11-30", Some("2026-09-30"));
    // BRO-BU assessments, no key: 3 counted.
    for n in 18..21 {
        add(n, "BRO-BU", None, Assessment, "2026-10-01", "2026-10-15", Some("2026-10-10"));
    }
    let case_refs: Vec<CaseRef> = records.iter().map(|r| r.case_ref.clone()).collect();
    state.store_deadlines(&case_refs, &records, None).await.unwrap();
    state.store_deadlines(&[CaseRef::parse("KEDJA-013").unwrap()], &[], None).await.unwrap();
    state
}

async fn chains_are_counted_per_unit(postgres: Option<String>) {
    let test = TestApp::with_sqlite_register(postgres);
    let settings = test.settings("");
    let state = chain_state(&settings).await;
    let request = |by: &[Dimension], min_group: u64, window: i64| Request {
        period: Period { from: date("2026-01-01"), to: date("2027-06-30") },
        today: date(TODAY),
        by: by.to_vec(),
        min_group,
        suppress: true,
        chain_window_days: window,
    };
    let chained = |t: &report::Table| -> Vec<(String, Option<u64>, Disclosure)> {
        t.groups.iter().map(|g| (g.key.join("/"), g.chained, g.disclosure)).collect()
    };

    // By unit: BRO-BU 2, 7, 17 (of 1, 2, 6, 7, 11, 14, 16, 17 and three assessments = 11);
    // SOD-BU 3, 10 (of 3, 4, 5, 8, 9, 10, 15 = 7).
    let r = report::compliance(&state, &request(&[Dimension::Unit], 5, 30)).await.unwrap();
    assert!(r.table.chains);
    assert_eq!(
        chained(&r.table),
        [("BRO-BU".to_string(), Some(3), Disclosure::Shown), ("SOD-BU".to_string(), Some(2), Disclosure::Shown)]
    );
    let totals: Vec<u64> = r.table.groups.iter().map(|g| g.tally.total).collect();
    assert_eq!(totals, [11, 7]);
    assert_eq!(r.table.totals.chained, Some(5));

    // A window of 29 days loses the two chains at exactly 30 (3 and 17).
    let r = report::compliance(&state, &request(&[Dimension::Unit], 5, 29)).await.unwrap();
    let counts: Vec<Option<u64>> = r.table.groups.iter().map(|g| g.chained).collect();
    assert_eq!((counts, r.table.totals.chained), (vec![Some(2), Some(1)], Some(3)));

    // By unit and kind: only investigation groups hold a count. BRO-BU's three assessments are
    // a small group, SOD-BU's investigations (7, the smallest other) are hidden with them — and
    // then the totals row's chains would give SOD-BU's away (5 − 3), so they are hidden too.
    let r = report::compliance(&state, &request(&[Dimension::Unit, Dimension::Kind], 5, 30)).await.unwrap();
    assert_eq!(
        chained(&r.table),
        [
            ("BRO-BU/assessment".to_string(), None, Disclosure::SmallGroup),
            ("BRO-BU/investigation".to_string(), Some(3), Disclosure::Shown),
            ("SOD-BU/investigation".to_string(), Some(2), Disclosure::Complement),
        ]
    );
    assert!(r.table.totals.withheld.chained && r.table.totals.chained_shown().is_none());
    let json: serde_json::Value = serde_json::from_str(&report::render::json(&r).unwrap()).unwrap();
    let figures: Vec<serde_json::Value> =
        json.as_array().unwrap().iter().map(|g| g["chained_investigations"].clone()).collect();
    assert_eq!(figures, [serde_json::Value::Null, 3.into(), serde_json::Value::Null]);
    let csv_text = report::render::csv(&r, report::render::CsvDialect::Rfc4180).unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let at = reader.headers().unwrap().iter().position(|h| h == "chained_investigations").unwrap();
    let column: Vec<String> = reader.records().map(|row| row.unwrap()[at].to_string()).collect();
    assert_eq!(column, ["", "3", "", ""]);
    let words = report::render::Words::new(fristvakt::config::Language::English);
    let text = report::render::table(&r, &words);
    assert!(text.contains("Chained") && text.contains("at most 30 days"), "{text}");

    // Unsuppressed, one group for everything: 5 chained.
    let open = report::compliance(&state, &Request { suppress: false, ..request(&[], 5, 30) }).await.unwrap();
    assert_eq!(open.table.groups.iter().map(|g| g.chained).collect::<Vec<_>>(), [Some(5)]);
    let page = report::html::page(&open, &words, &BTreeMap::new());

    // No child key in any output.
    for output in [
        report::render::json(&open).unwrap(),
        report::render::csv(&open, report::render::CsvDialect::Rfc4180).unwrap(),
        text,
        csv_text,
        page,
    ] {
        for k in 'a'..='h' {
            assert!(!output.contains(&child(k)), "a child key in the output");
        }
        assert!(!output.contains("e0c4b71d") && !output.contains("KEDJA"), "a key or case reference in the output");
    }
    state.close().await;
}

/// Issue 22, with its exact command on the demo register: the girls/boys note gave a hidden
/// group's count and share, and with the totals row the small one's too. Now no hidden group's
/// share and no count attributed to it appears in any format, and no printed line less its
/// shown groups leaves one hidden group.
#[test]
fn the_demo_report_by_sex_and_kind_gives_no_hidden_group_away() {
    let ws = TestApp::sqlite();
    let config = ws.config("");
    let today = "2026-12-06";
    for args in [
        &["demo-data", "--cases", "2000", "--seed", "1", "--today", today][..],
        &["poll", "--once", "--today", today][..],
    ] {
        let out = fristvakt(Some(&config), args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let run = |extra: &[&str]| {
        let mut args = vec!["report", "compliance", "--from", "2026-01-01", "--to", "2026-06-30", "--by", "sex,kind"];
        args.extend_from_slice(&["--today", today]);
        args.extend_from_slice(extra);
        let out = fristvakt(Some(&config), &args, &[]);
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        stdout(&out)
    };
    let json = |text: String| -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&text).unwrap().as_array().unwrap().clone()
    };
    let shown = json(run(&["--format", "json"]));
    let truth = json(run(&["--format", "json", "--no-suppress"]));
    let key = |g: &serde_json::Value| format!("{}/{}", g["sex"], g["kind"]);
    let hidden: Vec<&serde_json::Value> =
        truth.iter().filter(|t| shown.iter().any(|s| key(s) == key(t) && s["suppression"] != "shown")).collect();
    let visible: Vec<&serde_json::Value> = shown.iter().filter(|s| s["suppression"] == "shown").collect();
    // The shape: a small group hidden ("< 5"), and at least one more hidden with it, so that
    // the totals row gives none of them away alone. (The cells were boys' follow-ups and
    // the unknown sex's investigations; with the six-month follow-up the demo's groups moved.)
    let small = hidden.iter().filter(|h| h["total"].as_u64().unwrap() < 5).count();
    assert!(small >= 1 && hidden.len() >= 2, "{hidden:?}");

    let outputs: Vec<(&str, String)> = vec![
        ("table", run(&[])),
        ("table en", run(&["--lang", "en"])),
        ("csv", run(&["--format", "csv"])),
        ("html", run(&["--format", "html"])),
        ("html en", run(&["--format", "html", "--lang", "en"])),
    ];
    // Every share printed with a decimal is a shown group's or the totals row's.
    let csv_text = &outputs[2].1;
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<BTreeMap<String, String>> =
        reader.records().map(|r| header.iter().cloned().zip(r.unwrap().iter().map(String::from)).collect()).collect();
    let mut allowed: Vec<f64> = Vec::new();
    for row in rows.iter().filter(|r| r["suppression"] == "shown") {
        for column in ["share_met", "share_met_nominal"] {
            if let Ok(v) = row[column].parse::<f64>() {
                allowed.push((v * 1000.0).round() / 10.0);
            }
        }
    }
    for (format, text) in &outputs {
        for value in one_decimal_percentages(text) {
            assert!(allowed.iter().any(|a| (a - value).abs() < 0.051), "{format}: {value} % is no shown figure");
        }
        // No count attributed to a hidden group: a chart bar's n, a note's "(n frister)".
        for h in &hidden {
            let n = h["total"].as_u64().unwrap();
            for needle in [format!("(n={n})"), format!("({n})"), format!("({n} frister)"), format!("({n} deadlines)")] {
                let visible_same = visible.iter().any(|v| v["total"].as_u64() == Some(n));
                assert!(visible_same || !text.contains(&needle), "{format}: {needle} of a hidden group");
            }
        }
    }
    // The totals row less the shown groups is the sum of both hidden groups, not one of them.
    let totals: u64 = rows.iter().find(|r| r["row"] == "total").unwrap()["total"].parse().unwrap();
    let shown_sum: u64 = visible.iter().map(|v| v["total"].as_u64().unwrap()).sum();
    let hidden_sum: u64 = hidden.iter().map(|h| h["total"].as_u64().unwrap()).sum();
    assert_eq!(totals - shown_sum, hidden_sum);
    assert!(hidden.iter().all(|h| h["total"].as_u64().unwrap() != hidden_sum), "one hidden group alone");
    // The follow-up comparison is made without figures.
    let table = &outputs[0].1;
    let line = table.lines().find(|l| l.starts_with("Uppföljning:")).unwrap();
    assert!(!line.chars().any(|c| c.is_ascii_digit() && c != '5'), "{line}");
}

/// The percentages with one decimal in `text` ("88,9 %", "88.9 %").
fn one_decimal_percentages(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    for i in 0..chars.len() {
        if chars[i] != '%' || i < 4 || chars[i - 1] != ' ' {
            continue;
        }
        let mut start = i - 1;
        while start > 0 && (chars[start - 1].is_ascii_digit() || chars[start - 1] == ',' || chars[start - 1] == '.') {
            start -= 1;
        }
        let number: String = chars[start..i - 1].iter().collect::<String>().replace(',', ".");
        if number.contains('.') {
            if let Ok(v) = number.parse() {
                out.push(v);
            }
        }
    }
    out
}
