//! The catalogue of every metric fristvakt exports, kept in a `prometheus-client` registry and
//! rendered in the Prometheus text format (version 0.0.4).
//!
//! Architecture invariant: labels come only from bounded sets — unit codes, kinds, statuses,
//! ladder steps, outcomes, reasons, error classes — never a case reference or an address. Every
//! label set is a typed struct; every label value other than the unit code and the ladder step
//! is an enum, so an unbounded value cannot reach a label by accident.
//!
//! Names: `prometheus-client` appends `_total` to counters and `_info` to info metrics when it
//! encodes them (and panics in debug builds on a counter registered with `_total`), so they are
//! registered without the suffix. It also appends the full stop to each help text.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::domain::{named_enum, ErrorClass};
use crate::mail::DeadLetterCause;
use crate::register::RejectReason;
use crate::report::Tally;
use crate::rules::deadline::{Kind, Status};
use crate::state::OutboxState;

/// Upper bounds (seconds) of the poll duration histogram: a steady-state poll takes well under a
/// second, a full pass over a million cases minutes.
const POLL_BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

named_enum! {
    /// Which register pass a poll was.
    pub enum Pass as "poll pass" {
        Incremental = "incremental",
        Full = "full",
    }
}

named_enum! {
    /// How a poll ended.
    enum PollResult as "poll result" {
        Ok = "ok",
        Error = "error",
    }
}

named_enum! {
    /// What happened to notices.
    pub enum Outcome as "notice outcome" {
        Enqueued = "enqueued",
        Skipped = "skipped",
        Sent = "sent",
        Retrying = "retrying",
        Dead = "dead",
        Postponed = "postponed",
    }
}

/// Every label value other than the unit code and the ladder step is an enum with its stable
/// machine name (`as_str`); the labels use exactly those, so a value outside its set cannot be
/// written.
macro_rules! label_value_as_str {
    ($($ty:ty),+) => {
        $(
            impl EncodeLabelValue for $ty {
                fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                    EncodeLabelValue::encode(&self.as_str(), encoder)
                }
            }
        )+
    };
}

label_value_as_str!(Kind, Status, RejectReason, OutboxState, Pass, PollResult, Outcome, ErrorClass, DeadLetterCause);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PassLabels {
    pass: Pass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PollLabels {
    pass: Pass,
    result: PollResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: RejectReason,
}

/// The `unit` label of a deadline whose unit is not configured (no `[units."CODE"]` table).
pub const OTHER_UNIT: &str = "other";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeadlineLabels {
    /// A configured unit code (a key of `settings.units`), or [`OTHER_UNIT`]: the register may
    /// hold any text as a unit, and each value would be a series of its own.
    unit: String,
    kind: Kind,
    status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ComplianceLabels {
    /// A configured unit code, or [`OTHER_UNIT`] (as for [`DeadlineLabels`]).
    unit: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NoticeLabels {
    kind: Kind,
    /// A configured ladder step such as `-3` or `+1` (`rules::ladder::offset_label`).
    step: String,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutboxLabels {
    state: OutboxState,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClassLabels {
    class: ErrorClass,
}

fn poll_histogram() -> Histogram {
    Histogram::new(POLL_BUCKETS)
}

/// A gauge holding an f64 (its bits in an `AtomicU64`).
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric of the process. Cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    /// Held for writing while a snapshot gauge family is replaced and for reading while
    /// rendering, so a scrape never sees a half-replaced snapshot.
    snapshot: RwLock<()>,
    poll_duration: Family<PassLabels, Histogram>,
    polls: Family<PollLabels, Counter>,
    rows_read: Counter,
    withdrawals_held: Counter,
    rows_rejected: Family<ReasonLabels, Counter>,
    last_successful_poll: FloatGauge,
    register_staleness: FloatGauge,
    deadlines: Family<DeadlineLabels, Gauge>,
    compliance_share_met: Family<ComplianceLabels, FloatGauge>,
    notices: Family<NoticeLabels, Counter>,
    outbox: Family<OutboxLabels, Gauge>,
    smtp_errors: Family<ClassLabels, Counter>,
    digests_sent: Counter,
    caseworker_fallbacks: Counter,
    poll_lease_held: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

fn read(lock: &RwLock<()>) -> RwLockReadGuard<'_, ()> {
    // The lock guards no data; a panic while it was held leaves nothing inconsistent behind.
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write(lock: &RwLock<()>) -> RwLockWriteGuard<'_, ()> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            snapshot: RwLock::new(()),
            poll_duration: Family::new_with_constructor(poll_histogram),
            polls: Family::default(),
            rows_read: Counter::default(),
            withdrawals_held: Counter::default(),
            rows_rejected: Family::default(),
            last_successful_poll: FloatGauge::default(),
            register_staleness: FloatGauge::default(),
            deadlines: Family::default(),
            compliance_share_met: Family::default(),
            notices: Family::default(),
            outbox: Family::default(),
            smtp_errors: Family::default(),
            digests_sent: Counter::default(),
            caseworker_fallbacks: Counter::default(),
            poll_lease_held: Gauge::default(),
        };
        // Registered in the order they are rendered. Counters without `_total`, the info
        // metric without `_info`: the encoder appends them. Each handle shares its values
        // with the clone registered.
        m.registry.register(
            "fristvakt_build",
            "Version of the running fristvakt",
            Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION") }),
        );
        m.registry.register("fristvakt_poll_duration_seconds", "Duration of register polls", m.poll_duration.clone());
        m.registry.register("fristvakt_polls", "Register polls by pass and result", m.polls.clone());
        m.registry.register("fristvakt_register_rows_read", "Register rows read", m.rows_read.clone());
        m.registry.register(
            "fristvakt_withdrawals_held",
            "Cases gone from the register whose withdrawal a full pass held back (register.max_withdraw_share)",
            m.withdrawals_held.clone(),
        );
        m.registry.register(
            "fristvakt_register_rows_rejected",
            "Register rows skipped, by reason",
            m.rows_rejected.clone(),
        );
        m.registry.register(
            "fristvakt_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll",
            m.last_successful_poll.clone(),
        );
        m.registry.register(
            "fristvakt_register_staleness_seconds",
            "Age of the newest updated_at in the register",
            m.register_staleness.clone(),
        );
        m.registry.register("fristvakt_deadlines", "Deadlines by unit, kind and status today", m.deadlines.clone());
        m.registry.register(
            "fristvakt_compliance_share_met",
            "Share of deadlines met (0-1) whose legal last day fell in the last 30 days, by unit and kind",
            m.compliance_share_met.clone(),
        );
        m.registry.register("fristvakt_notices", "Notices by kind, ladder step and outcome", m.notices.clone());
        m.registry.register("fristvakt_outbox", "Outbox rows by state", m.outbox.clone());
        m.registry.register("fristvakt_smtp_errors", "Failed mail deliveries by error class", m.smtp_errors.clone());
        m.registry.register("fristvakt_digests_sent", "Daily digests sent", m.digests_sent.clone());
        m.registry.register(
            "fristvakt_caseworker_fallbacks",
            "Notices sent to the team lead because the caseworker address was missing or invalid",
            m.caseworker_fallbacks.clone(),
        );
        m.registry.register(
            "fristvakt_poll_lease_held",
            "1 while this replica holds the poll lease (polls the register), else 0",
            m.poll_lease_held.clone(),
        );

        // Every bounded label set is exposed from the start, at zero: an empty family is not
        // rendered at all, and `rate()` needs the zero before the first increment.
        for pass in Pass::ALL {
            m.poll_duration.get_or_create_owned(&PassLabels { pass });
            for result in PollResult::ALL {
                m.polls.get_or_create_owned(&PollLabels { pass, result });
            }
        }
        for reason in RejectReason::ALL {
            m.rows_rejected.get_or_create_owned(&ReasonLabels { reason });
        }
        for state in OutboxState::ALL {
            m.outbox.get_or_create_owned(&OutboxLabels { state });
        }
        for class in ErrorClass::DELIVERY {
            m.smtp_errors.get_or_create_owned(&ClassLabels { class });
        }
        m
    }

    /// A finished poll.
    pub fn observe_poll(&self, pass: Pass, duration: Duration, ok: bool) {
        self.poll_duration.get_or_create(&PassLabels { pass }).observe(duration.as_secs_f64());
        let result = if ok { PollResult::Ok } else { PollResult::Error };
        self.polls.get_or_create(&PollLabels { pass, result }).inc();
    }

    pub fn add_rows(&self, read: u64, rejected: &BTreeMap<RejectReason, u64>) {
        self.rows_read.inc_by(read);
        for (&reason, &n) in rejected {
            self.rows_rejected.get_or_create(&ReasonLabels { reason }).inc_by(n);
        }
    }

    /// Counts cases whose withdrawal a full pass held back: too many gone at once.
    pub fn add_withdrawals_held(&self, n: u64) {
        self.withdrawals_held.inc_by(n);
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

    /// Replaces the deadline counts by (unit, kind, status): a combination missing from
    /// `counts` is no longer exposed. A unit for which `configured` says no (a unit code without
    /// its `[units."CODE"]` table, whatever the register holds) is counted under
    /// [`OTHER_UNIT`], so the label takes only the configured units and `other`.
    pub fn set_deadlines(&self, counts: BTreeMap<(String, Kind, Status), i64>, configured: impl Fn(&str) -> bool) {
        let mut labelled: HashMap<DeadlineLabels, i64> = HashMap::new();
        for ((unit, kind, status), n) in counts {
            let unit = if configured(&unit) { unit } else { OTHER_UNIT.to_string() };
            *labelled.entry(DeadlineLabels { unit, kind, status }).or_insert(0) += n;
        }
        let _snapshot = write(&self.snapshot);
        self.deadlines.clear();
        for (labels, n) in labelled {
            self.deadlines.get_or_create(&labels).set(n);
        }
    }

    /// Replaces the 30-day shares met by (unit, kind) (`report::recent_by_unit_and_kind`): counts
    /// of units that are not configured are added up under [`OTHER_UNIT`] before the share is
    /// taken; a combination without a counted deadline is not exposed.
    pub fn set_compliance(&self, tallies: &BTreeMap<(String, Kind), Tally>, configured: impl Fn(&str) -> bool) {
        let mut labelled: HashMap<ComplianceLabels, Tally> = HashMap::new();
        for ((unit, kind), tally) in tallies {
            let unit = if configured(unit) { unit.clone() } else { OTHER_UNIT.to_string() };
            labelled.entry(ComplianceLabels { unit, kind: *kind }).or_default().add(tally);
        }
        let _snapshot = write(&self.snapshot);
        self.compliance_share_met.clear();
        for (labels, tally) in labelled {
            if let Some(share) = tally.share_met() {
                self.compliance_share_met.get_or_create(&labels).set(share);
            }
        }
    }

    /// Counts notices by kind, step and outcome (enqueued, skipped, sent, retrying, dead, postponed).
    pub fn add_notice(&self, kind: Kind, step: String, outcome: Outcome, n: u64) {
        self.notices.get_or_create(&NoticeLabels { kind, step, outcome }).inc_by(n);
    }

    /// Sets the outbox depth of every state; a state missing from `depth` is set to zero.
    pub fn set_outbox(&self, depth: &HashMap<OutboxState, i64>) {
        let _snapshot = write(&self.snapshot);
        for state in OutboxState::ALL {
            self.outbox.get_or_create(&OutboxLabels { state }).set(depth.get(&state).copied().unwrap_or(0));
        }
    }

    /// Counts failed deliveries by class.
    pub fn add_smtp_error(&self, class: ErrorClass, n: u64) {
        self.smtp_errors.get_or_create(&ClassLabels { class }).inc_by(n);
    }

    pub fn add_digests_sent(&self, n: u64) {
        self.digests_sent.inc_by(n);
    }

    pub fn add_caseworker_fallbacks(&self, n: u64) {
        self.caseworker_fallbacks.inc_by(n);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn set_poll_lease_held(&self, held: bool) {
        self.poll_lease_held.set(i64::from(held));
    }

    pub fn render(&self) -> String {
        let _snapshot = read(&self.snapshot);
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail, nor can the label sets here.
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!("metrics: encoding failed: {e}");
        }
        out
    }
}

/// The standard `process_*` families of Prometheus' client libraries (CPU time, memory, file
/// descriptors, start time), read from `/proc/self` at each scrape: what the unit's
/// `ProcSubset=pid` leaves visible. The start time is the daemon's own (`/proc/stat`'s boot
/// time is hidden). Families whose source cannot be read are left out.
pub fn process_metrics(started: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(1024);
    let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
        }
    };
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th
    // (fields 14 and 15 of proc(5)), in clock ticks of 1/100 s (USER_HZ on Linux).
    let cpu = stat.as_deref().and_then(|s| s.rsplit_once(')')).and_then(|(_, rest)| {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    });
    family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu);
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let kib = |key: &str| {
        status.as_deref().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(key))?;
            Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? * 1024.0)
        })
    };
    family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", kib("VmRSS:"));
    family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", kib("VmSize:"));
    let fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64);
    family("process_open_fds", "gauge", "Number of open file descriptors.", fds);
    let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse::<f64>().ok()
    });
    family("process_max_fds", "gauge", "Maximum number of open file descriptors.", max_fds);
    let start = started.timestamp_millis() as f64 / 1000.0;
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        Some(start),
    );
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use super::*;

    /// A process that has done one of everything.
    fn busy() -> Metrics {
        let m = Metrics::new();
        m.observe_poll(Pass::Incremental, Duration::from_millis(300), true);
        m.observe_poll(Pass::Full, Duration::from_secs(70), false);
        m.add_rows(10, &BTreeMap::from([(RejectReason::BadDate, 2)]));
        m.set_last_successful_poll(1_714_000_000.0);
        m.set_register_staleness(12.5);
        m.set_deadlines(
            BTreeMap::from([
                (("BRO-BU".to_string(), Kind::Assessment, Status::Overdue), 4),
                (("BRO-BU".to_string(), Kind::Investigation, Status::DueSoon), 1),
            ]),
            |unit| unit == "BRO-BU",
        );
        m.set_compliance(
            &BTreeMap::from([
                (("BRO-BU".to_string(), Kind::Assessment), Tally { total: 4, met: 3, ..Tally::default() }),
                (("X-1".to_string(), Kind::Assessment), Tally { total: 1, met: 0, missed: 1, ..Tally::default() }),
                (("X-2".to_string(), Kind::Assessment), Tally { total: 1, met: 1, ..Tally::default() }),
            ]),
            |unit| unit == "BRO-BU",
        );
        m.add_notice(Kind::Assessment, "-3".into(), Outcome::Sent, 2);
        m.add_notice(Kind::Protection, "+1".into(), Outcome::Enqueued, 1);
        m.set_outbox(&HashMap::from([(OutboxState::Pending, 3)]));
        m.add_smtp_error(ErrorClass::Transient4xx, 1);
        m.add_digests_sent(1);
        m.add_caseworker_fallbacks(1);
        m
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn renders_families_with_bounded_labels() {
        let text = busy().render();
        let lines = lines(&text);
        let build_info = format!("fristvakt_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        assert!(lines.contains(&build_info.as_str()), "{build_info:?} missing from:\n{text}");
        for expected in [
            "fristvakt_poll_duration_seconds_bucket{pass=\"incremental\",le=\"0.5\"} 1",
            "fristvakt_poll_duration_seconds_bucket{pass=\"incremental\",le=\"0.25\"} 0",
            "fristvakt_poll_duration_seconds_bucket{pass=\"incremental\",le=\"1\"} 1",
            "fristvakt_poll_duration_seconds_bucket{pass=\"incremental\",le=\"+Inf\"} 1",
            "fristvakt_poll_duration_seconds_count{pass=\"incremental\"} 1",
            "fristvakt_poll_duration_seconds_bucket{pass=\"full\",le=\"60\"} 0",
            "fristvakt_poll_duration_seconds_bucket{pass=\"full\",le=\"300\"} 1",
            "fristvakt_polls_total{pass=\"incremental\",result=\"ok\"} 1",
            "fristvakt_polls_total{pass=\"incremental\",result=\"error\"} 0",
            "fristvakt_polls_total{pass=\"full\",result=\"error\"} 1",
            "fristvakt_register_rows_read_total 10",
            "fristvakt_register_rows_rejected_total{reason=\"bad_date\"} 2",
            "fristvakt_register_rows_rejected_total{reason=\"missing_case_ref\"} 0",
            "fristvakt_deadlines{unit=\"BRO-BU\",kind=\"assessment\",status=\"overdue\"} 4",
            "fristvakt_deadlines{unit=\"BRO-BU\",kind=\"investigation\",status=\"due_soon\"} 1",
            "fristvakt_compliance_share_met{unit=\"BRO-BU\",kind=\"assessment\"} 0.75",
            "fristvakt_compliance_share_met{unit=\"other\",kind=\"assessment\"} 0.5",
            "fristvakt_notices_total{kind=\"assessment\",step=\"-3\",outcome=\"sent\"} 2",
            "fristvakt_notices_total{kind=\"protection\",step=\"+1\",outcome=\"enqueued\"} 1",
            "fristvakt_outbox{state=\"pending\"} 3",
            "fristvakt_outbox{state=\"dead\"} 0",
            "fristvakt_smtp_errors_total{class=\"transient_4xx\"} 1",
            "fristvakt_smtp_errors_total{class=\"permanent_5xx\"} 0",
            "fristvakt_digests_sent_total 1",
            "fristvakt_caseworker_fallbacks_total 1",
        ] {
            assert!(lines.contains(&expected), "{expected:?} missing from:\n{text}");
        }
        // Floats keep their value whatever the formatting of the digits.
        let value = |prefix: &str| -> f64 {
            let line = lines.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}:\n{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert_eq!(value("fristvakt_last_successful_poll_timestamp_seconds "), 1_714_000_000.0);
        assert_eq!(value("fristvakt_register_staleness_seconds "), 12.5);
        assert_eq!(value("fristvakt_poll_duration_seconds_sum{pass=\"incremental\"} "), 0.3);
        // Every value of every bounded set is there, spelt as the domain spells it.
        for reason in RejectReason::ALL {
            assert!(text.contains(&format!("{{reason=\"{}\"}}", reason.as_str())), "{reason:?}");
        }
        for state in OutboxState::ALL {
            assert!(text.contains(&format!("fristvakt_outbox{{state=\"{}\"}}", state.as_str())), "{state:?}");
        }
        for class in ErrorClass::DELIVERY {
            assert!(text.contains(&format!("fristvakt_smtp_errors_total{{class=\"{class}\"}}")), "{class:?}");
        }
    }

    #[test]
    fn exposes_exactly_the_documented_families_with_their_types_and_help() {
        let text = busy().render();
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        assert_eq!(
            types,
            [
                "# TYPE fristvakt_build_info gauge",
                "# TYPE fristvakt_poll_duration_seconds histogram",
                "# TYPE fristvakt_polls_total counter",
                "# TYPE fristvakt_register_rows_read_total counter",
                "# TYPE fristvakt_withdrawals_held_total counter",
                "# TYPE fristvakt_register_rows_rejected_total counter",
                "# TYPE fristvakt_last_successful_poll_timestamp_seconds gauge",
                "# TYPE fristvakt_register_staleness_seconds gauge",
                "# TYPE fristvakt_deadlines gauge",
                "# TYPE fristvakt_compliance_share_met gauge",
                "# TYPE fristvakt_notices_total counter",
                "# TYPE fristvakt_outbox gauge",
                "# TYPE fristvakt_smtp_errors_total counter",
                "# TYPE fristvakt_digests_sent_total counter",
                "# TYPE fristvakt_caseworker_fallbacks_total counter",
                "# TYPE fristvakt_poll_lease_held gauge",
            ]
        );
        assert!(!text.contains("_total_total"), "{text}");
        assert!(text.contains("# HELP fristvakt_polls_total Register polls by pass and result.\n"), "{text}");
        assert!(!text.contains(".."), "one full stop per help text:\n{text}");
    }

    #[test]
    fn families_of_bounded_sets_are_exposed_before_anything_happens() {
        let text = Metrics::new().render();
        for family in [
            "fristvakt_build_info{",
            "fristvakt_poll_duration_seconds_bucket{pass=\"incremental\",le=\"0.05\"} 0",
            "fristvakt_polls_total{pass=\"full\",result=\"ok\"} 0",
            "fristvakt_register_rows_read_total 0",
            "fristvakt_register_rows_rejected_total{",
            "fristvakt_last_successful_poll_timestamp_seconds ",
            "fristvakt_register_staleness_seconds ",
            "fristvakt_outbox{state=\"pending\"} 0",
            "fristvakt_smtp_errors_total{class=\"other\"} 0",
            "fristvakt_digests_sent_total 0",
            "fristvakt_caseworker_fallbacks_total 0",
        ] {
            assert!(text.contains(family), "{family:?} missing from:\n{text}");
        }
    }

    #[test]
    fn a_snapshot_replaces_the_previous_one() {
        let m = busy();
        m.set_deadlines(BTreeMap::from([(("BRO-BU".to_string(), Kind::Assessment, Status::Overdue), 5)]), |u| {
            u == "BRO-BU"
        });
        m.set_outbox(&HashMap::from([(OutboxState::Dead, 1)]));
        let text = m.render();
        assert!(text.contains("fristvakt_deadlines{unit=\"BRO-BU\",kind=\"assessment\",status=\"overdue\"} 5\n"));
        assert!(!text.contains("status=\"due_soon\""), "a vanished deadline combination is gone:\n{text}");
        assert_eq!(text.matches("fristvakt_deadlines{").count(), 1, "{text}");
        // The outbox always shows every state; one missing from the snapshot is zero.
        assert!(text.contains("fristvakt_outbox{state=\"pending\"} 0\n"), "{text}");
        assert!(text.contains("fristvakt_outbox{state=\"dead\"} 1\n"), "{text}");
        assert_eq!(text.matches("fristvakt_outbox{").count(), OutboxState::ALL.len(), "{text}");

        m.set_deadlines(BTreeMap::new(), |_| true);
        let text = m.render();
        assert!(!text.contains("fristvakt_deadlines"), "no deadlines, no series:\n{text}");
    }

    #[test]
    fn every_label_value_is_one_of_its_set() {
        // The methods take enums, so a value outside a set cannot be passed; this checks that
        // what is rendered reads back as one of them.
        let text = busy().render();
        let value = |line: &str, label: &str| -> Option<String> {
            let at = line.find(&format!("{label}=\""))? + label.len() + 2;
            Some(line[at..].split('"').next()?.to_string())
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(v) = value(line, "pass") {
                assert!(v.parse::<Pass>().is_ok(), "{line}");
            }
            if let Some(v) = value(line, "result") {
                assert!(v.parse::<PollResult>().is_ok(), "{line}");
            }
            if let Some(v) = value(line, "outcome") {
                assert!(v.parse::<Outcome>().is_ok(), "{line}");
            }
            if let Some(v) = value(line, "class") {
                assert!(v.parse::<ErrorClass>().is_ok_and(|c| ErrorClass::DELIVERY.contains(&c)), "{line}");
            }
            if let Some(v) = value(line, "kind") {
                assert!(v.parse::<Kind>().is_ok(), "{line}");
            }
            if let Some(v) = value(line, "status") {
                assert!(v.parse::<Status>().is_ok(), "{line}");
            }
        }
    }

    #[test]
    fn deadline_units_come_from_the_configured_units_and_other() {
        let m = Metrics::new();
        let junk = format!("X{}\u{1b}[2K", "Y".repeat(500));
        m.set_deadlines(
            BTreeMap::from([
                (("BRO-BU".to_string(), Kind::Assessment, Status::Overdue), 4),
                (("RIK-BU".to_string(), Kind::Assessment, Status::Overdue), 2),
                ((junk.clone(), Kind::Assessment, Status::Overdue), 1),
                (("2026-BU-00537".to_string(), Kind::Protection, Status::Met), 3),
            ]),
            |unit| unit == "BRO-BU",
        );
        let text = m.render();
        assert!(
            text.contains("fristvakt_deadlines{unit=\"BRO-BU\",kind=\"assessment\",status=\"overdue\"} 4\n"),
            "{text}"
        );
        // Every unit without its own configuration is one series, `other`, with their sum.
        assert!(
            text.contains("fristvakt_deadlines{unit=\"other\",kind=\"assessment\",status=\"overdue\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("fristvakt_deadlines{unit=\"other\",kind=\"protection\",status=\"met\"} 3\n"), "{text}");
        assert_eq!(text.matches("fristvakt_deadlines{").count(), 3, "{text}");
        for value in ["RIK-BU", "YYYY", "2026-BU-00537", "\u{1b}"] {
            assert!(!text.contains(value), "{value:?} in:\n{text}");
        }
    }

    #[test]
    fn label_enums_parse_what_they_render() {
        fn check<T: std::fmt::Debug + PartialEq + Copy + std::fmt::Display + std::str::FromStr>(all: &[T]) {
            for &v in all {
                assert_eq!(v.to_string().parse::<T>().ok(), Some(v));
            }
        }
        check(&Pass::ALL);
        check(&PollResult::ALL);
        check(&Outcome::ALL);
        check(&ErrorClass::ALL);
        check(&DeadLetterCause::ALL);
    }

    #[test]
    fn unit_codes_are_escaped() {
        let m = Metrics::new();
        m.set_deadlines(BTreeMap::from([(("A\"B\\C\nD".to_string(), Kind::Assessment, Status::Overdue), 1)]), |_| true);
        assert!(m.render().contains("fristvakt_deadlines{unit=\"A\\\"B\\\\C\\nD\",kind=\"assessment\""));
    }

    #[test]
    fn promtool_accepts_the_exposition() {
        let m = busy();
        m.set_deadlines(BTreeMap::from([(("A\"B\\C\nD".to_string(), Kind::Assessment, Status::Overdue), 1)]), |_| true);
        for text in [Metrics::new().render(), m.render()] {
            let mut child = match Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
            {
                Ok(child) => child,
                Err(e) => panic!("promtool not found ({e}): install it with `apt-get install -y prometheus`"),
            };
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
                "promtool check metrics: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery per recipient: a block of its own, with its own registry, rendered after the main
// one by `/metrics` (text format 0.0.4 concatenates), so that the catalogue above is untouched.

/// How the mail server refused fristvakt itself (see `mail::transport::DeliverError::Server`):
/// one of [`ErrorClass::SERVER_REFUSALS`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServerRefusalLabels {
    class: ErrorClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeadLetterLabels {
    cause: DeadLetterCause,
}

/// Metrics of delivery per recipient: recipients refused, notices sent one role up, and the
/// server refusing fristvakt itself (which pauses dispatch).
pub struct DeliveryMetrics {
    registry: Registry,
    server_refusals: Family<ServerRefusalLabels, Counter>,
    dispatch_paused: Gauge,
    recipients_refused: Counter,
    escalations: Counter,
    claims_lost: Counter,
    unconfirmed: Counter,
    dead_letters: Family<DeadLetterLabels, Counter>,
}

impl Default for DeliveryMetrics {
    fn default() -> DeliveryMetrics {
        DeliveryMetrics::new()
    }
}

impl DeliveryMetrics {
    pub fn new() -> DeliveryMetrics {
        let mut m = DeliveryMetrics {
            registry: Registry::default(),
            server_refusals: Family::default(),
            dispatch_paused: Gauge::default(),
            recipients_refused: Counter::default(),
            escalations: Counter::default(),
            claims_lost: Counter::default(),
            unconfirmed: Counter::default(),
            dead_letters: Family::default(),
        };
        m.registry.register(
            "fristvakt_smtp_server_refusals",
            "Dispatch runs stopped because the mail server refused fristvakt itself, by class",
            m.server_refusals.clone(),
        );
        m.registry.register(
            "fristvakt_dispatch_paused",
            "1 while the last dispatch that tried the server was stopped by a server refusal or an unreachable server",
            m.dispatch_paused.clone(),
        );
        m.registry.register(
            "fristvakt_recipients_refused",
            "Recipients the mail server refused permanently",
            m.recipients_refused.clone(),
        );
        m.registry.register(
            "fristvakt_notice_escalations",
            "Notices sent one role up because every recipient refused them",
            m.escalations.clone(),
        );
        m.registry.register(
            "fristvakt_outbox_claims_lost",
            "Outbox rows this replica stopped working on because its claim lapsed (taken by another sender, or \
             abandoned when the claim could not be renewed)",
            m.claims_lost.clone(),
        );
        m.registry.register(
            "fristvakt_deliveries_unconfirmed",
            "Mails whose final dot went out without a reply from the mail server (none within mail.smtp.data_timeout, \
             the connection lost, or the shutdown grace over): possibly delivered, tried again only after the data \
             timeout",
            m.unconfirmed.clone(),
        );
        m.registry.register(
            "fristvakt_dead_letters",
            "Mails given up that reached none of their recipients and went to no role up, by cause (the last \
             resort: an operator must act; see `fristvakt outbox list --state dead`)",
            m.dead_letters.clone(),
        );
        for class in ErrorClass::SERVER_REFUSALS {
            m.server_refusals.get_or_create_owned(&ServerRefusalLabels { class });
        }
        for cause in DeadLetterCause::ALL {
            m.dead_letters.get_or_create_owned(&DeadLetterLabels { cause });
        }
        m
    }

    /// Counts dead letters by cause.
    pub fn add_dead_letters(&self, cause: DeadLetterCause, n: u64) {
        self.dead_letters.get_or_create(&DeadLetterLabels { cause }).inc_by(n);
    }

    /// Counts a server refusal (a class of [`ErrorClass::SERVER_REFUSALS`]).
    pub fn add_server_refusal(&self, class: ErrorClass, n: u64) {
        self.server_refusals.get_or_create(&ServerRefusalLabels { class }).inc_by(n);
    }

    pub fn add_unconfirmed(&self, n: u64) {
        self.unconfirmed.inc_by(n);
    }

    pub fn set_dispatch_paused(&self, paused: bool) {
        self.dispatch_paused.set(i64::from(paused));
    }

    pub fn dispatch_paused(&self) -> bool {
        self.dispatch_paused.get() != 0
    }

    pub fn add_recipients_refused(&self, n: u64) {
        self.recipients_refused.inc_by(n);
    }

    pub fn add_escalations(&self, n: u64) {
        self.escalations.inc_by(n);
    }

    pub fn add_claims_lost(&self, n: u64) {
        self.claims_lost.inc_by(n);
    }

    /// The Prometheus text exposition (format 0.0.4) of this block.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!("metrics: encoding failed: {e}");
        }
        out
    }
}

#[cfg(test)]
mod delivery_tests {
    use super::*;

    #[test]
    fn delivery_metrics_render_with_bounded_labels() {
        let m = DeliveryMetrics::new();
        m.add_server_refusal(ErrorClass::Auth, 1);
        m.add_server_refusal(ErrorClass::Sender, 2);
        m.set_dispatch_paused(true);
        m.add_recipients_refused(3);
        m.add_escalations(1);
        m.add_claims_lost(2);
        m.add_unconfirmed(4);
        let text = m.render();
        for line in [
            "fristvakt_smtp_server_refusals_total{class=\"auth\"} 1",
            "fristvakt_smtp_server_refusals_total{class=\"sender\"} 2",
            "fristvakt_smtp_server_refusals_total{class=\"tls\"} 0",
            "fristvakt_dispatch_paused 1",
            "fristvakt_outbox_claims_lost_total 2",
            "fristvakt_recipients_refused_total 3",
            "fristvakt_notice_escalations_total 1",
            "fristvakt_deliveries_unconfirmed_total 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // As /metrics serves it: the main catalogue, then this block.
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool not found: install it with `apt-get install -y prometheus`");
        let exposition = format!("{}{text}", Metrics::new().render());
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), exposition.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
