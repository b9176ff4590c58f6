//! `fristvakt` processes of their own, and the memory and CPU of this one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::NaiveDate;

use crate::store::Store;
use crate::table::{row, At, Goal, Timing};

/// The `fristvakt` binary beside the benchmark's, configured for the register and the state
/// database `state`.
pub(crate) struct FristvaktProcess {
    binary: PathBuf,
    config: PathBuf,
}

pub(crate) fn fristvakt_process(
    store: &Store<'_>,
    dir: &Path,
    register_url: &str,
    state: &str,
) -> Result<FristvaktProcess> {
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
    pub(crate) fn run(&self, args: &[&str]) -> Result<(Duration, u64)> {
        let mut command = Command::new(&self.binary);
        command.arg("--config").arg(&self.config).args(args).env_remove("FRISTVAKT_CONFIG").env("RUST_LOG", "error");
        child_peak(command)
    }

    /// Start-up to READY: migrates a new state and reads every row once, as the daemon does
    /// first; prints its row and returns its peak memory.
    pub(crate) fn run_startup(&self, at: At, today: NaiveDate) -> Result<u64> {
        let (took, peak) = self.run(&["poll", "--once", "--full", "--today", &today.to_string()])?;
        row(at, "start-up to READY: migrate + first full pass, own process", &Timing(vec![took]), None, Goal::None);
        Ok(peak)
    }
}

/// Runs `command` to its end; its wall time and its peak resident memory (VmHWM, read from
/// /proc every 10 ms while it runs: the last reading before it exits is its peak, give or take
/// the last 10 ms).
pub(crate) fn child_peak(mut command: Command) -> Result<(Duration, u64)> {
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

/// Resets this process's peak resident memory (Linux ≥ 4.0), so that the next reading is the
/// peak of what follows.
pub(crate) fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The CPU time (user and system, every thread) this process has used so far, from /proc
/// (`None` where there is no /proc): whole clock ticks, enough for runs of a second or more.
pub(crate) fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports them in USER_HZ, 100 a second on every architecture it runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// VmHWM of this process, from /proc.
pub(crate) fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string(PathBuf::from("/proc/self/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
