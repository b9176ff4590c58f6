//! Helpers shared by the integration tests: configuration files, registers and the binary.

use std::path::Path;
use std::process::Output;

use chrono::{DateTime, NaiveDate, Utc};
use fristvakt::demo::{self, DemoOptions};
use fristvakt::register::{RawRow, COLUMNS};
use sqlx::postgres::PgPoolOptions;

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// An instant written in RFC 3339 (`2026-11-25T05:00:00Z`).
pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Runs the real binary with `args` and extra environment.
pub fn fristvakt(config: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
    crate::support::app::binary(config, args, env).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn demo_cases(cases: usize, seed: u64, today: NaiveDate, broken: usize) -> impl Iterator<Item = RawRow> {
    demo::generate(&DemoOptions { cases, seed, today, broken })
}

/// Creates the placements view (contract §1b) in PostgreSQL, its dates `date` and `updated_at`
/// `timestamptz`, and fills it with `rows`.
pub async fn postgres_placements(url: &str, rows: &[fristvakt::register::RawPlacement]) {
    use fristvakt::register::placements::PLACEMENT_COLUMNS;
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    let columns: Vec<&str> = PLACEMENT_COLUMNS.iter().copied().filter(|c| !c.is_empty()).collect();
    let type_of = |c: &str| match c {
        "updated_at" => "timestamptz",
        c if c.ends_with("_on") || c.ends_with("_to") || c == "home_since" => "date",
        _ => "text",
    };
    let definitions: Vec<String> = columns.iter().map(|c| format!("{c} {}", type_of(c))).collect();
    sqlx::query(&format!("CREATE TABLE placements ({})", definitions.join(", "))).execute(&pool).await.unwrap();
    sqlx::query("CREATE VIEW fristvakt_placements AS SELECT * FROM placements").execute(&pool).await.unwrap();
    for row in rows {
        let marks: Vec<String> =
            columns.iter().enumerate().map(|(i, c)| format!("${}::{}", i + 1, type_of(c))).collect();
        let sql = format!("INSERT INTO placements VALUES ({})", marks.join(","));
        let mut insert = sqlx::query(&sql);
        for value in &row.0 {
            insert = insert.bind(value.clone());
        }
        insert.execute(&pool).await.unwrap();
    }
    pool.close().await;
}

/// Creates the register view's table in PostgreSQL with the contract's types, the optional
/// columns included (contract §1), and fills it.
pub async fn postgres_register(url: &str, cases: impl Iterator<Item = RawRow>) {
    postgres_register_with(url, cases, true).await;
}

/// [`postgres_register`], with the optional columns or without them (a view as it was before
/// they existed). The columns and their types come from the register's column table.
pub async fn postgres_register_with(url: &str, cases: impl Iterator<Item = RawRow>, optional: bool) {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    let columns: Vec<_> = COLUMNS.iter().filter(|c| optional || c.is_required()).collect();
    let definitions: Vec<String> = columns
        .iter()
        .map(|c| match c.name {
            "case_ref" => "case_ref text PRIMARY KEY".to_string(),
            name => format!("{name} {}{}", c.storage.postgres_type(), if c.nullable { "" } else { " NOT NULL" }),
        })
        .collect();
    sqlx::query(&format!("CREATE TABLE cases ({})", definitions.join(", "))).execute(&pool).await.unwrap();
    sqlx::query("CREATE VIEW fristvakt_cases AS SELECT * FROM cases").execute(&pool).await.unwrap();
    if optional {
        // docs/register-view.md asks for it: the poll reads a child's cases by their key.
        sqlx::query("CREATE INDEX cases_child_key ON cases (child_key)").execute(&pool).await.unwrap();
    }
    let cases: Vec<RawRow> = cases.collect();
    let width = columns.len();
    for chunk in cases.chunks(500) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let marks: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(c, column)| format!("${}::{}", i * width + c + 1, column.storage.postgres_type()))
                    .collect();
                format!("({})", marks.join(","))
            })
            .collect();
        let sql = format!("INSERT INTO cases VALUES {}", rows.join(","));
        let mut q = sqlx::query(&sql);
        for case in chunk {
            for (column, value) in COLUMNS.iter().zip(case.values()) {
                if optional || column.is_required() {
                    q = q.bind(value);
                }
            }
        }
        q.execute(&pool).await.unwrap();
    }
    pool.close().await;
}
