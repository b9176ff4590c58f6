//! The database plumbing that the state store and the register reader share: a typed sqlx pool
//! of either engine, and the text form of instants. No statement lives here.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

pub mod url;

pub use url::{DatabaseUrl, Engine};

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

/// How long a statement of a pool may run, and wait for a lock, before the database cancels it
/// (`register.statement_timeout` / `lock_timeout`, `state.…`): nothing a job asks of a database
/// waits without end. PostgreSQL: the session's `statement_timeout` and `lock_timeout`; SQLite:
/// the lock wait is the `busy_timeout` (SQLite has no statement timeout of its own; the job's
/// bound cuts a statement that runs too long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    pub statement: Duration,
    pub lock: Duration,
}

impl Waits {
    /// The defaults of the register (`register.statement_timeout` 60 s, `lock_timeout` 10 s).
    pub const REGISTER: Waits = Waits { statement: Duration::from_secs(60), lock: Duration::from_secs(10) };
    /// The defaults of the state (`state.statement_timeout` 30 s, `lock_timeout` 10 s).
    pub const STATE: Waits = Waits { statement: Duration::from_secs(30), lock: Duration::from_secs(10) };
}

/// How a pool may use its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// fristvakt's own database (the state store, the SQLite demo register it writes): read
    /// and written; a SQLite file is kept in WAL mode, and created when missing if `create`.
    Owned { create: bool },
    /// A database fristvakt does not own (the register): every connection refuses writes and
    /// nothing about the database is changed — a SQLite file is opened read-only (`mode=ro`,
    /// `PRAGMA query_only`) and its journal mode is left as it is; a PostgreSQL session has
    /// `default_transaction_read_only = on`.
    ReadOnly,
}

impl Pool {
    /// Opens a pool on either engine; SQLite files and their directory are created when missing
    /// only if `create` is set.
    pub(crate) async fn open(url: &DatabaseUrl, create: bool, max: u32, waits: Waits) -> Result<Pool, sqlx::Error> {
        Pool::open_with(url, Access::Owned { create }, max, waits).await
    }

    /// Opens a pool on a database that fristvakt only reads (the register): see [`Access::ReadOnly`].
    pub(crate) async fn open_read_only(url: &DatabaseUrl, max: u32, waits: Waits) -> Result<Pool, sqlx::Error> {
        Pool::open_with(url, Access::ReadOnly, max, waits).await
    }

    async fn open_with(url: &DatabaseUrl, access: Access, max: u32, waits: Waits) -> Result<Pool, sqlx::Error> {
        let timeout = std::time::Duration::from_secs(10);
        match url.engine {
            Engine::Sqlite => {
                let create = access == Access::Owned { create: true };
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
                let options =
                    url.expose().parse::<SqliteConnectOptions>()?.create_if_missing(create).busy_timeout(waits.lock);
                let options = match access {
                    Access::Owned { .. } => options
                        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal),
                    // The journal mode is a property of the file: setting it would write to a
                    // database fristvakt does not own.
                    Access::ReadOnly => options.read_only(true).pragma("query_only", "ON"),
                };
                // Every connection to `sqlite::memory:` is a database of its own: keep exactly
                // one (no connection is ever reaped, see `REAPER`).
                let in_memory = url.sqlite_path().is_none();
                let pool = SqlitePoolOptions::new()
                    .max_connections(if in_memory { 1 } else { 1.max(max.min(4)) })
                    .idle_timeout(REAPER)
                    .max_lifetime(REAPER)
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await?;
                Ok(Pool::Sqlite(pool))
            }
            Engine::Postgres => {
                let (driver_url, ignored) = url.for_driver();
                for key in ignored {
                    // Named, never its value.
                    tracing::warn!(parameter = %key, "database URL: the PostgreSQL driver does not support this parameter; ignored");
                }
                let millis = |d: Duration| format!("{}ms", d.as_millis());
                let options = driver_url
                    .parse::<PgConnectOptions>()?
                    .options([("statement_timeout", millis(waits.statement)), ("lock_timeout", millis(waits.lock))]);
                let options = match access {
                    Access::Owned { .. } => options,
                    Access::ReadOnly => options.options([("default_transaction_read_only", "on")]),
                };
                let opened = PgPoolOptions::new()
                    .max_connections(max)
                    .idle_timeout(REAPER)
                    .max_lifetime(REAPER)
                    .acquire_timeout(timeout)
                    .connect_with(options.clone())
                    .await;
                match opened {
                    Ok(pool) => Ok(Pool::Postgres(pool)),
                    Err(e) => Err(why_not_connected(&options, e).await),
                }
            }
        }
    }

    pub(crate) async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }
}

/// No idle or lifetime limit on a pool's connections, so sqlx starts no maintenance task. In
/// sqlx 0.8 that task can spin on a core forever, and then hang the process at exit: its count of
/// idle connections can wrap below zero when a connection is released while another is taken
/// (launchbadge/sqlx#3645, fixed by #4289, in no release yet). A command that ran longer than
/// the idle limit did that: `deadlines --fresh` at 1 000 000 cases printed every line and never
/// ended. A connection the server dropped is found when it is next taken (sqlx pings it first),
/// so nothing is lost by keeping them.
const REAPER: Option<Duration> = None;

/// A PostgreSQL pool that could not connect says only "pool timed out" (it retries until its
/// acquire timeout): one connection is tried once more, bounded, to learn the cause (refused,
/// no such host, authentication…), and the error names the server's host and port with it.
async fn why_not_connected(options: &PgConnectOptions, e: sqlx::Error) -> sqlx::Error {
    let endpoint = format!("{}:{}", options.get_host(), options.get_port());
    let cause = match e {
        sqlx::Error::PoolTimedOut => {
            let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                use sqlx::ConnectOptions;
                options.connect().await.map(drop)
            })
            .await;
            match attempt {
                Ok(Err(sqlx::Error::Io(e))) => e.to_string(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(())) => "no connection within 10 s (the server is slow or at its connection limit)".to_string(),
                Err(_) => "no answer within 10 s (a firewall dropping packets, or a server that hangs?)".to_string(),
            }
        }
        other => other.to_string(),
    };
    sqlx::Error::Io(std::io::Error::other(format!("cannot connect to PostgreSQL at {endpoint}: {cause}")))
}

/// An instant as RFC 3339 UTC text with microseconds: the register contract's form of
/// `updated_at` on SQLite, and how the register is asked for rows changed since a moment.
pub(crate) fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite_text(pool: &SqlitePool, sql: &str) -> String {
        let row = sqlx::query(sql).fetch_one(pool).await.unwrap();
        sqlx::Row::try_get::<String, _>(&row, 0)
            .or_else(|_| sqlx::Row::try_get::<i64, _>(&row, 0).map(|n| n.to_string()))
            .unwrap()
    }

    /// A register opened read-only refuses every write and leaves the file's journal mode as it
    /// is, where fristvakt's own databases are switched to WAL.
    #[tokio::test]
    async fn a_read_only_sqlite_pool_refuses_writes_and_keeps_the_journal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::parse(&format!("sqlite://{}", dir.path().join("register.db").display())).unwrap();
        let setup = SqlitePool::connect(&format!("{}?mode=rwc", url.expose())).await.unwrap();
        sqlx::query("CREATE TABLE cases (case_ref TEXT)").execute(&setup).await.unwrap();
        sqlx::query("INSERT INTO cases VALUES ('2026-BU-1')").execute(&setup).await.unwrap();
        assert_eq!(sqlite_text(&setup, "PRAGMA journal_mode").await, "delete");
        setup.close().await;

        let Pool::Sqlite(register) = Pool::open_read_only(&url, 2, Waits::REGISTER).await.unwrap() else {
            panic!("not SQLite")
        };
        assert_eq!(sqlite_text(&register, "SELECT case_ref FROM cases").await, "2026-BU-1");
        assert_eq!(sqlite_text(&register, "PRAGMA query_only").await, "1");
        assert_eq!(sqlite_text(&register, "PRAGMA journal_mode").await, "delete");
        for write in ["INSERT INTO cases VALUES ('x')", "CREATE TABLE other (x TEXT)", "DELETE FROM cases"] {
            assert!(sqlx::query(write).execute(&register).await.is_err(), "{write} was allowed");
        }
        // Asking for WAL changes nothing on a read-only connection.
        let _ = sqlx::query("PRAGMA journal_mode = WAL").fetch_all(&register).await;
        assert_eq!(sqlite_text(&register, "PRAGMA journal_mode").await, "delete");
        assert_eq!(sqlite_text(&register, "SELECT COUNT(*) FROM cases").await, "1");
        register.close().await;
        assert!(!dir.path().join("register.db-wal").exists());

        // The state store owns its database: WAL.
        let Pool::Sqlite(own) = Pool::open(&url, false, 1, Waits::STATE).await.unwrap() else { panic!("not SQLite") };
        assert_eq!(sqlite_text(&own, "PRAGMA journal_mode").await, "wal");
        own.close().await;
    }
}
