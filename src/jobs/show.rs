//! What the show commands (`deadlines`, `explain`, `digest --dry-run`) print, computed from the
//! register and the stored state in memory: nothing is written to the state database.

use chrono::NaiveDate;

use crate::app::{App, Moment};
use crate::config::{Language, Settings};
use crate::digest::{self, Preview};
use crate::domain::EmailAddress;
use crate::explanation::Explanation;
use crate::jobs::JobError;
use crate::mail::compose;
use crate::poll;
use crate::register;
use crate::rules::{self, Kind, RuleOptions};
use crate::state::{DeadlineFilter, OutboxRow, StoredDeadline};

/// Deadlines as of now, and a warning when the register could not be read and the stored
/// deadlines (as of the last poll) are shown instead.
#[derive(Debug)]
pub struct Shown {
    pub deadlines: Vec<StoredDeadline>,
    pub warning: Option<String>,
}

/// Every current deadline (of `unit`, if given): the register read in full and computed in
/// memory over the stored state; the stored deadlines alone if the register cannot be read.
pub async fn deadlines(app: &App, at: Moment, unit: Option<&str>) -> Result<Shown, JobError> {
    let all_stored = DeadlineFilter { include_withdrawn: true, ..DeadlineFilter::default() };
    let stored = app.state.deadlines(&all_stored).await?;
    let current = match app.register().await {
        Ok(register) => {
            poll::current_deadlines(&register, stored, &app.settings, at.now).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let (all, warning) = match current {
        Ok(current) => (current, None),
        // The stored deadlines are read again here rather than copied on every call.
        Err(e) => (
            app.state.deadlines(&all_stored).await?,
            Some(format!("showing stored deadlines; the register could not be read: {e}")),
        ),
    };
    let deadlines = all.into_iter().filter(|d| !d.withdrawn && unit.is_none_or(|u| d.unit.as_str() == u)).collect();
    Ok(Shown { deadlines, warning })
}

/// The digests that would be sent on `at.today` (all, or only `manager`'s), as text.
pub async fn digest_preview(app: &App, at: Moment, manager: Option<&EmailAddress>) -> Result<PreviewText, JobError> {
    let shown = deadlines(app, at, None).await?;
    let text = match digest::preview(&app.settings, &shown.deadlines, at.today, manager) {
        Preview::Nothing(text) => text,
        Preview::Digests(digests) => {
            let texts = digests
                .iter()
                .map(|d| compose::digest_preview_text(&app.settings, d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JobError::Render(e.to_string()))?;
            texts.join(&format!("\n{}\n\n", "-".repeat(72)))
        }
    };
    Ok(PreviewText { text, warning: shown.warning })
}

/// A text to print, and a warning for standard error.
#[derive(Debug)]
pub struct PreviewText {
    pub text: String,
    pub warning: Option<String>,
}

/// The outbox rows of one case, for `explain`.
pub async fn outbox_of_case(app: &App, case_ref: &str) -> Result<Vec<OutboxRow>, JobError> {
    Ok(app.state.outbox_for_case(case_ref).await?)
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
        match compose::explanation_lines(settings, &Explanation::new(d, today, options)) {
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
