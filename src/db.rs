//! The database plumbing that the state store and the register reader share: a typed sqlx pool
//! of either engine, and the text form of instants. No statement lives here.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use crate::config::{DatabaseUrl, Engine};

/// A typed connection pool of either engine.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the engine's typed pool. The body is compiled once per
/// engine, so the same statement text and binds serve both with their own types.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::db::Pool::Sqlite($p) => $body,
            $crate::db::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

impl Pool {
    /// Opens a pool on either engine; SQLite files and their directory are created when missing
    /// only if `create` is set.
    pub(crate) async fn open(url: &DatabaseUrl, create: bool, max: u32) -> Result<Pool, sqlx::Error> {
        let timeout = std::time::Duration::from_secs(10);
        match url.engine {
            Engine::Sqlite => {
                if let Some(path) = url.sqlite_path() {
                    if create {
                        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
                        }
                    } else if !path.exists() {
                        return Err(sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("{} does not exist", path.display()),
                        )));
                    }
                }
                let options = url
                    .expose()
                    .parse::<SqliteConnectOptions>()?
                    .create_if_missing(create)
                    .busy_timeout(std::time::Duration::from_secs(10))
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
                // Every connection to `sqlite::memory:` is a database of its own: keep exactly
                // one, forever.
                let in_memory = url.sqlite_path().is_none();
                let pool = SqlitePoolOptions::new()
                    .max_connections(if in_memory { 1 } else { 1.max(max.min(4)) })
                    .idle_timeout(if in_memory { None } else { Some(std::time::Duration::from_secs(600)) })
                    .max_lifetime(if in_memory { None } else { Some(std::time::Duration::from_secs(1800)) })
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await?;
                Ok(Pool::Sqlite(pool))
            }
            Engine::Postgres => {
                let pool =
                    PgPoolOptions::new().max_connections(max).acquire_timeout(timeout).connect(url.expose()).await?;
                Ok(Pool::Postgres(pool))
            }
        }
    }

    pub(crate) async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }
}

/// An instant as RFC 3339 UTC text with microseconds: the register contract's form of
/// `updated_at` on SQLite, and how the register is asked for rows changed since a moment.
pub(crate) fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc))
}
