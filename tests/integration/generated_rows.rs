//! Generated register rows (issue 24, "What to build" 2): every column of the view, required
//! and optional, filled with generated values — any Unicode (combining marks, case changes that
//! grow a string), controls, huge text, invalid UTF-8 and other BLOBs, integers, reals, edge
//! dates — beside personal columns the view may carry. The real binary polls the register
//! (`poll --once`, mail as `.eml` files); then:
//!
//! - the poll completes;
//! - every row whose values are text the rules can read gets exactly the deadlines
//!   `register::validate` and `rules::deadlines_for` give it (those retained), and every row they
//!   refuse none; the rows refused are counted (`rows_rejected`) with a reason;
//! - no value of a personal column or of `child_key` appears in a log line, a mail or a metric
//!   label (case references, unit codes, addresses and dates are the contract's fields).
//!
//! SQLite takes every value as generated (its columns have no type); a fixed sample of the
//! same, as PostgreSQL's typed columns can hold it, runs on PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::helpers::{fristvakt, postgres_register_with, stderr};
use crate::support::app::TestApp;

use fristvakt::app::Moment;
use fristvakt::register::{validate, RawRow, COLUMNS};
use fristvakt::rules::{deadlines_for, RuleOptions};
use fristvakt::state::DeadlineFilter;

const TODAY: &str = "2026-11-16";
/// The personal columns a real view may carry beside the contract's: never read by fristvakt.
const PERSONAL: [&str; 3] = ["child_name", "personnummer", "notes"];

/// One generated cell, as the engine stores it.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Blob(Vec<u8>),
    Int(i64),
    Real(f64),
}

impl Cell {
    fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// One generated row: a cell for every column of the view, in the order of `COLUMNS`, and the
/// personal columns, each holding a marker that must never leave the register.
#[derive(Debug, Clone)]
struct Row {
    cells: Vec<Cell>,
    personal: [String; 3],
}

impl Row {
    /// The row as the rules read it, when every cell is text of at most 64 KiB or NULL (other
    /// values and huge cells are refused or converted by the reader: only counted).
    fn raw(&self) -> Option<RawRow> {
        let mut values = Vec::new();
        for cell in &self.cells {
            match cell {
                Cell::Null => values.push(None),
                Cell::Text(t) if t.len() <= 65_536 => values.push(Some(t.clone())),
                _ => return None,
            }
        }
        Some(RawRow::from_values(values))
    }

    fn child_key(&self) -> Option<&str> {
        self.cells[column("child_key")].text()
    }
}

fn column(name: &str) -> usize {
    COLUMNS.iter().position(|c| c.name == name).unwrap()
}

/// Text a hostile or careless register may hold.
fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        // Case changes that grow a string, combining marks, ligatures.
        "[aİßﬃǅΐ\u{0301}\u{0308}\u{0345} ]{0,10}",
        // Controls, line and direction marks.
        "[a\u{0}-\u{1f}\u{7f}\u{85}\u{2028}\u{2029}\u{202E}\u{FEFF}]{1,6}",
        // Addresses whose domain changes when lowercased, or that the mail library refuses.
        "[a-zå]{1,6}@[a-zİßK]{1,6}\\.[a-z]{2}",
        Just(format!("anna@{}.example", "a".repeat(70))),
        Just(String::new()),
        Just(" ".to_string()),
        Just("x".repeat(70_000)),
        Just("ö".repeat(33_000)),
    ]
}

/// A day as text, at the calendar's edges and beyond, or not a day at all.
fn day_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0i64..120).prop_map(|d| (NaiveDate::from_ymd_opt(2026, 8, 1).unwrap() + chrono::Days::new(d as u64)).to_string()),
        1 => prop_oneof![
            Just("1900-01-01".to_string()),
            Just("1899-12-31".to_string()),
            Just("2200-12-31".to_string()),
            Just("2201-01-01".to_string()),
            Just("2024-02-29".to_string()),
            Just("2026-02-29".to_string()),
            Just("0000-00-00".to_string()),
            Just("9999-12-31".to_string()),
            Just("2026-11-16T00:00:00Z".to_string()),
            Just("16/11/2026".to_string()),
        ],
    ]
}

/// A replacement for a cell: anything the engine can hold.
fn odd_cell() -> impl Strategy<Value = Cell> {
    prop_oneof![
        2 => Just(Cell::Null),
        4 => odd_text().prop_map(Cell::Text),
        2 => day_text().prop_map(Cell::Text),
        1 => proptest::collection::vec(any::<u8>(), 0..12).prop_map(Cell::Blob),
        // Bytes that are not UTF-8, as a Latin-1 export writes "ÅBO".
        1 => Just(Cell::Blob(b"2026-\xc5BO-1".to_vec())),
        1 => any::<i64>().prop_map(Cell::Int),
        1 => prop_oneof![Just(0.5f64), Just(-1e300), Just(20261116.0)].prop_map(Cell::Real),
    ]
}

/// A row: a valid base row (an assessment received in the last months) with some cells, in any
/// column, replaced by odd ones. `i` keeps case references apart.
fn row(i: usize) -> impl Strategy<Value = Row> {
    let base = (day_text(), proptest::option::of(day_text()), proptest::option::of(day_text()));
    // A third of the rows as the register should hold them, the others with one cell in ten or
    // in four replaced.
    let replaced = prop_oneof![Just(0.001), Just(0.1), Just(0.25)]
        .prop_flat_map(|p| proptest::collection::vec(proptest::option::weighted(p, odd_cell()), COLUMNS.len()));
    let personal = (odd_text(), odd_text(), odd_text());
    (base, replaced, personal, proptest::bool::ANY).prop_map(
        move |((received, assessed, decided), replaced, personal, keyed)| {
            let mut cells: Vec<Cell> = COLUMNS
                .iter()
                .map(|c| match c.name {
                    "case_ref" => Cell::Text(format!("G{i:02}-2026")),
                    "unit" => Cell::Text("BRO-BU".into()),
                    "caseworker" => Cell::Text("anna.handlaggare@kommun.example".into()),
                    "child_sex" => Cell::Text("F".into()),
                    "received_on" => Cell::Text(received.clone()),
                    "protection_assessed_on" => assessed.clone().map_or(Cell::Null, Cell::Text),
                    "assessment_decided_on" => decided.clone().map_or(Cell::Null, Cell::Text),
                    "updated_at" => Cell::Text("2026-10-01T08:00:00.000000Z".into()),
                    // Unique per row, so that no rule across a child's cases applies.
                    "child_key" if keyed => Cell::Text(format!("«key{i:02}»")),
                    _ => Cell::Null,
                })
                .collect();
            for (cell, odd) in cells.iter_mut().zip(replaced) {
                if let Some(odd) = odd {
                    *cell = odd;
                }
            }
            // A case reference stays the row's own, whatever else it holds (two rows of one
            // reference would be one case).
            let base = format!("G{i:02}-2026");
            if let Cell::Text(t) = &cells[0] {
                if *t != base {
                    cells[0] = Cell::Text(format!("G{i:02}{t}"));
                }
            }
            // A child key keeps its row's marker, whatever else it holds (a shared key would
            // join rows across the rules of one child's cases).
            let key = column("child_key");
            if let Cell::Text(t) = &cells[key] {
                cells[key] = Cell::Text(format!("«key{i:02}»{t}"));
            }
            let mark = |n: usize, text: String| format!("«secret{i:02}-{n}»{text}");
            Row { cells, personal: [mark(0, personal.0), mark(1, personal.1), mark(2, personal.2)] }
        },
    )
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    (1usize..10).prop_flat_map(|n| (0..n).map(row).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 20, ..ProptestConfig::default() })]

    #[test]
    fn generated_register_rows_get_their_deadlines_or_are_counted_and_leak_nothing(rows in rows()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(check(&rows, None));
    }
}

/// The PostgreSQL run: a fixed sample of the same generated rows (a seeded generator), as
/// PostgreSQL's typed columns hold them: text without NUL, and dates and instants that are
/// dates and instants (other values stay in the SQLite run).
#[tokio::test]
async fn a_fixed_sample_of_generated_rows_on_postgresql() {
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[24; 32]));
    let mut sample = Vec::new();
    for _ in 0..3 {
        let rows = rows().new_tree(&mut runner).unwrap().current();
        let url = crate::support::postgres::shared().fresh_database().await;
        let storable: Vec<Row> = rows.into_iter().enumerate().map(|(i, row)| for_postgres(i, row)).collect();
        sample.push(storable.len());
        check(&storable, Some(url)).await;
    }
    println!("PostgreSQL: generated rows in 3 registers: {sample:?}");
}

/// `row` as PostgreSQL can hold it: a value its column cannot take becomes NULL.
fn for_postgres(i: usize, mut row: Row) -> Row {
    for (cell, c) in row.cells.iter_mut().zip(COLUMNS.iter()) {
        let keep = match (&*cell, c.storage) {
            (Cell::Null, _) => c.nullable,
            (Cell::Text(t), fristvakt::register::Storage::Text) => !t.contains('\0'),
            (Cell::Text(t), fristvakt::register::Storage::Date) => {
                NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok_and(|d| d.to_string() == *t)
            }
            (Cell::Text(t), fristvakt::register::Storage::Instant) => chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            _ => false,
        };
        if !keep {
            *cell = match (c.nullable, c.storage) {
                (true, _) => Cell::Null,
                (false, fristvakt::register::Storage::Instant) => Cell::Text("2026-10-01T08:00:00.000000Z".into()),
                (false, _) => Cell::Text(format!("P{i:02}")),
            };
        }
        if c.name == "updated_at" && *cell == Cell::Null {
            *cell = Cell::Text("2026-10-01T08:00:00.000000Z".into());
        }
    }
    for p in &mut row.personal {
        *p = p.replace('\0', "");
    }
    row
}

/// Writes `rows` to a register (SQLite in a workspace, or the PostgreSQL database `postgres`),
/// polls it with the binary and checks the invariants.
async fn check(rows: &[Row], postgres: Option<String>) {
    let ws = TestApp::sqlite();
    let register = match &postgres {
        None => {
            write_sqlite(&ws.path("register.db"), rows).await;
            ws.sqlite_url("register.db")
        }
        Some(url) => {
            write_postgres(url, rows).await;
            url.clone()
        }
    };
    let config = ws.path("fristvakt.toml");
    std::fs::write(
        &config,
        format!(
            "[register]\nurl = \"{register}\"\n[state]\nurl = \"{}\"\n[mail]\nfile_dir = \"{}\"\nsend_window = \"always\"\n\
             [log]\nformat = \"plain\"\n[units.\"BRO-BU\"]\nteam_leads = [\"gl.bromma@kommun.example\"]\n",
            ws.sqlite_url("state.db"),
            ws.path("outbox").display()
        ),
    )
    .unwrap();
    let out = fristvakt(Some(&config), &["poll", "--once", "--today", TODAY], &[("RUST_LOG", "debug")]);
    let log = stderr(&out);
    assert!(out.status.success(), "the poll completes:\n{log}");

    // Every row the rules can read gets exactly their deadlines; every other row none.
    let settings = Arc::new(fristvakt::config::load_with_env(Some(&config), Vec::new()).unwrap());
    let today = NaiveDate::parse_from_str(TODAY, "%Y-%m-%d").unwrap();
    let now = Utc.from_utc_datetime(&today.and_hms_opt(9, 0, 0).unwrap());
    let app = fristvakt::app::App::open_for_reading(settings.clone(), now).await.unwrap();
    let stored = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let mut by_case: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for d in &stored {
        by_case.entry(d.case_ref.as_str().to_string()).or_default().push((
            d.deadline.kind,
            d.deadline.due_on,
            d.deadline.closed_on,
        ));
    }
    let kept_from = settings.state.retained_from(now);
    let options = RuleOptions { holiday_rule: settings.calendar.holiday_rule };
    let (mut refused, mut unknown) = (0, 0);
    for row in rows {
        let Some(raw) = row.raw() else {
            unknown += 1;
            continue;
        };
        let Ok(case) = validate(&raw) else {
            refused += 1;
            if let Some(Some(case_ref)) = raw.values().first().map(|v| v.as_deref()) {
                assert!(!by_case.contains_key(case_ref.trim()), "a refused row has deadlines: {row:?}");
            }
            continue;
        };
        let mut expected: Vec<_> = deadlines_for(&case.dates, &[], options)
            .into_iter()
            .filter(|d| d.closed_on.is_none_or(|c| c >= kept_from))
            .map(|d| (d.kind, d.due_on, d.closed_on))
            .collect();
        expected.sort();
        let mut got = by_case.get(case.case_ref.as_str()).cloned().unwrap_or_default();
        got.sort();
        assert_eq!(got, expected, "deadlines of {row:?}");
    }
    let rejected: usize = log
        .split("rows_rejected=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rows_rejected in the log:\n{log}"));
    assert!(
        (refused..=refused + unknown).contains(&rejected),
        "rows refused by validation: {refused}, of other values: {unknown}; counted: {rejected}\n{log}"
    );
    println!(
        "{} rows ({}): {} deadlines stored; {refused} refused by validation, {unknown} of values only counted; \
         rows_rejected={rejected}",
        rows.len(),
        if postgres.is_some() { "PostgreSQL" } else { "SQLite" },
        stored.len()
    );
    if rejected > 0 {
        assert!(log.contains("rejected=") && !log.contains("rejected= "), "a reason with the count:\n{log}");
    }

    // No personal value and no child key in the log, the mail or a metric label.
    fristvakt::jobs::gauges::run_once(&app, Moment::on(today, now)).await.unwrap();
    let metrics = app.metrics.render();
    let mails: Vec<String> = std::fs::read_dir(ws.path("outbox"))
        .map(|dir| {
            dir.map(|e| String::from_utf8_lossy(&std::fs::read(e.unwrap().path()).unwrap()).into_owned()).collect()
        })
        .unwrap_or_default();
    for row in rows {
        let secrets: Vec<&str> = row.personal.iter().map(String::as_str).chain(row.child_key()).collect();
        for secret in secrets {
            let marker = &secret[..secret.find('»').map_or(secret.len(), |i| i + '»'.len_utf8())];
            assert!(!log.contains(marker), "{marker} in the log:\n{log}");
            assert!(!metrics.contains(marker), "{marker} in the metrics");
            for mail in &mails {
                assert!(!mail.contains(marker), "{marker} in a mail:\n{mail}");
            }
        }
    }
    app.close().await;
}

async fn write_sqlite(path: &std::path::Path, rows: &[Row]) {
    let mut conn = SqliteConnectOptions::new().filename(path).create_if_missing(true).connect().await.unwrap();
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).chain(PERSONAL).collect();
    // No declared types: every value is stored as generated.
    sqlx::query(&format!("CREATE TABLE cases_raw ({})", names.join(", "))).execute(&mut conn).await.unwrap();
    sqlx::query("CREATE VIEW fristvakt_cases AS SELECT * FROM cases_raw").execute(&mut conn).await.unwrap();
    let marks = vec!["?"; names.len()].join(", ");
    let insert = format!("INSERT INTO cases_raw ({}) VALUES ({marks})", names.join(", "));
    for row in rows {
        let mut q = sqlx::query(&insert);
        for cell in &row.cells {
            q = match cell {
                Cell::Null => q.bind(None::<String>),
                Cell::Text(t) => q.bind(t.clone()),
                Cell::Blob(b) => q.bind(b.clone()),
                Cell::Int(n) => q.bind(*n),
                Cell::Real(x) => q.bind(*x),
            };
        }
        for p in &row.personal {
            q = q.bind(p.clone());
        }
        q.execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

async fn write_postgres(url: &str, rows: &[Row]) {
    let raw: Vec<RawRow> =
        rows.iter().map(|r| RawRow::from_values(r.cells.iter().map(|c| c.text().map(str::to_string)))).collect();
    postgres_register_with(url, raw.into_iter(), true).await;
}
