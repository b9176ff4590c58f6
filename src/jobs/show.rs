//! What the show commands (`deadlines`, `explain`, `digest --dry-run`) print, computed from the
//! register and the stored state in memory: nothing is written to the state database.

use crate::app::{App, Moment};
use crate::digest::{self, Preview};
use crate::domain::EmailAddress;
use crate::jobs::JobError;
use crate::mail::compose;
use crate::poll;
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
pub async fn deadlines(app: &App, unit: Option<&str>) -> Result<Shown, JobError> {
    let stored = app.state.deadlines(&DeadlineFilter { include_withdrawn: true, ..DeadlineFilter::default() }).await?;
    let (all, warning) = match app.register().await {
        Ok(register) => match poll::current_deadlines(&register, stored.clone(), &app.settings).await {
            Ok(current) => (current, None),
            Err(e) => (stored, Some(format!("showing stored deadlines; the register could not be read: {e}"))),
        },
        Err(e) => (stored, Some(format!("showing stored deadlines; the register could not be read: {e}"))),
    };
    let deadlines = all.into_iter().filter(|d| !d.withdrawn && unit.is_none_or(|u| d.unit.as_str() == u)).collect();
    Ok(Shown { deadlines, warning })
}

/// The digests that would be sent on `at.today` (all, or only `manager`'s), as text.
pub async fn digest_preview(app: &App, at: Moment, manager: Option<&EmailAddress>) -> Result<PreviewText, JobError> {
    let shown = deadlines(app, None).await?;
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
