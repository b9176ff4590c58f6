//! Helpers shared by the integration tests: configuration files, registers and the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::NaiveDate;
use fristvakt::config::{self, Settings};
use fristvakt::demo::{self, DemoCase, DemoOptions};
use sqlx::postgres::PgPoolOptions;

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// A scratch directory with a configuration whose register and state live in it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn sqlite_url(&self, name: &str) -> String {
        format!("sqlite://{}", self.path(name).display())
    }

    /// Writes a configuration file with SQLite register and state in the workspace, plus `extra`.
    pub fn config(&self, extra: &str) -> PathBuf {
        self.config_with("", extra)
    }

    /// Like [`Workspace::config`], with more `[register]` keys.
    pub fn config_with(&self, register: &str, extra: &str) -> PathBuf {
        let path = self.path("fristvakt.toml");
        let text = format!(
            "[register]\nurl = \"{}\"\n{register}\n[state]\nurl = \"{}\"\n[mail]\nfile_dir = \"{}\"\nsend_window = \"always\"\n{extra}",
            self.sqlite_url("register.db"),
            self.sqlite_url("state.db"),
            self.path("outbox").display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn settings(&self, extra: &str) -> Settings {
        let path = self.config(extra);
        config::load_with_env(Some(&path), Vec::new()).unwrap()
    }
}

/// Runs the real binary with `args` and extra environment.
pub fn fristvakt(config: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fristvakt"));
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(args).env_remove("FRISTVAKT_CONFIG").env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn demo_cases(cases: usize, seed: u64, today: NaiveDate, broken: usize) -> impl Iterator<Item = DemoCase> {
    demo::generate(&DemoOptions { cases, seed, today, broken })
}

/// Creates the register view's table in PostgreSQL with the contract's types, the optional
/// columns included (contract §1), and fills it.
pub async fn postgres_register(url: &str, cases: impl Iterator<Item = DemoCase>) {
    postgres_register_with(url, cases, true).await;
}

/// [`postgres_register`], with the optional columns (`child_key`, `follow_up_decided_on`,
/// `follow_up_ended_on`) or without them (a view as it was before they existed).
pub async fn postgres_register_with(url: &str, cases: impl Iterator<Item = DemoCase>, optional: bool) {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    let optional_columns =
        if optional { ", child_key text, follow_up_decided_on date, follow_up_ended_on date" } else { "" };
    sqlx::query(&format!(
        "CREATE TABLE cases (case_ref text PRIMARY KEY, unit text NOT NULL, caseworker text, child_sex text, \
         received_on date, protection_assessed_on date, assessment_decided_on date, assessment_extended_to date, \
         investigation_opened_on date, investigation_extended_to date, investigation_closed_on date, \
         updated_at timestamptz NOT NULL{optional_columns})"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("CREATE VIEW fristvakt_cases AS SELECT * FROM cases").execute(&pool).await.unwrap();
    if optional {
        // docs/register-view.md asks for it: the poll reads a child's cases by their key.
        sqlx::query("CREATE INDEX cases_child_key ON cases (child_key)").execute(&pool).await.unwrap();
    }
    let cases: Vec<DemoCase> = cases.collect();
    let width = if optional { 15 } else { 12 };
    for chunk in cases.chunks(500) {
        let mut sql = String::from("INSERT INTO cases VALUES ");
        for i in 0..chunk.len() {
            let b = i * width;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${}::date,${}::date,${}::date,${}::date,${}::date,${}::date,${}::date,${}::timestamptz",
                b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, b + 11, b + 12
            ));
            if optional {
                sql.push_str(&format!(",${},${}::date,${}::date", b + 13, b + 14, b + 15));
            }
            sql.push(')');
        }
        let mut q = sqlx::query(&sql);
        for c in chunk {
            q = q
                .bind(&c.case_ref)
                .bind(&c.unit)
                .bind(&c.caseworker)
                .bind(&c.child_sex)
                .bind(&c.received_on)
                .bind(&c.protection_assessed_on)
                .bind(&c.assessment_decided_on)
                .bind(&c.assessment_extended_to)
                .bind(&c.investigation_opened_on)
                .bind(&c.investigation_extended_to)
                .bind(&c.investigation_closed_on)
                .bind(&c.updated_at);
            if optional {
                q = q.bind(&c.child_key).bind(&c.follow_up_decided_on).bind(&c.follow_up_ended_on);
            }
        }
        q.execute(&pool).await.unwrap();
    }
    pool.close().await;
}
