//! Named leases, so that only one replica runs a scheduled job (the poll) at a time.

use chrono::{DateTime, Utc};

use super::{query_error, with_pool, StateError, StateStore};

/// The lease that lets one replica at a time poll the register and evaluate ladders.
pub const POLL_LEASE: &str = "poll";

impl StateStore {
    /// Takes or renews the named lease for `holder` until `until`; false when another holder has it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        let sql = "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4";
        let affected = with_pool!(&self.pool, p => {
            sqlx::query(sql).bind(name).bind(holder).bind(until).bind(now).execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(query_error("taking a lease"))?;
        Ok(affected > 0)
    }

    /// Takes the named lease for `holder` until `until` whoever holds it: only for a holder that
    /// knows no other can exist (the daemon holding a SQLite state's lock, whose lease left by a
    /// crash of its own would otherwise keep it from polling until it lapsed).
    pub async fn seize_lease(&self, name: &str, holder: &str, until: DateTime<Utc>) -> Result<(), StateError> {
        let sql = "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at";
        with_pool!(&self.pool, p => {
            sqlx::query(sql).bind(name).bind(holder).bind(until).execute(p).await.map(|_| ())
        })
        .map_err(query_error("taking a lease"))
    }

    /// Gives up a lease held by `holder`.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StateError> {
        let sql = "DELETE FROM leases WHERE name = $1 AND holder = $2";
        with_pool!(&self.pool, p => sqlx::query(sql).bind(name).bind(holder).execute(p).await.map(|_| ()))
            .map_err(query_error("releasing a lease"))?;
        Ok(())
    }
}
