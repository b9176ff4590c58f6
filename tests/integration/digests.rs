//! Daily digests end to end: a scripted register, the state store on SQLite and PostgreSQL, and
//! delivery through a real SMTP server on loopback.

use std::collections::BTreeMap;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use fristvakt::app::{App, Moment};
use fristvakt::config::{self, Settings};
use fristvakt::digest;
use fristvakt::domain::EmailAddress;
use fristvakt::jobs;
use fristvakt::mail;
use fristvakt::rules::{Kind, Role};
use fristvakt::state::{OutboxCategory, OutboxPayload, OutboxState};
use sqlx::sqlite::SqlitePoolOptions;

use crate::helpers::{date, utc};
use crate::support::app::TestApp;
use crate::support::smtp::TestSmtp;

const TODAY: &str = "2026-11-25"; // a Wednesday
const BROMMA: &str = "ec.bromma@kommun.example";
const SODER: &str = "ec.soder@kommun.example";

/// One register row: (case_ref, unit, caseworker, received_on, protection_assessed_on,
/// assessment_decided_on, investigation_opened_on).
type Row = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

/// The scripted register, with what each row means on 2026-11-25.
const ROWS: &[Row] = &[
    // Assessment due Sun 15 Nov, moved to Mon 16 Nov: 9 days overdue. Protection met.
    ("2026-BU-0001", "BRO-BU", Some("anna.berg@kommun.example"), Some("2026-11-01"), Some("2026-11-01"), None, None),
    // Assessment due Mon 30 Nov: 5 days left. Protection met.
    ("2026-BU-0002", "BRO-BU", Some("anna.berg@kommun.example"), Some("2026-11-16"), Some("2026-11-16"), None, None),
    // Protection missed (due 3 Nov, made 4 Nov), assessment met.
    (
        "2026-BU-0006",
        "BRO-BU",
        Some("bo.ek@kommun.example"),
        Some("2026-11-02"),
        Some("2026-11-04"),
        Some("2026-11-10"),
        None,
    ),
    // Protection due 24 Nov: 1 day overdue. Assessment due 7 Dec: not within a week.
    ("2026-BU-0008", "bro-bu", Some("bo.ek@kommun.example"), Some("2026-11-23"), None, None, None),
    // Protection due today.
    ("2026-BU-0003", "VAS-BU", Some("cia@kommun.example"), Some("2026-11-24"), None, None, None),
    // Investigation (opened on application) due Fri 20 Nov: 5 days overdue; no caseworker.
    ("2026-BU-0004", "VAS-BU", None, None, None, None, Some("2026-07-20")),
    // Investigation due Mon 30 Nov: 5 days left.
    ("2026-BU-0005", "SOD-BU", Some("dan@kommun.example"), None, None, None, Some("2026-07-30")),
    // An unconfigured unit with everything met: its (default) manager has nothing to report.
    (
        "2026-BU-0007",
        "KUN-BU",
        Some("eva@kommun.example"),
        Some("2026-11-10"),
        Some("2026-11-10"),
        Some("2026-11-20"),
        None,
    ),
];

struct Scene {
    /// Holds the register, state and configuration files until the test ends.
    _test: TestApp,
    settings: Settings,
}

impl Scene {
    /// A SQLite register with [`ROWS`]; state in SQLite unless `state_url` is given. Bromma's
    /// manager leads two units.
    async fn new(state_url: Option<&str>, extra: &str) -> Scene {
        let test = TestApp::with_sqlite_register(state_url.map(str::to_string));
        let path = test.config_toml(
            "",
            &format!(
                "[mail]\nfrom = \"fristvakt@kommun.example\"\n{extra}\n\
             [units.\"BRO-BU\"]\nname = \"Bromma barn och unga\"\nmanagers = [\"{BROMMA}\"]\n\
             [units.\"VAS-BU\"]\nname = \"Västerort barn och unga\"\nmanagers = [\"{BROMMA}\"]\n\
             [units.\"SOD-BU\"]\nmanagers = [\"{SODER}\"]\n"
            ),
        );
        let settings = config::load_with_env(Some(&path), Vec::new()).unwrap();
        write_register(test.register_url()).await;
        Scene { _test: test, settings }
    }

    /// The application as the daemon builds it; a new one is a restart (new connections).
    async fn app(&self) -> App {
        App::start(Arc::new(self.settings.clone()), "test", utc("2026-11-25T05:00:00Z")).await.unwrap()
    }

    /// The daemon's poll job reading the whole register as of `today`.
    async fn sync(&self, app: &App, today: NaiveDate) {
        let now = utc("2026-11-25T05:00:00Z");
        let report = jobs::full_pass::run_once(app, Moment::on(today, now)).await.unwrap().unwrap();
        assert_eq!((report.sync.rows_read, report.sync.rows_rejected()), (ROWS.len() as u64, 0));
    }

    /// The daemon's digest job at `now`.
    async fn digest_job(&self, app: &App, now: DateTime<Utc>) -> Option<digest::DigestReport> {
        jobs::digest::run_once(app, Moment::at(now, self.settings.timezone)).await.unwrap()
    }

    /// `digest --dry-run --today D [--manager M]`.
    async fn preview(&self, app: &App, today: NaiveDate, manager: Option<&EmailAddress>) -> String {
        let now = utc("2026-11-25T05:00:00Z");
        let source = jobs::show::Source::choose(app, false).await.unwrap();
        jobs::show::digest_preview(app, Moment::on(today, now), manager, source).await.unwrap().text
    }
}

/// The register view as a plain SQLite table with the contract's columns.
async fn write_register(url: &str) {
    let pool = SqlitePoolOptions::new().max_connections(1).connect(&format!("{url}?mode=rwc")).await.unwrap();
    sqlx::query(
        "CREATE TABLE fristvakt_cases (case_ref TEXT NOT NULL PRIMARY KEY, unit TEXT NOT NULL, caseworker TEXT, \
         child_sex TEXT, received_on TEXT, protection_assessed_on TEXT, assessment_decided_on TEXT, \
         assessment_extended_to TEXT, investigation_opened_on TEXT, investigation_extended_to TEXT, \
         investigation_closed_on TEXT, updated_at TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (case_ref, unit, caseworker, received, protection, assessment, opened) in ROWS {
        sqlx::query(
            "INSERT INTO fristvakt_cases (case_ref, unit, caseworker, child_sex, received_on, \
             protection_assessed_on, assessment_decided_on, investigation_opened_on, updated_at) \
             VALUES (?, ?, ?, 'F', ?, ?, ?, ?, '2026-11-24T12:00:00Z')",
        )
        .bind(case_ref)
        .bind(unit)
        .bind(caseworker)
        .bind(received)
        .bind(protection)
        .bind(assessment)
        .bind(opened)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
}

/// (case_ref, kind, due_on, days_left, caseworker) of a section's rows.
fn rows(section: &digest::Section) -> Vec<(&str, Kind, String, i64, Option<&str>)> {
    section
        .rows
        .iter()
        .map(|r| {
            (r.case_ref.as_str(), r.kind, r.due_on.to_string(), r.days_left, r.caseworker.as_ref().map(|c| c.as_str()))
        })
        .collect()
}

#[tokio::test]
async fn digest_content_for_a_scripted_register() {
    let scene = Scene::new(None, "").await;
    let app = scene.app().await;
    let state = &app.state;
    let today = date(TODAY);
    scene.sync(&app, today).await;
    let stored = state.deadlines(&Default::default()).await.unwrap();
    let digests = digest::build_digests(&scene.settings, &stored, today);

    // Bromma's manager leads two units and gets one digest; Söder one; the default manager
    // (KUN-BU, all met) nothing.
    let managers: Vec<&str> = digests.iter().map(|d| d.manager.as_str()).collect();
    assert_eq!(managers, [BROMMA, SODER]);
    let bromma = &digests[0];
    assert_eq!(bromma.date, today);
    assert_eq!(bromma.units.iter().map(|u| u.unit.as_str()).collect::<Vec<_>>(), ["BRO-BU", "VAS-BU"]);
    assert_eq!((bromma.overdue_total(), bromma.upcoming_total()), (3, 2));

    let bro = &bromma.units[0];
    assert_eq!(bro.name.as_deref(), Some("Bromma barn och unga"));
    assert_eq!(
        rows(&bro.overdue),
        [
            ("2026-BU-0001", Kind::Assessment, "2026-11-16".into(), -9, Some("anna.berg@kommun.example")),
            ("2026-BU-0008", Kind::Protection, "2026-11-24".into(), -1, Some("bo.ek@kommun.example")),
        ]
    );
    assert_eq!(
        rows(&bro.upcoming),
        [("2026-BU-0002", Kind::Assessment, "2026-11-30".into(), 5, Some("anna.berg@kommun.example"))]
    );
    assert_eq!(bro.overdue.rows[0].link, "https://register.kommun.example/case/2026-BU-0001");
    let counts: Vec<(Kind, usize, usize)> = bro.kinds.iter().map(|k| (k.kind, k.overdue, k.upcoming)).collect();
    assert_eq!(
        counts,
        [
            (Kind::Protection, 1, 0),
            (Kind::Assessment, 1, 1),
            (Kind::Investigation, 0, 0),
            (Kind::FollowUp, 0, 0),
            (Kind::ReporterInformation, 0, 0)
        ]
    );
    // Due 26 Oct – 24 Nov: protections of 0001 and 0002 met, of 0006 missed, of 0008 overdue;
    // assessments of 0001 overdue, of 0006 met.
    assert_eq!(
        (bro.compliance.met, bro.compliance.missed, bro.compliance.overdue, bro.compliance.share_percent()),
        (3, 1, 2, Some(50))
    );

    let vas = &bromma.units[1];
    assert_eq!(rows(&vas.overdue), [("2026-BU-0004", Kind::Investigation, "2026-11-20".into(), -5, None)]);
    assert_eq!(
        rows(&vas.upcoming),
        [("2026-BU-0003", Kind::Protection, "2026-11-25".into(), 0, Some("cia@kommun.example"))]
    );
    assert_eq!(vas.compliance.share_percent(), Some(0));

    let soder = &digests[1];
    assert_eq!(soder.units.len(), 1);
    assert_eq!(soder.units[0].overdue.total, 0);
    assert_eq!(
        rows(&soder.units[0].upcoming),
        [("2026-BU-0005", Kind::Investigation, "2026-11-30".into(), 5, Some("dan@kommun.example"))]
    );
    assert_eq!(soder.units[0].compliance.share_percent(), None);

    // The text the manager reads, in order.
    let text = mail::compose::digest_preview_text(&scene.settings, bromma).unwrap();
    let expected_in_order = [
        "Subject: Daglig fristöversikt 2026-11-25: 3 försenade, 2 förfaller inom 7 dagar",
        "== BRO-BU – Bromma barn och unga ==",
        "- 2026-BU-0001, Förhandsbedömning, sista dag 2026-11-16, 9 dagar försenad, handläggare anna.berg@kommun.example",
        "  https://register.kommun.example/case/2026-BU-0001",
        "- 2026-BU-0008, Skyddsbedömning, sista dag 2026-11-24, 1 dag försenad, handläggare bo.ek@kommun.example",
        "- 2026-BU-0002, Förhandsbedömning, sista dag 2026-11-30, 5 dagar kvar",
        "Andel hållna frister senaste 30 dagarna: 50 % (3 av 6)",
        "== VAS-BU – Västerort barn och unga ==",
        "- 2026-BU-0004, Utredning, sista dag 2026-11-20, 5 dagar försenad, handläggare saknas",
        "- 2026-BU-0003, Skyddsbedömning, sista dag 2026-11-25, sista dagen i dag",
    ];
    let mut from = 0;
    for line in expected_in_order {
        let at = text[from..].find(line).unwrap_or_else(|| panic!("{line:?} not found after byte {from} in\n{text}"));
        from += at + line.len();
    }
    let nobody = EmailAddress::parse("nobody@kommun.example").unwrap();
    let none = scene.preview(&app, today, Some(&nobody)).await;
    assert_eq!(none, "no digest for nobody@kommun.example: not the manager of any unit (see units.*.managers)\n");
    let default_manager = EmailAddress::parse("enhetschef@kommun.example").unwrap();
    let quiet = scene.preview(&app, today, Some(&default_manager)).await;
    assert!(quiet.starts_with("no digest for enhetschef@kommun.example on 2026-11-25: nothing overdue"), "{quiet}");
    // Nothing about a case beyond reference, kind, dates, caseworker and link.
    assert!(!text.contains("2026-11-01") && !text.contains("2026-07-20"), "start dates leaked:\n{text}");
}

/// Repeated runs and restarts on one state database write each manager's digest once per day.
async fn once_per_manager_and_day(state_url: Option<String>) {
    let scene = Scene::new(state_url.as_deref(), "send_window = \"Mon-Fri 07:00-18:00\"").await;
    let settings = &scene.settings;
    let today = date(TODAY);
    let app = scene.app().await;
    let state = &app.state;
    scene.sync(&app, today).await;
    let now = utc("2026-11-25T06:00:05Z");

    let first = jobs::digest::enqueue_digests(state, settings, today, now).await.unwrap();
    assert_eq!((first.built, first.enqueued, first.already_recorded), (2, 2, 0));
    for _ in 0..3 {
        let again = jobs::digest::enqueue_digests(state, settings, today, now).await.unwrap();
        assert_eq!((again.built, again.enqueued, again.already_recorded), (2, 0, 2));
    }
    app.close().await;

    // A restart: a new store on the same database.
    let app = scene.app().await;
    let state = &app.state;
    let again = jobs::digest::enqueue_digests(state, settings, today, utc("2026-11-25T08:00:00Z")).await.unwrap();
    assert_eq!(again.enqueued, 0);
    assert_eq!(scene.digest_job(&app, utc("2026-11-25T09:00:00Z")).await, None);

    // Thursday: not before 07:00 local; then once, however often and across a restart.
    assert_eq!(scene.digest_job(&app, utc("2026-11-26T05:59:59Z")).await, None);
    let thursday = scene.digest_job(&app, utc("2026-11-26T06:00:00Z")).await;
    assert_eq!(thursday.map(|r| (r.date, r.enqueued)), Some((Some(date("2026-11-26")), 2)));
    assert_eq!(scene.digest_job(&app, utc("2026-11-26T06:00:01Z")).await, None);
    app.close().await;
    let app = scene.app().await;
    let state = &app.state;
    assert_eq!(scene.digest_job(&app, utc("2026-11-26T10:00:00Z")).await, None);
    // Back at 19:00 on Friday, after the sending window closed: Friday's digest is not sent
    // (it would arrive on Monday beside Monday's).
    assert_eq!(scene.digest_job(&app, utc("2026-11-27T18:00:00Z")).await, None);
    // Saturday: nothing scheduled.
    assert_eq!(scene.digest_job(&app, utc("2026-11-28T09:00:00Z")).await, None);

    let outbox = state.outbox().await.unwrap();
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for row in outbox.iter().filter(|r| r.category().as_str() == "digest") {
        *per_key.entry(row.notice_key.clone()).or_default() += 1;
        assert_eq!(row.state, OutboxState::Pending);
        assert_eq!(row.case_ref, None);
        let OutboxPayload::Digest(digest) = &row.payload else { panic!("{:?}", row.payload) };
        assert_eq!(digest::digest_key(&digest.manager, digest.date), row.notice_key);
        assert!(row.recipients.iter().any(|r| r.role == Role::Manager), "{:?}", row.recipients);
    }
    let keys: Vec<&str> = per_key.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "digest/2026-11-25/ec.bromma@kommun.example",
            "digest/2026-11-25/ec.soder@kommun.example",
            "digest/2026-11-26/ec.bromma@kommun.example",
            "digest/2026-11-26/ec.soder@kommun.example",
        ]
    );
    assert!(per_key.values().all(|n| *n == 1));
    app.close().await;
}

both_engines!(once_per_manager_and_day);

#[tokio::test]
async fn no_digest_on_a_public_holiday_unless_mail_is_always_sent() {
    let julafton = utc("2026-12-24T08:00:00Z"); // Thursday 24 December, 09:00 local
    let scene = Scene::new(None, "send_window = \"Mon-Fri 07:00-18:00\"").await;
    let app = scene.app().await;
    scene.sync(&app, date("2026-12-24")).await;
    assert_eq!(scene.digest_job(&app, julafton).await, None);
    assert!(app.state.outbox().await.unwrap().iter().all(|r| r.category() != OutboxCategory::Digest));

    let scene = Scene::new(None, "send_window = \"always\"").await;
    let app = scene.app().await;
    scene.sync(&app, date("2026-12-24")).await;
    let report = scene.digest_job(&app, julafton).await.unwrap();
    assert_eq!(report.date, Some(date("2026-12-24")));
    assert!(report.enqueued > 0);
}

#[tokio::test]
async fn the_digest_job_takes_its_day_from_the_moment() {
    // `--today` fixes the day apart from the instant: the digests are that day's, not the day of
    // `now` in the configured zone (Wednesday 25 November, 10:00 local).
    let scene = Scene::new(None, "send_window = \"always\"").await;
    let app = scene.app().await;
    let tuesday = date("2026-11-24");
    scene.sync(&app, tuesday).await;
    let report = jobs::digest::run_once(&app, Moment::on(tuesday, utc("2026-11-25T09:00:00Z"))).await.unwrap().unwrap();
    assert_eq!(report.date, Some(tuesday));
    assert!(report.enqueued > 0);
    let outbox = app.state.outbox().await.unwrap();
    let digests: Vec<_> = outbox.iter().filter(|r| r.category() == OutboxCategory::Digest).collect();
    assert_eq!(digests.len(), report.enqueued);
    assert!(digests.iter().all(|r| r.notice_key.starts_with("digest/2026-11-24/")), "{digests:?}");
    app.close().await;
}

/// The daemon's dispatch job at `now`: the number of digests sent (the poll also wrote the
/// notices of the ladder, which go out beside them).
async fn deliver(app: &App, now: DateTime<Utc>) -> u64 {
    let report = jobs::dispatch::run_once(app, Moment::at(now, app.settings.timezone)).await.unwrap();
    assert_eq!(report.total_dead() + report.total_retrying(), 0, "{report:?}");
    report.sent.iter().filter(|(l, _)| l.category == Some(OutboxCategory::Digest)).map(|(_, n)| n).sum()
}

fn is_digest(mail: &crate::support::smtp::ReceivedMail) -> bool {
    mail.header("Subject").is_some_and(|s| s.starts_with("Daglig fristöversikt"))
}

#[tokio::test]
async fn a_manager_of_two_units_gets_one_digest_per_working_day_over_smtp() {
    let smtp = TestSmtp::start().await;
    let smtp_settings = format!(
        "send_window = \"Mon-Fri 07:00-18:00\"\ntransport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        smtp.port()
    );
    let scene = Scene::new(None, &smtp_settings).await;
    let settings = &scene.settings;
    let mut app = scene.app().await;
    scene.sync(&app, date("2026-11-23")).await;

    // Monday 23 to Sunday 29 November; the job runs at 06:30, on the tick, after a restart and
    // at noon; the dispatcher runs after each.
    let mut sent = 0;
    for day in date("2026-11-23").iter_days().take(7) {
        for (i, time) in ["05:30:00", "06:00:00", "06:20:00", "11:00:00"].into_iter().enumerate() {
            let now = utc(&format!("{day}T{time}Z"));
            if i == 2 {
                app.close().await;
                app = scene.app().await;
            }
            scene.digest_job(&app, now).await;
            sent += deliver(&app, now).await;
        }
    }
    assert_eq!(sent, 10, "two managers, five working days");
    let mails: Vec<_> = smtp.messages().into_iter().filter(is_digest).collect();
    assert_eq!(mails.len(), 10);
    let bromma: Vec<_> = mails.iter().filter(|m| m.rcpt_to == [BROMMA]).collect();
    let subjects: Vec<String> = bromma.iter().map(|m| m.header("Subject").unwrap()).collect();
    let dates: Vec<&str> = subjects.iter().map(|s| &s["Daglig fristöversikt ".len()..][..10]).collect();
    assert_eq!(dates, ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27"]);

    // Wednesday's mail, checked in full against the outbox and the dry run.
    let wednesday = bromma[2];
    let outbox = app.state.outbox().await.unwrap();
    let row = outbox.iter().find(|r| r.notice_key == "digest/2026-11-25/ec.bromma@kommun.example").unwrap();
    assert_eq!(row.state, OutboxState::Sent);
    assert_eq!(wednesday.mail_from, "fristvakt@kommun.example");
    assert_eq!(wednesday.header("From").unwrap(), "fristvakt <fristvakt@kommun.example>");
    assert_eq!(wednesday.header("X-Auto-Response-Suppress").unwrap(), "All");
    assert_eq!(wednesday.header("Content-Language").unwrap(), "sv");
    assert_eq!(wednesday.header("To").unwrap(), BROMMA);
    assert_eq!(wednesday.header("Message-ID").unwrap(), row.message_id);
    assert_eq!(wednesday.header("Auto-Submitted").unwrap(), "auto-generated");
    assert_eq!(
        wednesday.header("Subject").unwrap(),
        "Daglig fristöversikt 2026-11-25: 3 försenade, 2 förfaller inom 7 dagar"
    );
    let text = wednesday.text_body();
    assert!(text.contains("== BRO-BU – Bromma barn och unga =="), "{text}");
    assert!(text.contains("== VAS-BU – Västerort barn och unga =="), "{text}");
    let stored = app.state.deadlines(&Default::default()).await.unwrap();
    let digests = digest::build_digests(settings, &stored, date(TODAY));
    let dry = mail::compose::digest_preview_text(settings, &digests[0]).unwrap();
    assert_eq!(dry.split_once("\n\n").unwrap().1, text, "the dry run shows what was sent");
    let only = scene.preview(&app, date(TODAY), Some(&EmailAddress::parse(BROMMA).unwrap())).await;
    assert_eq!(only, dry);

    let html = wednesday.html_body().expect("an HTML part");
    assert_well_formed_mail_html(&html);
    assert!(html.contains(">2026-BU-0001</a>"), "{html}");
    assert!(
        html.contains("href=\"https:&#x2f;&#x2f;register.kommun.example&#x2f;case&#x2f;2026-BU-0001\"")
            || html.contains("href=\"https://register.kommun.example/case/2026-BU-0001\""),
        "{html}"
    );
    app.close().await;
}

#[tokio::test]
async fn english_digest_html_is_well_formed_too() {
    let scene = Scene::new(None, "language = \"en\"").await;
    let app = scene.app().await;
    scene.sync(&app, date(TODAY)).await;
    let stored = app.state.deadlines(&Default::default()).await.unwrap();
    let digests = digest::build_digests(&scene.settings, &stored, date(TODAY));
    let message = mail::compose_digest(&scene.settings, &digests[0], "<t@kommun.example>").unwrap();
    let raw = String::from_utf8(message.formatted()).unwrap();
    let mail = crate::support::smtp::ReceivedMail {
        mail_from: String::new(),
        rcpt_to: Vec::new(),
        data: raw,
        received_at: std::time::Instant::now(),
    };
    assert_eq!(mail.header("Subject").unwrap(), "Daily deadline digest 2026-11-25: 3 overdue, 2 due within 7 days");
    let html = mail.html_body().unwrap();
    assert_well_formed_mail_html(&html);
    assert!(html.contains("<html lang=\"en\">") && html.contains("Days overdue"), "{html}");
    assert!(mail.text_body().contains("9 days overdue, caseworker anna.berg@kommun.example"));
}

/// Checks that `html` is well-formed (XHTML-style: every element closed, void elements
/// self-closed, attributes quoted, entities complete), that tables nest properly, and that it
/// uses nothing mail clients strip or block: no classes, `<style>` or scripts.
fn assert_well_formed_mail_html(html: &str) {
    const VOID: [&str; 4] = ["meta", "br", "hr", "img"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html.trim_start();
    assert!(rest.starts_with("<!DOCTYPE html>"), "missing doctype");
    rest = &rest["<!DOCTYPE html>".len()..];
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]);
        let after = &rest[lt + 1..];
        let gt = after.find('>').unwrap_or_else(|| panic!("unclosed tag at {:?}", &after[..after.len().min(40)]));
        let tag = &after[..gt];
        assert!(!tag.contains('<'), "'<' inside tag {tag:?}");
        rest = &after[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_else(|| panic!("</{name}> without an open element"));
            assert_eq!(open, name, "</{name}> closes <{open}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
        let name = &body[..name_end];
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()), "bad tag name in {tag:?}");
        assert!(!["script", "style", "link", "iframe", "form"].contains(&name), "<{name}> in mail");
        check_attributes(name, body[name_end..].trim());
        let parent = stack.last().map(String::as_str);
        match name {
            "tr" => assert_eq!(parent, Some("table"), "<tr> outside a table"),
            "td" | "th" => assert_eq!(parent, Some("tr"), "<{name}> outside a row"),
            "html" => assert_eq!(parent, None),
            _ => {}
        }
        if VOID.contains(&name) {
            assert!(self_closing, "void element <{name}> not self-closed");
        } else {
            assert!(!self_closing, "<{name}/> is not a void element");
            stack.push(name.to_string());
        }
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
}

fn check_attributes(tag: &str, mut attrs: &str) {
    while !attrs.is_empty() {
        let eq = attrs.find('=').unwrap_or_else(|| panic!("attribute without value in <{tag} {attrs}>"));
        let name = attrs[..eq].trim();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "attribute name {name:?} in <{tag}>");
        assert_ne!(name, "class", "CSS classes are dropped by mail clients");
        assert!(!name.starts_with("on"), "event handler {name} in <{tag}>");
        let value = attrs[eq + 1..].strip_prefix('"').unwrap_or_else(|| panic!("unquoted {name} in <{tag}>"));
        let end = value.find('"').unwrap_or_else(|| panic!("unterminated {name} in <{tag}>"));
        check_text(&value[..end]);
        attrs = value[end + 1..].trim_start();
    }
}

/// Text and attribute values: no stray '>' and every '&' starts a complete entity.
fn check_text(text: &str) {
    assert!(!text.contains('>'), "stray '>' in {text:?}");
    for (i, _) in text.match_indices('&') {
        let entity = &text[i + 1..];
        let end = entity.find(';').unwrap_or_else(|| panic!("unterminated entity in {text:?}"));
        let name = &entity[..end];
        let ok = name
            .strip_prefix("#x")
            .map(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            .unwrap_or(false)
            || name.strip_prefix('#').map(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())).unwrap_or(false)
            || ["amp", "lt", "gt", "quot", "nbsp", "#39"].contains(&name);
        assert!(ok, "bad entity &{name}; in {text:?}");
    }
}

#[test]
fn the_well_formedness_check_catches_broken_html() {
    let good = "<!DOCTYPE html><html lang=\"sv\"><body><table><tr><td>a &amp; b</td></tr></table><br /></body></html>";
    assert_well_formed_mail_html(good);
    for bad in [
        "<!DOCTYPE html><html><body><table><tr><td>x</tr></table></body></html>",
        "<!DOCTYPE html><html><body><p class=\"x\">x</p></body></html>",
        "<!DOCTYPE html><html><body><td>x</td></body></html>",
        "<!DOCTYPE html><html><body>a & b</body></html>",
        "<!DOCTYPE html><html><body><br></body></html>",
        "<!DOCTYPE html><html><body><a href=x>y</a></body></html>",
        "<!DOCTYPE html><html><body><script>x</script></body></html>",
    ] {
        assert!(std::panic::catch_unwind(|| assert_well_formed_mail_html(bad)).is_err(), "{bad} passed");
    }
}
