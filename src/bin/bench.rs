//! `fristvakt-bench`: speed and memory figures of a poll at scale, printed, never asserted.
//!
//!     cargo run --release --bin fristvakt-bench -- --cases 1000000
//!     cargo run --release --bin fristvakt-bench -- --cases 1000000 --state-url postgres://…
//!
//! It fills a SQLite demo register with synthetic cases, then measures a full pass (read,
//! compute, store), the ladder evaluation, an incremental poll after ten rows changed, and the
//! peak resident memory of the process.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{NaiveDate, TimeZone, Utc};

use fristvakt::config::{self, DatabaseUrl};
use fristvakt::demo::{self, DemoOptions};
use fristvakt::poll;
use fristvakt::register::{self, Register};
use fristvakt::state::StateStore;

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

    let state = StateStore::connect(&settings.state.url).await?;
    state.migrate().await?;
    let register = Register::connect(&settings.register.url, &settings.register.view).await?;
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).single().context("now")?;

    let t = Instant::now();
    let full = poll::sync_register(&register, &state, &settings, today, now, true).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  full pass                {:>8.2} s  {} rows, {} deadlines, {:.0} rows/s",
        secs,
        full.rows_read,
        full.deadlines_stored,
        full.rows_read as f64 / secs
    );

    let t = Instant::now();
    let ladder = poll::evaluate_ladders(&state, &settings, today, now).await?;
    println!(
        "  ladder evaluation        {:>8.2} s  {} deadlines visited, {} notices, {} skipped steps",
        t.elapsed().as_secs_f64(),
        ladder.deadlines_visited,
        ladder.notices_enqueued(),
        ladder.skipped
    );

    let t = Instant::now();
    let again = poll::sync_register(&register, &state, &settings, today, now, true).await?;
    println!("  second full pass         {:>8.2} s  (idempotent: {} rows)", t.elapsed().as_secs_f64(), again.rows_read);

    let t = Instant::now();
    let incremental = poll::sync_register(&register, &state, &settings, today, now, false).await?;
    println!("  incremental, no change   {:>8.3} s  {} rows read", t.elapsed().as_secs_f64(), incremental.rows_read);

    let t = Instant::now();
    let counts = state.deadline_counts(today).await?;
    println!("  metrics deadline counts  {:>8.3} s  {} series", t.elapsed().as_secs_f64(), counts.len());

    println!("  peak resident memory     {:>8} MiB", peak_rss_mib().map(|m| m.to_string()).unwrap_or("?".into()));
    register.close().await;
    state.close().await;
    Ok(())
}

/// VmHWM of this process, from /proc.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string(PathBuf::from("/proc/self/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
