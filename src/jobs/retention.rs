//! The retention job: closed deadlines and finished mail older than `state.retention` deleted.

use crate::app::{App, Moment};
use crate::jobs::JobError;
use crate::state::Purged;

/// Deletes what is older than `state.retention` (the full pass runs it once a day).
pub async fn run_once(app: &App, at: Moment) -> Result<Purged, JobError> {
    let day = app.settings.state.retained_from(at.now);
    let before = app.settings.state.retained_since(at.now);
    let purged = app.state.purge_expired(day, before).await?;
    if purged != Purged::default() {
        tracing::info!(
            deadlines = purged.deadlines,
            outbox_rows = purged.outbox_rows,
            anonymised = purged.anonymised,
            kept_from = %day,
            "deleted what is older than state.retention"
        );
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    #[test]
    fn the_cutoff_never_overflows() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        let mut settings = crate::config::load_with_env(None, Vec::new()).unwrap();
        let floor = Utc.with_ymd_and_hms(1900, 1, 1, 0, 0, 0).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        for (retention, since) in [
            (day * 730, Utc.with_ymd_and_hms(2024, 11, 25, 9, 0, 0).unwrap()),
            (day * 365 * 300_000, floor),
            (std::time::Duration::MAX, floor),
        ] {
            settings.state.retention = retention;
            assert_eq!(settings.state.retained_since(now), since, "{retention:?}");
            assert_eq!(settings.state.retained_from(now), since.date_naive(), "{retention:?}");
        }
    }
}
