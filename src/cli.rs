//! The command line's shape (contract §4), parsed by clap: the binary parses it, and
//! `fristvakt-assets` makes the man page and the shell completions from the same definition.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::rules::Status;
use crate::state::OutboxState;

/// `fristvakt [--config FILE] <command>`.
#[derive(Parser)]
#[command(
    name = "fristvakt",
    version,
    about = "Watches the statutory deadlines of child-welfare cases",
    long_about = "Watches the statutory deadlines of Swedish child-welfare cases: reads the case register, \
                  computes every deadline as the law counts it, and mails the caseworkers, team leads and \
                  managers before and after a deadline passes.",
    after_help = "Exit codes: 0 ok, 1 runtime failure, 2 usage, 78 configuration.\n\
                  Documentation: /usr/share/doc/fristvakt/README.md, man fristvakt"
)]
pub struct Cli {
    /// Configuration file (TOML); defaults to the built-in configuration.
    #[arg(long, global = true, env = "FRISTVAKT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon: poll, send notices and digests, serve HTTP, until SIGTERM/SIGINT.
    #[command(after_help = "Example:\n  fristvakt --config /etc/fristvakt/fristvakt.toml run\n\n\
                            SIGHUP is logged and ignored: restart the service to load a changed configuration.")]
    Run,
    /// Validate the configuration; list every problem with its key.
    #[command(after_help = "Example:\n  sudo fristvakt --config /etc/fristvakt/fristvakt.toml check-config\n\n\
                            Outside systemd, a mail.smtp.password_file under /run/credentials/UNIT/ is read from \
                            the unit's LoadCredential= source instead (run it as root).")]
    CheckConfig,
    /// Create or upgrade the state database.
    #[command(after_help = "Example:\n  fristvakt --config /etc/fristvakt/fristvakt.toml migrate")]
    Migrate,
    /// Read the register once, compute deadlines, send due notices, and exit.
    #[command(after_help = "Examples:\n  fristvakt poll --once\n  fristvakt poll --once --dry-run    \
                            # what a first start would send, nothing written or sent")]
    Poll {
        /// Required: run one poll and exit (the daemon polls on its own schedule).
        #[arg(long, required = true)]
        once: bool,
        #[command(flatten)]
        today: Today,
        /// Re-read the whole register, not only rows changed since the last poll.
        #[arg(long)]
        full: bool,
        /// Print the notices this poll would send (grouped by kind and step), and write or send
        /// nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print computed deadlines.
    #[command(after_help = "Examples:\n  fristvakt deadlines --status overdue\n  \
                            fristvakt deadlines --unit BRO-BU --format json --today 2026-12-01\n\n\
                            Unit codes are case-sensitive.")]
    Deadlines {
        #[command(flatten)]
        today: Today,
        /// Only this unit (its code, case-sensitive).
        #[arg(long)]
        unit: Option<String>,
        /// Only this status (met, missed, overdue, due_today, due_soon, pending).
        #[arg(long, value_parser = parse_status)]
        status: Option<Status>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Read the register now and compute every deadline in memory, instead of the state as
        /// of the last poll.
        #[arg(long)]
        fresh: bool,
    },
    /// Explain, step by step, how each deadline of one case was computed.
    #[command(after_help = "Example:\n  fristvakt explain 2026-BU-00537 --today 2026-12-01")]
    Explain {
        case_ref: String,
        #[command(flatten)]
        today: Today,
    },
    /// Send a short test mail through the configured transport.
    #[command(after_help = "Example:\n  fristvakt send-test-mail --to drift@kommun.example")]
    SendTestMail {
        /// The address to send it to.
        #[arg(long, value_name = "ADDR")]
        to: String,
    },
    /// Print the daily digests that would be sent (nothing is sent or recorded).
    #[command(after_help = "Example:\n  fristvakt digest --dry-run --manager ec.bromma@kommun.example")]
    Digest {
        /// Required: print instead of sending (the daemon sends digests on its schedule).
        #[arg(long, required = true)]
        dry_run: bool,
        #[command(flatten)]
        today: Today,
        /// Only the digest of this manager's address.
        #[arg(long, value_name = "ADDR")]
        manager: Option<String>,
        /// Read the register now and compute every deadline in memory, instead of the state as
        /// of the last poll.
        #[arg(long)]
        fresh: bool,
    },
    /// Reports from the stored deadlines (nothing is written).
    #[command(after_help = "Example:\n  fristvakt report compliance --from 2026-01-01 --to 2026-06-30 \
                            --format html --output report.html")]
    Report {
        #[command(subcommand)]
        report: ReportKind,
    },
    /// The outbox: what is waiting, sent or given up, and putting dead mail back.
    #[command(after_help = "Examples:\n  fristvakt outbox list --state dead\n  fristvakt outbox show KEY\n  \
                            fristvakt outbox retry --dead")]
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Fill the configured SQLite register with realistic synthetic cases.
    #[command(after_help = "Example:\n  fristvakt --config config/demo.toml demo-data --cases 2000 --seed 7")]
    DemoData {
        /// How many cases to write.
        #[arg(long)]
        cases: usize,
        /// The same seed gives the same cases.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also add this many deliberately broken rows.
        #[arg(long, default_value_t = 0)]
        broken: usize,
        #[command(flatten)]
        today: Today,
    },
}

#[derive(Subcommand)]
pub enum ReportKind {
    /// Share of deadlines met whose legal last day falls in a period, by group.
    #[command(
        after_help = "Examples:\n  fristvakt report compliance --from 2026-01-01 --to 2026-06-30 --by unit,month\n  \
                            fristvakt report compliance --from 2026-01-01 --to 2026-06-30 --format csv \
                            --csv-dialect excel-sv --output report.csv"
    )]
    Compliance {
        /// First legal last day counted (YYYY-MM-DD).
        #[arg(long, value_parser = parse_date)]
        from: NaiveDate,
        /// Last legal last day counted (YYYY-MM-DD).
        #[arg(long, value_parser = parse_date)]
        to: NaiveDate,
        #[command(flatten)]
        today: Today,
        /// Group by any of unit, kind, sex, month (comma-separated, in this order of columns).
        #[arg(long, default_value = "unit,kind")]
        by: String,
        #[arg(long, value_enum, default_value_t = ReportFormatArg::Table)]
        format: ReportFormatArg,
        /// CSV flavour: rfc4180 (comma, decimal point) or excel-sv (semicolon, decimal comma,
        /// a byte order mark: Swedish spreadsheets).
        #[arg(long, value_enum, default_value_t = CsvDialectArg::Rfc4180)]
        csv_dialect: CsvDialectArg,
        /// Write to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Show small groups too: for internal use only; the output says so.
        #[arg(long)]
        no_suppress: bool,
        /// Language of the table and HTML page; default: mail.language.
        #[arg(long, value_enum)]
        lang: Option<Lang>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportFormatArg {
    Table,
    Csv,
    Json,
    Html,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CsvDialectArg {
    Rfc4180,
    ExcelSv,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Lang {
    Sv,
    En,
}

#[derive(Subcommand)]
pub enum OutboxAction {
    /// Lists outbox rows, newest first: key, state, attempts, last error, and why a step was not
    /// sent.
    #[command(after_help = "Example:\n  fristvakt outbox list --state dead --limit 20")]
    List {
        /// Only rows in this state (pending, retrying, dead, sent, skipped, cancelled).
        #[arg(long, value_parser = parse_outbox_state)]
        state: Option<OutboxState>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Shows one outbox row: its recipients, each server answer and the rendered mail.
    #[command(after_help = "Example:\n  fristvakt outbox show notice/assessment/2026-BU-00537/-3")]
    Show {
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Puts dead rows back to pending, once each.
    #[command(after_help = "Examples:\n  fristvakt outbox retry KEY\n  fristvakt outbox retry --dead")]
    Retry {
        #[arg(required_unless_present = "dead", conflicts_with = "dead", value_name = "KEY")]
        keys: Vec<String>,
        /// Every dead row.
        #[arg(long)]
        dead: bool,
    },
}

fn parse_outbox_state(raw: &str) -> Result<OutboxState, String> {
    raw.parse().map_err(|e: crate::domain::UnknownName| e.to_string())
}

#[derive(Args)]
pub struct Today {
    /// The day to compute for (YYYY-MM-DD); default: today in the configured time zone.
    #[arg(long, value_parser = parse_date)]
    pub today: Option<NaiveDate>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| format!("{raw:?} is not a date like 2026-11-25"))
}

fn parse_status(raw: &str) -> Result<Status, String> {
    raw.parse()
}

impl Command {
    /// Commands that only show (and `check-config`): their log lines are warnings and errors
    /// only, unless `RUST_LOG` asks for more, so that their output is what the operator asked.
    pub fn only_shows(&self) -> bool {
        match self {
            Command::CheckConfig
            | Command::Deadlines { .. }
            | Command::Explain { .. }
            | Command::Digest { .. }
            | Command::Report { .. } => true,
            Command::Poll { dry_run, .. } => *dry_run,
            Command::Outbox { action } => matches!(action, OutboxAction::List { .. } | OutboxAction::Show { .. }),
            Command::Run | Command::Migrate | Command::SendTestMail { .. } | Command::DemoData { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every command and subcommand has its own description and an example in its help.
    #[test]
    fn every_command_has_a_description_and_an_example() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut seen = 0;
        let mut stack: Vec<clap::Command> = cli.get_subcommands().cloned().collect();
        while let Some(c) = stack.pop() {
            if c.get_name() == "help" {
                continue;
            }
            stack.extend(c.get_subcommands().cloned());
            let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(!about.is_empty(), "{} has no description", c.get_name());
            let after = c.get_after_help().map(|a| a.to_string()).unwrap_or_default();
            assert!(after.contains("Example"), "{} has no example", c.get_name());
            assert!(after.contains("fristvakt "), "{}'s example does not show the command", c.get_name());
            seen += 1;
        }
        assert!(seen >= 14, "only {seen} commands");
        // The description of demo-data is its own (it once sat under outbox).
        let demo = cli.find_subcommand("demo-data").unwrap().get_about().unwrap().to_string();
        assert!(demo.contains("synthetic"), "{demo}");
        let outbox = cli.find_subcommand("outbox").unwrap().get_about().unwrap().to_string();
        assert!(outbox.starts_with("The outbox"), "{outbox}");
    }
}
