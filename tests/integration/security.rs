//! What fristvakt must never do with the data it handles: print a database password, let a
//! register value forge or flood a log line or a metric label, or write to the register.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use fristvakt::app::{App, Moment};
use fristvakt::config::DatabaseUrl;
use fristvakt::jobs;
use fristvakt::register::{RawRow, Register};
use futures_util::TryStreamExt;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::Row;

use crate::helpers::{date, demo_cases, fristvakt, postgres_register, stderr, stdout};
use crate::support::app::TestApp;
use crate::support::postgres;

const TODAY: &str = "2026-11-25";

/// A loopback port where nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn sqlite_exec(url: &str, sql: &str) {
    let pool = SqlitePoolOptions::new().max_connections(1).connect(url).await.unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

/// Creates the register view's table in the workspace's SQLite register and adds `rows`
/// (case_ref, unit, caseworker), each received on 2026-11-20.
async fn sqlite_register(ws: &TestApp, rows: &[(String, String, Option<String>)]) {
    let url = format!("{}?mode=rwc", ws.sqlite_url("register.db"));
    sqlite_exec(
        &url,
        "CREATE TABLE fristvakt_cases (case_ref TEXT, unit TEXT, caseworker TEXT, child_sex TEXT, received_on TEXT, \
         protection_assessed_on TEXT, assessment_decided_on TEXT, assessment_extended_to TEXT, \
         investigation_opened_on TEXT, investigation_extended_to TEXT, investigation_closed_on TEXT, updated_at TEXT)",
    )
    .await;
    let pool = SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    for (case_ref, unit, caseworker) in rows {
        sqlx::query(
            "INSERT INTO fristvakt_cases (case_ref, unit, caseworker, received_on, updated_at) \
             VALUES ($1, $2, $3, '2026-11-20', '2026-11-20T09:00:00Z')",
        )
        .bind(case_ref)
        .bind(unit)
        .bind(caseworker)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
}

/// Item 11: a password in the register or state URL — in the user information, as
/// `?password=` or as `?sslpassword=` — appears in no output of the real binary when the
/// database cannot be reached: neither in the error message, nor in a log line (the PostgreSQL
/// driver itself logs an unknown parameter with its value).
#[test]
fn database_passwords_never_appear_in_errors_or_logs() {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let port = closed_port();
    let register = format!(
        "postgres://fristvakt@127.0.0.1:{port}/register?password=SECRETPW&sslpassword=SECRETSSL&sslmode=disable"
    );
    let state = format!("postgres://fristvakt:STATEPW@127.0.0.1:{port}/state?sslmode=disable");
    let runs = [
        (vec!["poll", "--once", "--today", TODAY], vec![("FRISTVAKT__REGISTER__URL", register.as_str())]),
        (vec!["deadlines", "--today", TODAY], vec![("FRISTVAKT__REGISTER__URL", register.as_str())]),
        (vec!["migrate"], vec![("FRISTVAKT__STATE__URL", state.as_str())]),
    ];
    for (args, env) in runs {
        let mut env = env.clone();
        // Every log line, down to the database driver's.
        env.push(("RUST_LOG", "debug"));
        let out = fristvakt(Some(&cfg), &args, &env);
        let output = format!("{}{}", stdout(&out), stderr(&out));
        for secret in ["SECRETPW", "SECRETSSL", "STATEPW"] {
            assert!(!output.contains(secret), "{args:?} printed {secret}:\n{output}");
        }
        // The database is still named, without its secrets.
        assert!(output.contains("cannot connect"), "{args:?}:\n{output}");
        assert!(output.contains(&format!("127.0.0.1:{port}")), "{args:?}:\n{output}");
        assert!(output.contains("[redacted]"), "{args:?}:\n{output}");
    }
}

/// Item 12: a case reference with control characters, or a very long one, is logged only
/// sanitised and shortened: no forged log line, no terminal escape, no flood.
#[test]
fn malformed_case_refs_are_logged_sanitised_and_shortened() {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let forged = "2026-BU-1\nERROR forged: all deadlines met\r\u{1b}[2K";
    let long = format!("2026-BU-{}", "9".repeat(5000));
    let long_but_valid = format!("2026-BU-{}", "7".repeat(80));
    let rows = [
        (forged.to_string(), "BRO-BU".to_string(), None),
        (long.clone(), "BRO-BU".to_string(), None),
        // A valid reference (at most 100 characters) with a caseworker that is no address.
        (long_but_valid.clone(), "BRO-BU".to_string(), Some("not an address".to_string())),
    ];
    tokio::runtime::Runtime::new().unwrap().block_on(sqlite_register(&ws, &rows));
    let out = fristvakt(Some(&cfg), &["poll", "--once", "--today", TODAY], &[("RUST_LOG", "warn")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("read 3 row(s), skipped 2 broken"), "{}", stdout(&out));
    let log = stderr(&out);
    let skipped: Vec<&str> = log.lines().filter(|l| l.contains("register row skipped")).collect();
    assert_eq!(skipped.len(), 2, "{log}");
    assert!(!log.lines().any(|l| l.starts_with("ERROR forged")), "a forged log line:\n{log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\r'), "a control character in the log:\n{log:?}");
    // Cut at 40 characters, with the original length noted.
    assert!(
        log.contains(
            "case 2026-BU-1?ERROR forged: all deadlines me… [46 chars]: column case_ref: not a valid case reference"
        ),
        "{log}"
    );
    assert!(log.contains(&format!("case 2026-BU-{}… [5008 chars]", "9".repeat(32))), "{log}");
    assert!(!log.contains(&"9".repeat(33)), "the long reference in full:\n{log}");
    assert!(log.contains(&format!("2026-BU-{}… [88 chars]", "7".repeat(32))), "{log}");
    assert!(!log.contains(&"7".repeat(33)), "the long reference in full:\n{log}");
    for line in log.lines() {
        assert!(line.chars().count() < 400, "an overlong log line: {line}");
    }
}

/// Item 12: the `unit` label of `fristvakt_deadlines` takes only configured units; every other
/// code of the register, however long or strange, counts as `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_metrics_label_only_configured_units() {
    let ws = TestApp::sqlite();
    let junk_unit = format!("X{}", "Q".repeat(60));
    let rows = [
        ("2026-BU-0001".to_string(), "BRO-BU".to_string(), None),
        ("2026-BU-0002".to_string(), "bro-bu".to_string(), None),
        ("2026-BU-0003".to_string(), "RIK-BU".to_string(), None),
        ("2026-BU-0004".to_string(), junk_unit.clone(), None),
    ];
    sqlite_register(&ws, &rows).await;
    let settings = ws.settings(
        "[units.\"BRO-BU\"]\nteam_leads = [\"gl.bromma@kommun.example\"]\nmanagers = [\"ec.bromma@kommun.example\"]\n",
    );
    let app = App::start(Arc::new(settings), "test", Utc::now()).await.unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    jobs::poll::run_once(&app, Moment::on(date(TODAY), now)).await.unwrap().expect("the poll lease");
    jobs::gauges::run_once(&app, Moment::on(date(TODAY), now)).await.unwrap();
    let text = app.metrics.render();
    app.close().await;
    let series: Vec<&str> = text.lines().filter(|l| l.starts_with("fristvakt_deadlines{")).collect();
    assert!(!series.is_empty(), "{text}");
    let units: std::collections::BTreeSet<&str> =
        series.iter().map(|l| l.split("unit=\"").nth(1).unwrap().split('"').next().unwrap()).collect();
    assert_eq!(units, ["BRO-BU", "other"].into_iter().collect(), "{text}");
    // Two BRO-BU cases (the code compares case-insensitively), two others: protection + assessment each.
    let sum = |unit: &str| -> i64 {
        series
            .iter()
            .filter(|l| l.contains(&format!("unit=\"{unit}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
            .sum()
    };
    assert_eq!((sum("BRO-BU"), sum("other")), (4, 4), "{text}");
    assert!(!text.contains("RIK-BU") && !text.contains("QQQQ"), "{text}");
}

/// Item 13: a SQLite register in rollback-journal mode, read-only on disk, is polled and shown
/// without being changed: the same bytes, still `journal_mode=delete`, no write-ahead log.
/// (The tests run as root, who may write a file mode 0444, hence the checks of the file itself.)
#[test]
fn a_read_only_sqlite_register_is_polled_and_left_unchanged() {
    let ws = TestApp::sqlite();
    let cfg = ws.config("");
    let out = fristvakt(Some(&cfg), &["demo-data", "--cases", "200", "--broken", "2", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let register = ws.path("register.db");
    let url = ws.sqlite_url("register.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let journal_mode = || {
        rt.block_on(async {
            let pool = SqlitePoolOptions::new().max_connections(1).connect(&format!("{url}?mode=ro")).await.unwrap();
            let mode: String = sqlx::query("PRAGMA journal_mode").fetch_one(&pool).await.unwrap().get(0);
            pool.close().await;
            mode
        })
    };
    // The register of another system: rollback journal, no write access.
    rt.block_on(sqlite_exec(&url, "PRAGMA journal_mode = DELETE"));
    assert_eq!(journal_mode(), "delete");
    std::fs::set_permissions(&register, std::fs::Permissions::from_mode(0o444)).unwrap();
    let sidecars = || ["-wal", "-shm", "-journal"].map(|s| ws.path(&format!("register.db{s}")).exists());
    assert_eq!(sidecars(), [false; 3]);
    let before = std::fs::read(&register).unwrap();

    let out = fristvakt(Some(&cfg), &["poll", "--once", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("read 202 row(s), skipped 2 broken"), "{}", stdout(&out));
    let out = fristvakt(Some(&cfg), &["deadlines", "--today", TODAY], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).lines().count() > 200, "{}", stdout(&out));

    assert!(std::fs::read(&register).unwrap() == before, "the register file changed");
    assert_eq!(sidecars(), [false; 3], "a write-ahead log, shared memory or journal file appeared");
    assert_eq!(journal_mode(), "delete", "the register's journal mode changed");
    assert_eq!(std::fs::metadata(&register).unwrap().permissions().mode() & 0o777, 0o444);
}

/// Item 13: every PostgreSQL register session is read-only. The view calls a function that
/// writes (an audit of reads, say): read through the register connection, the write fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_register_session_refuses_writes() {
    let pg = postgres::shared();
    let url = pg.fresh_database().await;
    postgres_register(&url, demo_cases(20, 5, date(TODAY), 0)).await;
    let register = Register::connect(&DatabaseUrl::parse(&url).unwrap(), "fristvakt_cases").await.unwrap();
    let rows: Vec<RawRow> = register.rows_since(None).try_collect().await.unwrap();
    assert_eq!(rows.len(), 20, "the register reads as before");

    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    for sql in [
        "CREATE TABLE register_reads (at timestamptz)",
        "CREATE FUNCTION note_read() RETURNS boolean LANGUAGE sql VOLATILE \
         AS $$ INSERT INTO register_reads VALUES (now()) RETURNING true $$",
        "CREATE VIEW audited_cases AS SELECT * FROM cases WHERE note_read()",
    ] {
        sqlx::query(sql).execute(&admin).await.unwrap();
    }
    let audited = Register::connect(&DatabaseUrl::parse(&url).unwrap(), "audited_cases").await.unwrap();
    let err = audited.rows_since(None).try_collect::<Vec<RawRow>>().await.expect_err("a write through the register");
    assert!(err.to_string().contains("read-only transaction"), "{err}");
    let reads: i64 = sqlx::query("SELECT COUNT(*) FROM register_reads").fetch_one(&admin).await.unwrap().get(0);
    assert_eq!(reads, 0);
    // The same view read by a session that may write does write: the test can fail.
    let written: Vec<sqlx::postgres::PgRow> =
        sqlx::query("SELECT case_ref FROM audited_cases").fetch_all(&admin).await.unwrap();
    assert_eq!(written.len(), 20);
    register.close().await;
    audited.close().await;
    admin.close().await;
}
