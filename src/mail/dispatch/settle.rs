//! What one attempt comes to, decided without I/O: [`settle`] takes the row, each recipient's
//! result, the clock and the policy and says sent, retry, or — nobody reached — one role up
//! (a dead letter when there is none); [`retry_delay`] is the back-off.

use chrono::{DateTime, Utc};

use crate::config::Settings;
use crate::domain::{named_enum, EmailAddress, ErrorClass};
use crate::mail::transport::{RecipientResult, SendError};
use crate::notice::Recipient;
use crate::state::{Delivery, DeliveryOutcome, OutboxRow};

/// The delay before attempt number `attempts + 1`: `retry_initial · 2^attempts`, capped at
/// `retry_max`, times `jitter` (0.8–1.2 in use) so that mails failed together do not retry in
/// lockstep.
pub fn retry_delay(settings: &Settings, attempts: i64, jitter: f64) -> chrono::Duration {
    let initial = settings.mail.retry_initial.as_secs_f64();
    let max = settings.mail.retry_max.as_secs_f64();
    let base = (initial * 2f64.powi(attempts.clamp(0, 40) as i32)).min(max);
    chrono::Duration::milliseconds((base * jitter * 1000.0).round() as i64)
}

named_enum! {
    /// Why a mail became a dead letter (`fristvakt_dead_letters_total{cause}`): every recipient
    /// refused it (or it could not be written for them), it failed transiently until
    /// `mail.give_up_after`, or its row cannot be read or sent — in each case with no role above
    /// to carry it. In the order of the names, as a map keyed by them listed them.
    pub enum DeadLetterCause as "dead-letter cause" {
        GaveUp = "gave_up",
        Refused = "refused",
        Unreadable = "unreadable",
    }
}

/// The bounded cause of a dead letter, from the class of the failure that ended it.
pub(super) fn dead_letter_cause(class: ErrorClass) -> DeadLetterCause {
    use ErrorClass as C;
    match class {
        C::BadPayload | C::UnknownCategory => DeadLetterCause::Unreadable,
        C::Permanent5xx | C::Address | C::Smtputf8 | C::Compose | C::Other => DeadLetterCause::Refused,
        _ => DeadLetterCause::GaveUp,
    }
}

/// The rules of an attempt's outcome: when it is, and how long to try.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// The time of the attempt.
    pub now: DateTime<Utc>,
    /// How long the sending window has been open since the row was first allowed out.
    pub tried_for: chrono::Duration,
    /// `mail.give_up_after`: how long a transient failure is retried.
    pub give_up_after: chrono::Duration,
}

/// What one attempt at a row comes to (see [`settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settlement {
    /// Every recipient's outcome so far, this attempt's included.
    pub deliveries: Vec<Delivery>,
    /// Recipients the mail server refused permanently (5xx) in this attempt.
    pub refused: u64,
    /// The row's current recipients who have it.
    pub delivered: usize,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every recipient is settled (or given up) and at least one received it; `note` says who
    /// did not.
    Sent { note: Option<String> },
    /// Some recipient was deferred (4xx, a failure of the whole attempt) and the give-up time
    /// has not come: tried again later for those still owed it.
    Retry { class: ErrorClass, error: String },
    /// No recipient received it, and none can now (every one refused, or given up): it goes
    /// one role up, to others than `unreached`, or is a dead letter when there is none.
    Unreached { class: ErrorClass, error: String, unreached: Vec<EmailAddress> },
}

/// Settles one attempt at `row`: `results` holds each recipient's result in this attempt
/// (those it was for; a failure of the whole attempt is every one's result); the row's earlier
/// deliveries count too. Pure: no clock, no I/O, no randomness.
///
/// A step that reached no recipient goes one role up whatever the cause (refusals, a compose
/// error, repeated 4xx until `give_up_after`); only recipients of the row as it is now count
/// (a row revived with fewer recipients keeps outcomes of others).
pub(crate) fn settle(row: &OutboxRow, results: Vec<(EmailAddress, RecipientResult)>, policy: &Policy) -> Settlement {
    let mut deliveries = row.deliveries.clone();
    let mut refused = 0u64;
    let mut first_refusal: Option<ErrorClass> = None;
    let mut deferred: Option<SendError> = None;
    for (address, result) in results {
        let (outcome, error) = match result {
            RecipientResult::Delivered => (DeliveryOutcome::Delivered, None),
            RecipientResult::Refused(e) => {
                // The server's refusals (`fristvakt_recipients_refused_total`); one refused here
                // (an address the mail cannot carry, a compose error) counts under its class.
                refused += u64::from(e.class == ErrorClass::Permanent5xx);
                first_refusal.get_or_insert(e.class);
                (DeliveryOutcome::Refused, Some(format!("{}: {}", e.class, e.message)))
            }
            RecipientResult::Deferred(e) => {
                deferred.get_or_insert(e);
                continue;
            }
        };
        deliveries.push(Delivery { address, outcome, at: policy.now, error });
    }
    let reached =
        |r: &&Recipient| deliveries.iter().any(|d| d.address == r.address && d.outcome == DeliveryOutcome::Delivered);
    let delivered = row.recipients.iter().filter(reached).count();
    let unreached: Vec<EmailAddress> =
        row.recipients.iter().filter(|r| !reached(r)).map(|r| r.address.clone()).collect();
    let verdict = if let Some(SendError { class, message, .. }) = deferred {
        if policy.tried_for <= policy.give_up_after {
            Verdict::Retry { class, error: format!("{class}: {message}") }
        } else {
            let given_up = policy.give_up_after.to_std().unwrap_or_default();
            let error = format!(
                "{class}: {message} (still failing after {} of open sending window)",
                humantime::format_duration(given_up)
            );
            // Given up for the recipients still owed it; received by others, it counts as sent.
            if delivered > 0 {
                Verdict::Sent { note: Some(error) }
            } else {
                Verdict::Unreached { class, error, unreached }
            }
        }
    } else if delivered > 0 {
        let note = (!unreached.is_empty()).then(|| {
            let first = deliveries.iter().find_map(|d| d.error.as_deref()).unwrap_or("refused");
            format!("{} of {} recipient(s) refused: {first}", unreached.len(), row.recipients.len())
        });
        Verdict::Sent { note }
    } else {
        let error =
            deliveries.iter().rev().find_map(|d| d.error.clone()).unwrap_or_else(|| "permanent_5xx: refused".into());
        let class = match first_refusal {
            Some(ErrorClass::Permanent5xx) | None => ErrorClass::Permanent5xx,
            Some(class) => class,
        };
        Verdict::Unreached { class, error, unreached }
    };
    Settlement { deliveries, refused, delivered, verdict }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rules::Role;
    use crate::state::{OutboxPayload, OutboxState};

    const A: &str = "a@kommun.example";
    const B: &str = "b@kommun.example";
    const C: &str = "c@kommun.example";

    fn address(a: &str) -> EmailAddress {
        EmailAddress::parse(a).unwrap()
    }

    /// A row for `recipients`, with earlier outcomes: `(address, delivered?)`.
    fn row(recipients: &[&str], earlier: &[(&str, bool)]) -> OutboxRow {
        let at = DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap();
        OutboxRow {
            id: 1,
            notice_key: "notice/assessment/2026-BU-1/-3".into(),
            case_ref: None,
            kind: None,
            step: Some(-3),
            recipients: recipients
                .iter()
                .map(|a| Recipient { role: Role::Caseworker, address: address(a), instead_of_caseworker: false })
                .collect(),
            payload: OutboxPayload::Notice(None),
            state: OutboxState::Retrying,
            created_at: at,
            not_before: at,
            attempts: 1,
            last_error: None,
            message_id: "<x@kommun.example>".into(),
            deliveries: earlier
                .iter()
                .map(|(a, delivered)| Delivery {
                    address: address(a),
                    outcome: if *delivered { DeliveryOutcome::Delivered } else { DeliveryOutcome::Refused },
                    at,
                    error: (!delivered).then(|| "permanent_5xx: gone".to_string()),
                })
                .collect(),
            replaces: Vec::new(),
        }
    }

    fn error(permanent: bool, class: &str) -> SendError {
        SendError { permanent, class: class.parse().unwrap(), message: "test".into() }
    }

    /// What a verdict is, in a word, with the recipients it leaves unreached.
    fn word(verdict: &Verdict) -> (&'static str, Vec<String>) {
        match verdict {
            Verdict::Sent { note: None } => ("sent", vec![]),
            Verdict::Sent { note: Some(_) } => ("sent, some not", vec![]),
            Verdict::Retry { .. } => ("retry", vec![]),
            Verdict::Unreached { unreached, class, .. } => {
                ("up", std::iter::once(class.to_string()).chain(unreached.iter().map(|a| a.to_string())).collect())
            }
        }
    }

    /// The rules of one attempt, as a table: the row (recipients, earlier outcomes), this
    /// attempt's results, whether the give-up time has passed → the verdict and the counts.
    #[test]
    fn settles_each_attempt_as_the_table_says() {
        use RecipientResult::{Deferred, Delivered, Refused};
        let refused = || Refused(error(true, "permanent_5xx"));
        let deferred = || Deferred(error(false, "transient_4xx"));
        #[allow(clippy::type_complexity)]
        let table: Vec<(
            &str,
            &[&str],
            &[(&str, bool)],
            Vec<(&str, RecipientResult)>,
            bool,
            (&str, Vec<&str>),
            u64,
            usize,
        )> = vec![
            ("one delivered", &[A], &[], vec![(A, Delivered)], false, ("sent", vec![]), 0, 1),
            (
                "one of two refused",
                &[A, B],
                &[],
                vec![(A, Delivered), (B, refused())],
                false,
                ("sent, some not", vec![]),
                1,
                1,
            ),
            (
                "every one refused",
                &[A, B],
                &[],
                vec![(A, refused()), (B, refused())],
                false,
                ("up", vec!["permanent_5xx", A, B]),
                2,
                0,
            ),
            (
                "refused by the library",
                &[A],
                &[],
                vec![(A, Refused(error(true, "address")))],
                false,
                ("up", vec!["address", A]),
                0,
                0,
            ),
            ("one deferred", &[A, B], &[], vec![(A, Delivered), (B, deferred())], false, ("retry", vec![]), 0, 1),
            (
                "deferred until give-up, nobody reached",
                &[A],
                &[],
                vec![(A, deferred())],
                true,
                ("up", vec!["transient_4xx", A]),
                0,
                0,
            ),
            (
                "deferred until give-up, one reached",
                &[A, B],
                &[],
                vec![(A, Delivered), (B, deferred())],
                true,
                ("sent, some not", vec![]),
                0,
                1,
            ),
            (
                "the rest refused after an earlier delivery",
                &[A, B],
                &[(A, true)],
                vec![(B, refused())],
                false,
                ("sent, some not", vec![]),
                1,
                1,
            ),
            ("settled earlier, nothing owed", &[A], &[(A, true)], vec![], false, ("sent", vec![]), 0, 1),
            // Revived with fewer recipients: outcomes of others do not count (no underflow).
            (
                "revived with fewer recipients",
                &[C],
                &[(A, true), (B, true)],
                vec![(C, Delivered)],
                false,
                ("sent", vec![]),
                0,
                1,
            ),
            (
                "revived, the new one refused",
                &[C],
                &[(A, true), (B, true)],
                vec![(C, refused())],
                false,
                ("up", vec!["permanent_5xx", C]),
                1,
                0,
            ),
        ];
        let at = DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap();
        for (name, recipients, earlier, results, given_up, (expected, unreached), refused, delivered) in table {
            let policy = Policy {
                now: at,
                tried_for: chrono::Duration::days(if given_up { 3 } else { 1 }),
                give_up_after: chrono::Duration::days(2),
            };
            let results = results.into_iter().map(|(a, r)| (address(a), r)).collect();
            let settled = settle(&row(recipients, earlier), results, &policy);
            let unreached: Vec<String> = unreached.iter().map(|s| s.to_string()).collect();
            assert_eq!(word(&settled.verdict), (expected, unreached), "{name}");
            assert_eq!((settled.refused, settled.delivered), (refused, delivered), "{name}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut s = crate::config::load_with_env(None, Vec::new()).unwrap();
        s.mail.retry_initial = std::time::Duration::from_secs(60);
        s.mail.retry_max = std::time::Duration::from_secs(3600);
        let secs = |attempts, jitter| retry_delay(&s, attempts, jitter).num_seconds();
        assert_eq!(secs(0, 1.0), 60);
        assert_eq!(secs(1, 1.0), 120);
        assert_eq!(secs(3, 1.0), 480);
        assert_eq!(secs(6, 1.0), 3600);
        assert_eq!(secs(1000, 1.0), 3600);
        assert_eq!(secs(0, 0.8), 48);
        assert_eq!(secs(6, 1.2), 4320);
    }
}
