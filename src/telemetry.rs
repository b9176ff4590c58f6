//! Log setup. Log lines never carry personal data: only case references, unit codes, counts and
//! reasons are ever logged.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.filter`. Logs go to
/// standard error so that command output on standard out stays clean.
pub fn init(settings: &LogSettings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(&settings.filter));
    let format = match settings.format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Pretty,
        // Under systemd, journald adds its own timestamps.
        LogFormat::Auto => LogFormat::Plain,
        other => other,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Plain if std::env::var_os("JOURNAL_STREAM").is_some() => {
            builder.with_ansi(false).without_time().with_target(false).try_init()
        }
        LogFormat::Plain => builder.with_ansi(false).with_target(false).try_init(),
        _ => builder.compact().with_target(false).try_init(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    drop(result);
}
