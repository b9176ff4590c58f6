//! Log setup. Log lines never carry personal data: only case references, unit codes, counts and
//! reasons are ever logged.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.filter`; `quiet` (the
/// commands that only show) keeps only warnings and errors unless `RUST_LOG` is set. Logs go to
/// standard error so that command output on standard out stays clean; a closed standard error
/// is ignored (never a panic, never a message about it).
///
/// Under journald (`JOURNAL_STREAM` set and the plain format), each line starts with its
/// syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), which journald takes
/// as the entry's priority: `journalctl -u fristvakt -p warning` finds the warnings.
pub fn init(settings: &LogSettings, quiet: bool) {
    let filter = match std::env::var("RUST_LOG").ok().and_then(|f| EnvFilter::try_new(f).ok()) {
        Some(filter) => filter,
        None if quiet => EnvFilter::new("warn"),
        None => EnvFilter::new(&settings.filter),
    };
    let format = match settings.format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Pretty,
        // Under systemd, journald adds its own timestamps.
        LogFormat::Auto => LogFormat::Plain,
        other => other,
    };
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Plain if under_journald() => builder
            .event_format(JournalPriority(
                tracing_subscriber::fmt::format().with_ansi(false).without_time().with_target(false),
            ))
            .try_init(),
        LogFormat::Plain => builder.with_ansi(false).with_target(false).try_init(),
        _ => builder.compact().with_target(false).try_init(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    drop(result);
}

/// Whether standard error goes to the journal (systemd sets `JOURNAL_STREAM` for a service
/// whose output is connected to it).
fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// The syslog priority journald reads from a line's `<N>` prefix (sd-daemon(3)).
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// An event format that puts the syslog priority before the inner format's line.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}
