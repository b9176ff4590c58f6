//! The catalogue of every metric fristvakt exports, rendered in the Prometheus text format.
//!
//! Architecture invariant: labels come only from bounded sets — unit codes, kinds, statuses,
//! ladder steps, outcomes, reasons, error classes — never a case reference or an address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::register::RejectReason;
use crate::state::OutboxState;

/// Upper bounds (seconds) of the poll duration histogram: a steady-state poll takes well under a
/// second, a full pass over a million cases minutes.
const POLL_BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; POLL_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// A point-in-time gauge stored as f64 bits.
#[derive(Default)]
struct Gauge(AtomicU64);

impl Gauge {
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Every metric of the process. Cheap to update from any task.
#[derive(Default)]
pub struct Metrics {
    poll_duration: Mutex<BTreeMap<&'static str, Histogram>>,
    polls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    rows_read: AtomicU64,
    rows_rejected: Mutex<BTreeMap<&'static str, u64>>,
    last_successful_poll: Gauge,
    register_staleness: Gauge,
    deadlines: Mutex<BTreeMap<(String, &'static str, &'static str), i64>>,
    notices: Mutex<BTreeMap<(&'static str, String, &'static str), u64>>,
    outbox: Mutex<BTreeMap<&'static str, i64>>,
    smtp_errors: Mutex<BTreeMap<&'static str, u64>>,
    digests_sent: AtomicU64,
    caseworker_fallbacks: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves plain numbers behind; keep serving them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics::default();
        {
            let mut rejected = lock(&m.rows_rejected);
            for r in RejectReason::ALL {
                rejected.insert(r.as_str(), 0);
            }
            let mut outbox = lock(&m.outbox);
            for s in OutboxState::ALL {
                outbox.insert(s.as_str(), 0);
            }
        }
        m
    }

    /// A finished poll: `kind` is "incremental" or "full".
    pub fn observe_poll(&self, kind: &'static str, duration: Duration, ok: bool) {
        let secs = duration.as_secs_f64();
        let mut hist = lock(&self.poll_duration);
        let h = hist.entry(kind).or_default();
        for (i, bound) in POLL_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
        *lock(&self.polls).entry((kind, if ok { "ok" } else { "error" })).or_default() += 1;
    }

    pub fn add_rows(&self, read: u64, rejected: &BTreeMap<RejectReason, u64>) {
        self.rows_read.fetch_add(read, Ordering::Relaxed);
        let mut map = lock(&self.rows_rejected);
        for (reason, n) in rejected {
            *map.entry(reason.as_str()).or_default() += n;
        }
    }

    pub fn set_last_successful_poll(&self, unix_seconds: f64) {
        self.last_successful_poll.set(unix_seconds);
    }

    pub fn last_successful_poll(&self) -> f64 {
        self.last_successful_poll.get()
    }

    pub fn set_register_staleness(&self, seconds: f64) {
        self.register_staleness.set(seconds);
    }

    /// Replaces the deadline counts by (unit, kind, status).
    pub fn set_deadlines(&self, counts: BTreeMap<(String, &'static str, &'static str), i64>) {
        *lock(&self.deadlines) = counts;
    }

    /// Counts notices by kind, step and outcome (enqueued, skipped, sent, retrying, dead, postponed).
    pub fn add_notice(&self, kind: &'static str, step: String, outcome: &'static str, n: u64) {
        *lock(&self.notices).entry((kind, step, outcome)).or_default() += n;
    }

    pub fn set_outbox(&self, depth: &std::collections::HashMap<OutboxState, i64>) {
        let mut map = lock(&self.outbox);
        for s in OutboxState::ALL {
            map.insert(s.as_str(), depth.get(&s).copied().unwrap_or(0));
        }
    }

    pub fn add_smtp_error(&self, class: &'static str, n: u64) {
        *lock(&self.smtp_errors).entry(class).or_default() += n;
    }

    pub fn add_digests_sent(&self, n: u64) {
        self.digests_sent.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_caseworker_fallbacks(&self, n: u64) {
        self.caseworker_fallbacks.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };

        family(&mut out, "fristvakt_build_info", "gauge", "Version of the running fristvakt.");
        let _ = writeln!(out, "fristvakt_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));

        family(&mut out, "fristvakt_poll_duration_seconds", "histogram", "Duration of register polls.");
        for (kind, h) in lock(&self.poll_duration).iter() {
            for (i, bound) in POLL_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "fristvakt_poll_duration_seconds_bucket{{pass=\"{kind}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(out, "fristvakt_poll_duration_seconds_bucket{{pass=\"{kind}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "fristvakt_poll_duration_seconds_sum{{pass=\"{kind}\"}} {}", h.sum);
            let _ = writeln!(out, "fristvakt_poll_duration_seconds_count{{pass=\"{kind}\"}} {}", h.count);
        }

        family(&mut out, "fristvakt_polls_total", "counter", "Register polls by pass and result.");
        for ((kind, result), n) in lock(&self.polls).iter() {
            let _ = writeln!(out, "fristvakt_polls_total{{pass=\"{kind}\",result=\"{result}\"}} {n}");
        }

        family(&mut out, "fristvakt_register_rows_read_total", "counter", "Register rows read.");
        let _ = writeln!(out, "fristvakt_register_rows_read_total {}", self.rows_read.load(Ordering::Relaxed));

        family(&mut out, "fristvakt_register_rows_rejected_total", "counter", "Register rows skipped, by reason.");
        for (reason, n) in lock(&self.rows_rejected).iter() {
            let _ = writeln!(out, "fristvakt_register_rows_rejected_total{{reason=\"{reason}\"}} {n}");
        }

        family(
            &mut out,
            "fristvakt_last_successful_poll_timestamp_seconds",
            "gauge",
            "Unix time of the last successful poll.",
        );
        let _ = writeln!(out, "fristvakt_last_successful_poll_timestamp_seconds {}", self.last_successful_poll.get());

        family(
            &mut out,
            "fristvakt_register_staleness_seconds",
            "gauge",
            "Age of the newest updated_at in the register.",
        );
        let _ = writeln!(out, "fristvakt_register_staleness_seconds {}", self.register_staleness.get());

        family(&mut out, "fristvakt_deadlines", "gauge", "Deadlines by unit, kind and status today.");
        for ((unit, kind, status), n) in lock(&self.deadlines).iter() {
            let _ = writeln!(
                out,
                "fristvakt_deadlines{{unit=\"{}\",kind=\"{kind}\",status=\"{status}\"}} {n}",
                escape_label(unit)
            );
        }

        family(&mut out, "fristvakt_notices_total", "counter", "Notices by kind, ladder step and outcome.");
        for ((kind, step, outcome), n) in lock(&self.notices).iter() {
            let _ = writeln!(
                out,
                "fristvakt_notices_total{{kind=\"{kind}\",step=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape_label(step)
            );
        }

        family(&mut out, "fristvakt_outbox", "gauge", "Outbox rows by state.");
        for (state, n) in lock(&self.outbox).iter() {
            let _ = writeln!(out, "fristvakt_outbox{{state=\"{state}\"}} {n}");
        }

        family(&mut out, "fristvakt_smtp_errors_total", "counter", "Failed mail deliveries by error class.");
        for (class, n) in lock(&self.smtp_errors).iter() {
            let _ = writeln!(out, "fristvakt_smtp_errors_total{{class=\"{class}\"}} {n}");
        }

        family(&mut out, "fristvakt_digests_sent_total", "counter", "Daily digests sent.");
        let _ = writeln!(out, "fristvakt_digests_sent_total {}", self.digests_sent.load(Ordering::Relaxed));

        family(
            &mut out,
            "fristvakt_caseworker_fallbacks_total",
            "counter",
            "Notices sent to the team lead because the caseworker address was missing or invalid.",
        );
        let _ =
            writeln!(out, "fristvakt_caseworker_fallbacks_total {}", self.caseworker_fallbacks.load(Ordering::Relaxed));
        out
    }
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_with_bounded_labels() {
        let m = Metrics::new();
        m.observe_poll("incremental", Duration::from_millis(300), true);
        m.add_notice("assessment", "-3".into(), "sent", 2);
        m.set_deadlines(BTreeMap::from([(("BRO-BU".to_string(), "assessment", "overdue"), 4)]));
        let text = m.render();
        assert!(text.contains("fristvakt_poll_duration_seconds_bucket{pass=\"incremental\",le=\"0.5\"} 1"));
        assert!(text.contains("fristvakt_poll_duration_seconds_bucket{pass=\"incremental\",le=\"0.25\"} 0"));
        assert!(text.contains("fristvakt_notices_total{kind=\"assessment\",step=\"-3\",outcome=\"sent\"} 2"));
        assert!(text.contains("fristvakt_deadlines{unit=\"BRO-BU\",kind=\"assessment\",status=\"overdue\"} 4"));
        assert!(text.contains("fristvakt_register_rows_rejected_total{reason=\"bad_date\"} 0"));
        assert!(text.contains("fristvakt_outbox{state=\"dead\"} 0"));
    }
}
