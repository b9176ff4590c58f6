//! Writing the SQLite demo register of `demo-data` and `register.demo_cases`: the one register
//! fristvakt creates and owns, written through this path only (the `register` module never
//! writes). Its table has every column of the view's table ([`COLUMNS`]).

use sqlx::{Row, SqlitePool};

use crate::config::{DatabaseUrl, Engine};
use crate::db::{Pool, Waits};
use crate::register::{RawRow, RegisterError, COLUMNS, WIDTH};

/// Rows of one INSERT: small statements, as SQLite binds parameters by a lookup per mark.
const ROWS_PER_INSERT: usize = 32;

/// INSERTs per transaction.
const INSERTS_PER_TRANSACTION: usize = 80;

/// Creates (if missing) a demo register table named `view` in a SQLite register and appends
/// `cases`, in transactions of a few thousand rows. Returns how many rows were written. A table
/// written before a column existed gets it.
pub async fn write_demo_cases(
    url: &DatabaseUrl,
    view: &str,
    cases: impl Iterator<Item = RawRow>,
) -> Result<u64, RegisterError> {
    if url.engine != Engine::Sqlite {
        return Err(RegisterError::NotSqlite { url: url.redacted() });
    }
    let pool = sqlite_pool(url, true).await?;
    let query_error = |source| RegisterError::Query { view: view.to_string(), source };
    // `case_ref` is the key: a demo case written again replaces the one before.
    let definitions: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            let constraint = match (c.name, c.nullable) {
                ("case_ref", _) => " PRIMARY KEY",
                (_, false) => " NOT NULL",
                (_, true) => "",
            };
            format!("{} {}{constraint}", c.name, c.storage.sqlite_type())
        })
        .collect();
    sqlx::query(&format!("CREATE TABLE IF NOT EXISTS {view} ({})", definitions.join(", ")))
        .execute(&pool)
        .await
        .map_err(query_error)?;
    // A demo register written before the optional columns existed gets them.
    for column in COLUMNS.iter().filter(|c| !c.is_required()) {
        let probe = format!("SELECT {} FROM {view} WHERE 1 = 0", column.name);
        if sqlx::query(&probe).fetch_optional(&pool).await.is_err() {
            sqlx::query(&format!("ALTER TABLE {view} ADD COLUMN {} {}", column.name, column.storage.sqlite_type()))
                .execute(&pool)
                .await
                .map_err(query_error)?;
        }
    }
    // The indexes docs/register-view.md asks a register for: polls filter on updated_at, and the
    // rules across one child's cases look the child's rows up by child_key.
    for column in ["updated_at", "child_key"] {
        sqlx::query(&format!("CREATE INDEX IF NOT EXISTS {view}_{column} ON {view} ({column})"))
            .execute(&pool)
            .await
            .map_err(query_error)?;
    }
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    let insert_head = format!("INSERT OR REPLACE INTO {view} ({}) VALUES ", names.join(", "));
    let mut written = 0u64;
    let mut cases = cases.peekable();
    while cases.peek().is_some() {
        let mut tx = pool.begin().await.map_err(query_error)?;
        for _ in 0..INSERTS_PER_TRANSACTION {
            let chunk: Vec<RawRow> = cases.by_ref().take(ROWS_PER_INSERT).collect();
            if chunk.is_empty() {
                break;
            }
            // Anonymous marks, bound in order: SQLite finds a numbered mark's value by a walk of
            // the statement's list of names, so binding n of them would cost n².
            let row = format!("({})", vec!["?"; WIDTH].join(","));
            let sql = format!("{insert_head}{}", vec![row.as_str(); chunk.len()].join(","));
            let mut q = sqlx::query(&sql);
            for case in &chunk {
                for value in case.values() {
                    q = q.bind(value.clone());
                }
            }
            q.execute(&mut *tx).await.map_err(query_error)?;
            written += chunk.len() as u64;
        }
        tx.commit().await.map_err(query_error)?;
    }
    pool.close().await;
    Ok(written)
}

/// Whether a SQLite register file already holds the view (used to seed demo cases once).
pub async fn sqlite_register_has_view(url: &DatabaseUrl, view: &str) -> Result<bool, RegisterError> {
    let Some(path) = url.sqlite_path() else { return Ok(false) };
    if !path.exists() {
        return Ok(false);
    }
    let pool = sqlite_pool(url, false).await?;
    let row = sqlx::query("SELECT COUNT(*) FROM sqlite_master WHERE name = $1")
        .bind(view)
        .fetch_one(&pool)
        .await
        .map_err(|source| RegisterError::Query { view: view.to_string(), source })?;
    let n: i64 = row.try_get(0).map_err(|source| RegisterError::Query { view: view.to_string(), source })?;
    pool.close().await;
    Ok(n > 0)
}

/// Opens a SQLite register: for writing (the demo register fristvakt creates and owns,
/// `write`), else read-only as every register is read.
async fn sqlite_pool(url: &DatabaseUrl, write: bool) -> Result<SqlitePool, RegisterError> {
    let connect = |source| RegisterError::connect(url, source);
    let pool = if write {
        Pool::open(url, true, 1, Waits::STATE).await
    } else {
        Pool::open_read_only(url, 1, Waits::REGISTER).await
    };
    match pool.map_err(connect)? {
        Pool::Sqlite(pool) => Ok(pool),
        Pool::Postgres(pool) => {
            pool.close().await;
            Err(RegisterError::NotSqlite { url: url.redacted() })
        }
    }
}

/// Creates (if missing) the demo register's placements table named `view` (register contract
/// §1b, every column TEXT as a SQLite register holds it) and writes `rows`, replacing a
/// placement written before. Returns how many rows were written.
pub async fn write_demo_placements(
    url: &DatabaseUrl,
    view: &str,
    rows: &[crate::register::RawPlacement],
) -> Result<u64, RegisterError> {
    use crate::register::placements::PLACEMENT_COLUMNS;
    if url.engine != Engine::Sqlite {
        return Err(RegisterError::NotSqlite { url: url.redacted() });
    }
    let pool = sqlite_pool(url, true).await?;
    let query_error = |source| RegisterError::Query { view: view.to_string(), source };
    let names: Vec<&str> = PLACEMENT_COLUMNS.iter().copied().filter(|c| !c.is_empty()).collect();
    let definitions: Vec<String> = names
        .iter()
        .map(|c| match *c {
            "placement_ref" => format!("{c} TEXT PRIMARY KEY"),
            "unit" | "basis" | "decided_on" | "updated_at" => format!("{c} TEXT NOT NULL"),
            _ => format!("{c} TEXT"),
        })
        .collect();
    sqlx::query(&format!("CREATE TABLE IF NOT EXISTS {view} ({})", definitions.join(", ")))
        .execute(&pool)
        .await
        .map_err(query_error)?;
    for column in ["updated_at", "case_ref", "child_key"] {
        sqlx::query(&format!("CREATE INDEX IF NOT EXISTS {view}_{column} ON {view} ({column})"))
            .execute(&pool)
            .await
            .map_err(query_error)?;
    }
    let width = names.len();
    let insert_head = format!("INSERT OR REPLACE INTO {view} ({}) VALUES ", names.join(", "));
    let mut tx = pool.begin().await.map_err(query_error)?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        // Anonymous marks, bound in order (see `write_demo_cases`).
        let row = format!("({})", vec!["?"; width].join(","));
        let sql = format!("{insert_head}{}", vec![row.as_str(); chunk.len()].join(","));
        let mut q = sqlx::query(&sql);
        for row in chunk {
            for value in &row.0 {
                q = q.bind(value.clone());
            }
        }
        q.execute(&mut *tx).await.map_err(query_error)?;
    }
    tx.commit().await.map_err(query_error)?;
    pool.close().await;
    Ok(rows.len() as u64)
}
