//! Escalation notices end to end (issue 4): a scripted register, the poll, the outbox and the
//! dispatcher, sending through lettre's real SMTP client to a real SMTP server on loopback, on
//! SQLite and on PostgreSQL state. Clocks are fixed: every poll gets its `today` and `now`.
//!
//! These tests drive the daemon's jobs (`jobs::poll`, `jobs::dispatch`) on the application the
//! daemon builds, rather than the binary, so that every day of a scenario is exact.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::support::app::TestApp;
use crate::support::smtp::{ReceivedMail, SmtpMode, TestSmtp};
use fristvakt::app::Moment;
use fristvakt::config::{self, Settings};
use fristvakt::domain::ErrorClass;
use fristvakt::jobs;
use fristvakt::mail::DispatchReport;
use fristvakt::notice::{message_id, notice_key};
use fristvakt::rules::Kind;
use fristvakt::state::{DeliveryOutcome, OutboxState};

pub(crate) const CASEWORKER: &str = "anna.handlaggare@kommun.example";
pub(crate) const TEAM_LEAD: &str = "gl.bromma@kommun.example";
pub(crate) const MANAGER: &str = "ec.bromma@kommun.example";
/// A second caseworker, for a second case.
pub(crate) const CASEWORKER_2: &str = "bo.handlaggare@kommun.example";
pub(crate) const CHILD_NAME: &str = "Lisa Testsson";
pub(crate) const PERSONNUMMER: &str = "201201011234";

// ---------------------------------------------------------------------------------------------
// Scenarios, each run on SQLite and on PostgreSQL state.

both_engines!(current_thread: ladder_sends_exact_notices_day_by_day);

both_engines!(current_thread: repeats_restarts_and_a_second_process_send_nothing_new);

both_engines!(current_thread: catch_up_sends_only_the_latest_step);

both_engines!(current_thread: first_sight_horizon_keeps_the_first_start_quiet);

both_engines!(current_thread: smtp_outage_pauses_then_delivers_the_most_urgent_first);

both_engines!(current_thread: permanent_rejection_is_dead_at_once);

both_engines!(current_thread: personal_columns_never_reach_mail_logs_or_errors);

both_engines!(current_thread: a_refused_recipient_does_not_stop_the_others_and_a_lone_one_goes_up);

both_engines!(current_thread: a_server_refusing_the_sender_pauses_dispatch_and_keeps_the_backlog);

/// Fault test: the server refuses fristvakt's login (AUTH 535): the same as a refused sender —
/// paused, counted under `auth`, the notice kept and sent once the login works again.
#[tokio::test]
async fn a_server_refusing_the_login_pauses_dispatch_and_keeps_the_notice() {
    let started = std::time::Instant::now();
    let test = TestApp::with_sqlite_register(None);
    let smtp = TestSmtp::start().await;
    let register_path = test.path("register.db");
    write_register(&register_path, &[assessment_case("2026-BU-0142", Some(CASEWORKER))]).await;
    settings(&test, smtp.port(), "always");
    let credentials = [
        ("FRISTVAKT__MAIL__SMTP__USERNAME".to_string(), "fristvakt".to_string()),
        ("FRISTVAKT__MAIL__SMTP__PASSWORD".to_string(), "not-the-password".to_string()),
    ];
    let with_login = config::load_with_env(Some(&test.path("fristvakt.toml")), credentials.to_vec()).unwrap();
    let app = App { app: start_app(Arc::new(with_login), "process-a").await, smtp, test };
    app.smtp.set_mode(SmtpMode::RejectAuth);
    let t0 = at(day("2026-11-13"), 9);
    let report = app.poll_at(day("2026-11-13"), t0).await;
    assert!(report.paused(), "{report:?}");
    assert_eq!(report.server_refusals.get(&ErrorClass::Auth), Some(&1), "{report:?}");
    assert_eq!((report.total_retrying(), report.total_dead(), report.total_sent()), (1, 0, 0), "{report:?}");
    let row = only_row(&app).await;
    assert_eq!(row.state, OutboxState::Retrying);
    let error = row.last_error.unwrap_or_default();
    assert!(error.starts_with("server_refused_auth: ") && error.contains("535"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");
    assert!(app.delivery_metrics.dispatch_paused());
    app.smtp.set_mode(SmtpMode::Accept);
    let report = app.dispatch(t0 + Duration::minutes(5)).await;
    assert_eq!(report.total_sent(), 1, "{report:?}");
    assert_eq!(single(&app.smtp.messages()).rcpt_to, [CASEWORKER]);
    assert!(!app.delivery_metrics.dispatch_paused());
    println!(
        "fault test (AUTH 535): paused after 1 attempt, 0 dead, sent after the login worked; {:.2?}",
        started.elapsed()
    );
    app.close().await;
}

#[tokio::test]
async fn closed_sending_window_postpones_to_the_next_opening() {
    let app =
        App::start(sqlite_state(), &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "Mon-Fri 07:00-18:00").await;
    // Friday 2026-11-13 at 19:30 local time (18:30 UTC): the −3 reminder is due, the office closed.
    let evening = Utc.with_ymd_and_hms(2026, 11, 13, 18, 30, 0).unwrap();
    let report = app.poll_at(day("2026-11-13"), evening).await;
    assert_eq!(report.total_sent(), 0);
    assert!(app.smtp.messages().is_empty());
    // The poll already set the row to wait for Monday 07:00 local (06:00 UTC): nothing to claim.
    assert_eq!(report.total_postponed(), 0);
    let monday_open = Utc.with_ymd_and_hms(2026, 11, 16, 6, 0, 0).unwrap();
    for at in [evening + Duration::hours(6), monday_open - Duration::seconds(1)] {
        assert_eq!(app.dispatch(at).await.total_sent(), 0, "at {at}");
    }
    let report = app.dispatch(monday_open).await;
    assert_eq!(report.total_sent(), 1);
    let mail = single(&app.smtp.messages());
    // "Today" in the mail is the day it is sent: Monday, the legal last day itself.
    assert_eq!(subject(&mail), "Förhandsbedömning 2026-BU-0142: sista dag 2026-11-16 (sista dagen i dag)");

    // A retry that falls outside the window is postponed to the next opening by the dispatcher.
    app.smtp.clear();
    app.smtp.set_mode(SmtpMode::RejectTransient);
    // Monday 17:59 local: the last-day notice fails once; its retry falls after 18:00.
    let monday_late = Utc.with_ymd_and_hms(2026, 11, 16, 16, 59, 0).unwrap();
    let report = app.poll_at(day("2026-11-16"), monday_late).await;
    assert_eq!(report.total_retrying(), 1, "{report:?}");
    app.smtp.set_mode(SmtpMode::Accept);
    // 18:10 local: the retry is due but the window is closed.
    let report = app.dispatch(Utc.with_ymd_and_hms(2026, 11, 16, 17, 10, 0).unwrap()).await;
    assert_eq!(report.total_postponed(), 1, "{report:?}");
    assert!(app.smtp.messages().is_empty());
    let report = app.dispatch(Utc.with_ymd_and_hms(2026, 11, 17, 6, 0, 0).unwrap()).await;
    assert_eq!(report.total_sent(), 1, "{report:?}");
    app.close().await;
}

#[tokio::test]
async fn a_notice_held_over_the_weekend_gets_its_full_retry_period() {
    let app =
        App::start(sqlite_state(), &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "Mon-Fri 07:00-18:00").await;
    // Written Friday 19:30 local for Monday 07:00: 60 hours later, beyond give_up_after (2 days).
    let evening = Utc.with_ymd_and_hms(2026, 11, 13, 18, 30, 0).unwrap();
    app.poll_at(day("2026-11-13"), evening).await;
    // Monday's first attempt gets a 4xx: that is a retry, not a mail given up.
    app.smtp.set_mode(SmtpMode::RejectTransient);
    let monday_open = Utc.with_ymd_and_hms(2026, 11, 16, 6, 0, 0).unwrap();
    let report = app.dispatch(monday_open).await;
    assert_eq!((report.total_retrying(), report.total_dead()), (1, 0), "{report:?}");
    app.smtp.set_mode(SmtpMode::Accept);
    let report = app.dispatch(monday_open + Duration::minutes(5)).await;
    assert_eq!(report.total_sent(), 1, "{report:?}");
    app.close().await;
}

/// The give-up clock counts only the time the sending window was open: a notice written on
/// Friday at 10:00 that fails at 16:00 and again on Monday at 08:00 has used 9 hours of its
/// 2 days (not 70), is still retried and delivered; one that keeps failing is given up once
/// 48 open hours have passed, on Thursday afternoon, not before.
#[tokio::test]
async fn the_give_up_clock_counts_only_open_window_hours() {
    let local = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 11, d, h - 1, 0, 0).unwrap(); // CET = UTC+1
    for keeps_failing in [false, true] {
        let app =
            App::start(sqlite_state(), &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "Mon-Fri 07:00-18:00")
                .await;
        app.smtp.set_mode(SmtpMode::RejectTransient);
        let report = app.poll_at(day("2026-11-13"), local(13, 10)).await;
        assert_eq!(report.total_retrying(), 1, "Friday 10:00: {report:?}");
        assert_eq!(app.dispatch(local(13, 16)).await.total_retrying(), 1, "Friday 16:00");
        assert_eq!(app.dispatch(local(16, 8)).await.total_retrying(), 1, "Monday 08:00: 9 open hours");
        if !keeps_failing {
            app.smtp.set_mode(SmtpMode::Accept);
            let report = app.dispatch(local(16, 9)).await;
            assert_eq!(report.total_sent(), 1, "{report:?}");
            assert_eq!(app.smtp.messages().len(), 1);
            app.close().await;
            continue;
        }
        // Friday 8 h + Monday to Wednesday 33 h + Thursday 07:00–12:00 5 h = 46 open hours.
        assert_eq!(app.dispatch(local(19, 12)).await.total_retrying(), 1, "Thursday 12:00: 46 open hours");
        // Thursday 16:00: 50 open hours, beyond give_up_after (2 days).
        // Given up for the caseworker, it goes one role up (issue 24, item 2): the team lead's row,
        // refused for now by this server too, is retried.
        let report = app.dispatch(local(19, 16)).await;
        assert_eq!(
            (report.total_dead(), report.total_escalated(), report.total_retrying()),
            (1, 1, 1),
            "Thursday 16:00: {report:?}"
        );
        let rows = app.state.outbox().await.unwrap();
        let row = rows.iter().find(|r| r.state == OutboxState::Dead).unwrap();
        assert!(rows
            .iter()
            .any(|r| r.notice_key == format!("{}/up", row.notice_key) && r.state == OutboxState::Retrying));
        assert!(
            row.last_error.as_deref().unwrap_or_default().contains("of open sending window"),
            "{:?}",
            row.last_error
        );
        app.close().await;
    }
}

// ---------------------------------------------------------------------------------------------

async fn ladder_sends_exact_notices_day_by_day(state_url: Option<String>) {
    let app = App::start(state_url, &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "always").await;
    let from = app.settings.mail.from.clone();
    let expected: [(&str, i32, &[&str], &str); 4] = [
        ("2026-11-13", -3, &[CASEWORKER], "sista dag 2026-11-16 (om 3 dagar)"),
        ("2026-11-16", 0, &[CASEWORKER], "sista dag 2026-11-16 (sista dagen i dag)"),
        ("2026-11-17", 1, &[CASEWORKER, TEAM_LEAD], "sista dag 2026-11-16 (1 dag försenad)"),
        ("2026-11-21", 5, &[MANAGER], "sista dag 2026-11-16 (5 dagar försenad)"),
    ];
    let mut sent_before = 0;
    for offset in 0..16 {
        let date = day("2026-11-10") + Duration::days(offset);
        let report = app.poll(date).await;
        let messages = app.smtp.messages();
        let new = &messages[sent_before..];
        sent_before = messages.len();
        let Some((_, step, to, situation)) = expected.iter().find(|(d, ..)| day(d) == date) else {
            assert!(new.is_empty(), "{date}: no notice expected, got {new:#?}");
            assert_eq!(report.total_sent(), 0);
            continue;
        };
        let mail = single(new);
        assert_eq!(report.total_sent(), 1, "{date}: {report:?}");
        let label = report.sent.keys().next().unwrap();
        assert_eq!((label.kind, label.step), (Some(Kind::Assessment), Some(*step)));
        assert_eq!(sorted(&mail.rcpt_to), sorted_strs(to), "{date}: envelope");
        assert_eq!(mail.mail_from, "fristvakt@kommun.example");
        let header_to: Vec<String> = mail.header("To").unwrap().split(',').map(|a| a.trim().to_string()).collect();
        assert_eq!(sorted(&header_to), sorted_strs(to), "{date}: To header");
        assert_eq!(subject(&mail), format!("Förhandsbedömning 2026-BU-0142: {situation}"));
        let id = message_id(&notice_key(&"2026-BU-0142".parse().unwrap(), Kind::Assessment, None, *step), &from);
        assert_eq!(mail.header("Message-ID").as_deref(), Some(id.as_str()), "{date}");
        assert_eq!(mail.header("Auto-Submitted").as_deref(), Some("auto-generated"));
        assert_eq!(mail.header("X-Auto-Response-Suppress").as_deref(), Some("All"));
        assert!(mail.header("Date").is_some());

        let text = mail.text_body();
        let html = mail.html_body().expect("an HTML part");
        assert!(text.contains("Ärende:     2026-BU-0142"), "{text}");
        assert!(text.contains("Enhet:      BRO-BU – Bromma barn och unga"), "{text}");
        assert!(text.contains("ska förhandsbedömningen vara klar inom 14 dagar från att anmälan kom in"), "{text}");
        assert!(text.contains("Sista dag:  2026-11-16"), "{text}");
        assert!(text.contains("Öppna ärendet: https://register.kommun.example/case/2026-BU-0142"), "{text}");
        assert!(html.contains("href=\"https://register.kommun.example/case/2026-BU-0142\""), "{html}");
        for address in *to {
            assert!(text.contains(&format!("- {address} (")), "{date}: {address} not listed in {text}");
        }
        let (days, why) = match step {
            -3 => ("Läget 2026-11-13: 3 dagar kvar till sista dagen", "3 dagar före sista dagen till handläggare."),
            0 => ("Läget 2026-11-16: i dag är sista dagen", "på sista dagen till handläggare."),
            1 => (
                "Läget 2026-11-17: 1 dag försenad – sista dagen var 2026-11-16",
                "1 dag efter sista dagen till handläggare och gruppledare.",
            ),
            _ => (
                "Läget 2026-11-21: 5 dagar försenad – sista dagen var 2026-11-16",
                "5 dagar efter sista dagen till enhetschef.",
            ),
        };
        assert!(text.contains(days), "{date}: {text}");
        assert!(text.contains(why), "{date}: {text}");
        if *step == 1 {
            assert!(text.contains(&format!("- {CASEWORKER} (handläggare)")), "{text}");
            assert!(text.contains(&format!("- {TEAM_LEAD} (gruppledare)")), "{text}");
        }
        if *step == 5 {
            assert!(text.contains(&format!("- {MANAGER} (enhetschef)")), "{text}");
        }
    }
    assert_eq!(app.smtp.messages().len(), 4);
    let states: Vec<(i32, OutboxState)> =
        app.state.outbox_for_case("2026-BU-0142").await.unwrap().iter().map(|r| (r.step.unwrap(), r.state)).collect();
    assert_eq!(
        states,
        [(-3, OutboxState::Sent), (0, OutboxState::Sent), (1, OutboxState::Sent), (5, OutboxState::Sent)]
    );
    app.close().await;
}

async fn repeats_restarts_and_a_second_process_send_nothing_new(state_url: Option<String>) {
    let cases = [assessment_case("2026-BU-0142", Some(CASEWORKER)), assessment_case("2026-BU-0143", None)];
    let mut app = App::start(state_url, &cases, "always").await;
    let first = app.poll(day("2026-11-17")).await;
    // Both cases are first seen at +1: one notice each; the caseworker-less one goes to the
    // team lead instead, with a note saying so.
    assert_eq!(first.total_sent(), 2, "{first:?}");
    let messages = app.smtp.messages();
    let fallback = messages.iter().find(|m| subject(m).contains("2026-BU-0143")).expect("notice of 2026-BU-0143");
    assert_eq!(fallback.rcpt_to, [TEAM_LEAD]);
    let text = fallback.text_body();
    assert!(text.contains("saknar en giltig e-postadress till ärendets handläggare"), "{text}");
    assert!(text.contains(&format!("- {TEAM_LEAD} (gruppledare, i stället för handläggare)")), "{text}");

    // The same day again, in the same process.
    let again = app.poll(day("2026-11-17")).await;
    assert_eq!(again.total_sent(), 0);
    // The same day after a restart: a new state connection and a new mailer.
    app.restart().await;
    assert_eq!(app.poll(day("2026-11-17")).await.total_sent(), 0);
    assert_eq!(app.smtp.messages().len(), 2);

    // Two processes polling the same day at the same time: each notice goes out once.
    let second = App::attach(&app).await;
    let date = day("2026-11-21");
    let (a, b) = tokio::join!(app.poll(date), second.poll(date));
    assert_eq!(a.total_sent() + b.total_sent(), 2, "a: {a:?}\nb: {b:?}");
    let messages = app.smtp.messages();
    assert_eq!(messages.len(), 4);
    let ids: std::collections::BTreeSet<String> = messages.iter().map(|m| m.header("Message-ID").unwrap()).collect();
    assert_eq!(ids.len(), 4, "every Message-ID once");
    assert_eq!(second.poll(date).await.total_sent(), 0);
    second.app.close().await;
    app.close().await;
}

async fn catch_up_sends_only_the_latest_step(state_url: Option<String>) {
    // Received 2026-10-01: last day 2026-10-15; first seen 2026-11-04, 20 days overdue.
    let mut case = assessment_case("2026-BU-0200", Some(CASEWORKER));
    case.received_on = "2026-10-01";
    case.protection_assessed_on = Some("2026-10-01");
    let app = App::start(state_url, &[case], "always").await;
    let report = app.poll(day("2026-11-04")).await;
    assert_eq!(report.total_sent(), 1, "{report:?}");
    let mail = single(&app.smtp.messages());
    assert_eq!(mail.rcpt_to, [MANAGER]);
    assert_eq!(subject(&mail), "Förhandsbedömning 2026-BU-0200: sista dag 2026-10-15 (20 dagar försenad)");
    let states: Vec<(i32, OutboxState)> =
        app.state.outbox_for_case("2026-BU-0200").await.unwrap().iter().map(|r| (r.step.unwrap(), r.state)).collect();
    assert_eq!(
        states,
        [(-3, OutboxState::Skipped), (0, OutboxState::Skipped), (1, OutboxState::Skipped), (5, OutboxState::Sent)]
    );
    assert_eq!(app.poll(day("2026-11-05")).await.total_sent(), 0);
    assert_eq!(app.smtp.messages().len(), 1);
    app.close().await;
}

/// Contract §3, the quiet first start: first seen 29 and 30 days after the legal last day, a
/// deadline gets its latest step (the manager's); 31 days after, nothing — every step recorded
/// as skipped — while it still shows among the deadlines. A deadline that was known before it
/// fell that far behind keeps its ladder.
async fn first_sight_horizon_keeps_the_first_start_quiet(state_url: Option<String>) {
    // First poll Thursday 2026-11-05; last days Wed 10-07 (29 days), Tue 10-06 (30), Mon 10-05 (31).
    let mut cases = Vec::new();
    for (case_ref, received_on) in
        [("2026-BU-0029", "2026-09-23"), ("2026-BU-0030", "2026-09-22"), ("2026-BU-0031", "2026-09-21")]
    {
        let mut case = assessment_case(case_ref, Some(CASEWORKER));
        case.received_on = received_on;
        case.protection_assessed_on = Some(received_on);
        cases.push(case);
    }
    let app = App::start(state_url, &cases, "always").await;
    let report = app.poll(day("2026-11-05")).await;
    assert_eq!(report.total_sent(), 2, "{report:?}");
    let mut subjects: Vec<String> = app.smtp.messages().iter().map(subject).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Förhandsbedömning 2026-BU-0029: sista dag 2026-10-07 (29 dagar försenad)",
            "Förhandsbedömning 2026-BU-0030: sista dag 2026-10-06 (30 dagar försenad)",
        ]
    );
    assert_eq!(
        app_states(&app.state, "2026-BU-0031").await,
        [(-3, OutboxState::Skipped), (0, OutboxState::Skipped), (1, OutboxState::Skipped), (5, OutboxState::Skipped)]
    );
    assert_eq!(app_states(&app.state, "2026-BU-0030").await.last(), Some(&(5, OutboxState::Sent)));
    // Quiet, not forgotten: it is still a stored, overdue deadline.
    let stored = app.state.deadlines(&fristvakt::state::DeadlineFilter::default()).await.unwrap();
    let quiet = stored.iter().find(|d| d.case_ref.as_str() == "2026-BU-0031" && d.deadline.kind == Kind::Assessment);
    assert_eq!(quiet.map(|d| d.deadline.status(day("2026-11-05"))), Some(fristvakt::rules::Status::Overdue));
    assert_eq!(quiet.and_then(|d| d.first_seen_on), Some(day("2026-11-05")));
    // Later polls add nothing.
    assert_eq!(app.poll(day("2026-11-20")).await.total_sent(), 0);
    assert_eq!(app.smtp.messages().len(), 2);
    app.close().await;
}

async fn app_states(state: &fristvakt::state::StateStore, case_ref: &str) -> Vec<(i32, OutboxState)> {
    state.outbox_for_case(case_ref).await.unwrap().iter().map(|r| (r.step.unwrap(), r.state)).collect()
}

/// The mail server is down for days: no notice is at fault, so none counts an attempt or is
/// given up; dispatch pauses (each run tries the server once) and says why on the rows. When the
/// server is back, everything goes out, the most urgent first: the earliest legal last day.
async fn smtp_outage_pauses_then_delivers_the_most_urgent_first(state_url: Option<String>) {
    // In the register's order: last days 2026-11-16, 2026-11-13 and 2026-11-03 (overdue).
    let mut due_13 = assessment_case("2026-BU-0145", Some(CASEWORKER));
    due_13.received_on = "2026-10-30";
    due_13.protection_assessed_on = Some("2026-10-30");
    let mut due_03 = assessment_case("2026-BU-0143", Some(CASEWORKER));
    due_03.received_on = "2026-10-20";
    due_03.protection_assessed_on = Some("2026-10-20");
    let cases = [assessment_case("2026-BU-0142", Some(CASEWORKER)), due_13, due_03];
    // One connection at a time, so that the order of sending is the order of arrival.
    let mut app = App::start_with(state_url, &cases, "always", |s| s.mail.smtp.pool_size = 1).await;
    app.smtp.stop().await;
    let t0 = at(day("2026-11-13"), 9);
    let report = app.poll_at(day("2026-11-13"), t0).await;
    assert_eq!(report.unavailable, Some(ErrorClass::Connect), "{report:?}");
    assert!(report.paused(), "{report:?}");
    assert_eq!((report.total_sent(), report.total_retrying(), report.total_dead()), (0, 0, 0), "{report:?}");
    assert_eq!(report.errors.get(&ErrorClass::Connect), Some(&1), "one try of the server per run: {report:?}");
    let due = |rows: &[fristvakt::state::OutboxRow]| -> Vec<_> {
        rows.iter().filter(|r| r.state != OutboxState::Skipped).cloned().collect()
    };
    let rows = due(&app.state.outbox().await.unwrap());
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(rows.iter().all(|r| r.state == OutboxState::Pending && r.attempts == 0), "{rows:#?}");
    let noted: Vec<_> = rows.iter().filter_map(|r| r.last_error.as_deref()).collect();
    assert!(
        noted.len() == 1 && noted[0].starts_with("server_unavailable_connect: "),
        "the row tried says why: {noted:?}"
    );

    // Three days later, beyond mail.give_up_after (2 days), the server still down: nothing dead.
    app.restart().await;
    let report = app.dispatch(t0 + Duration::days(3)).await;
    assert_eq!((report.unavailable, report.total_dead()), (Some(ErrorClass::Connect), 0), "{report:?}");
    assert!(due(&app.state.outbox().await.unwrap()).iter().all(|r| r.attempts == 0));

    app.smtp.restart().await;
    let report = app.dispatch(t0 + Duration::days(3) + Duration::minutes(1)).await;
    assert_eq!(report.total_sent(), 3, "{report:?}");
    assert!(!report.paused());
    let order: Vec<String> = app.smtp.messages().iter().map(subject).collect();
    let refs: Vec<&str> = order
        .iter()
        .map(|s| ["2026-BU-0143", "2026-BU-0145", "2026-BU-0142"].into_iter().find(|r| s.contains(r)).unwrap())
        .collect();
    assert_eq!(refs, ["2026-BU-0143", "2026-BU-0145", "2026-BU-0142"], "most urgent first: {order:#?}");
    let rows = due(&app.state.outbox().await.unwrap());
    assert!(rows.iter().all(|r| r.state == OutboxState::Sent && r.attempts == 1), "{rows:#?}");
    assert_eq!(app.dispatch(t0 + Duration::days(4)).await, DispatchReport::default());
    assert_eq!(app.smtp.messages().len(), 3);
    app.close().await;
}

/// A sender keeps its SMTP connection from mail to mail (the next mail starts once the previous
/// one's outcome is committed); a connection the server closed meanwhile is connected again, and
/// nothing is lost, repeated or counted as an attempt against the mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_keeps_its_connection_and_connects_again_when_the_server_closed_it() {
    let cases = assessment_cases("2026-BU-06", 6);
    let (first, rest) = cases.split_at(3);
    let app = App::start_with(sqlite_state(), first, "always", |s| s.mail.smtp.pool_size = 1).await;
    let t0 = at(day("2026-11-13"), 9);
    assert_eq!(app.poll_at(day("2026-11-13"), t0).await.total_sent(), 3);
    assert_eq!(app.smtp.connections(), 1, "three mails over one connection");
    app.close().await;

    let app = App::start_with(sqlite_state(), rest, "always", |s| s.mail.smtp.pool_size = 1).await;
    app.smtp.close_after_each_message(true);
    let report = app.poll_at(day("2026-11-13"), t0).await;
    assert_eq!((report.total_sent(), report.total_retrying(), report.total_dead()), (3, 0, 0), "{report:?}");
    assert!(report.errors.is_empty() && !report.paused(), "{report:?}");
    assert_eq!(app.smtp.connections(), 3, "each mail after the first found its connection closed");
    let messages = app.smtp.messages();
    let ids: std::collections::BTreeSet<_> = messages.iter().map(|m| m.header("Message-ID")).collect();
    assert_eq!((messages.len(), ids.len()), (3, 3), "each once");
    let rows = app.state.outbox().await.unwrap();
    let sent: Vec<_> = rows.iter().filter(|r| r.state == OutboxState::Sent).collect();
    assert_eq!(sent.len(), 3, "{rows:#?}");
    assert!(sent.iter().all(|r| r.attempts == 1 && r.last_error.is_none()), "{rows:#?}");
    app.close().await;
}

/// While a mail's outcome commits, the next mail on its connection is rendered and its envelope
/// sent (`MAIL FROM`, `RCPT TO`, `DATA`), but not the message: the server accepts nothing before
/// the previous mail on the connection is recorded. The commit is held up by another connection's
/// write lock on the state database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_message_waits_for_the_previous_record_while_its_envelope_goes_ahead() {
    let cases = assessment_cases("2026-BU-08", 2);
    let app = App::start_with(sqlite_state(), &cases, "always", |s| s.mail.smtp.pool_size = 1).await;
    let t0 = at(day("2026-11-13"), 9);
    jobs::poll::run_once(&app, Moment::on(day("2026-11-13"), t0)).await.unwrap();
    // The first message is queued slowly, so that the lock below is taken before its record.
    app.smtp.set_data_delay(std::time::Duration::from_millis(500));
    let state_db = app.test.path("state.db");
    let observe = async {
        until_true(|| app.smtp.count() == 1).await;
        let mut lock = SqliteConnectOptions::new().filename(&state_db).connect().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut lock).await.unwrap();
        app.smtp.set_data_delay(std::time::Duration::ZERO);
        // The second mail's envelope goes ahead while the first one's record waits for the lock.
        until_true(|| app.smtp.data_begun() == 2).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(app.smtp.count(), 1, "the second message was sent before the first mail was recorded");
        let rows = app.state.outbox().await.unwrap();
        assert!(rows.iter().all(|r| r.state != OutboxState::Sent), "{rows:#?}");
        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    };
    let (report, ()) = tokio::join!(app.dispatch(t0), observe);
    assert_eq!((report.total_sent(), report.total_retrying(), report.total_dead()), (2, 0, 0), "{report:?}");
    let messages = app.smtp.messages();
    let ids: std::collections::BTreeSet<_> = messages.iter().map(|m| m.header("Message-ID")).collect();
    assert_eq!((messages.len(), ids.len(), app.smtp.connections()), (2, 2, 1), "each once, on one connection");
    let rows = app.state.outbox().await.unwrap();
    let sent: Vec<_> = rows.iter().filter(|r| r.state == OutboxState::Sent).collect();
    assert_eq!(sent.len(), 2, "{rows:#?}");
    app.close().await;
}

/// A mail whose outcome cannot be committed (the state database refuses the write) stops the
/// next mail on its connection before its message: that mail's transaction is abandoned in the
/// middle of `DATA` (the server takes nothing), its claim released, and a later run sends it.
/// The mail whose record failed goes out again in that run: the one mail a connection may
/// repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_fails_withholds_the_next_message_which_a_later_run_sends() {
    let cases = assessment_cases("2026-BU-09", 2);
    let app = App::start_with(sqlite_state(), &cases, "always", |s| s.mail.smtp.pool_size = 1).await;
    let t0 = at(day("2026-11-13"), 9);
    jobs::poll::run_once(&app, Moment::on(day("2026-11-13"), t0)).await.unwrap();
    let state_db = app.test.path("state.db");
    let mut db = SqliteConnectOptions::new().filename(&state_db).connect().await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_sent BEFORE UPDATE ON outbox WHEN NEW.state = 'sent' \
         BEGIN SELECT RAISE(ABORT, 'the disk is full (test)'); END",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let failed = jobs::dispatch::run_once(&app, Moment::on(day("2026-11-13"), t0)).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(app.smtp.count(), 1, "only the first message");
    assert_eq!(app.smtp.data_begun(), 2, "the second mail's envelope went ahead, its message did not");
    let first = app.smtp.messages()[0].header("Message-ID");
    let rows = app.state.outbox().await.unwrap();
    let open: Vec<_> = rows.iter().filter(|r| r.state == OutboxState::Pending).collect();
    assert_eq!(open.len(), 2, "{rows:#?}");
    assert!(open.iter().all(|r| r.attempts == 0), "no attempt counted: {rows:#?}");
    // The withheld row released; the row whose record failed still claimed, until its claim lapses.
    let (released, claimed): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE claimed_by IS NULL), count(*) FILTER (WHERE claimed_by IS NOT NULL) \
         FROM outbox WHERE state = 'pending'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((released, claimed), (1, 1));

    sqlx::query("DROP TRIGGER refuse_sent").execute(&mut db).await.unwrap();
    db.close().await.unwrap();
    // After the first row's claim lapsed.
    let report = app.dispatch(t0 + Duration::minutes(2)).await;
    assert_eq!((report.total_sent(), report.total_retrying(), report.total_dead()), (2, 0, 0), "{report:?}");
    let messages = app.smtp.messages();
    let ids: Vec<_> = messages.iter().map(|m| m.header("Message-ID")).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids.iter().filter(|id| **id == first).count(), 2, "the unrecorded mail once more: {ids:?}");
    assert_eq!(ids.iter().filter(|id| **id != first).count(), 1, "the withheld mail once: {ids:?}");
    let rows = app.state.outbox().await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.state == OutboxState::Sent).count(), 2, "{rows:#?}");
    app.close().await;
}

/// The senders' commits never checkpoint the write-ahead log (no fsync inside a record): each
/// dispatch run has it checkpointed beside, so that the records reach the database file itself
/// (here read from a copy of the file alone, without its log) soon after the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_run_has_its_records_checkpointed_into_the_database_file() {
    let cases = assessment_cases("2026-BU-10", 3);
    let app = App::start(sqlite_state(), &cases, "always").await;
    let t0 = at(day("2026-11-13"), 9);
    assert_eq!(app.poll_at(day("2026-11-13"), t0).await.total_sent(), 3);
    let state_db = app.test.path("state.db");
    let copy = app.test.path("copy.db");
    let started = std::time::Instant::now();
    loop {
        // The file alone: what is in the log and not yet checkpointed is not in it.
        let _ = std::fs::remove_file(app.test.path("copy.db-wal"));
        std::fs::copy(&state_db, &copy).unwrap();
        let mut conn = SqliteConnectOptions::new().filename(&copy).connect().await.unwrap();
        // No table yet: not even the migrations were checkpointed.
        let sent: i64 = sqlx::query_as("SELECT count(*) FROM outbox WHERE state = 'sent'")
            .fetch_one(&mut conn)
            .await
            .map_or(0, |(n,): (i64,)| n);
        conn.close().await.unwrap();
        if sent == 3 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "records not checkpointed: {sent} of 3");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.close().await;
}

/// Polls `f` every 5 ms until it holds (at most 10 s).
async fn until_true(mut f: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !f() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "timed out waiting");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A server that falls silent while a sender keeps its connection: the mail on the silent
/// connection is no fault of the mail (no attempt counted), the fresh connection finds the
/// server silent before its greeting, and the run pauses as for any outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_gone_silent_is_an_outage_not_a_failed_mail() {
    let cases = assessment_cases("2026-BU-07", 3);
    let app = App::start_with(sqlite_state(), &cases, "always", |s| {
        s.mail.smtp.pool_size = 1;
        s.mail.smtp.timeout = std::time::Duration::from_secs(1);
    })
    .await;
    app.smtp.fall_silent_after(1);
    let started = std::time::Instant::now();
    let report = app.poll_at(day("2026-11-13"), at(day("2026-11-13"), 9)).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!((report.total_sent(), report.total_retrying(), report.total_dead()), (1, 0, 0), "{report:?}");
    assert_eq!(report.unavailable, Some(ErrorClass::Timeout), "{report:?}");
    let rows = app.state.outbox().await.unwrap();
    let open: Vec<_> = rows.iter().filter(|r| r.state == OutboxState::Pending).collect();
    assert_eq!(open.len(), 2, "{rows:#?}");
    assert!(open.iter().all(|r| r.attempts == 0), "no attempt counted: {rows:#?}");
    assert_eq!(app.smtp.count(), 1);
    app.close().await;
}

/// An operator sees a dead notice with `outbox list` (which writes nothing) and puts it back
/// with `outbox retry`, once: the next dispatch sends it to the recipient who refused it (the
/// mailbox fixed meanwhile), a second retry changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_notice_is_listed_and_put_back_by_the_operator() {
    let app = App::start(sqlite_state(), &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "always").await;
    app.smtp.set_mode(SmtpMode::RejectPermanent);
    let t0 = at(day("2026-11-13"), 9);
    // Everyone refuses: the notice, and the rows that took it one role up and another, are dead.
    assert_eq!(app.poll_at(day("2026-11-13"), t0).await.total_dead(), 3);
    let rows = app.state.outbox_for_case("2026-BU-0142").await.unwrap();
    let key = rows.iter().find(|r| !r.notice_key.contains("/up")).unwrap().notice_key.clone();
    let config = app.test.path("fristvakt.toml");
    let run = |args: &[&str]| crate::helpers::fristvakt(Some(&config), args, &[]);

    // The state file is read by another process (`cat`): this process must not open and close
    // it while its own pool holds it open. Closing any descriptor of a file drops every POSIX
    // lock the process holds on it, SQLite's shared lock on the database included; the next
    // command that closes its pool then takes itself for the database's last user and deletes
    // the write-ahead log and its index under this process's connections, and a connection
    // opened here afterwards reads an empty new log: "disk I/O error" (SQLITE_IOERR_SHORT_READ).
    let state_file = app.test.path("state.db");
    let read_state = || {
        let out = std::process::Command::new("cat").arg(&state_file).output().unwrap();
        assert!(out.status.success(), "cat {}: {}", state_file.display(), crate::helpers::stderr(&out));
        out.stdout
    };
    // The dispatch run's checkpoint, beside it, is done.
    app.state.checkpoint_done().await;
    let before = read_state();
    let out = run(&["outbox", "list", "--state", "dead"]);
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
    let listed = crate::helpers::stdout(&out);
    let line = listed.lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("{key} not in\n{listed}"));
    assert!(line.contains(" dead ") && line.contains("permanent_5xx"), "{line}");
    assert!(!listed.contains('@'), "no address in the listing:\n{listed}");
    assert!(read_state() == before, "outbox list writes nothing");
    let out = run(&["outbox", "list", "--state", "sent"]);
    assert!(!crate::helpers::stdout(&out).contains(&key));

    let out = run(&["outbox", "retry", &key]);
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
    assert!(crate::helpers::stdout(&out).contains(&format!("{key}: pending again")));
    let out = run(&["outbox", "retry", &key]);
    assert!(
        crate::helpers::stdout(&out).contains("left as it is (pending, not dead)"),
        "{}",
        crate::helpers::stdout(&out)
    );
    let out = run(&["outbox", "retry", "notice/assessment/NO-SUCH-CASE/0"]);
    assert_eq!(out.status.code(), Some(2), "{}", crate::helpers::stderr(&out));

    app.smtp.set_mode(SmtpMode::Accept);
    let report = app.dispatch(Utc::now() + Duration::minutes(1)).await;
    assert_eq!(report.total_sent(), 1, "{report:?}");
    let mails = app.smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_to, [CASEWORKER], "the recipient who refused it gets it now");
    assert_eq!(app.dispatch(Utc::now() + Duration::minutes(2)).await.total_sent(), 0);
    app.close().await;
}

/// A mail server that accepts connections and never answers: a dispatch run still ends — the
/// server is tried once, within its timeout, and the run pauses without counting an attempt
/// against any notice; the watchdog is fed — and once the server answers again, every notice
/// goes out, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_mail_server_never_holds_a_dispatch_run() {
    let cases = assessment_cases("2026-BU-05", 6);
    let app = App::start_with(sqlite_state(), &cases, "always", |s| {
        s.mail.smtp.timeout = std::time::Duration::from_secs(1);
    })
    .await;
    app.smtp.set_mode(SmtpMode::Silent);
    let t0 = at(day("2026-11-13"), 9);
    let beats = app.beats();
    let started = std::time::Instant::now();
    let report = app.poll_at(day("2026-11-13"), t0).await;
    let took = started.elapsed();
    println!(
        "silent server: a run over {} due notices ended after {took:?}, {} beats",
        cases.len(),
        app.beats() - beats
    );
    assert_eq!(report.unavailable, Some(ErrorClass::Timeout), "{report:?}");
    assert_eq!((report.total_retrying(), report.total_dead()), (0, 0), "{report:?}");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(app.beats() > beats, "a sign of life from the run");
    let rows = app.state.outbox().await.unwrap();
    assert!(rows.iter().all(|r| r.attempts == 0 && r.state == OutboxState::Pending), "{rows:?}");
    // Still silent a minute later: a second run tries the server once more and ends too.
    assert_eq!(app.dispatch(t0 + Duration::minutes(2)).await.unavailable, Some(ErrorClass::Timeout));

    app.smtp.set_mode(SmtpMode::Accept);
    let report = app.dispatch(t0 + Duration::minutes(10)).await;
    assert_eq!(report.total_sent(), cases.len() as u64, "{report:?}");
    assert_eq!(app.smtp.messages().len(), cases.len());
    assert_eq!(app.dispatch(t0 + Duration::minutes(20)).await.total_sent(), 0);
    app.close().await;
}

async fn permanent_rejection_is_dead_at_once(state_url: Option<String>) {
    let app = App::start(state_url, &[assessment_case("2026-BU-0142", Some(CASEWORKER))], "always").await;
    app.smtp.set_mode(SmtpMode::RejectPermanent);
    let t0 = at(day("2026-11-13"), 9);
    let report = app.poll_at(day("2026-11-13"), t0).await;
    // Adapted for delivery per recipient (issue "Never lose or double a notice", item 1): a
    // notice that every recipient refuses now goes one role up, as a row of its own. This
    // server refuses everyone, so the caseworker's row, the team lead's and the manager's are
    // all given up: three dead rows and three 5xx refusals where there was one. The original
    // row is pinned exactly as before (it was the only row; now it is found by its key).
    assert_eq!(report.total_dead(), 3, "{report:?}");
    assert_eq!(report.errors.get(&ErrorClass::Permanent5xx), Some(&3), "{report:?}");
    assert_eq!(report.total_escalated(), 2, "{report:?}");
    let key = notice_key(&"2026-BU-0142".parse().unwrap(), Kind::Assessment, None, -3);
    let rows = app.state.outbox().await.unwrap();
    let row = rows.iter().find(|r| r.notice_key == key).unwrap().clone();
    assert!(rows.iter().all(|r| r.state == OutboxState::Dead || r.state == OutboxState::Skipped), "{rows:#?}");
    assert_eq!((row.state, row.attempts), (OutboxState::Dead, 1));
    let error = row.last_error.unwrap_or_default();
    assert!(error.starts_with("permanent_5xx: ") && error.contains("550"), "{error}");
    assert!(!error.contains('@'), "{error}");
    // Not retried, even once the server accepts again.
    app.smtp.set_mode(SmtpMode::Accept);
    for later in [Duration::minutes(2), Duration::hours(2), Duration::days(1)] {
        assert_eq!(app.dispatch(t0 + later).await, DispatchReport::default());
    }
    assert!(app.smtp.messages().is_empty());
    app.close().await;
}

/// Fault test (issue "Never lose or double a notice", item 1): the departed caseworker's
/// mailbox answers `550 5.1.1`. The other recipients of a step receive the notice; a step whose
/// only recipient is refused goes one role up (caseworker → team lead → unit manager) as an
/// outbox row of its own; a recipient answered `451` is retried alone, never the others again.
async fn a_refused_recipient_does_not_stop_the_others_and_a_lone_one_goes_up(state_url: Option<String>) {
    let started = std::time::Instant::now();
    let cases =
        [assessment_case("2026-BU-0142", Some(CASEWORKER)), assessment_case("2026-BU-0143", Some(CASEWORKER_2))];
    let app = App::start(state_url, &cases, "always").await;
    let from = app.settings.mail.from.clone();
    let key = |step: i32| notice_key(&"2026-BU-0142".parse().unwrap(), Kind::Assessment, None, step);
    app.smtp.refuse_recipients(&[CASEWORKER]);

    // −3 (caseworker only): refused, so the team lead gets it instead, as a row of its own.
    let report = app.poll(day("2026-11-13")).await;
    let messages = app.smtp.messages();
    let escalated: Vec<&ReceivedMail> = messages.iter().filter(|m| subject(m).contains("2026-BU-0142")).collect();
    assert_eq!(escalated.len(), 1, "{messages:#?}");
    let up = escalated[0];
    assert_eq!(up.rcpt_to, [TEAM_LEAD]);
    assert_eq!(subject(up), "Förhandsbedömning 2026-BU-0142: sista dag 2026-11-16 (om 3 dagar)");
    let up_key = format!("{}/up", key(-3));
    assert_eq!(up.header("Message-ID"), Some(message_id(&up_key, &from)));
    let text = up.text_body();
    assert!(text.contains(&format!("- {TEAM_LEAD} (gruppledare, i stället för handläggare)")), "{text}");
    assert!(
        text.contains(&format!("E-postservern tog inte emot meddelandet till {CASEWORKER} (handläggare)")),
        "{text}"
    );
    assert_eq!((report.total_escalated(), report.total_refused_recipients()), (1, 1), "{report:?}");
    let rows = app.state.outbox_for_case("2026-BU-0142").await.unwrap();
    let original = rows.iter().find(|r| r.notice_key == key(-3)).unwrap();
    assert_eq!((original.state, original.attempts), (OutboxState::Dead, 1));
    assert!(original.last_error.as_deref().unwrap_or_default().starts_with("permanent_5xx: "), "{original:?}");
    assert_eq!(original.deliveries.len(), 1);
    assert_eq!(original.deliveries[0].outcome, DeliveryOutcome::Refused);
    let up_row = rows.iter().find(|r| r.notice_key == up_key).unwrap();
    assert_eq!(up_row.state, OutboxState::Sent);
    assert_eq!(up_row.replaces.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(), [CASEWORKER]);
    let first_day = messages.len();

    // +1 (caseworker and team lead; 0 is skipped by catch-up): the team lead receives it in the
    // same transaction the caseworker is refused in; nothing goes up, the row is sent.
    // Case 0143's caseworker is busy (451): the team lead gets it now, the caseworker later,
    // alone.
    app.smtp.defer_recipients(&[CASEWORKER_2]);
    let report = app.poll(day("2026-11-17")).await;
    let new: Vec<ReceivedMail> = app.smtp.messages()[first_day..].to_vec();
    let of = |case: &str| new.iter().filter(|m| subject(m).contains(case)).cloned().collect::<Vec<_>>();
    assert_eq!(single(&of("2026-BU-0142")).rcpt_to, [TEAM_LEAD]);
    let held = single(&of("2026-BU-0143"));
    assert_eq!(held.rcpt_to, [TEAM_LEAD]);
    assert_eq!(report.total_escalated(), 0, "{report:?}");
    assert_eq!((report.total_sent(), report.total_retrying()), (1, 1), "{report:?}");
    let row =
        app.state.outbox_for_case("2026-BU-0142").await.unwrap().into_iter().find(|r| r.notice_key == key(1)).unwrap();
    assert_eq!(row.state, OutboxState::Sent);
    let outcomes: Vec<(&str, DeliveryOutcome)> =
        row.deliveries.iter().map(|d| (d.address.as_str(), d.outcome)).collect();
    assert_eq!(outcomes, [(CASEWORKER, DeliveryOutcome::Refused), (TEAM_LEAD, DeliveryOutcome::Delivered)]);
    assert!(row.last_error.as_deref().unwrap_or_default().starts_with("1 of 2 recipient(s) refused"), "{row:?}");
    assert!(!row.last_error.unwrap_or_default().contains('@'));

    // The busy mailbox takes mail again: the retry goes to that caseworker only, same Message-ID.
    app.smtp.defer_recipients(&[]);
    let before = app.smtp.messages().len();
    let report = app.dispatch(at(day("2026-11-17"), 9) + Duration::minutes(5)).await;
    assert_eq!(report.total_sent(), 1, "{report:?}");
    let retried = single(&app.smtp.messages()[before..]);
    assert_eq!(retried.rcpt_to, [CASEWORKER_2]);
    assert_eq!(retried.header("Message-ID"), held.header("Message-ID"));
    let row = app.state.outbox_for_case("2026-BU-0143").await.unwrap().into_iter().find(|r| r.step == Some(1)).unwrap();
    assert_eq!((row.state, row.attempts, row.deliveries.len()), (OutboxState::Sent, 2, 2));
    // Nothing more for anyone: no duplicate to a recipient who has it.
    assert_eq!(app.dispatch(at(day("2026-11-18"), 9)).await, DispatchReport::default());

    // +5 (manager only), the manager refused too: there is no role above; given up, visibly.
    app.smtp.refuse_recipients(&[CASEWORKER, MANAGER]);
    let before = app.smtp.messages().len();
    let report = app.poll(day("2026-11-21")).await;
    assert_eq!((report.total_dead(), report.total_escalated(), report.total_sent()), (2, 0, 0), "{report:?}");
    assert_eq!(app.smtp.messages().len(), before);

    let total = app.smtp.messages();
    let rows = app.state.outbox().await.unwrap();
    let count = |state| rows.iter().filter(|r| r.state == state).count();
    let per_recipient: usize = rows.iter().map(|r| r.deliveries.len()).sum();
    let refused = rows.iter().flat_map(|r| &r.deliveries).filter(|d| d.outcome == DeliveryOutcome::Refused).count();
    println!(
        "fault test (550 to one recipient): {} mails over {} envelope recipients; outbox rows: {} sent, {} dead, {} \
         skipped, {} escalated one role up; {per_recipient} recipient outcomes recorded, {refused} refused; {:.2?}",
        total.len(),
        total.iter().map(|m| m.rcpt_to.len()).sum::<usize>(),
        count(OutboxState::Sent),
        count(OutboxState::Dead),
        count(OutboxState::Skipped),
        rows.iter().filter(|r| r.notice_key.ends_with("/up")).count(),
        started.elapsed()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    app.close().await;
}

/// Fault test: the server refuses `MAIL FROM` (550): no mail is at fault. The run stops at once
/// (paused, counted, logged); the rows stay retrying, also past `mail.give_up_after`, and go
/// out when the server takes mail again.
async fn a_server_refusing_the_sender_pauses_dispatch_and_keeps_the_backlog(state_url: Option<String>) {
    let started = std::time::Instant::now();
    let cases: Vec<Case> = ["2026-BU-0142", "2026-BU-0143", "2026-BU-0144", "2026-BU-0145", "2026-BU-0146"]
        .into_iter()
        .map(|c| assessment_case(c, Some(CASEWORKER)))
        .collect();
    let app = App::start(state_url, &cases, "always").await;
    app.smtp.set_mode(SmtpMode::RejectSender);
    let t0 = at(day("2026-11-13"), 9);
    let report = app.poll_at(day("2026-11-13"), t0).await;
    assert!(report.paused(), "{report:?}");
    assert_eq!((report.total_sent(), report.total_dead()), (0, 0), "{report:?}");
    let attempted = report.total_retrying();
    assert!((1..=2).contains(&attempted), "at most one round of the pool (2) is tried: {report:?}");
    assert_eq!(report.server_refusals.get(&ErrorClass::Sender), Some(&attempted), "{report:?}");
    assert!(app.delivery_metrics.dispatch_paused());
    let metrics = app.delivery_metrics.render();
    assert!(
        metrics.contains(&format!("fristvakt_smtp_server_refusals_total{{class=\"sender\"}} {attempted}")),
        "{metrics}"
    );
    let rows = app.state.outbox().await.unwrap();
    let tried: Vec<_> = rows.iter().filter(|r| r.attempts > 0).collect();
    assert_eq!(tried.len() as u64, attempted);
    for row in &tried {
        assert_eq!(row.state, OutboxState::Retrying);
        assert!(row.last_error.as_deref().unwrap_or_default().starts_with("server_refused_sender: "), "{row:?}");
    }
    assert!(rows.iter().all(|r| r.state == OutboxState::Pending || r.attempts > 0), "{rows:#?}");

    // Three days of refusals, beyond give_up_after (2 days): still nothing dead.
    let later = app.dispatch(t0 + Duration::days(3)).await;
    assert!(later.paused() && later.total_dead() == 0, "{later:?}");
    assert!(app.state.outbox().await.unwrap().iter().all(|r| r.state != OutboxState::Dead));

    // The server takes mail again: the whole backlog goes out, each notice once.
    app.smtp.set_mode(SmtpMode::Accept);
    let mut sent = 0;
    for minutes in [1, 60, 180, 600] {
        sent += app.dispatch(t0 + Duration::days(3) + Duration::minutes(minutes)).await.total_sent();
    }
    assert_eq!(sent, 5);
    assert_eq!(app.smtp.messages().len(), 5);
    assert!(!app.delivery_metrics.dispatch_paused());
    println!(
        "fault test (550 to MAIL FROM): first run tried {attempted} of 5 rows and paused; after 3 days of refusals \
         0 dead; {sent} sent once the server accepted; {:.2?}",
        started.elapsed()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    app.close().await;
}

async fn personal_columns_never_reach_mail_logs_or_errors(state_url: Option<String>) {
    let logs = LogBuffer::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish(),
    );
    let mut broken = assessment_case("2026-BU-0999", Some("inte en adress"));
    broken.received_on = "2026-13-45";
    let cases = [
        assessment_case("2026-BU-0142", Some(CASEWORKER)),
        // An invalid caseworker address: logged as a fallback, by case and column only.
        assessment_case("2026-BU-0143", Some("Lisa Testsson")),
        broken,
    ];
    let app = App::start(state_url, &cases, "always").await;
    // First a transient rejection (errors logged and stored), then a permanent one for the
    // next step, then acceptance.
    app.smtp.set_mode(SmtpMode::RejectTransient);
    let t0 = at(day("2026-11-13"), 9);
    let report = app.poll_at(day("2026-11-13"), t0).await;
    assert_eq!(report.total_retrying(), 2, "{report:?}");
    app.smtp.set_mode(SmtpMode::Accept);
    assert_eq!(app.dispatch(t0 + Duration::minutes(5)).await.total_sent(), 2);
    app.smtp.set_mode(SmtpMode::RejectPermanent);
    // Adapted for delivery per recipient (item 1 of "Never lose or double a notice"): each
    // refused notice now also goes one role up, refused there too by this server. 0142:
    // caseworker, team lead, manager; 0143 (to the team lead instead): team lead, manager.
    assert_eq!(app.poll(day("2026-11-16")).await.total_dead(), 5);
    app.smtp.set_mode(SmtpMode::Accept);
    assert_eq!(app.poll(day("2026-11-21")).await.total_sent(), 2);

    let messages = app.smtp.messages();
    assert_eq!(messages.len(), 4);
    let outbox = app.state.outbox().await.unwrap();
    let stored: Vec<String> = outbox
        .iter()
        .flat_map(|r| {
            [
                serde_json::to_string(&r.payload).unwrap(),
                serde_json::to_string(&r.recipients).unwrap(),
                r.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let log = logs.contents();
    assert!(log.contains("mail sent"), "the log capture works: {log}");
    assert!(log.contains("2026-BU-0999"), "the broken row is logged by its reference: {log}");
    for secret in [CHILD_NAME, "Testsson", PERSONNUMMER, "20120101-1234"] {
        for m in &messages {
            assert!(!m.data.contains(secret), "{secret} in a mail:\n{}", m.data);
            assert!(!m.text_body().contains(secret), "{secret} in a mail body");
            assert!(!m.html_body().unwrap_or_default().contains(secret), "{secret} in an HTML body");
        }
        for s in &stored {
            assert!(!s.contains(secret), "{secret} in the outbox: {s}");
        }
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    app.close().await;
}

// ---------------------------------------------------------------------------------------------
// The application under test: fristvakt's `App` as the daemon builds it, on a scripted register,
// sending to an SMTP server; driven through the daemon's jobs.

pub(crate) struct App {
    pub(crate) test: TestApp,
    pub(crate) app: fristvakt::app::App,
    pub(crate) smtp: TestSmtp,
}

impl std::ops::Deref for App {
    type Target = fristvakt::app::App;
    fn deref(&self) -> &Self::Target {
        &self.app
    }
}

/// Builds the application for `holder`, as a process start does.
pub(crate) async fn start_app(settings: Arc<Settings>, holder: &str) -> fristvakt::app::App {
    fristvakt::app::App::start(settings, holder, Utc::now()).await.unwrap()
}

impl App {
    /// A SQLite register of `cases`, the state on PostgreSQL (that database) or SQLite (`None`),
    /// mail to a test SMTP server within `send_window`.
    pub(crate) async fn start(postgres_state: Option<String>, cases: &[Case], send_window: &str) -> App {
        App::start_with(postgres_state, cases, send_window, |_| {}).await
    }

    /// Like [`App::start`], with the settings adjusted by `adjust`.
    pub(crate) async fn start_with(
        postgres_state: Option<String>,
        cases: &[Case],
        send_window: &str,
        adjust: impl FnOnce(&mut Settings),
    ) -> App {
        let test = TestApp::with_sqlite_register(postgres_state);
        let smtp = TestSmtp::start().await;
        write_register(&test.path("register.db"), cases).await;
        let mut settings = settings(&test, smtp.port(), send_window);
        adjust(&mut settings);
        let app = start_app(Arc::new(settings), "process-a").await;
        App { test, app, smtp }
    }

    /// A second process on the same register, state and SMTP server.
    async fn attach(other: &App) -> Peer {
        Peer { app: start_app(other.settings.clone(), "process-b").await }
    }

    /// A new application (state connection, mailer), as a process restart does.
    pub(crate) async fn restart(&mut self) {
        self.app.close().await;
        self.app = start_app(self.app.settings.clone(), "process-a").await;
    }

    pub(crate) async fn poll(&self, today: NaiveDate) -> DispatchReport {
        self.poll_at(today, at(today, 9)).await
    }

    pub(crate) async fn poll_at(&self, today: NaiveDate, now: DateTime<Utc>) -> DispatchReport {
        run_poll(&self.app, today, now).await
    }

    pub(crate) async fn dispatch(&self, now: DateTime<Utc>) -> DispatchReport {
        jobs::dispatch::run_once(&self.app, Moment::at(now, self.settings.timezone)).await.unwrap()
    }

    pub(crate) async fn close(mut self) {
        self.smtp.stop().await;
        self.app.close().await;
    }
}

struct Peer {
    app: fristvakt::app::App,
}

impl Peer {
    async fn poll(&self, today: NaiveDate) -> DispatchReport {
        run_poll(&self.app, today, at(today, 9)).await
    }
}

/// The daemon's poll job, then its dispatch job, for `today` at `now`.
async fn run_poll(app: &fristvakt::app::App, today: NaiveDate, now: DateTime<Utc>) -> DispatchReport {
    jobs::poll::run_once(app, Moment::on(today, now)).await.unwrap();
    jobs::dispatch::run_once(app, Moment::on(today, now)).await.unwrap()
}

/// The settings of `test` with mail to the SMTP server on `smtp_port`, within `send_window`.
pub(crate) fn settings(test: &TestApp, smtp_port: u16, send_window: &str) -> Settings {
    let path = test.config_toml(
        "",
        &format!(
            r#"[mail]
transport = "smtp"
file_dir = "{outbox}"
send_window = "{send_window}"
[mail.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
timeout = "5s"
pool_size = 2
[units."BRO-BU"]
name = "Bromma barn och unga"
team_leads = ["{TEAM_LEAD}"]
managers = ["{MANAGER}"]
"#,
            outbox = test.outbox_dir().display(),
        ),
    );
    config::load_with_env(Some(&path), Vec::new()).unwrap()
}

/// The state on SQLite, in the test's directory.
pub(crate) fn sqlite_state() -> Option<String> {
    None
}

// ---------------------------------------------------------------------------------------------
// The scripted register: the contract's columns plus personal columns a real view may carry.

pub(crate) struct Case {
    pub(crate) case_ref: &'static str,
    pub(crate) caseworker: Option<&'static str>,
    pub(crate) received_on: &'static str,
    pub(crate) protection_assessed_on: Option<&'static str>,
}

/// `n` cases of `assessment_case` with the caseworker, numbered `{prefix}00`, `{prefix}01`, ….
fn assessment_cases(prefix: &str, n: usize) -> Vec<Case> {
    (0..n)
        .map(|i| {
            let case_ref: &'static str = Box::leak(format!("{prefix}{i:02}").into_boxed_str());
            assessment_case(case_ref, Some(CASEWORKER))
        })
        .collect()
}

/// An open preliminary assessment received Monday 2026-11-02 (last day Monday 2026-11-16),
/// whose protection assessment was made the same day.
pub(crate) fn assessment_case(case_ref: &'static str, caseworker: Option<&'static str>) -> Case {
    Case { case_ref, caseworker, received_on: "2026-11-02", protection_assessed_on: Some("2026-11-02") }
}

pub(crate) async fn write_register(path: &Path, cases: &[Case]) {
    let mut conn = SqliteConnectOptions::new().filename(path).create_if_missing(true).connect().await.unwrap();
    sqlx::query(
        "CREATE TABLE cases_raw (case_ref TEXT PRIMARY KEY, unit TEXT NOT NULL, caseworker TEXT, child_sex TEXT, \
         received_on TEXT, protection_assessed_on TEXT, assessment_decided_on TEXT, assessment_extended_to TEXT, \
         investigation_opened_on TEXT, investigation_extended_to TEXT, investigation_closed_on TEXT, \
         updated_at TEXT NOT NULL, child_name TEXT, personnummer TEXT, notes TEXT)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("CREATE VIEW fristvakt_cases AS SELECT * FROM cases_raw").execute(&mut conn).await.unwrap();
    for case in cases {
        sqlx::query(
            "INSERT INTO cases_raw (case_ref, unit, caseworker, child_sex, received_on, protection_assessed_on, \
             updated_at, child_name, personnummer, notes) VALUES (?, 'BRO-BU', ?, 'F', ?, ?, ?, ?, ?, ?)",
        )
        .bind(case.case_ref)
        .bind(case.caseworker)
        .bind(case.received_on)
        .bind(case.protection_assessed_on)
        .bind("2026-10-01T08:00:00.000000Z")
        .bind(CHILD_NAME)
        .bind(PERSONNUMMER)
        .bind(format!("Orosanmälan om {CHILD_NAME}, 20120101-1234"))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

pub(crate) fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// `hour` o'clock UTC on `date` (10:00 or 11:00 in Stockholm, inside office hours).
pub(crate) fn at(date: NaiveDate, hour: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_hms_opt(hour, 0, 0).unwrap())
}

pub(crate) fn subject(mail: &ReceivedMail) -> String {
    mail.header("Subject").unwrap_or_default()
}

fn single(messages: &[ReceivedMail]) -> ReceivedMail {
    assert_eq!(messages.len(), 1, "expected exactly one mail, got {messages:#?}");
    messages[0].clone()
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut v = items.to_vec();
    v.sort();
    v
}

fn sorted_strs(items: &[&str]) -> Vec<String> {
    sorted(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

async fn only_row(app: &App) -> fristvakt::state::OutboxRow {
    let rows = app.state.outbox().await.unwrap();
    let notices: Vec<_> = rows.into_iter().filter(|r| r.state != OutboxState::Skipped).collect();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    notices.into_iter().next().unwrap()
}

/// Log output captured in memory.
#[derive(Clone, Default)]
pub(crate) struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub(crate) fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
