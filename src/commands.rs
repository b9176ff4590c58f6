//! The operational subcommands, callable from the binary and from tests.

use std::io::{BufWriter, Write};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::config::{Engine, Language, Settings};
use crate::demo::{self, DemoOptions};
use crate::digest::{self, DigestError};
use crate::domain::EmailAddress;
use crate::explanation::Explanation;
use crate::mail::{self, DispatchError, Mailer, MailerError};
use crate::poll::{self, PollError};
use crate::register::{self, Register, RegisterError};
use crate::rules::{self, Kind, RuleOptions, Status};
use crate::state::{DeadlineFilter, StateError, StateStore, StoredDeadline};

/// Why a command failed; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Poll(#[from] PollError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("{0}")]
    Runtime(String),
}

impl CommandError {
    /// 78 (EX_CONFIG) for configuration, 2 for usage, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Config(_) => 78,
            CommandError::Usage(_) => 2,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

/// "Today" in the configured time zone, unless given.
pub fn today_or(settings: &Settings, today: Option<NaiveDate>, now: DateTime<Utc>) -> NaiveDate {
    today.unwrap_or_else(|| now.with_timezone(&settings.timezone).date_naive())
}

/// Opens the state store, migrating it when configured to.
pub async fn open_state(settings: &Settings) -> Result<StateStore, CommandError> {
    let state = StateStore::connect(&settings.state.url).await?;
    if settings.state.migrate_on_start {
        state.migrate().await?;
    }
    Ok(state)
}

/// Creates demo cases in an empty SQLite register when `register.demo_cases` asks for them.
pub async fn seed_demo_register(settings: &Settings, today: NaiveDate) -> Result<Option<u64>, CommandError> {
    let url = &settings.register.url;
    if settings.register.demo_cases == 0 || url.engine != Engine::Sqlite {
        return Ok(None);
    }
    if register::sqlite_register_has_view(url, &settings.register.view).await? {
        return Ok(None);
    }
    let options = DemoOptions { cases: settings.register.demo_cases as usize, seed: 1, today, broken: 0 };
    let written = register::write_demo_cases(url, &settings.register.view, demo::generate(&options)).await?;
    tracing::info!(cases = written, "created a demo register with synthetic cases");
    Ok(Some(written))
}

pub async fn migrate(settings: &Settings) -> Result<(), CommandError> {
    let state = StateStore::connect(&settings.state.url).await?;
    state.migrate().await?;
    state.close().await;
    println!("state database {} is up to date", settings.state.url.redacted());
    Ok(())
}

/// One poll: read the register, compute, record due notices, and exit.
pub async fn poll_once(settings: &Settings, today: Option<NaiveDate>, full: bool) -> Result<(), CommandError> {
    let now = Utc::now();
    let fixed_today = today.is_some();
    let today = today_or(settings, today, now);
    seed_demo_register(settings, today).await?;
    let state = open_state(settings).await?;
    let register = Register::connect(&settings.register.url, &settings.register.view).await?;
    let poll_state = state.poll_state().await?;
    let local_time = (!fixed_today).then(|| now.with_timezone(&settings.timezone).time());
    let full =
        full || poll::full_pass_due(poll_state.last_full_pass_on, today, local_time, settings.register.full_pass_at);
    let sync = poll::sync_register(&register, &state, settings, today, now, full).await?;
    let ladder = poll::evaluate_ladders(&state, settings, today, now).await?;
    state.record_poll_success(now).await?;
    println!(
        "poll {} for {today}: read {} row(s), skipped {} broken, stored {} deadline(s), withdrew {}, recorded {} notice(s) ({} skipped steps)",
        if sync.full { "(full pass)" } else { "(incremental)" },
        sync.rows_read,
        sync.rows_rejected(),
        sync.deadlines_stored,
        sync.withdrawn,
        ladder.notices_enqueued(),
        ladder.skipped,
    );
    let mailer = build_mailer(settings)?;
    let holder = format!("poll-once-{}", std::process::id());
    let sent = mail::dispatch_once_on(&state, &mailer, settings, now, today, &holder).await?;
    let errors: Vec<String> = sent.errors.iter().map(|(class, n)| format!("{class}={n}")).collect();
    println!(
        "mail: sent {}, retrying {}, given up {}, waiting for the sending window {}{}",
        sent.total_sent(),
        sent.total_retrying(),
        sent.total_dead(),
        sent.total_postponed(),
        if errors.is_empty() { String::new() } else { format!(" (errors: {})", errors.join(", ")) },
    );
    register.close().await;
    state.close().await;
    Ok(())
}

/// Builds the one mailer of the process from `mail.*`.
pub fn build_mailer(settings: &Settings) -> Result<Mailer, CommandError> {
    Mailer::from_settings(&settings.mail).map_err(|e| match e {
        MailerError::Tls { .. } => CommandError::Config(e.to_string()),
        MailerError::FileDir { .. } => CommandError::Runtime(e.to_string()),
    })
}

/// Sends a short test mail through the configured transport, so that an operator can check
/// the mail set-up without waiting for a deadline.
pub async fn send_test_mail(settings: &Settings, to: &str) -> Result<(), CommandError> {
    let address = EmailAddress::parse(to).map_err(|e| CommandError::Usage(format!("--to {to:?}: {e}")))?;
    let mailer = build_mailer(settings)?;
    let message = mail::render_test_mail(settings, &address).map_err(|e| CommandError::Runtime(e.to_string()))?;
    mailer.send(&message).await.map_err(|e| CommandError::Runtime(format!("the test mail was not sent: {e}")))?;
    match &mailer {
        Mailer::File { dir } => println!("test mail to {address} written to {}", dir.display()),
        Mailer::Smtp(_) => {
            println!("test mail to {address} accepted by {}:{}", settings.mail.smtp.host, settings.mail.smtp.port)
        }
    }
    Ok(())
}

/// One line of `deadlines --format json` (contract §4).
#[derive(Debug, Serialize)]
struct DeadlineLine<'a> {
    case_ref: &'a str,
    unit: &'a str,
    kind: Kind,
    start_on: NaiveDate,
    nominal_due_on: NaiveDate,
    due_on: NaiveDate,
    closed_on: Option<NaiveDate>,
    status: Status,
    days_left: Option<i64>,
}

/// Brings the stored deadlines up to date with the register (no notices are recorded) and
/// prints them. If the register cannot be read, the stored deadlines are shown with a warning.
pub async fn deadlines(
    settings: &Settings,
    today: Option<NaiveDate>,
    unit: Option<String>,
    status: Option<Status>,
    format: OutputFormat,
) -> Result<(), CommandError> {
    let now = Utc::now();
    let today = today_or(settings, today, now);
    seed_demo_register(settings, today).await?;
    let state = open_state(settings).await?;
    refresh_deadlines(settings, &state, today, now).await?;
    let stored = state.deadlines(&DeadlineFilter { unit, ..DeadlineFilter::default() }).await?;
    state.close().await;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| CommandError::Runtime(format!("cannot write the output: {e}"));
    let lines = stored.iter().map(|d| line(d, today)).filter(|l| status.is_none_or(|s| l.status == s));
    match format {
        OutputFormat::Json => {
            writeln!(out, "[").map_err(io)?;
            for (i, l) in lines.enumerate() {
                let json = serde_json::to_string(&l).map_err(|e| CommandError::Runtime(e.to_string()))?;
                writeln!(out, "{}{json}", if i > 0 { "," } else { "" }).map_err(io)?;
            }
            writeln!(out, "]").map_err(io)?;
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "{:<18} {:<9} {:<13} {:<10} {:<10} {:<10} {:<10} {:<9} {:>9}",
                "CASE_REF", "UNIT", "KIND", "START", "NOMINAL", "DUE", "CLOSED", "STATUS", "DAYS_LEFT"
            )
            .map_err(io)?;
            for l in lines {
                writeln!(
                    out,
                    "{:<18} {:<9} {:<13} {:<10} {:<10} {:<10} {:<10} {:<9} {:>9}",
                    l.case_ref,
                    l.unit,
                    l.kind.as_str(),
                    l.start_on,
                    l.nominal_due_on,
                    l.due_on,
                    l.closed_on.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
                    l.status.as_str(),
                    l.days_left.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
                )
                .map_err(io)?;
            }
        }
    }
    out.flush().map_err(io)?;
    Ok(())
}

/// Brings the stored deadlines up to date with the register without recording notices; if the
/// register cannot be read, warns and leaves the stored deadlines as they are.
async fn refresh_deadlines(
    settings: &Settings,
    state: &StateStore,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(), CommandError> {
    match Register::connect(&settings.register.url, &settings.register.view).await {
        Ok(register) => {
            let poll_state = state.poll_state().await?;
            let full = poll::full_pass_due(poll_state.last_full_pass_on, today, None, settings.register.full_pass_at);
            if let Err(e) = poll::sync_register(&register, state, settings, today, now, full).await {
                eprintln!("warning: showing stored deadlines; the register could not be read: {e}");
            }
            register.close().await;
        }
        Err(e) => eprintln!("warning: showing stored deadlines; the register could not be read: {e}"),
    }
    Ok(())
}

/// Prints the digests that would be sent on `today` (all, or only `manager`'s), after bringing
/// the stored deadlines up to date; nothing is written to the outbox.
pub async fn digest_dry_run(
    settings: &Settings,
    today: Option<NaiveDate>,
    manager: Option<&str>,
) -> Result<(), CommandError> {
    let manager = manager
        .map(|m| EmailAddress::parse(m).map_err(|e| CommandError::Usage(format!("--manager {m:?}: {e}"))))
        .transpose()?;
    let now = Utc::now();
    let today = today_or(settings, today, now);
    seed_demo_register(settings, today).await?;
    let state = open_state(settings).await?;
    refresh_deadlines(settings, &state, today, now).await?;
    let text = digest::dry_run(&state, settings, today, manager.as_ref()).await;
    state.close().await;
    print!("{}", text?);
    Ok(())
}

fn line(d: &StoredDeadline, today: NaiveDate) -> DeadlineLine<'_> {
    DeadlineLine {
        case_ref: &d.case_ref,
        unit: &d.unit,
        kind: d.deadline.kind,
        start_on: d.deadline.start_on,
        nominal_due_on: d.deadline.nominal_due_on,
        due_on: d.deadline.due_on,
        closed_on: d.deadline.closed_on,
        status: d.deadline.status(today),
        days_left: d.deadline.days_left(today),
    }
}

/// Fills the configured SQLite register with synthetic cases.
pub async fn demo_data(
    settings: &Settings,
    cases: usize,
    seed: u64,
    broken: usize,
    today: Option<NaiveDate>,
) -> Result<(), CommandError> {
    if settings.register.url.engine != Engine::Sqlite {
        return Err(CommandError::Usage(format!(
            "register.url is {}: demo-data only fills a SQLite register",
            settings.register.url.redacted()
        )));
    }
    let today = today_or(settings, today, Utc::now());
    let options = DemoOptions { cases, seed, today, broken };
    let written =
        register::write_demo_cases(&settings.register.url, &settings.register.view, demo::generate(&options)).await?;
    println!(
        "wrote {written} demo case(s) ({broken} deliberately broken) to {} view {}",
        settings.register.url.redacted(),
        settings.register.view
    );
    Ok(())
}

/// Explains, step by step, how each deadline of one case was computed and where its ladder stands.
pub async fn explain(settings: &Settings, case_ref: &str, today: Option<NaiveDate>) -> Result<(), CommandError> {
    let today = today_or(settings, today, Utc::now());
    let register = Register::connect(&settings.register.url, &settings.register.view).await?;
    let raw = register.row(case_ref).await?;
    register.close().await;
    let Some(raw) = raw else {
        return Err(CommandError::Usage(format!(
            "case {case_ref} is not in the register view {}",
            settings.register.view
        )));
    };
    let case = register::validate(&raw)
        .map_err(|r| CommandError::Runtime(format!("the register row is skipped by every poll: {r}")))?;
    let state = open_state(settings).await?;
    let outbox = state.outbox_for_case(case_ref).await?;
    state.close().await;
    let text = explain_text(settings, &case, today, |kind| {
        outbox
            .iter()
            .filter(|r| r.kind == Some(kind))
            .filter_map(|r| r.step.map(|s| (s, r.state.as_str().to_string())))
            .collect()
    });
    print!("{text}");
    Ok(())
}

/// The explanation as text; `recorded` lists a kind's ladder steps already in the outbox, with
/// their outbox state.
pub fn explain_text(
    settings: &Settings,
    case: &register::CaseRow,
    today: NaiveDate,
    recorded: impl Fn(Kind) -> Vec<(i32, String)>,
) -> String {
    let sv = settings.mail.language == Language::Swedish;
    let options = RuleOptions { holiday_rule: settings.calendar.holiday_rule };
    let (case_ref, unit, dates) = (case.case_ref.as_str(), case.unit.as_str(), &case.dates);
    let mut out = String::new();
    let mut say = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    say(if sv {
        format!("Ärende {case_ref}, enhet {unit}, beräknat för {today}.")
    } else {
        format!("Case {case_ref}, unit {unit}, computed for {today}.")
    });
    let deadlines = rules::deadlines_for(dates, options);
    if deadlines.is_empty() {
        say(if sv {
            "Inga frister: varken anmälan (received_on) eller beslut att inleda utredning är registrerat.".into()
        } else {
            "No deadlines: neither a report (received_on) nor an investigation decision is recorded.".into()
        });
    }
    for d in &deadlines {
        say(String::new());
        say(format!("{} ({})", if sv { d.kind.name_sv() } else { d.kind.name_en() }, d.kind.as_str()));
        // The law in the words of the notice mails: the same template, the same lines.
        match mail::compose::explanation_lines(settings, &Explanation::new(d, today, options)) {
            Ok(lines) => lines.iter().for_each(|line| say(format!("  {line}"))),
            Err(e) => say(format!("  {e}")),
        }
        let recorded = recorded(d.kind);
        for step in settings.ladders.for_kind(d.kind).steps() {
            let fires = step.fires_on(d);
            let roles: Vec<&str> = step.roles.iter().map(|r| if sv { r.name_sv() } else { r.as_str() }).collect();
            let state = recorded.iter().find(|(s, _)| *s == step.offset).map(|(_, st)| st.as_str());
            let status = match (state, sv) {
                (Some(st), _) => st.to_string(),
                (None, true) if d.is_closed() => "skickas inte (avslutad)".into(),
                (None, false) if d.is_closed() => "not sent (closed)".into(),
                (None, true) if fires <= today => "nådd, registreras vid nästa poll".into(),
                (None, false) if fires <= today => "reached, recorded at the next poll".into(),
                (None, true) => "kommande".into(),
                (None, false) => "upcoming".into(),
            };
            say(format!(
                "  {} {:>4} {fires} → {}: {status}",
                if sv { "Steg" } else { "Step" },
                step.label(),
                roles.join(", ")
            ));
        }
    }
    out
}
