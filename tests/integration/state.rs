//! The state store on both engines: domain values come back as they were stored (a holiday move
//! with its days), a deadline that cannot be decoded costs only itself (skipped and counted),
//! deadline counts follow the rules' status, and PostgreSQL columns have native types.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use sqlx::{Connection, Executor};

use crate::helpers::{date, demo_cases};
use crate::support::app::TestApp;
use fristvakt::app::{App, Moment};
use fristvakt::config::{DatabaseUrl, Settings};
use fristvakt::domain::{CaseRef, EmailAddress, ErrorClass, UnitCode};
use fristvakt::domain::{ChildKey, OutboxKey};
use fristvakt::jobs;
use fristvakt::notice::{self, NoticePayload, Recipient};
use fristvakt::register::{self, Sex};
use fristvakt::rules::{self, CaseDates, DayKind, DueReason, Kind, Role, RuleOptions, Status};
use fristvakt::state::{
    Attempt, DeadlineFilter, DeadlineRecord, OutboxEntry, OutboxPayload, OutboxState, StateError, StateStore,
    StoredDeadline,
};

both_engines!(current_thread: a_holiday_move_comes_back_with_its_days);

both_engines!(current_thread: undecodable_outbox_rows_are_given_up_and_counted);

both_engines!(current_thread: deadline_counts_agree_with_the_rules_status);

both_engines!(current_thread: an_undecodable_deadline_costs_only_itself);

both_engines!(current_thread: outbox_claims_are_fenced_renewed_and_survive_a_cancel);

both_engines!(current_thread: stored_rows_choose_the_statements_not_what_is_stored);

#[tokio::test]
async fn postgres_columns_have_native_types() {
    let url = postgres_url().await;
    let state = StateStore::connect(&DatabaseUrl::parse(&url).unwrap()).await.unwrap();
    state.migrate().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name IN ('deadlines', 'poll_state', 'outbox', 'leases')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let types: BTreeMap<(String, String), String> = rows.into_iter().map(|(t, c, d)| ((t, c), d)).collect();
    let type_of = |table: &str, column: &str| types.get(&(table.to_string(), column.to_string())).cloned();
    let expected = [
        ("deadlines", "start_on", "date"),
        ("deadlines", "nominal_due_on", "date"),
        ("deadlines", "due_on", "date"),
        ("deadlines", "closed_on", "date"),
        ("deadlines", "extended_to", "date"),
        ("deadlines", "next_step_on", "date"),
        ("deadlines", "moved_over", "jsonb"),
        ("deadlines", "withdrawn", "boolean"),
        ("deadlines", "row_updated_at", "timestamp with time zone"),
        ("deadlines", "child_sex", "text"),
        ("poll_state", "watermark", "timestamp with time zone"),
        ("poll_state", "last_full_pass_on", "date"),
        ("poll_state", "last_success_at", "timestamp with time zone"),
        ("outbox", "recipients", "jsonb"),
        ("outbox", "payload", "jsonb"),
        ("outbox", "created_at", "timestamp with time zone"),
        ("outbox", "not_before", "timestamp with time zone"),
        ("outbox", "next_attempt_at", "timestamp with time zone"),
        ("outbox", "sent_at", "timestamp with time zone"),
        ("outbox", "claimed_until", "timestamp with time zone"),
        ("leases", "expires_at", "timestamp with time zone"),
    ];
    for (table, column, data_type) in expected {
        assert_eq!(type_of(table, column).as_deref(), Some(data_type), "{table}.{column}");
    }
    // Every day is a date and every instant a timestamptz, whatever its table.
    for ((table, column), data_type) in &types {
        if column.ends_with("_on") || column == "extended_to" {
            assert_eq!(data_type, "date", "{table}.{column}");
        }
        if column.ends_with("_at") || column.ends_with("_until") {
            assert_eq!(data_type, "timestamp with time zone", "{table}.{column}");
        }
    }
    // Columns nobody read are gone.
    assert_eq!(type_of("deadlines", "status"), None);
    assert_eq!(type_of("deadlines", "evaluated_on"), None);
    state.close().await;
}

// ---------------------------------------------------------------------------------------------

async fn a_holiday_move_comes_back_with_its_days(postgres: Option<String>) {
    let (_ws, settings, state) = open(postgres).await;
    // Received Thursday 2026-12-10: the assessment's nominal last day is julafton, Thursday
    // 2026-12-24; the holiday rule moves it past juldagen, annandagen and the Sunday to the 28th.
    let dates = CaseDates {
        received_on: Some(date("2026-12-10")),
        protection_assessed_on: Some(date("2026-12-10")),
        ..CaseDates::default()
    };
    let deadlines = rules::deadlines_for(&dates, &[], RuleOptions::default());
    let assessment = deadlines.iter().find(|d| d.kind == Kind::Assessment).unwrap().clone();
    let DueReason::Moved { skipped } = &assessment.due_reason else { panic!("{assessment:?}") };
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    assert_eq!(skipped[0], (date("2026-12-24"), DayKind::ChristmasEve));
    let case_ref = CaseRef::parse("2026-BU-0142").unwrap();
    let records: Vec<DeadlineRecord> = deadlines
        .iter()
        .map(|d| DeadlineRecord {
            case_ref: case_ref.clone(),
            unit: UnitCode::parse("BRO-BU").unwrap(),
            caseworker: Some(EmailAddress::parse("anna.handlaggare@kommun.example").unwrap()),
            child_sex: Some(Sex::Female),
            deadline: d.clone(),
            next_step_on: None,
            row_updated_at: Utc.with_ymd_and_hms(2026, 12, 10, 9, 30, 0).unwrap(),
            seen_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            child_key: None,
            case_of: None,
            cycle_start: None,
        })
        .collect();
    state.store_deadlines(std::slice::from_ref(&case_ref), &records, None).await.unwrap();

    let filter = DeadlineFilter { case_ref: Some(case_ref.to_string()), ..DeadlineFilter::default() };
    let stored = state.deadlines(&filter).await.unwrap();
    let moved = stored.iter().find(|d| d.deadline.kind == Kind::Assessment).unwrap();
    assert_eq!(moved.deadline, assessment, "the days moved over come back");
    assert_eq!(moved.child_sex, Some(Sex::Female));
    assert_eq!(moved.unit.as_str(), "BRO-BU");
    assert_eq!(moved.caseworker.as_ref().map(EmailAddress::as_str), Some("anna.handlaggare@kommun.example"));
    assert_eq!(stored.len(), deadlines.len());
    for d in &stored {
        assert!(deadlines.contains(&d.deadline), "{d:?}");
    }
    drop(settings);
    state.close().await;
}

/// A stored unit code that no longer parses used to write no notice while the deadline's next
/// step day still moved on: a notice lost without a trace. Now the read fails, loudly, and
/// nothing moves.
async fn an_undecodable_deadline_costs_only_itself(postgres: Option<String>) {
    let (_ws, settings, state) = open(postgres).await;
    let today = date("2026-11-25");
    let dates = CaseDates { received_on: Some(date("2026-11-11")), ..CaseDates::default() };
    let cases = ["2026-BU-0076", "2026-BU-0077", "2026-BU-0078"].map(|c| CaseRef::parse(c).unwrap());
    let records: Vec<DeadlineRecord> = cases
        .iter()
        .flat_map(|case_ref| {
            rules::deadlines_for(&dates, &[], RuleOptions::default()).into_iter().map(|deadline| DeadlineRecord {
                case_ref: case_ref.clone(),
                unit: UnitCode::parse("BRO-BU").unwrap(),
                caseworker: Some(EmailAddress::parse("anna@kommun.example").unwrap()),
                child_sex: None,
                deadline,
                next_step_on: Some(date("2026-11-20")),
                row_updated_at: Utc.with_ymd_and_hms(2026, 11, 11, 9, 0, 0).unwrap(),
                seen_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                child_key: None,
                case_of: None,
                cycle_start: None,
            })
        })
        .collect();
    state.store_deadlines(&cases, &records, None).await.unwrap();
    // Values an older release accepted and this one does not read: an address whose domain
    // lowercased to a combining mark, a blank unit.
    execute(&settings, "UPDATE deadlines SET caseworker = 'x@i\u{307}.se' WHERE case_ref = '2026-BU-0077'").await;
    execute(&settings, "UPDATE deadlines SET unit = ' ' WHERE case_ref = '2026-BU-0078' AND kind = 'protection'").await;

    let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
    let app = App::start(Arc::new(settings.clone()), "test", now).await.unwrap();
    let report = jobs::ladder::run_once(&app, Moment::on(today, now)).await.unwrap().unwrap();
    assert_eq!(report.unreadable, 3, "both of 0077's deadlines and one of 0078's set aside");
    let kinds_written = |case: &'static str| {
        let state = app.state.clone();
        async move {
            let rows = state.outbox_for_case(case).await.unwrap();
            rows.iter()
                .filter_map(|r| r.kind)
                .collect::<std::collections::BTreeSet<Kind>>()
                .into_iter()
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(kinds_written("2026-BU-0076").await, [Kind::Protection, Kind::Assessment], "the readable go on");
    assert_eq!(kinds_written("2026-BU-0077").await, []);
    assert_eq!(kinds_written("2026-BU-0078").await, [Kind::Assessment]);
    // A second run reads past them; the list (and the digest's read) skip them too.
    let again = jobs::ladder::run_once(&app, Moment::on(today, now)).await.unwrap().unwrap();
    assert_eq!(again.unreadable, 0);
    let listed = app.state.deadlines(&DeadlineFilter::default()).await.unwrap();
    assert_eq!(listed.len(), records.len() - 3);
    app.close().await;
    state.close().await;
}

async fn undecodable_outbox_rows_are_given_up_and_counted(postgres: Option<String>) {
    let (_ws, settings, state) = open(postgres).await;
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
    let entries: Vec<OutboxEntry> =
        ["2026-BU-0001", "2026-BU-0002", "2026-BU-0003"].into_iter().map(|c| notice_entry(&settings, c)).collect();
    let keys: Vec<String> = entries.iter().map(|e| e.notice_key.to_string()).collect();
    assert_eq!(state.record_steps(&entries, &[], now).await.unwrap(), keys);
    assert_eq!(state.outbox().await.unwrap().len(), 3, "well-formed rows decode");

    // A category from another version, a payload that is not a notice, an address that is not one.
    execute(&settings, &format!("UPDATE outbox SET category = 'mystery' WHERE notice_key = '{}'", keys[0])).await;
    execute(
        &settings,
        &format!("UPDATE outbox SET payload = '{{\"unexpected\": 1}}' WHERE notice_key = '{}'", keys[1]),
    )
    .await;
    execute(
        &settings,
        &format!(
            "UPDATE outbox SET recipients = '[{{\"role\": \"caseworker\", \"address\": \"not an address\"}}]' \
             WHERE notice_key = '{}'",
            keys[2]
        ),
    )
    .await;

    // Listing reports the problem instead of leaving rows out.
    assert!(matches!(state.outbox().await, Err(StateError::Corrupt { .. })));

    let app = App::start(Arc::new(settings.clone()), "test", now).await.unwrap();
    let at = Moment::at(now, settings.timezone);
    let report = jobs::dispatch::run_once(&app, at).await.unwrap();
    assert_eq!(report.errors.get(&ErrorClass::UnknownCategory), Some(&1), "{report:?}");
    assert_eq!(report.errors.get(&ErrorClass::BadPayload), Some(&2), "{report:?}");
    assert_eq!(report.total_dead(), 3, "{report:?}");
    assert_eq!(report.total_sent(), 0, "{report:?}");
    assert!(report.dead.keys().any(|label| label.category.is_none()), "{report:?}");

    // Each row is dead with its reason, and the reason does not quote the stored value.
    let rows = query_states(&settings).await;
    assert_eq!(rows.len(), 3);
    for (state_text, last_error) in &rows {
        assert_eq!(state_text, OutboxState::Dead.as_str());
        let error = last_error.as_deref().unwrap_or_default();
        assert!(error.starts_with("unknown_category") || error.starts_with("bad_payload"), "{error}");
        assert!(!error.contains("not an address"), "{error}");
    }
    // A second dispatch finds nothing: the rows are not retried for ever.
    let again = jobs::dispatch::run_once(&app, at).await.unwrap();
    assert_eq!(again.total_dead() + again.total_sent() + again.total_retrying(), 0);
    app.close().await;
    state.close().await;
}

async fn deadline_counts_agree_with_the_rules_status(postgres: Option<String>) {
    let (_ws, settings, state) = open(postgres).await;
    let made_on = date("2026-11-25");
    let mut records = Vec::new();
    let mut case_refs = Vec::new();
    for case in demo_cases(600, 7, made_on, 0) {
        let Ok(row) = register::validate(&case) else { continue };
        for deadline in rules::deadlines_for(&row.dates, &[], RuleOptions::default()) {
            records.push(DeadlineRecord {
                case_ref: row.case_ref.clone(),
                unit: row.unit.clone(),
                caseworker: row.caseworker.clone(),
                child_sex: row.child_sex,
                deadline,
                next_step_on: None,
                row_updated_at: row.updated_at,
                seen_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                child_key: None,
                case_of: None,
                cycle_start: None,
            });
        }
        case_refs.push(row.case_ref);
    }
    assert!(records.len() > 600, "{}", records.len());
    state.store_deadlines(&case_refs, &records, None).await.unwrap();
    let stored = state.deadlines(&DeadlineFilter::default()).await.unwrap();
    for offset in [-60, -14, -3, -1, 0, 1, 2, 3, 13, 14, 15, 40] {
        let today = made_on + chrono::Duration::days(offset);
        let mut expected: BTreeMap<(String, Kind, Status), i64> = BTreeMap::new();
        for d in &stored {
            let key = (d.unit.to_string(), d.deadline.kind, d.deadline.status(today));
            *expected.entry(key).or_default() += 1;
        }
        assert_eq!(state.deadline_counts(today).await.unwrap(), expected, "on {today}");
    }
    drop(settings);
    state.close().await;
}

/// Two senders on one outbox. A claim keeps the other sender off while it holds and while it is
/// renewed; once it lapses the other takes the rows, and from then on every write of the first
/// (record, give up, postpone, release, renew) is refused: rows affected 0, nothing changed.
/// Cancelling a claimed notice leaves the claim to its sender, whose failure then keeps the row
/// cancelled and whose delivery makes it sent.
async fn outbox_claims_are_fenced_renewed_and_survive_a_cancel(postgres: Option<String>) {
    let (_ws, settings, state) = open(postgres).await;
    let t = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
    let s = |secs: i64| t + chrono::Duration::seconds(secs);
    let entries: Vec<OutboxEntry> =
        ["2026-BU-0001", "2026-BU-0002", "2026-BU-0003"].into_iter().map(|c| notice_entry(&settings, c)).collect();
    state.record_steps(&entries, &[], t).await.unwrap();
    let claim = |holder: &'static str, now| {
        let state = &state;
        async move {
            let rows = state.claim_outbox(holder, now, now, now + chrono::Duration::seconds(30), 10).await.unwrap();
            rows.into_iter().map(Result::unwrap).collect::<Vec<_>>()
        }
    };
    let a_rows = claim("sender-a", s(0)).await;
    assert_eq!(a_rows.len(), 3);
    assert!(claim("sender-b", s(10)).await.is_empty(), "held by a");
    assert_eq!(state.renew_claims("sender-a", s(50)).await.unwrap(), 3, "a renews at 20 s until 50 s");
    assert!(claim("sender-b", s(40)).await.is_empty(), "renewed: still a's");
    let b_rows = claim("sender-b", s(51)).await;
    assert_eq!(b_rows.len(), 3, "a's claim lapsed: b takes the rows");

    // Every write of a is fenced off now.
    let sent = Attempt {
        state: OutboxState::Sent,
        next: None,
        error: None,
        deliveries: &[],
        sent_at: Some(s(52)),
        escalation: None,
    };
    assert_eq!(state.renew_claims("sender-a", s(80)).await.unwrap(), 0);
    assert!(!state.record_attempt(&a_rows[0], "sender-a", sent.clone()).await.unwrap().held);
    assert!(!state.mark_failed(a_rows[1].id, "sender-a", "x", None).await.unwrap());
    assert!(!state.postpone(a_rows[1].id, "sender-a", s(3600)).await.unwrap());
    assert!(!state.release_claim(a_rows[2].id, "sender-a", None).await.unwrap());
    let rows = query_claims(&settings).await;
    assert!(
        rows.iter().all(|(state, holder, attempts)| state == "pending"
            && holder.as_deref() == Some("sender-b")
            && *attempts == 0),
        "nothing written by a: {rows:?}"
    );
    assert!(state.record_attempt(&b_rows[0], "sender-b", sent.clone()).await.unwrap().held);

    // The deadline of the other two closes while b holds them: cancelled, b's claim kept. The
    // store cancels them in the transaction that closes their deadlines: none is left for the
    // full pass's look at every notice.
    let case_refs: Vec<CaseRef> = ["2026-BU-0002", "2026-BU-0003"].iter().map(|c| CaseRef::parse(c).unwrap()).collect();
    let records_of = |dates: CaseDates| -> Vec<DeadlineRecord> {
        case_refs
            .iter()
            .flat_map(|case_ref| {
                rules::deadlines_for(&dates, &[], RuleOptions::default()).into_iter().map(|deadline| DeadlineRecord {
                    case_ref: case_ref.clone(),
                    unit: UnitCode::parse("BRO-BU").unwrap(),
                    caseworker: None,
                    child_sex: None,
                    deadline,
                    next_step_on: None,
                    row_updated_at: t,
                    seen_on: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                    child_key: None,
                    case_of: None,
                    cycle_start: None,
                })
            })
            .collect()
    };
    let received = CaseDates { received_on: Some(date("2026-11-11")), ..CaseDates::default() };
    assert_eq!(state.store_deadlines(&case_refs, &records_of(received), None).await.unwrap(), 0);
    let decided = CaseDates { assessment_decided_on: Some(date("2026-11-24")), ..received };
    assert_eq!(state.store_deadlines(&case_refs, &records_of(decided), None).await.unwrap(), 2);
    assert_eq!(state.cancel_notices_of_finished_deadlines().await.unwrap(), 0);
    let rows = query_claims(&settings).await;
    assert_eq!(
        rows[1..].iter().map(|r| (r.0.as_str(), r.1.as_deref())).collect::<Vec<_>>(),
        [("cancelled", Some("sender-b")), ("cancelled", Some("sender-b"))]
    );
    // b's attempt at one fails: it stays cancelled. b had handed the other over: it is sent.
    // Both in one group commit, with a record of the row b recorded already (its claim gone):
    // each record is fenced on its own, and that one writes nothing.
    let failed = Attempt { state: OutboxState::Retrying, next: Some(s(120)), sent_at: None, ..sent.clone() };
    let group = [(&b_rows[0], sent.clone()), (&b_rows[1], failed), (&b_rows[2], sent)];
    let recorded = state.record_attempts("sender-b", &group).await.unwrap();
    assert_eq!(
        recorded.iter().map(|r| (r.held, r.escalated)).collect::<Vec<_>>(),
        [(false, false), (true, false), (true, false)]
    );
    let rows = query_claims(&settings).await;
    assert_eq!(
        rows.iter().map(|r| (r.0.as_str(), r.1.as_deref(), r.2)).collect::<Vec<_>>(),
        [("sent", None, 1), ("cancelled", None, 1), ("sent", None, 1)]
    );
    state.close().await;
}

// ---------------------------------------------------------------------------------------------

/// A poll that read the stored rows of what it stores ([`StateStore::store_deadlines_known`])
/// sends each record to one statement (none, the narrow update, or the upsert); what it stores
/// is what [`StateStore::store_deadlines`] stores from the same records, for every kind of
/// change, and for a row that changed between the read and the store (a stale read).
async fn stored_rows_choose_the_statements_not_what_is_stored(postgres: Option<String>) {
    let (_ws, settings, state) = open(postgres).await;
    let stamp = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 8, d, h, 0, 0).unwrap();
    let deadline = |kind, start: &str, due: &str| rules::Deadline {
        kind,
        start_on: date(start),
        nominal_due_on: date(due),
        due_on: date(due),
        closed_on: None,
        due_reason: DueReason::Nominal,
    };
    // One reference's records as first stored, by the name of what the second store does to it.
    let first = |case_ref: &CaseRef| -> Vec<(&'static str, DeadlineRecord)> {
        let record = |kind, cycle: Option<&str>, d: rules::Deadline| DeadlineRecord {
            case_ref: case_ref.clone(),
            unit: UnitCode::parse("BRO-BU").unwrap(),
            caseworker: Some(EmailAddress::parse("anna@kommun.example").unwrap()),
            child_sex: Some(Sex::Female),
            deadline: rules::Deadline { kind, ..d },
            next_step_on: Some(date("2026-08-20")),
            row_updated_at: stamp(1, 9),
            seen_on: date("2026-08-01"),
            child_key: None,
            case_of: Some(CaseRef::parse("2026-BU-0001").unwrap()),
            cycle_start: cycle.map(date),
        };
        let moved = rules::Deadline {
            due_on: date("2026-12-28"),
            due_reason: DueReason::Moved {
                skipped: vec![(date("2026-12-24"), DayKind::ChristmasEve), (date("2026-12-26"), DayKind::Saturday)],
            },
            ..deadline(Kind::Investigation, "2026-08-24", "2026-12-24")
        };
        vec![
            ("identical", record(Kind::Protection, None, deadline(Kind::Protection, "2026-08-01", "2026-08-02"))),
            ("narrow", record(Kind::Assessment, None, deadline(Kind::Assessment, "2026-08-01", "2026-08-14"))),
            (
                "closed",
                record(
                    Kind::PlacementReview,
                    Some("2026-03-02"),
                    deadline(Kind::PlacementReview, "2026-03-02", "2026-09-02"),
                ),
            ),
            ("moved", record(Kind::Investigation, None, moved)),
            ("withdrawn", record(Kind::FollowUp, None, deadline(Kind::FollowUp, "2026-08-01", "2027-02-01"))),
            (
                "no next step",
                record(
                    Kind::RestrictionReview,
                    Some("2026-06-02"),
                    deadline(Kind::RestrictionReview, "2026-06-02", "2026-09-02"),
                ),
            ),
            (
                "due moved",
                record(
                    Kind::CustodyTransferReview,
                    Some("2024-09-01"),
                    deadline(Kind::CustodyTransferReview, "2024-09-01", "2026-09-01"),
                ),
            ),
            ("stale", record(Kind::LvuCareStart, None, deadline(Kind::LvuCareStart, "2026-08-01", "2026-08-29"))),
            (
                "closed stale",
                record(Kind::LvuCourtSubmission, None, deadline(Kind::LvuCourtSubmission, "2026-08-01", "2026-08-29")),
            ),
            (
                "key",
                record(
                    Kind::ReporterInformation,
                    None,
                    deadline(Kind::ReporterInformation, "2026-08-01", "2026-08-08"),
                ),
            ),
            (
                "gone",
                record(Kind::EmergencyHomeLimit, None, deadline(Kind::EmergencyHomeLimit, "2026-08-01", "2026-10-01")),
            ),
        ]
    };
    // The same records as computed again: each changed as its name says.
    let second = |case_ref: &CaseRef| -> Vec<DeadlineRecord> {
        let mut out = Vec::new();
        for (what, mut r) in first(case_ref) {
            match what {
                // A later next step, and a new `updated_at`: no reason to write by itself.
                "identical" => (r.next_step_on, r.row_updated_at) = (Some(date("2026-08-25")), stamp(31, 10)),
                "narrow" => {
                    r.caseworker = Some(EmailAddress::parse("bo@kommun.example").unwrap());
                    r.row_updated_at = stamp(31, 10);
                }
                "closed" => {
                    let mut next = r.clone();
                    next.deadline = deadline(Kind::PlacementReview, "2026-08-31", "2027-03-01");
                    next.cycle_start = Some(date("2026-08-31"));
                    next.next_step_on = Some(date("2027-01-29"));
                    out.push(next);
                    r.deadline.closed_on = Some(date("2026-08-31"));
                    r.next_step_on = None;
                }
                "moved" | "withdrawn" => r.row_updated_at = stamp(31, 10),
                // A change to write (a record identical to the row read is passed over: nothing
                // else writes these rows between the read and the store, see `state::Stored`).
                "stale" => {
                    r.caseworker = Some(EmailAddress::parse("bo@kommun.example").unwrap());
                    r.row_updated_at = stamp(31, 10);
                }
                "closed stale" => {
                    r.deadline.closed_on = Some(date("2026-08-20"));
                    r.next_step_on = None;
                }
                "no next step" => r.next_step_on = None,
                "due moved" => r.deadline.due_on = date("2026-09-02"),
                "key" => r.child_key = Some(ChildKey::parse("barn-1").unwrap()),
                "gone" => continue,
                other => unreachable!("{other}"),
            }
            out.push(r);
        }
        out
    };
    let known = CaseRef::parse("2026-PL-KNOWN").unwrap();
    let plain = CaseRef::parse("2026-PL-PLAIN").unwrap();
    for case_ref in [&known, &plain] {
        let records: Vec<DeadlineRecord> = first(case_ref).into_iter().map(|(_, r)| r).collect();
        state.store_deadlines(std::slice::from_ref(case_ref), &records, None).await.unwrap();
        // "withdrawn": the kind left, and comes back.
        let without: Vec<DeadlineRecord> = records.into_iter().filter(|r| r.deadline.kind != Kind::FollowUp).collect();
        state.store_deadlines(std::slice::from_ref(case_ref), &without, None).await.unwrap();
    }
    assert_eq!(dump(&settings, &known).await, dump(&settings, &plain).await, "the same start");

    let stored = state.stored_of(std::slice::from_ref(&known)).await.unwrap();
    let mut cycles: Vec<_> = stored.cycles().collect();
    cycles.sort_by_key(|(_, cycle, d)| (d.kind, *cycle));
    let stored_cycles = state.cycles_of(std::slice::from_ref(&known)).await.unwrap();
    let mut expected: Vec<_> = stored_cycles.iter().filter_map(StoredDeadline::cycle).collect();
    expected.sort_by_key(|(_, cycle, d)| (d.kind, *cycle));
    assert_eq!(cycles.len(), 3, "{cycles:?}");
    assert_eq!(cycles, expected, "the cycles as cycles_of reads them");
    // "stale", "closed stale": their stored rows change after the read (the narrow and the
    // closing update then match nothing).
    for case_ref in [&known, &plain] {
        execute(
            &settings,
            &format!(
                "UPDATE deadlines SET due_on = '2026-08-31' WHERE case_ref = '{case_ref}' \
                 AND kind IN ('lvu_care_start', 'lvu_court_submission')"
            ),
        )
        .await;
    }
    // Pending notices of both references: those of the cycles the store closes go, on either
    // path, and every other stays.
    let now = Utc.with_ymd_and_hms(2026, 8, 20, 9, 0, 0).unwrap();
    for case_ref in [&known, &plain] {
        let entries = [
            // "closed": its −30 step, and that notice carried up.
            step_entry(&settings, case_ref, Kind::PlacementReview, Some("2026-03-02"), -30, 0),
            step_entry(&settings, case_ref, Kind::PlacementReview, Some("2026-03-02"), -30, 1),
            // The same kind and step of a cycle stored nowhere, and of the open "no next step".
            step_entry(&settings, case_ref, Kind::PlacementReview, Some("2025-09-01"), -30, 0),
            step_entry(&settings, case_ref, Kind::RestrictionReview, Some("2026-06-02"), -30, 0),
            // "closed stale" (a one-off clock, closed through the upsert after the closing
            // update found its row changed), and the open "stale".
            step_entry(&settings, case_ref, Kind::LvuCourtSubmission, None, 0, 0),
            step_entry(&settings, case_ref, Kind::LvuCareStart, None, 0, 0),
        ];
        state.record_steps(&entries, &[], now).await.unwrap();
    }
    let cancelled_known =
        state.store_deadlines_known(std::slice::from_ref(&known), &second(&known), &stored, None).await.unwrap();
    let cancelled_plain = state.store_deadlines(std::slice::from_ref(&plain), &second(&plain), None).await.unwrap();
    let notices = |case_ref: &CaseRef| {
        let (state, case_ref) = (&state, case_ref.to_string());
        async move {
            let rows = state.outbox_for_case(&case_ref).await.unwrap();
            let mut lines: Vec<String> = rows
                .iter()
                .map(|r| format!("{} {}", r.notice_key.replace(case_ref.as_str(), "REF"), r.state.as_str()))
                .collect();
            lines.sort();
            lines
        }
    };
    assert_eq!(
        notices(&known).await,
        [
            "notice/lvu_care_start/REF/0 pending",
            "notice/lvu_court_submission/REF/0 cancelled",
            "notice/placement_review/REF/2025-09-01/-30 pending",
            "notice/placement_review/REF/2026-03-02/-30 cancelled",
            "notice/placement_review/REF/2026-03-02/-30/up cancelled",
            "notice/restriction_review/REF/2026-06-02/-30 pending",
        ]
    );
    assert_eq!(notices(&known).await, notices(&plain).await, "both paths cancel the same notices");
    assert_eq!((cancelled_known, cancelled_plain), (3, 3));
    let (known_rows, plain_rows) = (dump(&settings, &known).await, dump(&settings, &plain).await);
    assert_eq!(known_rows, plain_rows);
    assert_eq!(known_rows.len(), 12, "{known_rows:#?}");
    assert!(
        known_rows.iter().any(|r| r.starts_with("emergency_home_limit|") && r.contains("|withdrawn|")),
        "{known_rows:#?}"
    );
    // "identical": its row as first stored, the `updated_at` of then (no statement reads it).
    let protection = known_rows.iter().find(|r| r.starts_with("protection|")).unwrap();
    assert!(protection.contains("|2026-08-20|2026-08-01"), "{protection}");
    assert!(
        known_rows.iter().any(|r| r.contains("lvu_care_start||2026-08-01|2026-08-29|2026-08-29|")),
        "{known_rows:#?}"
    );
    assert!(
        known_rows.iter().any(|r| r.contains("lvu_court_submission||2026-08-01|2026-08-29|2026-08-29|2026-08-20|")),
        "{known_rows:#?}"
    );
    state.close().await;
}

/// Every column of a reference's stored deadlines as text, the reference left out, ordered.
async fn dump(settings: &Settings, case_ref: &CaseRef) -> Vec<String> {
    let columns = [
        "kind",
        "cycle_start",
        "start_on",
        "nominal_due_on",
        "due_on",
        "closed_on",
        "unit",
        "caseworker",
        "child_sex",
        "due_reason",
        "extended_to",
        "moved_over",
        "next_step_on",
        "row_updated_at",
        "withdrawn",
        "first_seen_on",
        "child_key",
        "case_of",
    ];
    let text: Vec<String> = columns
        .iter()
        .map(|c| match *c {
            "withdrawn" => "CASE WHEN withdrawn THEN 'withdrawn' ELSE 'live' END".to_string(),
            c => format!("COALESCE(CAST({c} AS TEXT), '-')"),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM deadlines WHERE case_ref = '{case_ref}' ORDER BY kind, cycle_start",
        text.join(" || '|' || ")
    );
    let url = settings.state.url.expose();
    let rows: Vec<(String,)> = if url.starts_with("postgres") {
        sqlx::query_as(&sql).fetch_all(&mut sqlx::PgConnection::connect(url).await.unwrap()).await.unwrap()
    } else {
        sqlx::query_as(&sql).fetch_all(&mut sqlx::SqliteConnection::connect(url).await.unwrap()).await.unwrap()
    };
    rows.into_iter().map(|(r,)| r).collect()
}

async fn query_claims(settings: &Settings) -> Vec<(String, Option<String>, i64)> {
    let url = settings.state.url.expose();
    let sql = "SELECT state, claimed_by, CAST(attempts AS BIGINT) FROM outbox ORDER BY id";
    if url.starts_with("postgres") {
        sqlx::query_as(sql).fetch_all(&mut sqlx::PgConnection::connect(url).await.unwrap()).await.unwrap()
    } else {
        sqlx::query_as(sql).fetch_all(&mut sqlx::SqliteConnection::connect(url).await.unwrap()).await.unwrap()
    }
}

async fn postgres_url() -> String {
    crate::support::postgres::shared().fresh_database().await
}

/// A test whose settings use SQLite state, or the given PostgreSQL database, and that state.
async fn open(postgres: Option<String>) -> (TestApp, Settings, StateStore) {
    let test = TestApp::with_sqlite_register(postgres);
    let settings = test.settings("");
    let state = StateStore::connect(&settings.state.url).await.unwrap();
    state.migrate().await.unwrap();
    (test, settings, state)
}

/// A pending notice of `kind`'s cycle `cycle` (none: a one-off clock) of `case_ref`, at `step`,
/// carried `up` roles up.
fn step_entry(
    settings: &Settings,
    case_ref: &CaseRef,
    kind: Kind,
    cycle: Option<&str>,
    step: i32,
    up: usize,
) -> OutboxEntry {
    let mut key = OutboxKey::notice(case_ref.clone(), kind, cycle.map(date), step);
    for _ in 0..up {
        key = key.up();
    }
    let mut entry = notice_entry(settings, case_ref.as_str());
    entry.message_id = notice::message_id(&key.to_string(), &settings.mail.from);
    entry.notice_key = key;
    (entry.kind, entry.step) = (Some(kind), Some(step));
    entry
}

fn notice_entry(settings: &Settings, case_ref: &str) -> OutboxEntry {
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let case_ref = CaseRef::parse(case_ref).unwrap();
    let key = notice::notice_key(&case_ref, Kind::Assessment, None, 0);
    OutboxEntry {
        message_id: notice::message_id(&key, &settings.mail.from),
        notice_key: key.parse().unwrap(),
        case_ref: Some(case_ref.clone()),
        kind: Some(Kind::Assessment),
        step: Some(0),
        recipients: vec![Recipient {
            role: Role::Caseworker,
            address: EmailAddress::parse("anna.handlaggare@kommun.example").unwrap(),
            instead_of_caseworker: false,
        }],
        payload: OutboxPayload::Notice(Some(NoticePayload {
            case_ref,
            unit: UnitCode::parse("BRO-BU").unwrap(),
            kind: Kind::Assessment,
            step: 0,
            start_on: day("2026-11-11"),
            nominal_due_on: day("2026-11-25"),
            due_on: day("2026-11-25"),
            extended_to: None,
            due_reason: Some(DueReason::Nominal),
            decided_on: day("2026-11-25"),
            caseworker: None,
            case_of: None,
        })),
        state: OutboxState::Pending,
        not_before: Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap(),
    }
}

/// Runs a statement on the state database directly, as a damaged or newer-version row would be.
async fn execute(settings: &Settings, sql: &str) {
    let url = settings.state.url.expose();
    if url.starts_with("postgres") {
        sqlx::PgConnection::connect(url).await.unwrap().execute(sql).await.unwrap();
    } else {
        sqlx::SqliteConnection::connect(url).await.unwrap().execute(sql).await.unwrap();
    }
}

async fn query_states(settings: &Settings) -> Vec<(String, Option<String>)> {
    let url = settings.state.url.expose();
    let sql = "SELECT state, last_error FROM outbox ORDER BY id";
    if url.starts_with("postgres") {
        sqlx::query_as(sql).fetch_all(&mut sqlx::PgConnection::connect(url).await.unwrap()).await.unwrap()
    } else {
        sqlx::query_as(sql).fetch_all(&mut sqlx::SqliteConnection::connect(url).await.unwrap()).await.unwrap()
    }
}
