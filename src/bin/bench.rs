//! `fristvakt-bench`: speed and memory of fristvakt's jobs at scale, each beside its baseline in
//! the same run, printed as a Markdown table with the goal and whether it is met. A benchmark,
//! never a test: these figures depend on the machine.
//!
//!     cargo build --release && target/release/fristvakt-bench [--cases 100000,1000000] [--runs 3]
//!         [--notices 10000] [--engines sqlite,postgres] [--every-row] [--placements 10]
//!         [--only changed-poll|full-pass]
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
//! The register also has a placements view (contract §1b) of `--placements` per cent of the
//! cases (10 by default: 100 000 at 1 000 000 cases; 0 for none), the demo's placements with
//! their recorded reviews (`bench/placements.rs`): the full pass reads both views and is set
//! beside a raw scan of both; the polls of 1 000 changed rows also give 1 000 placements a new
//! caseworker, and record a review in 1 000 placements under review (each closing its running
//! `placement_review` cycle and starting the next). Their baseline is the cases-only poll: the
//! same register read without its placements view into a state of its own (a second first full
//! pass, unmeasured), whose polls of 1 000 changed cases alternate with the others (issue 27
//! item 5: a poll of either view no slower than the cases-only poll).
//!
//! Above `EVERY_ROW_MAX` cases the run keeps to what the goals need there (the steady full pass,
//! the polls with nothing and with 1 000 rows changed, SQLite's processes; no bulk update, no
//! PostgreSQL processes) and a row says so, unless `--every-row`.
//!
//! `--only changed-poll` makes only what the poll of 1 000 changed rows needs (the register, a
//! first full pass in this process) and then that poll `--runs` times, each after 1 000 other
//! rows changed; it prints a line to standard error before the first, so that a
//! profiler can attach to the process then (`perf record -p`). `--only full-pass` does the same
//! for the steady full pass: the register, a first full pass, then `--runs` steady full passes,
//! each right after a raw scan, so that both medians come from the same minutes.
//!
//! On PostgreSQL the state database is vacuumed and analysed after the first full pass, as
//! autovacuum does on a daemon's server (see `Store::settle_state`).
//!
//! Times are the minimum and median of `--runs` runs. A raw SQLite scan needs the `sqlite3` shell
//! on the PATH (Debian package `sqlite3`); without it that row says so. PostgreSQL needs the
//! server binaries (`initdb`, `pg_ctl`, `postgres`, `psql`; Debian package `postgresql`); without
//! them its rows are replaced by one saying so. The dispatch measurement (`--notices`) uses a
//! SQLite state.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use fristvakt::app::{App, Moment};
use fristvakt::config::{self, Engine};
use fristvakt::demo::{self, DemoOptions};
use fristvakt::jobs;
use fristvakt::report;

#[path = "bench/dispatch.rs"]
mod dispatch;
#[path = "bench/placements.rs"]
mod placements;
#[path = "bench/postgres.rs"]
mod postgres;
#[path = "bench/process.rs"]
mod process;
#[path = "bench/store.rs"]
mod store;
#[path = "bench/table.rs"]
mod table;

use crate::dispatch::dispatch_bench;
use crate::process::{fristvakt_process, peak_rss_mib, reset_peak};
use crate::store::{
    placement_columns, raw_scan, register_columns, Store, CASES_ONLY_STATE_DB, FRESH_STATE_DB, REGISTER_DB, STATE_DB,
};
use crate::table::{row, At, Goal, Timing};

/// The command line, as `--help` and a wrong argument show it.
const USAGE: &str = "[--cases N[,N…]] [--runs R] [--notices N] [--engines sqlite,postgres] [--every-row] \
                     [--placements PER_CENT] [--only changed-poll|full-pass]";

fn main() -> Result<()> {
    let mut sizes = vec![100_000usize];
    let mut runs = 3usize;
    let mut notices = 10_000usize;
    let mut engines = vec![Engine::Sqlite, Engine::Postgres];
    let mut every_row = false;
    let mut only_changed = false;
    let mut only_full = false;
    let mut placements = 10usize;
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
            "--placements" => {
                placements = args.next().context("--placements needs a per cent")?.parse().context("--placements N")?;
            }
            "--only" => match args.next().as_deref() {
                Some("changed-poll") => only_changed = true,
                Some("full-pass") => only_full = true,
                other => anyhow::bail!("--only takes changed-poll or full-pass, not {other:?}"),
            },
            "--help" | "-h" => {
                println!("usage: fristvakt-bench {USAGE}\n\nSee the comment at the top of src/bin/bench.rs and BENCHMARKS.md.");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}; use {USAGE}"),
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
            plan.placements = placements;
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

pub(crate) fn engine_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "SQLite",
        Engine::Postgres => "PostgreSQL",
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
    /// Placements in the register's placements view, per cent of the cases (0: no such view).
    placements: usize,
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
            placements: 10,
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
            for database in [REGISTER_DB, STATE_DB, FRESH_STATE_DB, CASES_ONLY_STATE_DB] {
                server.create_database(database).await.map_err(anyhow::Error::msg)?;
            }
            bench(&Store::Postgres(&server), cases, plan, dir).await
        }
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
    // The cases-only poller: the same register read without its placements view (a view name
    // the register does not have turns the placement clocks off), into a state of its own.
    let cases_only = if plan.placements > 0 {
        let mut env = env.to_vec();
        env[1].1 = store.state_url(CASES_ONLY_STATE_DB);
        env.push(("FRISTVAKT__REGISTER__PLACEMENTS_VIEW".to_string(), "fristvakt_bench_no_placements".to_string()));
        Some(Arc::new(config::load_with_env(None, env).map_err(|e| anyhow::anyhow!("{e}"))?))
    } else {
        None
    };
    let settings = Arc::new(config::load_with_env(None, env).map_err(|e| anyhow::anyhow!("{e}"))?);
    let options = DemoOptions { cases, seed: 1, today: demo_today, broken: 0 };
    let view = settings.register.view.clone();
    store.write_register(&view, demo::generate(&options)).await?;
    let mut views = vec![(view.clone(), register_columns())];
    if plan.placements > 0 {
        let rows = placements::bench_placements(&options, plan.placements);
        let written = placements::write_placements(store, &settings.register.placements_view, &rows).await?;
        println!("| {at} | the placements view: {written} placements, their reviews recorded | – | – | – | – | – | |");
        views.push((settings.register.placements_view.clone(), placement_columns()));
    }
    let scan_name = store.scan_name(views.len());
    if plan.only_changed {
        return changed_polls(store, at, settings, cases_only, start, runs).await;
    }

    if plan.only_full {
        return full_passes(store, at, settings, start, runs, &views, &scan_name).await;
    }
    // The baseline: the same columns of the same views, read by the engine's shell.
    let scan = raw_scan(store, &views, plan.runs);

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

    store.settle_state(STATE_DB)?;
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
    row(at, &format!("steady full pass, against {scan_name}"), &full, scan.as_ref(), Goal::Ratio(1.3));

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
    let cases_only = match cases_only {
        Some(settings) => Some(cases_only_app(store, settings, now).await?),
        None => None,
    };
    changed_poll_rows(store, at, (&app, cases_only.as_ref()), &settings, &mut now, today, runs).await?;
    if let Some(cases_only) = cases_only {
        cases_only.close().await;
    }

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
    store.settle_state(STATE_DB)?;
    Ok((app, today, start))
}

/// The cases-only poller of `settings` (its own state, the register without its placements
/// view), after its first full pass at `now` (unmeasured) and settled as the state is: the
/// baseline of the placements' polls of 1 000 changed rows (issue 27 item 5: no slower than the
/// cases-only poll).
async fn cases_only_app(store: &Store<'_>, settings: Arc<config::Settings>, now: DateTime<Utc>) -> Result<App> {
    let app = App::start(settings, "bench-cases-only", now).await?;
    jobs::full_pass::run_once(&app, Moment::on(now.date_naive(), now)).await?.context("the poll lease")?;
    store.settle_state(CASES_ONLY_STATE_DB)?;
    Ok(app)
}

/// `--only changed-poll`: a first full pass in this process, then `runs` polls, each after 1 000
/// other rows changed (as the full run's polls of 1 000 changed rows), on the clock of [`clock`]
/// from `start`: each poll reads the 1 000 rows and nothing else.
async fn changed_polls(
    store: &Store<'_>,
    at: At,
    settings: Arc<config::Settings>,
    cases_only: Option<Arc<config::Settings>>,
    start: DateTime<Utc>,
    runs: usize,
) -> Result<()> {
    let (app, today, mut now) = after_first_full_pass(store, settings.clone(), start).await?;
    let cases_only = match cases_only {
        Some(settings) => Some(cases_only_app(store, settings, start).await?),
        None => None,
    };
    now += chrono::Duration::minutes(1);
    for app in std::iter::once(&app).chain(&cases_only) {
        jobs::poll::run_once(app, Moment::on(today, now)).await?.context("the poll lease")?;
    }
    eprintln!("fristvakt-bench: changed polls start (pid {})", std::process::id());
    changed_poll_rows(store, at, (&app, cases_only.as_ref()), &settings, &mut now, today, runs).await?;
    eprintln!("fristvakt-bench: changed polls end");
    for app in std::iter::once(app).chain(cases_only) {
        app.close().await;
    }
    Ok(())
}

/// The rows of the polls of 1 000 changed rows: of the cases view (a new caseworker), and, when
/// the register has placements, of the placements view (a new caseworker, the same change; and a
/// review recorded, closing a cycle: the most a placement's change writes), with the cases-only
/// poller's (`cases_only`: the same register without its placements view, a state of its own)
/// as their baseline. The kinds alternate poll by poll, so that every median comes from the same
/// minutes of a shared machine; each of them is judged against the cases-only poll (issue 27
/// item 5: no slower), and that poll against the budget of a poll (≤ 50 ms).
async fn changed_poll_rows(
    store: &Store<'_>,
    at: At,
    (app, cases_only): (&App, Option<&App>),
    settings: &config::Settings,
    now: &mut DateTime<Utc>,
    today: NaiveDate,
    runs: usize,
) -> Result<()> {
    let view = settings.register.view.clone();
    // The `k`-th thousand cases in reference order: the cases' poll changes the even ones, the
    // cases-only poll the odd ones.
    let change = |k: usize, stamp: DateTime<Utc>| {
        let stamp = stamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        store.execute(&format!(
            "UPDATE {view} SET caseworker = 'ny.handlaggare.{k}@kommun.example', updated_at = '{stamp}' \
             WHERE case_ref IN (SELECT case_ref FROM {view} ORDER BY case_ref LIMIT 1000 OFFSET {})",
            k * 1000
        ))
    };
    let with_placements = cases_only.is_some();
    let placements_view = settings.register.placements_view.clone();
    let review =
        |run: usize, stamp: DateTime<Utc>| placements::record_reviews(store, &placements_view, run, today, stamp);
    // Each run reviews other placements; runs past those under review would poll nothing.
    let review_runs = if with_placements { runs.min(placements::review_runs(store, &placements_view)?) } else { 0 };
    if with_placements && review_runs < runs {
        eprintln!(
            "fristvakt-bench: {review_runs} of {runs} runs of the placements' reviews (1 000 placements under \
             review each): raise --placements for more"
        );
    }
    let reassign = |run: usize, stamp: DateTime<Utc>| placements::reassign(store, &placements_view, run, stamp);
    let reassign_runs = if with_placements { runs.min(placements::reassign_runs(store, &placements_view)?) } else { 0 };
    let (mut cases, mut reassigned, mut reviewed) = (Changed::default(), Changed::default(), Changed::default());
    let mut baseline = Changed::default();
    // The other poller reads each change to the cases view too (unmeasured), so that its own
    // measured poll reads only its own 1 000 rows; the placements' changes it does not see.
    let (main, other) = (std::slice::from_ref(&app), cases_only.as_slice());
    for run in 0..runs {
        if let Some(cases_only) = cases_only {
            baseline.poll(cases_only, &|run, stamp| change(2 * run + 1, stamp), run, now, today, main).await?;
        }
        cases.poll(app, &|run, stamp| change(2 * run, stamp), run, now, today, other).await?;
        if run < reassign_runs {
            reassigned.poll(app, &reassign, run, now, today, &[]).await?;
        }
        if run < review_runs {
            reviewed.poll(app, &review, run, now, today, &[]).await?;
        }
    }
    let baseline_timing = Timing(baseline.times);
    let cases_timing = Timing(cases.times);
    if with_placements {
        row(
            at,
            &format!(
                "poll, 1 000 rows changed, cases only (the register without its placements view; {} read): the baseline",
                baseline.read.join("/")
            ),
            &baseline_timing,
            None,
            Goal::Within(Duration::from_millis(50)),
        );
    }
    let cases_name = format!(
        "poll, 1 000 rows changed ({} read, {} pending notices cancelled)",
        cases.read.join("/"),
        cases.cancelled.join("/")
    );
    match with_placements {
        true => row(
            at,
            &format!("{cases_name}, with the placements view, against the cases-only poll"),
            &cases_timing,
            Some(&baseline_timing),
            Goal::Ratio(1.0),
        ),
        false => row(at, &cases_name, &cases_timing, None, Goal::Within(Duration::from_millis(50))),
    }
    // Beside the goal, each placements' poll against the cases' poll with placements too (the
    // benchmark's baseline before the cases-only poll's row).
    let beside_cases = |timing: &Timing| {
        let ratio = timing.median().as_secs_f64() / cases_timing.median().as_secs_f64().max(f64::MIN_POSITIVE);
        format!("{ratio:.2}× the cases' poll with placements")
    };
    if reassign_runs > 0 {
        let timing = Timing(reassigned.times);
        row(
            at,
            &format!(
                "poll, 1 000 placements changed: a new caseworker ({} read; {}), against the cases-only poll",
                reassigned.read.join("/"),
                beside_cases(&timing)
            ),
            &timing,
            Some(&baseline_timing),
            Goal::Ratio(1.0),
        );
    }
    if review_runs > 0 {
        let timing = Timing(reviewed.times);
        row(
            at,
            &format!(
                "poll, 1 000 placements changed: a review recorded, a cycle closed ({} read, {} pending notices \
                 cancelled; {}), against the cases-only poll",
                reviewed.read.join("/"),
                reviewed.cancelled.join("/"),
                beside_cases(&timing)
            ),
            &timing,
            Some(&baseline_timing),
            Goal::Ratio(1.0),
        );
    }
    Ok(())
}

/// `--only full-pass`: a first full pass in this process, then `runs` steady full passes, each
/// right after a raw scan of `views`: on a shared machine the scan's own time swung by a third
/// between runs of one binary (BENCHMARKS.md, "Prints for the placements"), so a scan made
/// before all the passes set them beside another moment's load.
async fn full_passes(
    store: &Store<'_>,
    at: At,
    settings: Arc<config::Settings>,
    start: DateTime<Utc>,
    runs: usize,
    views: &[(String, String)],
    scan_name: &str,
) -> Result<()> {
    let (app, today, mut now) = after_first_full_pass(store, settings, start).await?;
    eprintln!("fristvakt-bench: steady full passes start (pid {})", std::process::id());
    let (mut times, mut scans) = (Vec::new(), Some(Vec::new()));
    for _ in 0..runs {
        // A failed scan leaves the row without a baseline, as `raw_scan` does.
        scans = scans.zip(raw_scan(store, views, 1)).map(|(mut all, one)| {
            all.extend(one.0);
            all
        });
        now += chrono::Duration::minutes(1);
        let t = Instant::now();
        jobs::full_pass::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
        times.push(t.elapsed());
    }
    eprintln!("fristvakt-bench: steady full passes end");
    let scan = scans.map(Timing);
    let name = format!("steady full pass, each after {scan_name}");
    row(at, &name, &Timing(times), scan.as_ref(), Goal::Ratio(1.3));
    app.close().await;
    Ok(())
}

/// Polls of 1 000 changed rows, one kind of change: their times and the rows each read.
#[derive(Default)]
struct Changed {
    times: Vec<Duration>,
    read: Vec<String>,
    /// The pending notices each poll cancelled (of the deadlines it closed).
    cancelled: Vec<String>,
}

impl Changed {
    /// One poll after `change(run, stamp)` changed 1 000 other rows of the register (stamped
    /// `updated_at` = `stamp`): it reads rows whose prints are not in the print log yet, as a
    /// day's changes would be. After it, an unmeasured poll re-reads them in its overlap window,
    /// so that the next measured poll reads only its own 1 000.
    /// `others` are the other pollers of the register: each reads the change in an unmeasured
    /// poll of its own after this one.
    async fn poll(
        &mut self,
        app: &App,
        change: &dyn Fn(usize, DateTime<Utc>) -> Result<()>,
        run: usize,
        now: &mut DateTime<Utc>,
        today: NaiveDate,
        others: &[&App],
    ) -> Result<()> {
        *now += chrono::Duration::minutes(30);
        change(run, *now - chrono::Duration::minutes(1))?;
        let t = Instant::now();
        let changed = jobs::poll::run_once(app, Moment::on(today, *now)).await?.context("the poll lease")?;
        self.times.push(t.elapsed());
        self.read.push((changed.sync.rows_read + changed.sync.placement_rows_read).to_string());
        self.cancelled.push(changed.sync.notices_cancelled.to_string());
        // The daemon's next poll, unmeasured: it reads these rows again (unchanged), as they lie
        // inside its overlap window.
        *now += chrono::Duration::minutes(15);
        for app in std::iter::once(&app).chain(others) {
            jobs::poll::run_once(app, Moment::on(today, *now)).await?.context("the poll lease")?;
        }
        Ok(())
    }
}
