//! `fristvakt-bench`: speed and memory figures of a poll at scale, printed, never asserted.
//!
//!     cargo run --release --bin fristvakt-bench -- --cases 1000000
//!     cargo run --release --bin fristvakt-bench -- --cases 1000000 --state-url postgres://…
//!
//! It fills a SQLite demo register with synthetic cases, then measures a full pass (read,
//! compute, store, record the notices due), the ladder job, an incremental poll with nothing
//! changed, and the
//! peak resident memory of the process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{NaiveDate, TimeZone, Utc};

use fristvakt::app::{App, Moment};
use fristvakt::config::{self, DatabaseUrl};
use fristvakt::demo::{self, DemoOptions};
use fristvakt::jobs;
use fristvakt::register;

fn main() -> Result<()> {
    let mut cases = 100_000usize;
    let mut state_url: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cases" => cases = args.next().context("--cases needs a number")?.parse().context("--cases N")?,
            "--state-url" => state_url = Some(args.next().context("--state-url needs a URL")?),
            other => anyhow::bail!("unknown argument {other:?}; use --cases N [--state-url URL]"),
        }
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(cases, state_url))
}

async fn bench(cases: usize, state_url: Option<String>) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("fristvakt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(cases, state_url, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(cases: usize, state_url: Option<String>, dir: &std::path::Path) -> Result<()> {
    let today = NaiveDate::from_ymd_opt(2026, 11, 25).context("date")?;
    let register_url = format!("sqlite://{}", dir.join("register.db").display());
    let state_url = state_url.unwrap_or_else(|| format!("sqlite://{}", dir.join("state.db").display()));
    let env = [
        ("FRISTVAKT__REGISTER__URL".to_string(), register_url.clone()),
        ("FRISTVAKT__STATE__URL".to_string(), state_url),
        ("FRISTVAKT__MAIL__FILE_DIR".to_string(), dir.join("outbox").display().to_string()),
    ];
    let settings = config::load_with_env(None, env).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("fristvakt-bench: {cases} cases, state {}", settings.state.url.redacted());

    let t = Instant::now();
    let url = DatabaseUrl::parse(&register_url).map_err(|e| anyhow::anyhow!(e))?;
    let options = DemoOptions { cases, seed: 1, today, broken: 0 };
    register::write_demo_cases(&url, &settings.register.view, demo::generate(&options)).await?;
    println!("  fill register            {:>8.2} s", t.elapsed().as_secs_f64());

    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).single().context("now")?;
    let app = App::start(Arc::new(settings), "bench", now).await?;
    let at = Moment::on(today, now);

    let t = Instant::now();
    let first = jobs::full_pass::run_once(&app, at).await?.context("the poll lease")?;
    let secs = t.elapsed().as_secs_f64();
    let (full, ladder) = (&first.sync, &first.ladder);
    println!(
        "  first full pass job      {:>8.2} s  {} rows, {} deadlines, {:.0} rows/s; {} notices, {} skipped steps",
        secs,
        full.rows_read,
        full.deadlines_stored,
        full.rows_read as f64 / secs,
        ladder.notices_enqueued(),
        ladder.skipped
    );

    let t = Instant::now();
    let ladder = jobs::ladder::run_once(&app, at).await?.context("the poll lease")?;
    println!(
        "  ladder job, steps done   {:>8.2} s  {} deadlines visited",
        t.elapsed().as_secs_f64(),
        ladder.deadlines_visited
    );

    let t = Instant::now();
    let again = jobs::full_pass::run_once(&app, at).await?.context("the poll lease")?;
    println!(
        "  second full pass job     {:>8.2} s  (idempotent: {} rows)",
        t.elapsed().as_secs_f64(),
        again.sync.rows_read
    );

    let t = Instant::now();
    let incremental = jobs::poll::run_once(&app, at).await?.context("the poll lease")?;
    println!(
        "  poll job, no change      {:>8.3} s  {} rows read",
        t.elapsed().as_secs_f64(),
        incremental.sync.rows_read
    );

    let state = &app.state;
    let t = Instant::now();
    let counts = state.deadline_counts(today).await?;
    println!("  metrics deadline counts  {:>8.3} s  {} series", t.elapsed().as_secs_f64(), counts.len());

    println!("  peak resident memory     {:>8} MiB", peak_rss_mib().map(|m| m.to_string()).unwrap_or("?".into()));
    app.close().await;
    Ok(())
}

/// VmHWM of this process, from /proc.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string(PathBuf::from("/proc/self/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
