//! Every clock through every output (issue "The law as one table"): for each kind a deadline
//! that `explain`, the notice mail (Swedish and English), the digest, the compliance report
//! (table, CSV, JSON, HTML) and the metrics show. Nothing panics, and each output names that
//! kind's own rule and paragraph, never another kind's.

use std::path::Path;

use fristvakt::catalogue::Catalogue;
use fristvakt::config::Language;
use fristvakt::rules::Kind;
use mail_parser::MessageParser;
use sqlx::sqlite::SqlitePoolOptions;

use crate::helpers::{fristvakt, stderr, stdout};
use crate::support::app::TestApp;
use crate::support::promtool;

/// The day the notices are due: every sample's step fires on it.
const TODAY: &str = "2026-03-20";

/// One case per kind, each with a notice due on [`TODAY`] (the latest reached step).
const CASES: [(Kind, &str, &str); 5] = [
    // Received the day before: protection due today (step 0).
    (Kind::Protection, "2026-BU-0001", "received_on = '2026-03-19'"),
    // Received 6 March: nominal and legal last day today (step 0).
    (Kind::Assessment, "2026-BU-0002", "received_on = '2026-03-06', protection_assessed_on = '2026-03-06'"),
    // Opened 20 November: last day today (−3 reached on the 17th).
    (Kind::Investigation, "2026-BU-0003", "investigation_opened_on = '2025-11-20'"),
    // Closed 20 September: six months to today (−14 reached on the 6th).
    (
        Kind::FollowUp,
        "2026-BU-0004",
        "investigation_opened_on = '2025-05-01', investigation_closed_on = '2025-09-20', \
         follow_up_decided_on = '2025-09-20'",
    ),
    // Decided 13 March, asked before: a week to today (−2 reached on the 18th).
    (
        Kind::ReporterInformation,
        "2026-BU-0005",
        "received_on = '2026-03-02', protection_assessed_on = '2026-03-02', assessment_decided_on = '2026-03-13', \
         reporter_info_requested_on = '2026-03-03'",
    ),
];

/// One placement per placement kind, each with a notice due on [`TODAY`]: (kind, reference,
/// columns and values).
const PLACEMENTS: [(Kind, &str, &str); 8] = [
    // Decided Friday 13 March: a week to today (step 0).
    (Kind::LvuCourtSubmission, "2026-PL-0001", "basis = 'lvu_6', decided_on = '2026-03-13'"),
    // Executed 20 February, submitted the next day: four weeks to today (−1 reached on the 19th).
    (
        Kind::LvuCareApplication,
        "2026-PL-0002",
        "basis = 'lvu_6', decided_on = '2026-02-20', executed_on = '2026-02-20', submitted_to_court_on = '2026-02-21'",
    ),
    // In force 20 February: four weeks to today (−2 reached on the 18th).
    (Kind::LvuCareStart, "2026-PL-0003", "basis = 'lvu_3', decided_on = '2026-01-30', legal_force_on = '2026-02-20'"),
    // The jourhem's investigation (2026-BU-0006) closed 20 January: two months to today.
    (
        Kind::EmergencyHomeLimit,
        "2026-PL-0004",
        "basis = 'sol', home = 'emergency_home', case_ref = '2026-BU-0006', decided_on = '2025-12-15', executed_on = '2025-12-15'",
    ),
    // LVU care ended 20 September: the compulsory follow-up's six months to today.
    (Kind::PlacementFollowUp, "2026-PL-0005", "basis = 'lvu_2', decided_on = '2025-03-03', ended_on = '2025-09-20'"),
    // Executed 2025-09-25 → 2026-03-25: the −7 step on 2026-03-18.
    (
        Kind::PlacementReview,
        "2026-PL-0006",
        "basis = 'sol', home = 'hvb', decided_on = '2025-09-25', executed_on = '2025-09-25'",
    ),
    // The care reviewed lately; the restriction decided 2025-12-26 → 2026-03-26: its −14 step on
    // 2026-03-12.
    (
        Kind::RestrictionReview,
        "2026-PL-0007",
        "basis = 'lvu_2', home = 'hvb', decided_on = '2025-12-26', executed_on = '2025-12-26', \
         last_reviewed_on = '2026-03-01', restriction_decided_on = '2025-12-26'",
    ),
    // In the family home since 2024-03-25 → 2026-03-25: the −30 step on 2026-02-23.
    (
        Kind::CustodyTransferReview,
        "2026-PL-0008",
        "basis = 'lvu_2', home = 'family_home', decided_on = '2024-03-25', executed_on = '2024-03-25', \
         home_since = '2024-03-25', last_reviewed_on = '2026-03-01'",
    ),
];

async fn register(ws: &TestApp) {
    let url = format!("{}?mode=rwc", ws.sqlite_url("register.db"));
    let pool = SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE fristvakt_cases (case_ref TEXT, unit TEXT, caseworker TEXT, child_sex TEXT, received_on TEXT, \
         protection_assessed_on TEXT, assessment_decided_on TEXT, assessment_extended_to TEXT, \
         investigation_opened_on TEXT, investigation_extended_to TEXT, investigation_closed_on TEXT, \
         updated_at TEXT, child_key TEXT, follow_up_decided_on TEXT, follow_up_ended_on TEXT, \
         reporter_info_requested_on TEXT, reporter_informed_on TEXT)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (_, case_ref, _) in CASES {
        sqlx::query(
            "INSERT INTO fristvakt_cases (case_ref, unit, caseworker, child_sex, updated_at) \
             VALUES ($1, 'BRO-BU', 'anna@kommun.example', 'F', '2026-03-01T08:00:00Z')",
        )
        .bind(case_ref)
        .execute(&pool)
        .await
        .unwrap();
    }
    for (_, case_ref, set) in CASES {
        sqlx::query(&format!("UPDATE fristvakt_cases SET {set} WHERE case_ref = $1"))
            .bind(case_ref)
            .execute(&pool)
            .await
            .unwrap();
    }
    // The case of the jourhem: its investigation closed in time, so no notice of its own.
    sqlx::query(
        "INSERT INTO fristvakt_cases (case_ref, unit, caseworker, child_sex, investigation_opened_on, \
         investigation_closed_on, updated_at) VALUES ('2026-BU-0006', 'BRO-BU', 'anna@kommun.example', 'F', \
         '2025-12-01', '2026-01-20', '2026-01-20T08:00:00Z')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let columns: Vec<&str> =
        fristvakt::register::placements::PLACEMENT_COLUMNS.iter().copied().filter(|c| !c.is_empty()).collect();
    sqlx::query(&format!("CREATE TABLE fristvakt_placements ({} TEXT)", columns.join(" TEXT, ")))
        .execute(&pool)
        .await
        .unwrap();
    for (_, placement_ref, set) in PLACEMENTS {
        sqlx::query(
            "INSERT INTO fristvakt_placements (placement_ref, unit, caseworker, child_sex, basis, decided_on, updated_at) \
             VALUES ($1, 'BRO-BU', 'anna@kommun.example', 'F', 'sol', '2026-01-01', '2026-03-01T08:00:00Z')",
        )
        .bind(placement_ref)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(&format!("UPDATE fristvakt_placements SET {set} WHERE placement_ref = $1"))
            .bind(placement_ref)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

/// Checks that `text` (about `kind` only) names `kind`'s rule and paragraph and no other kind's.
fn names_only_its_own_rule(text: &str, kind: Kind, language: Language, what: &str) {
    let words = Catalogue::of(language);
    assert!(text.contains(&words.clock(kind).rule), "{what}: {kind}'s rule missing in\n{text}");
    assert!(text.contains(kind.clock().citation.split(',').next().unwrap()), "{what}: {kind}'s paragraph");
    for other in Kind::ALL.into_iter().filter(|k| *k != kind) {
        assert!(!text.contains(&words.clock(other).rule), "{what}: {other}'s rule in {kind}'s\n{text}");
    }
}

fn run(cfg: &Path, args: &[&str]) -> String {
    let out = fristvakt(Some(cfg), args, &[]);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_through_every_output() {
    for language in [Language::Swedish, Language::English] {
        let ws = TestApp::sqlite();
        register(&ws).await;
        let cfg = ws.config(&format!(
            "language = \"{}\"\n[units.\"BRO-BU\"]\nteam_leads = [\"gl.bromma@kommun.example\"]\nmanagers = [\"ec.bromma@kommun.example\"]\n",
            language.code()
        ));
        let lang = language.code();

        // explain: each kind's section names its own rule.
        for (kind, case_ref, _) in CASES.into_iter().chain(PLACEMENTS) {
            let text = run(&cfg, &["explain", case_ref, "--today", TODAY]);
            let name = &Catalogue::of(language).clock(kind).name;
            let heading = format!("{name} ({}, {})", kind.as_str(), kind.clock().citation);
            let section: String =
                text.lines().skip_while(|l| *l != heading).take_while(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
            assert!(!section.is_empty(), "{lang} explain {case_ref}: no {heading:?} in\n{text}");
            names_only_its_own_rule(&section, kind, language, &format!("{lang} explain"));
        }

        // One poll sends each case's notice; each mail names its own rule.
        run(&cfg, &["poll", "--once", "--today", TODAY]);
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(ws.path("outbox")).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let message = MessageParser::default().parse(&bytes).unwrap();
            let text = message.body_text(0).unwrap().into_owned();
            let html = message.body_html(0).unwrap().into_owned();
            let (kind, case_ref, _) =
                CASES.iter().chain(&PLACEMENTS).find(|(_, c, _)| text.contains(c)).expect("a notice of a sample case");
            names_only_its_own_rule(&text, *kind, language, &format!("{lang} notice {case_ref}"));
            assert!(html.contains(kind.clock().citation.split(',').next().unwrap()), "{lang} html {case_ref}");
            seen.push(*kind);
        }
        seen.sort();
        assert_eq!(seen, Kind::ALL, "{lang}: one notice per kind");

        // The digest lists every kind under its own name.
        let digest = run(&cfg, &["digest", "--dry-run", "--today", TODAY]);
        for (kind, case_ref, _) in CASES.into_iter().chain(PLACEMENTS) {
            let name = &Catalogue::of(language).clock(kind).name;
            assert!(digest.contains(case_ref), "{lang} digest {case_ref}:\n{digest}");
            assert!(digest.contains(name.as_str()), "{lang} digest {kind}:\n{digest}");
        }

        // The report, once every sample is past its day, in every format.
        let report = |format: &str| {
            run(
                &cfg,
                &[
                    "report",
                    "compliance",
                    "--from",
                    "2026-01-01",
                    "--to",
                    "2026-12-31",
                    "--today",
                    "2026-04-30",
                    "--by",
                    "unit,kind",
                    "--no-suppress",
                    "--format",
                    format,
                ],
            )
        };
        let (table, csv, json, html) = (report("table"), report("csv"), report("json"), report("html"));
        for kind in Kind::ALL {
            let name = &Catalogue::of(language).clock(kind).name;
            assert!(table.contains(name.as_str()), "{lang} table {kind}:\n{table}");
            assert!(html.contains(name.as_str()), "{lang} html {kind}");
            assert!(html.contains(kind.clock().colour), "{lang} html colour of {kind}");
            assert!(csv.contains(kind.as_str()) || csv.contains(name.as_str()), "{lang} csv {kind}:\n{csv}");
            assert!(json.contains(&format!("\"{}\"", kind.as_str())), "{lang} json {kind}:\n{json}");
        }
    }
}

/// The metrics take every kind as a label, and promtool accepts them.
#[test]
fn every_kind_is_a_metric_label() {
    let metrics = fristvakt::metrics::Metrics::new();
    for kind in Kind::ALL {
        metrics.add_notice(kind, "+1".into(), fristvakt::metrics::Outcome::Sent, 1);
    }
    let text = metrics.render();
    for kind in Kind::ALL {
        assert!(text.contains(&format!("kind=\"{}\"", kind.as_str())), "{kind}:\n{text}");
    }
    promtool::check_metrics(&text);
}
