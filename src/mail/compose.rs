//! Rendering notices and daily digests into e-mails: subject, a text and an HTML part, and the
//! headers. One template environment serves both, with one HTML escaping, and one base builder
//! sets the headers every mail carries.
//!
//! The wording lives in template files (`templates/notice.{sv,en}.{subject,txt,html}.j2`,
//! `templates/digest.{sv,en}.{txt,html}.j2`, `templates/explanation.{sv,en}.txt.j2`),
//! compiled into the binary and replaceable, file by file, by same-named files in
//! `mail.templates_dir`, so that a municipality can adapt the text without a new build. The law
//! is worded once, in the explanation templates: a notice carries the lines they render from the
//! deadline's [`Explanation`], and `fristvakt explain` prints the same lines
//! ([`explanation_lines`]). The ladder step in words is computed here.
//!
//! A mail carries the case reference, unit, kind, dates, days left or overdue, the case link and
//! the role addresses it went to — nothing else from the register (contract §3).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use chrono::NaiveDate;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MessageBuilder, MultiPart};
use lettre::{Address, Message};
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Output, State, UndefinedBehavior};
use serde::Serialize;

use super::wording::{days_text, situation};
use crate::catalogue::{Catalogue, Words};
use crate::config::{Language, Settings};
use crate::digest::{self, Digest};
use crate::domain::{CaseRef, EmailAddress, UnitCode};
use crate::explanation::Explanation;
use crate::notice::{NoticePayload, Recipient};
use crate::rules::{deadlines_for, CaseDates, Kind, Role, RuleOptions};

/// A notice, digest or test mail could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// A template failed to load, parse or render; names the template, never a value.
    #[error("mail template {name}: {source}")]
    Template { name: String, source: minijinja::Error },
    #[error("the notice has no recipients")]
    NoRecipients,
    /// Deliberately without the address itself: error texts end up in logs and the outbox.
    #[error("recipient number {index} is not a usable e-mail address")]
    BadRecipient { index: usize },
    #[error("mail.from is not a usable e-mail address")]
    BadFrom,
    #[error("cannot assemble the message: {0}")]
    Build(String),
    /// A `words.LANG.toml` override cannot be used; names the file and key.
    #[error(transparent)]
    Words(#[from] crate::catalogue::WordsError),
}

/// Renders the notice of `payload` for `recipients` as it reads on `today` (the local date of
/// sending), with the stored `message_id` so that a repeat is recognisable as the same mail.
pub fn compose_notice(
    settings: &Settings,
    payload: &NoticePayload,
    recipients: &[Recipient],
    today: NaiveDate,
    message_id: &str,
) -> Result<Message, ComposeError> {
    compose_notice_instead_of(settings, payload, recipients, &[], today, message_id)
}

/// Like [`compose_notice`], for a notice sent one role up in place of `replaces`, the
/// recipients who refused it: the mail says whom it goes instead of.
pub fn compose_notice_instead_of(
    settings: &Settings,
    payload: &NoticePayload,
    recipients: &[Recipient],
    replaces: &[Recipient],
    today: NaiveDate,
    message_id: &str,
) -> Result<Message, ComposeError> {
    let rendered = render_notice(settings, payload, recipients, replaces, today)?;
    let to = recipients
        .iter()
        .enumerate()
        .map(|(index, recipient)| mailbox(recipient.address.as_str(), index))
        .collect::<Result<Vec<_>, _>>()?;
    let builder = suppress_auto_replies(base_builder(settings)?, settings.mail.language.code());
    let mut builder = filter_headers(builder, settings, payload.kind.as_str(), Some(payload.step));
    if payload.due_on < today {
        // Overdue: marked urgent for the mail programs that show it.
        builder = builder.raw_header(header("Importance", "high".into())).raw_header(header("X-Priority", "1".into()));
    }
    assemble(builder, &to, rendered, message_id).map(|m| local_date(m, settings))
}

/// Renders a manager's daily digest, with the stored `message_id`, to `digest.manager`.
pub fn compose_digest(settings: &Settings, digest: &Digest, message_id: &str) -> Result<Message, ComposeError> {
    let rendered = render_digest(settings, digest)?;
    let to = mailbox(digest.manager.as_str(), 0)?;
    let builder = suppress_auto_replies(base_builder(settings)?, settings.mail.language.code());
    assemble(filter_headers(builder, settings, "digest", None), &[to], rendered, message_id)
        .map(|m| local_date(m, settings))
}

/// The text part of a digest, exactly as the mail carries it (for `digest --dry-run`).
pub fn digest_text(settings: &Settings, digest: &Digest) -> Result<String, ComposeError> {
    let env = environment(settings);
    let name = template_name("digest", settings.mail.language, "txt");
    render(env, &name, &digest::Context::new(settings, digest))
}

/// The digest as plain text for `fristvakt digest --dry-run`: the recipient and subject, then
/// exactly the text part of the mail.
pub fn digest_preview_text(settings: &Settings, digest: &Digest) -> Result<String, ComposeError> {
    let body = digest_text(settings, digest)?;
    Ok(format!("To: {}\nSubject: {}\n\n{body}", digest.manager, digest::subject(Words::of(settings), digest)))
}

/// A short plain mail for `send-test-mail`: proves the transport works without any case data.
pub fn render_test_mail(settings: &Settings, to: &EmailAddress) -> Result<Message, ComposeError> {
    let to = mailbox(to.as_str(), 0)?;
    let words = Words::of(settings);
    let (subject, body) = (words.get("test_mail.subject"), words.get("test_mail.body"));
    suppress_auto_replies(base_builder(settings)?, settings.mail.language.code())
        .subject(subject)
        // lettre makes a unique `<uuid@hostname>` id: a test mail is never a repeat of another.
        .message_id(None)
        .to(to)
        .singlepart(lettre::message::SinglePart::plain(body.to_string()))
        .map(|m| local_date(m, settings))
        .map_err(|e| ComposeError::Build(e.to_string()))
}

/// Compiles every template (built-in or overridden) and renders a sample notice, so that a
/// broken override is found at start-up rather than at the first deadline.
pub fn check_templates(settings: &Settings) -> Result<(), ComposeError> {
    // Both languages: a report may be asked for in either (`--lang`).
    for language in [Language::Swedish, Language::English] {
        Words::load(language, settings.mail.templates_dir.as_deref())?;
        Catalogue::load(language, settings.mail.templates_dir.as_deref())?;
    }
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).ok_or(ComposeError::Build("sample date".into()));
    let sample = NoticePayload {
        case_ref: CaseRef::parse("2026-BU-0001").map_err(ComposeError::Build)?,
        unit: UnitCode::parse("X").map_err(ComposeError::Build)?,
        kind: Kind::Assessment,
        step: 0,
        start_on: day(2026, 12, 10)?,
        nominal_due_on: day(2026, 12, 24)?,
        due_on: day(2026, 12, 28)?,
        extended_to: None,
        due_reason: None,
        decided_on: day(2026, 12, 28)?,
        caseworker: Some(settings.mail.from.clone()),
        case_of: None,
    };
    let recipients =
        [Recipient { role: Role::Caseworker, address: settings.mail.from.clone(), instead_of_caseworker: false }];
    compose_notice(settings, &sample, &recipients, sample.decided_on, "<check@fristvakt.invalid>")?;
    // A manager's notice, overdue: the caseworker named, the urgent wording.
    let managers = [Recipient { role: Role::Manager, ..recipients[0].clone() }];
    let late = day(2027, 1, 4)?;
    compose_notice(
        settings,
        &NoticePayload { step: 5, ..sample.clone() },
        &managers,
        late,
        "<check@fristvakt.invalid>",
    )?;
    // Every branch of the explanation: next day, a holiday move, an extension, closed and open.
    let dates = CaseDates {
        received_on: Some(sample.start_on),
        investigation_opened_on: Some(day(2026, 3, 2)?),
        investigation_extended_to: Some(day(2026, 9, 30)?),
        investigation_closed_on: Some(day(2026, 9, 1)?),
        ..CaseDates::default()
    };
    for holiday_rule in [true, false] {
        let options = RuleOptions { holiday_rule };
        for deadline in deadlines_for(&dates, &[], options) {
            let mut open = deadline.clone();
            open.closed_on = None;
            for d in [deadline, open] {
                explanation_lines(settings, &Explanation::new(&d, sample.decided_on, options))?;
            }
        }
    }
    check_digest_templates(settings)
}

/// Compiles the digest templates of the configured language (built-in or overridden), so that a
/// broken override is found at start-up rather than at 07:00.
pub fn check_digest_templates(settings: &Settings) -> Result<(), ComposeError> {
    let env = environment(settings);
    for part in ["txt", "html"] {
        let name = template_name("digest", settings.mail.language, part);
        env.get_template(&name).map_err(|source| ComposeError::Template { name, source })?;
    }
    Ok(())
}

/// The explanation of a deadline in the configured language, one sentence a line: the lines
/// `fristvakt explain` prints and a notice mail carries.
pub fn explanation_lines(settings: &Settings, explanation: &Explanation) -> Result<Vec<String>, ComposeError> {
    let lang = settings.mail.language;
    let catalogue = Catalogue::for_settings(settings, lang);
    render_explanation(environment(settings), Words::of(settings), catalogue, lang, explanation)
}

fn render_explanation(
    env: &Environment<'static>,
    labels: &'static Words,
    words: &'static Catalogue,
    lang: Language,
    explanation: &Explanation,
) -> Result<Vec<String>, ComposeError> {
    let clock = words.clock(explanation.kind);
    let context = ExplanationContext {
        explanation,
        kind_name: &clock.name,
        rule: &clock.rule,
        start_name: words.start(explanation.start_event),
        extension: clock.extension.as_deref(),
        if_missed: clock.if_missed.as_deref(),
        status_name: labels.status(explanation.status),
        days_text: explanation.days_left.map(|left| days_text(labels, left, explanation.due_on)),
    };
    let text = render(env, &template_name("explanation", lang, "txt"), &context)?;
    Ok(text.lines().map(str::trim_end).filter(|line| !line.is_empty()).map(str::to_string).collect())
}

/// What the explanation templates may use.
#[derive(Serialize)]
struct ExplanationContext<'a> {
    explanation: &'a Explanation,
    kind_name: &'static str,
    /// The clock's law in one sentence, citing its paragraph (templates/clocks.LANG.toml).
    rule: &'static str,
    /// What started the clock, in words ("anmälan kom in").
    start_name: &'static str,
    /// What a decided extension of this clock is; none for a clock without one.
    extension: Option<&'static str>,
    /// What happens when the day is missed, for a clock whose miss ends a measure by law.
    if_missed: Option<&'static str>,
    status_name: &'static str,
    /// "7 dagar kvar till sista dagen"; none once closed.
    days_text: Option<String>,
}

/// A notice or digest rendered from the templates, before it becomes a MIME message.
pub(crate) struct Rendered {
    pub(crate) subject: String,
    pub(crate) text: String,
    pub(crate) html: String,
}

fn render_notice(
    settings: &Settings,
    payload: &NoticePayload,
    recipients: &[Recipient],
    replaces: &[Recipient],
    today: NaiveDate,
) -> Result<Rendered, ComposeError> {
    if recipients.is_empty() {
        return Err(ComposeError::NoRecipients);
    }
    let lang = settings.mail.language;
    let env = environment(settings);
    let options = RuleOptions { holiday_rule: settings.calendar.holiday_rule };
    let catalogue = Catalogue::for_settings(settings, lang);
    let explanation = render_explanation(
        env,
        Words::of(settings),
        catalogue,
        lang,
        &Explanation::new(&payload.deadline(), today, options),
    )?;
    // Made a template value once: each template given the context itself would turn it into
    // one again (a quarter of the rendering).
    let context =
        Value::from_serialize(NoticeContext::new(settings, payload, recipients, replaces, today, explanation));
    let subject = render(env, &template_name("notice", lang, "subject"), &context)?;
    // A subject is one line whatever a template does with whitespace.
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let with_subject = minijinja::context! { subject => subject.clone(), ..context };
    render_alternatives(env, "notice", lang, subject, &with_subject)
}

/// A digest's subject and both parts; the HTML escaped like a notice's (`html_formatter`).
pub(crate) fn render_digest(settings: &Settings, digest: &Digest) -> Result<Rendered, ComposeError> {
    let lang = settings.mail.language;
    let env = environment(settings);
    let context = digest::Context::new(settings, digest);
    render_alternatives(env, "digest", lang, digest::subject(Words::of(settings), digest), &context)
}

/// Renders the text and the HTML template of `family` (`notice`, `digest`) with `context`.
fn render_alternatives<S: Serialize>(
    env: &Environment<'static>,
    family: &str,
    lang: Language,
    subject: String,
    context: &S,
) -> Result<Rendered, ComposeError> {
    let text = render(env, &template_name(family, lang, "txt"), context)?;
    let html = render(env, &template_name(family, lang, "html"), context)?;
    Ok(Rendered { subject, text, html })
}

/// `notice.sv.txt.j2`, `digest.en.html.j2`, …
fn template_name(family: &str, lang: Language, part: &str) -> String {
    format!("{family}.{}.{part}.j2", lang.code())
}

/// The built-in templates, by file name.
const BUILT_IN: [(&str, &str); 14] = [
    ("notice.sv.subject.j2", include_str!("../../templates/notice.sv.subject.j2")),
    ("notice.sv.txt.j2", include_str!("../../templates/notice.sv.txt.j2")),
    ("notice.sv.html.j2", include_str!("../../templates/notice.sv.html.j2")),
    ("notice.en.subject.j2", include_str!("../../templates/notice.en.subject.j2")),
    ("notice.en.txt.j2", include_str!("../../templates/notice.en.txt.j2")),
    ("notice.en.html.j2", include_str!("../../templates/notice.en.html.j2")),
    ("digest.sv.txt.j2", include_str!("../../templates/digest.sv.txt.j2")),
    ("digest.sv.html.j2", include_str!("../../templates/digest.sv.html.j2")),
    ("digest.en.txt.j2", include_str!("../../templates/digest.en.txt.j2")),
    ("digest.en.html.j2", include_str!("../../templates/digest.en.html.j2")),
    ("explanation.sv.txt.j2", include_str!("../../templates/explanation.sv.txt.j2")),
    ("explanation.en.txt.j2", include_str!("../../templates/explanation.en.txt.j2")),
    ("explanation.sv.macros.j2", include_str!("../../templates/explanation.sv.macros.j2")),
    ("explanation.en.macros.j2", include_str!("../../templates/explanation.en.macros.j2")),
];

/// What every mail carries: From, Date and `Auto-Submitted: auto-generated` (RFC 3834), which
/// tells mail servers and clients that a program sent it, so they send no out-of-office replies.
fn base_builder(settings: &Settings) -> Result<MessageBuilder, ComposeError> {
    let from: Address = settings.mail.from.as_str().parse().map_err(|_| ComposeError::BadFrom)?;
    let name = Some(settings.mail.from_name.clone()).filter(|n| !n.is_empty());
    Ok(Message::builder()
        .from(Mailbox::new(name, from))
        .date_now()
        .raw_header(header("Auto-Submitted", "auto-generated".into())))
}

/// Sets `Date` in the configured time zone (lettre writes it in UTC), so that a reader sees the
/// local hour: `Sun, 6 Dec 2026 07:00:00 +0100`.
fn local_date(mut message: Message, settings: &Settings) -> Message {
    let date = chrono::Utc::now().with_timezone(&settings.timezone).to_rfc2822();
    message.headers_mut().insert_raw(header("Date", date));
    message
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// The headers of notices, digests and test mails that also keep Exchange's auto-responders and
/// ticket systems from answering, and name the language.
fn suppress_auto_replies(builder: MessageBuilder, lang: &str) -> MessageBuilder {
    builder
        .raw_header(header("X-Auto-Response-Suppress", "All".into()))
        .raw_header(header("Content-Language", lang.into()))
}

/// Headers for mail filters: what the mail is (`X-Fristvakt-Kind`: a clock's machine name, or
/// `digest`), the ladder step of a notice (`X-Fristvakt-Step`: `-3`, `0`, `+1`) and a
/// `List-Id` per sort of mail (RFC 2919), under the sender's domain.
fn filter_headers(builder: MessageBuilder, settings: &Settings, kind: &str, step: Option<i32>) -> MessageBuilder {
    let domain = settings.mail.from.as_str().rsplit_once('@').map(|(_, d)| d).unwrap_or("localhost");
    let (list, label) = match step {
        Some(_) => ("notices", "fristvakt notices"),
        None => ("digests", "fristvakt digests"),
    };
    let builder = builder
        .raw_header(header("X-Fristvakt-Kind", kind.to_string()))
        .raw_header(header("List-Id", format!("{label} <{list}.fristvakt.{domain}>")));
    match step {
        Some(step) => builder.raw_header(header("X-Fristvakt-Step", crate::rules::offset_label(step))),
        None => builder,
    }
}

/// Subject, the stored Message-ID, recipients, and the text and HTML alternatives.
fn assemble(
    builder: MessageBuilder,
    to: &[Mailbox],
    rendered: Rendered,
    message_id: &str,
) -> Result<Message, ComposeError> {
    let mut builder = builder.subject(rendered.subject).message_id(Some(message_id.to_string()));
    for mailbox in to {
        builder = builder.to(mailbox.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
        .map_err(|e| ComposeError::Build(e.to_string()))
}

/// Recipient number `index` as a mailbox; the error deliberately leaves the address out.
/// Whether the mail library can address a message to `address` (it refuses some addresses
/// fristvakt accepts, such as a domain label over 63 bytes): such a recipient is refused on
/// its own, and the message composed for the others.
pub fn usable_address(address: &EmailAddress) -> bool {
    address.as_str().parse::<Address>().is_ok()
}

fn mailbox(address: &str, index: usize) -> Result<Mailbox, ComposeError> {
    let address: Address = address.parse().map_err(|_| ComposeError::BadRecipient { index })?;
    Ok(Mailbox::new(None, address))
}

/// The template environment of the process: one per template source (the built-in templates
/// and `mail.templates_dir`), built on first use — by the start-up check of [`check_templates`] —
/// and kept, so that every template is loaded and compiled once.
fn environment(settings: &Settings) -> &'static Environment<'static> {
    static ENVIRONMENTS: OnceLock<Mutex<HashMap<Option<PathBuf>, &'static Environment<'static>>>> = OnceLock::new();
    let mut built = ENVIRONMENTS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(settings.mail.templates_dir.clone())
        .or_insert_with(|| Box::leak(Box::new(new_environment(settings.mail.templates_dir.clone()))))
}

fn new_environment(dir: Option<PathBuf>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    // A misspelt variable in an adapted template must fail loudly, not render as a blank.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| if name.ends_with(".html.j2") { AutoEscape::Html } else { AutoEscape::None });
    env.set_formatter(html_formatter);
    env.set_loader(move |name| {
        if let Some(dir) = &dir {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(source) => return Ok(Some(source)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("cannot read the override {}", path.display()),
                    )
                    .with_source(e))
                }
            }
        }
        Ok(BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, source)| (*source).to_string()))
    });
    env
}

/// minijinja's HTML escaping also turns every '/' into `&#x2f;`, which makes links unreadable
/// in a mail's source and trips some mail filters; escaping `& < > " '` is what HTML needs.
fn html_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), minijinja::Error> {
    match (state.auto_escape(), value.as_str()) {
        (AutoEscape::Html, Some(text)) if !value.is_safe() => {
            for c in text.chars() {
                match c {
                    '&' => out.write_str("&amp;")?,
                    '<' => out.write_str("&lt;")?,
                    '>' => out.write_str("&gt;")?,
                    '"' => out.write_str("&quot;")?,
                    '\'' => out.write_str("&#39;")?,
                    other => out.write_char(other)?,
                }
            }
            Ok(())
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn render<S: Serialize>(env: &Environment<'static>, name: &str, context: &S) -> Result<String, ComposeError> {
    let error = |source| ComposeError::Template { name: name.to_string(), source };
    env.get_template(name).map_err(error)?.render(context).map_err(error)
}

/// What the templates may use. Every field is documented in `templates/README.md`.
#[derive(Debug, Serialize)]
struct NoticeContext {
    case_ref: String,
    unit: String,
    unit_name: Option<String>,
    /// `protection`, `assessment` or `investigation`.
    kind: &'static str,
    kind_name: &'static str,
    step: i32,
    start_on: String,
    nominal_due_on: String,
    due_on: String,
    due_differs: bool,
    /// The law applied to this deadline, one sentence a line (`templates/explanation.*.txt.j2`):
    /// the rule, the start and the computation, why the last day is what it is, the status.
    explanation: Vec<String>,
    today: String,
    days_left: i64,
    days_text: String,
    /// For the subject: "sista dag 2026-12-28 (om 3 dagar)".
    situation: String,
    /// The link of the case (`mail.case_link`), or of a placement (contract §3); none when a
    /// placement has neither `mail.placement_link` nor a case.
    case_link: Option<String>,
    reason: String,
    /// Why the mail goes to someone else than the step names: a missing caseworker address,
    /// or the addresses that refused it (then the mail goes one role up).
    fallback_note: Option<String>,
    recipients: Vec<RecipientContext>,
    /// Past the legal last day: the templates style the notice as urgent.
    overdue: bool,
    /// What to do, by when, and where to record it (and a decided extension, for a clock that
    /// has one).
    todo: String,
    /// The ladder's next step after this one: its day and to whom, if there is one.
    next_step: Option<String>,
    /// The responsible caseworker, for a notice none of whose recipients is the caseworker.
    caseworker: Option<String>,
}

#[derive(Debug, Serialize)]
struct RecipientContext {
    address: String,
    role: &'static str,
    role_name: String,
    instead_of_caseworker: bool,
}

impl NoticeContext {
    fn new(
        settings: &Settings,
        p: &NoticePayload,
        recipients: &[Recipient],
        replaces: &[Recipient],
        today: NaiveDate,
        explanation: Vec<String>,
    ) -> NoticeContext {
        let lang = settings.mail.language;
        let words = Words::of(settings);
        let days_left = (p.due_on - today).num_days();
        let unit_name = settings.units.unit_name(&p.unit).map(str::to_string);
        let step_roles: Vec<Role> =
            settings.ladders.for_kind(p.kind).step(p.step).map(|s| s.roles.clone()).unwrap_or_default();
        let fell_back = recipients.iter().any(|r| r.instead_of_caseworker);
        let to_caseworker = recipients.iter().any(|r| r.role == Role::Caseworker);
        NoticeContext {
            overdue: days_left < 0,
            todo: todo_line(words, Catalogue::for_settings(settings, lang), p, days_left),
            next_step: next_step_line(words, settings, p),
            caseworker: p.caseworker.as_ref().filter(|_| !to_caseworker).map(|c| c.to_string()),
            case_ref: p.case_ref.to_string(),
            unit: p.unit.to_string(),
            unit_name,
            kind: p.kind.as_str(),
            kind_name: &Catalogue::for_settings(settings, lang).clock(p.kind).name,
            step: p.step,
            start_on: iso(p.start_on),
            nominal_due_on: iso(p.nominal_due_on),
            due_on: iso(p.due_on),
            due_differs: p.nominal_due_on != p.due_on,
            explanation,
            today: iso(today),
            days_left,
            days_text: days_text(words, days_left, p.due_on),
            situation: situation(words, days_left, p.due_on),
            case_link: if p.kind.is_placement() {
                settings.mail.placement_link_for(p.case_ref.as_str(), p.case_of.as_ref().map(CaseRef::as_str))
            } else {
                Some(settings.mail.case_link_for(p.case_ref.as_str()))
            },
            reason: reason(words, Catalogue::for_settings(settings, lang), p, &step_roles),
            fallback_note: if replaces.is_empty() {
                fell_back.then(|| words.get("notice.fallback").to_string())
            } else {
                Some(refused_note(words, replaces))
            },
            recipients: recipients
                .iter()
                .map(|r| RecipientContext {
                    address: r.address.to_string(),
                    role: r.role.as_str(),
                    role_name: match replaces.iter().map(|x| x.role).max() {
                        Some(instead_of) => instead_of_title(words, r.role, instead_of),
                        None => role_title(words, r),
                    },
                    instead_of_caseworker: r.instead_of_caseworker,
                })
                .collect(),
        }
    }
}

/// "Att göra: besluta om utredning ska inledas senast 2026-12-28 och registrera beslutet i
/// verksamhetssystemet." — the clock's action (`todo` in `templates/clocks.*.toml`, else a
/// general one), by the legal last day or, once it passed, at once; for a clock with a decided
/// extension, that such a decision is recorded too.
fn todo_line(words: &Words, catalogue: &Catalogue, p: &NoticePayload, days_left: i64) -> String {
    let clock = catalogue.clock(p.kind);
    let action = clock.todo.as_deref().unwrap_or(words.get("notice.todo_default"));
    let mut line = if days_left < 0 {
        words.fill("notice.todo_overdue", &[("action", &action)])
    } else {
        words.fill("notice.todo", &[("action", &action), ("due", &iso(p.due_on))])
    };
    if clock.extension.is_some() {
        line.push_str(words.get("notice.todo_extension"));
    }
    line
}

/// "Nästa steg: 2027-01-02 går ett meddelande till gruppledare och enhetschef." — the ladder's
/// next step after the notice's, unless the deadline is closed by then.
fn next_step_line(words: &Words, settings: &Settings, p: &NoticePayload) -> Option<String> {
    let deadline = p.deadline();
    let next = settings.ladders.for_kind(p.kind).steps().iter().find(|s| s.offset > p.step)?;
    let roles: Vec<String> = next.roles.iter().map(|r| words.role(*r).to_string()).collect();
    let day = iso(next.fires_on(&deadline));
    Some(words.fill("notice.next_step", &[("day", &day), ("roles", &join(&roles, words.get("notice.and")))]))
}

fn iso(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// "a, b och c".
fn join(items: &[String], and: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {and} {last}", init.join(", ")),
    }
}

/// The ladder step in words: when it fires and to whom, so that a recipient knows why this
/// mail came to them and not to someone else.
fn reason(words: &Words, catalogue: &Catalogue, p: &NoticePayload, roles: &[Role]) -> String {
    let n = i64::from(p.step.unsigned_abs());
    let roles: Vec<String> = roles.iter().map(|r| words.role(*r).to_string()).collect();
    let days = words.days(n);
    let when = match p.step {
        s if s < 0 && p.nominal_due_on != p.due_on => {
            words.fill("notice.before_nominal", &[("days", &days), ("nominal", &iso(p.nominal_due_on))])
        }
        s if s < 0 => words.fill("notice.before", &[("days", &days)]),
        0 => words.fill("notice.on_the_day", &[]),
        _ => words.fill("notice.after", &[("days", &days)]),
    };
    let kind = catalogue.clock(p.kind).name.to_lowercase();
    let mut text = words.fill("notice.reason", &[("kind", &kind), ("when", &when)]);
    if !roles.is_empty() {
        text.push_str(&words.fill("notice.reason_roles", &[("roles", &join(&roles, words.get("notice.and")))]));
    }
    text.push('.');
    text
}

/// The note of a notice sent one role up: who refused it, and that it goes up instead.
fn refused_note(words: &Words, replaces: &[Recipient]) -> String {
    let who: Vec<String> = replaces
        .iter()
        .map(|r| words.fill("notice.refused_address", &[("address", &r.address), ("role", &words.role(r.role))]))
        .collect();
    words.fill("notice.refused", &[("who", &join(&who, words.get("notice.and")))])
}

/// A recipient's role in a notice sent one role up, instead of the highest role that refused it.
fn instead_of_title(words: &Words, role: Role, instead_of: Role) -> String {
    words.fill("notice.instead_of", &[("role", &words.role(role)), ("other", &words.role(instead_of))])
}

fn role_title(words: &Words, r: &Recipient) -> String {
    if r.instead_of_caseworker {
        words.fill("notice.instead_of_caseworker", &[("role", &words.role(r.role))])
    } else {
        words.role(r.role).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn settings(lang: &str) -> Settings {
        let env = [("FRISTVAKT__MAIL__LANGUAGE".to_string(), lang.to_string())];
        let mut s = config::load_with_env(None, env).unwrap();
        s.units.units.insert(
            UnitCode::parse("BRO-BU").unwrap(),
            config::UnitRoute {
                name: Some("Bromma barn & unga".into()),
                team_leads: vec![EmailAddress::parse("gl.bromma@kommun.example").unwrap()],
                managers: vec![EmailAddress::parse("ec.bromma@kommun.example").unwrap()],
                deputy_team_leads: Vec::new(),
                deputy_managers: Vec::new(),
                away: Vec::new(),
            },
        );
        s
    }

    /// Received Thursday 2026-12-10: nominal last day julafton 2026-12-24, legal 2026-12-28.
    fn christmas_assessment(step: i32) -> NoticePayload {
        NoticePayload {
            case_ref: CaseRef::parse("2026-BU-0142").unwrap(),
            unit: UnitCode::parse("BRO-BU").unwrap(),
            kind: Kind::Assessment,
            step,
            start_on: day("2026-12-10"),
            nominal_due_on: day("2026-12-24"),
            due_on: day("2026-12-28"),
            extended_to: None,
            due_reason: None,
            decided_on: day("2026-12-21"),
            caseworker: None,
            case_of: None,
        }
    }

    fn caseworker() -> Vec<Recipient> {
        vec![Recipient {
            role: Role::Caseworker,
            address: EmailAddress::parse("anna.handlaggare@kommun.example").unwrap(),
            instead_of_caseworker: false,
        }]
    }

    fn rendered(s: &Settings, p: &NoticePayload, r: &[Recipient], today: &str) -> Rendered {
        render_notice(s, p, r, &[], day(today)).unwrap()
    }

    #[test]
    fn swedish_subjects_state_kind_reference_and_situation() {
        let s = settings("sv");
        let p = christmas_assessment(-3);
        let cases = [
            ("2026-12-25", "Förhandsbedömning 2026-BU-0142: sista dag 2026-12-28 (om 3 dagar)"),
            ("2026-12-27", "Förhandsbedömning 2026-BU-0142: sista dag 2026-12-28 (om 1 dag)"),
            ("2026-12-28", "Förhandsbedömning 2026-BU-0142: sista dag 2026-12-28 (sista dagen i dag)"),
            ("2026-12-29", "Förhandsbedömning 2026-BU-0142: sista dag 2026-12-28 (1 dag försenad)"),
            ("2026-12-31", "Förhandsbedömning 2026-BU-0142: sista dag 2026-12-28 (3 dagar försenad)"),
        ];
        for (today, expected) in cases {
            assert_eq!(rendered(&s, &p, &caseworker(), today).subject, expected);
            let m = compose_notice(&s, &p, &caseworker(), day(today), "<a@kommun.example>").unwrap();
            assert_eq!(m.headers().get_raw("Subject"), Some(expected));
        }
    }

    #[test]
    fn english_subjects_state_kind_reference_and_situation() {
        let s = settings("en");
        let p = christmas_assessment(0);
        let cases = [
            ("2026-12-25", "Preliminary assessment 2026-BU-0142: last day 2026-12-28 (in 3 days)"),
            ("2026-12-28", "Preliminary assessment 2026-BU-0142: last day 2026-12-28 (last day today)"),
            ("2026-12-29", "Preliminary assessment 2026-BU-0142: last day 2026-12-28 (1 day overdue)"),
            ("2027-01-02", "Preliminary assessment 2026-BU-0142: last day 2026-12-28 (5 days overdue)"),
        ];
        for (today, expected) in cases {
            assert_eq!(rendered(&s, &p, &caseworker(), today).subject, expected);
        }
        let text = rendered(&s, &p, &caseworker(), "2026-12-28").text;
        assert!(
            text.contains(
                "Under the Social Services Act, 20 kap. 2 § socialtjänstlagen (2025:400), the preliminary assessment must be completed within 14 days"
            ),
            "{text}"
        );
        assert!(text.contains("2026-12-24 is Christmas Eve"), "{text}");
        assert!(text.contains("today is the last day"), "{text}");
        assert!(text.contains("- anna.handlaggare@kommun.example (caseworker)"), "{text}");
    }

    #[test]
    fn explains_julafton_and_the_rule_in_words() {
        let s = settings("sv");
        let r = rendered(&s, &christmas_assessment(-3), &caseworker(), "2026-12-21");
        for body in [&r.text, &r.html] {
            assert!(
                body.contains(
                    "2026-12-24 är julafton, 2026-12-25 är juldagen, 2026-12-26 är annandag jul och 2026-12-27 är en \
                     söndag; enligt lagen (1930:173) om beräkning av lagstadgad tid flyttas sista dagen till 2026-12-28."
                ),
                "{body}"
            );
            assert!(body.contains("ska förhandsbedömningen vara klar inom 14 dagar från att anmälan kom in"), "{body}");
            // The paragraph of the law in force (2025:400), never the old law's numbering.
            assert!(body.contains("20 kap. 2 § socialtjänstlagen (2025:400)"), "{body}");
            assert!(!body.contains("11 kap."), "the old law's paragraphs: {body}");
        }
        let text = &r.text;
        assert!(text.contains("Sista dag enligt beräkningen: 2026-12-24"), "{text}");
        assert!(text.contains("Sista dag som gäller:         2026-12-28"), "{text}");
        assert!(text.contains("Läget 2026-12-21: 7 dagar kvar till sista dagen"), "{text}");
        assert!(
            text.contains("3 dagar före sista dagen (påminnelser räknas från 2026-12-24) till handläggare."),
            "{text}"
        );
        assert!(text.contains("Enhet:      BRO-BU – Bromma barn & unga"), "{text}");
        assert!(text.contains("Öppna ärendet: https://register.kommun.example/case/2026-BU-0142"), "{text}");
        assert!(text.contains("- anna.handlaggare@kommun.example (handläggare)"), "{text}");
    }

    #[test]
    fn a_words_override_changes_the_notice_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("words.sv.toml"), "[role]\ncaseworker = \"socialsekreterare\"\n").unwrap();
        let mut s = settings("sv");
        s.mail.templates_dir = Some(dir.path().to_path_buf());
        check_templates(&s).unwrap();
        let text = rendered(&s, &christmas_assessment(-3), &caseworker(), "2026-12-21").text;
        assert!(text.contains("- anna.handlaggare@kommun.example (socialsekreterare)"), "{text}");
        assert!(
            text.contains("3 dagar före sista dagen (påminnelser räknas från 2026-12-24) till socialsekreterare."),
            "{text}"
        );
        assert!(text.contains("Läget 2026-12-21: 7 dagar kvar till sista dagen"), "{text}");
    }

    #[test]
    fn a_single_moved_day_reads_like_the_law() {
        let s = settings("sv");
        let mut p = christmas_assessment(0);
        // Received Saturday 2026-11-14: nominal Saturday 2026-11-28, legal Monday 2026-11-30.
        p.start_on = day("2026-11-14");
        p.nominal_due_on = day("2026-11-28");
        p.due_on = day("2026-11-30");
        let text = rendered(&s, &p, &caseworker(), "2026-11-30").text;
        assert!(
            text.contains(
                "2026-11-28 är en lördag och 2026-11-29 är en söndag; enligt lagen (1930:173) om beräkning av \
                 lagstadgad tid flyttas sista dagen till 2026-11-30."
            ),
            "{text}"
        );
        assert!(text.contains("på sista dagen till handläggare."), "{text}");
        // Same last day: nothing to explain.
        p.nominal_due_on = day("2026-11-30");
        let text = rendered(&s, &p, &caseworker(), "2026-11-30").text;
        assert!(text.contains("Sista dag:  2026-11-30"), "{text}");
        assert!(!text.contains("1930:173"), "{text}");
    }

    #[test]
    fn a_notice_sent_one_role_up_says_whom_it_is_instead_of() {
        let p = christmas_assessment(1);
        let lead = |instead| Recipient {
            role: Role::TeamLead,
            address: EmailAddress::parse("gl.bromma@kommun.example").unwrap(),
            instead_of_caseworker: instead,
        };
        let manager = Recipient {
            role: Role::Manager,
            address: EmailAddress::parse("ec.bromma@kommun.example").unwrap(),
            instead_of_caseworker: false,
        };
        let caseworker = caseworker();
        let sv = render_notice(&settings("sv"), &p, &[lead(false)], &caseworker, day("2026-12-29")).unwrap();
        assert!(sv.text.contains("- gl.bromma@kommun.example (gruppledare, i stället för handläggare)"), "{}", sv.text);
        assert!(
            sv.text
                .contains("E-postservern tog inte emot meddelandet till anna.handlaggare@kommun.example (handläggare)"),
            "{}",
            sv.text
        );
        // A team lead standing in for a caseworker refused too: the manager, instead of the team lead.
        let en = render_notice(&settings("en"), &p, &[manager], &[lead(true)], day("2026-12-29")).unwrap();
        assert!(en.text.contains("- ec.bromma@kommun.example (manager, instead of the team lead)"), "{}", en.text);
        assert!(
            en.text.contains("The mail server refused this message for gl.bromma@kommun.example (team lead)"),
            "{}",
            en.text
        );
        assert!(!en.text.contains("holds no valid e-mail address"), "{}", en.text);
    }

    #[test]
    fn extension_and_fallback_are_explained() {
        let s = settings("sv");
        let mut p = christmas_assessment(1);
        p.kind = Kind::Investigation;
        p.extended_to = Some(day("2027-01-29"));
        p.due_on = day("2027-01-29");
        let recipients = vec![Recipient {
            role: Role::TeamLead,
            address: EmailAddress::parse("gl.bromma@kommun.example").unwrap(),
            instead_of_caseworker: true,
        }];
        let r = rendered(&s, &p, &recipients, "2027-02-01");
        let text = &r.text;
        assert_eq!(r.subject, "Utredning 2026-BU-0142: sista dag 2027-01-29 (3 dagar försenad)");
        assert!(text.contains("förlänga utredningen (särskilda skäl); sista dagen är därför 2027-01-29"), "{text}");
        assert!(text.contains("3 dagar försenad – sista dagen var 2027-01-29"), "{text}");
        assert!(text.contains("saknar en giltig e-postadress till ärendets handläggare"), "{text}");
        assert!(text.contains("- gl.bromma@kommun.example (gruppledare, i stället för handläggare)"), "{text}");
        assert!(text.contains("1 dag efter sista dagen till gruppledare."), "{text}");
        assert!(!text.contains("synnerliga"), "{text}");
    }

    #[test]
    fn headers_carry_the_stored_message_id_and_suppress_auto_replies() {
        let s = settings("sv");
        let m = compose_notice(
            &s,
            &christmas_assessment(-3),
            &caseworker(),
            day("2026-12-21"),
            "<abc.fristvakt@kommun.example>",
        )
        .unwrap();
        let h = m.headers();
        assert_eq!(h.get_raw("Message-ID"), Some("<abc.fristvakt@kommun.example>"));
        assert_eq!(h.get_raw("Auto-Submitted"), Some("auto-generated"));
        assert_eq!(h.get_raw("X-Auto-Response-Suppress"), Some("All"));
        assert_eq!(h.get_raw("From"), Some("fristvakt <fristvakt@kommun.example>"));
        assert_eq!(h.get_raw("To"), Some("anna.handlaggare@kommun.example"));
        assert_eq!(h.get_raw("Content-Language"), Some("sv"));
        // For mail filters.
        assert_eq!(h.get_raw("X-Fristvakt-Kind"), Some("assessment"));
        assert_eq!(h.get_raw("X-Fristvakt-Step"), Some("-3"));
        assert_eq!(h.get_raw("List-Id"), Some("fristvakt notices <notices.fristvakt.kommun.example>"));
        // Not overdue: not marked urgent.
        assert_eq!(h.get_raw("Importance"), None);
        // The local time of Stockholm: +0100 in winter, +0200 in summer.
        let date = h.get_raw("Date").unwrap();
        assert!(date.ends_with("+0100") || date.ends_with("+0200"), "{date}");
        assert!(chrono::DateTime::parse_from_rfc2822(date).is_ok(), "{date}");
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");

        // Overdue, to the manager only: urgent, the caseworker named, what to do at once.
        let mut late = christmas_assessment(5);
        late.caseworker = Some(EmailAddress::parse("anna.handlaggare@kommun.example").unwrap());
        let manager = [Recipient {
            role: Role::Manager,
            address: EmailAddress::parse("ec.bromma@kommun.example").unwrap(),
            instead_of_caseworker: false,
        }];
        let m = compose_notice(&s, &late, &manager, day("2027-01-04"), "<late.fristvakt@kommun.example>").unwrap();
        assert_eq!(m.headers().get_raw("Importance"), Some("high"));
        assert_eq!(m.headers().get_raw("X-Fristvakt-Step"), Some("+5"));
        let r = rendered(&s, &late, &manager, "2027-01-04");
        assert!(r.text.contains("BRÅDSKANDE: fristen har gått ut."), "{}", r.text);
        assert!(r.text.contains("Ansvarig handläggare: anna.handlaggare@kommun.example"), "{}", r.text);
        assert!(r.text.contains("Att göra: fristen har gått ut – besluta om utredning ska inledas"), "{}", r.text);
        assert!(r.html.contains("#b00020") && r.html.contains("BRÅDSKANDE"), "{}", r.html);
        // The caseworker's own notice names no caseworker line (the recipients say it), and
        // tells the next step of the ladder.
        let r = rendered(&s, &late, &caseworker(), "2026-12-25");
        assert!(!r.text.contains("Ansvarig handläggare") && !r.html.contains("#b00020"), "{}", r.text);
        assert!(
            r.text.contains("Att göra: besluta om utredning ska inledas eller inte senast 2026-12-28"),
            "{}",
            r.text
        );
        let r = rendered(&s, &christmas_assessment(-3), &caseworker(), "2026-12-25");
        assert!(r.text.contains("Nästa steg: 2026-12-28 går ett meddelande till handläggare"), "{}", r.text);

        // Digests carry the same automated-mail headers.
        let digest = crate::digest::tests::sample_digest(&s);
        let m = compose_digest(&s, &digest, "<d.fristvakt@kommun.example>").unwrap();
        let h = m.headers();
        for (name, value) in [
            ("X-Auto-Response-Suppress", "All"),
            ("Content-Language", "sv"),
            ("Auto-Submitted", "auto-generated"),
            ("X-Fristvakt-Kind", "digest"),
            ("List-Id", "fristvakt digests <digests.fristvakt.kommun.example>"),
        ] {
            assert_eq!(h.get_raw(name), Some(value), "{name}");
        }
    }

    #[test]
    fn html_escapes_values_and_is_well_formed() {
        let s = settings("sv");
        let mut p = christmas_assessment(0);
        p.case_ref = CaseRef::parse("2026<b>&\"x\"").unwrap();
        let r = rendered(&s, &p, &caseworker(), "2026-12-28");
        assert!(r.html.contains("2026&lt;b&gt;&amp;&quot;x&quot;"), "{}", r.html);
        assert!(!r.html.contains("2026<b>"), "{}", r.html);
        // The unit name from configuration is escaped too.
        assert!(r.html.contains("Bromma barn &amp; unga"), "{}", r.html);
        // Links stay readable: '/' needs no escaping in HTML.
        assert!(r.html.contains("href=\"https://register.kommun.example/case/2026%3Cb%3E%26%22x%22\""), "{}", r.html);
        // The text part is not HTML: it shows the reference as it is.
        assert!(r.text.contains("2026<b>&\"x\""), "{}", r.text);
        assert_balanced(&r.html);
        for lang in ["sv", "en"] {
            let s = settings(lang);
            for step in [-3, 0, 1, 5] {
                assert_balanced(&rendered(&s, &christmas_assessment(step), &caseworker(), "2026-12-30").html);
            }
        }
    }

    #[test]
    fn an_override_replaces_the_built_in_and_a_broken_one_names_the_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notice.sv.txt.j2"), "{{ case_ref }} {{ child_name }}").unwrap();
        let mut s = settings("sv");
        s.mail.templates_dir = Some(dir.path().to_path_buf());
        let err = compose_notice(&s, &christmas_assessment(0), &caseworker(), day("2026-12-28"), "<a@k.example>")
            .unwrap_err();
        assert!(err.to_string().starts_with("mail template notice.sv.txt.j2"), "{err}");
        assert!(check_templates(&s).is_err());
        // Templates are loaded once per process: a corrected override takes effect at the next
        // start, here a directory not loaded before.
        let fixed = tempfile::tempdir().unwrap();
        std::fs::write(fixed.path().join("notice.sv.txt.j2"), "Eget: {{ case_ref }}\n").unwrap();
        s.mail.templates_dir = Some(fixed.path().to_path_buf());
        assert_eq!(rendered(&s, &christmas_assessment(0), &caseworker(), "2026-12-28").text, "Eget: 2026-BU-0142\n");
        assert!(check_templates(&s).is_ok());
        assert!(check_templates(&settings("en")).is_ok());
    }

    #[test]
    fn no_recipients_is_an_error() {
        let s = settings("sv");
        let err = compose_notice(&s, &christmas_assessment(0), &[], day("2026-12-28"), "<a@k.example>").unwrap_err();
        assert!(matches!(err, ComposeError::NoRecipients));
        // A checked address that the mail library still refuses: a domain label over 63 characters.
        let address = EmailAddress::parse(&format!("not-an-address@{}.example", "a".repeat(64))).unwrap();
        let bad = [Recipient { role: Role::Manager, address, instead_of_caseworker: false }];
        let err = compose_notice(&s, &christmas_assessment(0), &bad, day("2026-12-28"), "<a@k.example>").unwrap_err();
        assert!(!err.to_string().contains("not-an-address"), "{err}");
    }

    #[test]
    fn test_mail_has_no_case_data() {
        let s = settings("sv");
        let to = EmailAddress::parse("drift@kommun.example").unwrap();
        let m = render_test_mail(&s, &to).unwrap();
        assert_eq!(m.headers().get_raw("To"), Some("drift@kommun.example"));
        assert_eq!(m.headers().get_raw("Auto-Submitted"), Some("auto-generated"));
        assert!(m.headers().get_raw("Message-ID").is_some());
    }

    /// The lines `fristvakt explain` prints under the heading of `kind`, without their indent
    /// and without the ladder steps.
    fn explain_lines(s: &Settings, case: &crate::register::CaseRow, kind: Kind, today: NaiveDate) -> Vec<String> {
        let text = crate::jobs::show::explain_text(s, case, today, &[], &[], |_| Vec::new());
        let heading = format!(
            "{} ({}, {})",
            crate::catalogue::kind_name(s.mail.language, kind),
            kind.as_str(),
            kind.clock().citation
        );
        let mut lines = text.lines().skip_while(|line| *line != heading).skip(1);
        let section: Vec<&str> = lines.by_ref().take_while(|line| !line.is_empty()).collect();
        assert!(!section.is_empty(), "no {heading:?} in:\n{text}");
        section
            .iter()
            .filter(|line| !line.starts_with("  Steg ") && !line.starts_with("  Step "))
            .map(|line| line.strip_prefix("  ").unwrap_or_else(|| panic!("{line:?} in:\n{text}")).to_string())
            .collect()
    }

    fn escape_html(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    }

    /// `fristvakt explain` and the notice mail explain the same deadline in the same lines, in
    /// Swedish and in English: the mail's text part carries exactly the lines `explain` prints,
    /// as one block, and its HTML part each of them as a paragraph.
    #[test]
    fn explain_and_the_notice_mail_give_the_same_explanation() {
        use crate::domain::CaseRef;
        use crate::register::CaseRow;
        use crate::rules::{deadlines_for, CaseDates};

        let case = |received: Option<&str>, opened: Option<&str>, extended: Option<&str>| CaseRow {
            case_ref: CaseRef::parse("2025-BU-0042").unwrap(),
            unit: UnitCode::parse("BRO-BU").unwrap(),
            caseworker: Some(EmailAddress::parse("anna.handlaggare@kommun.example").unwrap()),
            caseworker_invalid: false,
            child_sex: None,
            child_key: None,
            dates: CaseDates {
                received_on: received.map(day),
                investigation_opened_on: opened.map(day),
                investigation_extended_to: extended.map(day),
                ..CaseDates::default()
            },
            updated_at: chrono::Utc::now(),
        };
        // (case, kind, today, a line the Swedish and the English explanation must hold)
        let cases = [
            // Received Wednesday 2025-12-10: the last day, julafton 2025-12-24, moves five days.
            (
                case(Some("2025-12-10"), None, None),
                Kind::Assessment,
                "2025-12-22",
                "2025-12-24 är julafton, 2025-12-25 är juldagen, 2025-12-26 är annandag jul, 2025-12-27 är en lördag \
                 och 2025-12-28 är en söndag; enligt lagen (1930:173) om beräkning av lagstadgad tid flyttas sista \
                 dagen till 2025-12-29.",
                "2025-12-24 is Christmas Eve, 2025-12-25 is Christmas Day, 2025-12-26 is Boxing Day, 2025-12-27 is \
                 a Saturday and 2025-12-28 is a Sunday; under the Act (1930:173) on the computation of statutory \
                 time limits (lagen om beräkning av lagstadgad tid), the last day moves to 2025-12-29.",
            ),
            (
                case(Some("2025-02-20"), Some("2025-03-03"), Some("2025-09-30")),
                Kind::Investigation,
                "2025-10-02",
                "Beslut har fattats om att förlänga utredningen (särskilda skäl); sista dagen är därför 2025-09-30 \
                 i stället för 2025-07-03.",
                "An extension of the investigation was decided (särskilda skäl, special reasons); the last day is \
                 therefore 2025-09-30 instead of 2025-07-03.",
            ),
            (
                case(Some("2025-03-03"), None, None),
                Kind::Protection,
                "2025-03-03",
                "Sista dag: 2025-03-04: genast, och som fristvakt räknar senast dagen efter 2025-03-03; helgregeln \
                 gäller inte (socialjouren arbetar även helger).",
                "Last day: 2025-03-04: at once, and as fristvakt counts it at the latest the day after 2025-03-03; the \
                 holiday rule does not apply (the on-call service works weekends too).",
            ),
        ];
        // With the holiday rule switched off, julafton stays the last day, and both say why.
        let off = (
            case(Some("2025-12-10"), None, None),
            Kind::Assessment,
            "2025-12-22",
            "2025-12-24 är julafton, men helgregeln i lagen (1930:173) om beräkning av lagstadgad tid är avstängd i \
             konfigurationen (calendar.holiday_rule = false); sista dagen är 2025-12-24.",
            "2025-12-24 is Christmas Eve, but the holiday rule of the Act (1930:173) on the computation of statutory \
             time limits is switched off in the configuration (calendar.holiday_rule = false); the last day is \
             2025-12-24.",
        );
        let cases = cases.into_iter().map(|c| (c, true)).chain([(off, false)]);
        for ((case, kind, today, line_sv, line_en), holiday_rule) in cases {
            let today = day(today);
            for (lang, line) in [("sv", line_sv), ("en", line_en)] {
                let mut s = settings(lang);
                s.calendar.holiday_rule = holiday_rule;
                let options = RuleOptions { holiday_rule: s.calendar.holiday_rule };
                let deadline = deadlines_for(&case.dates, &[], options).into_iter().find(|d| d.kind == kind).unwrap();
                let step = s.ladders.for_kind(kind).steps().first().unwrap().clone();
                let payload = crate::notice::payload(&case.case_ref, &case.unit, &deadline, &step, today);
                // Through the outbox's JSON, as the dispatcher reads it back.
                let payload: NoticePayload = serde_json::from_str(&serde_json::to_string(&payload).unwrap()).unwrap();
                let mail = rendered(&s, &payload, &caseworker(), &today.to_string());
                let explained = explain_lines(&s, &case, kind, today);
                assert!(explained.len() >= 4, "{explained:#?}");
                assert!(explained.iter().any(|l| l == line), "{lang} {kind}: {line:?} not in {explained:#?}");
                let block = format!("\n\n{}\n\n", explained.join("\n"));
                assert!(
                    mail.text.contains(&block),
                    "{lang} {kind}: explain says\n{block}\nthe mail says\n{}",
                    mail.text
                );
                let paragraphs: String = explained.iter().map(|l| format!("<p>{}</p>\n", escape_html(l))).collect();
                assert!(mail.html.contains(&paragraphs), "{lang} {kind}: {paragraphs}\nnot in\n{}", mail.html);
                // A notice recorded before payloads kept the due reason reads the same.
                let legacy = NoticePayload { due_reason: None, ..payload.clone() };
                assert_eq!(rendered(&s, &legacy, &caseworker(), &today.to_string()).text, mail.text);
                // Only case reference, unit, kind and dates: no caseworker, nothing from the register.
                assert!(
                    !explained.iter().any(|l| l.contains("anna.handlaggare") || l.contains("BRO-BU")),
                    "{explained:#?}"
                );
            }
        }
    }

    /// Every opened tag is closed in order; `<!…>` and self-closed `<… />` tags stand alone.
    fn assert_balanced(html: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').map(|e| start + e).unwrap_or_else(|| panic!("unclosed '<' in {html}"));
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('!') || tag.ends_with('/') {
                continue;
            }
            let name = tag.trim_start_matches('/').split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
            if let Some(closing) = tag.strip_prefix('/') {
                let _ = closing;
                let open = stack.pop().unwrap_or_else(|| panic!("</{name}> closes nothing in {html}"));
                assert_eq!(open, name, "mismatched tags in {html}");
            } else {
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed {stack:?} in {html}");
    }

    /// Digests rendered from the samples of `digest::tests`.
    mod digests {
        use crate::digest::tests::{d, open, sample_digest, settings, TODAY};
        use crate::digest::{build_digests, subject, Digest};
        use crate::mail::compose::*;
        use crate::rules::{DueReason, Kind};
        use crate::state::StoredDeadline;

        /// A row's last day, moved or extended, is explained in the words of `explain`'s templates
        /// (`explanation.LANG.macros.j2`), in the text and the HTML part; a plain one gets no note.
        #[test]
        fn moved_and_extended_last_days_say_why() {
            use crate::rules::{deadlines_for, CaseDates, RuleOptions};
            let on = RuleOptions { holiday_rule: true };
            let stored = |case_ref: &str, kind: Kind, dates: CaseDates| {
                let deadline = deadlines_for(&dates, &[], on).into_iter().find(|x| x.kind == kind).unwrap();
                let mut s = open(case_ref, "BRO-BU", kind, "2026-01-01");
                s.deadline = deadline;
                s
            };
            let received = |on: &str| CaseDates { received_on: Some(d(on)), ..CaseDates::default() };
            let julafton = stored("2025-BU-1", Kind::Assessment, received("2025-12-10"));
            let mut nyarsafton = stored("2025-BU-2", Kind::Assessment, received("2025-12-17"));
            // A reason recorded without the days passed over (older notices and digests).
            nyarsafton.deadline.due_reason = DueReason::Moved { skipped: Vec::new() };
            let extended = stored(
                "2025-BU-3",
                Kind::Investigation,
                CaseDates {
                    investigation_opened_on: Some(d("2025-08-20")),
                    investigation_extended_to: Some(d("2026-01-05")),
                    ..CaseDates::default()
                },
            );
            let plain = open("2025-BU-4", "BRO-BU", Kind::Assessment, "2026-01-02");
            let data = vec![julafton, nyarsafton, extended, plain];
            for (lang, expected) in [
                (
                    "sv",
                    [
                        "2025-BU-1, Förhandsbedömning, sista dag 2025-12-29, 1 dag försenad, handläggare hl@kommun.example\n  (flyttad från julafton 2025-12-24)\n  https:",
                        "2025-BU-2, Förhandsbedömning, sista dag 2026-01-02, 3 dagar kvar, handläggare hl@kommun.example\n  (flyttad från nyårsafton 2025-12-31)\n  https:",
                        "2025-BU-3, Utredning, sista dag 2026-01-05, 6 dagar kvar, handläggare hl@kommun.example\n  (förlängd från 2025-12-20)\n  https:",
                        "2025-BU-4, Förhandsbedömning, sista dag 2026-01-02, 3 dagar kvar, handläggare hl@kommun.example\n  https:",
                    ],
                ),
                (
                    "en",
                    [
                        "2025-BU-1, Preliminary assessment, last day 2025-12-29, 1 day overdue, caseworker hl@kommun.example\n  (moved from Christmas Eve 2025-12-24)\n  https:",
                        "2025-BU-2, Preliminary assessment, last day 2026-01-02, 3 days left, caseworker hl@kommun.example\n  (moved from New Year's Eve 2025-12-31)\n  https:",
                        "2025-BU-3, Investigation, last day 2026-01-05, 6 days left, caseworker hl@kommun.example\n  (extended from 2025-12-20)\n  https:",
                        "2025-BU-4, Preliminary assessment, last day 2026-01-02, 3 days left, caseworker hl@kommun.example\n  https:",
                    ],
                ),
            ] {
                let s = settings(&format!("[mail]\nlanguage = \"{lang}\"\n"));
                let digest = build_digests(&s, &data, d("2025-12-30")).remove(0);
                // Through the outbox's JSON, as the dispatcher reads it back.
                let digest: Digest = serde_json::from_str(&serde_json::to_string(&digest).unwrap()).unwrap();
                let text = digest_preview_text(&s, &digest).unwrap();
                for line in expected {
                    assert!(text.contains(line), "{line:?} not in {text}");
                }
                let html = render_digest(&s, &digest).unwrap().html;
                let note = if lang == "sv" { "flyttad från nyårsafton 2025-12-31" } else { "moved from New Year&#39;s Eve 2025-12-31" };
                assert!(html.contains(&format!("2026-01-02<br /><span style=\"font-size:12px;color:#555555;\">{note}</span>")), "{html}");
            }
        }

        #[test]
        fn a_cut_list_says_how_many_more() {
            let s = settings("[digest]\nmax_rows = 2\n");
            let data: Vec<StoredDeadline> = (1..=5)
                .map(|i| open(&format!("C-{i}"), "BRO-BU", Kind::Assessment, &format!("2026-11-{:02}", 10 + i)))
                .collect();
            let digests = build_digests(&s, &data, d(TODAY));
            let text = digest_preview_text(&s, &digests[0]).unwrap();
            assert!(text.contains("… och 3 till"), "{text}");
            assert!(!text.contains("C-3"), "{text}");
            assert!(text.contains("5 försenade"), "{text}");
        }

        #[test]
        fn swedish_mail_has_subject_summary_and_both_parts() {
            let s = settings("");
            let digest = sample_digest(&s);
            let message = compose_digest(&s, &digest, "<x@kommun.example>").unwrap();
            let raw = String::from_utf8(message.formatted()).unwrap();
            assert!(raw.contains("Auto-Submitted: auto-generated"), "{raw}");
            assert!(raw.contains("Message-ID: <x@kommun.example>"), "{raw}");
            assert!(raw.contains("multipart/alternative"), "{raw}");
            assert_eq!(
                subject(Words::built_in(Language::Swedish), &digest),
                "Daglig fristöversikt 2026-11-25: 1 försenad, 1 förfaller inom 7 dagar"
            );
            let text = digest_preview_text(&s, &digest).unwrap();
            assert!(
                text.starts_with("To: ec.bromma@kommun.example\nSubject: Daglig fristöversikt 2026-11-25"),
                "{text}"
            );
            assert!(text.contains("2026-BU <1>"), "text is not HTML-escaped: {text}");
            assert!(text.contains("5 dagar försenad"), "{text}");
            assert!(text.contains("2 dagar kvar"), "{text}");
            assert!(text.contains("Bromma barn och unga"), "{text}");
            assert!(text.contains("Andel hållna frister senaste 30 dagarna: 50 % (1 av 2)"), "{text}");
        }

        #[test]
        fn html_is_escaped_and_has_no_classes_or_scripts() {
            let s = settings("");
            let digest = sample_digest(&s);
            let html = render_digest(&s, &digest).unwrap().html;
            assert!(html.contains("2026-BU &lt;1&gt;"), "{html}");
            assert!(!html.contains("2026-BU <1>"), "{html}");
            assert!(html.contains("href=\"https:"), "{html}");
            // One escaping for notices and digests: '/' stays readable in links.
            assert!(html.contains("href=\"https://register.kommun.example/case/2026-BU-2\""), "{html}");
            for banned in ["class=", "<script", "<style"] {
                assert!(!html.contains(banned), "{banned} in {html}");
            }
        }

        #[test]
        fn english_rendering() {
            let s = settings("[mail]\nlanguage = \"en\"\n");
            let digest = sample_digest(&s);
            assert_eq!(
                subject(Words::built_in(Language::English), &digest),
                "Daily deadline digest 2026-11-25: 1 overdue, 1 due within 7 days"
            );
            let text = digest_preview_text(&s, &digest).unwrap();
            for expected in [
                "Preliminary assessment",
                "5 days overdue",
                "2 days left",
                "Share of deadlines met in the last 30 days: 50% (1 of 2)",
            ] {
                assert!(text.contains(expected), "{expected:?} not in {text}");
            }
            assert!(!text.contains("försenad"), "{text}");
            let message = compose_digest(&s, &digest, "<y@kommun.example>").unwrap();
            let raw = String::from_utf8(message.formatted()).unwrap();
            assert!(raw.contains("Subject: Daily deadline digest 2026-11-25"), "{raw}");
        }

        #[test]
        fn templates_can_be_overridden_by_files() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("digest.sv.txt.j2"), "Egen mall {{ date }}: {{ summary }}\n").unwrap();
            let s = settings(&format!("[mail]\ntemplates_dir = \"{}\"\n", dir.path().display()));
            let text = digest_preview_text(&s, &sample_digest(&s)).unwrap();
            assert!(text.ends_with("\n\nEgen mall 2026-11-25: 1 försenad, 1 förfaller inom 7 dagar\n"), "{text}");
            // The HTML template was not overridden and still renders.
            check_templates(&s).unwrap();
            let broken = tempfile::tempdir().unwrap();
            std::fs::write(broken.path().join("digest.sv.html.j2"), "{{ no_such_value }}").unwrap();
            let s = settings(&format!("[mail]\ntemplates_dir = \"{}\"\n", broken.path().display()));
            assert!(matches!(compose_digest(&s, &sample_digest(&s), "<z@k.se>"), Err(ComposeError::Template { .. })));
        }
    }
}
