//! Scripted SMTP faults (issue 24, "What to build" 3): the test server fails at every phase of
//! a session — greeting, EHLO, MAIL, RCPT, DATA, the final `.`, QUIT — with a transient reply,
//! a permanent one, silence or a dropped connection, once; each cell of the table checks what
//! became of the notice in that run (delivered, sent one role up, retried, dispatch paused,
//! unconfirmed, a dead letter) and that a later run, the fault gone, leaves every notice
//! delivered to someone, once (twice only where the server took the message and never said so).
//! Timeouts are a second, and the cells run side by side, so that the table takes seconds.

use std::time::Instant;

use chrono::Duration;

use super::notices::{assessment_case, at, day, sqlite_state, App, CASEWORKER, MANAGER, TEAM_LEAD};
use crate::support::smtp::{Fault, FaultRule, Phase};
use fristvakt::notice::notice_key;
use fristvakt::rules::Kind;
use fristvakt::state::OutboxState;

/// What a fault makes of the notice in the run that meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Delivered to its recipient in that run.
    Delivered,
    /// Given up for its recipient and sent one role up in the same run.
    Escalated,
    /// Recorded `retrying` (an attempt counted), sent by a later run.
    Retried,
    /// The server could not be reached or refused fristvakt itself: dispatch paused, the row
    /// kept for a later run.
    Paused,
    /// The final `.` went out unanswered: retried only after `mail.smtp.data_timeout`.
    Unconfirmed,
    /// Nobody reached and no role above: dead, counted.
    DeadLetter,
}

/// The rule: what each fault at each phase makes of a notice to one caseworker.
fn expected(phase: Phase, fault: Fault) -> Outcome {
    use Fault::*;
    use Outcome::*;
    match (phase, fault) {
        // Before any mail: an outage of the server (or a refusal of fristvakt): nothing is the
        // mail's fault, the outbox waits.
        (Phase::Greeting | Phase::Ehlo, _) => Paused,
        (Phase::Mail, Permanent) => Paused,
        (Phase::Rcpt | Phase::Data | Phase::Dot, Permanent) => Escalated,
        (Phase::Dot, Silence | Disconnect) => Unconfirmed,
        (Phase::Mail | Phase::Rcpt | Phase::Data | Phase::Dot, Transient | Silence | Disconnect) => Retried,
        // The mail was taken before QUIT: whatever QUIT meets changes nothing.
        (Phase::Quit, _) => Delivered,
    }
}

/// One cell of the table: its fault, the step it meets (−3: the caseworker alone; +5: the
/// manager alone, with no role above), what came of it, and the figures.
#[derive(Debug)]
struct Cell {
    phase: Phase,
    fault: Fault,
    step: i32,
    expected: Outcome,
    observed: Result<Outcome, String>,
    /// Messages the server received per notice in the end (the original's and its role up's).
    received: usize,
    first_run: std::time::Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_phase_and_fault_of_an_smtp_session_ends_as_the_rule_says() {
    let started = Instant::now();
    let mut cells = Vec::new();
    for phase in Phase::ALL {
        for fault in Fault::ALL {
            cells.push((phase, fault, -3, expected(phase, fault)));
        }
    }
    // The last resort: the manager's step refused, with no role above.
    for phase in [Phase::Rcpt, Phase::Data, Phase::Dot] {
        cells.push((phase, Fault::Permanent, 5, Outcome::DeadLetter));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (phase, fault, step, expected) in cells {
        tasks.spawn(run_cell(phase, fault, step, expected));
    }
    let mut table = Vec::new();
    while let Some(cell) = tasks.join_next().await {
        table.push(cell.unwrap());
    }
    table.sort_by_key(|c| {
        (c.step, Phase::ALL.iter().position(|p| *p == c.phase), Fault::ALL.iter().position(|f| *f == c.fault))
    });
    println!("SMTP fault table ({} cells, {:.1?} in all):", table.len(), started.elapsed());
    println!(
        "{:<6} {:<9} {:<11} {:<12} {:<12} {:>8} {:>9}",
        "step", "phase", "fault", "expected", "observed", "received", "first run"
    );
    for c in &table {
        let observed = match &c.observed {
            Ok(o) => format!("{o:?}"),
            Err(e) => format!("FAILED: {e}"),
        };
        println!(
            "{:<6} {:<9} {:<11} {:<12} {:<12} {:>8} {:>9.2?}",
            c.step,
            format!("{:?}", c.phase),
            format!("{:?}", c.fault),
            format!("{:?}", c.expected),
            observed,
            c.received,
            c.first_run
        );
    }
    let wrong: Vec<&Cell> = table.iter().filter(|c| c.observed.as_ref() != Ok(&c.expected)).collect();
    assert!(wrong.is_empty(), "cells that did not end as the rule says: {wrong:#?}");
}

async fn run_cell(phase: Phase, fault: Fault, step: i32, expected: Outcome) -> Cell {
    let app = App::start_with(sqlite_state(), &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "always", |s| {
        s.mail.smtp.timeout = std::time::Duration::from_secs(1);
        s.mail.smtp.data_timeout = std::time::Duration::from_secs(1);
        s.mail.smtp.pool_size = 1;
    })
    .await;
    // −3 on its day; +5 (the manager) by catch-up on its day.
    let today = if step == -3 { day("2026-11-13") } else { day("2026-11-21") };
    let recipient = if step == -3 { CASEWORKER } else { MANAGER };
    let recipient_rule = matches!(phase, Phase::Rcpt | Phase::Data | Phase::Dot).then(|| recipient.to_string());
    app.smtp.fault(FaultRule { phase, fault, recipient: recipient_rule, times: Some(1) });
    let first = Instant::now();
    let report = app.poll(today).await;
    let first_run = first.elapsed();
    let key = notice_key(&"2026-BU-0142".parse().unwrap(), Kind::Assessment, None, step);
    let up = format!("{key}/up");
    let rows = app.state.outbox().await.unwrap();
    let state_of = |k: &str| rows.iter().find(|r| r.notice_key == k).map(|r| r.state);
    let received = |to: &str| app.smtp.messages().iter().filter(|m| m.rcpt_to == [to]).count();
    let observed = match (state_of(&key), state_of(&up)) {
        (Some(OutboxState::Sent), None) if received(recipient) == 1 => Ok(Outcome::Delivered),
        (Some(OutboxState::Dead), Some(OutboxState::Sent)) if received(TEAM_LEAD) == 1 => Ok(Outcome::Escalated),
        (Some(OutboxState::Dead), None) if report.total_dead_letters() == 1 => Ok(Outcome::DeadLetter),
        (Some(OutboxState::Retrying), None) if report.unconfirmed == 1 => Ok(Outcome::Unconfirmed),
        (Some(OutboxState::Pending | OutboxState::Retrying), None) if report.paused() => Ok(Outcome::Paused),
        (Some(OutboxState::Retrying), None) if report.total_retrying() == 1 => Ok(Outcome::Retried),
        (original, up) => Err(format!("original {original:?}, one role up {up:?}, report {report:?}")),
    };
    // The fault is gone: a later run leaves the notice delivered to someone.
    app.dispatch(at(today, 9) + Duration::hours(2)).await;
    let messages = app.smtp.messages();
    let received = messages.len();
    let observed = observed.and_then(|o| {
        let reached = messages.iter().any(|m| m.rcpt_to == [recipient] || m.rcpt_to == [TEAM_LEAD]);
        match o {
            Outcome::DeadLetter if received == 0 => Ok(o),
            Outcome::DeadLetter => Err(format!("a dead letter was sent: {messages:#?}")),
            // The server that took the message and never said so gets it again (the one
            // duplicate at-least-once allows, with the same Message-ID).
            Outcome::Unconfirmed if phase == Phase::Dot && fault == Fault::Silence && received == 2 => {
                let ids: Vec<_> = messages.iter().map(|m| m.header("Message-ID")).collect();
                if ids[0] == ids[1] {
                    Ok(o)
                } else {
                    Err(format!("a repeat with another Message-ID: {ids:?}"))
                }
            }
            _ if reached && received == 1 => Ok(o),
            _ => Err(format!("{received} message(s) in the end: {messages:#?}")),
        }
    });
    app.close().await;
    Cell { phase, fault, step, expected, observed, received, first_run }
}
