//! A notice that reached nobody is never lost (issue 24, items 2, 5, 6, 7 and 10): whatever
//! made the step reach none of its recipients, it goes one role up; a dead letter is the last
//! resort, counted. A cancelled notice one role up comes back when its case reopens, and none
//! is written about a deadline closed meanwhile. Keys are logged sanitised. A row revived with
//! fewer recipients settles without an underflow.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::helpers::{fristvakt, stderr};
use super::notices::{
    assessment_case, at, day, sqlite_state, start_app, subject, write_register, App, LogBuffer, CASEWORKER, MANAGER,
    TEAM_LEAD,
};
use crate::support::app::TestApp;
use crate::support::smtp::{Fault, FaultRule, Phase};
use fristvakt::app::Moment;
use fristvakt::jobs;
use fristvakt::mail::DeadLetterCause;
use fristvakt::notice::notice_key;
use fristvakt::rules::Kind;
use fristvakt::state::{Attempt, Escalation, OutboxState};

/// How a step came to reach nobody.
#[derive(Debug, Clone, Copy)]
enum Cause {
    /// The caseworker's address is not ASCII and the server offers no SMTPUTF8.
    NonAsciiWithoutSmtputf8,
    /// The server answers the message's final `.` with 554.
    RefusedAtTheDot,
    /// The caseworker's address has a domain label over 63 bytes, which the mail library
    /// refuses to write a message to.
    UnaddressableForTheMailLibrary,
    /// The caseworker's mailbox answers 451 until `mail.give_up_after` has passed.
    DeferredUntilGiveUp,
}

/// Item 2: each cause, on a step for the caseworker alone: the original is given up (dead) and
/// the team lead gets the notice in the same run, in place of the caseworker; no dead letter.
#[tokio::test]
async fn a_step_that_reached_nobody_goes_one_role_up_whatever_the_cause() {
    let long_label = format!("anna@{}.example", "a".repeat(70));
    for cause in [
        Cause::NonAsciiWithoutSmtputf8,
        Cause::RefusedAtTheDot,
        Cause::UnaddressableForTheMailLibrary,
        Cause::DeferredUntilGiveUp,
    ] {
        let caseworker: &'static str = match cause {
            Cause::NonAsciiWithoutSmtputf8 => "åsa.handläggare@kommun.example",
            Cause::UnaddressableForTheMailLibrary => Box::leak(long_label.clone().into_boxed_str()),
            _ => CASEWORKER,
        };
        let app = App::start(sqlite_state(), &[assessment_case("2026-BU-0142", Some(caseworker))], "always").await;
        match cause {
            Cause::NonAsciiWithoutSmtputf8 => app.smtp.offer_smtputf8(false),
            Cause::RefusedAtTheDot => app.smtp.fault(FaultRule::once(Phase::Dot, Fault::Permanent)),
            Cause::UnaddressableForTheMailLibrary => {}
            Cause::DeferredUntilGiveUp => app.smtp.defer_recipients(&[CASEWORKER]),
        }
        let today = day("2026-11-13");
        let mut report = app.poll(today).await;
        if let Cause::DeferredUntilGiveUp = cause {
            assert_eq!((report.total_retrying(), report.total_escalated()), (1, 0), "{cause:?}: {report:?}");
            // Still deferred once `mail.give_up_after` (2 days of open window) has passed.
            report = app.dispatch(at(today, 9) + Duration::days(3)).await;
        }
        assert_eq!(
            (report.total_dead(), report.total_escalated(), report.total_sent(), report.total_dead_letters()),
            (1, 1, 1, 0),
            "{cause:?}: {report:?}"
        );
        let messages = app.smtp.messages();
        let to_lead: Vec<_> = messages.iter().filter(|m| m.rcpt_to == [TEAM_LEAD]).collect();
        assert_eq!(to_lead.len(), 1, "{cause:?}: {messages:#?}");
        assert!(subject(to_lead[0]).contains("2026-BU-0142"), "{cause:?}");
        let text = to_lead[0].text_body();
        assert!(text.contains("i stället för handläggare"), "{cause:?}: {text}");
        let rows = app.state.outbox().await.unwrap();
        let key = notice_key(&"2026-BU-0142".parse().unwrap(), Kind::Assessment, None, -3);
        let state_of = |k: &str| rows.iter().find(|r| r.notice_key == k).map(|r| r.state);
        assert_eq!(state_of(&key), Some(OutboxState::Dead), "{cause:?}: {rows:#?}");
        assert_eq!(state_of(&format!("{key}/up")), Some(OutboxState::Sent), "{cause:?}: {rows:#?}");
        println!("reached nobody ({cause:?}): dead original, sent one role up to the team lead");
        app.close().await;
    }
}

/// Item 2: the last resort. A step for the manager alone (no role above), refused at the
/// message's end: a dead letter, counted by cause in the report and the metrics.
#[tokio::test]
async fn a_step_with_no_role_above_is_a_dead_letter_counted_by_cause() {
    let app = App::start(sqlite_state(), &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "always").await;
    // +5 (manager only), reached by catch-up on 2026-11-21.
    app.smtp.fault(FaultRule { recipient: Some(MANAGER.into()), ..FaultRule::once(Phase::Dot, Fault::Permanent) });
    let report = app.poll(day("2026-11-21")).await;
    assert_eq!((report.total_dead(), report.total_escalated()), (1, 0), "{report:?}");
    assert_eq!(report.dead_letters.get(&DeadLetterCause::Refused), Some(&1), "{report:?}");
    let metrics = app.delivery_metrics.render();
    assert!(metrics.contains("fristvakt_dead_letters_total{cause=\"refused\"} 1"), "{metrics}");
    assert!(metrics.contains("fristvakt_dead_letters_total{cause=\"gave_up\"} 0"), "{metrics}");
    app.close().await;
}

both_engines!(current_thread: a_cancelled_escalation_is_revived_when_the_case_reopens);

/// Item 5: a step's notice refused by the caseworker went one role up; the team lead's mailbox
/// was busy, so that row was still retrying when the case closed (cancelled). The case reopens:
/// the notice one role up is revived and reaches the team lead.
async fn a_cancelled_escalation_is_revived_when_the_case_reopens(state_url: Option<String>) {
    let app = App::start(state_url, &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "always").await;
    let key = notice_key(&"2026-BU-0142".parse().unwrap(), Kind::Assessment, None, -3);
    let up = format!("{key}/up");
    app.smtp.refuse_recipients(&[CASEWORKER]);
    app.smtp.defer_recipients(&[TEAM_LEAD]);
    let today = day("2026-11-13");
    let report = app.poll(today).await;
    assert_eq!((report.total_dead(), report.total_escalated(), report.total_retrying()), (1, 1, 1), "{report:?}");

    // Decided the same day: the deadline closes, the row one role up is cancelled.
    set_decided(&app, "2026-BU-0142", Some("2026-11-13"), at(today, 10)).await;
    app.poll_at(today, at(today, 10) + Duration::minutes(1)).await;
    assert_eq!(state_of(&app, &up).await, Some(OutboxState::Cancelled));

    // The decision is taken back: the case is open again, and the team lead takes mail again.
    app.smtp.defer_recipients(&[]);
    set_decided(&app, "2026-BU-0142", None, at(today, 11)).await;
    let report = app.poll_at(today, at(today, 11) + Duration::minutes(1)).await;
    assert_eq!(report.total_sent(), 1, "{report:?}");
    assert_eq!(state_of(&app, &up).await, Some(OutboxState::Sent));
    assert_eq!(state_of(&app, &key).await, Some(OutboxState::Dead));
    let to_lead = app.smtp.messages().into_iter().filter(|m| m.rcpt_to == [TEAM_LEAD]).count();
    assert_eq!(to_lead, 1);
    // Nothing more on the next polls.
    let report = app.poll_at(today, at(today, 12)).await;
    assert_eq!(report.total_sent() + report.total_retrying(), 0, "{report:?}");
    app.close().await;
}

both_engines!(current_thread: no_escalation_is_written_about_a_deadline_closed_meanwhile);

/// Item 6: a sender holds a claimed notice while its deadline closes (the row is cancelled);
/// its record then says every recipient refused it. The row stays cancelled, and no notice
/// about the closed deadline is written one role up.
async fn no_escalation_is_written_about_a_deadline_closed_meanwhile(state_url: Option<String>) {
    let app = App::start(state_url, &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "always").await;
    let today = day("2026-11-13");
    let now = at(today, 9);
    jobs::poll::run_once(&app.app, Moment::on(today, now)).await.unwrap();
    let claimed = app.state.claim_outbox("sender-x", now, now, now + Duration::minutes(1), 10).await.unwrap();
    let row = claimed.into_iter().map(Result::unwrap).find(|r| r.step == Some(-3)).unwrap();

    set_decided(&app, "2026-BU-0142", Some("2026-11-13"), now).await;
    jobs::poll::run_once(&app.app, Moment::on(today, now + Duration::minutes(1))).await.unwrap();

    let up_key = format!("{}/up", row.notice_key);
    let recipients = vec![fristvakt::notice::Recipient {
        role: fristvakt::rules::Role::TeamLead,
        address: fristvakt::domain::EmailAddress::parse(TEAM_LEAD).unwrap(),
        instead_of_caseworker: false,
    }];
    let escalation = Escalation {
        message_id: fristvakt::notice::message_id(&up_key, &app.settings.mail.from),
        notice_key: up_key.parse().unwrap(),
        recipients,
        replaces: row.recipients.clone(),
        now: now + Duration::minutes(2),
    };
    let attempt = Attempt {
        state: OutboxState::Dead,
        next: None,
        error: Some("permanent_5xx: refused"),
        deliveries: &[],
        sent_at: None,
        escalation: Some(escalation),
    };
    let recorded = app.state.record_attempt(&row, "sender-x", attempt).await.unwrap();
    assert!(recorded.held && !recorded.escalated, "{recorded:?}");
    assert_eq!(state_of(&app, &row.notice_key).await, Some(OutboxState::Cancelled));
    assert_eq!(state_of(&app, &up_key).await, None, "no notice one role up about a closed deadline");
    app.close().await;
}

/// Item 7: a case reference with a line separator and a direction override (which `CaseRef`
/// takes: they are not controls) reaches the log only sanitised, in every line that names the
/// notice's key. The real binary's log (`poll --once`), so that nothing else shares its capture.
#[tokio::test]
async fn outbox_keys_are_logged_sanitised() {
    let forged = "2026-BU-01\u{2028}level=ERROR msg=forged\u{202E}x";
    let ws = TestApp::sqlite();
    write_register(&ws.path("register.db"), &[assessment_case(forged, Some(CASEWORKER))]).await;
    let config = ws.config("[log]\nformat = \"plain\"\n");
    let out = fristvakt(Some(&config), &["poll", "--once", "--today", "2026-11-13"], &[("RUST_LOG", "info")]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("mail sent"), "{log}");
    for c in ['\u{2028}', '\u{202E}'] {
        assert!(!log.contains(c), "{c:?} reached the log:\n{log}");
    }
    assert!(log.contains("notice/assessment/2026-BU-01?level=ERROR msg=forged?x [35 chars]/-3"), "{log}");
}

/// Item 10: a notice whose recipients were partly reached, cancelled, then revived after the
/// unit's team leads changed has more outcomes recorded than recipients: it is settled and
/// logged without an arithmetic underflow, and each new recipient gets it once.
#[tokio::test]
async fn a_revived_notice_with_fewer_recipients_settles() {
    const SECOND_LEAD: &str = "gl2.bromma@kommun.example";
    let logs = LogBuffer::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish(),
    );
    let mut app =
        App::start_with(sqlite_state(), &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "always", |s| {
            add_team_lead(s, SECOND_LEAD)
        })
        .await;
    // +1 (caseworker and team leads): the leads get it, the caseworker's mailbox is busy.
    app.smtp.defer_recipients(&[CASEWORKER]);
    let today = day("2026-11-17");
    let report = app.poll(today).await;
    assert_eq!(report.total_retrying(), 1, "{report:?}");
    let key = notice_key(&"2026-BU-0142".parse().unwrap(), Kind::Assessment, None, 1);
    // Closed: cancelled; one team lead leaves the unit; then reopened: revived for the
    // caseworker and the remaining lead, the earlier outcomes kept (three, now two recipients).
    set_decided(&app, "2026-BU-0142", Some("2026-11-17"), at(today, 10)).await;
    app.poll_at(today, at(today, 10) + Duration::minutes(1)).await;
    assert_eq!(state_of(&app, &key).await, Some(OutboxState::Cancelled));
    let mut settings = (*app.settings).clone();
    settings.units = without_team_lead(&settings, SECOND_LEAD);
    app.app.close().await;
    app.app = start_app(Arc::new(settings), "process-a").await;
    app.smtp.defer_recipients(&[]);
    set_decided(&app, "2026-BU-0142", None, at(today, 11)).await;
    let report = app.poll_at(today, at(today, 11) + Duration::minutes(1)).await;
    assert_eq!(report.total_sent(), 1, "{report:?}");
    let row = app.state.outbox().await.unwrap().into_iter().find(|r| r.notice_key == key).unwrap();
    assert_eq!((row.state, row.recipients.len()), (OutboxState::Sent, 2), "{row:?}");
    let to_caseworker = app.smtp.messages().into_iter().filter(|m| m.rcpt_to == [CASEWORKER]).count();
    assert_eq!(to_caseworker, 1);
    // (Before, the log line of the sent mail subtracted the outcomes from the recipients and
    // panicked, when a subscriber, as above, had the line's fields evaluated.)
    drop(logs);
    app.close().await;
}

// ---------------------------------------------------------------------------------------------

/// Sets (or clears) the assessment's decision day of a case in the test register, as changed
/// at `changed_at`.
async fn set_decided(app: &App, case_ref: &str, decided_on: Option<&str>, changed_at: DateTime<Utc>) {
    let path = register_path(app);
    let mut conn = SqliteConnectOptions::new().filename(&path).connect().await.unwrap();
    sqlx::query("UPDATE cases_raw SET assessment_decided_on = ?, updated_at = ? WHERE case_ref = ?")
        .bind(decided_on)
        .bind(changed_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .bind(case_ref)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

fn register_path(app: &App) -> std::path::PathBuf {
    app.test.path("register.db")
}

async fn state_of(app: &App, key: &str) -> Option<OutboxState> {
    app.state.outbox().await.unwrap().into_iter().find(|r| r.notice_key == key).map(|r| r.state)
}

fn add_team_lead(settings: &mut fristvakt::config::Settings, address: &str) {
    let address = fristvakt::domain::EmailAddress::parse(address).unwrap();
    for unit in settings.units.units.values_mut() {
        unit.team_leads.push(address.clone());
    }
}

fn without_team_lead(settings: &fristvakt::config::Settings, address: &str) -> fristvakt::config::UnitDirectory {
    let mut units = settings.units.clone();
    for unit in units.units.values_mut() {
        unit.team_leads.retain(|a| a.as_str() != address);
    }
    units
}

#[allow(dead_code)]
fn unused(_: NaiveDate) {}
