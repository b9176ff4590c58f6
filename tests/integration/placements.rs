//! The placements view (register contract §1b) and its one-off clocks (§2), on SQLite and
//! PostgreSQL: a full pass, then incremental polls in which only a placements row, or only a
//! cases row, changed; a register without the view works as before.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use fristvakt::app::{App, Moment};
use fristvakt::config::{self, Engine};
use fristvakt::jobs;
use fristvakt::poll::SyncReport;
use fristvakt::register::RejectReason;
use fristvakt::state::DeadlineFilter;
use serde_json::Value;

use crate::helpers::{date, fristvakt, stderr, stdout, Workspace};
use crate::support::postgres;

const TODAY: &str = "2026-11-27";
const KEY: &str = "child-key-of-p5-0001";

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0).unwrap()
}

/// The register's two tables in the engine's types, and views over them.
fn schema(engine: Engine) -> Vec<String> {
    let (date, instant) = match engine {
        Engine::Sqlite => ("TEXT", "TEXT"),
        Engine::Postgres => ("date", "timestamptz"),
    };
    let cases = [
        "case_ref TEXT PRIMARY KEY",
        "unit TEXT",
        "caseworker TEXT",
        "child_sex TEXT",
        "received_on D",
        "protection_assessed_on D",
        "assessment_decided_on D",
        "assessment_extended_to D",
        "investigation_opened_on D",
        "investigation_extended_to D",
        "investigation_closed_on D",
        "updated_at I",
        "child_key TEXT",
        "follow_up_decided_on D",
        "follow_up_ended_on D",
    ];
    let placements = [
        "placement_ref TEXT PRIMARY KEY",
        "case_ref TEXT",
        "unit TEXT",
        "caseworker TEXT",
        "child_key TEXT",
        "child_sex TEXT",
        "basis TEXT",
        "home TEXT",
        "home_since D",
        "decided_on D",
        "executed_on D",
        "legal_force_on D",
        "submitted_to_court_on D",
        "care_applied_on D",
        "application_extension_requested_on D",
        "application_extended_to D",
        "last_reviewed_on D",
        "restriction_decided_on D",
        "restriction_last_reviewed_on D",
        "restriction_ended_on D",
        "custody_considered_on D",
        "emergency_home_extended_to D",
        "ended_on D",
        "follow_up_decided_on D",
        "follow_up_ended_on D",
        "updated_at I",
    ];
    let typed = |columns: &[&str]| {
        columns
            .iter()
            .map(|c| c.replace(" D", &format!(" {date}")).replace(" I", &format!(" {instant}")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        format!("CREATE TABLE cases ({})", typed(&cases)),
        "CREATE VIEW fristvakt_cases AS SELECT * FROM cases".to_string(),
        format!("CREATE TABLE placements ({})", typed(&placements)),
        "CREATE VIEW fristvakt_placements AS SELECT * FROM placements".to_string(),
    ]
}

/// A cases row: reference, child key, opened, closed, updated_at.
fn case(case_ref: &str, key: Option<&str>, opened: &str, closed: Option<&str>, updated: &str) -> String {
    let q = |v: Option<&str>| v.map_or("NULL".to_string(), |v| format!("'{v}'"));
    format!(
        "INSERT INTO cases (case_ref, unit, caseworker, child_sex, investigation_opened_on, investigation_closed_on, updated_at, child_key) \
         VALUES ('{case_ref}', 'BRO-BU', 'hl@kommun.example', 'F', '{opened}', {}, '{updated}', {})",
        q(closed),
        q(key)
    )
}

/// A placements row from column = value pairs (text and dates alike).
fn placement(pairs: &[(&str, &str)]) -> String {
    let columns: Vec<&str> = pairs.iter().map(|(c, _)| *c).collect();
    let values: Vec<String> = pairs.iter().map(|(_, v)| format!("'{v}'")).collect();
    format!(
        "INSERT INTO placements (unit, caseworker, {}) VALUES ('BRO-BU', 'hl@kommun.example', {})",
        columns.join(", "),
        values.join(", ")
    )
}

fn first_rows() -> Vec<String> {
    vec![
        case("2026-BU-0001", Some(KEY), "2026-03-02", Some("2026-05-29"), "2026-05-29T08:00:00Z"),
        case("2026-BU-0002", None, "2026-09-01", None, "2026-09-01T08:00:00Z"),
        // Decided Saturday 2026-11-21: 7 days → Saturday 28th → Monday 30th.
        placement(&[
            ("placement_ref", "2026-PL-0001"),
            ("case_ref", "2026-BU-0002"),
            ("basis", "lvu_6"),
            ("decided_on", "2026-11-21"),
            ("updated_at", "2026-11-21T09:00:00Z"),
        ]),
        // Executed 2026-11-26: 28 days → julafton → Monday 2026-12-28.
        placement(&[
            ("placement_ref", "2026-PL-0002"),
            ("case_ref", "2026-BU-0002"),
            ("basis", "lvu_6"),
            ("decided_on", "2026-11-25"),
            ("executed_on", "2026-11-26"),
            ("submitted_to_court_on", "2026-11-26"),
            ("updated_at", "2026-11-26T09:00:00Z"),
        ]),
        // Ended before anything was due: no clock at all.
        placement(&[
            ("placement_ref", "2026-PL-0003"),
            ("basis", "lvu_6"),
            ("decided_on", "2026-11-02"),
            ("executed_on", "2026-11-02"),
            ("ended_on", "2026-11-04"),
            ("updated_at", "2026-11-04T09:00:00Z"),
        ]),
        // A jourhem of an investigation still open: no limit yet.
        placement(&[
            ("placement_ref", "2026-PL-0004"),
            ("case_ref", "2026-BU-0002"),
            ("basis", "sol"),
            ("home", "emergency_home"),
            ("decided_on", "2026-09-10"),
            ("executed_on", "2026-09-10"),
            ("updated_at", "2026-09-10T09:00:00Z"),
        ]),
        // A SoL HVB placement ended 2026-08-31 with a follow-up: → 2027-02-28 → 2027-03-01.
        placement(&[
            ("placement_ref", "2026-PL-0005"),
            ("child_key", KEY),
            ("basis", "sol"),
            ("home", "hvb"),
            ("decided_on", "2026-06-01"),
            ("executed_on", "2026-06-01"),
            ("ended_on", "2026-08-31"),
            ("follow_up_decided_on", "2026-08-31"),
            ("updated_at", "2026-08-31T09:00:00Z"),
        ]),
        // The compulsory follow-up after LVU care.
        placement(&[
            ("placement_ref", "2026-PL-0006"),
            ("basis", "lvu_2"),
            ("home", "family_home"),
            ("decided_on", "2026-01-12"),
            ("legal_force_on", "2026-02-02"),
            ("executed_on", "2026-01-12"),
            ("ended_on", "2026-10-15"),
            ("updated_at", "2026-10-15T09:00:00Z"),
        ]),
        // Broken: a reference that is a case's; a custody executed before its decision.
        placement(&[
            ("placement_ref", "2026-BU-0001"),
            ("basis", "sol"),
            ("decided_on", "2026-06-01"),
            ("updated_at", "2026-06-01T09:00:00Z"),
        ]),
        placement(&[
            ("placement_ref", "2026-PL-0007"),
            ("basis", "lvu_6"),
            ("decided_on", "2026-11-10"),
            ("executed_on", "2026-11-09"),
            ("updated_at", "2026-11-10T09:00:00Z"),
        ]),
    ]
}

/// Stored placement deadlines, one line each.
async fn placement_lines(app: &App) -> Vec<String> {
    let mut lines: Vec<String> = app
        .state
        .deadlines(&DeadlineFilter::default())
        .await
        .unwrap()
        .iter()
        .filter(|d| d.deadline.kind.is_placement())
        .map(|d| {
            let x = &d.deadline;
            let closed = x.closed_on.map_or("open".to_string(), |c| format!("closed {c}"));
            format!(
                "{} {} {} → {} / {} {closed} {}",
                d.case_ref,
                x.kind,
                x.start_on,
                x.nominal_due_on,
                x.due_on,
                x.status(date(TODAY))
            )
        })
        .collect();
    lines.sort();
    lines
}

async fn poll(app: &App, now: DateTime<Utc>) -> SyncReport {
    jobs::poll::run_once(app, Moment::on(date(TODAY), now)).await.unwrap().expect("the poll lease").sync
}

async fn full_pass(app: &App, now: DateTime<Utc>) -> SyncReport {
    jobs::full_pass::run_once(app, Moment::on(date(TODAY), now)).await.unwrap().expect("the poll lease").sync
}

/// Runs `statements` against the register.
async fn exec(url: &str, engine: Engine, statements: &[String]) {
    match engine {
        Engine::Sqlite => {
            let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(url).await.unwrap();
            for s in statements {
                sqlx::query(s).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        Engine::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
            for s in statements {
                sqlx::query(s).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
}

async fn placements_give_the_contract_clocks(engine: Engine) {
    let ws = Workspace::new();
    let register_url = match engine {
        Engine::Sqlite => {
            std::fs::File::create(ws.path("register.db")).unwrap();
            ws.sqlite_url("register.db")
        }
        Engine::Postgres => postgres::shared().fresh_database().await,
    };
    exec(&register_url, engine, &schema(engine)).await;
    exec(&register_url, engine, &first_rows()).await;
    let path = ws.config("[units.\"BRO-BU\"]\nmanagers = [\"ec.bromma@kommun.example\"]\n");
    let settings =
        config::load_with_env(Some(&path), [("FRISTVAKT__REGISTER__URL".to_string(), register_url.clone())]).unwrap();
    let app = App::start(Arc::new(settings), "test", at(8, 0)).await.unwrap();

    let first = poll(&app, at(8, 0)).await;
    assert_eq!(first.placement_rows_read, 8);
    assert_eq!(first.placement_rejected.get(&RejectReason::RefCollision), Some(&1), "{:?}", first.placement_rejected);
    assert_eq!(
        first.placement_rejected.get(&RejectReason::CloseBeforeStart),
        Some(&1),
        "{:?}",
        first.placement_rejected
    );
    let expected_first = [
        "2026-PL-0001 lvu_court_submission 2026-11-21 → 2026-11-28 / 2026-11-30 open due_soon",
        "2026-PL-0002 lvu_care_application 2026-11-26 → 2026-12-24 / 2026-12-28 open pending",
        "2026-PL-0002 lvu_court_submission 2026-11-25 → 2026-12-02 / 2026-12-02 closed 2026-11-26 met",
        "2026-PL-0005 placement_follow_up 2026-08-31 → 2027-02-28 / 2027-03-01 open pending",
        // Care begun under the custody before the care decision gained legal force: met.
        "2026-PL-0006 lvu_care_start 2026-02-02 → 2026-03-02 / 2026-03-02 closed 2026-01-12 met",
        "2026-PL-0006 placement_follow_up 2026-10-15 → 2027-04-15 / 2027-04-15 open pending",
    ];
    assert_eq!(placement_lines(&app).await, expected_first);

    // Only a placements row changed: the custody came in to the court on the Monday.
    exec(
        &register_url,
        engine,
        &["UPDATE placements SET submitted_to_court_on = '2026-11-30', updated_at = '2026-11-27T10:00:00Z' WHERE placement_ref = '2026-PL-0001'".to_string()],
    )
    .await;
    let second = poll(&app, at(10, 30)).await;
    assert!(second.placement_rows_read >= 1 && second.placement_rows_read < 8, "{second:?}");
    assert!(placement_lines(&app).await.contains(
        &"2026-PL-0001 lvu_court_submission 2026-11-21 → 2026-11-28 / 2026-11-30 closed 2026-11-30 met".to_string()
    ));

    // Only cases rows changed: the jourhem's investigation closed (its two months start), and a
    // new investigation of the child of the ended HVB placement opened (its follow-up ends).
    exec(
        &register_url,
        engine,
        &[
            "UPDATE cases SET investigation_closed_on = '2026-11-13', updated_at = '2026-11-27T11:00:00Z' WHERE case_ref = '2026-BU-0002'".to_string(),
            case("2026-BU-0009", Some(KEY), "2026-11-20", None, "2026-11-27T11:00:00Z"),
        ],
    )
    .await;
    let third = poll(&app, at(11, 30)).await;
    assert_eq!(third.placement_rows_read, 4, "the placements of 2026-BU-0002 and of the child: {third:?}");
    let lines = placement_lines(&app).await;
    // Closed 13 November → 13 January 2027.
    assert!(
        lines.contains(
            &"2026-PL-0004 emergency_home_limit 2026-11-13 → 2027-01-13 / 2027-01-13 open pending".to_string()
        ),
        "{lines:#?}"
    );
    assert!(
        lines.contains(
            &"2026-PL-0005 placement_follow_up 2026-08-31 → 2027-02-28 / 2027-03-01 closed 2026-11-20 met".to_string()
        ),
        "{lines:#?}"
    );

    // A full pass after a placement left the view: its deadlines are withdrawn, the rest stay.
    exec(&register_url, engine, &["DELETE FROM placements WHERE placement_ref = '2026-PL-0002'".to_string()]).await;
    let pass = full_pass(&app, at(12, 0)).await;
    assert_eq!(pass.placement_rows_read, 7);
    let lines = placement_lines(&app).await;
    assert!(!lines.iter().any(|l| l.starts_with("2026-PL-0002")), "{lines:#?}");
    assert_eq!(lines.len(), 5, "{lines:#?}");
    // The cases' own deadlines are untouched by the placements' pass.
    let cases = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    assert_eq!(cases.iter().filter(|d| !d.deadline.kind.is_placement()).count(), 3);
    app.close_connections().await;
}

#[tokio::test]
async fn placements_give_the_contract_clocks_on_sqlite() {
    placements_give_the_contract_clocks(Engine::Sqlite).await;
}

#[tokio::test]
async fn placements_give_the_contract_clocks_on_postgres() {
    placements_give_the_contract_clocks(Engine::Postgres).await;
}

/// The show commands and the mail: `deadlines` lists a placement's clocks under its reference,
/// `explain` words them, `check-config` says the view is there, a notice says what a miss means
/// and links by `mail.placement_link`.
#[tokio::test]
async fn placements_in_every_output() {
    let ws = Workspace::new();
    std::fs::File::create(ws.path("register.db")).unwrap();
    let url = ws.sqlite_url("register.db");
    exec(&url, Engine::Sqlite, &schema(Engine::Sqlite)).await;
    exec(&url, Engine::Sqlite, &first_rows()).await;
    let cfg = ws.config(
        "placement_link = \"https://register.kommun.example/placering/{placement_ref}\"\n\
         [units.\"BRO-BU\"]\nteam_leads = [\"gl.bromma@kommun.example\"]\nmanagers = [\"ec.bromma@kommun.example\"]\n",
    );
    let out = fristvakt(Some(&cfg), &["check-config"], &[]);
    assert!(
        stdout(&out).contains("placements view fristvakt_placements: placement and LVU clocks on"),
        "{}",
        stdout(&out)
    );

    let out = fristvakt(Some(&cfg), &["deadlines", "--format", "json", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let lvu = listed.iter().find(|v| v["case_ref"] == "2026-PL-0001").expect("the placement is listed");
    assert_eq!(lvu["kind"], "lvu_court_submission");
    assert_eq!((lvu["nominal_due_on"].as_str(), lvu["due_on"].as_str()), (Some("2026-11-28"), Some("2026-11-30")));
    assert_eq!(lvu["status"], "due_soon");

    let out = fristvakt(Some(&cfg), &["explain", "2026-PL-0001", "--today", TODAY], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("7 § lagen (1990:52) med särskilda bestämmelser om vård av unga"), "{text}");
    assert!(text.contains("upphör omhändertagandet"), "{text}");
    assert!(text.contains("2026-11-21 + 7 dagar = 2026-11-28"), "{text}");

    let out = fristvakt(Some(&cfg), &["digest", "--dry-run", "--today", TODAY], &[]);
    let digest = stdout(&out);
    assert!(digest.contains("Placeringar och LVU"), "{digest}");
    let lvu_at = digest.find("2026-PL-0001").expect("the custody is in the digest");
    assert!(
        digest.find("https://register.kommun.example/placering/2026-PL-0001").is_some_and(|l| l > lvu_at),
        "{digest}"
    );

    // One notice of the custody: its latest reached step, −1 (the 27th, the day before the
    // nominal 28th), which reaches the manager before the last day.
    let out = fristvakt(Some(&cfg), &["poll", "--once", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mails: Vec<String> = std::fs::read_dir(ws.path("outbox"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter(|m| m.contains("2026-PL-0001"))
        .collect();
    assert_eq!(mails.len(), 1, "one notice of the custody");
    let mail = &mails[0];
    assert!(mail.contains("ec.bromma@kommun.example"), "the −1 step reaches the manager: {mail}");
    assert!(mail.contains("placering/2026-PL-0001"), "{mail}");
    for output in [stdout(&out), stderr(&out), text, digest, mail.clone()] {
        assert!(!output.contains(KEY), "the child key leaked");
    }
}

/// A register without the placements view: the feature is off, said by `check-config`, and the
/// cases' clocks are as before.
#[tokio::test]
async fn a_register_without_the_placements_view_works_as_before() {
    let ws = Workspace::new();
    std::fs::File::create(ws.path("register.db")).unwrap();
    let url = ws.sqlite_url("register.db");
    let without: Vec<String> = schema(Engine::Sqlite).into_iter().take(2).collect();
    exec(&url, Engine::Sqlite, &without).await;
    exec(&url, Engine::Sqlite, &first_rows()[..2]).await;
    let cfg = ws.config("");
    let out = fristvakt(Some(&cfg), &["check-config"], &[]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("no placements view: placement and LVU clocks off"), "{}", stdout(&out));
    let out = fristvakt(Some(&cfg), &["poll", "--once", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fristvakt(Some(&cfg), &["deadlines", "--format", "json", "--today", TODAY], &[]);
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let kinds: Vec<&str> = listed.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["investigation", "investigation"]);
}
