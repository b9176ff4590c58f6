//! [`TestApp`]: one test's fresh register and state on either engine, the jobs run in process or
//! the real binary run as a process (stopped by a guard, also when the test panics), and what
//! came out of it (the `.eml` files of the outbox directory).
//!
//! On SQLite the register and the state are files in a temporary directory; on PostgreSQL each is
//! a fresh database on the shared throwaway server (`support::postgres::shared`). The
//! `both_engines!` macro hands a test body `Option<String>` (the PostgreSQL state database, or
//! none for SQLite): [`TestApp::new`] and [`TestApp::with_sqlite_register`] take it as it is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use fristvakt::app::App;
use fristvakt::config::{self, Settings};
pub use fristvakt::db::Engine;
use fristvakt::domain::StoredDeadline;
use fristvakt::state::DeadlineFilter;

use super::postgres;
use super::process::ChildGuard;

/// A scratch directory, a register and a state database, and the configuration naming them.
pub struct TestApp {
    dir: tempfile::TempDir,
    engine: Engine,
    register_url: String,
    state_url: String,
}

impl TestApp {
    /// SQLite register and state files (not created until something writes them).
    pub fn sqlite() -> TestApp {
        TestApp::with_urls(None, None)
    }

    /// Register and state on one engine: SQLite files when `postgres_state` is `None`; else the
    /// state in that PostgreSQL database and the register in a second fresh one.
    pub async fn new(postgres_state: Option<String>) -> TestApp {
        let register = match &postgres_state {
            Some(_) => Some(postgres::shared().fresh_database().await),
            None => None,
        };
        TestApp::with_urls(register, postgres_state)
    }

    /// A SQLite register, and the state on PostgreSQL (that database) or SQLite (`None`).
    pub fn with_sqlite_register(postgres_state: Option<String>) -> TestApp {
        TestApp::with_urls(None, postgres_state)
    }

    /// A SQLite state, and the register on PostgreSQL (that database) or SQLite (`None`).
    pub fn with_sqlite_state(postgres_register: Option<String>) -> TestApp {
        TestApp::with_urls(postgres_register, None)
    }

    fn with_urls(register: Option<String>, state: Option<String>) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        let engine = if register.is_some() || state.is_some() { Engine::Postgres } else { Engine::Sqlite };
        let register_url = register.unwrap_or_else(|| sqlite("register.db"));
        let state_url = state.unwrap_or_else(|| sqlite("state.db"));
        TestApp { dir, engine, register_url, state_url }
    }

    /// The engine under test: PostgreSQL when either database is on it.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The register's engine.
    pub fn register_engine(&self) -> Engine {
        if self.register_url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            Engine::Postgres
        }
    }

    /// The test's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `sqlite://` and the path of `name` in the scratch directory.
    pub fn sqlite_url(&self, name: &str) -> String {
        format!("sqlite://{}", self.path(name).display())
    }

    pub fn register_url(&self) -> &str {
        &self.register_url
    }

    pub fn state_url(&self) -> &str {
        &self.state_url
    }

    /// The directory the mail goes to as `.eml` files (`mail.file_dir`).
    pub fn outbox_dir(&self) -> PathBuf {
        self.path("outbox")
    }

    /// Writes `fristvakt.toml`: this register and state, mail as files in [`Self::outbox_dir`]
    /// at any hour, then `extra`.
    pub fn config(&self, extra: &str) -> PathBuf {
        self.config_with("", extra)
    }

    /// Like [`Self::config`], with more `[register]` keys.
    pub fn config_with(&self, register: &str, extra: &str) -> PathBuf {
        let outbox = self.outbox_dir();
        self.config_toml(
            register,
            &format!("[mail]\nfile_dir = \"{}\"\nsend_window = \"always\"\n{extra}", outbox.display()),
        )
    }

    /// Writes `fristvakt.toml`: this register (and the `[register]` keys `register`) and
    /// state, then `rest` (the `[mail]` section and any other).
    pub fn config_toml(&self, register: &str, rest: &str) -> PathBuf {
        let path = self.path("fristvakt.toml");
        let text = format!(
            "[register]\nurl = \"{}\"\n{register}\n[state]\nurl = \"{}\"\n{rest}",
            self.register_url, self.state_url
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The settings of [`Self::config`]`(extra)`, as the binary loads them.
    pub fn settings(&self, extra: &str) -> Settings {
        let path = self.config(extra);
        config::load_with_env(Some(&path), Vec::new()).unwrap()
    }

    /// Runs `statements` on the register, one after another.
    pub async fn exec_register(&self, statements: &[String]) {
        exec(&self.register_url, statements).await;
    }

    /// Runs `statements` on the state database.
    pub async fn exec_state(&self, statements: &[String]) {
        exec(&self.state_url, statements).await;
    }

    /// The application the daemon builds, on `settings`, started at `now`: its jobs'
    /// `run_once` run in process.
    pub async fn start(&self, settings: Settings, now: DateTime<Utc>) -> App {
        App::start(Arc::new(settings), "test", now).await.unwrap()
    }

    /// Runs the real binary on `config` with `args` and extra environment, to its end.
    pub fn run(&self, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        binary(Some(config), args, env).output().unwrap()
    }

    /// Starts the real binary on `config` with `args`, its warnings and errors to `log`; the
    /// guard stops it when dropped (also when the test panics).
    pub fn spawn(&self, config: &Path, args: &[&str], env: &[(&str, &str)], log: impl Into<Stdio>) -> ChildGuard {
        spawn(config, args, env, log)
    }

    /// The `.eml` files written so far, by name, with their text.
    pub fn eml_files(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.outbox_dir()) else { return Vec::new() };
        let mut files: Vec<(String, String)> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
            .collect();
        files.sort();
        files
    }

    /// The plain-text bodies of the `.eml` files written so far (decoded), by file name.
    pub fn mail_texts(&self) -> Vec<(String, String)> {
        self.eml_files()
            .into_iter()
            .map(|(name, raw)| {
                let message = mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap();
                let text = message.body_text(0).unwrap_or_default().into_owned();
                (name, text)
            })
            .collect()
    }
}

/// Starts the real binary as [`TestApp::spawn`] does, on any configuration.
pub fn spawn(config: &Path, args: &[&str], env: &[(&str, &str)], log: impl Into<Stdio>) -> ChildGuard {
    ChildGuard::new(binary(Some(config), args, env).stdout(Stdio::null()).stderr(log).spawn().unwrap())
}

/// The stored deadlines (every cycle, closed ones too) that `line` writes a line for, sorted.
pub async fn stored_lines(app: &App, line: impl FnMut(&StoredDeadline) -> Option<String>) -> Vec<String> {
    let mut lines: Vec<String> =
        app.state.deadlines(&DeadlineFilter::default()).await.unwrap().iter().filter_map(line).collect();
    lines.sort();
    lines
}

/// "open", or "closed D".
pub fn closed_or_open(deadline: &fristvakt::rules::Deadline) -> String {
    deadline.closed_on.map_or("open".to_string(), |c| format!("closed {c}"))
}

/// The real binary (on `config`, if any) with `args`, `RUST_LOG=warn` and extra environment (`env`
/// overrides both), not started.
pub fn binary(config: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fristvakt"));
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(args).env_remove("FRISTVAKT_CONFIG").env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `statements` on the database at `url` (SQLite or PostgreSQL), one after another.
pub async fn exec(url: &str, statements: &[String]) {
    if url.starts_with("sqlite:") {
        let options = url.parse::<sqlx::sqlite::SqliteConnectOptions>().unwrap().create_if_missing(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&pool).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        pool.close().await;
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&pool).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        pool.close().await;
    }
}
