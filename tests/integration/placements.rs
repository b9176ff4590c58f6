//! The placements view (register contract §1b) and its one-off clocks (§2), on SQLite and
//! PostgreSQL: a full pass, then incremental polls in which only a placements row, or only a
//! cases row, changed; a register without the view works as before.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use fristvakt::app::{App, Moment};
use fristvakt::config::{self, Engine};
use fristvakt::jobs;
use fristvakt::register::RejectReason;
use fristvakt::state::DeadlineFilter;
use fristvakt::sync::SyncReport;
use serde_json::Value;

use crate::helpers::{date, fristvakt, stderr, stdout};
use crate::support::app::{closed_or_open, exec, stored_lines, TestApp};

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
    stored_lines(app, |d| {
        let x = &d.deadline;
        x.kind.is_placement().then(|| {
            format!(
                "{} {} {} → {} / {} {} {}",
                d.case_ref,
                x.kind,
                x.start_on,
                x.nominal_due_on,
                x.due_on,
                closed_or_open(x),
                x.status(date(TODAY))
            )
        })
    })
    .await
}

/// The jourhem's two months once the case's investigation closed on 13 November 2026.
const JOURHEM_LIMIT: &str = "2026-PL-0004 emergency_home_limit 2026-11-13 → 2027-01-13 / 2027-01-13 open pending";
/// The ended HVB placement's follow-up, ended by the investigation opened in the child's case.
const FOLLOW_UP_MET: &str =
    "2026-PL-0005 placement_follow_up 2026-08-31 → 2027-02-28 / 2027-03-01 closed 2026-11-20 met";

/// Asserts that the stored placement lines hold each of `wanted`.
async fn assert_placement_lines(app: &App, wanted: &[&str]) -> Vec<String> {
    let lines = placement_lines(app).await;
    for line in wanted {
        assert!(lines.iter().any(|l| l == line), "{line} not among {lines:#?}");
    }
    lines
}

/// The one unit of the first rows, with its manager.
const UNITS: &str = "[units.\"BRO-BU\"]\nmanagers = [\"ec.bromma@kommun.example\"]\n";

/// A fresh register with the placements view's first rows, and the app started on it (state on
/// PostgreSQL when `postgres_state` is given) at 08:00 on `TODAY`.
async fn started_with_first_rows(postgres_state: Option<String>) -> (TestApp, App) {
    let test = TestApp::new(postgres_state).await;
    exec(test.register_url(), &schema(test.register_engine())).await;
    exec(test.register_url(), &first_rows()).await;
    let settings = config::load_with_env(Some(&test.config(UNITS)), Vec::new()).unwrap();
    let app = test.start(settings, at(8, 0)).await;
    (test, app)
}

async fn poll(app: &App, now: DateTime<Utc>) -> SyncReport {
    jobs::poll::run_once(app, Moment::on(date(TODAY), now)).await.unwrap().expect("the poll lease").sync
}

async fn full_pass(app: &App, now: DateTime<Utc>) -> SyncReport {
    jobs::full_pass::run_once(app, Moment::on(date(TODAY), now)).await.unwrap().expect("the poll lease").sync
}

async fn placements_give_the_contract_clocks(postgres_register: Option<String>) {
    let test = TestApp::with_sqlite_state(postgres_register);
    let (engine, register_url) = (test.register_engine(), test.register_url().to_string());
    exec(&register_url, &schema(engine)).await;
    exec(&register_url, &first_rows()).await;
    let path = test.config(UNITS);
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
        "2026-PL-0004 placement_review 2026-09-10 → 2027-03-10 / 2027-03-10 open pending",
        "2026-PL-0005 placement_follow_up 2026-08-31 → 2027-02-28 / 2027-03-01 open pending",
        // Ended before its six months: nothing more to review.
        "2026-PL-0005 placement_review 2026-06-01 → 2026-12-01 / 2026-12-01 closed 2026-08-31 met",
        "2026-PL-0006 custody_transfer_review 2026-01-12 → 2028-01-12 / 2028-01-12 closed 2026-10-15 met",
        // Care begun under the custody before the care decision gained legal force: met.
        "2026-PL-0006 lvu_care_start 2026-02-02 → 2026-03-02 / 2026-03-02 closed 2026-01-12 met",
        "2026-PL-0006 placement_follow_up 2026-10-15 → 2027-04-15 / 2027-04-15 open pending",
        // Sunday 2026-07-12 → Monday; ended unreviewed after it: missed.
        "2026-PL-0006 placement_review 2026-01-12 → 2026-07-12 / 2026-07-13 closed 2026-10-15 missed",
    ];
    assert_eq!(placement_lines(&app).await, expected_first);

    // Only a placements row changed: the custody came in to the court on the Monday.
    exec(&register_url, &["UPDATE placements SET submitted_to_court_on = '2026-11-30', updated_at = '2026-11-27T10:00:00Z' WHERE placement_ref = '2026-PL-0001'".to_string()],
    )
    .await;
    let second = poll(&app, at(10, 30)).await;
    assert!(second.placement_rows_read >= 1 && second.placement_rows_read < 8, "{second:?}");
    assert!(placement_lines(&app).await.contains(
        &"2026-PL-0001 lvu_court_submission 2026-11-21 → 2026-11-28 / 2026-11-30 closed 2026-11-30 met".to_string()
    ));

    // Only cases rows changed: the jourhem's investigation closed (its two months start), and a
    // new investigation of the child of the ended HVB placement opened (its follow-up ends).
    exec(&register_url, &[
            "UPDATE cases SET investigation_closed_on = '2026-11-13', updated_at = '2026-11-27T11:00:00Z' WHERE case_ref = '2026-BU-0002'".to_string(),
            case("2026-BU-0009", Some(KEY), "2026-11-20", None, "2026-11-27T11:00:00Z"),
        ],
    )
    .await;
    let third = poll(&app, at(11, 30)).await;
    assert_eq!(third.placement_rows_read, 4, "the placements of 2026-BU-0002 and of the child: {third:?}");
    // Closed 13 November → 13 January 2027.
    assert_placement_lines(&app, &[JOURHEM_LIMIT, FOLLOW_UP_MET]).await;

    // A full pass after a placement left the view: its deadlines are withdrawn, the rest stay.
    exec(&register_url, &["DELETE FROM placements WHERE placement_ref = '2026-PL-0002'".to_string()]).await;
    let pass = full_pass(&app, at(12, 0)).await;
    assert_eq!(pass.placement_rows_read, 7);
    let lines = placement_lines(&app).await;
    assert!(!lines.iter().any(|l| l.starts_with("2026-PL-0002")), "{lines:#?}");
    assert_eq!(lines.len(), 9, "{lines:#?}");
    // The cases' own deadlines are untouched by the placements' pass.
    let cases = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    assert_eq!(cases.iter().filter(|d| !d.deadline.kind.is_placement()).count(), 3);
    app.close_connections().await;
}

/// The cycles of one placement's review as a register records reviews one at a time: each poll on
/// its own day, the stored cycles and the notices written after it.
async fn reviews_recorded_one_at_a_time(postgres_register: Option<String>) {
    let test = TestApp::with_sqlite_state(postgres_register);
    let (engine, register_url) = (test.register_engine(), test.register_url().to_string());
    exec(&register_url, &schema(engine)).await;
    exec(
        &register_url,
        &[placement(&[
            ("placement_ref", "2026-PL-0100"),
            ("basis", "sol"),
            ("home", "hvb"),
            ("decided_on", "2026-03-02"),
            ("executed_on", "2026-03-02"),
            ("restriction_decided_on", "2026-03-02"),
            ("updated_at", "2026-03-02T09:00:00Z"),
        ])],
    )
    .await;
    let path = test.config(UNITS);
    let settings =
        config::load_with_env(Some(&path), [("FRISTVAKT__REGISTER__URL".to_string(), register_url.clone())]).unwrap();
    let app = App::start(Arc::new(settings), "test", at(8, 0)).await.unwrap();
    let poll_on = |day: &'static str| {
        let app = &app;
        async move {
            let now = Utc.from_utc_datetime(&date(day).and_hms_opt(9, 0, 0).unwrap());
            jobs::poll::run_once(app, Moment::on(date(day), now)).await.unwrap().expect("the poll lease");
        }
    };
    let review = |column: &str, day: &str, updated: &str| {
        format!(
            "UPDATE placements SET {column} = '{day}', updated_at = '{updated}' WHERE placement_ref = '2026-PL-0100'"
        )
    };
    let cycles = |kind: &'static str| {
        let app = &app;
        async move {
            stored_lines(app, |d| {
                let x = &d.deadline;
                (x.kind.as_str() == kind).then(|| format!("{} → {} {}", x.start_on, x.due_on, closed_or_open(x)))
            })
            .await
        }
    };
    let notices = || {
        let app = &app;
        async move {
            let mut keys: Vec<String> = app
                .state
                .outbox()
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.kind.is_some_and(|k| k.as_str() == "placement_review"))
                .map(|r| format!("{} {}", r.notice_key, r.state.as_str()))
                .collect();
            keys.sort();
            keys
        }
    };

    // First sight a month before the six months are up: the −30 step.
    poll_on("2026-08-03").await;
    assert_eq!(cycles("placement_review").await, ["2026-03-02 → 2026-09-02 open"]);
    assert_eq!(notices().await, ["notice/placement_review/2026-PL-0100/2026-03-02/-30 pending"]);

    // Reviewed on 2026-08-31, in time: the cycle is met and the next runs from the review
    // (2027-02-28 is a Sunday → 2027-03-01). The first cycle's pending notice is cancelled.
    exec(&register_url, &[review("last_reviewed_on", "2026-08-31", "2026-08-31T10:00:00Z")]).await;
    poll_on("2026-08-31").await;
    assert_eq!(
        cycles("placement_review").await,
        ["2026-03-02 → 2026-09-02 closed 2026-08-31", "2026-08-31 → 2027-03-01 open"]
    );
    assert_eq!(notices().await, ["notice/placement_review/2026-PL-0100/2026-03-02/-30 cancelled"]);

    // The new cycle's own −30 step: the same step of another cycle, sent once, and not again.
    poll_on("2027-01-29").await;
    poll_on("2027-01-29").await;
    assert_eq!(
        notices().await,
        [
            "notice/placement_review/2026-PL-0100/2026-03-02/-30 cancelled",
            "notice/placement_review/2026-PL-0100/2026-08-31/-30 pending",
        ]
    );

    // Reviewed late, on 2027-03-10: the second cycle is missed, the third runs from the review.
    exec(&register_url, &[review("last_reviewed_on", "2027-03-10", "2027-03-10T10:00:00Z")]).await;
    poll_on("2027-03-10").await;
    let three = [
        "2026-03-02 → 2026-09-02 closed 2026-08-31",
        "2026-08-31 → 2027-03-01 closed 2027-03-10",
        "2027-03-10 → 2027-09-10 open",
    ];
    assert_eq!(cycles("placement_review").await, three);
    let stored = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let second = stored.iter().find(|d| d.deadline.start_on == date("2026-08-31")).unwrap();
    assert_eq!(second.deadline.status(date("2027-03-10")).as_str(), "missed");

    // The review date corrected backwards: nothing closes, the running cycle moves in place.
    exec(&register_url, &[review("last_reviewed_on", "2027-03-08", "2027-03-11T10:00:00Z")]).await;
    poll_on("2027-03-11").await;
    assert_eq!(cycles("placement_review").await, [three[0], three[1], "2027-03-08 → 2027-09-08 open"]);

    // The restriction ends while the placement goes on; the restriction's running cycle closes,
    // the placement's does not.
    exec(&register_url, &[review("restriction_ended_on", "2027-03-20", "2027-03-20T10:00:00Z")]).await;
    poll_on("2027-03-20").await;
    let restriction = cycles("restriction_review").await;
    assert_eq!(restriction.len(), 1, "{restriction:?}");
    assert!(restriction[0].ends_with("closed 2027-03-20"), "{restriction:?}");
    assert_eq!(cycles("placement_review").await.last().unwrap(), "2027-03-08 → 2027-09-08 open");

    // A full pass keeps the closed cycles of a placement still in the view.
    jobs::full_pass::run_once(
        &app,
        Moment::on(date("2027-03-21"), Utc.with_ymd_and_hms(2027, 3, 21, 3, 0, 0).unwrap()),
    )
    .await
    .unwrap()
    .expect("the poll lease");
    assert_eq!(cycles("placement_review").await.len(), 3);

    // The placement ends: its running cycle closes on that day, met, and no new one starts.
    exec(&register_url, &[review("ended_on", "2027-04-01", "2027-04-01T10:00:00Z")]).await;
    poll_on("2027-04-01").await;
    assert_eq!(cycles("placement_review").await, [three[0], three[1], "2027-03-08 → 2027-09-08 closed 2027-04-01"]);
    app.close_connections().await;

    // `deadlines` gives one object per stored cycle, closed ones included, unique by
    // (case_ref, kind, start_on); `explain` lists the closed cycles.
    let env = [("FRISTVAKT__REGISTER__URL", register_url.as_str())];
    let out = fristvakt(Some(&path), &["deadlines", "--format", "json", "--today", "2027-04-02"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let reviews: Vec<&Value> = listed.iter().filter(|d| d["kind"] == "placement_review").collect();
    assert_eq!(reviews.len(), 3, "{reviews:#?}");
    let mut identities: Vec<String> =
        listed.iter().map(|d| format!("{} {} {}", d["case_ref"], d["kind"], d["start_on"])).collect();
    let all = identities.len();
    identities.sort();
    identities.dedup();
    assert_eq!(identities.len(), all);
    let out = fristvakt(Some(&path), &["explain", "2026-PL-0100", "--today", "2027-04-02"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("placement_review 2026-08-31 → 2027-03-01"), "{text}");
    assert!(text.contains("2027-03-10: missed"), "{text}");
    // The compliance report counts each closed cycle whose last day falls in the period: the
    // first met, the second missed; the third's day (2027-09-08) is after the period.
    let out = fristvakt(
        Some(&path),
        &[
            "report",
            "compliance",
            "--from",
            "2026-08-01",
            "--to",
            "2027-04-02",
            "--today",
            "2027-04-02",
            "--by",
            "kind",
            "--format",
            "json",
            "--no-suppress",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let groups: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let review = groups.iter().find(|g| g["kind"] == "placement_review").expect("a placement_review group");
    assert_eq!(
        (review["total"].as_u64(), review["met"].as_u64(), review["missed"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    // `--fresh` (the register computed now) lists the stored cycles too: what was stored.
    let out = fristvakt(Some(&path), &["deadlines", "--format", "json", "--today", "2027-04-02", "--fresh"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let fresh: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(fresh, listed);
}

both_engines!(current_thread: reviews_recorded_one_at_a_time);

both_engines!(current_thread: placements_give_the_contract_clocks);

/// Issue 27 (5): each placement's print covers its row, the case facts its clocks read and the
/// settings. A steady full pass computes and writes no placement; a changed case fact (the
/// investigation of the case a placement names closing, an investigation opened in the child's
/// case) still reaches the placements that read it, at the next poll and at the next full pass,
/// and only them; other settings (as a new `rules::REVISION` would) compute every placement again.
async fn a_steady_pass_skips_unchanged_placements(postgres_state: Option<String>) {
    let (test, app) = started_with_first_rows(postgres_state).await;
    // Eight rows: six valid placements, two broken.
    let first = full_pass(&app, at(8, 0)).await;
    assert_eq!((first.placement_rows_read, first.placements_unchanged), (8, 0), "{first:?}");
    let stored = placement_lines(&app).await;
    assert_eq!(stored.len(), 10, "{stored:#?}");

    let steady = full_pass(&app, at(8, 30)).await;
    assert_eq!((steady.placement_rows_read, steady.placements_unchanged), (8, 6), "{steady:?}");
    assert_eq!((steady.deadlines_stored, steady.withdrawn), (0, 0), "nothing computed or written: {steady:?}");
    assert_eq!(placement_lines(&app).await, stored);

    // A case's row changes in a column no placement reads (its caseworker): its three
    // placements are read again, and skipped.
    exec(test.register_url(), &["UPDATE cases SET caseworker = 'ny@kommun.example', updated_at = '2026-11-27T09:00:00Z' WHERE case_ref = '2026-BU-0002'".to_string()]).await;
    let poll_one = poll(&app, at(9, 30)).await;
    assert_eq!((poll_one.placement_rows_read, poll_one.placements_unchanged), (3, 3), "{poll_one:?}");
    assert_eq!(poll_one.deadlines_stored, 1, "the case's own deadline only: {poll_one:?}");

    // The case's investigation closes: its three placements are read again, and the jourhem's
    // two months start at the next poll; the other two do not read the case's close
    // (`ContextNeeds`) and are skipped.
    exec(test.register_url(), &["UPDATE cases SET investigation_closed_on = '2026-11-13', updated_at = '2026-11-27T10:00:00Z' WHERE case_ref = '2026-BU-0002'".to_string()]).await;
    let closed = poll(&app, at(10, 30)).await;
    assert_eq!((closed.placement_rows_read, closed.placements_unchanged), (3, 2), "{closed:?}");
    assert_placement_lines(&app, &[JOURHEM_LIMIT]).await;

    // An investigation opened in the child's new case, seen by a full pass alone: the ended HVB
    // placement's follow-up ends; the other placements are skipped.
    exec(test.register_url(), &[case("2026-BU-0009", Some(KEY), "2026-11-20", None, "2026-11-27T11:00:00Z")]).await;
    let pass = full_pass(&app, at(11, 30)).await;
    assert_eq!((pass.placement_rows_read, pass.placements_unchanged), (8, 5), "{pass:?}");
    assert_placement_lines(&app, &[FOLLOW_UP_MET, JOURHEM_LIMIT]).await;
    app.close_connections().await;

    // Other settings shape every deadline: every placement is computed again.
    let other = format!("{UNITS}[calendar]\nholiday_rule = false\n");
    let settings = config::load_with_env(Some(&test.config(&other)), Vec::new()).unwrap();
    let app = test.start(settings, at(12, 0)).await;
    let again = full_pass(&app, at(12, 0)).await;
    assert_eq!((again.placement_rows_read, again.placements_unchanged), (8, 0), "{again:?}");
    // Without the holiday rule the custody's week ends on the Saturday.
    let lines = placement_lines(&app).await;
    assert!(
        lines.iter().any(|l| l.starts_with("2026-PL-0001 lvu_court_submission 2026-11-21 → 2026-11-28 / 2026-11-28")),
        "{lines:#?}"
    );
    let steady = full_pass(&app, at(12, 30)).await;
    assert_eq!((steady.placements_unchanged, steady.deadlines_stored), (6, 0), "{steady:?}");
    app.close_connections().await;
}

both_engines!(a_steady_pass_skips_unchanged_placements);

/// A placements row stamped anew with nothing else changed (a touch, a batch job) is new to the
/// next poll: it is computed from its stored rows, read beside the register, without a look at
/// its print, and nothing stored changes: no deadline written, no notice.
async fn a_placement_stamped_anew_is_computed_and_writes_nothing(postgres_state: Option<String>) {
    let (test, app) = started_with_first_rows(postgres_state).await;
    full_pass(&app, at(8, 0)).await;
    jobs::ladder::run_once(&app, Moment::on(date(TODAY), at(8, 10))).await.unwrap().expect("the ladder's lease");
    let stored = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    let notices = || async {
        let rows = app.state.outbox().await.unwrap();
        rows.iter().map(|r| format!("{} {}", r.notice_key, r.state.as_str())).collect::<Vec<_>>()
    };
    let outbox = notices().await;
    assert!(!outbox.is_empty(), "the ladder wrote notices to keep");

    exec(test.register_url(), &["UPDATE placements SET updated_at = '2026-11-27T09:00:00Z'".to_string()]).await;
    let touched = poll(&app, at(9, 30)).await;
    assert_eq!(touched.placement_rows_read, 8, "{touched:?}");
    assert_eq!(touched.placements_unchanged, 0, "the six valid rows computed, not skipped by print: {touched:?}");
    assert_eq!(touched.notices_cancelled, 0, "{touched:?}");
    assert_eq!(app.state.deadlines(&DeadlineFilter::default()).await.unwrap(), stored);
    assert_eq!(notices().await, outbox);

    // Their prints were logged with them: a full pass skips all six.
    let again = full_pass(&app, at(10, 0)).await;
    assert_eq!((again.placement_rows_read, again.placements_unchanged), (8, 6), "{again:?}");
    assert_eq!(again.deadlines_stored, 0, "{again:?}");
    app.close_connections().await;
}

both_engines!(a_placement_stamped_anew_is_computed_and_writes_nothing);

/// A process keeps, from one poll to its next, which cases' and children's facts the placements'
/// clocks read (`sync::FactReaders`): a changed case that no placement reads is computed without
/// a look at the placements view; once another process finished a poll in between (it may have
/// stored a placement this process never read), every changed case's placements are looked up.
async fn a_changed_case_looks_up_only_the_placements_that_may_read_it(postgres_state: Option<String>) {
    let (test, app) = started_with_first_rows(postgres_state).await;
    let register = test.register_url().to_string();
    // A case of its own, with a custody whose clocks read no case fact.
    exec(
        &register,
        &[
            case("2026-BU-0003", None, "2026-10-01", None, "2026-11-20T08:00:00Z"),
            placement(&[
                ("placement_ref", "2026-PL-0010"),
                ("case_ref", "2026-BU-0003"),
                ("basis", "lvu_6"),
                ("decided_on", "2026-11-21"),
                ("updated_at", "2026-11-21T09:00:00Z"),
            ]),
        ],
    )
    .await;
    full_pass(&app, at(8, 0)).await;

    exec(&register, &["UPDATE cases SET caseworker = 'ny@kommun.example', updated_at = '2026-11-27T08:30:00Z' WHERE case_ref = '2026-BU-0003'".to_string()]).await;
    let quiet = poll(&app, at(9, 0)).await;
    assert_eq!(quiet.deadlines_stored, 1, "the case's own deadline: {quiet:?}");
    assert_eq!(quiet.placement_rows_read, 0, "no placement looked up: {quiet:?}");

    // A poll that fails (the placements view gone for a moment) puts the readers back as of
    // where it began: the next poll of a change of the case still looks up none.
    exec(&register, &["DROP VIEW fristvakt_placements".to_string()]).await;
    exec(&register, &["UPDATE cases SET caseworker = 'tva@kommun.example', updated_at = '2026-11-27T09:01:00Z' WHERE case_ref = '2026-BU-0003'".to_string()]).await;
    let failed = jobs::poll::run_once(&app, Moment::on(date(TODAY), at(9, 2))).await;
    assert!(failed.is_err(), "the placements view is gone: {failed:?}");
    exec(&register, &["CREATE VIEW fristvakt_placements AS SELECT * FROM placements".to_string()]).await;
    exec(&register, &["UPDATE cases SET caseworker = 'tre@kommun.example', updated_at = '2026-11-27T09:03:00Z' WHERE case_ref = '2026-BU-0003'".to_string()]).await;
    let after = poll(&app, at(9, 4)).await;
    assert_eq!(after.deadlines_stored, 1, "the case's own deadline: {after:?}");
    assert_eq!(after.placement_rows_read, 0, "still no placement looked up: {after:?}");

    // A new case with a jourhem, read by this process's poll; once the jourhem's row is older
    // than the overlap, its case's close finds it by the readers alone.
    let jourhem = |placement_ref: &str, case_ref: &str, updated_at: &str| {
        placement(&[
            ("placement_ref", placement_ref),
            ("case_ref", case_ref),
            ("basis", "sol"),
            ("home", "emergency_home"),
            ("decided_on", "2026-11-02"),
            ("executed_on", "2026-11-02"),
            ("updated_at", updated_at),
        ])
    };
    exec(
        &register,
        &[
            case("2026-BU-0005", None, "2026-10-01", None, "2026-11-27T09:05:00Z"),
            jourhem("2026-PL-0012", "2026-BU-0005", "2026-11-27T09:05:00Z"),
        ],
    )
    .await;
    assert_eq!(poll(&app, at(9, 10)).await.placement_rows_read, 1);
    // The next poll reads it again within the overlap; the one after reads from 9:20.
    poll(&app, at(9, 30)).await;
    exec(&register, &["UPDATE cases SET investigation_closed_on = '2026-11-13', updated_at = '2026-11-27T09:35:00Z' WHERE case_ref = '2026-BU-0005'".to_string()]).await;
    let found = poll(&app, at(9, 50)).await;
    assert_eq!(found.placement_rows_read, 1, "{found:?}");
    let limit = "2026-PL-0012 emergency_home_limit 2026-11-13 → 2027-01-13 / 2027-01-13 open pending";
    assert_placement_lines(&app, &[limit]).await;

    // Another process (a replica) reads a new jourhem placement of the first case and stores it.
    exec(&register, &[jourhem("2026-PL-0011", "2026-BU-0003", "2026-11-27T10:10:00Z")]).await;
    let settings = config::load_with_env(Some(&test.config(UNITS)), Vec::new()).unwrap();
    let other = test.start(settings, at(10, 30)).await;
    let there = poll(&other, at(10, 30)).await;
    assert_eq!(there.placement_rows_read, 1, "{there:?}");
    other.close_connections().await;

    // The case's investigation closes. This process never read the new placement, whose row is
    // older than the watermark the other poll left; it looks the case's placements up.
    exec(&register, &["UPDATE cases SET investigation_closed_on = '2026-11-13', updated_at = '2026-11-27T10:40:00Z' WHERE case_ref = '2026-BU-0003'".to_string()]).await;
    let closed = poll(&app, at(11, 0)).await;
    assert_eq!((closed.placement_rows_read, closed.placements_unchanged), (2, 1), "{closed:?}");
    let limit = "2026-PL-0011 emergency_home_limit 2026-11-13 → 2027-01-13 / 2027-01-13 open pending";
    assert_placement_lines(&app, &[limit]).await;

    // After this process's own full pass it knows the new placement again: the close moves,
    // and the jourhem's limit with it.
    full_pass(&app, at(12, 0)).await;
    exec(&register, &["UPDATE cases SET investigation_closed_on = '2026-11-12', updated_at = '2026-11-27T12:10:00Z' WHERE case_ref = '2026-BU-0003'".to_string()]).await;
    let moved = poll(&app, at(13, 0)).await;
    assert_eq!((moved.placement_rows_read, moved.placements_unchanged), (2, 1), "{moved:?}");
    let limit = "2026-PL-0011 emergency_home_limit 2026-11-12 → 2027-01-12 / 2027-01-12 open pending";
    assert_placement_lines(&app, &[limit]).await;
    app.close_connections().await;
}

both_engines!(a_changed_case_looks_up_only_the_placements_that_may_read_it);

/// A case moved to another child (a register's correction of `child_key`) takes its
/// investigation from the child it left: that child's follow-up, which the investigation ended,
/// runs again at the next poll, not at the next full pass.
async fn a_case_moved_to_another_child_reopens_the_follow_up_it_ended(postgres_state: Option<String>) {
    let (test, app) = started_with_first_rows(postgres_state).await;
    full_pass(&app, at(8, 0)).await;
    exec(test.register_url(), &[case("2026-BU-0009", Some(KEY), "2026-11-20", None, "2026-11-27T08:30:00Z")]).await;
    poll(&app, at(9, 0)).await;
    assert_placement_lines(&app, &[FOLLOW_UP_MET]).await;

    exec(test.register_url(), &["UPDATE cases SET child_key = '5e0c4b71d9f2aa', updated_at = '2026-11-27T09:30:00Z' WHERE case_ref = '2026-BU-0009'".to_string()]).await;
    let moved = poll(&app, at(10, 0)).await;
    assert!(moved.placement_rows_read >= 1, "{moved:?}");
    let open = "2026-PL-0005 placement_follow_up 2026-08-31 → 2027-02-28 / 2027-03-01 open pending";
    assert_placement_lines(&app, &[open]).await;
    app.close_connections().await;
}

both_engines!(a_case_moved_to_another_child_reopens_the_follow_up_it_ended);

/// Issue 27 (4): the digest shows a placement's running review cycles, not its closed ones. A
/// placement's review and its restriction's review each have a closed cycle and a running one
/// (the placement's due in five days, the restriction's overdue); `digest --dry-run` and the
/// digest job's mail list the two running cycles, by their last days, and no closed one.
async fn the_digest_shows_the_running_cycles(postgres_state: Option<String>) {
    const REF: &str = "2026-PL-0300";
    let test = TestApp::new(postgres_state).await;
    exec(test.register_url(), &schema(test.register_engine())).await;
    exec(
        test.register_url(),
        &[placement(&[
            ("placement_ref", REF),
            ("basis", "sol"),
            ("home", "hvb"),
            ("decided_on", "2026-03-02"),
            ("executed_on", "2026-03-02"),
            ("restriction_decided_on", "2026-06-01"),
            ("updated_at", "2026-06-01T09:00:00Z"),
        ])],
    )
    .await;
    let cfg = test.config(UNITS);
    let settings = config::load_with_env(Some(&cfg), Vec::new()).unwrap();
    let timezone = settings.timezone;
    let app = test.start(settings, Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()).await;
    let poll_at = |day: &str, now: DateTime<Utc>| jobs::poll::run_once(&app, Moment::on(date(day), now));
    poll_at("2026-06-01", Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()).await.unwrap().expect("the poll lease");
    // The placement reviewed in time, the restriction a week late: each cycle closes, the next runs.
    exec(
        test.register_url(),
        &[format!(
            "UPDATE placements SET last_reviewed_on = '2026-08-31', restriction_last_reviewed_on = '2026-09-07', \
             updated_at = '2026-09-07T09:00:00Z' WHERE placement_ref = '{REF}'"
        )],
    )
    .await;
    poll_at("2026-09-07", Utc.with_ymd_and_hms(2026, 9, 7, 12, 0, 0).unwrap()).await.unwrap().expect("the poll lease");
    let cycles = stored_lines(&app, |d| {
        let x = &d.deadline;
        Some(format!("{} {} → {} {}", x.kind, x.start_on, x.due_on, closed_or_open(x)))
    })
    .await;
    assert_eq!(
        cycles,
        [
            "placement_review 2026-03-02 → 2026-09-02 closed 2026-08-31",
            // 2027-02-28 is a Sunday.
            "placement_review 2026-08-31 → 2027-03-01 open",
            "restriction_review 2026-06-01 → 2026-09-01 closed 2026-09-07",
            "restriction_review 2026-09-07 → 2026-12-07 open",
        ]
    );

    // Wednesday 2027-02-24: the placement's review is due in five days, the restriction's overdue.
    let out = test.run(&cfg, &["digest", "--dry-run", "--today", "2027-02-24"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mail_now = Utc.with_ymd_and_hms(2027, 2, 24, 9, 0, 0).unwrap();
    let report = jobs::digest::run_once(&app, Moment::at(mail_now, timezone)).await.unwrap();
    assert_eq!(report.map(|r| r.enqueued), Some(1));
    jobs::dispatch::run_once(&app, Moment::at(mail_now, timezone)).await.unwrap();
    app.close().await;
    let mails: Vec<String> =
        test.mail_texts().into_iter().filter(|(name, _)| name.starts_with("digest-")).map(|(_, text)| text).collect();
    assert_eq!(mails.len(), 1, "one digest mail: {:?}", test.eml_files().iter().map(|(n, _)| n).collect::<Vec<_>>());
    for digest in [stdout(&out), mails[0].clone()] {
        let rows: Vec<&str> = digest.lines().filter(|l| l.contains(REF)).collect();
        assert_eq!(rows.len(), 2, "one row a running cycle: {digest}");
        assert!(rows.iter().any(|r| r.contains("2027-03-01")), "the placement's running review: {digest}");
        assert!(rows.iter().any(|r| r.contains("2026-12-07")), "the restriction's running review: {digest}");
        for closed in ["2026-09-01", "2026-09-02"] {
            assert!(!digest.contains(closed), "a closed cycle ({closed}) in the digest: {digest}");
        }
    }
}

both_engines!(the_digest_shows_the_running_cycles);

/// The show commands and the mail: `deadlines` lists a placement's clocks under its reference,
/// `explain` words them, `check-config` says the view is there, a notice says what a miss means
/// and links by `mail.placement_link`.
#[tokio::test]
async fn placements_in_every_output() {
    let test = TestApp::new(None).await;
    let url = test.register_url().to_string();
    exec(&url, &schema(Engine::Sqlite)).await;
    exec(&url, &first_rows()).await;
    let cfg = test.config(
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
    let mails: Vec<String> = std::fs::read_dir(test.outbox_dir())
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
    let test = TestApp::new(None).await;
    let url = test.register_url().to_string();
    let without: Vec<String> = schema(Engine::Sqlite).into_iter().take(2).collect();
    exec(&url, &without).await;
    exec(&url, &first_rows()[..2]).await;
    let cfg = test.config("");
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

/// Issue 27 (5): a full pass gathers its placements' case facts from its own scan of the cases
/// view instead of looking them up. A case fact changed between two full passes (the case's
/// investigation closing, an investigation opened in the child's case, both without a newer
/// `updated_at`, so that only a full pass sees them) still computes the placements that read
/// it again, and only them; a cases row the cases pass rejects still makes a placement with its
/// reference a `ref_collision`, as the lookups did.
async fn a_full_pass_reads_the_case_facts_from_its_scan(postgres_state: Option<String>) {
    let (test, app) = started_with_first_rows(postgres_state).await;
    let first = full_pass(&app, at(8, 0)).await;
    assert_eq!((first.placement_rows_read, first.placements_unchanged), (8, 0), "{first:?}");
    assert_eq!(first.placement_rejected.get(&RejectReason::RefCollision), Some(&1), "{first:?}");
    let stored = placement_lines(&app).await;

    // The case's investigation closes (its row's `updated_at` unchanged): of its three
    // placements only the jourhem reads it (`ContextNeeds`), is computed again, and its two
    // months start; the other two keep their prints.
    exec(
        test.register_url(),
        &["UPDATE cases SET investigation_closed_on = '2026-11-13' WHERE case_ref = '2026-BU-0002'".to_string()],
    )
    .await;
    let closed = full_pass(&app, at(8, 30)).await;
    assert_eq!((closed.placement_rows_read, closed.placements_unchanged), (8, 5), "{closed:?}");
    let lines = assert_placement_lines(&app, &[JOURHEM_LIMIT]).await;
    assert_ne!(lines, stored);

    // An investigation opened in the child's new case, its row stamped long ago: the ended HVB
    // placement's follow-up ends; the other placements are skipped.
    exec(test.register_url(), &[case("2026-BU-0009", Some(KEY), "2026-11-20", None, "2026-01-01T08:00:00Z")]).await;
    let opened = full_pass(&app, at(9, 0)).await;
    assert_eq!((opened.placement_rows_read, opened.placements_unchanged), (8, 5), "{opened:?}");
    let lines = assert_placement_lines(&app, &[FOLLOW_UP_MET, JOURHEM_LIMIT]).await;

    // A cases row the cases pass rejects (no unit) with a placement's reference: the placement is
    // a `ref_collision`, and keeps its last deadlines.
    exec(test.register_url(), &["INSERT INTO cases (case_ref, unit, investigation_opened_on, updated_at) VALUES ('2026-PL-0006', '', '2026-11-01', '2026-01-01T08:00:00Z')".to_string()]).await;
    let collided = full_pass(&app, at(9, 30)).await;
    assert_eq!(collided.rows_rejected(), 1, "{collided:?}");
    assert_eq!(collided.placement_rejected.get(&RejectReason::RefCollision), Some(&2), "{collided:?}");
    assert_eq!((collided.placements_unchanged, collided.deadlines_stored), (5, 0), "{collided:?}");
    assert_eq!(placement_lines(&app).await, lines);
    app.close_connections().await;
}

both_engines!(a_full_pass_reads_the_case_facts_from_its_scan);

/// Issue 27 (5): a poll reads the placements view (on PostgreSQL by COPY, whose text escapes a
/// tab, a newline and a backslash) and gives each row as the SELECT of one placement gives it,
/// so that a row's print is the same whichever read it: escapes undone, a quote kept, NULL told
/// from empty text, the instant in one form; every row and the rows changed since an instant.
/// And a full pass asks its cases' scan for every valid row's references and child key in the
/// form the validated row gives them (trimmed), read from the view's three columns alone.
async fn a_poll_reads_placements_as_the_select_does(postgres_register: Option<String>) {
    use fristvakt::register::{validate_placement, RawPlacement, Register};
    use futures_util::TryStreamExt;

    let test = TestApp::with_sqlite_state(postgres_register);
    let (engine, url) = (test.register_engine(), test.register_url().to_string());
    exec(&url, &schema(engine)).await;
    let odd = "a\tb\\c\nd''e\\N";
    exec(
        &url,
        &[
            format!(
                "INSERT INTO placements (placement_ref, case_ref, unit, caseworker, child_key, child_sex, basis, decided_on, updated_at) \
                 VALUES ('2026-PL-\\1', ' 2026-BU-\\0002 ', 'BRO-BU', '{odd}', ' key\\1 ', '', 'lvu_6', '2026-11-21', '2026-11-21T09:00:00Z')"
            ),
            placement(&[
                ("placement_ref", "2026-PL-0002"),
                ("child_key", KEY),
                ("basis", "sol"),
                ("decided_on", "2026-06-01"),
                ("updated_at", "2026-06-01T09:00:00Z"),
            ]),
        ],
    )
    .await;
    let register = Register::connect(&config::DatabaseUrl::parse(&url).unwrap(), "fristvakt_cases")
        .await
        .unwrap()
        .with_placements("fristvakt_placements")
        .await
        .unwrap();
    let register = &register;
    let read = |since| async move {
        let chunks: Vec<Vec<RawPlacement>> = register.placements_since(since).try_collect().await.unwrap();
        let mut rows = chunks.concat();
        rows.sort_by(|a, b| a.0[0].cmp(&b.0[0]));
        rows
    };
    let all = read(None).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].0[0].as_deref(), Some("2026-PL-0002"));
    let odd_row = &all[1];
    assert_eq!(odd_row.0[0].as_deref(), Some("2026-PL-\\1"));
    assert_eq!(odd_row.0[3].as_deref(), Some("a\tb\\c\nd'e\\N"), "the caseworker as written");
    assert_eq!((odd_row.0[5].as_deref(), odd_row.0[7].as_deref()), (Some(""), None), "empty text, NULL");
    for raw in &all {
        let one = register.placement(raw.0[0].as_deref().unwrap()).await.unwrap();
        assert_eq!(one.as_ref(), Some(raw), "the SELECT of one placement");
    }
    let since = read(Some(Utc.with_ymd_and_hms(2026, 11, 10, 0, 0, 0).unwrap())).await;
    assert_eq!(since, all[1..]);

    let wanted = register.wanted_facts().await.unwrap();
    for raw in &all {
        let row = validate_placement(raw, 65536).unwrap();
        let refs: Vec<String> =
            std::iter::once(row.placement_ref.to_string()).chain(row.case_ref.map(|c| c.to_string())).collect();
        let keys: Vec<String> = row.child_key.iter().map(|k| k.as_str().to_string()).collect();
        assert_eq!((refs.len(), keys.len()), (1 + usize::from(raw.0[1].is_some()), 1));
        // Asked for: the scan records their facts, so no lookup follows.
        for r in &refs {
            assert!(wanted.closed_of(r).is_some(), "{r} not asked of the scan");
        }
        for k in &keys {
            assert!(wanted.opened_of(k).is_some(), "a child key not asked of the scan");
        }
    }
    assert_eq!(wanted.closed_of("2026-BU-0009"), None, "a reference no placement names is left to the lookups");
    register.close().await;
}

both_engines!(current_thread: a_poll_reads_placements_as_the_select_does);
