//! `[state]`: the state database.

use std::time::Duration;

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
