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

use crate::register::RejectReason;
use crate::report::Tally;
use crate::rules::deadline::{Kind, Status};
use crate::state::OutboxState;

/// Upper bounds (seconds) of the poll duration histogram: a steady-state poll takes well under a
/// second, a full pass over a million cases minutes.
const POLL_BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

/// A bounded label value: an enum whose variant names are the label values (the derive writes
/// them verbatim, hence the lower-case variants), with the list of all of them and the parser
/// for the `&'static str` the public methods take. Both come from the same identifiers, so they
/// cannot drift from what is exposed.
macro_rules! label_value {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
        enum $name {
            $($variant),+
        }

        // Not every set needs both outside the tests (a poll result comes as a bool).
        #[allow(dead_code)]
        impl $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];

            fn parse(text: &str) -> Option<$name> {
                match text {
                    $(stringify!($variant) => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

label_value! {
    /// Which register pass a poll was.
    Pass { incremental, full }
}

label_value! {
    /// How a poll ended.
    PollResult { ok, error }
}

label_value! {
    /// What happened to notices.
    Outcome { enqueued, skipped, sent, retrying, dead, postponed }
}

label_value! {
    /// Why a delivery failed (see `mail::transport::classify` and `mail::dispatch`).
    SmtpClass {
        permanent_5xx, transient_4xx, timeout, tls, connect, io, compose, address, smtputf8, bad_payload, unknown_category,
        other
    }
}

/// The domain enums already have their stable machine names; the labels use exactly those.
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

label_value_as_str!(Kind, Status, RejectReason, OutboxState);

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
    class: SmtpClass,
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

/// Logs a label value outside its bounded set: a caller and this catalogue disagree.
fn unknown_label(label: &str, value: &str) {
    tracing::warn!(label, value, "metrics: label value outside its bounded set");
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
        for &pass in Pass::ALL {
            m.poll_duration.get_or_create_owned(&PassLabels { pass });
            for &result in PollResult::ALL {
                m.polls.get_or_create_owned(&PollLabels { pass, result });
            }
        }
        for reason in RejectReason::ALL {
            m.rows_rejected.get_or_create_owned(&ReasonLabels { reason });
        }
        for state in OutboxState::ALL {
            m.outbox.get_or_create_owned(&OutboxLabels { state });
        }
        for &class in SmtpClass::ALL {
            m.smtp_errors.get_or_create_owned(&ClassLabels { class });
        }
        m
    }

    /// A finished poll: `kind` is "incremental" or "full".
    pub fn observe_poll(&self, kind: &'static str, duration: Duration, ok: bool) {
        let Some(pass) = Pass::parse(kind) else {
            return unknown_label("pass", kind);
        };
        self.poll_duration.get_or_create(&PassLabels { pass }).observe(duration.as_secs_f64());
        let result = if ok { PollResult::ok } else { PollResult::error };
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
    pub fn set_deadlines(
        &self,
        counts: BTreeMap<(String, &'static str, &'static str), i64>,
        configured: impl Fn(&str) -> bool,
    ) {
        let mut labelled: HashMap<DeadlineLabels, i64> = HashMap::new();
        for ((unit, kind, status), n) in counts {
            let (Ok(kind), Ok(status)) = (kind.parse::<Kind>(), status.parse::<Status>()) else {
                unknown_label("kind/status", &format!("{kind}/{status}"));
                continue;
            };
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
    pub fn add_notice(&self, kind: &'static str, step: String, outcome: &'static str, n: u64) {
        let Ok(kind_label) = kind.parse::<Kind>() else {
            return unknown_label("kind", kind);
        };
        let Some(outcome_label) = Outcome::parse(outcome) else {
            return unknown_label("outcome", outcome);
        };
        self.notices.get_or_create(&NoticeLabels { kind: kind_label, step, outcome: outcome_label }).inc_by(n);
    }

    /// Sets the outbox depth of every state; a state missing from `depth` is set to zero.
    pub fn set_outbox(&self, depth: &HashMap<OutboxState, i64>) {
        let _snapshot = write(&self.snapshot);
        for state in OutboxState::ALL {
            self.outbox.get_or_create(&OutboxLabels { state }).set(depth.get(&state).copied().unwrap_or(0));
        }
    }

    /// Counts failed deliveries by class; a class this catalogue does not know counts as `other`.
    pub fn add_smtp_error(&self, class: &'static str, n: u64) {
        let class = SmtpClass::parse(class).unwrap_or_else(|| {
            unknown_label("class", class);
            SmtpClass::other
        });
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
        m.observe_poll("incremental", Duration::from_millis(300), true);
        m.observe_poll("full", Duration::from_secs(70), false);
        m.add_rows(10, &BTreeMap::from([(RejectReason::BadDate, 2)]));
        m.set_last_successful_poll(1_714_000_000.0);
        m.set_register_staleness(12.5);
        m.set_deadlines(
            BTreeMap::from([
                (("BRO-BU".to_string(), "assessment", "overdue"), 4),
                (("BRO-BU".to_string(), "investigation", "due_soon"), 1),
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
        m.add_notice("assessment", "-3".into(), "sent", 2);
        m.add_notice("protection", "+1".into(), "enqueued", 1);
        m.set_outbox(&HashMap::from([(OutboxState::Pending, 3)]));
        m.add_smtp_error("transient_4xx", 1);
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
        for class in SmtpClass::ALL {
            assert!(text.contains(&format!("fristvakt_smtp_errors_total{{class=\"{class:?}\"}}")), "{class:?}");
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
        m.set_deadlines(BTreeMap::from([(("BRO-BU".to_string(), "assessment", "overdue"), 5)]), |u| u == "BRO-BU");
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
    fn label_values_outside_their_sets_never_become_labels() {
        let m = Metrics::new();
        m.observe_poll("sideways", Duration::from_secs(1), true);
        m.add_notice("assessment", "-3".into(), "mislaid", 1);
        m.add_notice("haircut", "-3".into(), "sent", 1);
        m.set_deadlines(BTreeMap::from([(("BRO-BU".to_string(), "haircut", "overdue"), 1)]), |_| true);
        m.add_smtp_error("gremlins", 2);
        let text = m.render();
        for value in ["sideways", "mislaid", "haircut", "gremlins"] {
            assert!(!text.contains(value), "{value} in:\n{text}");
        }
        assert!(!text.contains("fristvakt_notices_total"), "{text}");
        assert!(text.contains("fristvakt_smtp_errors_total{class=\"other\"} 2\n"), "{text}");
    }

    #[test]
    fn deadline_units_come_from_the_configured_units_and_other() {
        let m = Metrics::new();
        let junk = format!("X{}\u{1b}[2K", "Y".repeat(500));
        m.set_deadlines(
            BTreeMap::from([
                (("BRO-BU".to_string(), "assessment", "overdue"), 4),
                (("RIK-BU".to_string(), "assessment", "overdue"), 2),
                ((junk.clone(), "assessment", "overdue"), 1),
                (("2026-BU-00537".to_string(), "protection", "met"), 3),
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
        fn check<T: std::fmt::Debug + PartialEq + Copy>(all: &[T], parse: fn(&str) -> Option<T>) {
            for &v in all {
                assert_eq!(parse(&format!("{v:?}")), Some(v));
            }
        }
        check(Pass::ALL, Pass::parse);
        check(PollResult::ALL, PollResult::parse);
        check(Outcome::ALL, Outcome::parse);
        check(SmtpClass::ALL, SmtpClass::parse);
    }

    #[test]
    fn unit_codes_are_escaped() {
        let m = Metrics::new();
        m.set_deadlines(BTreeMap::from([(("A\"B\\C\nD".to_string(), "assessment", "overdue"), 1)]), |_| true);
        assert!(m.render().contains("fristvakt_deadlines{unit=\"A\\\"B\\\\C\\nD\",kind=\"assessment\""));
    }

    #[test]
    fn promtool_accepts_the_exposition() {
        let m = busy();
        m.set_deadlines(BTreeMap::from([(("A\"B\\C\nD".to_string(), "assessment", "overdue"), 1)]), |_| true);
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

label_value! {
    /// How the mail server refused fristvakt itself (see `mail::transport::DeliverError::Server`).
    ServerRefusalClass { tls, auth, sender, greeting }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServerRefusalLabels {
    class: ServerRefusalClass,
}

label_value! {
    /// Why a mail became a dead letter (see `mail::dispatch`): every recipient refused it (or it
    /// could not be written for them), it failed transiently until `mail.give_up_after`, or its
    /// row cannot be read or sent — in each case with no role above to carry it.
    DeadLetterCause { refused, gave_up, unreadable }
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
        for &class in ServerRefusalClass::ALL {
            m.server_refusals.get_or_create_owned(&ServerRefusalLabels { class });
        }
        for &cause in DeadLetterCause::ALL {
            m.dead_letters.get_or_create_owned(&DeadLetterLabels { cause });
        }
        m
    }

    /// Counts dead letters; a cause outside the set counts as `refused`.
    pub fn add_dead_letters(&self, cause: &'static str, n: u64) {
        let cause = DeadLetterCause::parse(cause).unwrap_or_else(|| {
            unknown_label("cause", cause);
            DeadLetterCause::refused
        });
        self.dead_letters.get_or_create(&DeadLetterLabels { cause }).inc_by(n);
    }

    /// Counts a server refusal; a class outside the set counts as `sender`.
    pub fn add_server_refusal(&self, class: &'static str, n: u64) {
        let class = ServerRefusalClass::parse(class).unwrap_or_else(|| {
            unknown_label("class", class);
            ServerRefusalClass::sender
        });
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
        m.add_server_refusal("auth", 1);
        m.add_server_refusal("gremlins", 2);
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
        assert!(!text.contains("gremlins"), "{text}");
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
