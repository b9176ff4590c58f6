//! What a dispatch run did ([`DispatchReport`], by bounded [`MailLabel`]s) and how each row's
//! outcome is counted into it.

use std::collections::BTreeMap;

use super::{DeadLetterCause, Handled, Outcome};
use crate::domain::ErrorClass;
use crate::rules::Kind;
use crate::state::{OutboxCategory, StateError};

/// What one dispatch did, per outbox category, kind and step; for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchReport {
    pub sent: BTreeMap<MailLabel, u64>,
    /// Failed transiently; a later dispatch tries again.
    pub retrying: BTreeMap<MailLabel, u64>,
    /// Failed permanently, or transiently for longer than `mail.give_up_after`.
    pub dead: BTreeMap<MailLabel, u64>,
    /// The sending window was closed; moved to its next opening.
    pub postponed: BTreeMap<MailLabel, u64>,
    /// Failures per bounded class (connect, timeout, tls, transient_4xx, permanent_5xx, io,
    /// other, compose, bad_payload, unknown_category). A recipient refused with 5xx counts
    /// once under `permanent_5xx`, also when the row's other recipients received it.
    pub errors: BTreeMap<ErrorClass, u64>,
    /// Recipients refused permanently, per row label (the row may still be sent to others).
    pub refused_recipients: BTreeMap<MailLabel, u64>,
    /// Notices written one role up because they reached none of their recipients.
    pub escalated: BTreeMap<MailLabel, u64>,
    /// Dead letters by cause (`refused`, `gave_up`, `unreadable`): rows given up that reached
    /// nobody and went to no role up — the last resort, for an operator to act on.
    pub dead_letters: BTreeMap<DeadLetterCause, u64>,
    /// Refusals of fristvakt by the server (tls, auth, sender, greeting): each stopped the run.
    pub server_refusals: BTreeMap<ErrorClass, u64>,
    /// The mail server could not be reached or would not talk (connect, timeout, transient):
    /// the run stopped, the rows kept their place.
    pub unavailable: Option<ErrorClass>,
    /// Rows whose claim another sender had taken when this one recorded (after a lapse), or
    /// that this sender abandoned because it could not renew its claim.
    pub claims_lost: u64,
    /// Mails whose final `.` went out without a reply (no reply within `mail.smtp.data_timeout`,
    /// the connection lost, or the shutdown grace over): the server may have them; each is tried
    /// again only once the data timeout has passed.
    pub unconfirmed: u64,
    /// The run stopped at its bound (rows or time) with rows possibly left: the next run is due
    /// at once.
    pub more: bool,
}

/// The bounded labels of an outbox row: never a case reference or an address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MailLabel {
    /// `None` for a row whose stored category this version does not know.
    pub category: Option<OutboxCategory>,
    pub kind: Option<Kind>,
    pub step: Option<i32>,
}

impl DispatchReport {
    pub fn total_sent(&self) -> u64 {
        self.sent.values().sum()
    }

    pub fn total_retrying(&self) -> u64 {
        self.retrying.values().sum()
    }

    pub fn total_dead(&self) -> u64 {
        self.dead.values().sum()
    }

    pub fn total_postponed(&self) -> u64 {
        self.postponed.values().sum()
    }

    pub fn total_refused_recipients(&self) -> u64 {
        self.refused_recipients.values().sum()
    }

    pub fn total_escalated(&self) -> u64 {
        self.escalated.values().sum()
    }

    pub fn total_dead_letters(&self) -> u64 {
        self.dead_letters.values().sum()
    }

    /// Adds the counts of a later run to these; `more` is the later run's.
    pub fn absorb(&mut self, other: DispatchReport) {
        fn add<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
            for (k, n) in from {
                *into.entry(k).or_default() += n;
            }
        }
        add(&mut self.sent, other.sent);
        add(&mut self.retrying, other.retrying);
        add(&mut self.dead, other.dead);
        add(&mut self.postponed, other.postponed);
        add(&mut self.errors, other.errors);
        add(&mut self.refused_recipients, other.refused_recipients);
        add(&mut self.escalated, other.escalated);
        add(&mut self.dead_letters, other.dead_letters);
        add(&mut self.server_refusals, other.server_refusals);
        self.unavailable = self.unavailable.or(other.unavailable);
        self.claims_lost += other.claims_lost;
        self.unconfirmed += other.unconfirmed;
        self.more = other.more;
    }

    /// Whether the run stopped because the server refused fristvakt itself or could not be
    /// reached.
    pub fn paused(&self) -> bool {
        !self.server_refusals.is_empty() || self.unavailable.is_some()
    }
}

/// Counts what handling one row came to, or keeps the first failure of the state store.
pub(super) fn tally(
    report: &mut DispatchReport,
    failed: &mut Option<StateError>,
    outcome: Option<Result<(MailLabel, Handled), StateError>>,
) {
    let (label, handled) = match outcome {
        Some(Ok(handled)) => handled,
        Some(Err(e)) => {
            failed.get_or_insert(e);
            return;
        }
        None => return,
    };
    if handled.refused > 0 {
        *report.errors.entry(ErrorClass::Permanent5xx).or_default() += handled.refused;
        *report.refused_recipients.entry(label.clone()).or_default() += handled.refused;
    }
    if handled.escalated {
        *report.escalated.entry(label.clone()).or_default() += 1;
    }
    if handled.unconfirmed {
        report.unconfirmed += 1;
    }
    if let Some(cause) = handled.dead_letter {
        *report.dead_letters.entry(cause).or_default() += 1;
    }
    let map = match handled.outcome {
        Outcome::Released => return,
        Outcome::ClaimLost => {
            report.claims_lost += 1;
            return;
        }
        Outcome::Unavailable(class) => {
            *report.errors.entry(class).or_default() += 1;
            report.unavailable.get_or_insert(class);
            return;
        }
        Outcome::Sent => &mut report.sent,
        Outcome::Postponed => &mut report.postponed,
        Outcome::Retrying(class) => {
            *report.errors.entry(class).or_default() += 1;
            &mut report.retrying
        }
        Outcome::ServerRefused(class) => {
            *report.server_refusals.entry(class).or_default() += 1;
            *report
                .errors
                .entry(if class == ErrorClass::Tls { ErrorClass::Tls } else { ErrorClass::Permanent5xx })
                .or_default() += 1;
            &mut report.retrying
        }
        Outcome::Dead(class) => {
            // Recipients refused one by one were counted above.
            if handled.refused == 0 {
                *report.errors.entry(class).or_default() += 1;
            }
            &mut report.dead
        }
    };
    *map.entry(label).or_default() += 1;
}
