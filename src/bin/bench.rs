//! `fristvakt-bench`: speed and memory of fristvakt's jobs at scale, each beside its baseline in
//! the same run, printed as a Markdown table with the goal and whether it is met. A benchmark,
//! never a test: these figures depend on the machine.
//!
//!     cargo build --release && target/release/fristvakt-bench [--cases 100000,1000000] [--runs 3]
//!         [--notices 10000] [--engines sqlite,postgres] [--every-row] [--only changed-poll|full-pass]
//!
//! `scripts/bench` installs what it needs when missing (the `sqlite3` shell, the PostgreSQL
//! server binaries), builds the release and runs it, by default with BENCHMARKS.md's arguments.
//!
//! For each size and engine it fills a demo register with the same cases and gives fristvakt a
//! state database of that engine: SQLite files, or databases of a throwaway PostgreSQL server that
//! the benchmark starts from the system's binaries and stops and removes at the end (see
//! `bench/postgres.rs`). It then measures, against their baselines:
//! - a steady full pass (read, compute, store; the state already holds it) against a raw scan of
//!   the same view's columns by the engine's shell: `sqlite3`, or `psql` copying them to
//!   /dev/null (goal ≤ 1.3×);
//! - an incremental poll with nothing changed, and the polls after a bulk update that gave every
//!   row one `updated_at` (re-read inside the overlap window, then after it), against the full
//!   pass (goal ≤ 0.1×);
//! - 1 000 changed rows, other rows each of `--runs` polls (goal ≤ 50 ms of work), in a register
//!   otherwise quiet: the clock starts
//!   the day after the demo's "today" (see [`clock`]), so that no row of the demo lies inside
//!   the poll's overlap window and a poll reads only what the benchmark changed;
//! - the compliance report over a year by unit and kind (SQL-grouped);
//! - start-up to READY (migrate + first full pass), a steady full pass and the compliance report
//!   as `fristvakt` processes of their own, with their peak resident memory (goal ≤ 100 MB).
//!
//! Above `EVERY_ROW_MAX` cases the run keeps to what the goals need there (the steady full pass,
//! the polls with nothing and with 1 000 rows changed, SQLite's processes; no bulk update, no
//! PostgreSQL processes) and a row says so, unless `--every-row`.
//!
//! `--only changed-poll` makes only what the poll of 1 000 changed rows needs (the register, a
//! first full pass in this process) and then that poll `--runs` times, each after 1 000 other
//! rows changed; it prints a line to standard error before the first, so that a
//! profiler can attach to the process then (`perf record -p`). `--only full-pass` does the same
//! for the steady full pass: the register, its raw scan, a first full pass, then `--runs` steady
//! full passes, each row beside the scan.
//!
//! On PostgreSQL the state database is vacuumed and analysed after the first full pass, as
//! autovacuum does on a daemon's server (see `Store::settle_state`).
//!
//! Times are the minimum and median of `--runs` runs. A raw SQLite scan needs the `sqlite3` shell
//! on the PATH (Debian package `sqlite3`); without it that row says so. PostgreSQL needs the
//! server binaries (`initdb`, `pg_ctl`, `postgres`, `psql`; Debian package `postgresql`); without
//! them its rows are replaced by one saying so. The dispatch measurement (`--notices`) uses a
//! SQLite state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use fristvakt::app::{App, Moment};
use fristvakt::config::{self, DatabaseUrl, Engine};
use fristvakt::demo::{self, DemoOptions};
use fristvakt::jobs;
use fristvakt::register;
use fristvakt::report;

#[path = "bench/postgres.rs"]
mod postgres;

/// The register columns fristvakt reads of the demo register, for the raw scan: every column of
/// the view's table, the optional ones included (the demo register has them all).
fn register_columns() -> String {
    register::COLUMNS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

fn main() -> Result<()> {
    let mut sizes = vec![100_000usize];
    let mut runs = 3usize;
    let mut notices = 10_000usize;
    let mut engines = vec![Engine::Sqlite, Engine::Postgres];
    let mut every_row = false;
    let mut only_changed = false;
    let mut only_full = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cases" => {
                let raw = args.next().context("--cases needs a number or a list like 100000,1000000")?;
                sizes = raw.split(',').map(|n| n.trim().replace('_', "").parse()).collect::<Result<_, _>>()?;
            }
            "--runs" => runs = args.next().context("--runs needs a number")?.parse().context("--runs N")?,
            "--notices" => {
                notices = args.next().context("--notices needs a number")?.parse().context("--notices N")?;
            }
            "--engines" => {
                let raw = args.next().context("--engines needs a list like sqlite,postgres")?;
                engines = raw.split(',').map(|e| parse_engine(e.trim())).collect::<Result<_>>()?;
            }
            "--every-row" => every_row = true,
            "--only" => match args.next().as_deref() {
                Some("changed-poll") => only_changed = true,
                Some("full-pass") => only_full = true,
                other => anyhow::bail!("--only takes changed-poll or full-pass, not {other:?}"),
            },
            other => anyhow::bail!(
                "unknown argument {other:?}; use [--cases N[,N…]] [--runs R] [--notices N] [--engines sqlite,postgres] \
                 [--every-row] [--only changed-poll|full-pass]"
            ),
        }
    }
    let runs = runs.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("fristvakt-bench: {} logical CPUs, {runs} run(s) each\n", std::thread::available_parallelism()?);
    println!("| engine | cases | measurement | min | median | baseline (median) | ratio | goal | met |");
    println!("|---|---:|---|---:|---:|---:|---:|---|---|");
    for cases in sizes.into_iter().filter(|&n| n > 0) {
        for &engine in &engines {
            let name = engine_name(engine).to_lowercase();
            let dir = std::env::temp_dir().join(format!("fristvakt-bench-{}-{name}-{cases}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let mut plan = Plan::for_size(engine, cases, runs, every_row);
            plan.only_changed = only_changed;
            plan.only_full = only_full;
            let result = runtime.block_on(bench_on(engine, cases, &plan, &dir));
            let _ = std::fs::remove_dir_all(&dir);
            result?;
        }
    }
    if notices > 0 {
        let dir = std::env::temp_dir().join(format!("fristvakt-bench-{}-mail", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let result = runtime.block_on(dispatch_bench(notices, &dir));
        let _ = std::fs::remove_dir_all(&dir);
        result?;
    }
    Ok(())
}

fn parse_engine(name: &str) -> Result<Engine> {
    match name.to_ascii_lowercase().as_str() {
        "sqlite" => Ok(Engine::Sqlite),
        "postgres" | "postgresql" | "pg" => Ok(Engine::Postgres),
        other => anyhow::bail!("unknown engine {other:?}; use sqlite or postgres"),
    }
}

fn engine_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "SQLite",
        Engine::Postgres => "PostgreSQL",
    }
}

/// Connections the dispatcher and the minimal client keep open at once.
const SMTP_CONNECTIONS: usize = 4;

/// Dispatch against a loopback SMTP sink, beside a minimal client sending as many bare messages
/// the same way (a connection each, `SMTP_CONNECTIONS` at once): goal ≥ 80 % of its rate.
async fn dispatch_bench(notices: usize, dir: &Path) -> Result<()> {
    let (port, accepted) = smtp_sink().await?;
    let t = Instant::now();
    let cpu = process_cpu();
    let mut clients = Vec::new();
    for i in 0..SMTP_CONNECTIONS {
        let share = notices / SMTP_CONNECTIONS + usize::from(i < notices % SMTP_CONNECTIONS);
        clients.push(tokio::spawn(async move {
            for _ in 0..share {
                bare_message(port).await?;
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    for client in clients {
        client.await??;
    }
    let baseline = Timing(vec![t.elapsed()]);
    let client_cpu = process_cpu().zip(cpu).map(|(after, before)| after.saturating_sub(before));
    anyhow::ensure!(accepted.load(std::sync::atomic::Ordering::Relaxed) == notices, "the sink lost messages");

    // A register of cases reported 20 days ago, none assessed: one notice each, due now.
    let today = NaiveDate::from_ymd_opt(2026, 11, 25).context("date")?;
    let received = (today - chrono::Duration::days(20)).to_string();
    let cases = (0..notices).map(|i| register::RawRow {
        case_ref: Some(format!("2026-BU-{i:06}")),
        unit: Some(["BRO-BU", "SKH-BU", "NOR-BU"][i % 3].to_string()),
        caseworker: Some("handlaggare@kommun.example".into()),
        child_sex: Some(if i % 2 == 0 { "F" } else { "M" }.into()),
        received_on: Some(received.clone()),
        protection_assessed_on: Some(received.clone()),
        updated_at: Some("2026-11-01T08:00:00.000000Z".into()),
        ..register::RawRow::default()
    });
    let register_url = format!("sqlite://{}", dir.join("register.db").display());
    let url = DatabaseUrl::parse(&register_url).map_err(|e| anyhow::anyhow!(e))?;
    demo::write_demo_cases(&url, "fristvakt_cases", cases).await?;
    let config = dir.join("mail.toml");
    std::fs::write(
        &config,
        format!(
            "[register]\nurl = \"{register_url}\"\n[state]\nurl = \"sqlite://{}\"\n[mail]\ntransport = \"smtp\"\n\
             send_window = \"always\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             pool_size = {SMTP_CONNECTIONS}\n[units.default]\nteam_leads = [\"gruppledare@kommun.example\"]\n\
             managers = [\"enhetschef@kommun.example\"]\n",
            dir.join("state.db").display()
        ),
    )?;
    let settings = Arc::new(config::load_with_env(Some(&config), Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))?);
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).single().context("now")?;
    let app = App::start(settings, "bench", now).await?;
    let enqueued = jobs::full_pass::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
    let due = enqueued.ladder.notices_enqueued() as usize;
    accepted.store(0, std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let cpu = process_cpu();
    let mut sent = 0;
    loop {
        let report = jobs::dispatch::run_once(&app, Moment::on(today, now)).await?;
        if report.total_sent() == 0 {
            break;
        }
        sent += report.total_sent() as usize;
    }
    let dispatch = Timing(vec![t.elapsed()]);
    let dispatch_cpu = process_cpu().zip(cpu).map(|(after, before)| after.saturating_sub(before));
    app.close().await;
    anyhow::ensure!(sent == due && accepted.load(std::sync::atomic::Ordering::Relaxed) == due, "not every notice");
    // Rates, so that the ratio reads as a share of the client's rate (and the goal as ≥ 0.8).
    let rate = |n: usize, t: &Timing| n as f64 / t.median().as_secs_f64();
    let (client_rate, dispatch_rate) = (rate(notices, &baseline), rate(due, &dispatch));
    let at = At { engine: engine_name(Engine::Sqlite), cases: notices };
    // The CPU time of the whole process (sink included) per message: the figure that a loaded
    // machine does not blur.
    let per = |cpu: Option<Duration>, n: usize| match cpu {
        Some(cpu) => format!(", {:.0} µs CPU each", cpu.as_secs_f64() * 1e6 / n.max(1) as f64),
        None => String::new(),
    };
    row(
        at,
        &format!("minimal SMTP client, bare messages ({client_rate:.0}/s{})", per(client_cpu, notices)),
        &baseline,
        None,
        Goal::None,
    );
    let share = dispatch_rate / client_rate;
    println!(
        "| {} | {due} | dispatch of notices to the same sink ({dispatch_rate:.0}/s{}) | {} | {} | {} | {share:.2} of its \
         rate | ≥ 0.8 | {} |",
        at.engine,
        per(dispatch_cpu, due),
        secs(dispatch.min()),
        secs(dispatch.median()),
        secs(baseline.median()),
        if share >= 0.8 { "yes" } else { "**no**" }
    );
    Ok(())
}

/// A loopback SMTP server that takes every message (the sink of the dispatch measurement):
/// its port and the count of messages taken.
async fn smtp_sink() -> Result<(u16, Arc<std::sync::atomic::AtomicUsize>)> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut reader = BufReader::new(reader);
                writer.write_all(b"220 sink\r\n").await?;
                let mut line = String::new();
                let mut in_data = false;
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await? == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            writer.write_all(b"250 queued\r\n").await?;
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            writer.write_all(b"221 bye\r\n").await?;
                            return Ok(());
                        }
                        _ => b"250 ok\r\n",
                    };
                    writer.write_all(reply).await?;
                }
            });
        }
    });
    Ok((port, accepted))
}

/// Reads one SMTP reply: up to the line whose code is followed by a space.
async fn expect(
    reader: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut String,
) -> std::io::Result<()> {
    use tokio::io::AsyncBufReadExt;
    loop {
        line.clear();
        if reader.read_line(line).await? == 0 || line.len() < 4 || line.as_bytes()[3] == b' ' {
            return Ok(());
        }
    }
}

/// One bare message over a connection of its own, as plainly as SMTP allows.
async fn bare_message(port: u16) -> std::io::Result<()> {
    use tokio::io::{AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    expect(&mut reader, &mut line).await?;
    for command in
        [&b"EHLO bench\r\n"[..], b"MAIL FROM:<a@kommun.example>\r\n", b"RCPT TO:<b@kommun.example>\r\n", b"DATA\r\n"]
    {
        writer.write_all(command).await?;
        expect(&mut reader, &mut line).await?;
    }
    writer.write_all(b"Subject: x\r\n\r\nx\r\n.\r\n").await?;
    expect(&mut reader, &mut line).await?;
    writer.write_all(b"QUIT\r\n").await?;
    expect(&mut reader, &mut line).await?;
    Ok(())
}

/// Times of several runs.
struct Timing(Vec<Duration>);

impl Timing {
    fn min(&self) -> Duration {
        self.0.iter().copied().min().unwrap_or_default()
    }

    fn median(&self) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// The first two cells of a row: the engine of the register and state, and the number of cases.
#[derive(Clone, Copy)]
struct At {
    engine: &'static str,
    cases: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} | {}", self.engine, self.cases)
    }
}

/// One table row: a measurement, its baseline (when it has one), the ratio and the goal.
fn row(at: At, what: &str, timing: &Timing, baseline: Option<&Timing>, goal: Goal) {
    let median = timing.median();
    let (base, ratio) = match baseline {
        Some(b) if !b.median().is_zero() => {
            (secs(b.median()), format!("{:.2}×", median.as_secs_f64() / b.median().as_secs_f64()))
        }
        _ => ("–".to_string(), "–".to_string()),
    };
    let (goal_text, met) = goal.judge(median, baseline.map(Timing::median));
    println!("| {at} | {what} | {} | {} | {base} | {ratio} | {goal_text} | {met} |", secs(timing.min()), secs(median));
}

#[derive(Clone, Copy)]
enum Goal {
    None,
    /// At most this ratio to the baseline.
    Ratio(f64),
    /// At most this long.
    Within(Duration),
}

impl Goal {
    fn judge(self, median: Duration, baseline: Option<Duration>) -> (String, &'static str) {
        let yes_no = |ok: bool| if ok { "yes" } else { "**no**" };
        match (self, baseline) {
            (Goal::None, _) => ("–".into(), ""),
            (Goal::Ratio(r), Some(b)) => (format!("≤ {r}×"), yes_no(median.as_secs_f64() <= r * b.as_secs_f64())),
            (Goal::Ratio(r), None) => (format!("≤ {r}×"), "no baseline"),
            (Goal::Within(d), _) => (format!("≤ {}", secs(d)), yes_no(median <= d)),
        }
    }
}

/// The largest register every measurement is made on (unless `--every-row`). Above it the run
/// keeps to what the goals ask at that size: the bulk update is a goal at 200 000 cases, and a
/// first full pass of a million cases takes minutes (a poll right after a bulk update as long),
/// which would take the README's run past 15 minutes on 2 cores. PostgreSQL also leaves out the
/// `fristvakt` processes there (the memory goal is measured on SQLite, whose state is in-process).
const EVERY_ROW_MAX: usize = 200_000;

/// Which measurements a size makes on an engine, and how often.
struct Plan {
    /// Runs of the cheap measurements (polls, the compliance report).
    runs: usize,
    /// Runs of the steady full pass.
    full_pass_runs: usize,
    /// The polls after a bulk update (a full read and two in the overlap).
    bulk_update: bool,
    /// The `fristvakt` processes (start-up to READY, a full pass, the report) and their memory.
    processes: bool,
    /// Only the poll of 1 000 changed rows, `runs` times (`--only changed-poll`).
    only_changed: bool,
    /// Only the steady full pass, `runs` times, beside the raw scan (`--only full-pass`).
    only_full: bool,
}

impl Plan {
    fn for_size(engine: Engine, cases: usize, runs: usize, every_row: bool) -> Plan {
        let everything = Plan {
            runs,
            full_pass_runs: runs,
            bulk_update: true,
            processes: true,
            only_changed: false,
            only_full: false,
        };
        if every_row || cases <= EVERY_ROW_MAX {
            return everything;
        }
        // What the goals need: the steady full pass, a poll with nothing and with 1 000 rows
        // changed, and (SQLite) the processes' memory.
        Plan { bulk_update: false, processes: engine == Engine::Sqlite, ..everything }
    }

    /// A row saying what was left out, if anything.
    fn print_reductions(&self, at: At) {
        if self.only_changed || self.only_full {
            return;
        }
        let mut left_out = Vec::new();
        if self.full_pass_runs < self.runs {
            left_out.push(format!("steady full pass {} run(s), not {}", self.full_pass_runs, self.runs));
        }
        if !self.bulk_update {
            left_out.push("no polls after a bulk update".to_string());
        }
        if !self.processes {
            left_out.push("no fristvakt processes (start-up, own full pass, report, their memory)".to_string());
        }
        if !left_out.is_empty() {
            println!(
                "| {at} | reduced above {EVERY_ROW_MAX} cases, where a first full pass takes minutes \
                 (--every-row for all): {} | – | – | – | – | – | |",
                left_out.join("; ")
            );
        }
    }
}

/// The demo register's "today", and the benchmark's clock: noon of the next day.
///
/// The demo stamps a row's `updated_at` at any time of the day of its latest event, up to
/// `today` 23:59:59.999999 (`demo.rs`). A poll reads the rows stamped at or after its lower
/// bound, the previous read's start (the [`Moment`]'s `now`, not the register's clock) minus
/// `register.overlap`, so every row stamped later than that is read by every poll — also the
/// rows the demo stamped later on its "today" than the clock, which a register never holds (no
/// row is stamped after the present). On a clock that ran on the demo's own day, from 12:00,
/// that was 1 265 rows at 100 000 cases and 3 596 at 1 000 000 (their number grows with the
/// register), read again by every poll. The register stays the one every earlier run used; the
/// clock starts the next day at noon, when the demo's day has ended and its last stamp lies
/// twelve hours before the first poll's window: the register is quiet, and what a poll reads is
/// what the benchmark changed (the 1 000 rows, or the bulk update and its overlap window).
fn clock() -> Result<(NaiveDate, DateTime<Utc>)> {
    let demo_today = NaiveDate::from_ymd_opt(2026, 11, 25).context("date")?;
    let start = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).single().context("now")?;
    Ok((demo_today, start))
}

/// The measurements of one size on one engine, in a directory of their own (`dir`).
async fn bench_on(engine: Engine, cases: usize, plan: &Plan, dir: &Path) -> Result<()> {
    plan.print_reductions(At { engine: engine_name(engine), cases });
    match engine {
        Engine::Sqlite => bench(&Store::Sqlite(dir), cases, plan, dir).await,
        Engine::Postgres => {
            let Some(bin_dir) = postgres::find_bin_dir() else {
                println!(
                    "| {} | not measured: no PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) on the PATH \
                     or in /usr/lib/postgresql/*/bin; Debian package postgresql | – | – | – | – | – | |",
                    At { engine: engine_name(engine), cases }
                );
                return Ok(());
            };
            // Stopped and removed when `server` is dropped, also when a measurement fails.
            let server = postgres::start(&bin_dir)?;
            for database in [REGISTER_DB, STATE_DB, FRESH_STATE_DB] {
                server.create_database(database).await.map_err(anyhow::Error::msg)?;
            }
            bench(&Store::Postgres(&server), cases, plan, dir).await
        }
    }
}

/// The databases of a size on PostgreSQL: the register, the state of the measurements in this
/// process, and the state of the `fristvakt` processes.
const REGISTER_DB: &str = "register";
const STATE_DB: &str = "state";
const FRESH_STATE_DB: &str = "fresh_state";

/// Where a size's register and states live, and the engine's shell that reads and changes the
/// register beside fristvakt: SQLite files in a directory (`sqlite3`), or databases of a
/// throwaway PostgreSQL server (`psql`).
enum Store<'a> {
    Sqlite(&'a Path),
    Postgres(&'a postgres::Server),
}

impl Store<'_> {
    fn engine(&self) -> &'static str {
        engine_name(match self {
            Store::Sqlite(_) => Engine::Sqlite,
            Store::Postgres(_) => Engine::Postgres,
        })
    }

    fn register_url(&self) -> String {
        match self {
            Store::Sqlite(dir) => format!("sqlite://{}", dir.join("register.db").display()),
            Store::Postgres(server) => server.url(REGISTER_DB),
        }
    }

    /// The URL of state `name` (`STATE_DB` or `FRESH_STATE_DB`).
    fn state_url(&self, name: &str) -> String {
        match self {
            Store::Sqlite(dir) => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
            Store::Postgres(server) => server.url(name),
        }
    }

    /// Writes the demo cases to the register's `view`: fristvakt's own demo register writer on
    /// SQLite; on PostgreSQL a table with the contract's types, loaded with COPY.
    async fn write_register(&self, view: &str, cases: impl Iterator<Item = register::RawRow>) -> Result<()> {
        match self {
            Store::Sqlite(_) => {
                let url = DatabaseUrl::parse(&self.register_url()).map_err(|e| anyhow::anyhow!(e))?;
                demo::write_demo_cases(&url, view, cases).await?;
            }
            Store::Postgres(_) => {
                postgres::write_register(&self.register_url(), view, cases).await?;
            }
        }
        Ok(())
    }

    /// What the raw scan is, for the row that compares with it.
    fn scan_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "a raw sqlite3 scan",
            Store::Postgres(_) => "a raw psql COPY scan",
        }
    }

    /// The raw scan's statement: the view's columns, printed.
    fn scan_sql(&self, view: &str) -> String {
        match self {
            Store::Sqlite(_) => format!("SELECT {} FROM {view};", register_columns()),
            Store::Postgres(_) => format!("COPY (SELECT {} FROM {view}) TO STDOUT", register_columns()),
        }
    }

    /// The engine's shell running `sql` on the register.
    fn shell(&self, sql: &str) -> Command {
        match self {
            Store::Sqlite(dir) => {
                let mut command = Command::new("sqlite3");
                command.arg(dir.join("register.db")).arg(sql);
                command
            }
            Store::Postgres(server) => {
                let mut command = server.psql(REGISTER_DB);
                command.arg("-c").arg(sql);
                command
            }
        }
    }

    /// After the first full pass filled the state: on PostgreSQL, `VACUUM ANALYZE` of the state
    /// database, what autovacuum does to a daemon's tables within minutes of such a load. The
    /// polls measured right after the pass were planned with the statistics of empty tables:
    /// the read of the stored kinds of 1 000 cases took 3–8 ms in some polls and 61–82 ms in
    /// others (100 000 cases), 4–11 ms in every poll after the analysis.
    /// SQLite keeps no statistics unless told (`ANALYZE`), and fristvakt does not.
    fn settle_state(&self) -> Result<()> {
        if let Store::Postgres(server) = self {
            let status = server.psql(STATE_DB).arg("-c").arg("VACUUM ANALYZE").status().context("running psql")?;
            anyhow::ensure!(status.success(), "VACUUM ANALYZE of the state failed");
        }
        Ok(())
    }

    /// Runs `sql` (a change fristvakt should see) on the register.
    fn execute(&self, sql: &str) -> Result<()> {
        let status = self.shell(sql).status().with_context(|| format!("running the shell of {}", self.engine()))?;
        anyhow::ensure!(status.success(), "{} failed: {sql}", self.engine());
        Ok(())
    }
}

async fn bench(store: &Store<'_>, cases: usize, plan: &Plan, dir: &Path) -> Result<()> {
    let at = At { engine: store.engine(), cases };
    let runs = plan.runs;
    let (demo_today, start) = clock()?;
    let today = start.date_naive();
    let register_url = store.register_url();
    let env = [
        ("FRISTVAKT__REGISTER__URL".to_string(), register_url.clone()),
        ("FRISTVAKT__STATE__URL".to_string(), store.state_url(STATE_DB)),
        ("FRISTVAKT__MAIL__FILE_DIR".to_string(), dir.join("outbox").display().to_string()),
    ];
    let settings = Arc::new(config::load_with_env(None, env).map_err(|e| anyhow::anyhow!("{e}"))?);
    let options = DemoOptions { cases, seed: 1, today: demo_today, broken: 0 };
    let view = settings.register.view.clone();
    store.write_register(&view, demo::generate(&options)).await?;
    if plan.only_changed {
        return changed_polls(store, at, settings, start, runs).await;
    }

    // The baseline: the same columns of the same view, read by the engine's shell.
    let scan = raw_scan(store, &view, plan.runs);
    if plan.only_full {
        return full_passes(store, at, settings, start, runs, scan.as_ref()).await;
    }

    let mut now = start;
    // Above EVERY_ROW_MAX the first full pass (minutes) is made once, by the start-up process,
    // on the state the jobs below then use.
    let startup = if plan.processes && cases > EVERY_ROW_MAX {
        Some(fristvakt_process(store, dir, &register_url, STATE_DB)?.run_startup(at, today)?)
    } else {
        None
    };
    if startup.is_some() {
        // The process's poll set the watermark by the wall clock: the jobs here go on from it.
        now = now.max(Utc::now());
    }
    let app = App::start(settings.clone(), "bench", now).await?;
    reset_peak();
    let first_rss = if startup.is_none() {
        let t = Instant::now();
        let first = jobs::full_pass::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
        let first_time = Timing(vec![t.elapsed()]);
        let first_rss = peak_rss_mib();
        row(
            at,
            &format!(
                "first full pass ({} deadlines, {} notices)",
                first.sync.deadlines_stored,
                first.ladder.notices_enqueued()
            ),
            &first_time,
            scan.as_ref(),
            Goal::None,
        );
        first_rss
    } else {
        None
    };

    store.settle_state()?;
    reset_peak();
    let mut full = Vec::new();
    for _ in 0..plan.full_pass_runs {
        now += chrono::Duration::minutes(1);
        let t = Instant::now();
        jobs::full_pass::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
        full.push(t.elapsed());
    }
    let full = Timing(full);
    let full_rss = peak_rss_mib();
    row(at, &format!("steady full pass, against {}", store.scan_name()), &full, scan.as_ref(), Goal::Ratio(1.3));

    // The daemon's count behind the metrics, after the full pass and at most every 10 minutes
    // (a job of its own, not part of the poll).
    let t = Instant::now();
    jobs::gauges::run_once(&app, Moment::on(today, now)).await?;
    row(at, "gauges recount (the daemon's, after a full pass or 10 min)", &Timing(vec![t.elapsed()]), None, Goal::None);

    let mut quiet = Vec::new();
    for _ in 0..runs {
        now += chrono::Duration::minutes(1);
        let t = Instant::now();
        jobs::poll::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
        quiet.push(t.elapsed());
    }
    row(at, "poll, nothing changed, against the full pass", &Timing(quiet), Some(&full), Goal::Ratio(0.1));

    // 1 000 rows change, other rows each time.
    let (times, read) = changed_polls_on(store, &app, &view, &mut now, today, runs).await?;
    row(
        at,
        &format!("poll, 1 000 rows changed ({} read)", read.join("/")),
        &Timing(times),
        None,
        Goal::Within(Duration::from_millis(50)),
    );

    // A bulk update: every row one updated_at. The first poll reads all (they changed); those
    // inside the overlap window read them again, unchanged; after it, nothing.
    if plan.bulk_update {
        now += chrono::Duration::minutes(30);
        let stamp = (now - chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        store.execute(&format!("UPDATE {view} SET updated_at = '{stamp}'"))?;
        let t = Instant::now();
        jobs::poll::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
        row(
            at,
            "poll right after a bulk update (every row changed)",
            &Timing(vec![t.elapsed()]),
            Some(&full),
            Goal::None,
        );
        now += chrono::Duration::minutes(5);
        let t = Instant::now();
        let overlap = jobs::poll::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
        row(
            at,
            &format!("poll inside the overlap after it ({} re-read, unchanged)", overlap.sync.unchanged),
            &Timing(vec![t.elapsed()]),
            Some(&full),
            Goal::Ratio(0.1),
        );
        // The next poll's lower bound is the previous read's start minus the overlap (10 minutes):
        // one more poll inside it, then one after it.
        now += chrono::Duration::minutes(11);
        jobs::poll::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
        now += chrono::Duration::minutes(5);
        let t = Instant::now();
        let after = jobs::poll::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
        row(
            at,
            &format!("poll after the overlap, nothing changed ({} read)", after.sync.rows_read),
            &Timing(vec![t.elapsed()]),
            Some(&full),
            Goal::Ratio(0.1),
        );
    }

    // The compliance report over a year, by unit and kind, SQL-grouped.
    reset_peak();
    let request = report::Request {
        period: report::Period { from: NaiveDate::from_ymd_opt(2025, 11, 1).context("date")?, to: today },
        today,
        by: report::Dimension::parse_list("unit,kind").map_err(|e| anyhow::anyhow!(e))?,
        min_group: settings.report.min_group,
        suppress: true,
        chain_window_days: settings.rules.chain_window_days,
    };
    let mut timings = Vec::new();
    let mut total = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let compliance = report::compliance(&app.state, &request).await?;
        timings.push(t.elapsed());
        total = compliance.table.groups.len();
    }
    let report_rss = peak_rss_mib();
    row(
        at,
        &format!("compliance report, a year by unit and kind ({total} groups)"),
        &Timing(timings),
        None,
        Goal::None,
    );

    for (what, rss) in
        [("first full pass", first_rss), ("steady full pass", full_rss), ("compliance report", report_rss)]
    {
        if what == "first full pass" && startup.is_some() {
            continue;
        }
        let text = rss.map_or("?".to_string(), |m| format!("{m} MiB"));
        println!(
            "| {at} | peak memory of this process in the {what} (with what earlier phases left) | {text} | {text} \
             | – | – | – | |"
        );
    }
    app.close().await;

    // The daemon's own commands as processes of their own: their peak memory is theirs alone.
    if !plan.processes {
        return Ok(());
    }
    // On the state the start-up process filled: the jobs' own above EVERY_ROW_MAX, else a new one.
    let state = if startup.is_some() { STATE_DB } else { FRESH_STATE_DB };
    let process = fristvakt_process(store, dir, &register_url, state)?;
    let startup_peak = match startup {
        Some(peak) => peak,
        None => process.run_startup(at, today)?,
    };
    let day = today.to_string();
    let (took, full_peak) = process.run(&["poll", "--once", "--full", "--today", &day])?;
    row(at, "steady full pass, own process", &Timing(vec![took]), scan.as_ref(), Goal::Ratio(1.3));
    let report_args =
        ["report", "compliance", "--from", "2025-11-01", "--to", &day, "--today", &day, "--by", "unit,kind"];
    let (took, report_peak) =
        process.run(&[&report_args[..], &["--format", "html", "--output", "/dev/null"]].concat())?;
    row(at, "compliance report (HTML), own process", &Timing(vec![took]), None, Goal::None);
    for (what, peak) in
        [("start-up", startup_peak), ("steady full pass", full_peak), ("compliance report", report_peak)]
    {
        let met = if peak <= 100 { "yes" } else { "**no**" };
        println!(
            "| {at} | peak resident memory, {what} process | {peak} MiB | {peak} MiB | – | – | ≤ 100 MB | {met} |"
        );
    }
    Ok(())
}

/// The jobs of an `--only` measurement started at `start` (on the clock of [`clock`]), after a
/// first full pass in this process, with the state settled as after it; their day and now.
async fn after_first_full_pass(
    store: &Store<'_>,
    settings: Arc<config::Settings>,
    start: DateTime<Utc>,
) -> Result<(App, NaiveDate, DateTime<Utc>)> {
    let today = start.date_naive();
    let app = App::start(settings, "bench", start).await?;
    jobs::full_pass::run_once(&app, Moment::on(today, start)).await?.context("the poll lease")?;
    store.settle_state()?;
    Ok((app, today, start))
}

/// `--only changed-poll`: a first full pass in this process, then `runs` polls, each after 1 000
/// other rows changed (as the full run's polls of 1 000 changed rows), on the clock of [`clock`]
/// from `start`: each poll reads the 1 000 rows and nothing else.
async fn changed_polls(
    store: &Store<'_>,
    at: At,
    settings: Arc<config::Settings>,
    start: DateTime<Utc>,
    runs: usize,
) -> Result<()> {
    let view = settings.register.view.clone();
    let (app, today, mut now) = after_first_full_pass(store, settings, start).await?;
    now += chrono::Duration::minutes(1);
    jobs::poll::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
    eprintln!("fristvakt-bench: changed polls start (pid {})", std::process::id());
    let (times, read) = changed_polls_on(store, &app, &view, &mut now, today, runs).await?;
    eprintln!("fristvakt-bench: changed polls end");
    row(
        at,
        &format!("poll, 1 000 rows changed ({} read)", read.join("/")),
        &Timing(times),
        None,
        Goal::Within(Duration::from_millis(50)),
    );
    app.close().await;
    Ok(())
}

/// `--only full-pass`: a first full pass in this process, then `runs` steady full passes beside
/// the raw scan.
async fn full_passes(
    store: &Store<'_>,
    at: At,
    settings: Arc<config::Settings>,
    start: DateTime<Utc>,
    runs: usize,
    scan: Option<&Timing>,
) -> Result<()> {
    let (app, today, mut now) = after_first_full_pass(store, settings, start).await?;
    eprintln!("fristvakt-bench: steady full passes start (pid {})", std::process::id());
    let mut times = Vec::new();
    for _ in 0..runs {
        now += chrono::Duration::minutes(1);
        let t = Instant::now();
        jobs::full_pass::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
        times.push(t.elapsed());
    }
    eprintln!("fristvakt-bench: steady full passes end");
    row(at, &format!("steady full pass, against {}", store.scan_name()), &Timing(times), scan, Goal::Ratio(1.3));
    app.close().await;
    Ok(())
}

/// `runs` polls, each after 1 000 other rows of the register changed (a new caseworker and
/// `updated_at`): each poll reads cases whose prints are not in the print log yet, as a day's
/// changes would be. Between two, an unmeasured poll re-reads the rows of the one before in its
/// overlap window. Their times and the rows each read.
async fn changed_polls_on(
    store: &Store<'_>,
    app: &App,
    view: &str,
    now: &mut DateTime<Utc>,
    today: NaiveDate,
    runs: usize,
) -> Result<(Vec<Duration>, Vec<String>)> {
    let mut times = Vec::new();
    let mut read = Vec::new();
    for run in 0..runs {
        *now += chrono::Duration::minutes(30);
        let stamp = (*now - chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        store.execute(&format!(
            "UPDATE {view} SET caseworker = 'ny.handlaggare.{run}@kommun.example', updated_at = '{stamp}' \
             WHERE case_ref IN (SELECT case_ref FROM {view} ORDER BY case_ref LIMIT 1000 OFFSET {})",
            run * 1000
        ))?;
        let t = Instant::now();
        let changed = jobs::poll::run_once(app, Moment::on(today, *now)).await?.context("the poll lease")?;
        times.push(t.elapsed());
        read.push(changed.sync.rows_read.to_string());
        // The daemon's next poll, unmeasured: it reads these rows again (unchanged), as they lie
        // inside its overlap window; the measured poll after it reads only its own 1 000.
        *now += chrono::Duration::minutes(15);
        jobs::poll::run_once(app, Moment::on(today, *now)).await?.context("the poll lease")?;
    }
    Ok((times, read))
}

/// The `fristvakt` binary beside the benchmark's, configured for the register and the state
/// database `state`.
struct FristvaktProcess {
    binary: PathBuf,
    config: PathBuf,
}

fn fristvakt_process(store: &Store<'_>, dir: &Path, register_url: &str, state: &str) -> Result<FristvaktProcess> {
    let binary = std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("fristvakt"))
        .filter(|b| b.exists())
        .context("the fristvakt binary beside the benchmark's; build it first: cargo build --release")?;
    let config = dir.join(format!("bench-{state}.toml"));
    std::fs::write(
        &config,
        format!(
            "[register]\nurl = \"{register_url}\"\n[state]\nurl = \"{}\"\n[mail]\nfile_dir = \"{}\"\n",
            store.state_url(state),
            dir.join("outbox").display()
        ),
    )?;
    Ok(FristvaktProcess { binary, config })
}

impl FristvaktProcess {
    fn run(&self, args: &[&str]) -> Result<(Duration, u64)> {
        let mut command = Command::new(&self.binary);
        command.arg("--config").arg(&self.config).args(args).env_remove("FRISTVAKT_CONFIG").env("RUST_LOG", "error");
        child_peak(command)
    }

    /// Start-up to READY: migrates a new state and reads every row once, as the daemon does
    /// first; prints its row and returns its peak memory.
    fn run_startup(&self, at: At, today: NaiveDate) -> Result<u64> {
        let (took, peak) = self.run(&["poll", "--once", "--full", "--today", &today.to_string()])?;
        row(at, "start-up to READY: migrate + first full pass, own process", &Timing(vec![took]), None, Goal::None);
        Ok(peak)
    }
}

/// Runs `command` to its end; its wall time and its peak resident memory (VmHWM, read from
/// /proc every 10 ms while it runs: the last reading before it exits is its peak, give or take
/// the last 10 ms).
fn child_peak(mut command: Command) -> Result<(Duration, u64)> {
    let t = Instant::now();
    let mut child = command.stdout(std::process::Stdio::null()).spawn().context("starting fristvakt")?;
    let status_file = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text.lines().find(|l| l.starts_with("VmHWM:"));
            if let Some(kib) = hwm.and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()) {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    anyhow::ensure!(status.success(), "fristvakt {command:?} failed: {status}");
    Ok((t.elapsed(), peak_kib / 1024))
}

/// Reads the view's columns with the engine's shell, `runs` times (after one warm-up).
fn raw_scan(store: &Store<'_>, view: &str, runs: usize) -> Option<Timing> {
    let sql = store.scan_sql(view);
    let engine = store.engine();
    let once = || -> Option<Duration> {
        let t = Instant::now();
        let out = store.shell(&sql).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).output();
        match out {
            Ok(out) if out.status.success() => Some(t.elapsed()),
            Ok(out) => {
                eprintln!("raw scan: the {engine} shell failed: {}", String::from_utf8_lossy(&out.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("raw scan: cannot run the {engine} shell: {e}");
                None
            }
        }
    };
    // The warm-up, retried: the register was just written and may still be busy for a moment.
    let mut warm = once();
    for _ in 0..4 {
        if warm.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        warm = once();
    }
    warm?;
    let times: Option<Vec<Duration>> = (0..runs).map(|_| once()).collect();
    times.map(Timing)
}

/// Resets this process's peak resident memory (Linux ≥ 4.0), so that the next reading is the
/// peak of what follows.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The CPU time (user and system, every thread) this process has used so far, from /proc
/// (`None` where there is no /proc): whole clock ticks, enough for runs of a second or more.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports them in USER_HZ, 100 a second on every architecture it runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// VmHWM of this process, from /proc.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string(PathBuf::from("/proc/self/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
