//! The benchmark's table: each measurement's row beside its baseline and goal.

use std::time::Duration;

/// Times of several runs.
pub(crate) struct Timing(pub(crate) Vec<Duration>);

impl Timing {
    pub(crate) fn min(&self) -> Duration {
        self.0.iter().copied().min().unwrap_or_default()
    }

    pub(crate) fn median(&self) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }
}

pub(crate) fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// The first two cells of a row: the engine of the register and state, and the number of cases.
#[derive(Clone, Copy)]
pub(crate) struct At {
    pub(crate) engine: &'static str,
    pub(crate) cases: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} | {}", self.engine, self.cases)
    }
}

/// One table row: a measurement, its baseline (when it has one), the ratio and the goal.
pub(crate) fn row(at: At, what: &str, timing: &Timing, baseline: Option<&Timing>, goal: Goal) {
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
pub(crate) enum Goal {
    None,
    /// At most this ratio to the baseline.
    Ratio(f64),
    /// At most this long.
    Within(Duration),
}

impl Goal {
    pub(crate) fn judge(self, median: Duration, baseline: Option<Duration>) -> (String, &'static str) {
        let yes_no = |ok: bool| if ok { "yes" } else { "**no**" };
        match (self, baseline) {
            (Goal::None, _) => ("–".into(), ""),
            (Goal::Ratio(r), Some(b)) => (format!("≤ {r}×"), yes_no(median.as_secs_f64() <= r * b.as_secs_f64())),
            (Goal::Ratio(r), None) => (format!("≤ {r}×"), "no baseline"),
            (Goal::Within(d), _) => (format!("≤ {}", secs(d)), yes_no(median <= d)),
        }
    }
}
