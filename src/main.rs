//! The `fristvakt` command line: parse, load configuration, call the library, map errors to exit
//! codes (0 ok, 1 runtime failure, 2 usage, 78 configuration).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

use fristvakt::commands::{self, CommandError, OutputFormat, ReportArgs, ReportFormat};
use fristvakt::config;
use fristvakt::rules::Status;

#[derive(Parser)]
#[command(name = "fristvakt", version, about = "Watches the statutory deadlines of child-welfare cases")]
struct Cli {
    /// Configuration file (TOML); defaults to the built-in configuration.
    #[arg(long, global = true, env = "FRISTVAKT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: poll, send notices and digests, serve HTTP, until SIGTERM/SIGINT.
    Run,
    /// Validate the configuration; list every problem with its key.
    CheckConfig,
    /// Create or upgrade the state database.
    Migrate,
    /// Read the register once, compute deadlines, send due notices, and exit.
    Poll {
        /// Required: run one poll and exit (the daemon polls on its own schedule).
        #[arg(long, required = true)]
        once: bool,
        #[command(flatten)]
        today: Today,
        /// Re-read the whole register, not only rows changed since the last poll.
        #[arg(long)]
        full: bool,
    },
    /// Print computed deadlines.
    Deadlines {
        #[command(flatten)]
        today: Today,
        /// Only this unit.
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
    Explain {
        case_ref: String,
        #[command(flatten)]
        today: Today,
    },
    /// Send a short test mail through the configured transport.
    SendTestMail {
        /// The address to send it to.
        #[arg(long, value_name = "ADDR")]
        to: String,
    },
    /// Print the daily digests that would be sent (nothing is sent or recorded).
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
    Report {
        #[command(subcommand)]
        report: ReportKind,
    },
    /// Fill the configured SQLite register with realistic synthetic cases.
    /// The outbox: what is waiting, sent or given up, and putting dead mail back.
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    DemoData {
        #[arg(long)]
        cases: usize,
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
enum ReportKind {
    /// Share of deadlines met whose legal last day falls in a period, by group.
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
enum ReportFormatArg {
    Table,
    Csv,
    Json,
    Html,
}

#[derive(Clone, Copy, ValueEnum)]
enum Lang {
    Sv,
    En,
}

#[derive(Subcommand)]
enum OutboxAction {
    /// Lists outbox rows, newest first: key, state, attempts, last error.
    List {
        #[arg(long, value_parser = parse_outbox_state)]
        state: Option<fristvakt::state::OutboxState>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Puts dead rows back to pending, once each.
    Retry {
        #[arg(required_unless_present = "dead", conflicts_with = "dead", value_name = "KEY")]
        keys: Vec<String>,
        /// Every dead row.
        #[arg(long)]
        dead: bool,
    },
}

fn parse_outbox_state(raw: &str) -> Result<fristvakt::state::OutboxState, String> {
    raw.parse()
}

#[derive(Args)]
struct Today {
    /// The day to compute for (YYYY-MM-DD); default: today in the configured time zone.
    #[arg(long, value_parser = parse_date)]
    today: Option<NaiveDate>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| format!("{raw:?} is not a date like 2026-11-25"))
}

fn parse_status(raw: &str) -> Result<Status, String> {
    raw.parse()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match config::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fristvakt: {e}");
            return ExitCode::from(78);
        }
    };
    fristvakt::telemetry::init(&settings.log);
    if matches!(cli.command, Command::CheckConfig) {
        // The mail templates, built in or overridden by `mail.templates_dir`, are configuration too.
        if let Err(e) = fristvakt::mail::compose::check_templates(&settings) {
            eprintln!("fristvakt: mail.templates_dir: {e}");
            return ExitCode::from(78);
        }
        println!("configuration ok");
        // With the register reachable, say which optional features its view supports; an
        // unreachable register is not a configuration error.
        let features = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(commands::register_features(&settings)));
        match features {
            Ok(line) => println!("{line}"),
            Err(e) => println!("register features not checked: {e}"),
        }
        return ExitCode::SUCCESS;
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Runtime(format!("cannot start the async runtime: {e}")))
        .and_then(|rt| rt.block_on(dispatch(cli.command, Arc::new(settings))));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fristvakt: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(command: Command, settings: Arc<config::Settings>) -> Result<(), CommandError> {
    match command {
        Command::CheckConfig => Ok(()),
        Command::Run => fristvakt::service::run(settings).await.map_err(CommandError::from),
        Command::Migrate => commands::migrate(&settings).await,
        Command::Poll { today, full, .. } => commands::poll_once(settings, today.today, full).await,
        Command::Deadlines { today, unit, status, format, fresh } => {
            let format = match format {
                Format::Table => OutputFormat::Table,
                Format::Json => OutputFormat::Json,
            };
            commands::deadlines(settings, today.today, unit, status, format, fresh).await
        }
        Command::Explain { case_ref, today } => commands::explain(settings, &case_ref, today.today).await,
        Command::SendTestMail { to } => commands::send_test_mail(&settings, &to).await,
        Command::Digest { today, manager, fresh, .. } => {
            commands::digest_dry_run(settings, today.today, manager.as_deref(), fresh).await
        }
        Command::Outbox { action: OutboxAction::List { state, limit } } => {
            commands::outbox_list(settings, state, limit).await
        }
        Command::Outbox { action: OutboxAction::Retry { keys, dead } } => {
            commands::outbox_retry(settings, keys, dead).await
        }
        Command::Report {
            report: ReportKind::Compliance { from, to, today, by, format, output, no_suppress, lang },
        } => {
            let by =
                fristvakt::report::Dimension::parse_list(&by).map_err(|e| CommandError::Usage(format!("--by: {e}")))?;
            let format = match format {
                ReportFormatArg::Table => ReportFormat::Table,
                ReportFormatArg::Csv => ReportFormat::Csv,
                ReportFormatArg::Json => ReportFormat::Json,
                ReportFormatArg::Html => ReportFormat::Html,
            };
            let language = lang.map(|l| match l {
                Lang::Sv => config::Language::Swedish,
                Lang::En => config::Language::English,
            });
            let args =
                ReportArgs { from, to, today: today.today, by, format, output, suppress: !no_suppress, language };
            commands::report_compliance(settings, args).await
        }
        Command::DemoData { cases, seed, broken, today } => {
            commands::demo_data(&settings, cases, seed, broken, today.today).await
        }
    }
}
