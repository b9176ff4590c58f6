//! The operational subcommands, callable from the binary and from tests.

use std::io::{BufWriter, Write};

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use serde::Serialize;

use crate::app::{App, AppError, Moment};
use crate::config::{Engine, Language, Settings};
use crate::demo::{self, DemoOptions};
use crate::domain::EmailAddress;
use crate::jobs::{self, JobError, PollReport};
use crate::mail::{self, Mailer, MailerError};
use crate::register::{self, RegisterError};
use crate::report;
use crate::rules::{Kind, Status};
use crate::state::{OutboxState, RetryOutcome, ShowQuery, StateError, StateStore, StoredDeadline};
use crate::terminal;
use crate::{say, warn_user};

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
    Job(#[from] JobError),
    #[error("{0}")]
    Runtime(String),
    /// The reader of standard output went away (`| head`): the output ends quietly, exit 0.
    #[error("the output was closed")]
    OutputClosed,
}

impl From<AppError> for CommandError {
    fn from(e: AppError) -> CommandError {
        match e {
            AppError::Config(m) => CommandError::Config(m),
            AppError::State(e) => CommandError::State(e),
            AppError::Register(e) => CommandError::Register(e),
            AppError::Runtime(m) => CommandError::Runtime(m),
        }
    }
}

impl CommandError {
    /// 78 (EX_CONFIG) for configuration, 2 for usage, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Config(_) => 78,
            CommandError::Usage(_) => 2,
            CommandError::OutputClosed => 0,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

/// The optional features of the register view, as `check-config` prints them; an error when
/// the register cannot be reached within ten seconds.
pub async fn register_features(settings: &Settings) -> Result<String, String> {
    let connect = async {
        register::Register::connect(&settings.register.url, &settings.register.view)
            .await?
            .with_placements(&settings.register.placements_view)
            .await
    };
    let register = tokio::time::timeout(std::time::Duration::from_secs(10), connect)
        .await
        .map_err(|_| "the register did not answer within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let checked = register.check().await;
    let features = register.features();
    let placements = register.describe_placements();
    register.close().await;
    checked.map_err(|e| e.to_string())?;
    Ok(format!("register view {}: {}; {placements}", settings.register.view, features.describe()))
}

pub async fn migrate(settings: &Settings) -> Result<(), CommandError> {
    let state = StateStore::connect(&settings.state.url).await?;
    state.migrate().await?;
    state.close().await;
    say!("state database {} is up to date", settings.state.url.redacted());
    Ok(())
}

/// One poll, as the daemon's: under the poll lease, read the register, compute, record the
/// notices due, send what the outbox holds, and exit.
/// With `dry_run`, nothing is written or sent: what the poll would mail is printed
/// ([`jobs::show::poll_preview`]).
pub async fn poll_once(
    settings: Arc<Settings>,
    today: Option<NaiveDate>,
    full: bool,
    dry_run: bool,
) -> Result<(), CommandError> {
    let now = Utc::now();
    let at = Moment::from_option(today, now, settings.timezone);
    if dry_run {
        let horizon = settings.ladders.first_sight_horizon_days;
        let app = App::open_for_reading(settings, now).await?;
        let preview = jobs::show::poll_preview(&app, at).await;
        app.close_connections().await;
        return terminal::print_text(&preview?.text(at.today, horizon)).map_err(output_error);
    }
    // Holding a SQLite state's lock proves that no daemon uses the state: a poll lease left by
    // a daemon's crash is taken over at once (with a daemon running, the lock is its own).
    let state_lock = crate::app::lock_sqlite_state(&settings).ok().flatten();
    let app = App::start(settings, format!("poll-once-{}", std::process::id()), now).await?;
    if state_lock.is_some() {
        jobs::poll::seize_lease(&app, Moment::at(now, app.settings.timezone)).await?;
    }
    let result = poll_and_send(&app, at, full).await;
    app.close().await;
    result
}

async fn poll_and_send(app: &App, at: Moment, full: bool) -> Result<(), CommandError> {
    let poll = if full { jobs::full_pass::run_once(app, at).await? } else { jobs::poll::scheduled(app, at).await? };
    let Some(PollReport { sync, ladder }) = poll else {
        say!("another fristvakt holds the poll lease; not polling (its poll covers this one)");
        return Ok(());
    };
    say!(
        "poll {} for {}: read {} row(s), skipped {} broken, stored {} deadline(s), withdrew {}, recorded {} notice(s) ({} skipped steps)",
        if sync.full { "(full pass)" } else { "(incremental)" },
        at.today,
        sync.rows_read,
        sync.rows_rejected(),
        sync.deadlines_stored,
        sync.withdrawn,
        ladder.notices_enqueued(),
        ladder.skipped,
    );
    // Run after run until none is due: a run stops at its bound (rows or time) with mail left.
    let mut sent = mail::DispatchReport::default();
    let mut runs = 0u32;
    loop {
        let run = jobs::dispatch::run_once(app, Moment { now: Utc::now(), ..at }).await?;
        runs += 1;
        let more = run.more && !run.paused();
        sent.absorb(run);
        if !more {
            break;
        }
    }
    let errors: Vec<String> = sent.errors.iter().map(|(class, n)| format!("{class}={n}")).collect();
    say!(
        "mail: sent {}, retrying {}, given up {}, waiting for the sending window {}{} in {runs} run(s)",
        sent.total_sent(),
        sent.total_retrying(),
        sent.total_dead(),
        sent.total_postponed(),
        if errors.is_empty() { String::new() } else { format!(" (errors: {})", errors.join(", ")) },
    );
    // Every due mail was sent or has its retry scheduled, unless the mail server could not be
    // reached or refused fristvakt itself: then the mail still due is left, and the exit says so.
    if sent.paused() {
        let left = app.state.outbox_due(Utc::now()).await?;
        return Err(CommandError::Runtime(format!(
            "the mail server could not be reached or refused fristvakt ({}); {left} mail(s) left in the outbox, due",
            sent.unavailable
                .or_else(|| sent.server_refusals.keys().next().copied())
                .map(|c| c.as_str())
                .unwrap_or("unknown"),
        )));
    }
    Ok(())
}

/// Sends a short test mail through the configured transport, so that an operator can check
/// the mail set-up without waiting for a deadline.
pub async fn send_test_mail(settings: &Settings, to: &str) -> Result<(), CommandError> {
    let address = EmailAddress::parse(to).map_err(|e| CommandError::Usage(format!("--to {to:?}: {e}")))?;
    let mailer = Mailer::from_settings(&settings.mail).map_err(|e| match e {
        MailerError::Tls { .. } => CommandError::Config(e.to_string()),
        MailerError::FileDir { .. } => CommandError::Runtime(e.to_string()),
    })?;
    let message = mail::render_test_mail(settings, &address).map_err(|e| CommandError::Runtime(e.to_string()))?;
    let endpoint = match &mailer {
        Mailer::File { dir } => format!("the directory {}", dir.display()),
        Mailer::Smtp(_) => format!(
            "the mail server {}:{} (mail.smtp.host, mail.smtp.port; tls {})",
            settings.mail.smtp.host,
            settings.mail.smtp.port,
            settings.mail.smtp.tls.as_str()
        ),
    };
    mailer
        .send(&message)
        .await
        .map_err(|e| CommandError::Runtime(format!("the test mail was not sent to {endpoint}: {e}")))?;
    match &mailer {
        Mailer::File { dir } => say!("test mail to {address} written to {}", dir.display()),
        Mailer::Smtp(_) => {
            say!("test mail to {address} accepted by {}:{}", settings.mail.smtp.host, settings.mail.smtp.port)
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

/// Prints the deadlines: the state as of the last poll (standard error says when that was),
/// filtered by the database and streamed, row by row; with `fresh`, or before any poll, the
/// register computed as it is read, streamed too (if it cannot be opened, the stored deadlines
/// with a warning). Nothing is written.
pub async fn deadlines(
    settings: Arc<Settings>,
    today: Option<NaiveDate>,
    unit: Option<String>,
    status: Option<Status>,
    format: OutputFormat,
    fresh: bool,
) -> Result<(), CommandError> {
    let now = Utc::now();
    let at = Moment::from_option(today, now, settings.timezone);
    let app = App::open_for_reading(settings, now).await?;
    let listed = list_deadlines(&app, at, unit, status, format, fresh).await;
    app.close_connections().await;
    listed
}

async fn list_deadlines(
    app: &App,
    at: Moment,
    unit: Option<String>,
    status: Option<Status>,
    format: OutputFormat,
    fresh: bool,
) -> Result<(), CommandError> {
    let today = at.today;
    let source = jobs::show::Source::choose(app, fresh).await?;
    if let Some(note) = source.note() {
        warn_user!("{note}");
    }
    let stdout = std::io::stdout();
    let mut out = Lines { out: BufWriter::new(stdout.lock()), format, written: 0 };
    let asked_unit = unit.clone();
    match source {
        jobs::show::Source::Stored { .. } => {
            let query = ShowQuery { unit, status, today };
            out.begin()?;
            app.state.each_deadline(&query, |d| out.line(&line(&d, today))).await?;
        }
        jobs::show::Source::Register { .. } => {
            out.begin()?;
            let warning = jobs::show::each_deadline_now(app, at, unit.as_deref(), jobs::show::Order::Listing, |d| {
                let l = line(&d, today);
                if status.is_none_or(|s| l.status == s) {
                    out.line(&l)?;
                }
                Ok::<(), CommandError>(())
            })
            .await?;
            if let Some(warning) = &warning {
                warn_user!("warning: {warning}");
            }
        }
    }
    let written = out.written;
    out.end()?;
    match asked_unit {
        Some(unit) if written == 0 => check_unit_known(app, &unit).await,
        _ => Ok(()),
    }
}

/// `--unit` with nothing listed: a code that neither the configuration nor any stored deadline
/// knows is a usage error (exit 2) that says so, with the known codes that differ only in case;
/// a known unit with nothing to list is said on standard error.
async fn check_unit_known(app: &App, unit: &str) -> Result<(), CommandError> {
    let mut known: Vec<String> =
        app.state.units_with_deadlines().await?.iter().map(|u| u.as_str().to_string()).collect();
    known.extend(app.settings.units.units.keys().map(|u| u.as_str().to_string()));
    known.sort();
    known.dedup();
    if known.iter().any(|k| k == unit) {
        warn_user!("no deadline of unit {unit} matches");
        return Ok(());
    }
    let like: Vec<&str> = known.iter().filter(|k| k.eq_ignore_ascii_case(unit)).map(String::as_str).collect();
    let hint = if like.is_empty() {
        let shown: Vec<&str> = known.iter().take(20).map(String::as_str).collect();
        if shown.is_empty() {
            String::from("no unit is known yet (no poll has stored a deadline)")
        } else {
            format!("known units: {}{}", shown.join(", "), if known.len() > 20 { ", …" } else { "" })
        }
    } else {
        format!("did you mean {}?", like.join(" or "))
    };
    Err(CommandError::Usage(format!("--unit {unit}: unknown unit (unit codes are case-sensitive); {hint}")))
}

/// `deadlines` output, written as each line comes: a table, or a JSON array one object a line.
struct Lines<W: Write> {
    out: W,
    format: OutputFormat,
    written: u64,
}

/// An error writing the output: a closed pipe ends it quietly ([`CommandError::OutputClosed`]).
pub fn output_error(e: std::io::Error) -> CommandError {
    if terminal::is_closed_pipe(&e) {
        CommandError::OutputClosed
    } else {
        CommandError::Runtime(format!("cannot write the output: {e}"))
    }
}

impl<W: Write> Lines<W> {
    fn begin(&mut self) -> Result<(), CommandError> {
        match self.format {
            OutputFormat::Json => writeln!(self.out, "["),
            OutputFormat::Table => writeln!(
                self.out,
                "{:<18} {:<9} {:<13} {:<10} {:<10} {:<10} {:<10} {:<9} {:>9}",
                "CASE_REF", "UNIT", "KIND", "START", "NOMINAL", "DUE", "CLOSED", "STATUS", "DAYS_LEFT"
            ),
        }
        .map_err(output_error)
    }

    fn line(&mut self, l: &DeadlineLine<'_>) -> Result<(), CommandError> {
        match self.format {
            OutputFormat::Json => {
                let json = serde_json::to_string(l).map_err(|e| CommandError::Runtime(e.to_string()))?;
                writeln!(self.out, "{}{json}", if self.written > 0 { "," } else { "" })
            }
            OutputFormat::Table => writeln!(
                self.out,
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
            ),
        }
        .map_err(output_error)?;
        self.written += 1;
        Ok(())
    }

    fn end(mut self) -> Result<(), CommandError> {
        if self.format == OutputFormat::Json {
            writeln!(self.out, "]").map_err(output_error)?;
        }
        self.out.flush().map_err(output_error)
    }
}

/// Prints the digests that would be sent on `today` (all, or only `manager`'s): read as the
/// digest job reads them, from the state as of the last poll; with `fresh`, or before any poll,
/// built from the register computed as `deadlines --fresh` computes it. Nothing is written.
pub async fn digest_dry_run(
    settings: Arc<Settings>,
    today: Option<NaiveDate>,
    manager: Option<&str>,
    fresh: bool,
) -> Result<(), CommandError> {
    let manager = manager
        .map(|m| EmailAddress::parse(m).map_err(|e| CommandError::Usage(format!("--manager {m:?}: {e}"))))
        .transpose()?;
    let now = Utc::now();
    let at = Moment::from_option(today, now, settings.timezone);
    let app = App::open_for_reading(settings, now).await?;
    let preview = async {
        let source = jobs::show::Source::choose(&app, fresh).await?;
        if let Some(note) = source.note() {
            warn_user!("{note}");
        }
        jobs::show::digest_preview(&app, at, manager.as_ref(), source).await
    }
    .await;
    app.close_connections().await;
    let preview = preview?;
    if let Some(warning) = &preview.warning {
        warn_user!("warning: {warning}");
    }
    terminal::print_text(&preview.text).map_err(output_error)?;
    Ok(())
}

fn line(d: &StoredDeadline, today: NaiveDate) -> DeadlineLine<'_> {
    DeadlineLine {
        case_ref: d.case_ref.as_str(),
        unit: d.unit.as_str(),
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
    let today = Moment::from_option(today, Utc::now(), settings.timezone).today;
    let options = DemoOptions { cases, seed, today, broken };
    let written =
        demo::write_demo_cases(&settings.register.url, &settings.register.view, demo::generate(&options)).await?;
    let placements = demo::write_demo_placements(
        &settings.register.url,
        &settings.register.placements_view,
        &demo::generate_placements(&options),
    )
    .await?;
    say!(
        "wrote {written} demo case(s) ({broken} deliberately broken) to {} view {}, and {placements} placement(s) to view {}",
        settings.register.url.redacted(),
        settings.register.view,
        settings.register.placements_view
    );
    Ok(())
}

/// Explains, step by step, how each deadline of one case was computed and where its ladder
/// stands; nothing is written.
pub async fn explain(settings: Arc<Settings>, case_ref: &str, today: Option<NaiveDate>) -> Result<(), CommandError> {
    let now = Utc::now();
    let today = Moment::from_option(today, now, settings.timezone).today;
    let app = App::open_for_reading(settings.clone(), now).await?;
    let found = async {
        let register = app.register().await?;
        let raw = register.row(case_ref).await?;
        // The other investigations of the same child, for the chains; the key stays in here.
        let key = raw.as_ref().and_then(|raw| register::validate(raw).ok()).and_then(|case| case.child_key);
        let same_child = match key {
            Some(key) => register.rows_of_child(&key).await?,
            None => Vec::new(),
        };
        let outbox = jobs::show::outbox_of_case(&app, case_ref).await?;
        // A placement's reference (contract §1b): the same namespace as the cases'.
        let placement = match raw {
            Some(_) => None,
            None => crate::sync::placements::placement_as_computed(&register, &settings, case_ref)
                .await
                .map_err(JobError::from)?,
        };
        // A placement's stored cycles of its recurring clocks (contract §2): explain lists them.
        let cycles = match placement {
            Some(_) => {
                let filter =
                    crate::state::DeadlineFilter { case_ref: Some(case_ref.to_string()), ..Default::default() };
                let stored = app.state.deadlines(&filter).await.map_err(JobError::from)?;
                stored.into_iter().filter(|d| d.cycle_start.is_some()).collect()
            }
            None => Vec::new(),
        };
        Ok::<_, CommandError>((raw, same_child, outbox, placement, cycles))
    }
    .await;
    app.close_connections().await;
    let (raw, same_child, outbox, placement, cycles) = found?;
    // The cycle each recurring clock runs in: its recorded steps are that cycle's alone.
    let running = crate::sync::placements::running_cycles(cycles.iter().filter_map(StoredDeadline::cycle));
    // The steps recorded for a kind; a notice sent one role up (key + "/up") shows with the step
    // it stands in for.
    let recorded = |kind| {
        let mut steps: Vec<jobs::show::RecordedStep> = Vec::new();
        let cycle = running.iter().find(|((_, k), _)| *k == kind).map(|(_, (cycle, _))| *cycle);
        let own_cycle = |r: &&crate::state::OutboxRow| {
            crate::notice::cycle_of_key(&r.notice_key, case_ref, kind) == cycle || !kind.is_recurring()
        };
        for r in outbox.iter().filter(|r| r.kind == Some(kind)).filter(own_cycle) {
            let Some(step) = r.step else { continue };
            match steps.iter_mut().find(|s| s.step == step) {
                Some(s) if r.notice_key.parse::<crate::domain::OutboxKey>().is_ok_and(|k| k.is_up()) => {
                    s.up = Some(r.state)
                }
                _ => steps.push(jobs::show::RecordedStep { step, state: r.state, up: None }),
            }
        }
        steps
    };
    let Some(raw) = raw else {
        return match placement {
            Some(Ok((row, context))) => {
                let closed: Vec<crate::rules::Deadline> = cycles
                    .iter()
                    .filter(|d| d.deadline.is_closed() && d.deadline.kind.is_recurring())
                    .map(|d| d.deadline.clone())
                    .collect();
                let text = jobs::show::explain_placement_text(&settings, &row, &context, today, &closed, recorded);
                terminal::print_text(&text).map_err(output_error)
            }
            Some(Err(r)) => Err(CommandError::Runtime(format!("the placements row is skipped by every poll: {r}"))),
            None => Err(CommandError::Usage(format!(
                "case {case_ref} is not in the register view {} (nor in a placements view)",
                settings.register.view
            ))),
        };
    };
    let case = register::validate(&raw)
        .map_err(|r| CommandError::Runtime(format!("the register row is skipped by every poll: {r}")))?;
    let others: Vec<register::CaseRow> = same_child.iter().filter_map(|raw| register::validate(raw).ok()).collect();
    let chains = jobs::show::chain_notes(&case, &others, settings.rules.chain_window_days);
    let investigations = crate::sync::others_of(&case, &crate::sync::investigations_by_child(others.iter()));
    let text = jobs::show::explain_text(&settings, &case, today, &investigations, &chains, recorded);
    terminal::print_text(&text).map_err(output_error)?;
    Ok(())
}

/// `outbox list`: the newest outbox rows (of one state), with key, state, attempts and the last
/// error; nothing personal (keys hold case references and role addresses only), nothing written.
pub async fn outbox_list(settings: Arc<Settings>, state: Option<OutboxState>, limit: u32) -> Result<(), CommandError> {
    let app = App::open_for_reading(settings, Utc::now()).await?;
    let rows = app.state.outbox_listing(state, i64::from(limit)).await;
    app.close_connections().await;
    let rows = rows?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io = output_error;
    writeln!(out, "{:<60} {:<9} {:>8} {:<20} {:<20} LAST_ERROR", "KEY", "STATE", "ATTEMPTS", "CREATED", "NEXT_ATTEMPT")
        .map_err(io)?;
    for row in &rows {
        // A step not sent says why, where a failed one gives its last error.
        let reason = match row.state {
            OutboxState::Skipped => {
                "skipped: a later step was reached at once, or first seen past the horizon (explain CASE)"
            }
            OutboxState::Cancelled => "cancelled: the deadline closed or left the register first",
            _ => "-",
        };
        let error: String =
            row.last_error.as_deref().unwrap_or(reason).chars().filter(|c| !c.is_control()).take(100).collect();
        writeln!(
            out,
            "{:<60} {:<9} {:>8} {:<20} {:<20} {error}",
            row.notice_key,
            row.state.as_str(),
            row.attempts,
            row.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
            row.next_attempt_at.format("%Y-%m-%dT%H:%M:%SZ"),
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)?;
    if rows.is_empty() {
        warn_user!("no outbox rows{}", state.map(|s| format!(" in state {}", s.as_str())).unwrap_or_default());
    }
    Ok(())
}

/// `outbox show KEY`: one outbox row — state, attempts, the recipients and each one's outcome
/// with the server's answer, and the mail as it would be rendered now. Nothing is written.
pub async fn outbox_show(settings: Arc<Settings>, key: &str) -> Result<(), CommandError> {
    let now = Utc::now();
    let app = App::open_for_reading(settings.clone(), now).await?;
    let row = app.state.outbox_row(key).await;
    app.close_connections().await;
    let Some(row) = row? else {
        return Err(CommandError::Usage(format!("no outbox row has the key {key} (see outbox list)")));
    };
    let today = Moment::at(now, settings.timezone).today;
    let mut text = String::new();
    let stamp = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    text.push_str(&format!("key:          {}\n", row.notice_key));
    text.push_str(&format!("state:        {}\n", row.state.as_str()));
    text.push_str(&format!("attempts:     {}\n", row.attempts));
    text.push_str(&format!("created:      {}\n", stamp(row.created_at)));
    text.push_str(&format!("not before:   {}\n", stamp(row.not_before)));
    text.push_str(&format!("message-id:   {}\n", row.message_id));
    text.push_str(&format!("last error:   {}\n", row.last_error.as_deref().unwrap_or("-")));
    text.push_str("recipients:\n");
    if row.recipients.is_empty() {
        text.push_str("  (none: a skipped step is recorded, never sent)\n");
    }
    for r in &row.recipients {
        let outcome = match row.deliveries.iter().find(|d| d.address == r.address) {
            Some(d) => format!(
                "{} at {}{}",
                match d.outcome {
                    crate::state::DeliveryOutcome::Delivered => "delivered",
                    crate::state::DeliveryOutcome::Refused => "refused",
                },
                stamp(d.at),
                d.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
            None => "not yet settled".to_string(),
        };
        text.push_str(&format!("  {} ({}): {outcome}\n", r.address, r.role.as_str()));
    }
    for r in &row.replaces {
        text.push_str(&format!("  instead of {} ({})\n", r.address, r.role.as_str()));
    }
    let message = match &row.payload {
        crate::state::OutboxPayload::Notice(Some(payload)) => Some(mail::compose::compose_notice_instead_of(
            &settings,
            payload,
            &row.recipients,
            &row.replaces,
            today,
            &row.message_id,
        )),
        crate::state::OutboxPayload::Digest(digest) => {
            Some(mail::compose::compose_digest(&settings, digest, &row.message_id))
        }
        _ => None,
    };
    match message {
        Some(Ok(message)) => {
            text.push_str(&format!("\nthe mail, rendered as of {today}:\n\n"));
            text.push_str(&String::from_utf8_lossy(&message.formatted()));
        }
        Some(Err(e)) => text.push_str(&format!("\nthe mail cannot be rendered: {e}\n")),
        None => text.push_str("\nno mail: this row is a record, not a message\n"),
    }
    terminal::print_text(&text).map_err(output_error)
}

/// `outbox retry`: puts dead rows (the given keys, or every dead row) back to pending, once
/// each, for the next dispatch; a key that names no outbox row is a usage error (exit 2).
pub async fn outbox_retry(settings: Arc<Settings>, keys: Vec<String>, all_dead: bool) -> Result<(), CommandError> {
    let now = Utc::now();
    let app = App::start(settings, format!("outbox-retry-{}", std::process::id()), now).await?;
    let result = async {
        let keys = if all_dead { app.state.dead_keys().await? } else { keys };
        let mut unknown = Vec::new();
        let mut requeued = 0;
        for key in &keys {
            match app.state.retry_dead(key, now).await? {
                RetryOutcome::Requeued => {
                    requeued += 1;
                    say!("{key}: pending again");
                }
                RetryOutcome::NotDead(state) => say!("{key}: left as it is ({}, not dead)", state.as_str()),
                RetryOutcome::Unknown => unknown.push(key.as_str()),
            }
        }
        say!("{requeued} dead row(s) put back to pending; the daemon sends them at its next dispatch");
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(CommandError::Usage(format!("no outbox row has the key(s): {}", unknown.join(", "))))
        }
    }
    .await;
    app.close().await;
    result
}

/// How `report compliance` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
    Html,
}

/// The arguments of `report compliance`.
#[derive(Debug, Clone)]
pub struct ReportArgs {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub today: Option<NaiveDate>,
    pub by: Vec<report::Dimension>,
    pub format: ReportFormat,
    /// The CSV flavour (`--csv-dialect`).
    pub csv_dialect: report::render::CsvDialect,
    /// Written there instead of standard output.
    pub output: Option<std::path::PathBuf>,
    /// False with `--no-suppress` (internal use; the output says so).
    pub suppress: bool,
    /// `--lang`; else `mail.language`.
    pub language: Option<Language>,
}

/// `report compliance`: the share of deadlines met in a period, by group, from the stored
/// deadlines (as of the last poll), aggregated in the state database. Nothing is written to it.
pub async fn report_compliance(settings: Arc<Settings>, args: ReportArgs) -> Result<(), CommandError> {
    if args.from > args.to {
        return Err(CommandError::Usage(format!("--from {} is after --to {}", args.from, args.to)));
    }
    let now = Utc::now();
    let at = Moment::from_option(args.today, now, settings.timezone);
    let request = report::Request {
        period: report::Period { from: args.from, to: args.to },
        today: at.today,
        by: args.by.clone(),
        min_group: settings.report.min_group,
        suppress: args.suppress,
        chain_window_days: settings.rules.chain_window_days,
    };
    let app = App::open_for_reading(settings.clone(), now).await?;
    let counted = report::compliance(&app.state, &request).await;
    app.close_connections().await;
    let report = counted?;
    let words = report::render::Words::of(&settings, args.language.unwrap_or(settings.mail.language));
    let text = match args.format {
        ReportFormat::Table => report::render::table(&report, &words),
        ReportFormat::Csv => report::render::csv(&report, args.csv_dialect)
            .map_err(|e| CommandError::Runtime(format!("cannot write CSV: {e}")))?,
        ReportFormat::Json => {
            let mut json = report::render::json(&report).map_err(|e| CommandError::Runtime(e.to_string()))?;
            json.push('\n');
            json
        }
        ReportFormat::Html => {
            let names = settings
                .units
                .units
                .iter()
                .filter_map(|(code, route)| Some((code.as_str().to_string(), route.name.clone()?)))
                .collect();
            report::html::page(&report, &words, &names)
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| CommandError::Runtime(format!("cannot write {}: {e}", path.display())))?,
        None => {
            terminal::print_text(&text).map_err(output_error)?;
        }
    }
    if !args.suppress {
        warn_user!("warning: small groups are not suppressed (--no-suppress): for internal use only");
    }
    Ok(())
}
