//! The dispatch job: the outbox's due mail handed to the mailer.

use crate::app::{App, Moment};
use crate::jobs::JobError;
use crate::mail::dispatch::RunControl;
use crate::mail::{self, DispatchReport};
use crate::metrics::Outcome;
use crate::rules::ladder::offset_label;
use crate::state::OutboxCategory;

/// Sends every outbox row due at `at.now` (the days in the mail count from `at.today`) until
/// none is left or shutdown begins; counts the outcomes in the metrics.
pub async fn run_once(app: &App, at: Moment) -> Result<DispatchReport, JobError> {
    let report = mail::dispatch::dispatch_until(
        &app.state,
        &app.mailer,
        &app.settings,
        at.now,
        at.today,
        &app.holder,
        RunControl {
            stop: Some(&app.shutdown),
            // The watchdog's sign of life, after every mail: a slow server never starves it.
            beat: &|| app.beat(chrono::Utc::now()),
        },
    )
    .await?;
    for (outcome, map) in [
        (Outcome::Sent, &report.sent),
        (Outcome::Retrying, &report.retrying),
        (Outcome::Dead, &report.dead),
        (Outcome::Postponed, &report.postponed),
    ] {
        for (label, n) in map {
            match (label.category, label.kind) {
                (Some(OutboxCategory::Digest), _) if outcome == Outcome::Sent => app.metrics.add_digests_sent(*n),
                (_, Some(kind)) => {
                    app.metrics.add_notice(kind, label.step.map(offset_label).unwrap_or_default(), outcome, *n)
                }
                _ => {}
            }
        }
    }
    for (class, n) in &report.errors {
        app.metrics.add_smtp_error(*class, *n);
    }
    app.delivery_metrics.add_recipients_refused(report.total_refused_recipients());
    app.delivery_metrics.add_escalations(report.total_escalated());
    for (cause, n) in &report.dead_letters {
        app.delivery_metrics.add_dead_letters(*cause, *n);
    }
    app.delivery_metrics.add_claims_lost(report.claims_lost);
    app.delivery_metrics.add_unconfirmed(report.unconfirmed);
    for (class, n) in &report.server_refusals {
        app.delivery_metrics.add_server_refusal(*class, *n);
    }
    // Paused while the server refuses fristvakt or cannot be reached; resumed by the first mail
    // it takes again.
    if report.paused() {
        app.delivery_metrics.set_dispatch_paused(true);
    } else if report.total_sent() > 0 {
        app.delivery_metrics.set_dispatch_paused(false);
    }
    Ok(report)
}
