//! `[state]`: the state database.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

use super::reader::{waits, Reader};
use super::DatabaseUrl;

#[derive(Debug, Clone)]
pub struct StateSettings {
    pub url: DatabaseUrl,
    pub migrate_on_start: bool,
    /// Closed deadlines and finished outbox rows older than this are deleted by a daily job.
    pub retention: Duration,
    /// How long the poll lease lasts unless its holder renews it (every third of it): after a
    /// holder dies, another replica polls within about this long.
    pub lease_ttl: Duration,
    /// How long a statement may run, and wait for a lock, on the state database.
    pub waits: crate::db::Waits,
}

impl StateSettings {
    /// The first day of `state.retention`: a deadline closed before it is neither stored nor shown
    /// (the retention job deletes it), however long the register keeps the case.
    pub fn retained_from(&self, now: DateTime<Utc>) -> NaiveDate {
        let days = chrono::Days::new(self.retention.as_secs() / 86_400);
        now.date_naive()
            .checked_sub_days(days)
            .map_or(retention_floor().date_naive(), |d| d.max(retention_floor().date_naive()))
    }

    /// The instant `state.retention` before `now`: finished mail written before it is deleted.
    pub fn retained_since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(self.retention)
            .ok()
            .and_then(|r| now.checked_sub_signed(r))
            .map_or(retention_floor(), |t| t.max(retention_floor()))
    }
}

/// Nothing fristvakt stores is older than the calendar's first year; a retention reaching further
/// back (centuries) stops there rather than overflow or leave the databases' range.
fn retention_floor() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(crate::rules::calendar::FIRST_YEAR, 1, 1)
        .unwrap_or(NaiveDate::MIN)
        .and_time(NaiveTime::MIN)
        .and_utc()
}

/// `[state]`: the state database, its retention and the poll lease.
pub(super) fn read_state(r: &mut Reader) -> Option<StateSettings> {
    let url = r.parsed("state.url", DatabaseUrl::parse);
    let migrate_on_start = r.bool("state.migrate_on_start");
    let retention = r.duration("state.retention").and_then(|d| {
        if d >= Duration::from_secs(30 * 86_400) {
            Some(d)
        } else {
            r.problem(
                "state.retention",
                "keep at least 30 days: the digests' 30-day share and the record of sent notices need them",
            );
            None
        }
    });
    let lease_ttl = r.duration("state.lease_ttl").and_then(|d| {
        if (Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&d) {
            Some(d)
        } else {
            r.problem(
                "state.lease_ttl",
                "must be from 10s to 1h (a standby replica tries to take the lease every 10 s)",
            );
            None
        }
    });
    let waits = waits(r, "state");
    Some(StateSettings {
        url: url?,
        migrate_on_start: migrate_on_start?,
        retention: retention?,
        lease_ttl: lease_ttl?,
        waits: waits?,
    })
}
