//! The `fristvakt` command line: parse, load configuration, call the library, map errors to exit
//! codes (0 ok, 1 runtime failure, 2 usage, 78 configuration).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use fristvakt::cli::{Cli, Command, CsvDialectArg, Format, Lang, OutboxAction, ReportFormatArg, ReportKind};
use fristvakt::commands::{self, CommandError, OutputFormat, ReportArgs, ReportFormat};
use fristvakt::config;
use fristvakt::report::render::CsvDialect;
use fristvakt::terminal::{eprint_line, print_text};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match config::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprint_line(&format!("fristvakt: {e}"));
            return ExitCode::from(78);
        }
    };
    fristvakt::telemetry::init(&settings.log, cli.command.only_shows());
    if matches!(cli.command, Command::CheckConfig) {
        return check_config(&settings);
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Runtime(format!("cannot start the async runtime: {e}")))
        .and_then(|rt| rt.block_on(dispatch(cli.command, Arc::new(settings))));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of the output went away (`| head`): the output ends there, as Unix tools'.
        Err(CommandError::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprint_line(&format!("fristvakt: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// `check-config`: the settings loaded (or exit 78 before), the mail templates, then the
/// register's optional features when it can be reached (an unreachable register is not a
/// configuration error).
fn check_config(settings: &config::Settings) -> ExitCode {
    // The mail templates, built in or overridden by `mail.templates_dir`, are configuration too.
    if let Err(e) = fristvakt::mail::compose::check_templates(settings) {
        eprint_line(&format!("fristvakt: mail.templates_dir: {e}"));
        return ExitCode::from(78);
    }
    let mut text = String::from("configuration ok\n");
    if let Some(note) = &settings.mail.smtp.password_note {
        text.push_str(note);
        text.push('\n');
    }
    let features = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(commands::register_features(settings)));
    match features {
        Ok(line) => text.push_str(&format!("{line}\n")),
        Err(e) => text.push_str(&format!("register features not checked: {e}\n")),
    }
    let _ = print_text(&text);
    ExitCode::SUCCESS
}

async fn dispatch(command: Command, settings: Arc<config::Settings>) -> Result<(), CommandError> {
    match command {
        Command::CheckConfig => Ok(()),
        Command::Run => fristvakt::service::run(settings).await.map_err(CommandError::from),
        Command::Migrate => commands::migrate(&settings).await,
        Command::Poll { today, full, dry_run, .. } => commands::poll_once(settings, today.today, full, dry_run).await,
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
        Command::Outbox { action: OutboxAction::Show { key } } => commands::outbox_show(settings, &key).await,
        Command::Outbox { action: OutboxAction::Retry { keys, dead } } => {
            commands::outbox_retry(settings, keys, dead).await
        }
        Command::Report {
            report: ReportKind::Compliance { from, to, today, by, format, csv_dialect, output, no_suppress, lang },
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
            let csv_dialect = match csv_dialect {
                CsvDialectArg::Rfc4180 => CsvDialect::Rfc4180,
                CsvDialectArg::ExcelSv => CsvDialect::ExcelSv,
            };
            let args = ReportArgs {
                from,
                to,
                today: today.today,
                by,
                format,
                csv_dialect,
                output,
                suppress: !no_suppress,
                language,
            };
            commands::report_compliance(settings, args).await
        }
        Command::DemoData { cases, seed, broken, today } => {
            commands::demo_data(&settings, cases, seed, broken, today.today).await
        }
    }
}
