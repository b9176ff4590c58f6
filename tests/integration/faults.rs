//! Fault tests on the real parts: daemons as child processes, a PostgreSQL state that goes away
//! and comes back, an SMTP server on loopback. Bounded in time; each prints its figures.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::helpers::{fristvakt, stderr};
use crate::service::{free_port, get, spawn_watched_daemon, Notify};
use crate::support::app::{spawn, TestApp};
use crate::support::postgres::TestPostgres;
use crate::support::process::ChildGuard;
use crate::support::smtp::{SmtpMode, TestSmtp};

/// A daemon on `config`, its HTTP on `port`, its state at `state_url`.
fn daemon(config: &Path, port: u16, state_url: &str) -> ChildGuard {
    daemon_logging(config, port, state_url, Stdio::null())
}

/// A daemon as [`daemon`], its warnings and errors to `log`.
fn daemon_logging(config: &Path, port: u16, state_url: &str, log: impl Into<Stdio>) -> ChildGuard {
    let listen = format!("127.0.0.1:{port}");
    spawn(config, &["run"], &[("FRISTVAKT__HTTP__LISTEN", &listen), ("FRISTVAKT__STATE__URL", state_url)], log)
}

/// A register of `n` cases reported 20 days before today, none assessed: each has one notice
/// due at once (the catch-up sends only the latest ladder step, to the unit's manager).
async fn overdue_register(path: &Path, n: usize) {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE cases_raw (case_ref TEXT PRIMARY KEY, unit TEXT NOT NULL, caseworker TEXT, child_sex TEXT, \
         received_on TEXT, protection_assessed_on TEXT, assessment_decided_on TEXT, assessment_extended_to TEXT, \
         investigation_opened_on TEXT, investigation_extended_to TEXT, investigation_closed_on TEXT, \
         updated_at TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("CREATE VIEW fristvakt_cases AS SELECT * FROM cases_raw").execute(&pool).await.unwrap();
    let received = (chrono::Utc::now() - chrono::Duration::days(20)).format("%Y-%m-%d").to_string();
    let mut tx = pool.begin().await.unwrap();
    for i in 0..n {
        sqlx::query(
            "INSERT INTO cases_raw (case_ref, unit, caseworker, child_sex, received_on, protection_assessed_on, \
             updated_at) VALUES ($1, $2, 'hl@kommun.example', $3, $4, $4, '2026-01-01T00:00:00Z')",
        )
        .bind(format!("2026-KILL-{i:05}"))
        .bind(["BRO-BU", "SKH-BU", "NOR-BU"][i % 3])
        .bind(if i % 2 == 0 { "F" } else { "M" })
        .bind(&received)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;
}

/// A PostgreSQL state database on `pg` that keeps every commit (the test servers trade
/// durability for speed, synchronous_commit = off; a production server does not).
async fn durable_state(pg: &TestPostgres, name: &str) -> String {
    let state_url = pg.create_database(name).await;
    let admin = sqlx::PgPool::connect(&pg.url("postgres")).await.unwrap();
    sqlx::query("ALTER SYSTEM SET synchronous_commit = on").execute(&admin).await.unwrap();
    sqlx::query("SELECT pg_reload_conf()").execute(&admin).await.unwrap();
    admin.close().await;
    state_url
}

/// Three daemons share one PostgreSQL state and one SMTP server and work off a backlog of
/// 2 000 due notices. Three times during the dispatch one of them is killed (SIGKILL) and
/// started again, as systemd restarts it. Every notice arrives, all of them within 90 s of the
/// last kill (the dead replica's claims lapse and the others take its rows). A mail goes out
/// twice only if the server took it in the instant its sender was killed, before the sender
/// could record it (nothing can tell the two apart over SMTP): its first copy arrived within a
/// second of a kill, and there are at most as many as connections were open at the kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_killed_during_dispatch_deliver_every_notice_once() {
    const NOTICES: usize = 2000;
    const POOL: usize = 2;
    let pg = TestPostgres::start();
    let state_url = durable_state(&pg, "kills").await;
    let smtp = TestSmtp::start().await;
    // A busy server: 20 ms to queue each message, so that the backlog takes seconds to send
    // (each sender keeps its connection open from mail to mail).
    smtp.set_data_delay(Duration::from_millis(20));
    let ws = TestApp::sqlite();
    overdue_register(&ws.path("register.db"), NOTICES).await;
    let config = ws.config_with(
        "poll_interval = \"2s\"",
        &format!(
            "transport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout = \"5s\"\n\
             pool_size = {POOL}\n[units.default]\nteam_leads = [\"gruppledare@kommun.example\"]\n\
             managers = [\"enhetschef@kommun.example\"]\n",
            smtp.port()
        ),
    );
    let log = |name: String| std::fs::File::create(ws.path(&format!("{name}.log"))).unwrap();
    let mut daemons: Vec<(ChildGuard, u16)> = (0..3)
        .map(|i| {
            let port = free_port();
            (daemon_logging(&config, port, &state_url, log(format!("daemon-{i}-0"))), port)
        })
        .collect();
    let started = Instant::now();
    let first = until("the first mail", Duration::from_secs(120), || smtp.count() > 0).await;

    // Kill one daemon after 15 %, 35 % and 55 % of the backlog arrived, each time another one,
    // and start it again at once.
    let mut kills: Vec<Instant> = Vec::new();
    for (round, share) in [15, 35, 55].into_iter().enumerate() {
        until("the backlog to go on", Duration::from_secs(60), || smtp.count() * 100 >= NOTICES * share).await;
        let (guard, _) = &mut daemons[round];
        guard.child_mut().kill().unwrap();
        kills.push(Instant::now());
        guard.child_mut().wait().unwrap();
        let port = free_port();
        daemons[round] = (daemon_logging(&config, port, &state_url, log(format!("daemon-{round}-1"))), port);
    }
    let last_kill = *kills.last().unwrap();
    let at_last_kill = smtp.count();
    // Every replica, the restarted ones included, ready again within 30 s of the last kill
    // (the lease a killed holder kept lapses within state.lease_ttl).
    let ports: Vec<u16> = daemons.iter().map(|(_, port)| *port).collect();
    let ready_again = until("every replica ready again", Duration::from_secs(30), || {
        ports.iter().all(|port| status(*port, "/readyz") == Some(200))
    })
    .await;

    // Every notice sent and nothing left in the outbox, within 90 s of the last kill.
    let pool = sqlx::PgPool::connect(&state_url).await.unwrap();
    let mut open = i64::MAX;
    let mut sent = 0i64;
    while open > 0 || sent < NOTICES as i64 {
        assert!(
            last_kill.elapsed() < Duration::from_secs(90),
            "not delivered within 90 s of the last kill: {sent} sent, {open} open, {} mails",
            smtp.count()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        open = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'retrying')")
            .fetch_one(&pool)
            .await
            .unwrap();
        sent = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'sent'").fetch_one(&pool).await.unwrap();
    }
    let delivered_after_last_kill = last_kill.elapsed();
    pool.close().await;

    // The notices (a manager's daily digest may go out too, depending on when the day's digests
    // were decided).
    let messages: Vec<_> = smtp.messages().into_iter().filter(is_notice).collect();
    let mut per_id: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for m in &messages {
        per_id.entry(m.header("Message-ID").unwrap_or_default()).or_default().push(m.received_at);
    }
    let doubled: Vec<(&String, &Vec<Instant>)> = per_id.iter().filter(|(_, at)| at.len() > 1).collect();
    // A mail written to the socket by a sender just killed still reaches the server (the kernel
    // sends what the process wrote), so "in flight at a kill" is within a second either side.
    let in_doubt_at_a_kill = |first: Instant| {
        kills.iter().any(|kill| {
            let apart = if first <= *kill { kill.duration_since(first) } else { first.duration_since(*kill) };
            apart < Duration::from_secs(1)
        })
    };
    println!(
        "kill figures: {NOTICES} notices, 3 daemons × {POOL} connections; first mail after {first:?}; kills at {:?} \
         after start ({} mails at the last); every replica ready {ready_again:?} after the last kill; every notice sent {delivered_after_last_kill:?} after the last kill; \
         {} mails, {} distinct Message-IDs, {} sent twice (each a mail taken by the server in the instant its \
         sender was killed)",
        kills.iter().map(|k| k.duration_since(started)).collect::<Vec<_>>(),
        at_last_kill,
        messages.len(),
        per_id.len(),
        doubled.len()
    );
    for (id, at) in &doubled {
        println!("sent twice: {id} at {:?}", at.iter().map(|t| t.duration_since(started)).collect::<Vec<_>>());
    }
    // Whatever went wrong in a daemon, for the reader of a failure.
    for entry in std::fs::read_dir(ws.dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).take(5).collect();
            if !errors.is_empty() {
                println!("{}: {errors:#?}", path.display());
            }
        }
    }
    assert_eq!(per_id.len(), NOTICES, "every notice received");
    assert_eq!(sent, NOTICES as i64);
    for (id, at) in &doubled {
        assert_eq!(at.len(), 2, "{id} sent {} times", at.len());
        assert!(in_doubt_at_a_kill(at[0]), "{id} sent twice, its first copy not in flight at a kill");
    }
    assert!(doubled.len() <= kills.len() * POOL, "{} mails sent twice", doubled.len());
    assert!(delivered_after_last_kill < Duration::from_secs(90));
    for (mut guard, port) in daemons {
        guard.terminate();
        let exit = guard.wait_timeout(Duration::from_secs(30)).expect("the daemon stops on SIGTERM");
        assert_eq!(exit.code(), Some(0));
        assert!(status(port, "/healthz").is_none());
    }
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
    let ws = TestApp::sqlite();
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
    // A 60-second outage (issue "Nothing stalls the daemon"): the daemons live through it.
    let rest = Duration::from_secs(60).saturating_sub(outage.elapsed()).max(Duration::from_secs(3));
    tokio::time::sleep(rest).await;
    assert!(a.child_mut().try_wait().unwrap().is_none(), "daemon a died during the outage");
    assert!(b.child_mut().try_wait().unwrap().is_none(), "daemon b died during the outage");
    assert_eq!(status(port_a, "/healthz"), Some(200));

    pg.restart();
    let down_for = outage.elapsed();
    // Ready again within 30 s of the database's return.
    let recovered = until("/readyz 200 on both again", Duration::from_secs(30), || {
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

/// The last successful poll's time from /metrics (seconds since the epoch).
fn last_poll(port: u16) -> Option<f64> {
    let (_, metrics) = get(port, "/metrics")?;
    metrics
        .lines()
        .find(|l| l.starts_with("fristvakt_last_successful_poll_timestamp_seconds "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

fn metric_line(port: u16, name: &str) -> Option<String> {
    let (_, metrics) = get(port, "/metrics")?;
    metrics.lines().find(|l| l.starts_with(name)).map(str::to_string)
}

/// A mail server that accepts connections and never says a word, under the real daemon with a
/// systemd watchdog: the daemon stays ready, the watchdog keeps being fed and the job loop keeps
/// polling (each dispatch run gives up on the server within its timeout and pauses, visibly in
/// /metrics); no notice is spent on it. When the server answers again, every notice goes out,
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_mail_server_never_stalls_the_daemon_and_loses_nothing() {
    const NOTICES: usize = 20;
    let mut smtp = TestSmtp::start().await;
    smtp.set_mode(SmtpMode::Silent);
    let ws = TestApp::sqlite();
    overdue_register(&ws.path("register.db"), NOTICES).await;
    let port = free_port();
    let config = ws.config_with(
        "poll_interval = \"1s\"",
        &format!(
            "transport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout = \"1s\"\n\
             [units.default]\nteam_leads = [\"gruppledare@kommun.example\"]\nmanagers = [\"enhetschef@kommun.example\"]\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n",
            smtp.port()
        ),
    );
    let mut notify = Notify::bind(&ws.path("notify.sock"));
    let mut daemon = spawn_watched_daemon(&config, &ws.path("notify.sock"), "1000000", "warn", Stdio::null());
    notify.wait_for("READY=1", Duration::from_secs(60));
    until("/readyz 200", Duration::from_secs(30), || status(port, "/readyz") == Some(200)).await;

    // Eight seconds of silence from the mail server.
    let silence = Instant::now();
    let first_poll = last_poll(port).unwrap_or_default();
    notify.seen.clear();
    let mut ready_checks = 0;
    let mut pings = 0;
    while silence.elapsed() < Duration::from_secs(8) {
        // A new ping each time: what was seen is forgotten, and the next one awaited.
        notify.seen.clear();
        notify.wait_for("WATCHDOG=1", Duration::from_secs(3));
        pings += 1;
        assert_eq!(status(port, "/readyz"), Some(200), "ready while the mail server is silent");
        ready_checks += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let polled_for = last_poll(port).unwrap_or_default() - first_poll;
    let paused = metric_line(port, "fristvakt_dispatch_paused ");
    let timeouts = metric_line(port, "fristvakt_smtp_errors_total{class=\"timeout\"}");
    assert!(daemon.child_mut().try_wait().unwrap().is_none(), "the daemon lives");
    assert_eq!(smtp.count(), 0);
    assert!(pings >= 6, "the watchdog fed every half second: {pings} fresh pings in 8 s");
    assert!(polled_for >= 5.0, "the job loop kept polling: the last poll moved {polled_for} s in 8 s");
    assert_eq!(paused.as_deref(), Some("fristvakt_dispatch_paused 1"), "{paused:?}");

    // The server answers again: every notice goes out, once.
    smtp.set_mode(SmtpMode::Accept);
    let back = Instant::now();
    until("every notice delivered", Duration::from_secs(60), || {
        smtp.messages().iter().filter(|m| is_notice(m)).count() >= NOTICES
    })
    .await;
    let delivered_in = back.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The notices (a manager's daily digest may go out too, depending on when the day's digests
    // were decided).
    let messages: Vec<_> = smtp.messages().into_iter().filter(is_notice).collect();
    let ids: std::collections::BTreeSet<String> =
        messages.iter().map(|m| m.header("Message-ID").unwrap_or_default()).collect();
    println!(
        "silent server figures: {ready_checks} /readyz checks all 200, {pings} watchdog pings and polls over \
         {polled_for:.0} s in 8 s of silence, {timeouts:?}; {NOTICES} notices delivered {delivered_in:?} after the \
         server answered again, {} mails, {} distinct",
        messages.len(),
        ids.len()
    );
    assert_eq!((messages.len(), ids.len()), (NOTICES, NOTICES), "each notice once");
    assert_eq!(metric_line(port, "fristvakt_dispatch_paused ").as_deref(), Some("fristvakt_dispatch_paused 0"));
    daemon.terminate();
    assert_eq!(daemon.wait_timeout(Duration::from_secs(30)).and_then(|e| e.code()), Some(0));
    smtp.stop().await;
}

/// Whether a mail is a notice about one of the cases of [`overdue_register`].
fn is_notice(mail: &crate::support::smtp::ReceivedMail) -> bool {
    mail.header("Subject").is_some_and(|s| s.contains("2026-KILL-"))
}

/// Every poll counted in /metrics (`fristvakt_polls_total`, all passes and results).
fn polls_total(port: u16) -> Option<f64> {
    let (_, metrics) = get(port, "/metrics")?;
    Some(
        metrics
            .lines()
            .filter(|l| l.starts_with("fristvakt_polls_total{"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .sum(),
    )
}

/// A mail server that accepts connections and never answers, with the default 30 s SMTP
/// timeout: a dispatch run waits for its greeting all that time, and the polls go on at their
/// own interval meanwhile (poll, dispatch and digest are jobs of their own), with the watchdog
/// fed throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_server_that_never_answers_never_delays_a_poll() {
    const NOTICES: usize = 5;
    let smtp = TestSmtp::start().await;
    smtp.set_mode(SmtpMode::Silent);
    let ws = TestApp::sqlite();
    overdue_register(&ws.path("register.db"), NOTICES).await;
    let port = free_port();
    let config = ws.config_with(
        "poll_interval = \"2s\"",
        &format!(
            "transport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout = \"30s\"\n\
             [units.default]\nteam_leads = [\"gruppledare@kommun.example\"]\nmanagers = [\"enhetschef@kommun.example\"]\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n",
            smtp.port()
        ),
    );
    let mut notify = Notify::bind(&ws.path("notify.sock"));
    let mut daemon = spawn_watched_daemon(&config, &ws.path("notify.sock"), "2000000", "warn", Stdio::null());
    notify.wait_for("READY=1", Duration::from_secs(60));
    until("the first poll", Duration::from_secs(30), || polls_total(port).is_some_and(|n| n >= 1.0)).await;
    until("a connection to the silent server", Duration::from_secs(30), || smtp.connections() > 0).await;

    // 12 s of a dispatch run waiting on the silent server's greeting.
    let before = polls_total(port).unwrap();
    let window = Instant::now();
    let mut pings = 0;
    while window.elapsed() < Duration::from_secs(12) {
        notify.seen.clear();
        notify.wait_for("WATCHDOG=1", Duration::from_secs(3));
        pings += 1;
    }
    let polls = polls_total(port).unwrap() - before;
    println!(
        "silent server, 30 s SMTP timeout, poll_interval 2 s: {polls} polls and {pings} watchdog pings in {:?}; \
         {} mails",
        window.elapsed(),
        smtp.count()
    );
    assert!(daemon.child_mut().try_wait().unwrap().is_none(), "the daemon lives");
    assert!(polls >= 4.0, "polls went on at their interval: {polls} in 12 s");
    assert!(pings >= 6, "the watchdog was fed: {pings} pings in 12 s");
    assert_eq!(smtp.count(), 0);
    daemon.terminate();
    assert!(daemon.wait_timeout(Duration::from_secs(40)).is_some(), "the daemon stops on SIGTERM");
}

/// Whether the replica on `port` holds the poll lease (`fristvakt_poll_lease_held`).
fn holds_lease(port: u16) -> bool {
    metric_line(port, "fristvakt_poll_lease_held ").is_some_and(|l| l.ends_with(" 1"))
}

/// Three replicas on one PostgreSQL state, `poll_interval = 5m`: the lease holder is killed
/// (SIGKILL, nothing released) and another replica takes the lease over and polls within 30 s
/// (`state.lease_ttl`), not after the dead holder's poll interval; every survivor answers
/// /readyz 200 within 1 s throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lease_holder_is_replaced_within_the_lease_ttl() {
    let pg = TestPostgres::start();
    let state_url = pg.create_database("lease").await;
    let ws = TestApp::sqlite();
    let config = ws.config_with("poll_interval = \"5m\"", "");
    let out = fristvakt(Some(&config), &["demo-data", "--cases", "50"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut replicas: Vec<(ChildGuard, u16)> = (0..3)
        .map(|_| {
            let port = free_port();
            (daemon(&config, port, &state_url), port)
        })
        .collect();
    let ready = until("every replica ready and one holding the lease", Duration::from_secs(90), || {
        replicas.iter().all(|(_, port)| status(*port, "/readyz") == Some(200))
            && replicas.iter().filter(|(_, port)| holds_lease(*port)).count() == 1
    })
    .await;
    let holder = replicas.iter().position(|(_, port)| holds_lease(*port)).unwrap();
    let (mut dead, dead_port) = replicas.remove(holder);
    let polls_before: Vec<f64> = replicas.iter().map(|(_, port)| polls_total(*port).unwrap()).collect();
    dead.child_mut().kill().unwrap();
    let killed = Instant::now();
    dead.child_mut().wait().unwrap();

    let mut slowest_readyz = Duration::ZERO;
    let taken_over = until("a survivor to take the lease and poll", Duration::from_secs(45), || {
        for (_, port) in &replicas {
            let asked = Instant::now();
            assert_eq!(status(*port, "/readyz"), Some(200), "a survivor stays ready");
            slowest_readyz = slowest_readyz.max(asked.elapsed());
        }
        replicas
            .iter()
            .zip(&polls_before)
            .any(|((_, port), before)| holds_lease(*port) && polls_total(*port).is_some_and(|n| n > *before))
    })
    .await;
    println!(
        "lease figures: 3 replicas ready after {ready:?}; holder (port {dead_port}) killed; a survivor held the \
         lease and polled {taken_over:?} later (lease_ttl 30 s, poll_interval 5 m); slowest /readyz {slowest_readyz:?}"
    );
    assert!(killed.elapsed() < Duration::from_secs(45));
    assert!(taken_over <= Duration::from_secs(30), "taken over after {taken_over:?}");
    assert!(taken_over >= Duration::from_secs(5), "the lease held a while after the kill: {taken_over:?}");
    assert!(slowest_readyz < Duration::from_secs(1), "{slowest_readyz:?}");
    assert_eq!(replicas.iter().filter(|(_, port)| holds_lease(*port)).count(), 1, "one holder");
    for (mut guard, _) in replicas {
        guard.terminate();
        assert_eq!(guard.wait_timeout(Duration::from_secs(30)).and_then(|e| e.code()), Some(0));
    }
}

/// A daemon alone on a SQLite state, killed (SIGKILL: its poll lease stays in the state) and
/// started again: the new one holds the state's lock, so it takes the lease at once and polls;
/// so does `poll --once` while no daemon runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_daemon_killed_and_restarted_polls_at_once() {
    let ws = TestApp::sqlite();
    let port = free_port();
    let config = ws.config_with("demo_cases = 30\npoll_interval = \"5m\"", "");
    let text = std::fs::read_to_string(&config).unwrap().replace("[state]\n", "[state]\nlease_ttl = \"1h\"\n");
    std::fs::write(&config, text).unwrap();
    let state_url = ws.sqlite_url("state.db");
    let mut first = daemon(&config, port, &state_url);
    until("the first daemon ready", Duration::from_secs(60), || status(port, "/readyz") == Some(200)).await;
    assert!(holds_lease(port));
    first.child_mut().kill().unwrap();
    first.child_mut().wait().unwrap();

    let out = fristvakt(Some(&config), &["poll", "--once"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = crate::helpers::stdout(&out);
    assert!(said.starts_with("poll "), "poll --once polled though the dead daemon's lease lasts an hour: {said}");

    let restarted = Instant::now();
    let _second = daemon(&config, port, &state_url);
    until("the restarted daemon polling", Duration::from_secs(30), || {
        holds_lease(port) && polls_total(port).is_some_and(|n| n >= 1.0)
    })
    .await;
    println!(
        "sqlite restart: the restarted daemon held the lease and polled {:?} after its start",
        restarted.elapsed()
    );
}

/// `poll --once` with 2 000 notices due (four times a dispatch run's bound): with the mail
/// server down it exits 1 and says how many are left; with the server back, one `poll --once`
/// sends all 2 000, each once, run after run, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_once_sends_every_due_notice() {
    const NOTICES: usize = 2000;
    let mut smtp = TestSmtp::start().await;
    let ws = TestApp::sqlite();
    overdue_register(&ws.path("register.db"), NOTICES).await;
    let config = ws.config(&format!(
        "transport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout = \"5s\"\n\
         [units.default]\nteam_leads = [\"gruppledare@kommun.example\"]\nmanagers = [\"enhetschef@kommun.example\"]\n",
        smtp.port()
    ));
    smtp.stop().await;
    let down = fristvakt(Some(&config), &["poll", "--once"], &[]);
    let said = stderr(&down);
    assert_eq!(down.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("{NOTICES} mail(s) left")), "{said}");

    smtp.restart().await;
    let started = Instant::now();
    let up = fristvakt(Some(&config), &["poll", "--once"], &[]);
    let took = started.elapsed();
    let out = crate::helpers::stdout(&up);
    assert!(up.status.success(), "{out}{}", stderr(&up));
    let messages: Vec<_> = smtp.messages().into_iter().filter(is_notice).collect();
    let ids: std::collections::BTreeSet<String> =
        messages.iter().map(|m| m.header("Message-ID").unwrap_or_default()).collect();
    println!(
        "poll --once figures: server down: exit 1, {:?}; server up: {} mails, {} distinct, in {took:?}; {}",
        said.trim(),
        messages.len(),
        ids.len(),
        out.lines().last().unwrap_or_default()
    );
    assert_eq!((messages.len(), ids.len()), (NOTICES, NOTICES), "every notice once");
    assert!(out.contains(&format!("mail: sent {NOTICES},")), "{out}");
}

/// A relay that answers a message's final `.` only after 3 s (it scans the content), with
/// `mail.smtp.timeout = 1s`: the reply is awaited for `mail.smtp.data_timeout` (5 s), so each
/// notice is delivered once and recorded sent. With a data timeout shorter than the relay's
/// scan (2 s), the mail is left unconfirmed: counted in `fristvakt_deliveries_unconfirmed_total`,
/// kept for a retry after the data timeout and not sent again meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_slow_to_answer_the_final_dot_gets_each_mail_once() {
    const NOTICES: usize = 3;
    let smtp = TestSmtp::start().await;
    smtp.set_data_delay(Duration::from_secs(3));
    let ws = TestApp::sqlite();
    overdue_register(&ws.path("register.db"), NOTICES).await;
    let smtp_config = |data_timeout: &str, port: u16| {
        format!(
            "transport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout = \"1s\"\n\
             data_timeout = \"{data_timeout}\"\npool_size = 1\n[units.default]\nteam_leads = [\"gruppledare@kommun.example\"]\n\
             managers = [\"enhetschef@kommun.example\"]\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            smtp.port()
        )
    };
    let config = ws.config(&smtp_config("5s", free_port()));
    let started = Instant::now();
    let out = fristvakt(Some(&config), &["poll", "--once"], &[]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let notices: Vec<_> = smtp.messages().into_iter().filter(is_notice).collect();
    let ids: std::collections::BTreeSet<String> =
        notices.iter().map(|m| m.header("Message-ID").unwrap_or_default()).collect();
    let state = sqlx::SqlitePool::connect(&ws.sqlite_url("state.db")).await.unwrap();
    let unsent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'retrying')")
        .fetch_one(&state)
        .await
        .unwrap();
    state.close().await;
    println!(
        "slow final dot (3 s; timeout 1 s, data_timeout 5 s): {} mails, {} distinct, {unsent} unsent, in {took:?}; {}",
        notices.len(),
        ids.len(),
        crate::helpers::stdout(&out).lines().last().unwrap_or_default()
    );
    assert_eq!((notices.len(), ids.len(), unsent), (NOTICES, NOTICES, 0), "each notice once, recorded sent");

    // A data timeout shorter than the relay's scan: unconfirmed, not sent again soon.
    let ws = TestApp::sqlite();
    overdue_register(&ws.path("register.db"), 1).await;
    smtp.clear();
    let port = free_port();
    let config = ws.config_with("poll_interval = \"1s\"", &smtp_config("2s", port));
    let mut daemon = daemon(&config, port, &ws.sqlite_url("state.db"));
    let line = "fristvakt_deliveries_unconfirmed_total";
    until("a delivery counted unconfirmed", Duration::from_secs(60), || {
        metric_line(port, line).is_some_and(|l| l != format!("{line} 0"))
    })
    .await;
    let counted = metric_line(port, line);
    // The dispatch job runs after every poll (each second): none sends the mail again before
    // its data timeout has passed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let copies = smtp.messages().into_iter().filter(is_notice).count();
    let state = sqlx::SqlitePool::connect(&ws.sqlite_url("state.db")).await.unwrap();
    let (row_state, error): (String, Option<String>) =
        sqlx::query_as("SELECT state, last_error FROM outbox WHERE notice_key LIKE 'notice/%' AND state <> 'skipped'")
            .fetch_one(&state)
            .await
            .unwrap();
    state.close().await;
    println!(
        "slow final dot (3 s; data_timeout 2 s): {counted:?}, {copies} copy in 4 s after, row {row_state}: {error:?}"
    );
    assert_eq!(counted.as_deref(), Some("fristvakt_deliveries_unconfirmed_total 1"));
    assert_eq!(copies, 1, "not sent again within the data timeout");
    assert_eq!(row_state, "retrying");
    assert!(error.is_some_and(|e| e.contains("unconfirmed")));
    daemon.terminate();
    assert_eq!(daemon.wait_timeout(Duration::from_secs(30)).and_then(|e| e.code()), Some(0));
}

/// A PostgreSQL register view under `LOCK TABLE … ACCESS EXCLUSIVE` (a TRUNCATE, an ALTER, a
/// plain REFRESH MATERIALIZED VIEW) for at least 20 s: each poll gives up after
/// `register.lock_timeout` (the reconnect's column probe included: a lock timeout is an error,
/// never a feature off) and is counted failed, the daemon lives on, and the mail already in the
/// outbox goes out meanwhile; once the lock is gone, the daemon is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_register_view_stops_no_mail() {
    let pg = TestPostgres::start();
    let register_url = pg.create_database("locked").await;
    let today = chrono::Utc::now().date_naive();
    crate::helpers::postgres_register(&register_url, crate::helpers::demo_cases(200, 3, today, 0)).await;
    // Whatever the demo gives on the day the test runs, three cases are overdue, so that a
    // notice is due at once (on 2026-12-07 the demo's 200 cases had no deadline passed).
    let writer = sqlx::PgPool::connect(&register_url).await.unwrap();
    for i in 0..3 {
        sqlx::query(
            "INSERT INTO cases (case_ref, unit, caseworker, child_sex, received_on, protection_assessed_on, updated_at) \
             VALUES ($1, 'BRO-BU', 'hl@kommun.example', 'F', CAST($2 AS date), CAST($2 AS date), now())",
        )
        .bind(format!("2026-LOCK-{i:05}"))
        .bind((today - chrono::Duration::days(20)).format("%Y-%m-%d").to_string())
        .execute(&writer)
        .await
        .unwrap();
    }
    writer.close().await;
    let smtp = TestSmtp::start().await;
    smtp.set_mode(SmtpMode::Silent);
    let ws = TestApp::sqlite();
    let port = free_port();
    let config = ws.config_with(
        "poll_interval = \"2s\"\nlock_timeout = \"2s\"\nstatement_timeout = \"5s\"",
        &format!(
            "transport = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout = \"1s\"\n",
            smtp.port()
        ),
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("url = \"{}\"", ws.sqlite_url("register.db")), &format!("url = \"{register_url}\""));
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(ws.path("daemon.log")).unwrap();
    let mut daemon = daemon_logging(&config, port, &ws.sqlite_url("state.db"), log);
    until("a first poll and a dispatch run paused on the silent server", Duration::from_secs(60), || {
        metric_line(port, "fristvakt_polls_total{pass=\"full\",result=\"ok\"}").is_some_and(|l| !l.ends_with(" 0"))
            && smtp.connections() > 0
    })
    .await;

    let locker = sqlx::PgPool::connect(&register_url).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE cases IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let locked = Instant::now();
    let polls_before = polls_total(port).unwrap();
    smtp.set_mode(SmtpMode::Accept);
    // The dispatch job's next run (every 30 s, the last one paused on the silent server);
    // /readyz answers at once meanwhile.
    let mut slowest_readyz = Duration::ZERO;
    let mut readyz = None;
    let mut ask = || {
        let asked = Instant::now();
        readyz = get(port, "/readyz");
        slowest_readyz = slowest_readyz.max(asked.elapsed());
    };
    let delivered = until("the outbox's mail delivered under the lock", Duration::from_secs(40), || {
        ask();
        smtp.count() > 0
    })
    .await;
    // The lock is held 60 s, as the operator found it.
    while locked.elapsed() < Duration::from_secs(60) {
        ask();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let held = locked.elapsed();
    let failed_polls = metric_line(port, "fristvakt_polls_total{pass=\"incremental\",result=\"error\"}");
    let polls_under_lock = polls_total(port).unwrap() - polls_before;
    let mails_under_lock = smtp.count();
    assert!(daemon.child_mut().try_wait().unwrap().is_none(), "the daemon lives under the lock");
    lock.commit().await.unwrap();
    locker.close().await;
    let recovered = until("ready again after the lock", Duration::from_secs(30), || {
        status(port, "/readyz") == Some(200)
            && metric_line(port, "fristvakt_polls_total{pass=\"incremental\",result=\"ok\"}")
                .is_some_and(|l| !l.ends_with(" 0"))
    })
    .await;
    println!(
        "locked view figures: lock held {held:?} with lock_timeout 2 s, poll_interval 2 s: {polls_under_lock} polls \
         ({failed_polls:?}); first mail {delivered:?} into the lock, {mails_under_lock} mails under it; slowest \
         /readyz {slowest_readyz:?}, last {readyz:?}; ready again {recovered:?} after the lock ended"
    );
    let log = std::fs::read_to_string(ws.path("daemon.log")).unwrap();
    for line in log.lines().filter(|l| l.contains("poll")).take(4) {
        println!("daemon: {}", line.chars().take(300).collect::<String>());
    }
    assert!(polls_under_lock >= 4.0, "polls went on (and failed fast) under the lock: {polls_under_lock}");
    assert!(failed_polls.is_some_and(|l| !l.ends_with(" 0")));
    assert!(mails_under_lock > 0);
    assert!(readyz.is_some_and(|(code, _)| code == 503), "/readyz answered, not ready, under the lock");
    assert!(slowest_readyz < Duration::from_secs(1), "{slowest_readyz:?}");
    daemon.terminate();
    assert_eq!(daemon.wait_timeout(Duration::from_secs(30)).and_then(|e| e.code()), Some(0));
}
