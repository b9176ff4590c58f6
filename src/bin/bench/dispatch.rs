//! Dispatch into a loopback SMTP sink beside a bare client's rate (goal ≥ 0.8×).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{NaiveDate, TimeZone, Utc};

use fristvakt::app::{App, Moment};
use fristvakt::config::{self, DatabaseUrl, Engine};
use fristvakt::demo;
use fristvakt::{jobs, register};

use crate::engine_name;
use crate::process::process_cpu;
use crate::table::{row, secs, At, Goal, Timing};

/// Connections the dispatcher and the minimal client keep open at once.
pub(crate) const SMTP_CONNECTIONS: usize = 4;

/// Dispatch against a loopback SMTP sink, beside a minimal client sending as many bare messages
/// the same way (a connection each, `SMTP_CONNECTIONS` at once): goal ≥ 80 % of its rate.
pub(crate) async fn dispatch_bench(notices: usize, dir: &Path) -> Result<()> {
    let (port, accepted) = smtp_sink().await?;
    let t = Instant::now();
    let cpu = process_cpu();
    let mut clients = Vec::new();
    for i in 0..SMTP_CONNECTIONS {
        let share = notices / SMTP_CONNECTIONS + usize::from(i < notices % SMTP_CONNECTIONS);
        clients.push(tokio::spawn(async move {
            for _ in 0..share {
                bare_message(port).await?;
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    for client in clients {
        client.await??;
    }
    let baseline = Timing(vec![t.elapsed()]);
    let client_cpu = process_cpu().zip(cpu).map(|(after, before)| after.saturating_sub(before));
    anyhow::ensure!(accepted.load(std::sync::atomic::Ordering::Relaxed) == notices, "the sink lost messages");

    // A register of cases reported 20 days ago, none assessed: one notice each, due now.
    let today = NaiveDate::from_ymd_opt(2026, 11, 25).context("date")?;
    let received = (today - chrono::Duration::days(20)).to_string();
    let cases = (0..notices).map(|i| register::RawRow {
        case_ref: Some(format!("2026-BU-{i:06}")),
        unit: Some(["BRO-BU", "SKH-BU", "NOR-BU"][i % 3].to_string()),
        caseworker: Some("handlaggare@kommun.example".into()),
        child_sex: Some(if i % 2 == 0 { "F" } else { "M" }.into()),
        received_on: Some(received.clone()),
        protection_assessed_on: Some(received.clone()),
        updated_at: Some("2026-11-01T08:00:00.000000Z".into()),
        ..register::RawRow::default()
    });
    let register_url = format!("sqlite://{}", dir.join("register.db").display());
    let url = DatabaseUrl::parse(&register_url).map_err(|e| anyhow::anyhow!(e))?;
    demo::write_demo_cases(&url, "fristvakt_cases", cases).await?;
    let config = dir.join("mail.toml");
    std::fs::write(
        &config,
        format!(
            "[register]\nurl = \"{register_url}\"\n[state]\nurl = \"sqlite://{}\"\n[mail]\ntransport = \"smtp\"\n\
             send_window = \"always\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             pool_size = {SMTP_CONNECTIONS}\n[units.default]\nteam_leads = [\"gruppledare@kommun.example\"]\n\
             managers = [\"enhetschef@kommun.example\"]\n",
            dir.join("state.db").display()
        ),
    )?;
    let settings = Arc::new(config::load_with_env(Some(&config), Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))?);
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).single().context("now")?;
    let app = App::start(settings, "bench", now).await?;
    let enqueued = jobs::full_pass::run_once(&app, Moment::on(today, now)).await?.context("the poll lease")?;
    let due = enqueued.ladder.notices_enqueued() as usize;
    accepted.store(0, std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let cpu = process_cpu();
    let mut sent = 0;
    loop {
        let report = jobs::dispatch::run_once(&app, Moment::on(today, now)).await?;
        if report.total_sent() == 0 {
            break;
        }
        sent += report.total_sent() as usize;
    }
    let dispatch = Timing(vec![t.elapsed()]);
    let dispatch_cpu = process_cpu().zip(cpu).map(|(after, before)| after.saturating_sub(before));
    app.close().await;
    anyhow::ensure!(sent == due && accepted.load(std::sync::atomic::Ordering::Relaxed) == due, "not every notice");
    // Rates, so that the ratio reads as a share of the client's rate (and the goal as ≥ 0.8).
    let rate = |n: usize, t: &Timing| n as f64 / t.median().as_secs_f64();
    let (client_rate, dispatch_rate) = (rate(notices, &baseline), rate(due, &dispatch));
    let at = At { engine: engine_name(Engine::Sqlite), cases: notices };
    // The CPU time of the whole process (sink included) per message: the figure that a loaded
    // machine does not blur.
    let per = |cpu: Option<Duration>, n: usize| match cpu {
        Some(cpu) => format!(", {:.0} µs CPU each", cpu.as_secs_f64() * 1e6 / n.max(1) as f64),
        None => String::new(),
    };
    row(
        at,
        &format!("minimal SMTP client, bare messages ({client_rate:.0}/s{})", per(client_cpu, notices)),
        &baseline,
        None,
        Goal::None,
    );
    let share = dispatch_rate / client_rate;
    println!(
        "| {} | {due} | dispatch of notices to the same sink ({dispatch_rate:.0}/s{}) | {} | {} | {} | {share:.2} of its \
         rate | ≥ 0.8 | {} |",
        at.engine,
        per(dispatch_cpu, due),
        secs(dispatch.min()),
        secs(dispatch.median()),
        secs(baseline.median()),
        if share >= 0.8 { "yes" } else { "**no**" }
    );
    Ok(())
}

/// A loopback SMTP server that takes every message (the sink of the dispatch measurement):
/// its port and the count of messages taken.
pub(crate) async fn smtp_sink() -> Result<(u16, Arc<std::sync::atomic::AtomicUsize>)> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut reader = BufReader::new(reader);
                writer.write_all(b"220 sink\r\n").await?;
                let mut line = String::new();
                let mut in_data = false;
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await? == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            writer.write_all(b"250 queued\r\n").await?;
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            writer.write_all(b"221 bye\r\n").await?;
                            return Ok(());
                        }
                        _ => b"250 ok\r\n",
                    };
                    writer.write_all(reply).await?;
                }
            });
        }
    });
    Ok((port, accepted))
}

/// Reads one SMTP reply: up to the line whose code is followed by a space.
pub(crate) async fn expect(
    reader: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut String,
) -> std::io::Result<()> {
    use tokio::io::AsyncBufReadExt;
    loop {
        line.clear();
        if reader.read_line(line).await? == 0 || line.len() < 4 || line.as_bytes()[3] == b' ' {
            return Ok(());
        }
    }
}

/// One bare message over a connection of its own, as plainly as SMTP allows.
pub(crate) async fn bare_message(port: u16) -> std::io::Result<()> {
    use tokio::io::{AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    expect(&mut reader, &mut line).await?;
    for command in
        [&b"EHLO bench\r\n"[..], b"MAIL FROM:<a@kommun.example>\r\n", b"RCPT TO:<b@kommun.example>\r\n", b"DATA\r\n"]
    {
        writer.write_all(command).await?;
        expect(&mut reader, &mut line).await?;
    }
    writer.write_all(b"Subject: x\r\n\r\nx\r\n.\r\n").await?;
    expect(&mut reader, &mut line).await?;
    writer.write_all(b"QUIT\r\n").await?;
    expect(&mut reader, &mut line).await?;
    Ok(())
}
