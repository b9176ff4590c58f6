//! Reading the register incrementally and keeping state, on SQLite and PostgreSQL.

use std::collections::BTreeSet;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use fristvakt::app::{App, Moment};
use fristvakt::config;
use fristvakt::jobs;
use fristvakt::register::{self, RejectReason};
use fristvakt::rules::{self, RuleOptions};
use fristvakt::state::DeadlineFilter;
use fristvakt::sync::SyncReport;
use serde_json::Value;
use sqlx::sqlite::SqlitePoolOptions;

use crate::helpers::{date, demo_cases, fristvakt, postgres_register, postgres_register_with, stderr, stdout};
use crate::support::app::{closed_or_open, stored_lines, Engine, TestApp};
use crate::support::postgres;

const TODAY: &str = "2026-11-25";

/// The application as the daemon builds it.
async fn start(settings: &config::Settings) -> App {
    App::start(Arc::new(settings.clone()), "test", Utc::now()).await.unwrap()
}

/// The daemon's poll job (incremental; the first reads everything) for `today` at `now`.
async fn poll(app: &App, today: NaiveDate, now: DateTime<Utc>) -> SyncReport {
    jobs::poll::run_once(app, Moment::on(today, now)).await.unwrap().expect("the poll lease").sync
}

/// The daemon's full pass job for `today` at `now`.
async fn full_pass(app: &App, today: NaiveDate, now: DateTime<Utc>) -> SyncReport {
    jobs::full_pass::run_once(app, Moment::on(today, now)).await.unwrap().expect("the poll lease").sync
}

/// Fills the configured SQLite register with `cases` demo cases made for [`TODAY`].
async fn write_demo_register(settings: &config::Settings, cases: usize, seed: u64) -> u64 {
    let cases = demo_cases(cases, seed, date(TODAY), 0);
    fristvakt::demo::write_demo_cases(&settings.register.url, &settings.register.view, cases).await.unwrap()
}

/// The register view as a plain SQLite table with the contract's columns, empty.
async fn create_register_table(url: &str) {
    sqlite_exec(
        url,
        "CREATE TABLE fristvakt_cases (case_ref TEXT, unit TEXT, caseworker TEXT, child_sex TEXT, received_on TEXT, \
         protection_assessed_on TEXT, assessment_decided_on TEXT, assessment_extended_to TEXT, \
         investigation_opened_on TEXT, investigation_extended_to TEXT, investigation_closed_on TEXT, updated_at TEXT)",
    )
    .await;
}

async fn sqlite_exec(url: &str, sql: &str) {
    let pool = SqlitePoolOptions::new().max_connections(1).connect(url).await.unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_deadlines_are_correct_for_every_case_and_identical_on_sqlite_and_postgres() {
    let cases = 20_000;
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let out = fristvakt(Some(&cfg), &["demo-data", "--cases", &cases.to_string(), "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fristvakt(Some(&cfg), &["deadlines", "--format", "json", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sqlite_json = stdout(&out);
    let listed: Vec<Value> = serde_json::from_str(&sqlite_json).unwrap();

    // Every case's deadlines, computed here from the same synthetic rows with the rules module.
    // The rules across one child's cases get the investigations of the child's other cases.
    let today = date(TODAY);
    let mut expected = BTreeSet::new();
    let valid: Vec<register::CaseRow> =
        demo_cases(cases, 1, today, 0).map(|case| register::validate(&case).expect("demo rows are valid")).collect();
    let mut by_child: std::collections::HashMap<&str, Vec<(&str, rules::OtherInvestigation)>> = Default::default();
    for v in &valid {
        if let (Some(key), Some(opened_on)) = (&v.child_key, v.dates.investigation_opened_on) {
            let investigation = rules::OtherInvestigation { opened_on, closed_on: v.dates.investigation_closed_on };
            by_child.entry(key.as_str()).or_default().push((v.case_ref.as_str(), investigation));
        }
    }
    for valid in &valid {
        let others: Vec<rules::OtherInvestigation> = valid
            .child_key
            .as_ref()
            .and_then(|key| by_child.get(key.as_str()))
            .map(|all| all.iter().filter(|(c, _)| *c != valid.case_ref.as_str()).map(|(_, i)| *i).collect())
            .unwrap_or_default();
        for d in rules::deadlines_for(&valid.dates, &others, RuleOptions { holiday_rule: true }) {
            expected.insert(format!(
                "{} {} {} {} {} {} {:?} {} {:?}",
                valid.case_ref.as_str(),
                valid.unit.as_str(),
                d.kind.as_str(),
                d.start_on,
                d.nominal_due_on,
                d.due_on,
                d.closed_on,
                d.status(today).as_str(),
                d.days_left(today)
            ));
        }
    }
    // The demo's placements (contract §1b), joined to their cases and children.
    let closed_of: std::collections::HashMap<&str, Option<NaiveDate>> =
        valid.iter().map(|v| (v.case_ref.as_str(), v.dates.investigation_closed_on)).collect();
    let placements =
        fristvakt::demo::generate_placements(&fristvakt::demo::DemoOptions { cases, seed: 1, today, broken: 0 });
    assert!(!placements.is_empty());
    for raw in &placements {
        let p = register::validate_placement(raw, 65536).expect("demo placements are valid");
        let context = rules::PlacementContext {
            investigation_closed_on: p.case_ref.as_ref().and_then(|c| closed_of.get(c.as_str()).copied().flatten()),
            investigations_opened: p
                .child_key
                .as_ref()
                .and_then(|k| by_child.get(k.as_str()))
                .map(|all| all.iter().map(|(_, i)| i.opened_on).collect())
                .unwrap_or_default(),
        };
        for d in rules::placement_deadlines_for(&p.dates, &context, RuleOptions { holiday_rule: true }) {
            expected.insert(format!(
                "{} {} {} {} {} {} {:?} {} {:?}",
                p.placement_ref.as_str(),
                p.unit.as_str(),
                d.kind.as_str(),
                d.start_on,
                d.nominal_due_on,
                d.due_on,
                d.closed_on,
                d.status(today).as_str(),
                d.days_left(today)
            ));
        }
    }
    let got: BTreeSet<String> = listed
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let closed = v["closed_on"].as_str().map(date);
            format!(
                "{} {} {} {} {} {} {:?} {} {:?}",
                s("case_ref"),
                s("unit"),
                s("kind"),
                s("start_on"),
                s("nominal_due_on"),
                s("due_on"),
                closed,
                s("status"),
                v["days_left"].as_i64()
            )
        })
        .collect();
    assert_eq!(listed.len(), expected.len());
    assert_eq!(got, expected);
    let cases_listed: BTreeSet<&str> = listed
        .iter()
        .filter(|v| !v["kind"].as_str().unwrap().parse::<rules::Kind>().unwrap().is_placement())
        .map(|v| v["case_ref"].as_str().unwrap())
        .collect();
    assert_eq!(cases_listed.len(), cases);
    let lvu = listed.iter().filter(|v| v["kind"] == "lvu_court_submission").count();
    assert!(lvu > 20, "{lvu} emergency custodies");
    // The demo shows the law beyond three clocks: follow-ups, reports into open investigations
    // (a protection clock and an investigation, no assessment) and chains in the digest.
    let kinds_of = |case: &str| -> BTreeSet<&str> {
        listed.iter().filter(|v| v["case_ref"] == case).map(|v| v["kind"].as_str().unwrap()).collect()
    };
    let follow_ups = listed.iter().filter(|v| v["kind"] == "follow_up").count();
    let into_open =
        cases_listed.iter().filter(|c| kinds_of(c) == BTreeSet::from(["protection", "investigation"])).count();
    assert!(
        follow_ups > 100 && into_open > 20,
        "{follow_ups} follow-ups, {into_open} reports into open investigations"
    );
    let out = fristvakt(Some(&cfg), &["digest", "--dry-run", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sqlite_digest = stdout(&out);
    let chains = sqlite_digest.matches("inleddes strax efter").count();
    assert!(chains >= 3, "{chains} chains in the digests");

    // The same register in PostgreSQL (real date and timestamptz columns), state in PostgreSQL.
    let pg = postgres::shared();
    let register_url = pg.fresh_database().await;
    let state_url = pg.fresh_database().await;
    postgres_register(&register_url, demo_cases(cases, 1, today, 0)).await;
    crate::helpers::postgres_placements(&register_url, &placements).await;
    let out = fristvakt(
        Some(&cfg),
        &["deadlines", "--format", "json", "--today", TODAY],
        &[("FRISTVAKT__REGISTER__URL", &register_url), ("FRISTVAKT__STATE__URL", &state_url)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out) == sqlite_json, "PostgreSQL output differs from SQLite output");
    // The digests too, chains included (read from the PostgreSQL view's child_key).
    let out = fristvakt(
        Some(&cfg),
        &["digest", "--dry-run", "--today", TODAY],
        &[("FRISTVAKT__REGISTER__URL", &register_url), ("FRISTVAKT__STATE__URL", &state_url)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out) == sqlite_digest, "PostgreSQL digests differ from SQLite digests");
}

/// A poll's writes are checkpointed beside it (`StateStore::checkpoint_in_background`), not left
/// in the write-ahead log for a later poll's commit to copy back: once that checkpoint is done,
/// the database file alone, read without its log, holds what both polls stored, the second
/// polled while the first's checkpoint may still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polls_writes_are_checkpointed_beside_it() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    write_demo_register(&settings, 200, 3).await;
    let app = start(&settings).await;
    let first = poll(&app, date(TODAY), Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()).await;
    assert!(first.deadlines_stored > 0);
    sqlite_exec(
        settings.register.url.expose(),
        "UPDATE fristvakt_cases SET caseworker = 'ny@kommun.example', updated_at = '2026-11-25T12:30:00.000000Z' \
         WHERE case_ref IN (SELECT case_ref FROM fristvakt_cases ORDER BY case_ref LIMIT 10)",
    )
    .await;
    let second = poll(&app, date(TODAY), Utc.with_ymd_and_hms(2026, 11, 25, 13, 0, 0).unwrap()).await;
    assert!(second.rows_read >= 10);
    app.state.checkpoint_done().await;
    let copy = ws.path("file-alone.db");
    std::fs::copy(ws.path("state.db"), &copy).unwrap();
    let read = |path: &std::path::Path| -> (i64, String, String) {
        let db = rusqlite::Connection::open(path).unwrap();
        db.query_row(
            "SELECT (SELECT COUNT(*) FROM deadlines), \
             (SELECT group_concat(caseworker) FROM (SELECT caseworker FROM deadlines ORDER BY case_ref, kind)), \
             (SELECT watermark FROM poll_state)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
    };
    let alone = read(&copy);
    assert!(alone.0 > 0 && alone.1.contains("ny@kommun.example"), "the file alone holds both polls' deadlines");
    assert_eq!(alone, read(&ws.path("state.db")), "the file alone holds what the log holds");
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_ten_rows_of_a_hundred_thousand_reads_about_ten() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    let written = write_demo_register(&settings, 100_000, 7).await;
    assert_eq!(written, 100_000);
    let app = start(&settings).await;
    let state = &app.state;
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 23, 59, 59).unwrap();
    let first = poll(&app, today, now).await;
    assert!(first.full, "the first poll reads everything");
    assert_eq!(first.rows_read, 100_000);

    sqlite_exec(
        settings.register.url.expose(),
        "UPDATE fristvakt_cases SET assessment_decided_on = received_on, updated_at = '2026-11-26T08:00:00.000000Z' \
         WHERE case_ref IN (SELECT case_ref FROM fristvakt_cases ORDER BY case_ref LIMIT 10)",
    )
    .await;
    let later = Utc.with_ymd_and_hms(2026, 11, 26, 8, 5, 0).unwrap();
    let second = poll(&app, date("2026-11-26"), later).await;
    assert!(!second.full);
    // The ten changed rows, plus any row inside the overlap window before the old watermark.
    assert!((10..=20).contains(&second.rows_read), "read {}", second.rows_read);
    let third = poll(&app, date("2026-11-26"), later).await;
    assert!((10..=20).contains(&third.rows_read), "re-reads only the overlap: {}", third.rows_read);
    // The ten changed cases (the first ten references) now have their assessment decided.
    let state_after = state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let mut changed: Vec<&str> = state_after.iter().map(|d| d.case_ref.as_str()).collect();
    changed.dedup();
    changed.truncate(10);
    for case_ref in changed {
        let assessment = state_after
            .iter()
            .find(|d| d.case_ref.as_str() == case_ref && d.deadline.kind == rules::Kind::Assessment)
            .unwrap();
        assert_eq!(assessment.deadline.closed_on, Some(assessment.deadline.start_on), "{case_ref}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_rows_are_skipped_and_counted_by_reason_and_the_rest_processed() {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let out = fristvakt(Some(&cfg), &["demo-data", "--cases", "300", "--broken", "10", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let settings = ws.settings("");
    let app = start(&settings).await;
    let state = &app.state;
    let report = poll(&app, date(TODAY), Utc::now()).await;
    assert_eq!(report.rows_read, 310);
    for reason in [
        RejectReason::BadDate,
        RejectReason::CloseBeforeStart,
        RejectReason::MissingUnit,
        RejectReason::MissingCaseRef,
        RejectReason::UnknownSex,
    ] {
        assert_eq!(report.rejected.get(&reason), Some(&2), "{reason:?} in {:?}", report.rejected);
    }
    let stored = state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let cases: BTreeSet<&str> =
        stored.iter().filter(|d| !d.deadline.kind.is_placement()).map(|d| d.case_ref.as_str()).collect();
    assert_eq!(cases.len(), 300);
    app.close().await; // releases the poll lease

    // The command line shows the same through its summary line.
    let out = fristvakt(Some(&cfg), &["poll", "--once", "--full", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("read 310 row(s), skipped 10 broken"), "{}", stdout(&out));
    // Log lines name the case and the column, never another column's value.
    let log = stderr(&out);
    assert!(log.contains("column"), "{log}");
    assert!(!log.contains("@kommun.example"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_that_leave_the_register_are_withdrawn_by_the_full_pass() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 50, 3).await;
    let app = start(&settings).await;
    let state = &app.state;
    full_pass(&app, today, Utc::now()).await;
    let before = state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let victim = before[0].case_ref.clone();
    let kinds = before.iter().filter(|d| d.case_ref == victim).count() as u64;
    sqlite_exec(settings.register.url.expose(), &format!("DELETE FROM fristvakt_cases WHERE case_ref = '{victim}'"))
        .await;
    let incremental = poll(&app, today, Utc::now()).await;
    assert_eq!(incremental.withdrawn, 0, "an incremental poll cannot see deletions");
    let full = full_pass(&app, today, Utc::now()).await;
    assert_eq!(full.withdrawn, kinds);
    let after = state.deadlines(&DeadlineFilter::default()).await.unwrap();
    assert!(after.iter().all(|d| d.case_ref != victim));
    assert_eq!(after.len(), before.len() - kinds as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_without_a_column_is_named_and_a_missing_register_is_a_clear_error() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let url = format!("{}?mode=rwc", settings.register.url.expose());
    sqlite_exec(
        &url,
        "CREATE TABLE fristvakt_cases (case_ref TEXT, unit TEXT, caseworker TEXT, received_on TEXT, \
         protection_assessed_on TEXT, assessment_decided_on TEXT, assessment_extended_to TEXT, \
         investigation_opened_on TEXT, investigation_extended_to TEXT, investigation_closed_on TEXT, updated_at TEXT)",
    )
    .await;
    let app = start(&settings).await;
    let err = jobs::poll::run_once(&app, Moment::on(date(TODAY), Utc::now())).await.unwrap_err();
    assert_eq!(err.to_string(), "register view fristvakt_cases: missing column(s) child_sex");

    let missing = config::DatabaseUrl::parse(&ws.sqlite_url("nowhere.db")).unwrap();
    let err = register::Register::connect(&missing, "fristvakt_cases").await.err().unwrap();
    assert!(err.to_string().contains("nowhere.db does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_committed_late_with_an_older_timestamp_are_read_within_the_overlap_on_postgres() {
    let pg = postgres::shared();
    let register_url = pg.fresh_database().await;
    let state_url = pg.fresh_database().await;
    let today = date(TODAY);
    postgres_register(&register_url, demo_cases(20, 5, today, 0)).await;
    let ws = TestApp::sqlite();
    let settings = config::load_with_env(
        Some(&ws.config("")),
        [
            ("FRISTVAKT__REGISTER__URL".to_string(), register_url.clone()),
            ("FRISTVAKT__STATE__URL".to_string(), state_url),
        ],
    )
    .unwrap();
    let app = start(&settings).await;
    let state = &app.state;
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let first = poll(&app, today, now).await;
    assert_eq!(first.rows_read, 20);
    let watermark = state.poll_state().await.unwrap().watermark.unwrap();

    // A transaction that began earlier commits now, with an updated_at five minutes before the
    // watermark: the overlap window must still see it.
    let late = (watermark - chrono::Duration::minutes(5)).to_rfc3339();
    let pool = sqlx::PgPool::connect(&register_url).await.unwrap();
    sqlx::query(
        "INSERT INTO cases (case_ref, unit, received_on, updated_at) VALUES ('2026-BU-99999', 'BRO-BU', '2026-11-20', $1::timestamptz)",
    )
    .bind(late)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let second = poll(&app, today, now).await;
    assert!(second.rows_read >= 1 && second.rows_read < 20, "read {}", second.rows_read);
    let stored = state
        .deadlines(&DeadlineFilter { case_ref: Some("2026-BU-99999".into()), ..DeadlineFilter::default() })
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "protection and assessment of the late row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_julafton_move_step_by_step() {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let url = format!("{}?mode=rwc", ws.sqlite_url("register.db"));
    create_register_table(&url).await;
    sqlite_exec(
        &url,
        "INSERT INTO fristvakt_cases VALUES ('2026-BU-0142', 'BRO-BU', 'anna@kommun.example', 'F', '2026-12-10', \
         '2026-12-10', NULL, NULL, NULL, NULL, NULL, '2026-12-10T09:00:00Z')",
    )
    .await;
    let out = fristvakt(Some(&cfg), &["explain", "2026-BU-0142", "--today", "2026-12-21"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "Förhandsbedömning",
        "2026-12-10 + 14 dagar = 2026-12-24",
        "2026-12-24 är julafton",
        "2026-12-28",
        "7 dagar kvar",
        "Skyddsbedömning",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    assert!(!text.contains("anna@kommun.example"), "explain names no caseworker");
    let out = fristvakt(Some(&cfg), &["explain", "2026-BU-0000"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pass_keeps_deadlines_of_skipped_rows_and_of_an_empty_view() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 40, 9).await;
    let app = start(&settings).await;
    let state = &app.state;
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    full_pass(&app, today, now).await;
    let before = state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let broken = before[0].case_ref.clone();

    // A row that breaks the contract is skipped, not deleted: its deadlines stay.
    sqlite_exec(
        settings.register.url.expose(),
        &format!("UPDATE fristvakt_cases SET child_sex = 'X' WHERE case_ref = '{broken}'"),
    )
    .await;
    let full = full_pass(&app, today, now).await;
    assert_eq!(full.rejected.get(&RejectReason::UnknownSex), Some(&1));
    assert_eq!(full.withdrawn, 0);
    assert_eq!(state.deadlines(&DeadlineFilter::default()).await.unwrap(), before);

    // A view that returns nothing at all (being reloaded) withdraws nothing either.
    sqlite_exec(settings.register.url.expose(), "DELETE FROM fristvakt_cases").await;
    let empty = full_pass(&app, today, now).await;
    assert_eq!((empty.rows_read, empty.withdrawn), (0, 0));
    assert_eq!(state.deadlines(&DeadlineFilter::default()).await.unwrap().len(), before.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_in_the_future_does_not_freeze_the_watermark() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 20, 4).await;
    sqlite_exec(
        settings.register.url.expose(),
        "UPDATE fristvakt_cases SET updated_at = '2062-11-25T12:00:00.000000Z' \
         WHERE case_ref = (SELECT MIN(case_ref) FROM fristvakt_cases)",
    )
    .await;
    let app = start(&settings).await;
    let state = &app.state;
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    poll(&app, today, now).await;
    let watermark = state.poll_state().await.unwrap().watermark.unwrap();
    assert!(watermark <= now + chrono::Duration::minutes(5), "{watermark}");

    // A change an hour later is still seen by an incremental poll.
    sqlite_exec(
        settings.register.url.expose(),
        "UPDATE fristvakt_cases SET updated_at = '2026-11-25T13:00:00.000000Z' \
         WHERE case_ref = (SELECT MAX(case_ref) FROM fristvakt_cases)",
    )
    .await;
    let later = Utc.with_ymd_and_hms(2026, 11, 25, 13, 5, 0).unwrap();
    let next = poll(&app, today, later).await;
    assert!(next.rows_read >= 1 && next.rows_read < 20, "read {}", next.rows_read);
}

/// The show commands only read: the state database is byte for byte what it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_commands_leave_the_state_database_byte_identical() {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let out = fristvakt(Some(&cfg), &["demo-data", "--cases", "400", "--broken", "4", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fristvakt(Some(&cfg), &["poll", "--once", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The register changes after the poll: `--fresh` must see it without storing it.
    sqlite_exec(
        ws.settings("").register.url.expose(),
        "UPDATE fristvakt_cases SET assessment_decided_on = received_on, updated_at = '2026-11-25T12:00:00Z' \
         WHERE case_ref = (SELECT MIN(case_ref) FROM fristvakt_cases WHERE assessment_decided_on IS NULL \
         AND received_on IS NOT NULL AND investigation_opened_on IS NULL)",
    )
    .await;
    // The database file, and the write-ahead log (a reader may create it, but never writes to it;
    // the -shm file is SQLite's shared-memory index of the log, not data).
    let files = || -> (Vec<u8>, u64) {
        let wal = std::fs::metadata(ws.path("state.db-wal")).map(|m| m.len()).unwrap_or(0);
        (std::fs::read(ws.path("state.db")).unwrap(), wal)
    };
    let before = files();
    assert!(!before.0.is_empty() && before.1 == 0, "the poll left a checkpointed database");
    let first_case = {
        let out = fristvakt(Some(&cfg), &["deadlines", "--format", "json", "--today", "2026-12-01"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let lines: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
        assert!(!lines.is_empty());
        lines[0]["case_ref"].as_str().unwrap().to_string()
    };
    for args in [
        vec!["deadlines"],
        vec!["deadlines", "--status", "overdue", "--today", "2026-12-01"],
        vec!["deadlines", "--fresh", "--unit", "BRO-BU", "--format", "json"],
        vec!["explain", first_case.as_str()],
        vec!["explain", first_case.as_str(), "--today", "2027-01-10"],
        vec!["digest", "--dry-run"],
        vec!["digest", "--dry-run", "--today", "2026-12-01", "--manager", "enhetschef@kommun.example"],
        vec!["digest", "--dry-run", "--fresh"],
    ] {
        let out = fristvakt(Some(&cfg), &args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(files() == before, "{args:?} changed the state database");
    }
}

/// `deadlines --fresh` computes the register as it reads it, a chunk at a time in `case_ref`
/// order, and prints what a full pass would then store, line for line: after rows broke (their
/// stored deadlines, in their place), a case left the register (none of its lines) and another
/// changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_listing_is_what_a_full_pass_then_stores() {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let settings = ws.settings("");
    write_demo_register(&settings, 3_000, 5).await;
    let register = settings.register.url.expose().to_string();
    let run = |args: &[&str]| {
        let out = fristvakt(Some(&cfg), args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    run(&["poll", "--once", "--today", TODAY]);
    let before = run(&["deadlines", "--format", "json", "--today", TODAY]);
    let pick = |offset: u32| {
        format!(
            "(SELECT case_ref FROM fristvakt_cases WHERE received_on IS NOT NULL ORDER BY case_ref LIMIT 1 OFFSET {offset})"
        )
    };
    let broken: Vec<String> = {
        let pool = sqlx::SqlitePool::connect(&register).await.unwrap();
        let mut refs = Vec::new();
        for offset in [999, 1000, 2500] {
            let sql = format!("SELECT case_ref FROM fristvakt_cases WHERE case_ref = {}", pick(offset));
            refs.push(sqlx::query_scalar::<_, String>(&sql).fetch_one(&pool).await.unwrap());
        }
        pool.close().await;
        refs
    };
    for case_ref in &broken {
        sqlite_exec(
            &register,
            &format!(
                "UPDATE fristvakt_cases SET received_on = '2026-02-30', updated_at = '2026-11-25T12:00:00Z' \
                 WHERE case_ref = '{case_ref}'"
            ),
        )
        .await;
    }
    sqlite_exec(&register, &format!("DELETE FROM fristvakt_cases WHERE case_ref = {}", pick(1500))).await;
    sqlite_exec(
        &register,
        &format!(
            "UPDATE fristvakt_cases SET investigation_opened_on = received_on, updated_at = '2026-11-25T12:00:00Z' \
             WHERE case_ref = {}",
            pick(10)
        ),
    )
    .await;
    let fresh = run(&["deadlines", "--format", "json", "--today", TODAY, "--fresh"]);
    assert!(fresh != before, "the register's changes show");
    for case_ref in &broken {
        assert!(fresh.contains(&format!("\"case_ref\":\"{case_ref}\"")), "{case_ref}: its stored deadlines");
    }
    run(&["poll", "--once", "--full", "--today", TODAY]);
    let stored = run(&["deadlines", "--format", "json", "--today", TODAY]);
    assert!(fresh == stored, "--fresh differs from what the full pass stored");
    // The digests from the register computed now (only the deadlines a digest reads are kept)
    // are those read from the state.
    for today in [TODAY, "2026-12-02", "2027-01-15"] {
        let from_state = run(&["digest", "--dry-run", "--today", today]);
        assert!(from_state.contains("Bromma") || from_state.lines().count() > 20, "{from_state}");
        let fresh = run(&["digest", "--dry-run", "--today", today, "--fresh"]);
        assert!(fresh == from_state, "{today}: digest --fresh differs:\n{fresh}\n---\n{from_state}");
    }
}

/// `deadlines --unit U` and `--status S` (read from the state as of the last poll, filtered by
/// the database) print exactly the lines of the unfiltered listing that have that unit and
/// status, on several days, in JSON and as a table; the unfiltered listing is what `--fresh`
/// computes from the register; and standard error says as of which poll.
async fn show_filters_print_the_unfiltered_listing_filtered(postgres_state: Option<String>) {
    let test = TestApp::new(postgres_state).await;
    let cfg = test.config("");
    let env: Vec<(&str, &str)> = Vec::new();
    let cases = demo_cases(2_000, 1, date(TODAY), 0);
    match test.engine() {
        Engine::Postgres => postgres_register(test.register_url(), cases).await,
        Engine::Sqlite => {
            write_demo_register(&test.settings(""), 2_000, 1).await;
        }
    }
    let run = |args: &[&str]| {
        let out = fristvakt(Some(&cfg), args, &env);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        (stdout(&out), stderr(&out))
    };
    let (fresh, note) = run(&["deadlines", "--format", "json", "--today", TODAY]);
    assert!(note.contains("no poll has run yet"), "{note}");
    run(&["poll", "--once", "--today", TODAY]);
    let mut seen = BTreeSet::new();
    for today in ["2026-10-01", TODAY, "2026-11-28", "2026-12-20", "2027-03-01"] {
        let (all, note) = run(&["deadlines", "--format", "json", "--today", today]);
        assert!(note.contains("as of the poll at "), "{note}");
        if today == TODAY {
            assert!(all == fresh, "the stored listing differs from the register's");
            let (again, note) = run(&["deadlines", "--format", "json", "--today", today, "--fresh"]);
            assert!(again == fresh && !note.contains("as of the poll"), "{note}");
        }
        let all: Vec<Value> = serde_json::from_str(&all).unwrap();
        assert!(all.len() > 4_000, "{} deadlines", all.len());
        let units: BTreeSet<&str> = all.iter().map(|v| v["unit"].as_str().unwrap()).collect();
        let filtered = |unit: Option<&str>, status: Option<&str>| -> Vec<&Value> {
            all.iter()
                .filter(|v| unit.is_none_or(|u| v["unit"] == u) && status.is_none_or(|s| v["status"] == s))
                .collect()
        };
        let mut asked: Vec<(Option<&str>, Option<&str>)> = Vec::new();
        asked.extend(units.iter().map(|u| (Some(*u), None)));
        for status in rules::Status::ALL.map(|s| s.as_str()) {
            asked.push((None, Some(status)));
            asked.push((units.first().copied(), Some(status)));
        }
        for (unit, status) in asked {
            let mut args = vec!["deadlines", "--format", "json", "--today", today];
            args.extend(unit.map(|u| ["--unit", u]).into_iter().flatten());
            args.extend(status.map(|s| ["--status", s]).into_iter().flatten());
            let (json, _) = run(&args);
            let got: Vec<Value> = serde_json::from_str(&json).unwrap();
            let expected = filtered(unit, status);
            assert_eq!(got.iter().collect::<Vec<_>>(), expected, "{args:?}");
            if status.is_some() && unit.is_none() && !got.is_empty() {
                seen.extend(status);
            }
        }
        // A unit nobody knows lists nothing and says so (exit 2).
        let out = fristvakt(Some(&cfg), &["deadlines", "--format", "json", "--today", today, "--unit", "XXX"], &env);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(serde_json::from_str::<Vec<Value>>(&stdout(&out)).unwrap(), Vec::<Value>::new());
        assert!(stderr(&out).contains("--unit XXX: unknown unit"), "{}", stderr(&out));
        if today == TODAY {
            // The table: the header and the same lines.
            let (table, _) = run(&["deadlines", "--today", today, "--status", "overdue"]);
            let overdue = filtered(None, Some("overdue"));
            assert_eq!(table.lines().count(), overdue.len() + 1);
            for (line, v) in table.lines().skip(1).zip(overdue) {
                assert!(line.starts_with(v["case_ref"].as_str().unwrap()), "{line}");
            }
        }
    }
    assert_eq!(seen.len(), rules::Status::ALL.len(), "every status shows on one of the days: {seen:?}");
}

both_engines!(multi_thread: show_filters_print_the_unfiltered_listing_filtered);

/// The digest read as the digest job reads it (units, open deadlines due within a week, the
/// 30-day share counted by the database, open chains) equals the digest built from every stored
/// deadline, on the demo register, for days before, on and after the poll's, with the lists cut
/// short and not, with and without `digest.send_empty`; and `digest --dry-run` prints it.
async fn show_digest_read_per_unit_equals_the_digest_of_every_deadline(state_url: Option<String>) {
    let test = TestApp::with_sqlite_register(state_url.clone());
    let settings = test.settings("");
    write_demo_register(&settings, 2_000, 1).await;
    let app = start(&settings).await;
    full_pass(&app, date(TODAY), Utc.with_ymd_and_hms(2026, 11, 25, 6, 0, 0).unwrap()).await;
    let stored = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let (mut rows, mut chains) = (0, 0);
    for (max_rows, send_empty) in [(settings.digest.max_rows, false), (2, false), (3, true)] {
        let mut settings = settings.clone();
        settings.digest.max_rows = max_rows;
        settings.digest.send_empty = send_empty;
        for today in ["2026-09-01", "2026-11-01", "2026-11-24", TODAY, "2026-11-26", "2026-12-02", "2027-01-15"] {
            let today = date(today);
            let old = fristvakt::digest::build_digests(&settings, &stored, today);
            let new = jobs::digest::read_facts(&app.state, &settings, today).await.unwrap().into_digests(&settings);
            assert_eq!(new, old, "{today}, max_rows {max_rows}, send_empty {send_empty}");
            for unit in old.iter().flat_map(|d| &d.units) {
                rows += unit.overdue.total + unit.upcoming.total;
                chains += unit.chains.len();
            }
        }
    }
    assert!(rows > 500 && chains > 0, "{rows} rows, {chains} chains: the comparison shows little");
    app.close().await;
}

both_engines!(multi_thread: show_digest_read_per_unit_equals_the_digest_of_every_deadline);

/// A SQLite view whose columns are declared `DATE`, `DATETIME` or `BOOLEAN`, or that hands out an
/// INTEGER or a BLOB where the contract says TEXT: each value is read as text, so a bad value
/// rejects its own row and the poll goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_view_of_any_storage_class_rejects_only_the_bad_rows() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let url = format!("{}?mode=rwc", ws.sqlite_url("register.db"));
    sqlite_exec(
        &url,
        "CREATE TABLE fristvakt_cases (case_ref TEXT, unit TEXT, caseworker TEXT, child_sex TEXT, received_on DATE, \
         protection_assessed_on DATE, assessment_decided_on DATE, assessment_extended_to DATE, \
         investigation_opened_on DATE, investigation_extended_to DATE, investigation_closed_on BOOLEAN, \
         updated_at DATETIME)",
    )
    .await;
    sqlite_exec(
        &url,
        "INSERT INTO fristvakt_cases VALUES \
         ('2026-BU-0001', 'BRO-BU', NULL, 'F', '2026-11-20', NULL, NULL, NULL, NULL, NULL, NULL, '2026-11-20T09:00:00Z'), \
         ('2026-BU-0002', 'BRO-BU', NULL, NULL, 20261120, NULL, NULL, NULL, NULL, NULL, NULL, '2026-11-20T09:00:00Z'), \
         ('2026-BU-0003', 'BRO-BU', NULL, NULL, X'00ff', NULL, NULL, NULL, NULL, NULL, NULL, '2026-11-20T09:00:00Z'), \
         ('2026-BU-0004', 'BRO-BU', NULL, NULL, '2026-11-21', NULL, NULL, NULL, NULL, NULL, NULL, X'41')",
    )
    .await;
    let app = start(&settings).await;
    let report = full_pass(&app, date(TODAY), Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()).await;
    assert_eq!(report.rows_read, 4);
    // An integer in a date column is no date; a BLOB of bytes that are no text is not UTF-8.
    assert_eq!(report.rejected.get(&RejectReason::BadDate), Some(&1), "{report:?}");
    assert_eq!(report.rejected.get(&RejectReason::NotUtf8), Some(&1), "{report:?}");
    assert_eq!(report.rejected.get(&RejectReason::BadTimestamp), Some(&1), "{report:?}");
    let stored = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|d| d.case_ref.as_str() == "2026-BU-0001"), "{stored:?}");
}

/// Issue "No value … loses a notice" (3, 9): two case references in Latin-1 bytes, which a lossy
/// decoding made one (`2026-\u{FFFD}BO-1`), are refused as `not_utf8` instead of overwriting each
/// other; a 3 MB cell is refused as `cell_too_large` (`register.max_cell_bytes`); the rest of the
/// register is read. The values go into no log line: only the case reference, sanitised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin1_references_and_huge_cells_are_refused_by_reason() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let url = format!("{}?mode=rwc", ws.sqlite_url("register.db"));
    create_register_table(&url).await;
    let row = |case_ref: &str, caseworker: &str| {
        format!(
            "({case_ref}, 'BRO-BU', {caseworker}, NULL, '2026-11-20', NULL, NULL, NULL, NULL, NULL, NULL, \
             '2026-11-20T09:00:00Z')"
        )
    };
    let rows = [
        row("'2026-BU-0001'", "NULL"),
        // "2026-ÅBO-1" and "2026-ÄBO-1" in Latin-1.
        row("CAST(X'323032362DC5424F2D31' AS TEXT)", "NULL"),
        row("CAST(X'323032362DC4424F2D31' AS TEXT)", "NULL"),
        row("'2026-BU-0004'", "'a@' || hex(zeroblob(1500000))"),
    ];
    sqlite_exec(&url, &format!("INSERT INTO fristvakt_cases VALUES {}", rows.join(", "))).await;
    let app = start(&settings).await;
    let report = full_pass(&app, date(TODAY), Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()).await;
    assert_eq!(report.rows_read, 4);
    assert_eq!(report.rejected.get(&RejectReason::NotUtf8), Some(&2), "{report:?}");
    assert_eq!(report.rejected.get(&RejectReason::CellTooLarge), Some(&1), "{report:?}");
    let stored = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|d| d.case_ref.as_str() == "2026-BU-0001"), "{stored:?}");
    app.close().await;
}

/// A new report about a child under the row's own open investigation is valid: the
/// investigation's deadline keeps following the register (it froze when the row was rejected),
/// the report gets a protection clock and no assessment clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_during_an_open_investigation_is_read_not_rejected() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let url = format!("{}?mode=rwc", ws.sqlite_url("register.db"));
    create_register_table(&url).await;
    sqlite_exec(
        &url,
        "INSERT INTO fristvakt_cases VALUES ('2026-BU-0300', 'BRO-BU', NULL, 'M', '2026-02-20', '2026-02-20', \
         NULL, NULL, '2026-03-02', NULL, NULL, '2026-03-02T09:00:00Z')",
    )
    .await;
    let app = start(&settings).await;
    let first = poll(&app, date("2026-04-01"), Utc.with_ymd_and_hms(2026, 4, 1, 9, 0, 0).unwrap()).await;
    assert_eq!((first.rows_read, first.rows_rejected()), (1, 0));

    // A new report on 10 April while the investigation is open; the investigation is extended.
    sqlite_exec(
        &url,
        "UPDATE fristvakt_cases SET received_on = '2026-04-10', protection_assessed_on = NULL, \
         investigation_extended_to = '2026-08-31', updated_at = '2026-04-10T09:00:00Z'",
    )
    .await;
    let second = poll(&app, date("2026-04-10"), Utc.with_ymd_and_hms(2026, 4, 10, 9, 5, 0).unwrap()).await;
    assert_eq!((second.rows_read, second.rows_rejected()), (1, 0), "{:?}", second.rejected);
    let stored = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let kinds: Vec<(rules::Kind, String)> =
        stored.iter().map(|d| (d.deadline.kind, d.deadline.due_on.to_string())).collect();
    assert_eq!(
        kinds,
        [(rules::Kind::Investigation, "2026-08-31".into()), (rules::Kind::Protection, "2026-04-11".into())],
        "the investigation follows its extension; no assessment clock"
    );
}

/// A replica whose polls keep failing (it cannot reach the register) gives up the poll lease, so
/// a healthy replica polls at its next tick instead of waiting for the lease to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_poll_gives_up_the_lease_to_a_healthy_one() {
    let ws = TestApp::sqlite();
    let healthy = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&healthy, 30, 2).await;
    let mut broken = healthy.clone();
    broken.register.url = config::DatabaseUrl::parse(&ws.sqlite_url("unreachable.db")).unwrap();
    let a = App::start(Arc::new(broken), "replica-a", Utc::now()).await.unwrap();
    let b = App::start(Arc::new(healthy), "replica-b", Utc::now()).await.unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    // Seconds apart: the lease lasts `state.lease_ttl` (30 s) less a try period and 2 s.
    let at = |seconds: i64| Moment::on(today, t0 + chrono::Duration::seconds(seconds));

    assert!(jobs::poll::run_once(&a, at(0)).await.is_err(), "a cannot read its register");
    assert!(a.holds_poll_lease());
    assert!(jobs::poll::run_once(&b, at(1)).await.unwrap().is_none(), "a holds the lease");
    assert!(!b.holds_poll_lease());
    assert!(jobs::poll::run_once(&a, at(5)).await.is_err());
    assert!(!a.holds_poll_lease(), "a gave the lease up after its second failure");
    let report = jobs::poll::run_once(&b, at(6)).await.unwrap().expect("b polls now");
    assert_eq!(report.sync.rows_read, 30);
    assert!(b.holds_poll_lease());
    assert!(b.metrics.render().contains("fristvakt_poll_lease_held 1"), "{}", b.metrics.render());
    assert!(a.metrics.render().contains("fristvakt_poll_lease_held 0"));
    a.close().await;
    b.close().await;
}

/// On SQLite, `updated_at` text with a space separator or an offset is compared as the instant it
/// names: text order would miss both changes below (a space sorts before `T`; `08:00-05:00` is
/// 13:00 UTC but sorts before `09:50`, the watermark minus the overlap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_timestamps_with_spaces_or_offsets_are_compared_as_instants() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 20, 6).await;
    sqlite_exec(settings.register.url.expose(), "UPDATE fristvakt_cases SET updated_at = '2026-11-25T10:00:00Z'").await;
    let app = start(&settings).await;
    let first = poll(&app, today, Utc.with_ymd_and_hms(2026, 11, 25, 12, 1, 0).unwrap()).await;
    assert_eq!(first.rows_read, 20);

    // Two rows move to another unit, stamped in forms other than `…T…Z`.
    sqlite_exec(
        settings.register.url.expose(),
        "UPDATE fristvakt_cases SET unit = 'NEW-BU', updated_at = CASE case_ref \
           WHEN (SELECT MIN(case_ref) FROM fristvakt_cases) THEN '2026-11-25 12:30:00+00:00' \
           ELSE '2026-11-25T08:00:00-05:00' END \
         WHERE case_ref IN (SELECT case_ref FROM fristvakt_cases ORDER BY case_ref LIMIT 2)",
    )
    .await;
    let second = poll(&app, today, Utc.with_ymd_and_hms(2026, 11, 25, 13, 5, 0).unwrap()).await;
    assert_eq!(second.rows_rejected(), 0);
    let moved: BTreeSet<String> = app
        .state
        .deadlines(&DeadlineFilter { unit: Some("NEW-BU".into()), ..DeadlineFilter::default() })
        .await
        .unwrap()
        .iter()
        .map(|d| d.case_ref.to_string())
        .collect();
    assert_eq!(moved.len(), 2, "both changed rows were read: {moved:?}");
    // The newest instant for the staleness gauge: 08:00-05:00, though `…T10:00:00Z` sorts last.
    let newest = app.register().await.unwrap().newest_update().await.unwrap();
    assert_eq!(newest, Some(Utc.with_ymd_and_hms(2026, 11, 25, 13, 0, 0).unwrap()));
    let watermark = app.state.poll_state().await.unwrap().watermark.unwrap();
    assert_eq!(watermark, Utc.with_ymd_and_hms(2026, 11, 25, 13, 5, 0).unwrap(), "when the read began");
    let again = poll(&app, today, Utc.with_ymd_and_hms(2026, 11, 25, 13, 10, 0).unwrap()).await;
    assert_eq!(again.rows_read, 1, "only the row inside the overlap before 13:05 UTC is read again");
    assert_eq!(again.unchanged, 1, "and, unchanged, costs no write");
    app.close().await;
}

/// After a bulk update that gave every row one `updated_at` (a register migration, a nightly
/// batch), the next poll reads every row; later polls re-read only the overlap window
/// (`register.overlap`, 10 minutes) before the time the previous read began, and a row read again
/// unchanged costs no write. Without this, every poll re-read every row until a newer one came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_bulk_update_polls_read_only_the_overlap_and_write_nothing_unchanged() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 2000, 9).await;
    let app = start(&settings).await;
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap();
    assert!(poll(&app, today, at(12, 0)).await.full);
    sqlite_exec(settings.register.url.expose(), "UPDATE fristvakt_cases SET updated_at = '2026-11-25T12:30:00Z'").await;
    let mut figures = Vec::new();
    for (minute, read, unchanged) in [(31, 2000, 0), (36, 2000, 2000), (42, 2000, 2000), (47, 0, 0), (52, 0, 0)] {
        let report = poll(&app, today, at(12, minute)).await;
        figures.push(format!(
            "12:{minute} read {} unchanged {} in {:?}",
            report.rows_read, report.unchanged, report.duration
        ));
        assert!(!report.full);
        assert_eq!((report.rows_read, report.unchanged), (read, unchanged), "poll at 12:{minute}");
        if unchanged > 0 {
            assert_eq!(report.deadlines_stored, 0, "nothing written at 12:{minute}");
        }
    }
    println!("bulk update figures: {}", figures.join("; "));
    app.close().await;
}

/// `state.retention`: the daily full pass deletes closed deadlines and the finished mail of
/// finished deadlines older than it, and stores no such deadline again; the record of a step of
/// a deadline still open is kept, so that the step never fires twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_finished_deadlines_and_their_mail_but_not_open_ones() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let url = format!("{}?mode=rwc", ws.sqlite_url("register.db"));
    create_register_table(&url).await;
    sqlite_exec(
        &url,
        "INSERT INTO fristvakt_cases VALUES \
         ('2024-BU-0001', 'BRO-BU', 'hl@kommun.example', 'F', '2024-01-02', NULL, NULL, NULL, NULL, NULL, NULL, '2024-01-02T09:00:00Z'), \
         ('2024-BU-0002', 'BRO-BU', 'hl@kommun.example', 'M', '2024-01-02', NULL, NULL, NULL, NULL, NULL, NULL, '2024-01-02T09:00:00Z')",
    )
    .await;
    let app = start(&settings).await;
    let then = Utc.with_ymd_and_hms(2024, 2, 1, 9, 0, 0).unwrap();
    full_pass(&app, date("2024-02-01"), then).await;
    let outbox_of = |rows: &[fristvakt::state::OutboxRow], case: &str| {
        rows.iter().filter(|r| r.case_ref.as_ref().is_some_and(|c| c.as_str() == case)).count()
    };
    let before = app.state.outbox().await.unwrap();
    assert!(outbox_of(&before, "2024-BU-0001") > 0 && outbox_of(&before, "2024-BU-0002") > 0);

    // 2024-BU-0001 was assessed in February 2024; 2024-BU-0002 is still open today.
    sqlite_exec(
        &url,
        "UPDATE fristvakt_cases SET protection_assessed_on = '2024-01-02', assessment_decided_on = '2024-02-05', \
         updated_at = '2024-02-05T09:00:00Z' WHERE case_ref = '2024-BU-0001'",
    )
    .await;
    // Mail that never went out holds addresses too: a dead and a retrying row of the finished
    // case, and a dead row of the open one whose server answer names the refused address.
    let state_url = format!("{}?mode=rw", ws.sqlite_url("state.db"));
    sqlite_exec(
        &state_url,
        "UPDATE outbox SET state = CASE WHEN step < 0 THEN 'dead' ELSE 'retrying' END \
         WHERE case_ref = '2024-BU-0001'",
    )
    .await;
    sqlite_exec(
        &state_url,
        "UPDATE outbox SET state = 'dead', last_error = '550 5.1.1 <hl@kommun.example>: no such user', \
         deliveries = '[]' WHERE id = (SELECT MIN(id) FROM outbox WHERE case_ref = '2024-BU-0002')",
    )
    .await;
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
    full_pass(&app, date(TODAY), now).await;
    let kept: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT state, recipients, last_error FROM outbox WHERE case_ref = '2024-BU-0002' ORDER BY id")
            .fetch_all(&sqlx::SqlitePool::connect(&state_url).await.unwrap())
            .await
            .unwrap();
    assert_eq!(kept[0].0, "dead", "the open deadline's step stays recorded");
    assert_eq!(kept[0].1, "[]", "without its addresses");
    assert_eq!(kept[0].2.as_deref(), Some("removed after state.retention"), "nor the server's answer");
    // What is still owed keeps its recipients: it is sent, or dies, and is cleared then.
    let pending: Vec<_> = kept.iter().filter(|(state, ..)| state == "pending").collect();
    assert!(!pending.is_empty() && pending.iter().all(|(_, recipients, _)| recipients.contains('@')), "{kept:?}");
    let all = DeadlineFilter { include_withdrawn: true, ..DeadlineFilter::default() };
    let stored = app.state.deadlines(&all).await.unwrap();
    assert!(stored.iter().all(|d| d.case_ref.as_str() != "2024-BU-0001"), "closed more than 730 days ago: deleted");
    assert_eq!(stored.iter().filter(|d| d.case_ref.as_str() == "2024-BU-0002").count(), 2, "open: kept");
    let after = app.state.outbox().await.unwrap();
    assert_eq!(outbox_of(&after, "2024-BU-0001"), 0, "the finished deadline's mail is deleted, dead or not");
    assert_eq!(outbox_of(&after, "2024-BU-0002"), outbox_of(&before, "2024-BU-0002"), "the open one's is kept");

    // The next full pass stores nothing of the old case again and fires no step twice.
    let again = full_pass(&app, date(TODAY), now + chrono::Duration::days(1)).await;
    assert_eq!(again.rows_read, 2);
    let stored = app.state.deadlines(&all).await.unwrap();
    assert!(stored.iter().all(|d| d.case_ref.as_str() != "2024-BU-0001"));
    assert_eq!(app.state.outbox().await.unwrap().len(), after.len(), "no step recorded twice");
    app.close().await;
}

/// Readiness does not pass while a poll understands none of the rows it reads (a view whose
/// column types changed); it passes again once the rows are readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_every_row_is_rejected() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 30, 8).await;
    let app = start(&settings).await;
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    full_pass(&app, today, now).await;
    assert_eq!(app.readiness(now).await, Ok(()));

    // Every updated_at loses its form (say, a new export writes local time without an offset).
    sqlite_exec(settings.register.url.expose(), "UPDATE fristvakt_cases SET updated_at = updated_at || '?'").await;
    let report = full_pass(&app, today, now + chrono::Duration::minutes(5)).await;
    assert_eq!(report.rows_rejected(), 30);
    let reason = app.readiness(now + chrono::Duration::minutes(5)).await.unwrap_err();
    assert_eq!(reason, "the last poll rejected every one of the 30 rows it read (bad_timestamp=30)");

    sqlite_exec(
        settings.register.url.expose(),
        "UPDATE fristvakt_cases SET updated_at = substr(updated_at, 1, length(updated_at) - 1)",
    )
    .await;
    full_pass(&app, today, now + chrono::Duration::minutes(10)).await;
    assert_eq!(app.readiness(now + chrono::Duration::minutes(10)).await, Ok(()));
    app.close().await;
}

/// A PostgreSQL view whose date column is of type `timestamp` (midnight) is read as dates, the
/// same deadlines as from a `date` column; a time other than midnight is a bad date for its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_timestamp_column_at_midnight_is_read_as_a_date() {
    let pg = postgres::shared();
    let register_url = pg.fresh_database().await;
    let today = date(TODAY);
    postgres_register(&register_url, demo_cases(40, 11, today, 0)).await;
    let pool = sqlx::PgPool::connect(&register_url).await.unwrap();
    sqlx::query(
        "CREATE VIEW timestamped AS SELECT case_ref, unit, caseworker, child_sex, \
         received_on::timestamp AS received_on, protection_assessed_on::timestamp AS protection_assessed_on, \
         assessment_decided_on, assessment_extended_to, investigation_opened_on::timestamp AS investigation_opened_on, \
         investigation_extended_to, investigation_closed_on, updated_at, child_key, \
         follow_up_decided_on::timestamp AS follow_up_decided_on, follow_up_ended_on, \
         reporter_info_requested_on::timestamp AS reporter_info_requested_on, reporter_informed_on FROM cases",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let ws = TestApp::sqlite();
    let load = |view: &str| {
        config::load_with_env(
            Some(&ws.config("")),
            [
                ("FRISTVAKT__REGISTER__URL".to_string(), register_url.clone()),
                ("FRISTVAKT__REGISTER__VIEW".to_string(), view.to_string()),
            ],
        )
        .unwrap()
    };
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let mut deadlines = Vec::new();
    for view in ["fristvakt_cases", "timestamped"] {
        let mut settings = load(view);
        settings.state.url = config::DatabaseUrl::parse(&ws.sqlite_url(&format!("{view}.db"))).unwrap();
        let app = start(&settings).await;
        let report = full_pass(&app, today, now).await;
        assert_eq!((report.rows_read, report.rows_rejected()), (40, 0), "{view}: {:?}", report.rejected);
        let stored = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
        deadlines.push(stored.into_iter().map(|d| (d.case_ref.to_string(), d.deadline)).collect::<Vec<_>>());
        app.close().await;
    }
    assert_eq!(deadlines[0], deadlines[1]);
}

/// One change to the register in a round of [`writing_only_what_changed_stores_what_a_fresh_pass_would`].
#[derive(Debug, Clone, Copy)]
enum Change {
    CloseAssessments,
    MoveUnit,
    DeleteRows,
    OpenInvestigations,
    CloseInvestigations,
    DropCaseworker,
    TouchOnly,
}

/// The statement of a change to about `share` % of the rows (chosen by `salt`), stamped `stamp`
/// — or not stamped at all (`silent`: a register that changes a row without its `updated_at`,
/// which only the daily full pass sees).
fn change_sql(change: Change, share: u32, salt: u32, stamp: &str, silent: bool) -> String {
    let rows = format!("(rowid * 7919 + {salt}) % 100 < {share}");
    let stamp = if silent { String::new() } else { format!(", updated_at = '{stamp}'") };
    let set = |what: &str| format!("UPDATE fristvakt_cases SET {what}{stamp} WHERE {rows}");
    match change {
        Change::CloseAssessments => set("assessment_decided_on = COALESCE(assessment_decided_on, received_on)"),
        Change::MoveUnit => set("unit = 'NEW-BU'"),
        Change::DeleteRows => format!("DELETE FROM fristvakt_cases WHERE {rows}"),
        Change::OpenInvestigations => {
            set("investigation_opened_on = COALESCE(investigation_opened_on, assessment_decided_on, received_on), \
             investigation_closed_on = NULL")
        }
        // Closed the day it opened: never before it (a broken row, kept as it was, which a fresh
        // state would not have).
        Change::CloseInvestigations => {
            set("investigation_closed_on = COALESCE(investigation_closed_on, investigation_opened_on)")
        }
        Change::DropCaseworker => set("caseworker = NULL"),
        Change::TouchOnly => set("unit = unit"),
    }
}

fn change_strategy() -> impl proptest::strategy::Strategy<Value = Change> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Change::CloseAssessments),
        Just(Change::MoveUnit),
        Just(Change::DeleteRows),
        Just(Change::OpenInvestigations),
        Just(Change::CloseInvestigations),
        Just(Change::DropCaseworker),
        Just(Change::TouchOnly),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..proptest::prelude::ProptestConfig::default() })]

    /// Writing only what changed (skipping identical deadlines, withdrawing by difference,
    /// finding vanished cases by hash) leaves the state a fresh full pass over the final register
    /// would write: after any rounds of register changes, each read by an incremental poll or a
    /// full pass, then the day's full pass, the deadlines not withdrawn are exactly those of a
    /// new state's first full pass.
    #[test]
    fn writing_only_what_changed_stores_what_a_fresh_pass_would(
        seed in 0u64..1000,
        rounds in proptest::collection::vec(
            (change_strategy(), 1u32..40, 0u32..100, proptest::bool::ANY, proptest::bool::weighted(0.3)),
            1..5,
        ),
    ) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(replay_and_compare(seed, rounds));
    }

}

/// The stored deadlines, each as its debug text (every field).
async fn stored_deadlines(app: &App) -> Vec<String> {
    app.state.deadlines(&DeadlineFilter::default()).await.unwrap().iter().map(|d| format!("{d:?}")).collect()
}

/// The deadlines a new state's first full pass stores from the register of `settings` at `at`.
async fn fresh_pass_deadlines(settings: &config::Settings, today: NaiveDate, at: DateTime<Utc>) -> Vec<String> {
    let fresh_ws = TestApp::sqlite();
    let mut fresh_settings = fresh_ws.settings("");
    fresh_settings.register.url = settings.register.url.clone();
    let fresh = start(&fresh_settings).await;
    full_pass(&fresh, today, at).await;
    let expected = stored_deadlines(&fresh).await;
    fresh.close().await;
    expected
}

/// Applies `rounds` of register changes to a demo register of 1 500 cases (seeded), each read by
/// an incremental poll or a full pass, then the day's full pass; asserts that the deadlines not
/// withdrawn are exactly those of a fresh state's first full pass over the final register.
async fn replay_and_compare(seed: u64, rounds: Vec<(Change, u32, u32, bool, bool)>) {
    let ws = TestApp::sqlite();
    // Rounds delete up to half the rows: the hold of mass withdrawals (tested on its own) is off.
    let settings = config::load_with_env(Some(&ws.config_with("max_withdraw_share = 1.0", "")), Vec::new()).unwrap();
    let today = date(TODAY);
    write_demo_register(&settings, 1500, seed).await;
    let app = start(&settings).await;
    let mut now = Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap();
    full_pass(&app, today, now).await;
    for (change, share, salt, full, silent) in &rounds {
        now += chrono::Duration::minutes(20);
        let stamp = (now - chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        sqlite_exec(settings.register.url.expose(), &change_sql(*change, *share, *salt, &stamp, *silent)).await;
        if *full {
            full_pass(&app, today, now).await;
        } else {
            poll(&app, today, now).await;
        }
    }
    full_pass(&app, today, now + chrono::Duration::minutes(20)).await;
    let kept = stored_deadlines(&app).await;
    app.close().await;

    let expected = fresh_pass_deadlines(&settings, today, now + chrono::Duration::minutes(20)).await;
    assert!(!expected.is_empty());
    let only_kept: Vec<&String> = kept.iter().filter(|d| !expected.contains(d)).take(3).collect();
    let only_fresh: Vec<&String> = expected.iter().filter(|d| !kept.contains(d)).take(3).collect();
    assert_eq!(kept.len(), expected.len(), "rounds {rounds:?}: only kept {only_kept:#?}, only fresh {only_fresh:#?}");
    assert!(kept == expected, "rounds {rounds:?}: the stored deadlines differ from a fresh pass");
}

/// Every kind of change made without touching `updated_at` (which only the daily full pass can
/// see), each followed by a full pass: each column the store compares is exercised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_changes_of_every_column_are_stored_by_the_full_pass() {
    let rounds = [
        Change::CloseAssessments,
        Change::MoveUnit,
        Change::OpenInvestigations,
        Change::CloseInvestigations,
        Change::DropCaseworker,
        Change::DeleteRows,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, change)| (change, 20, i as u32 * 13, true, true))
    .collect();
    replay_and_compare(3, rounds).await;
}

/// The optional columns (contract §1): a view with them gets the follow-up clock and chained
/// investigations, and `check-config` says so; the same rows in a view without them work as
/// before, with the features off. A report into an open investigation has no assessment clock,
/// and `explain` says why. The child key appears in no output.
#[tokio::test]
async fn optional_columns_switch_on_follow_up_and_chains() {
    const KEY: &str = "k3y-of-child-0042";
    let ws = TestApp::sqlite();
    let url = ws.sqlite_url("register.db");
    std::fs::File::create(ws.path("register.db")).unwrap();
    sqlite_exec(
        &url,
        "CREATE TABLE fristvakt_cases (case_ref TEXT, unit TEXT, caseworker TEXT, child_sex TEXT, received_on TEXT, \
         protection_assessed_on TEXT, assessment_decided_on TEXT, assessment_extended_to TEXT, \
         investigation_opened_on TEXT, investigation_extended_to TEXT, investigation_closed_on TEXT, updated_at TEXT, \
         child_key TEXT, follow_up_decided_on TEXT, follow_up_ended_on TEXT)",
    )
    .await;
    sqlite_exec(
        &url,
        &format!(
            "INSERT INTO fristvakt_cases VALUES \
         ('2026-BU-0001', 'BRO-BU', NULL, 'F', NULL, NULL, NULL, NULL, '2026-05-04', NULL, '2026-08-31', '2026-09-01T08:00:00Z', '{KEY}', '2026-08-31', NULL), \
         ('2026-BU-0002', 'BRO-BU', NULL, 'F', NULL, NULL, NULL, NULL, '2026-09-30', NULL, NULL, '2026-09-30T08:00:00Z', '{KEY}', NULL, NULL), \
         ('2026-BU-0003', 'BRO-BU', NULL, 'M', NULL, NULL, NULL, NULL, '2026-10-01', NULL, NULL, '2026-10-01T08:00:00Z', 'other-child', NULL, NULL), \
         ('2026-BU-0004', 'BRO-BU', NULL, 'M', '2026-11-10', '2026-11-10', NULL, NULL, '2026-10-20', NULL, NULL, '2026-11-10T08:00:00Z', NULL, NULL, NULL)"
        ),
    )
    .await;
    let cfg = ws.config("[units.\"BRO-BU\"]\nmanagers = [\"ec.bromma@kommun.example\"]\n");
    let out = fristvakt(Some(&cfg), &["check-config"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("chained investigations on (column child_key), follow-up clock on"),
        "{}",
        stdout(&out)
    );

    let out = fristvakt(Some(&cfg), &["deadlines", "--format", "json", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let kinds: Vec<String> =
        listed.iter().map(|v| format!("{} {}", v["case_ref"].as_str().unwrap(), v["kind"].as_str().unwrap())).collect();
    assert_eq!(
        kinds,
        [
            "2026-BU-0001 follow_up",
            "2026-BU-0001 investigation",
            "2026-BU-0002 investigation",
            "2026-BU-0003 investigation",
            "2026-BU-0004 investigation",
            "2026-BU-0004 protection",
        ]
    );
    // Closed 2026-08-31: + 6 months = 2027-02-28, a Sunday, moved to Monday 2027-03-01; ended
    // in time by the investigation of the same child opened in 2026-BU-0002 (SoL 23 kap. 5 §).
    let follow_up = &listed[0];
    assert_eq!(
        (follow_up["nominal_due_on"].as_str(), follow_up["due_on"].as_str(), follow_up["closed_on"].as_str()),
        (Some("2027-02-28"), Some("2027-03-01"), Some("2026-09-30"))
    );
    assert_eq!(follow_up["status"].as_str(), Some("met"));

    let out = fristvakt(Some(&cfg), &["explain", "2026-BU-0002", "--today", TODAY], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains(
            "Möjlig kedja (JO 2565-2016): utredningen inleddes 30 dagar efter att utredningen i ärende 2026-BU-0001"
        ),
        "{text}"
    );
    let out = fristvakt(Some(&cfg), &["explain", "2026-BU-0004", "--today", TODAY], &[]);
    assert!(
        stdout(&out).contains("Ingen förhandsbedömning: anmälan kom in medan en utredning om barnet pågick"),
        "{}",
        stdout(&out)
    );
    let out = fristvakt(Some(&cfg), &["explain", "2026-BU-0003", "--today", TODAY], &[]);
    assert!(!stdout(&out).contains("kedja"), "{}", stdout(&out));

    let out = fristvakt(Some(&cfg), &["digest", "--dry-run", "--today", TODAY], &[]);
    let digest = stdout(&out);
    assert!(digest.contains("- 2026-BU-0002 inleddes strax efter att 2026-BU-0001 avslutades"), "{digest}");
    assert!(!digest.contains("2026-BU-0003 inleddes"), "{digest}");

    // A one-day-shorter window: 30 days is outside it.
    let out =
        fristvakt(Some(&cfg), &["digest", "--dry-run", "--today", TODAY], &[("FRISTVAKT__RULES__CHAIN_WINDOW", "29d")]);
    assert!(!stdout(&out).contains("inleddes strax efter"), "{}", stdout(&out));

    let out = fristvakt(Some(&cfg), &["poll", "--once", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for output in [stdout(&out), stderr(&out), digest, text, std::fs::read_to_string(&cfg).unwrap()] {
        assert!(!output.contains(KEY), "the child key leaked: {output}");
    }

    // The same rows in a view without the optional columns: the features are off, all else works.
    let ws2 = TestApp::sqlite();
    let url2 = ws2.sqlite_url("register.db");
    std::fs::File::create(ws2.path("register.db")).unwrap();
    create_register_table(&url2).await;
    sqlite_exec(
        &url2,
        "INSERT INTO fristvakt_cases VALUES \
         ('2026-BU-0001', 'BRO-BU', NULL, 'F', NULL, NULL, NULL, NULL, '2026-05-04', NULL, '2026-08-31', '2026-09-01T08:00:00Z'), \
         ('2026-BU-0002', 'BRO-BU', NULL, 'F', NULL, NULL, NULL, NULL, '2026-09-30', NULL, NULL, '2026-09-30T08:00:00Z')",
    )
    .await;
    let cfg2 = ws2.config("");
    let out = fristvakt(Some(&cfg2), &["check-config"], &[]);
    assert!(
        stdout(&out).contains("chained investigations off (column child_key), follow-up clock off"),
        "{}",
        stdout(&out)
    );
    let out = fristvakt(Some(&cfg2), &["deadlines", "--format", "json", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|v| v["kind"] == "investigation"));
    let out = fristvakt(Some(&cfg2), &["poll", "--once", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Without a reachable register, check-config still passes and says so.
    std::fs::remove_file(ws2.path("register.db")).unwrap();
    let out = fristvakt(Some(&cfg2), &["check-config"], &[]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("register features not checked"), "{}", stdout(&out));
}

/// The rows of [`optional_columns_switch_on_follow_up_and_chains`] as demo cases.
fn optional_column_rows(key: &str) -> Vec<register::RawRow> {
    let row = |case_ref: &str, sex: &str, received: Option<&str>, opened: &str, closed: Option<&str>, updated: &str| {
        register::RawRow {
            case_ref: Some(case_ref.to_string()),
            unit: Some("BRO-BU".to_string()),
            child_sex: Some(sex.to_string()),
            received_on: received.map(String::from),
            protection_assessed_on: received.map(String::from),
            investigation_opened_on: Some(opened.to_string()),
            investigation_closed_on: closed.map(String::from),
            updated_at: Some(updated.to_string()),
            ..register::RawRow::default()
        }
    };
    let mut rows = vec![
        row("2026-BU-0001", "F", None, "2026-05-04", Some("2026-08-31"), "2026-09-01T08:00:00Z"),
        row("2026-BU-0002", "F", None, "2026-09-30", None, "2026-09-30T08:00:00Z"),
        row("2026-BU-0003", "M", None, "2026-10-01", None, "2026-10-01T08:00:00Z"),
        row("2026-BU-0004", "M", Some("2026-11-10"), "2026-10-20", None, "2026-11-10T08:00:00Z"),
    ];
    rows[0].child_key = Some(key.to_string());
    rows[0].follow_up_decided_on = Some("2026-08-31".to_string());
    rows[1].child_key = Some(key.to_string());
    rows[2].child_key = Some("0b7e55c1d2a94f6e8c3b1a0d9e8f7a6b".to_string());
    rows
}

/// A PostgreSQL register view with the optional columns (real `date` columns) gets the
/// follow-up clock and the chain; the same rows in a view without them work with both off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_view_with_and_without_the_optional_columns() {
    const KEY: &str = "5f0c9a7e3b2d4c1e8a6f0b9d7c5e3a1f";
    let pg = postgres::shared();
    let ws = TestApp::sqlite();
    let cfg = ws.config("[units.\"BRO-BU\"]\nmanagers = [\"ec.bromma@kommun.example\"]\n");
    let run = |register: &str, state: &str, args: &[&str]| {
        let out =
            fristvakt(Some(&cfg), args, &[("FRISTVAKT__REGISTER__URL", register), ("FRISTVAKT__STATE__URL", state)]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        (stdout(&out), stderr(&out))
    };
    let kinds = |json: &str| -> Vec<String> {
        let listed: Vec<Value> = serde_json::from_str(json).unwrap();
        listed.iter().map(|v| format!("{} {}", v["case_ref"].as_str().unwrap(), v["kind"].as_str().unwrap())).collect()
    };

    // With the optional columns.
    let (register_url, state_url) = (pg.fresh_database().await, pg.fresh_database().await);
    postgres_register_with(&register_url, optional_column_rows(KEY).into_iter(), true).await;
    let (config_check, _) = run(&register_url, &state_url, &["check-config"]);
    assert!(
        config_check.contains(
            "chained investigations on (column child_key), follow-up clock on (columns follow_up_decided_on, \
             follow_up_ended_on), reporter information on (columns reporter_info_requested_on, reporter_informed_on)"
        ),
        "{config_check}"
    );
    let (json, _) = run(&register_url, &state_url, &["deadlines", "--format", "json", "--today", TODAY]);
    assert_eq!(
        kinds(&json),
        [
            "2026-BU-0001 follow_up",
            "2026-BU-0001 investigation",
            "2026-BU-0002 investigation",
            "2026-BU-0003 investigation",
            "2026-BU-0004 investigation",
            "2026-BU-0004 protection",
        ]
    );
    let listed: Vec<Value> = serde_json::from_str(&json).unwrap();
    // Closed 2026-08-31: + 6 months = 2027-02-28, a Sunday, moved to Monday 2027-03-01, and ended
    // by the investigation of the same child opened 2026-09-30.
    assert_eq!(
        (listed[0]["nominal_due_on"].as_str(), listed[0]["due_on"].as_str(), listed[0]["closed_on"].as_str()),
        (Some("2027-02-28"), Some("2027-03-01"), Some("2026-09-30"))
    );
    let (explained, _) = run(&register_url, &state_url, &["explain", "2026-BU-0002", "--today", TODAY]);
    assert!(explained.contains("Möjlig kedja (JO 2565-2016): utredningen inleddes 30 dagar efter"), "{explained}");
    let (digest, _) = run(&register_url, &state_url, &["digest", "--dry-run", "--today", TODAY]);
    assert!(digest.contains("- 2026-BU-0002 inleddes strax efter att 2026-BU-0001 avslutades"), "{digest}");
    assert!(!digest.contains("2026-BU-0003 inleddes"), "{digest}");
    // A poll stores the key (PostgreSQL state), and the stored chain shows in the digest the same.
    let (polled, poll_log) = run(&register_url, &state_url, &["poll", "--once", "--today", TODAY]);
    let (stored_digest, _) = run(&register_url, &state_url, &["digest", "--dry-run", "--today", TODAY]);
    assert_eq!(stored_digest, digest);
    for output in [&config_check, &json, &explained, &digest, &polled, &poll_log] {
        assert!(!output.contains(KEY), "the child key leaked: {output}");
    }

    // Without them: the features are off and everything else works.
    let (register_url, state_url) = (pg.fresh_database().await, pg.fresh_database().await);
    postgres_register_with(&register_url, optional_column_rows(KEY).into_iter(), false).await;
    let (config_check, _) = run(&register_url, &state_url, &["check-config"]);
    assert!(
        config_check.contains("chained investigations off (column child_key), follow-up clock off")
            && config_check.contains("reporter information off"),
        "{config_check}"
    );
    let (json, _) = run(&register_url, &state_url, &["deadlines", "--format", "json", "--today", TODAY]);
    assert_eq!(
        kinds(&json),
        [
            "2026-BU-0001 investigation",
            "2026-BU-0002 investigation",
            "2026-BU-0003 investigation",
            "2026-BU-0004 investigation",
            "2026-BU-0004 protection",
        ]
    );
    let (explained, _) = run(&register_url, &state_url, &["explain", "2026-BU-0002", "--today", TODAY]);
    assert!(!explained.contains("kedja"), "{explained}");
    let (digest, _) = run(&register_url, &state_url, &["digest", "--dry-run", "--today", TODAY]);
    assert!(!digest.contains("inleddes strax efter"), "{digest}");
    run(&register_url, &state_url, &["poll", "--once", "--today", TODAY]);
}

/// The case prints (`state::prints`): a steady full pass computes and writes nothing; a register
/// that grows many times over between two passes regrows the prints' buckets (the stored ones are
/// dropped mid-pass and stored whole at the end); cases that leave the register are found from
/// the prints, also one whose row turned broken; and the state is what a fresh pass stores. On
/// PostgreSQL, the pass that wrote more than 10 000 deadlines left the planner's statistics of
/// them fresh.
async fn full_passes_compute_only_the_cases_whose_row_changed(state_url: Option<String>) {
    let test = TestApp::with_sqlite_register(state_url.clone());
    let settings = test.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 5000, 5).await;
    let register = settings.register.url.expose().to_string();
    // 100 cases now, 4 900 later.
    sqlite_exec(&register, "CREATE TABLE later AS SELECT * FROM fristvakt_cases WHERE rowid > 100").await;
    sqlite_exec(&register, "DELETE FROM fristvakt_cases WHERE rowid > 100").await;
    let app = start(&settings).await;
    let mut now = Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap();
    let mut pass = || {
        now += chrono::Duration::hours(1);
        now
    };
    let first = full_pass(&app, today, pass()).await;
    assert_eq!((first.rows_read, first.unchanged), (100, 0));
    assert_eq!(app.state.poll_state().await.unwrap().print_bits, Some(4), "built by the first full pass");
    let steady = full_pass(&app, today, pass()).await;
    assert_eq!((steady.rows_read, steady.unchanged, steady.deadlines_stored), (100, 100, 0), "{steady:?}");

    sqlite_exec(&register, "INSERT INTO fristvakt_cases SELECT * FROM later").await;
    let grown = full_pass(&app, today, pass()).await;
    assert_eq!((grown.rows_read, grown.unchanged), (5000, 100));
    if let Some(url) = &state_url {
        assert!(grown.deadlines_stored > 10_000, "{grown:?}");
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let (estimate, stored): (f32, i64) = sqlx::query_as(
            "SELECT reltuples, (SELECT COUNT(*) FROM deadlines) FROM pg_class WHERE relname = 'deadlines'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        assert_eq!(estimate as i64, stored, "the planner's row count of deadlines, from ANALYZE");
    }
    // Grown when the 2 049th case came (128 a bucket), to 64 buckets of 32.
    assert_eq!(app.state.poll_state().await.unwrap().print_bits, Some(6), "5 000 cases, about 78 a bucket");
    let steady = full_pass(&app, today, pass()).await;
    assert_eq!((steady.rows_read, steady.unchanged, steady.deadlines_stored), (5000, 5000, 0), "{steady:?}");

    // 50 cases leave; one turns broken (its deadlines stay), then leaves too.
    let before = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let broken = before[0].case_ref.to_string();
    let leaving: BTreeSet<String> =
        before.iter().map(|d| d.case_ref.to_string()).filter(|c| *c != broken).take(50 * 3).collect();
    let leaving: Vec<String> = leaving.into_iter().take(50).collect();
    let kinds = before.iter().filter(|d| leaving.contains(&d.case_ref.to_string())).count() as u64;
    let quoted = leaving.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(",");
    sqlite_exec(&register, &format!("DELETE FROM fristvakt_cases WHERE case_ref IN ({quoted})")).await;
    sqlite_exec(&register, &format!("UPDATE fristvakt_cases SET received_on = 'soon' WHERE case_ref = '{broken}'"))
        .await;
    let left = full_pass(&app, today, pass()).await;
    assert_eq!((left.rows_read, left.rows_rejected(), left.withdrawn), (4950, 1, kinds), "{left:?}");
    assert_eq!(left.unchanged, 4949);
    let after = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    // The leavers' deadlines are gone, the broken row's case keeps its own. (The other cases of
    // a leaver's child are computed again without it: their count may change.)
    assert!(!after.iter().any(|d| leaving.contains(&d.case_ref.to_string())));
    let of_broken = |list: &[fristvakt::domain::StoredDeadline]| {
        list.iter().filter(|d| d.case_ref.as_str() == broken).map(|d| d.deadline.clone()).collect::<Vec<_>>()
    };
    assert_eq!(of_broken(&after), of_broken(&before), "the broken row's case keeps its deadlines");
    let broken_kinds = of_broken(&after).len() as u64;
    assert!(broken_kinds > 0);
    sqlite_exec(&register, &format!("DELETE FROM fristvakt_cases WHERE case_ref = '{broken}'")).await;
    let gone = full_pass(&app, today, pass()).await;
    assert_eq!((gone.rows_read, gone.withdrawn), (4949, broken_kinds), "{gone:?}");
    let kept = stored_deadlines(&app).await;
    let at = pass();
    app.close().await;

    let expected = fresh_pass_deadlines(&settings, today, at).await;
    assert_eq!(kept.len(), expected.len());
    assert!(kept == expected, "the stored deadlines differ from a fresh pass");
}

both_engines!(multi_thread: full_passes_compute_only_the_cases_whose_row_changed);

/// An incremental poll cancels the pending notices of the deadlines it closed — those of the
/// cases it computed, not by a look at the whole outbox — and leaves every other notice alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_poll_cancels_the_notices_of_the_deadlines_it_closed() {
    use fristvakt::rules::Kind;
    use fristvakt::state::OutboxState;
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 2000, 7).await;
    let app = start(&settings).await;
    let at = |h: u32| Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap();
    poll(&app, today, at(8)).await;
    let pending = |rows: &[fristvakt::state::OutboxRow]| -> Vec<(String, i64)> {
        rows.iter()
            .filter(|r| r.state == OutboxState::Pending && r.kind == Some(Kind::Assessment))
            .map(|r| (r.case_ref.as_ref().unwrap().to_string(), r.id))
            .collect()
    };
    let before = pending(&app.state.outbox().await.unwrap());
    assert!(before.len() >= 2, "demo notices on assessments: {}", before.len());
    let (closed_case, closed_id) = before[0].clone();
    // The assessment is decided (the day it was received: never before it).
    sqlite_exec(
        settings.register.url.expose(),
        &format!(
            "UPDATE fristvakt_cases SET assessment_decided_on = received_on, updated_at = '2026-11-25T08:30:00Z' \
             WHERE case_ref = '{closed_case}'"
        ),
    )
    .await;
    let report = poll(&app, today, at(9)).await;
    assert_eq!(report.unchanged + 1, report.rows_read, "{report:?}");
    assert_eq!(report.notices_cancelled, 1, "{report:?}");
    let rows = app.state.outbox().await.unwrap();
    let state_of = |id: i64| rows.iter().find(|r| r.id == id).unwrap().state;
    assert_eq!(state_of(closed_id), OutboxState::Cancelled);
    let after = pending(&rows);
    assert_eq!(after.len(), before.len() - 1, "every other pending notice stays");
    assert!(after.iter().all(|(case, _)| *case != closed_case));
    app.close().await;
}

/// An incremental poll cancels notices only of the cases whose deadlines it closed or withdrew:
/// a notice of a case whose deadline stayed open (only the caseworker changed) stays pending,
/// no statement runs when nothing closed; a deadline that was closed already is left alone by
/// a poll that changes only its caseworker (its notices were cancelled when it closed): a
/// notice left pending for it (put back by hand) is cancelled by the next full pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_poll_cancels_only_the_notices_of_deadlines_that_closed() {
    use fristvakt::rules::Kind;
    use fristvakt::state::OutboxState;
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 2000, 7).await;
    let register = settings.register.url.expose().to_string();
    let app = start(&settings).await;
    let at = |h: u32| Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap();
    poll(&app, today, at(8)).await;
    let pending: Vec<(String, i64)> = app
        .state
        .outbox()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.state == OutboxState::Pending && r.kind == Some(Kind::Assessment))
        .map(|r| (r.case_ref.as_ref().unwrap().to_string(), r.id))
        .collect();
    let (closed_case, closed_id) = pending[0].clone();
    let (open_case, open_id) = pending.iter().find(|(case, _)| *case != closed_case).unwrap().clone();
    let closed_notices = pending.iter().filter(|(case, _)| *case == closed_case).count() as u64;
    let state_of = |rows: &[fristvakt::state::OutboxRow], id: i64| rows.iter().find(|r| r.id == id).unwrap().state;
    let new_caseworker = |case: &str, at: &str| {
        format!(
            "UPDATE fristvakt_cases SET caseworker = 'ny.handlaggare@kommun.example', updated_at = '{at}' \
             WHERE case_ref = '{case}'"
        )
    };

    // One assessment is decided; the other case only gets a new caseworker.
    sqlite_exec(
        &register,
        &format!(
            "UPDATE fristvakt_cases SET assessment_decided_on = received_on, updated_at = '2026-11-25T08:30:00Z' \
             WHERE case_ref = '{closed_case}'"
        ),
    )
    .await;
    sqlite_exec(&register, &new_caseworker(&open_case, "2026-11-25T08:30:00Z")).await;
    let report = poll(&app, today, at(9)).await;
    assert_eq!(report.rows_read - report.unchanged, 2, "{report:?}");
    assert_eq!(report.notices_cancelled, closed_notices, "{report:?}");
    let rows = app.state.outbox().await.unwrap();
    assert_eq!(state_of(&rows, closed_id), OutboxState::Cancelled);
    assert_eq!(state_of(&rows, open_id), OutboxState::Pending, "its deadline stayed open");
    let filter = DeadlineFilter { case_ref: Some(open_case.clone()), ..Default::default() };
    let stored = app.state.deadlines(&filter).await.unwrap();
    assert!(stored.iter().all(|d| d.caseworker.as_ref().unwrap().as_str() == "ny.handlaggare@kommun.example"));
    assert!(stored.iter().any(|d| d.deadline.kind == Kind::Assessment && d.deadline.closed_on.is_none()));

    // The cancelled notice pending again (put back by hand; a poll cancels in the transaction
    // that closes the deadline): a poll that changes only that case's caseworker leaves it.
    sqlite_exec(settings.state.url.expose(), &format!("UPDATE outbox SET state = 'pending' WHERE id = {closed_id}"))
        .await;
    sqlite_exec(&register, &new_caseworker(&closed_case, "2026-11-25T09:30:00Z")).await;
    let report = poll(&app, today, at(10)).await;
    assert_eq!(report.rows_read - report.unchanged, 1, "{report:?}");
    assert_eq!(report.notices_cancelled, 0, "{report:?}");
    assert_eq!(state_of(&app.state.outbox().await.unwrap(), closed_id), OutboxState::Pending);
    // The full pass cancels it, and nothing else.
    let report = full_pass(&app, today, at(11)).await;
    assert_eq!(report.notices_cancelled, 1, "{report:?}");
    let rows = app.state.outbox().await.unwrap();
    assert_eq!(state_of(&rows, closed_id), OutboxState::Cancelled);
    assert_eq!(state_of(&rows, open_id), OutboxState::Pending);
    app.close().await;
}

/// The staleness gauge follows the register's newest change: asked of the register by the first
/// poll of a process that shows it (the daemon), then moved on by the rows each poll computed,
/// without reading the register again; a process that shows no metrics never asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_staleness_gauge_follows_the_newest_change_read() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 50, 8).await;
    let register = settings.register.url.expose().to_string();
    sqlite_exec(&register, "UPDATE fristvakt_cases SET updated_at = '2026-11-25T10:00:00Z'").await;
    let app = start(&settings).await;
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap();
    let staleness = |app: &App| -> f64 {
        let text = app.metrics.render();
        let line = text.lines().find(|l| l.starts_with("fristvakt_register_staleness_seconds ")).unwrap_or_default();
        line.split(' ').nth(1).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
    };
    poll(&app, today, at(11, 0)).await;
    assert_eq!(staleness(&app), 0.0, "a process that shows no metrics (poll --once) does not ask the register");
    app.watch_register_staleness();
    poll(&app, today, at(12, 0)).await;
    assert_eq!(staleness(&app), 7200.0, "2 hours after the newest row");
    sqlite_exec(
        &register,
        "UPDATE fristvakt_cases SET unit = 'NEW-BU', updated_at = '2026-11-25T12:30:00Z' \
         WHERE case_ref = (SELECT MIN(case_ref) FROM fristvakt_cases)",
    )
    .await;
    let changed = poll(&app, today, at(13, 0)).await;
    assert_eq!(changed.rows_read, 1);
    assert_eq!(staleness(&app), 1800.0, "the row computed at 12:30");
    poll(&app, today, at(13, 30)).await;
    assert_eq!(staleness(&app), 3600.0, "nothing newer");
    app.close().await;
}

/// A case reference with spaces around it is stored trimmed (`CaseRef`), and its print is found
/// under that form: the next full pass computes nothing for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_padded_case_reference_is_unchanged_on_the_next_pass() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    let today = date(TODAY);
    write_demo_register(&settings, 20, 9).await;
    sqlite_exec(settings.register.url.expose(), "UPDATE fristvakt_cases SET case_ref = '  ' || case_ref || ' '").await;
    let app = start(&settings).await;
    let at = |h: u32| Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap();
    let first = full_pass(&app, today, at(8)).await;
    assert_eq!((first.rows_read, first.rows_rejected()), (20, 0));
    let stored = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    assert!(stored.iter().all(|d| d.case_ref.as_str().trim() == d.case_ref.as_str()), "stored trimmed");
    let again = full_pass(&app, today, at(9)).await;
    assert_eq!((again.unchanged, again.deadlines_stored, again.withdrawn), (20, 0, 0), "{again:?}");
    app.close().await;
}

/// The PostgreSQL register is streamed with `COPY … TO STDOUT` and one case is read with a
/// SELECT (`explain`): both give every value alike, control characters and backslashes in text
/// included, and the instant in RFC 3339 form with microseconds whatever its fraction.
#[tokio::test]
async fn the_postgres_copy_stream_reads_every_value_as_a_select_does() {
    use futures_util::TryStreamExt;
    let pg = postgres::shared();
    let register_url = pg.fresh_database().await;
    postgres_register(&register_url, demo_cases(300, 17, date(TODAY), 0)).await;
    let pool = sqlx::PgPool::connect(&register_url).await.unwrap();
    for (salt, caseworker, stamp) in [
        (0, "E'tab\\there, back\\\\slash, new\\nline, cr\\r, bell\\007'", "2026-11-20 08:00:00+00"),
        (1, "'åäö ÅÄÖ \\N literally'", "2026-11-20 09:00:00.5+01"),
        (2, "NULL", "2026-11-20 10:00:00.000001+00"),
    ] {
        sqlx::query(&format!(
            "UPDATE cases SET caseworker = {caseworker}, updated_at = '{stamp}' WHERE abs(hashtext(case_ref)) % 7 = {salt}"
        ))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let url = config::DatabaseUrl::parse(&register_url).unwrap();
    let register = register::Register::connect(&url, "fristvakt_cases").await.unwrap();
    let streamed: Vec<register::RawRow> = register.rows_since(None).try_collect().await.unwrap();
    assert_eq!(streamed.len(), 300);
    let mut seen = BTreeSet::new();
    for row in &streamed {
        let case_ref = row.case_ref.clone().unwrap();
        let selected = register.row(&case_ref).await.unwrap().unwrap();
        assert_eq!(row, &selected, "{case_ref}");
        let stamp = row.updated_at.clone().unwrap();
        assert!(fristvakt::register::validate(row).is_ok(), "{case_ref} {stamp}");
        seen.insert((row.caseworker.clone(), stamp));
    }
    for expected in [
        (
            Some("tab\there, back\\slash, new\nline, cr\r, bell\u{7}".to_string()),
            "2026-11-20T08:00:00.000000Z".to_string(),
        ),
        (Some("åäö ÅÄÖ \\N literally".to_string()), "2026-11-20T08:00:00.500000Z".to_string()),
        (None, "2026-11-20T10:00:00.000001Z".to_string()),
    ] {
        assert!(seen.contains(&expected), "{expected:?} not among {} distinct values", seen.len());
    }
    // An incremental read streams the same rows from its bound on.
    let since = Utc.with_ymd_and_hms(2026, 11, 20, 8, 30, 0).unwrap();
    let newer: Vec<register::RawRow> = register.rows_since(Some(since)).try_collect().await.unwrap();
    assert!(!newer.is_empty());
    assert!(newer.iter().all(|r| r.updated_at.as_deref() >= Some("2026-11-20T08:30")), "{newer:?}");
    let expected = streamed.iter().filter(|r| r.updated_at.as_deref() >= Some("2026-11-20T08:30")).count();
    assert_eq!(newer.len(), expected);
    register.close().await;
}

/// A view whose columns are not `text` (`character(n)` keeps its padding in COPY's own output,
/// where a cast to text drops it) is streamed as every other read gives it.
#[tokio::test]
async fn a_postgres_view_of_padded_character_columns_is_streamed_as_a_select_reads_it() {
    use futures_util::TryStreamExt;
    let pg = postgres::shared();
    let register_url = pg.fresh_database().await;
    postgres_register(&register_url, demo_cases(50, 23, date(TODAY), 0)).await;
    let pool = sqlx::PgPool::connect(&register_url).await.unwrap();
    sqlx::query(
        "CREATE VIEW padded AS SELECT case_ref::character(24) AS case_ref, unit::character(16) AS unit, \
         caseworker::character varying(80) AS caseworker, child_sex::character(3) AS child_sex, received_on, \
         protection_assessed_on, assessment_decided_on, assessment_extended_to, investigation_opened_on, \
         investigation_extended_to, investigation_closed_on, updated_at, child_key, follow_up_decided_on, \
         follow_up_ended_on, reporter_info_requested_on, reporter_informed_on FROM cases",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let url = config::DatabaseUrl::parse(&register_url).unwrap();
    let plain = register::Register::connect(&url, "fristvakt_cases").await.unwrap();
    let padded = register::Register::connect(&url, "padded").await.unwrap();
    let mut expected: Vec<register::RawRow> = plain.rows_since(None).try_collect().await.unwrap();
    let mut streamed: Vec<register::RawRow> = padded.rows_since(None).try_collect().await.unwrap();
    expected.sort_by(|a, b| a.case_ref.cmp(&b.case_ref));
    streamed.sort_by(|a, b| a.case_ref.cmp(&b.case_ref));
    assert_eq!(streamed.len(), 50);
    assert_eq!(streamed, expected, "character(n) is read without its padding");
    for row in &streamed {
        let selected = padded.row(row.case_ref.as_deref().unwrap()).await.unwrap().unwrap();
        assert_eq!(&selected, row);
    }
    plain.close().await;
    padded.close().await;
}

/// The register of [`rules_across_one_childs_cases`]: a view with `child_key` and the follow-up
/// columns, empty, on either engine; returns a function that runs one statement on it.
async fn child_register(
    test: &TestApp,
) -> (String, Box<dyn Fn(String) -> futures_util::future::BoxFuture<'static, ()>>) {
    let postgres_url = (test.register_engine() == Engine::Postgres).then(|| test.register_url());
    let columns = "case_ref TEXT, unit TEXT, caseworker TEXT, child_sex TEXT, received_on {d}, \
         protection_assessed_on {d}, assessment_decided_on {d}, assessment_extended_to {d}, \
         investigation_opened_on {d}, investigation_extended_to {d}, investigation_closed_on {d}, updated_at {t}, \
         child_key TEXT, follow_up_decided_on {d}, follow_up_ended_on {d}, reporter_info_requested_on {d}, \
         reporter_informed_on {d}";
    match postgres_url {
        Some(url) => {
            let create = columns.replace("{d}", "date").replace("{t}", "timestamptz");
            let url = url.to_string();
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
            sqlx::query(&format!("CREATE TABLE cases ({create})")).execute(&pool).await.unwrap();
            sqlx::query("CREATE VIEW fristvakt_cases AS SELECT * FROM cases").execute(&pool).await.unwrap();
            pool.close().await;
            let exec = move |sql: String| -> futures_util::future::BoxFuture<'static, ()> {
                let url = url.clone();
                Box::pin(async move {
                    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
                    sqlx::query(&sql.replace("fristvakt_cases", "cases")).execute(&pool).await.unwrap();
                    pool.close().await;
                })
            };
            (postgres_url.unwrap().to_string(), Box::new(exec))
        }
        None => {
            let url = format!("{}?mode=rwc", test.register_url());
            let create = columns.replace("{d}", "TEXT").replace("{t}", "TEXT");
            sqlite_exec(&url, &format!("CREATE TABLE fristvakt_cases ({create})")).await;
            let exec = {
                let url = url.clone();
                move |sql: String| -> futures_util::future::BoxFuture<'static, ()> {
                    let url = url.clone();
                    Box::pin(async move { sqlite_exec(&url, &sql).await })
                }
            };
            (test.register_url().to_string(), Box::new(exec))
        }
    }
}

/// The rules across one child's cases (contract §1–§2), kept by incremental polls that read
/// only the row that changed: case B's new investigation closes case A's follow-up (SoL 23 kap.
/// 5 §) and removes case C's assessment clock (SoL 20 kap. 2 §), cancelling its pending reminder;
/// B's investigation struck out again reopens the one and brings back the other. After each poll
/// the stored deadlines equal those of a fresh full pass, and `deadlines --format json` shows them.
async fn rules_across_one_childs_cases(postgres_state: Option<String>) {
    const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let test = TestApp::new(postgres_state).await;
    let (register_url, exec) = child_register(&test).await;
    let state_url = test.state_url().to_string();
    let extra = "[units.\"BRO-BU\"]\nmanagers = [\"ec.bromma@kommun.example\"]\n";
    let cfg = test.config(extra);
    let env = [("FRISTVAKT__REGISTER__URL", register_url.as_str()), ("FRISTVAKT__STATE__URL", state_url.as_str())];
    let settings = config::load_with_env(Some(&cfg), env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
    let insert = |case_ref: &str, values: &str, stamp: &str| {
        format!(
            "INSERT INTO fristvakt_cases (case_ref, unit, caseworker, child_key, updated_at, {}) VALUES \
             ('{case_ref}', 'BRO-BU', 'anna@kommun.example', '{KEY}', '{stamp}', {})",
            values.split(';').next().unwrap(),
            values.split(';').nth(1).unwrap()
        )
    };
    exec(insert(
        "2026-BU-0001",
        "investigation_opened_on, investigation_closed_on, follow_up_decided_on; '2026-01-12', '2026-03-31', '2026-03-31'",
        "2026-05-01T08:00:00Z",
    ))
    .await;
    exec(insert("2026-BU-0002", "received_on; '2026-05-04'", "2026-05-04T08:00:00Z")).await;
    // C's reporter asked to be told of the decision: no clock while none is made.
    exec(insert(
        "2026-BU-0003",
        "received_on, reporter_info_requested_on; '2026-05-20', '2026-05-21'",
        "2026-05-21T08:00:00Z",
    ))
    .await;

    let app = start(&settings).await;
    let at = |day: &str, hour: u32| {
        let d = date(day);
        (d, Utc.from_utc_datetime(&d.and_hms_opt(hour, 0, 0).unwrap()))
    };
    let (today, now) = at("2026-06-01", 9);
    let first = full_pass(&app, today, now).await;
    assert_eq!(first.rows_read, 3);
    assert_eq!(
        deadline_lines(&app).await,
        [
            "2026-BU-0001 follow_up due 2026-09-30 open",
            "2026-BU-0001 investigation due 2026-05-12 closed 2026-03-31",
            "2026-BU-0002 assessment due 2026-05-18 open",
            "2026-BU-0002 protection due 2026-05-05 open",
            "2026-BU-0003 assessment due 2026-06-03 open",
            "2026-BU-0003 protection due 2026-05-21 open",
        ]
    );
    // C's assessment reminder (−3, from 31 May) is in the outbox.
    let pending = |app: &App| {
        let state = app.state.clone();
        async move {
            state
                .outbox_for_case("2026-BU-0003")
                .await
                .unwrap()
                .iter()
                .filter(|r| r.kind == Some(rules::Kind::Assessment))
                .map(|r| r.state.as_str().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(pending(&app).await, ["pending"]);

    // B opens an investigation, dated 12 May: only B's row changes.
    exec(
        "UPDATE fristvakt_cases SET investigation_opened_on = '2026-05-12', updated_at = '2026-06-02T08:00:00Z' \
          WHERE case_ref = '2026-BU-0002'"
            .to_string(),
    )
    .await;
    let (today, now) = at("2026-06-02", 9);
    let second = poll(&app, today, now).await;
    assert_eq!(second.rows_read - second.unchanged, 1, "the poll read one changed row");
    let after = deadline_lines(&app).await;
    assert_eq!(
        after,
        [
            "2026-BU-0001 follow_up due 2026-09-30 closed 2026-05-12",
            "2026-BU-0001 investigation due 2026-05-12 closed 2026-03-31",
            "2026-BU-0002 assessment due 2026-05-18 closed 2026-05-12",
            "2026-BU-0002 investigation due 2026-09-14 open",
            "2026-BU-0002 protection due 2026-05-05 open",
            "2026-BU-0003 protection due 2026-05-21 open",
            "2026-BU-0003 reporter_information due 2026-05-22 open",
        ],
        "A's follow-up ended by B's investigation; C's assessment withdrawn, its reporter told at once"
    );
    assert_eq!(pending(&app).await, ["cancelled"], "the withdrawn clock's reminder is cancelled");
    assert_eq!(after, fresh_pass_lines(&settings, today, now).await, "the same as a fresh full pass");

    // The shown deadlines agree (`deadlines --format json` reads the whole register).
    let out = fristvakt(Some(&cfg), &["deadlines", "--format", "json", "--today", "2026-06-02"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let follow_up = listed.iter().find(|v| v["case_ref"] == "2026-BU-0001" && v["kind"] == "follow_up").unwrap();
    assert_eq!((follow_up["closed_on"].as_str(), follow_up["status"].as_str()), (Some("2026-05-12"), Some("met")));
    assert!(!listed.iter().any(|v| v["case_ref"] == "2026-BU-0003" && v["kind"] == "assessment"));
    let reporter =
        listed.iter().find(|v| v["case_ref"] == "2026-BU-0003" && v["kind"] == "reporter_information").unwrap();
    assert_eq!(
        (reporter["start_on"].as_str(), reporter["due_on"].as_str(), reporter["status"].as_str()),
        (Some("2026-05-21"), Some("2026-05-22"), Some("overdue"))
    );
    assert!(!stdout(&out).contains(KEY) && !stderr(&out).contains(KEY));

    // B's investigation struck out: A's follow-up runs again, C's assessment is back.
    exec(
        "UPDATE fristvakt_cases SET investigation_opened_on = NULL, updated_at = '2026-06-03T08:00:00Z' \
          WHERE case_ref = '2026-BU-0002'"
            .to_string(),
    )
    .await;
    let (today, now) = at("2026-06-03", 9);
    poll(&app, today, now).await;
    let back = deadline_lines(&app).await;
    assert!(back.contains(&"2026-BU-0001 follow_up due 2026-09-30 open".to_string()), "{back:#?}");
    assert!(back.contains(&"2026-BU-0003 assessment due 2026-06-03 open".to_string()), "{back:#?}");
    assert!(!back.iter().any(|l| l.contains("reporter_information")), "no decision yet: {back:#?}");
    assert_eq!(back, fresh_pass_lines(&settings, today, now).await);
    app.close().await;
}

/// The stored deadlines not withdrawn, a line each ("case kind due D open|closed D"), sorted.
async fn deadline_lines(app: &App) -> Vec<String> {
    stored_lines(app, |d| {
        Some(format!("{} {} due {} {}", d.case_ref, d.deadline.kind, d.deadline.due_on, closed_or_open(&d.deadline)))
    })
    .await
}

/// The deadlines a fresh state's full pass stores, as [`deadline_lines`] lists them.
async fn fresh_pass_lines(settings: &config::Settings, today: NaiveDate, now: DateTime<Utc>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut fresh = settings.clone();
    fresh.state.url =
        config::DatabaseUrl::parse(&format!("sqlite://{}", dir.path().join("fresh.db").display())).unwrap();
    let app = start(&fresh).await;
    full_pass(&app, today, now).await;
    let lines = deadline_lines(&app).await;
    app.close().await;
    lines
}

both_engines!(multi_thread: rules_across_one_childs_cases);

/// A full pass withdraws the cases that left the register in the transaction that stores the
/// prints without them (issue "No value … loses a notice", 4): when storing the prints fails
/// (here a trigger refuses them; in life a crash), nothing is withdrawn, and the next pass that
/// succeeds withdraws them. Before, the withdrawal committed alone, and the cases' unchanged rows
/// were skipped by later passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pass_withdraws_and_stores_its_prints_in_one_transaction() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    write_demo_register(&settings, 300, 9).await;
    let app = start(&settings).await;
    let mut now = Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap();
    let mut next = || {
        now += chrono::Duration::hours(1);
        now
    };
    full_pass(&app, date(TODAY), next()).await;
    let register = settings.register.url.expose().to_string();
    let state = format!("{}?mode=rw", ws.sqlite_url("state.db"));
    let leaving = deadline_lines(&app).await[0].split(' ').next().unwrap().to_string();
    sqlite_exec(&register, &format!("DELETE FROM fristvakt_cases WHERE case_ref = '{leaving}'")).await;
    sqlite_exec(
        &state,
        "CREATE TRIGGER refuse_prints BEFORE UPDATE ON case_prints BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .await;
    let failed = jobs::full_pass::run_once(&app, Moment::on(date(TODAY), next())).await;
    assert!(failed.is_err(), "the prints could not be stored");
    assert!(
        deadline_lines(&app).await.iter().any(|l| l.starts_with(&format!("{leaving} "))),
        "nothing withdrawn by the pass that failed"
    );
    sqlite_exec(&state, "DROP TRIGGER refuse_prints").await;
    let done = full_pass(&app, date(TODAY), next()).await;
    assert!(done.withdrawn > 0, "{done:?}");
    assert!(!deadline_lines(&app).await.iter().any(|l| l.starts_with(&format!("{leaving} "))));
    app.close().await;
}

/// Demo rows, and two more of one child whose key holds the characters of SQL and array
/// literals, for [`children_are_read_as_a_poll_reads_them`].
fn rows_with_children() -> Vec<register::RawRow> {
    let mut rows: Vec<register::RawRow> = demo_cases(400, 31, date(TODAY), 0).collect();
    for (i, case_ref) in ["2026-BU-90001", "2026-BU-90002"].into_iter().enumerate() {
        rows.push(register::RawRow {
            case_ref: Some(case_ref.to_string()),
            unit: Some("BRO-BU".to_string()),
            investigation_opened_on: Some(format!("2026-0{}-01", i + 5)),
            updated_at: Some("2026-11-01T08:00:00.000000Z".to_string()),
            child_key: Some("o'key \\ {a,\"b\"} $1 åäö".to_string()),
            ..register::RawRow::default()
        });
    }
    rows
}

/// The rows of some children, looked up by key, have the bytes (so the prints) a full read
/// gives them; a key given twice counts once; more keys than one statement takes are read in
/// batches; a view without `child_key` gives none.
async fn children_are_read_as_a_poll_reads_them(register: &register::Register, rows: &[register::RawRow]) {
    use futures_util::TryStreamExt;
    let by_case = |chunks: Vec<register::RowChunk>| {
        let mut rows = std::collections::BTreeMap::new();
        for chunk in &chunks {
            for row in chunk.rows() {
                let case_ref = row.case_ref().unwrap().into_owned();
                assert!(rows.insert(case_ref, row.bytes().to_vec()).is_none(), "a row read twice");
            }
        }
        rows
    };
    assert!(register.features().chains);
    let key_of =
        |row: &register::RawRow| fristvakt::domain::ChildKey::parse(row.child_key.as_deref().unwrap()).unwrap();
    // Every seventh row's child, the odd key, one key twice, and 2 500 keys no row has.
    let mut keys: Vec<_> = rows.iter().step_by(7).map(key_of).collect();
    keys.push(key_of(&rows[rows.len() - 1]));
    keys.push(key_of(&rows[0]));
    keys.extend((0..2_500).map(|i| fristvakt::domain::ChildKey::parse(&format!("nobody-{i}")).unwrap()));
    let wanted: BTreeSet<&str> = keys.iter().map(|k| k.as_str()).collect();

    let chunks: Vec<register::RowChunk> = register.chunks_since(None).try_collect().await.unwrap();
    // The reporter's days are read (from `date` columns on PostgreSQL) into the rules' dates.
    let asked = |dates: &[Option<chrono::NaiveDate>]| dates.iter().flatten().count();
    let read: Vec<_> = chunks
        .iter()
        .flat_map(|c| c.rows())
        .filter_map(|row| register::validate(&row.to_raw()).ok())
        .map(|case| case.dates.reporter_info_requested_on)
        .collect();
    let written: Vec<_> =
        rows.iter().filter_map(|row| row.reporter_info_requested_on.as_deref().map(date)).map(Some).collect();
    assert!(asked(&written) > 0);
    assert_eq!(asked(&read), asked(&written));
    let all = by_case(chunks);
    let expected: std::collections::BTreeMap<_, _> = rows
        .iter()
        .filter(|row| wanted.contains(row.child_key.as_deref().unwrap()))
        .map(|row| {
            let case_ref = row.case_ref.clone().unwrap();
            let bytes = all[&case_ref].clone();
            (case_ref, bytes)
        })
        .collect();
    assert!(expected.len() > 400 / 7 && expected.contains_key("2026-BU-90002"), "{}", expected.len());
    let found = by_case(register.chunks_of_children(&keys).try_collect().await.unwrap());
    assert_eq!(found, expected);

    // `rows_of_child` reads the same way: both cases of the odd key's child.
    let same_child = register.rows_of_child(&key_of(&rows[rows.len() - 1])).await.unwrap();
    let mut refs: Vec<_> = same_child.iter().map(|row| row.case_ref.clone().unwrap()).collect();
    refs.sort();
    assert_eq!(refs, ["2026-BU-90001", "2026-BU-90002"]);
    assert!(register.chunks_of_children(&[]).try_collect::<Vec<_>>().await.unwrap().is_empty());
}

/// The register read child by child, on either engine; on SQLite also a view without
/// `child_key`, which reads no child.
async fn children_are_read_by_key_as_a_poll_reads_them(postgres_register_db: Option<String>) {
    use futures_util::TryStreamExt;
    let test = TestApp::with_sqlite_state(postgres_register_db);
    let settings = test.settings("");
    let rows = rows_with_children();
    match test.register_engine() {
        Engine::Sqlite => {
            fristvakt::demo::write_demo_cases(
                &settings.register.url,
                &settings.register.view,
                rows.clone().into_iter(),
            )
            .await
            .unwrap();
        }
        Engine::Postgres => postgres_register(test.register_url(), rows.clone().into_iter()).await,
    }
    let register = register::Register::connect(&settings.register.url, &settings.register.view).await.unwrap();
    children_are_read_as_a_poll_reads_them(&register, &rows).await;
    register.close().await;
    if test.register_engine() == Engine::Postgres {
        return;
    }

    // A view without child_key reads no child.
    sqlite_exec(
        test.register_url(),
        "CREATE VIEW keyless AS SELECT case_ref, unit, caseworker, child_sex, \
        received_on, protection_assessed_on, assessment_decided_on, assessment_extended_to, investigation_opened_on, \
        investigation_extended_to, investigation_closed_on, updated_at FROM fristvakt_cases",
    )
    .await;
    let keyless = register::Register::connect(&settings.register.url, "keyless").await.unwrap();
    assert!(!keyless.features().chains);
    let key = fristvakt::domain::ChildKey::parse(rows[0].child_key.as_deref().unwrap()).unwrap();
    assert!(keyless.chunks_of_children(&[key]).try_collect::<Vec<_>>().await.unwrap().is_empty());
    keyless.close().await;
}

both_engines!(children_are_read_by_key_as_a_poll_reads_them);

/// Issue "No value … loses a notice" (4): a full pass that finds more than
/// `register.max_withdraw_share` of the known cases gone (a view caught half-loaded) withdraws
/// none, counts them, and is not recorded as done; a pass within a poll interval holds them
/// still; one a poll interval later that sees the same withdraws them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_loaded_view_withdraws_nothing_until_a_second_pass_sees_the_same() {
    let ws = TestApp::sqlite();
    let settings = ws.settings("");
    write_demo_register(&settings, 400, 4).await;
    let app = start(&settings).await;
    let start_at = Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap();
    full_pass(&app, date(TODAY), start_at).await;
    let before = deadline_lines(&app).await;
    let register = settings.register.url.expose().to_string();
    sqlite_exec(&register, "DELETE FROM fristvakt_cases WHERE rowid % 2 = 0").await;

    let held = full_pass(&app, date(TODAY), start_at + chrono::Duration::minutes(1)).await;
    println!("held: {} of {} cases, withdrawn {}", held.withdrawals_held, 400, held.withdrawn);
    assert!(held.withdrawals_held > 150 && held.withdrawn == 0, "{held:?}");
    assert_eq!(deadline_lines(&app).await, before, "nothing withdrawn, no notice cancelled");
    let poll_state = app.state.poll_state().await.unwrap();
    assert!(poll_state.withdrawals_held_at.is_some());
    assert_eq!(poll_state.last_full_pass_on, None, "the day's pass is not done: the daemon runs it again");

    // Within a poll interval (5 minutes by default): still held.
    let again = full_pass(&app, date(TODAY), start_at + chrono::Duration::minutes(3)).await;
    assert_eq!((again.withdrawn, again.withdrawals_held), (0, held.withdrawals_held));
    // A poll interval after the first hold, the same view: withdrawn.
    let seen = full_pass(&app, date(TODAY), start_at + chrono::Duration::minutes(7)).await;
    assert!(seen.withdrawn > 0 && seen.withdrawals_held == 0, "{seen:?}");
    let poll_state = app.state.poll_state().await.unwrap();
    assert_eq!((poll_state.withdrawals_held_at, poll_state.last_full_pass_on), (None, Some(date(TODAY))));
    app.close().await;
}

/// A pass reads the register by one COPY for as long as the pass takes (a first full pass
/// computes and writes every case while it reads): the register's `statement_timeout`, which
/// bounds every other statement, must not cut it short. Here the reader takes 1.2 s per chunk
/// with a statement timeout of 1 s; every row arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_outlasts_the_statement_timeout_on_postgres() {
    use futures_util::TryStreamExt;
    let pg = postgres::shared();
    let register_url = pg.fresh_database().await;
    postgres_register(&register_url, demo_cases(3500, 5, date(TODAY), 0)).await;
    let url = config::DatabaseUrl::parse(&register_url).unwrap();
    let waits =
        fristvakt::db::Waits { statement: std::time::Duration::from_secs(1), lock: std::time::Duration::from_secs(1) };
    let register = register::Register::connect_waiting(&url, "fristvakt_cases", waits).await.unwrap();
    let started = std::time::Instant::now();
    let mut chunks = register.chunks_since(None);
    let mut rows = 0;
    while let Some(chunk) = chunks.try_next().await.unwrap() {
        rows += chunk.len();
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    }
    println!("read {rows} rows in {:?} with a 1 s statement timeout", started.elapsed());
    assert_eq!(rows, 3500);
    assert!(started.elapsed() > std::time::Duration::from_secs(2));
    // The connection went back with its timeout: a plain statement is still bounded.
    assert!(register.row("2026-BU-00001").await.is_ok());
    drop(chunks);
    register.close().await;
}

/// A bulk update (every row changed at once) larger than the poll's bounds: more rows than it
/// appends to the print log before it writes the buckets directly, and than it sets between two
/// writes of them. A poll that fails part-way (the register read breaks after some chunks were
/// stored) loses nothing and doubles nothing: the next poll leaves the deadlines, the placements'
/// among them, and the outbox as a twin state that polled the same register without the failure;
/// and a second bulk update that puts every row back is read as such (no print of the first
/// stands over the buckets), as a fresh state's full pass reads it.
async fn a_bulk_update_is_polled_in_bounded_batches_and_a_failure_between_them_loses_nothing(
    state_url: Option<String>,
) {
    let ws = TestApp::sqlite();
    let mut settings = ws.settings("");
    if let Some(url) = &state_url {
        settings.state.url = config::DatabaseUrl::parse(url).unwrap();
    }
    let today = date(TODAY);
    let options = fristvakt::demo::DemoOptions { cases: 10_000, seed: 25, today, broken: 0 };
    let url = settings.register.url.clone();
    fristvakt::demo::write_demo_cases(&url, &settings.register.view, fristvakt::demo::generate(&options))
        .await
        .unwrap();
    let placements = fristvakt::demo::generate_placements(&options);
    assert!(!placements.is_empty());
    fristvakt::demo::write_demo_placements(&url, &settings.register.placements_view, &placements).await.unwrap();
    // The view reads a table through a column that fails at one row while `fail` names it.
    let register = url.expose().to_string();
    let columns: Vec<String> = {
        let pool = SqlitePoolOptions::new().max_connections(1).connect(&register).await.unwrap();
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info('fristvakt_cases')").fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.into_iter().map(|(name,)| name).collect()
    };
    let select: Vec<String> = columns
        .iter()
        .map(|c| {
            if c == "unit" {
                "CASE WHEN rowid = (SELECT at FROM fail) THEN abs(-9223372036854775808) ELSE unit END AS unit"
                    .to_string()
            } else {
                c.clone()
            }
        })
        .collect();
    sqlite_exec(&register, "ALTER TABLE fristvakt_cases RENAME TO cases_data").await;
    sqlite_exec(&register, "CREATE TABLE fail (at INTEGER)").await;
    sqlite_exec(&register, "INSERT INTO fail VALUES (NULL)").await;
    sqlite_exec(&register, &format!("CREATE VIEW fristvakt_cases AS SELECT {} FROM cases_data", select.join(", ")))
        .await;

    let app = start(&settings).await;
    let twin_ws = TestApp::sqlite();
    let mut twin_settings = twin_ws.settings("");
    twin_settings.register = settings.register.clone();
    let twin = start(&twin_settings).await;
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap();
    assert!(full_pass(&app, today, at(8, 0)).await.full);
    assert!(full_pass(&twin, today, at(8, 0)).await.full);

    // Every date a day earlier (then back): every case's deadlines change, none turns invalid.
    let dates: Vec<&String> = columns.iter().filter(|c| c.ends_with("_on") || c.ends_with("_to")).collect();
    assert!(dates.len() >= 7, "{dates:?}");
    let bulk = |days: i32, stamp: &str| {
        let set: Vec<String> = dates.iter().map(|c| format!("{c} = date({c}, '{days:+} day')")).collect();
        format!("UPDATE cases_data SET {}, updated_at = '{stamp}'", set.join(", "))
    };
    sqlite_exec(&register, &bulk(-1, "2026-11-25T08:30:00Z")).await;
    let twin_read = poll(&twin, today, at(8, 40)).await;
    assert_eq!(twin_read.rows_read, 10_000);
    assert!(twin_read.deadlines_stored > 10_000, "{twin_read:?}");

    // The read breaks at row 9 000: the chunks before it are stored, the watermark stays.
    sqlite_exec(&register, "UPDATE fail SET at = 9000").await;
    let failed = jobs::poll::run_once(&app, Moment::on(today, at(8, 40))).await;
    assert!(failed.is_err(), "the poll fails at the broken row");
    let partial = stored_deadlines(&app).await;
    let twin_deadlines = stored_deadlines(&twin).await;
    assert!(partial != twin_deadlines, "part of the bulk update is stored, not all");

    sqlite_exec(&register, "UPDATE fail SET at = NULL").await;
    let again = poll(&app, today, at(8, 45)).await;
    assert_eq!(again.rows_read, 10_000, "{again:?}");
    assert!(again.unchanged > 0 && again.unchanged < 10_000, "the stored chunks are not computed again: {again:?}");
    poll(&twin, today, at(8, 45)).await;
    let outbox = |app: &App| {
        let state = app.state.clone();
        async move {
            let rows = state.outbox().await.unwrap();
            let keys: Vec<String> = rows.iter().map(|r| r.notice_key.clone()).collect();
            let distinct: BTreeSet<String> = keys.iter().cloned().collect();
            assert_eq!(keys.len(), distinct.len(), "each notice once");
            rows.iter().map(|r| format!("{} {:?}", r.notice_key, r.state)).collect::<BTreeSet<String>>()
        }
    };
    assert_eq!(stored_deadlines(&app).await, stored_deadlines(&twin).await, "nothing lost after the failure");
    let (ours, theirs) = (outbox(&app).await, outbox(&twin).await);
    assert!(!ours.is_empty());
    assert!(ours == theirs, "the same notices, each once");

    // Back as it was: every print of the first bulk update is replaced, none stands over.
    sqlite_exec(&register, &bulk(1, "2026-11-25T09:00:00Z")).await;
    let back = poll(&app, today, at(9, 10)).await;
    assert_eq!((back.rows_read, back.unchanged), (10_000, 0), "{back:?}");
    // Within the overlap the same rows are read again: every one unchanged.
    let quiet = poll(&app, today, at(9, 40)).await;
    assert_eq!(quiet.unchanged, quiet.rows_read, "{quiet:?}");
    let steady = full_pass(&app, today, at(9, 50)).await;
    assert_eq!((steady.rows_read, steady.unchanged), (10_000, 10_000), "{steady:?}");
    let kept = stored_deadlines(&app).await;
    app.close().await;
    twin.close().await;
    let expected = fresh_pass_deadlines(&settings, today, at(9, 50)).await;
    assert_eq!(kept.len(), expected.len());
    assert!(kept == expected, "the stored deadlines differ from a fresh pass");
}

both_engines!(a_bulk_update_is_polled_in_bounded_batches_and_a_failure_between_them_loses_nothing);
