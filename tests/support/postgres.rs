//! A throwaway PostgreSQL server for integration tests: the launcher of `pg_server.rs` (shared
//! with the benchmark), tuned for speed, not durability (`fsync=off` and friends), and panicking
//! with an explanation when anything goes wrong.
//!
//! Two ways to use it:
//!
//! * [`TestPostgres::shared()`] (or the free function [`shared()`]): one server per test binary,
//!   started on first use and stopped by its watchdog when the process exits. Each test then
//!   creates its own fresh database with [`TestPostgres::fresh_database`] or
//!   [`TestPostgres::create_database`].
//! * [`TestPostgres::start()`]: a private server, stopped and removed when the value is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::pg_server::{find_bin_dir, new_root, PgServer};

/// Settings appended to `postgresql.conf`.
const SERVER_SETTINGS: &str = "
# --- added by the fristvakt test harness ---
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 32MB
log_min_messages = warning
log_statement = 'none'
";

static DB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The process-wide shared server; see [`TestPostgres::shared`].
pub fn shared() -> &'static TestPostgres {
    TestPostgres::shared()
}

/// A running throwaway PostgreSQL server.
pub struct TestPostgres {
    server: PgServer,
}

impl TestPostgres {
    /// One server per test process, started on first use and stopped by its watchdog when the
    /// process exits. Create a fresh database per test.
    pub fn shared() -> &'static TestPostgres {
        static SHARED: OnceLock<TestPostgres> = OnceLock::new();
        SHARED.get_or_init(TestPostgres::start)
    }

    /// Initialises and starts a new server. Panics with an explanation if anything goes wrong
    /// (missing binaries, initdb or start failure).
    pub fn start() -> TestPostgres {
        let started = find_bin_dir()
            .and_then(|bin_dir| Ok((bin_dir, new_root()?)))
            .and_then(|(bin_dir, root)| PgServer::start(&bin_dir, &root, SERVER_SETTINGS));
        match started {
            Ok(server) => TestPostgres { server },
            Err(e) => panic!("cannot start the test PostgreSQL: {e}"),
        }
    }

    /// TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `postgres://postgres@127.0.0.1:PORT/<db>`.
    pub fn url(&self, db: &str) -> String {
        self.server.url(db)
    }

    /// Creates database `name` (letters, digits and `_` only) and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        self.server.create_database(name).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates a database with a name unique within this process and returns its URL.
    pub async fn fresh_database(&self) -> String {
        let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("test_{}_{n}", std::process::id())).await
    }

    /// Stops the server at once (an outage; `-m immediate`, as a crash), keeping its data.
    pub fn stop(&self) {
        self.server.stop().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts a stopped server again, on the same port, so that clients reconnect to it.
    pub fn restart(&self) {
        self.server.restart().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.server.data_dir()
    }

    /// The server log so far (handy in assertion messages).
    pub fn log(&self) -> String {
        self.server.log()
    }
}
