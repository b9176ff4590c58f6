//! Fault tests on the real parts: daemons as child processes, a PostgreSQL state that goes away
//! and comes back, an SMTP server on loopback. Bounded in time; each prints its figures.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{fristvakt, stderr, Workspace};
use crate::service::{free_port, get};
use crate::support::postgres::TestPostgres;
use crate::support::process::ChildGuard;
use crate::support::smtp::TestSmtp;

/// A daemon on `config`, its HTTP on `port`, its state at `state_url`.
fn daemon(config: &Path, port: u16, state_url: &str) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_fristvakt"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("FRISTVAKT_CONFIG")
        .env("FRISTVAKT__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("FRISTVAKT__STATE__URL", state_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ChildGuard::new(child)
}

async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed()
}

fn status(port: u16, path: &str) -> Option<u16> {
    get(port, path).map(|r| r.0)
}

/// Two daemons share a PostgreSQL state; the server stops (as a crash) while new overdue cases
/// arrive, then comes back. Both daemons live through it, /readyz turns 503 and back to 200, every
/// due notice is delivered and none twice (each Message-ID once, as many mails as sent rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_two_daemons_then_started_loses_and_doubles_nothing() {
    let pg = TestPostgres::start();
    let state_url = pg.create_database("faults").await;
    // The test servers trade durability for speed (synchronous_commit = off): a crash would lose
    // the last commits, and with them the record of mail already sent. A production server
    // keeps them; so does this one.
    let admin = sqlx::PgPool::connect(&pg.url("postgres")).await.unwrap();
    sqlx::query("ALTER SYSTEM SET synchronous_commit = on").execute(&admin).await.unwrap();
    sqlx::query("SELECT pg_reload_conf()").execute(&admin).await.unwrap();
    admin.close().await;
    let smtp = TestSmtp::start().await;
    let ws = Workspace::new();
    let config = ws.config_with(
        "poll_interval = \"1s\"",
        &format!(
            "transport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout = \"5s\"\n",
            smtp.port()
        ),
    );
    let out = fristvakt(Some(&config), &["demo-data", "--cases", "400"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let (port_a, port_b) = (free_port(), free_port());
    let mut a = daemon(&config, port_a, &state_url);
    let mut b = daemon(&config, port_b, &state_url);
    let ready = until("both daemons ready", Duration::from_secs(90), || {
        status(port_a, "/readyz") == Some(200) && status(port_b, "/readyz") == Some(200)
    })
    .await;
    let mut seen = 0;
    until("the first notices delivered and the outbox quiet", Duration::from_secs(60), || {
        let now = smtp.messages().len();
        let quiet = now > 0 && now == seen;
        seen = now;
        quiet
    })
    .await;
    let before_outage = smtp.messages().len();

    pg.stop();
    let outage = Instant::now();
    let unready = until("/readyz 503 on both", Duration::from_secs(30), || {
        status(port_a, "/readyz") == Some(503) && status(port_b, "/readyz") == Some(503)
    })
    .await;
    // Cases that arrive during the outage: reported yesterday, protection assessment overdue.
    let register = ws.sqlite_url("register.db");
    let pool = sqlx::SqlitePool::connect(&register).await.unwrap();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    for i in 0..5 {
        sqlx::query(
            "INSERT INTO fristvakt_cases (case_ref, unit, caseworker, child_sex, received_on, updated_at) \
             VALUES ($1, 'BRO-BU', 'hl@kommun.example', 'F', $2, $3)",
        )
        .bind(format!("2026-FAULT-{i:02}"))
        .bind(&yesterday)
        .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(a.child_mut().try_wait().unwrap().is_none(), "daemon a died during the outage");
    assert!(b.child_mut().try_wait().unwrap().is_none(), "daemon b died during the outage");
    assert_eq!(status(port_a, "/healthz"), Some(200));

    pg.restart();
    let down_for = outage.elapsed();
    let recovered = until("/readyz 200 on both again", Duration::from_secs(60), || {
        status(port_a, "/readyz") == Some(200) && status(port_b, "/readyz") == Some(200)
    })
    .await;
    let delivered = until("the notices of the cases that came during the outage", Duration::from_secs(90), || {
        let subjects: Vec<String> = smtp.messages().iter().filter_map(|m| m.header("Subject")).collect();
        (0..5).all(|i| subjects.iter().any(|s| s.contains(&format!("2026-FAULT-{i:02}"))))
    })
    .await;

    // Nothing doubled: each Message-ID once, and as many mails as the outbox counts sent.
    let messages = smtp.messages();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for m in &messages {
        *per_id.entry(m.header("Message-ID").unwrap_or_default()).or_default() += 1;
    }
    let doubled: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    let pool = sqlx::PgPool::connect(&state_url).await.unwrap();
    let sent: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'sent'").fetch_one(&pool).await.unwrap();
    let waiting: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'retrying') AND next_attempt_at <= now()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    println!(
        "fault figures: ready after {ready:?}; {before_outage} mails before the outage; /readyz 503 after {unready:?}; \
         state down {down_for:?}; ready again {recovered:?} after restart; outage cases delivered {delivered:?} later; \
         {} mails, {} distinct Message-IDs, {sent} sent rows, {waiting} due and waiting",
        messages.len(),
        per_id.len()
    );
    for (id, _) in &doubled {
        let copies: Vec<String> = messages
            .iter()
            .filter(|m| m.header("Message-ID").as_deref() == Some(id.as_str()))
            .map(|m| format!("{:?} to {:?}", m.header("Subject"), m.rcpt_to))
            .collect();
        println!("doubled {id}: {copies:?}");
    }
    assert!(doubled.is_empty(), "mails sent twice: {doubled:?}");
    assert_eq!(messages.len() as i64, sent, "every sent row is one mail, every mail one sent row");

    for (name, port, daemon) in [("a", port_a, &mut a), ("b", port_b, &mut b)] {
        daemon.terminate();
        let exit = daemon.wait_timeout(Duration::from_secs(30)).unwrap_or_else(|| panic!("daemon {name} stops"));
        assert_eq!(exit.code(), Some(0), "daemon {name}");
        assert!(status(port, "/healthz").is_none());
    }
}
